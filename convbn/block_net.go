package convbn

import (
	"fmt"
	"math"

	"github.com/convbn-diag/convbn-diag/nn"
)

// Net is a sequential network of layers, ConvBN blocks among them, ending
// in logits for softmax cross-entropy.
type Net[T nn.Float] struct {
	Layers []nn.Layer[T]
}

// NetConfig describes the small image classifier NewNet builds: one 3×3
// ConvBN block (padding 1, no conv bias) and ReLU per entry of Channels,
// a 2×2 max pool after every block but the last, global average pooling
// and a linear head.
type NetConfig struct {
	InChannels int
	Channels   []int
	Classes    int
	// Seed makes the initialization reproducible.
	Seed uint64
}

// NewNet returns a Train-mode network initialized as PyTorch initializes
// Conv2d and Linear (uniform in ±1/√fan_in), with BatchNorm γ = 1, β = 0.
func NewNet[T nn.Float](cfg NetConfig) (*Net[T], error) {
	if cfg.InChannels < 1 || cfg.Classes < 2 || len(cfg.Channels) == 0 {
		return nil, fmt.Errorf("network config %+v: need at least one input channel, one block and two classes", cfg)
	}
	rng := newSplitMix(cfg.Seed)
	net := &Net[T]{}
	in := cfg.InChannels
	for i, out := range cfg.Channels {
		if out < 1 {
			return nil, fmt.Errorf("network config: block %d has %d channels", i, out)
		}
		conv := nn.NewConv2d[T](in, out, 3, 3)
		conv.Padding = [2]int{1, 1}
		b := NewBlock(fmt.Sprintf("block%d", i), conv, false, nn.NewBatchNorm2d[T](out))
		bound := 1 / math.Sqrt(float64(in*9))
		for j := range b.Weight {
			b.Weight[j] = T((2*rng.float64() - 1) * bound)
		}
		net.Layers = append(net.Layers, b, &nn.ReLU[T]{})
		if i < len(cfg.Channels)-1 {
			net.Layers = append(net.Layers, &nn.MaxPool2d[T]{Size: 2})
		}
		in = out
	}
	net.Layers = append(net.Layers, &nn.GlobalAvgPool[T]{}, nn.NewLinear[T](in, cfg.Classes, rng.float64))
	return net, nil
}

// Blocks returns the network's ConvBN blocks in order.
func (n *Net[T]) Blocks() []*Block[T] {
	var out []*Block[T]
	for _, l := range n.Layers {
		if b, ok := l.(*Block[T]); ok {
			out = append(out, b)
		}
	}
	return out
}

// SetMode switches every block to m; see Block.SetMode.
func (n *Net[T]) SetMode(m Mode) error {
	for _, b := range n.Blocks() {
		if err := b.SetMode(m); err != nil {
			return err
		}
	}
	return nil
}

// Params returns every layer's trainable parameters in layer order.
func (n *Net[T]) Params() []*nn.Param[T] {
	var ps []*nn.Param[T]
	for _, l := range n.Layers {
		ps = append(ps, l.Params()...)
	}
	return ps
}

// ZeroGrad sets every gradient to zero.
func (n *Net[T]) ZeroGrad() {
	for _, p := range n.Params() {
		clear(p.Grad)
	}
}

// Forward returns the logits for the NCHW batch x.
func (n *Net[T]) Forward(x *nn.Tensor[T]) (*nn.Tensor[T], error) {
	for i, l := range n.Layers {
		var err error
		if x, err = l.Forward(x); err != nil {
			return nil, fmt.Errorf("layer %d forward: %w", i, err)
		}
	}
	return x, nil
}

// Backward propagates the logits' gradient through every layer, adding
// parameter gradients, and returns the input's gradient.
func (n *Net[T]) Backward(dy *nn.Tensor[T]) (*nn.Tensor[T], error) {
	for i := len(n.Layers) - 1; i >= 0; i-- {
		var err error
		if dy, err = n.Layers[i].Backward(dy); err != nil {
			return nil, fmt.Errorf("layer %d backward: %w", i, err)
		}
	}
	return dy, nil
}

// Loss runs forward on x and returns the mean softmax cross-entropy against
// labels, with the logits' gradient for Backward.
func (n *Net[T]) Loss(x *nn.Tensor[T], labels []int) (float64, *nn.Tensor[T], error) {
	logits, err := n.Forward(x)
	if err != nil {
		return 0, nil, err
	}
	return nn.SoftmaxCrossEntropy(logits, labels)
}

// TrainStep zeroes the gradients, runs forward and backward on one batch,
// applies opt to the given parameters (all of the network's when params is
// nil) and returns the batch loss before the update.
func (n *Net[T]) TrainStep(x *nn.Tensor[T], labels []int, opt nn.Optimizer[T], params []*nn.Param[T]) (float64, error) {
	n.ZeroGrad()
	loss, grad, err := n.Loss(x, labels)
	if err != nil {
		return 0, err
	}
	if _, err := n.Backward(grad); err != nil {
		return 0, err
	}
	if params == nil {
		params = n.Params()
	}
	opt.Step(params)
	return loss, nil
}

// splitMix is SplitMix64, a small seeded generator for initialization.
type splitMix struct{ state uint64 }

func newSplitMix(seed uint64) *splitMix { return &splitMix{state: seed} }

// float64 returns a number in [0, 1).
func (s *splitMix) float64() float64 {
	s.state += 0x9e3779b97f4a7c15
	z := s.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}
