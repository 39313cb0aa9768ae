package gradients

import (
	"fmt"

	"github.com/convbn-diag/convbn-diag/nn"
)

// Fold describes the per-channel quantities of a ConvBN fold: the unfused
// conv weight W (output channel c is the c-th contiguous row), the conv
// bias b (nil when the conv has none), the running mean μ, the inverse
// standard deviation s and the BN scale ω = γ·s.
type Fold[T nn.Float] struct {
	Weight []T
	Bias   []T // nil when the conv has no bias
	Mean   []T
	InvStd []T
	Omega  []T
}

func (f *Fold[T]) rowLen() int {
	c := len(f.Omega)
	if c == 0 || len(f.Weight)%c != 0 || len(f.Mean) != c || len(f.InvStd) != c || (f.Bias != nil && len(f.Bias) != c) {
		panic(fmt.Sprintf("gradients.Fold: weight of %d elements, %d omegas, %d means, %d inverse deviations, %d biases do not describe one conv", len(f.Weight), c, len(f.Mean), len(f.InvStd), len(f.Bias)))
	}
	return len(f.Weight) / c
}

// Unfused holds the gradients of the unfused parameters. A nil slice is not
// computed: Bias when the conv has no bias, Gamma and Beta when the
// BatchNorm has no affine parameters.
type Unfused[T nn.Float] struct {
	Weight, Bias, Gamma, Beta []T
}

// AddFromFused adds to out the gradients of W, b, γ and β implied by the
// fused gradients fusedWeight = ∂L/∂W' and fusedBias = ∂L/∂b':
// ∂W_c = ω_c·G'_c, ∂b_c = ω_c·g_c, ∂β_c = g_c and
// ∂γ_c = s_c·(⟨W_c, G'_c⟩ + (b_c − μ_c)·g_c), with b_c = 0 when the conv has
// no bias. Sums are accumulated in float64.
func AddFromFused[T nn.Float](f *Fold[T], fusedWeight, fusedBias []T, out *Unfused[T]) {
	k := f.rowLen()
	if len(fusedWeight) != len(f.Weight) || len(fusedBias) != len(f.Omega) {
		panic(fmt.Sprintf("gradients.AddFromFused: fused gradients have %d and %d elements, want %d and %d", len(fusedWeight), len(fusedBias), len(f.Weight), len(f.Omega)))
	}
	for c, omega := range f.Omega {
		gRow := fusedWeight[c*k : (c+1)*k]
		g := fusedBias[c]
		if out.Weight != nil {
			dst := out.Weight[c*k : (c+1)*k]
			for i, v := range gRow {
				dst[i] += omega * v
			}
		}
		if out.Bias != nil {
			out.Bias[c] += omega * g
		}
		if out.Beta != nil {
			out.Beta[c] += g
		}
		if out.Gamma != nil {
			var dot float64
			for i, w := range f.Weight[c*k : (c+1)*k] {
				dot += float64(w) * float64(gRow[i])
			}
			var b float64
			if f.Bias != nil {
				b = float64(f.Bias[c])
			}
			out.Gamma[c] += T(float64(f.InvStd[c]) * (dot + (b-float64(f.Mean[c]))*float64(g)))
		}
	}
}

// FusedWeightGradFromUnfused returns G'_c = ∂L/∂W_c / ω_c for every channel
// with ω_c ≠ 0, and the channels with ω_c = 0 (dead channels), whose G'
// the unfused gradient does not determine and whose rows are left zero.
func FusedWeightGradFromUnfused[T nn.Float](weightGrad, omega []T) (fused []T, dead []int) {
	if len(omega) == 0 || len(weightGrad)%len(omega) != 0 {
		panic(fmt.Sprintf("gradients.FusedWeightGradFromUnfused: %d gradient elements for %d channels", len(weightGrad), len(omega)))
	}
	k := len(weightGrad) / len(omega)
	fused = make([]T, len(weightGrad))
	for c, o := range omega {
		if o == 0 {
			dead = append(dead, c)
			continue
		}
		for i, v := range weightGrad[c*k : (c+1)*k] {
			fused[c*k+i] = v / o
		}
	}
	return fused, dead
}
