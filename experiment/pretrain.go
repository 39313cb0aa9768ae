package experiment

import (
	"fmt"
	"math"
	"slices"

	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/mnist"
	"github.com/convbn-diag/convbn-diag/nn"
)

// PretrainConfig sets how pretrain trains the source network. The defaults
// (DefaultPretrainConfig) are chosen so that the BatchNorm scales end up
// like those of networks trained for long with weight decay on every
// parameter (resnet20 for CIFAR-10 has median |ω| 0.43), rather than near
// 1 as at initialization:
//
//   - conv weights start uniform in ±InitGain/√fan_in, InitGain = 4, that
//     is 4× PyTorch's default bound, as after the weight-norm growth that
//     long SGD training without decay on W produces in BN networks;
//   - L2 weight decay GammaDecay = 0.02 on γ only, which shrinks γ as long
//     runs with decay on every parameter do; no decay on W, β or the head;
//   - 600 steps of SGD with momentum 0.9, learning rate 0.1 for the first
//     3/4 of the steps and 0.01 after, so the run ends near a minimum.
type PretrainConfig struct {
	Seed       uint64
	Channels   []int
	InitGain   float64
	Steps      int
	BatchSize  int
	LR         float64
	Momentum   float64
	GammaDecay float64
	// Images is how many training images of digits 0–4 to use (0: all).
	Images int
	// TestImages is how many test images of digits 0–4 measure accuracy.
	TestImages int
}

// DefaultPretrainConfig returns the settings the embedded example was made
// with.
func DefaultPretrainConfig() PretrainConfig {
	return PretrainConfig{
		Seed: 1, Channels: []int{8, 16, 32}, InitGain: 4,
		Steps: 600, BatchSize: 64, LR: 0.1, Momentum: 0.9, GammaDecay: 0.02,
		TestImages: 2000,
	}
}

// Validate reports the first invalid setting.
func (c *PretrainConfig) Validate() error {
	switch {
	case len(c.Channels) == 0 || slices.Min(c.Channels) < 1:
		return fmt.Errorf("channels %v: need at least one block with at least one channel", c.Channels)
	case c.Steps < 1:
		return fmt.Errorf("steps %d: need at least 1", c.Steps)
	case c.BatchSize < 2:
		return fmt.Errorf("batch size %d: BatchNorm in Train mode needs at least 2", c.BatchSize)
	case !(c.LR > 0) || !(c.InitGain > 0):
		return fmt.Errorf("learning rate %g and init gain %g must be positive", c.LR, c.InitGain)
	case c.Momentum < 0 || c.Momentum >= 1 || c.GammaDecay < 0:
		return fmt.Errorf("momentum %g must be in [0, 1) and γ decay %g not negative", c.Momentum, c.GammaDecay)
	}
	return nil
}

// PretrainResult is the pretrained network and how it did.
type PretrainResult struct {
	Weights      *Weights
	FinalLoss    float64 // mean loss of the last 20 batches
	TestAccuracy float64 // on TestImages test images of digits 0–4
	Omega        OmegaSummary
}

// OmegaSummary describes the distribution of |ω| = |γ|/√(σ²+ε), per
// block and over every channel.
type OmegaSummary struct {
	Layers []OmegaStats `json:"layers"`
	All    OmegaStats   `json:"all"`
}

// OmegaStats are quantiles of |ω| over a set of channels.
type OmegaStats struct {
	Name     string  `json:"name"`
	Channels int     `json:"channels"`
	Min      float64 `json:"min"`
	P10      float64 `json:"p10"`
	Median   float64 `json:"median"`
	P90      float64 `json:"p90"`
	Max      float64 `json:"max"`
}

// SummarizeOmega returns the |ω| quantiles of every block of w.
func SummarizeOmega(w *Weights) OmegaSummary {
	var s OmegaSummary
	var all []float64
	for i := range w.Blocks {
		om := w.Blocks[i].Omega()
		for j := range om {
			om[j] = math.Abs(om[j])
		}
		all = append(all, om...)
		s.Layers = append(s.Layers, omegaStats(fmt.Sprintf("block%d", i), om))
	}
	s.All = omegaStats("all", all)
	return s
}

func omegaStats(name string, v []float64) OmegaStats {
	v = slices.Clone(v)
	slices.Sort(v)
	q := func(p float64) float64 {
		pos := p * float64(len(v)-1)
		lo := int(math.Floor(pos))
		hi := min(lo+1, len(v)-1)
		return v[lo] + (pos-float64(lo))*(v[hi]-v[lo])
	}
	return OmegaStats{Name: name, Channels: len(v), Min: v[0], P10: q(0.1), Median: q(0.5), P90: q(0.9), Max: v[len(v)-1]}
}

// Pretrain trains a new network in Train mode on train (digits 0–4) and
// measures it on test. progress, when not nil, is called after every step.
func Pretrain(cfg PretrainConfig, train, test *mnist.Set, progress func(step int, loss float64)) (*PretrainResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	net, err := convbn.NewNet[float32](convbn.NetConfig{InChannels: 1, Channels: cfg.Channels, Classes: len(SourceDigits), Seed: cfg.Seed})
	if err != nil {
		return nil, err
	}
	// NewNet draws uniform in ±1/√fan_in; InitGain widens that range.
	for _, b := range net.Blocks() {
		for i := range b.Weight {
			b.Weight[i] *= float32(cfg.InitGain)
		}
	}
	order, err := batchOrder(train.Len(), cfg.BatchSize, cfg.Steps, cfg.Seed)
	if err != nil {
		return nil, err
	}

	opt := &nn.SGD[float32]{LR: cfg.LR, Momentum: cfg.Momentum}
	params := net.Params()
	var gammas [][]float32
	for _, b := range net.Blocks() {
		gammas = append(gammas, b.BN.Gamma)
	}
	x := nn.NewTensor[float32](cfg.BatchSize, 1, mnist.Side, mnist.Side)
	var recent []float64
	for step, idx := range order {
		if step == cfg.Steps*3/4 {
			opt.LR = cfg.LR / 10
		}
		labels := mnist.Batch(train, idx, x.Data)
		net.ZeroGrad()
		loss, grad, err := net.Loss(x, labels)
		if err != nil {
			return nil, fmt.Errorf("pretrain step %d: %w", step+1, err)
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return nil, fmt.Errorf("pretrain step %d: loss is %v; lower the learning rate", step+1, loss)
		}
		if _, err := net.Backward(grad); err != nil {
			return nil, fmt.Errorf("pretrain step %d: %w", step+1, err)
		}
		// L2 decay on γ alone, added to its gradient as torch.optim.SGD's
		// weight_decay would for a parameter group holding only γ.
		for i, g := range gammas {
			bn := net.Blocks()[i].BN
			for c := range g {
				bn.GammaGrad[c] += float32(cfg.GammaDecay) * g[c]
			}
		}
		opt.Step(params)
		recent = append(recent, loss)
		if len(recent) > 20 {
			recent = recent[1:]
		}
		if progress != nil {
			progress(step+1, loss)
		}
	}

	w, err := Snapshot(net)
	if err != nil {
		return nil, err
	}
	res := &PretrainResult{Weights: w, Omega: SummarizeOmega(w)}
	for _, l := range recent {
		res.FinalLoss += l / float64(len(recent))
	}
	if res.TestAccuracy, _, err = evaluate(w, false, test); err != nil {
		return nil, err
	}
	return res, nil
}

// evaluate returns the accuracy and mean loss of the Eval-mode network w
// on every image of s, in float32 batches of 500.
func evaluate(w *Weights, freshHead bool, s *mnist.Set) (acc, loss float64, err error) {
	net, err := Build[float32](w, freshHead, len(SourceDigits), 0)
	if err != nil {
		return 0, 0, err
	}
	return evaluateNet(net, s)
}

func evaluateNet[T nn.Float](net *convbn.Net[T], s *mnist.Set) (acc, loss float64, err error) {
	mode := net.Blocks()[0].Mode()
	if mode == convbn.Train {
		if err := net.SetMode(convbn.Eval); err != nil {
			return 0, 0, err
		}
		defer net.SetMode(convbn.Train)
	}
	const chunk = 500
	for lo := 0; lo < s.Len(); lo += chunk {
		idx := span(min(chunk, s.Len()-lo))
		for i := range idx {
			idx[i] += lo
		}
		x, labels := batchTensor[T](s, idx)
		logits, err := net.Forward(x)
		if err != nil {
			return 0, 0, err
		}
		l, _, err := nn.SoftmaxCrossEntropy(logits, labels)
		if err != nil {
			return 0, 0, err
		}
		acc += accuracy(logits, labels) * float64(len(idx))
		loss += l * float64(len(idx))
	}
	n := float64(s.Len())
	return acc / n, loss / n, nil
}
