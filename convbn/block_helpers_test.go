package convbn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/convbn-diag/convbn-diag/nn"
)

// blockSpec is the geometry of a test block and its input.
type blockSpec struct {
	name                       string
	in, out, k                 int
	stride, pad, dil, groups   int
	bias, affine               bool
	batch, height, width       int
	negativeGamma, deadChannel bool
}

var gradSpecs = []blockSpec{
	{name: "plain", in: 3, out: 4, k: 3, stride: 1, pad: 1, dil: 1, groups: 1, bias: true, affine: true, batch: 2, height: 5, width: 5},
	{name: "stride2_no_bias", in: 3, out: 4, k: 3, stride: 2, pad: 1, dil: 1, groups: 1, bias: false, affine: true, batch: 2, height: 6, width: 5},
	{name: "dilation2", in: 2, out: 3, k: 3, stride: 1, pad: 2, dil: 2, groups: 1, bias: true, affine: true, batch: 2, height: 5, width: 5},
	{name: "depthwise", in: 4, out: 4, k: 3, stride: 1, pad: 1, dil: 1, groups: 4, bias: true, affine: true, batch: 2, height: 4, width: 4, negativeGamma: true},
	{name: "grouped_pointwise", in: 4, out: 6, k: 1, stride: 1, pad: 0, dil: 1, groups: 2, bias: false, affine: true, batch: 2, height: 3, width: 3},
	{name: "non_affine", in: 3, out: 2, k: 3, stride: 1, pad: 1, dil: 1, groups: 1, bias: true, affine: false, batch: 2, height: 4, width: 4},
}

func uniform(rng *rand.Rand, n int, lo, hi float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = lo + (hi-lo)*rng.Float64()
	}
	return v
}

// newRandomBlock returns a Train-mode block with random parameters and
// running statistics, and a random input. The same seed gives the same
// values for float32 and float64.
func newRandomBlock[T nn.Float](s blockSpec, seed uint64) (*Block[T], *nn.Tensor[T]) {
	rng := rand.New(rand.NewPCG(seed, 7))
	conv := &nn.Conv2d[T]{
		InChannels: s.in, OutChannels: s.out, KernelH: s.k, KernelW: s.k,
		Stride: [2]int{s.stride, s.stride}, Padding: [2]int{s.pad, s.pad},
		Dilation: [2]int{s.dil, s.dil}, Groups: s.groups,
	}
	bn := nn.NewBatchNorm2d[T](s.out)
	if !s.affine {
		bn.Affine = false
		bn.Gamma, bn.Beta, bn.GammaGrad, bn.BetaGrad = nil, nil, nil, nil
	}
	b := NewBlock(s.name, conv, s.bias, bn)
	copy(b.Weight, nn.Convert[T](uniform(rng, len(b.Weight), -1, 1)))
	if s.bias {
		copy(b.Bias, nn.Convert[T](uniform(rng, s.out, -1, 1)))
	}
	copy(bn.RunningMean, nn.Convert[T](uniform(rng, s.out, -0.5, 0.5)))
	copy(bn.RunningVar, nn.Convert[T](uniform(rng, s.out, 0.2, 3)))
	if s.affine {
		copy(bn.Gamma, nn.Convert[T](uniform(rng, s.out, 0.3, 2)))
		copy(bn.Beta, nn.Convert[T](uniform(rng, s.out, -1, 1)))
		if s.negativeGamma {
			bn.Gamma[0] = -bn.Gamma[0]
		}
		if s.deadChannel {
			bn.Gamma[s.out-1] = 0
		}
	}
	x := nn.FromSlice(nn.Convert[T](uniform(rng, s.batch*s.in*s.height*s.width, -1, 1)), s.batch, s.in, s.height, s.width)
	return b, x
}

// cloneBlock returns a deep copy of b's parameters and statistics with
// nothing retained for backward.
func cloneBlock[T nn.Float](b *Block[T]) *Block[T] {
	c := *b
	conv := *b.Conv
	c.Conv = &conv
	c.Weight = append([]T(nil), b.Weight...)
	c.WeightGrad = make([]T, len(b.WeightGrad))
	if b.Bias != nil {
		c.Bias = append([]T(nil), b.Bias...)
		c.BiasGrad = make([]T, len(b.BiasGrad))
	}
	if b.BN != nil {
		bn := *b.BN
		bn.RunningMean = append([]T(nil), b.BN.RunningMean...)
		bn.RunningVar = append([]T(nil), b.BN.RunningVar...)
		if bn.Affine {
			bn.Gamma = append([]T(nil), b.BN.Gamma...)
			bn.Beta = append([]T(nil), b.BN.Beta...)
			bn.GammaGrad = make([]T, len(bn.Gamma))
			bn.BetaGrad = make([]T, len(bn.Beta))
		}
		c.BN = &bn
	}
	c.saved = nil
	return &c
}

// mustSetMode switches the block's mode or fails the test.
func mustSetMode[T nn.Float](t *testing.T, b *Block[T], m Mode) {
	t.Helper()
	if err := b.SetMode(m); err != nil {
		t.Fatalf("set mode %s: %v", m, err)
	}
}

// step runs forward and backward with dz = r and returns z and ∂L/∂x for
// L = Σ z·r.
func step[T nn.Float](t *testing.T, b *Block[T], x *nn.Tensor[T], r []T) (z, dx *nn.Tensor[T]) {
	t.Helper()
	z, err := b.Forward(x)
	if err != nil {
		t.Fatalf("forward: %v", err)
	}
	dx, err = b.Backward(nn.FromSlice(append([]T(nil), r...), z.Shape...))
	if err != nil {
		t.Fatalf("backward: %v", err)
	}
	return z, dx
}

// relErr returns ‖got − want‖ / ‖want‖ in float64, or ‖got − want‖ when
// want is zero.
func relErr[T, U nn.Float](got []T, want []U) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	diff := make([]float64, len(got))
	for i := range got {
		diff[i] = float64(got[i]) - float64(want[i])
	}
	d := nn.Norm(diff)
	if w := nn.Norm(want); w > 0 {
		return d / w
	}
	return d
}

// assertRelErr fails unless relErr(got, want) ≤ tol.
func assertRelErr[T, U nn.Float](t *testing.T, what string, got []T, want []U, tol float64) {
	t.Helper()
	if e := relErr(got, want); !(e <= tol) {
		t.Errorf("%s mismatch: relative error %.3g, want ≤ %.3g", what, e, tol)
	}
}

func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 11)) }
