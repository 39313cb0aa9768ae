package convbn

import (
	"fmt"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/nn"
)

// NewBlockFromPair returns an Eval-mode block holding a discovered pair's
// weights, bias, γ, β, running statistics, ε, momentum and
// num_batches_tracked, read from the checkpoint. Geometry the file does
// not store takes PyTorch's Conv2d defaults: stride 1, padding 0,
// dilation 1.
//
// It returns an error naming the tensor when the pair is not a 2-D
// convolution (a transposed or 1-D conv), when a tensor's shape does not fit
// the conv, or when a tensor cannot be read.
func NewBlockFromPair[T nn.Float](p *Pair) (*Block[T], error) {
	c := &p.Conv
	if c.Weight == nil {
		return nil, fmt.Errorf("pair %s: conv has no weight tensor", c.Name)
	}
	shape := c.Weight.Shape
	if len(shape) != 4 {
		return nil, fmt.Errorf("pair %s: weight %s has shape %v, but only 2-D convolutions (4-D weights) can run as a block", c.Name, c.Weight.Name, shape)
	}
	if c.Transposed {
		return nil, fmt.Errorf("pair %s: the conv is transposed, which a block cannot run (only its fold is supported)", c.Name)
	}
	for i, s := range shape {
		if s < 1 {
			return nil, fmt.Errorf("pair %s: weight %s has empty dimension %d in shape %v", c.Name, c.Weight.Name, i, shape)
		}
	}
	groups := max(c.Groups, 1)
	if shape[0]%groups != 0 {
		return nil, fmt.Errorf("pair %s: %d output channels are not divisible by %d groups", c.Name, shape[0], groups)
	}
	conv := &nn.Conv2d[T]{
		InChannels: shape[1] * groups, OutChannels: shape[0], KernelH: shape[2], KernelW: shape[3],
		Stride: [2]int{1, 1}, Dilation: [2]int{1, 1}, Groups: groups,
	}
	for _, g := range []struct {
		name string
		src  []int
		dst  *[2]int
		min  int
	}{{"stride", c.Stride, &conv.Stride, 1}, {"padding", c.Padding, &conv.Padding, 0}, {"dilation", c.Dilation, &conv.Dilation, 1}} {
		if g.src == nil {
			continue
		}
		if len(g.src) != 2 || g.src[0] < g.min || g.src[1] < g.min {
			return nil, fmt.Errorf("pair %s: %s %v is not two values of at least %d", c.Name, g.name, g.src, g.min)
		}
		*g.dst = [2]int{g.src[0], g.src[1]}
	}

	channels := shape[0]
	bn := nn.NewBatchNorm2d[T](channels)
	bn.Eps = p.BN.Eps
	bn.Momentum = p.BN.Momentum
	bn.Affine = p.BN.Affine
	read := func(dst []T, t *checkpoint.Tensor, what string) error {
		if t == nil {
			return fmt.Errorf("pair %s: %s is missing from the checkpoint", c.Name, what)
		}
		if t.NumElements() != len(dst) {
			return fmt.Errorf("pair %s: %s %s has %d elements, want %d", c.Name, what, t.Name, t.NumElements(), len(dst))
		}
		v, err := t.Float64s()
		if err != nil {
			return fmt.Errorf("pair %s: %w", c.Name, err)
		}
		copy(dst, nn.Convert[T](v))
		return nil
	}
	if err := read(bn.RunningMean, p.BN.RunningMean, "running_mean"); err != nil {
		return nil, err
	}
	if err := read(bn.RunningVar, p.BN.RunningVar, "running_var"); err != nil {
		return nil, err
	}
	if bn.Affine {
		if err := read(bn.Gamma, p.BN.Weight, "BatchNorm weight (γ)"); err != nil {
			return nil, err
		}
		if err := read(bn.Beta, p.BN.Bias, "BatchNorm bias (β)"); err != nil {
			return nil, err
		}
	} else {
		bn.Gamma, bn.Beta, bn.GammaGrad, bn.BetaGrad = nil, nil, nil, nil
	}
	if t := p.BN.NumBatchesTracked; t != nil {
		v, err := t.Float64s()
		if err != nil {
			return nil, fmt.Errorf("pair %s: %w", c.Name, err)
		}
		if len(v) != 1 {
			return nil, fmt.Errorf("pair %s: num_batches_tracked %s has %d elements, want 1", c.Name, t.Name, len(v))
		}
		bn.NumBatchesTracked = int64(v[0])
	}

	b := NewBlock(c.Name, conv, c.Bias != nil, bn)
	if err := read(b.Weight, c.Weight, "conv weight"); err != nil {
		return nil, err
	}
	if c.Bias != nil {
		if err := read(b.Bias, c.Bias, "conv bias"); err != nil {
			return nil, err
		}
	}
	b.mode = Eval
	return b, nil
}
