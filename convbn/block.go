package convbn

import (
	"errors"
	"fmt"
	"time"

	"github.com/convbn-diag/convbn-diag/gradients"
	"github.com/convbn-diag/convbn-diag/nn"
)

// Mode is how a ConvBN block computes its output and which parameters it
// trains.
type Mode int

// The four modes of a ConvBN block.
const (
	// Train uses batch statistics and updates the running statistics;
	// W, b, γ and β are trained.
	Train Mode = iota
	// Eval uses the frozen running statistics as a per-channel affine map
	// after the conv; W, b, γ and β are trained.
	Eval
	// Deploy runs one conv with the folded W' and b', which are the
	// trained parameters.
	Deploy
	// Tune keeps W, b, γ and β as the trained parameters and folds them
	// into W', b' on every forward, then runs one conv. It computes the
	// same function and gradients as Eval.
	Tune
)

// String returns the mode's name in lower case.
func (m Mode) String() string {
	switch m {
	case Train:
		return "train"
	case Eval:
		return "eval"
	case Deploy:
		return "deploy"
	case Tune:
		return "tune"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// MarshalText encodes the mode as its name.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// ErrFoldIrreversible is returned when a Deploy block is asked to change
// mode.
var ErrFoldIrreversible = errors.New("a Deploy block cannot leave Deploy mode: W' = ω·W and b' = β + ω·(b − μ) do not determine W, b, γ, β, μ or σ² separately; rebuild the block from the unfused parameters instead")

// Block is a Conv2d followed by a BatchNorm2d, runnable in any of the four
// modes. Forward keeps only what backward needs: the conv input X in every
// mode (not its im2col columns, which backward rebuilds), plus the conv
// output Y in Train and Eval (with the batch statistics in Train) and the
// fused weight W' in Tune (with ω and s).
//
// Gradients accumulate into WeightGrad, BiasGrad and the BatchNorm's
// GammaGrad and BetaGrad until ZeroGrad, as in PyTorch.
type Block[T nn.Float] struct {
	Name string
	Conv *nn.Conv2d[T]

	// Weight is W, or W' in Deploy mode; Bias is the conv bias b (nil
	// when the conv has none), or b' in Deploy mode.
	Weight, WeightGrad []T
	Bias, BiasGrad     []T

	// BN is nil in Deploy mode.
	BN *nn.BatchNorm2d[T]

	// Recorder, when not nil, receives a Record per pass.
	Recorder Recorder
	// RecordChannels adds per-channel arrays to each Record.
	RecordChannels bool

	mode  Mode
	step  int
	saved *savedState[T]
}

// savedState is what a forward pass retains for its backward pass.
type savedState[T nn.Float] struct {
	x, y         *nn.Tensor[T]
	fusedWeight  []T
	mean, invStd []T // Train: batch statistics; Tune: s from the running variance
	omega        []T // Tune
	held         Held
}

// NewBlock returns a Train-mode block with a zero weight, a zero bias when
// bias is true, and bn as its BatchNorm. It panics when bn's channel count
// differs from conv's output channels.
func NewBlock[T nn.Float](name string, conv *nn.Conv2d[T], bias bool, bn *nn.BatchNorm2d[T]) *Block[T] {
	if bn.Channels != conv.OutChannels {
		panic(fmt.Sprintf("convbn.NewBlock %s: BatchNorm has %d channels, conv has %d outputs", name, bn.Channels, conv.OutChannels))
	}
	b := &Block[T]{Name: name, Conv: conv, BN: bn}
	b.Weight = make([]T, conv.WeightLen())
	b.WeightGrad = make([]T, conv.WeightLen())
	if bias {
		b.Bias = make([]T, conv.OutChannels)
		b.BiasGrad = make([]T, conv.OutChannels)
	}
	return b
}

// Mode returns the block's current mode.
func (b *Block[T]) Mode() Mode { return b.mode }

// SetMode switches between Train, Eval and Tune, which share W, b, γ and β.
// Switching to Deploy folds the BatchNorm, as Fold does. Leaving Deploy
// returns ErrFoldIrreversible. A switch discards any forward pass that has
// not been through backward.
func (b *Block[T]) SetMode(m Mode) error {
	if b.mode == Deploy && m != Deploy {
		return fmt.Errorf("block %s: switch to %s: %w", b.Name, m, ErrFoldIrreversible)
	}
	switch m {
	case Train, Eval, Tune:
		b.mode = m
		b.saved = nil
		return nil
	case Deploy:
		if b.mode == Deploy {
			return nil
		}
		_, _, err := b.Fold()
		return err
	}
	return fmt.Errorf("block %s: unknown mode %d", b.Name, int(m))
}

// Fold switches the block to Deploy mode: it replaces W and b by
// W'_c = ω_c·W_c and b'_c = β_c + ω_c·(b_c − μ_c) with the running
// statistics, drops the BatchNorm and returns W' and b' (the block's new
// Weight and Bias, not copies). The block then always has a bias. It fails
// on a Deploy block and when σ²_c + ε ≤ 0 for some channel.
func (b *Block[T]) Fold() (weight, bias []T, err error) {
	if b.mode == Deploy {
		return nil, nil, fmt.Errorf("block %s: already in Deploy mode", b.Name)
	}
	w, bb, _, _, err := b.fuse()
	if err != nil {
		return nil, nil, fmt.Errorf("block %s: fold: %w", b.Name, err)
	}
	b.Weight, b.Bias = w, bb
	b.WeightGrad = make([]T, len(w))
	b.BiasGrad = make([]T, len(bb))
	b.BN = nil
	b.mode = Deploy
	b.saved = nil
	return w, bb, nil
}

// fuse computes W', b', ω and s from the current W, b, γ, β and running
// statistics.
func (b *Block[T]) fuse() (w, bias, omega, invStd []T, err error) {
	bn := b.BN
	invStd, err = bn.InvStd()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	channels := b.Conv.OutChannels
	k := len(b.Weight) / channels
	w = make([]T, len(b.Weight))
	bias = make([]T, channels)
	omega = make([]T, channels)
	for c := range channels {
		o := bn.GammaAt(c) * invStd[c]
		omega[c] = o
		for i, v := range b.Weight[c*k : (c+1)*k] {
			w[c*k+i] = o * v
		}
		var cb T
		if b.Bias != nil {
			cb = b.Bias[c]
		}
		bias[c] = bn.BetaAt(c) + o*(cb-bn.RunningMean[c])
	}
	return w, bias, omega, invStd, nil
}

// Params returns the block's trainable parameters in the current mode:
// weight, then bias if any, then γ and β when the BatchNorm is affine.
// Only the weight is marked for weight decay.
func (b *Block[T]) Params() []*nn.Param[T] {
	ps := []*nn.Param[T]{{Name: b.Name + ".weight", Value: b.Weight, Grad: b.WeightGrad, Decay: true}}
	if b.Bias != nil {
		ps = append(ps, &nn.Param[T]{Name: b.Name + ".bias", Value: b.Bias, Grad: b.BiasGrad})
	}
	if b.BN != nil && b.BN.Affine {
		ps = append(ps,
			&nn.Param[T]{Name: b.Name + ".bn.weight", Value: b.BN.Gamma, Grad: b.BN.GammaGrad},
			&nn.Param[T]{Name: b.Name + ".bn.bias", Value: b.BN.Beta, Grad: b.BN.BetaGrad})
	}
	return ps
}

// ZeroGrad sets every gradient of the block to zero.
func (b *Block[T]) ZeroGrad() {
	clear(b.WeightGrad)
	clear(b.BiasGrad)
	if b.BN != nil {
		b.BN.ZeroGrad()
	}
}

// Held returns what the block retains for backward now: the last forward's
// tensors until Backward releases them, nothing otherwise.
func (b *Block[T]) Held() Held {
	if b.saved == nil {
		return Held{}
	}
	return b.saved.held
}

// Forward runs the block on the NCHW input x in the current mode and keeps
// what Backward needs. A second Forward before Backward replaces the first.
func (b *Block[T]) Forward(x *nn.Tensor[T]) (*nn.Tensor[T], error) {
	var start time.Time
	if b.Recorder != nil {
		start = time.Now()
	}
	b.step++
	st := &savedState[T]{x: x}
	size := nn.ElementSize[T]()
	st.held.add("x", x.Len(), size, false)

	var z *nn.Tensor[T]
	switch b.mode {
	case Train:
		y := b.Conv.Forward(x, b.Weight, b.Bias)
		var err error
		if z, st.mean, st.invStd, err = b.BN.TrainForward(y); err != nil {
			return nil, fmt.Errorf("block %s: %w", b.Name, err)
		}
		st.y = y
		st.held.add("y", y.Len(), size, false)
		st.held.add("batch_mean", len(st.mean), size, true)
		st.held.add("batch_inv_std", len(st.invStd), size, true)
	case Eval:
		y := b.Conv.Forward(x, b.Weight, b.Bias)
		var err error
		if z, err = b.BN.EvalForward(y); err != nil {
			return nil, fmt.Errorf("block %s: %w", b.Name, err)
		}
		st.y = y
		st.held.add("y", y.Len(), size, false)
	case Tune:
		w, bias, omega, invStd, err := b.fuse()
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", b.Name, err)
		}
		z = b.Conv.Forward(x, w, bias)
		st.fusedWeight, st.omega, st.invStd = w, omega, invStd
		st.held.add("fused_weight", len(w), size, false)
		st.held.add("omega", len(omega), size, true)
		st.held.add("inv_std", len(invStd), size, true)
	case Deploy:
		z = b.Conv.Forward(x, b.Weight, b.Bias)
	default:
		return nil, fmt.Errorf("block %s: unknown mode %d", b.Name, int(b.mode))
	}
	b.saved = st

	if b.Recorder != nil {
		elapsed := time.Since(start)
		b.report(PhaseForward, elapsed)
	}
	return z, nil
}

// Backward returns ∂L/∂x given dz = ∂L/∂z for the last Forward, adds the
// parameter gradients and releases what Forward kept. It fails when no
// forward pass is pending.
func (b *Block[T]) Backward(dz *nn.Tensor[T]) (*nn.Tensor[T], error) {
	st := b.saved
	if st == nil {
		return nil, fmt.Errorf("block %s: backward without a pending forward pass (each Forward allows one Backward)", b.Name)
	}
	var start time.Time
	if b.Recorder != nil {
		start = time.Now()
	}

	var dx *nn.Tensor[T]
	switch b.mode {
	case Train:
		dy := b.BN.TrainBackward(st.y, dz, st.mean, st.invStd)
		dx = b.Conv.Backward(st.x, b.Weight, dy, b.WeightGrad, b.BiasGrad)
	case Eval:
		dy, err := b.BN.EvalBackward(st.y, dz)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", b.Name, err)
		}
		dx = b.Conv.Backward(st.x, b.Weight, dy, b.WeightGrad, b.BiasGrad)
	case Tune:
		fusedGrad := make([]T, len(st.fusedWeight))
		fusedBiasGrad := make([]T, b.Conv.OutChannels)
		dx = b.Conv.Backward(st.x, st.fusedWeight, dz, fusedGrad, fusedBiasGrad)
		out := gradients.Unfused[T]{Weight: b.WeightGrad, Bias: b.BiasGrad}
		if b.BN.Affine {
			out.Gamma, out.Beta = b.BN.GammaGrad, b.BN.BetaGrad
		}
		fold := gradients.Fold[T]{Weight: b.Weight, Bias: b.Bias, Mean: b.BN.RunningMean, InvStd: st.invStd, Omega: st.omega}
		gradients.AddFromFused(&fold, fusedGrad, fusedBiasGrad, &out)
	case Deploy:
		dx = b.Conv.Backward(st.x, b.Weight, dz, b.WeightGrad, b.BiasGrad)
	}
	b.saved = nil

	if b.Recorder != nil {
		elapsed := time.Since(start)
		b.report(PhaseBackward, elapsed)
	}
	return dx, nil
}
