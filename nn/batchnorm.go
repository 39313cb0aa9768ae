package nn

import (
	"fmt"
	"math"
)

// DefaultMomentum is PyTorch's BatchNorm momentum: running ← (1 − m)·running
// + m·batch statistic with m = 0.1.
const DefaultMomentum = 0.1

// BatchNorm2d normalizes each channel of an NCHW tensor. In train mode it
// uses the batch mean and the biased batch variance, and updates the running
// statistics with the unbiased variance. In eval mode it applies the frozen
// per-channel affine map z = γ·(y − μ)/√(σ² + ε) + β.
type BatchNorm2d[T Float] struct {
	Channels int
	Eps      float64
	// Momentum is the weight of the new batch statistic in the running
	// average; nil means a cumulative average over all batches seen, as
	// PyTorch's momentum=None.
	Momentum *float64
	// Affine is false for a BatchNorm without γ and β, which then act as
	// γ = 1 and β = 0.
	Affine bool

	Gamma, Beta         []T // nil unless Affine
	GammaGrad, BetaGrad []T // nil unless Affine

	RunningMean, RunningVar []T
	NumBatchesTracked       int64
}

// NewBatchNorm2d returns an affine BatchNorm with γ = 1, β = 0, running mean
// 0, running variance 1, ε = 1e-5 and momentum 0.1, PyTorch's defaults.
func NewBatchNorm2d[T Float](channels int) *BatchNorm2d[T] {
	m := DefaultMomentum
	bn := &BatchNorm2d[T]{
		Channels: channels, Eps: 1e-5, Momentum: &m, Affine: true,
		Gamma: make([]T, channels), Beta: make([]T, channels),
		GammaGrad: make([]T, channels), BetaGrad: make([]T, channels),
		RunningMean: make([]T, channels), RunningVar: make([]T, channels),
	}
	for c := range channels {
		bn.Gamma[c] = 1
		bn.RunningVar[c] = 1
	}
	return bn
}

// GammaAt returns γ_c, which is 1 for a BatchNorm without affine parameters.
func (bn *BatchNorm2d[T]) GammaAt(c int) T {
	if !bn.Affine {
		return 1
	}
	return bn.Gamma[c]
}

// BetaAt returns β_c, which is 0 for a BatchNorm without affine parameters.
func (bn *BatchNorm2d[T]) BetaAt(c int) T {
	if !bn.Affine {
		return 0
	}
	return bn.Beta[c]
}

// InvStd returns s_c = 1/√(σ²_c + ε) from the running variance. It fails
// when σ²_c + ε is not positive, since s_c is then undefined.
func (bn *BatchNorm2d[T]) InvStd() ([]T, error) {
	s := make([]T, bn.Channels)
	for c, v := range bn.RunningVar {
		d := float64(v) + bn.Eps
		if !(d > 0) {
			return nil, fmt.Errorf("channel %d: running_var + eps = %g is not positive, so 1/sqrt(running_var + eps) is undefined", c, d)
		}
		s[c] = T(1 / math.Sqrt(d))
	}
	return s, nil
}

func (bn *BatchNorm2d[T]) checkInput(y *Tensor[T]) (n, c, p int) {
	n, c, h, w := y.Dims4()
	if c != bn.Channels {
		panic(fmt.Sprintf("nn.BatchNorm2d: input has %d channels, want %d", c, bn.Channels))
	}
	return n, c, h * w
}

// TrainForward normalizes y with its batch statistics, updates the running
// statistics and returns the output with the batch mean and the inverse
// standard deviation 1/√(biased variance + ε) per channel, which
// TrainBackward needs. It fails, changing nothing, when a channel has a
// single value in the batch, as PyTorch does, because the unbiased
// variance is then undefined.
func (bn *BatchNorm2d[T]) TrainForward(y *Tensor[T]) (z *Tensor[T], mean, invStd []T, err error) {
	n, ch, p := bn.checkInput(y)
	count := n * p
	if count < 2 {
		return nil, nil, nil, fmt.Errorf("batch norm in train mode needs more than one value per channel, got input shape %v; use a larger batch or eval mode", y.Shape)
	}
	z = NewTensor[T](y.Shape...)
	mean = make([]T, ch)
	invStd = make([]T, ch)

	bn.NumBatchesTracked++
	factor := 1 / float64(bn.NumBatchesTracked)
	if bn.Momentum != nil {
		factor = *bn.Momentum
	}

	for c := 0; c < ch; c++ {
		// Two passes in float64: the mean, then the centered sum of
		// squares, which is accurate when the mean is large.
		var sum float64
		for s := 0; s < n; s++ {
			for _, v := range y.Data[(s*ch+c)*p : (s*ch+c+1)*p] {
				sum += float64(v)
			}
		}
		mu := sum / float64(count)
		var ssq float64
		for s := 0; s < n; s++ {
			for _, v := range y.Data[(s*ch+c)*p : (s*ch+c+1)*p] {
				d := float64(v) - mu
				ssq += d * d
			}
		}
		biased := ssq / float64(count)
		unbiased := ssq / float64(count-1)
		is := 1 / math.Sqrt(biased+bn.Eps)
		mean[c], invStd[c] = T(mu), T(is)

		scale := float64(bn.GammaAt(c)) * is
		shift := float64(bn.BetaAt(c)) - mu*scale
		sc, sh := T(scale), T(shift)
		for s := 0; s < n; s++ {
			in := y.Data[(s*ch+c)*p : (s*ch+c+1)*p]
			out := z.Data[(s*ch+c)*p : (s*ch+c+1)*p]
			for i, v := range in {
				out[i] = v*sc + sh
			}
		}

		bn.RunningMean[c] = T((1-factor)*float64(bn.RunningMean[c]) + factor*mu)
		bn.RunningVar[c] = T((1-factor)*float64(bn.RunningVar[c]) + factor*unbiased)
	}
	return z, mean, invStd, nil
}

// TrainBackward returns ∂L/∂y for a train-mode forward over y, given
// dz = ∂L/∂z and the mean and inverse standard deviation TrainForward
// returned. It adds ∂L/∂γ and ∂L/∂β to GammaGrad and BetaGrad.
func (bn *BatchNorm2d[T]) TrainBackward(y, dz *Tensor[T], mean, invStd []T) *Tensor[T] {
	n, ch, p := bn.checkInput(y)
	count := float64(n * p)
	dy := NewTensor[T](y.Shape...)
	for c := 0; c < ch; c++ {
		mu, is := float64(mean[c]), float64(invStd[c])

		// Σ dz and Σ dz·ŷ with ŷ = (y − μ)·s.
		var sumDz, sumDzXhat float64
		for s := 0; s < n; s++ {
			yy := y.Data[(s*ch+c)*p : (s*ch+c+1)*p]
			for i, g := range dz.Data[(s*ch+c)*p : (s*ch+c+1)*p] {
				sumDz += float64(g)
				sumDzXhat += float64(g) * (float64(yy[i]) - mu) * is
			}
		}
		if bn.Affine {
			bn.GammaGrad[c] += T(sumDzXhat)
			bn.BetaGrad[c] += T(sumDz)
		}

		// ∂L/∂y = γ·s/N · (N·dz − Σdz − ŷ·Σ dz·ŷ)
		k := float64(bn.GammaAt(c)) * is / count
		meanDz := sumDz / count
		meanDzXhat := sumDzXhat / count
		for s := 0; s < n; s++ {
			yy := y.Data[(s*ch+c)*p : (s*ch+c+1)*p]
			gz := dz.Data[(s*ch+c)*p : (s*ch+c+1)*p]
			out := dy.Data[(s*ch+c)*p : (s*ch+c+1)*p]
			for i, g := range gz {
				xhat := (float64(yy[i]) - mu) * is
				out[i] = T(k * count * (float64(g) - meanDz - xhat*meanDzXhat))
			}
		}
	}
	return dy
}

// EvalForward applies the frozen per-channel map
// z = γ·(y − μ)/√(σ² + ε) + β with the running statistics.
func (bn *BatchNorm2d[T]) EvalForward(y *Tensor[T]) (*Tensor[T], error) {
	n, ch, p := bn.checkInput(y)
	s, err := bn.InvStd()
	if err != nil {
		return nil, err
	}
	z := NewTensor[T](y.Shape...)
	for c := 0; c < ch; c++ {
		omega := bn.GammaAt(c) * s[c]
		shift := bn.BetaAt(c) - omega*bn.RunningMean[c]
		for b := 0; b < n; b++ {
			in := y.Data[(b*ch+c)*p : (b*ch+c+1)*p]
			out := z.Data[(b*ch+c)*p : (b*ch+c+1)*p]
			for i, v := range in {
				out[i] = omega*v + shift
			}
		}
	}
	return z, nil
}

// EvalBackward returns ∂L/∂y = ω·dz for an eval-mode forward over y and
// adds ∂L/∂γ = Σ dz·(y − μ)·s and ∂L/∂β = Σ dz to GammaGrad and BetaGrad.
// The running statistics get no gradient.
func (bn *BatchNorm2d[T]) EvalBackward(y, dz *Tensor[T]) (*Tensor[T], error) {
	n, ch, p := bn.checkInput(y)
	s, err := bn.InvStd()
	if err != nil {
		return nil, err
	}
	dy := NewTensor[T](y.Shape...)
	for c := 0; c < ch; c++ {
		omega := bn.GammaAt(c) * s[c]
		mu := bn.RunningMean[c]
		var sumDz, sumDzCentered float64
		for b := 0; b < n; b++ {
			yy := y.Data[(b*ch+c)*p : (b*ch+c+1)*p]
			gz := dz.Data[(b*ch+c)*p : (b*ch+c+1)*p]
			out := dy.Data[(b*ch+c)*p : (b*ch+c+1)*p]
			for i, g := range gz {
				sumDz += float64(g)
				sumDzCentered += float64(g) * float64(yy[i]-mu)
				out[i] = omega * g
			}
		}
		if bn.Affine {
			bn.GammaGrad[c] += T(sumDzCentered * float64(s[c]))
			bn.BetaGrad[c] += T(sumDz)
		}
	}
	return dy, nil
}

// ZeroGrad sets GammaGrad and BetaGrad to zero.
func (bn *BatchNorm2d[T]) ZeroGrad() {
	clear(bn.GammaGrad)
	clear(bn.BetaGrad)
}
