package analysis

import "math"

// Flag names a condition found on a channel. Flags are also the reasons
// reports give for numbers that are not finite.
type Flag string

// Channel flags.
const (
	// FlagDead marks γ = 0: ω = 0, so both distortions are infinite.
	FlagDead Flag = "dead"
	// FlagNonFiniteInput marks a γ, β, μ, σ², ε or conv bias that is
	// infinite or NaN in the file.
	FlagNonFiniteInput Flag = "non-finite-input"
	// FlagNegativeGamma marks γ < 0, so ω < 0. The sign does not change
	// either distortion, but the fold flips the sign of W'_c.
	FlagNegativeGamma Flag = "negative-gamma"
	// FlagNegativeVar marks a negative running variance.
	FlagNegativeVar Flag = "negative-running-var"
	// FlagNoOmega marks σ² + ε ≤ 0, where s and ω do not exist.
	FlagNoOmega Flag = "no-omega"
	// FlagTinyVariance marks σ² < TinyVarianceRatio·ε, where ε rather than
	// the data sets ω.
	FlagTinyVariance Flag = "tiny-variance"
	// FlagNonFiniteWeight marks a conv weight row with an infinite or NaN
	// element, so its norms are not finite.
	FlagNonFiniteWeight Flag = "non-finite-weight"
	// FlagOverflow marks a derived value that left the float64 range
	// although every input was finite, such as 1/ω² for |ω| < 1e-154.
	FlagOverflow Flag = "overflow"
)

// Channel holds the per-output-channel quantities of one ConvBN block, in
// the notation s = 1/√(σ²+ε), ω = γ·s, W' = ω·W, b' = β + ω(b − μ).
type Channel struct {
	Index int

	Gamma       float64 // γ; 1 for a non-affine BatchNorm
	Beta        float64 // β; 0 for a non-affine BatchNorm
	RunningMean float64 // μ
	RunningVar  float64 // σ²
	Eps         float64 // ε

	InvStd float64 // s = 1/√(σ²+ε); NaN when σ²+ε ≤ 0
	Omega  float64 // ω = γ·s

	// ConvBias is b_c; HasConvBias is false when the conv has no bias, in
	// which case b = 0 enters the fold.
	ConvBias    float64
	HasConvBias bool

	// FusedBias is b' = β + ω(b − μ).
	FusedBias float64

	DistortionSGD  float64 // D_SGD = 1/ω²
	DistortionAdam float64 // D_Adam = 1/|ω|

	LogAbsGamma     float64 // log|γ|
	LogInvStd       float64 // −½·log(σ²+ε), so log|ω| = LogAbsGamma + LogInvStd
	WeightNorm      float64 // ‖W_c‖, valid when HasWeightNorms
	FusedWeightNorm float64 // ‖W'_c‖ = |ω|·‖W_c‖, valid when HasWeightNorms
	HasWeightNorms  bool

	Flags []Flag
}

// HasFlag reports whether the channel carries flag f.
func (c *Channel) HasFlag(f Flag) bool {
	for _, g := range c.Flags {
		if g == f {
			return true
		}
	}
	return false
}

func (c *Channel) addFlag(f Flag) {
	if !c.HasFlag(f) {
		c.Flags = append(c.Flags, f)
	}
}

// Distortion returns the channel's distortion for optimizer opt.
func (c *Channel) Distortion(opt Optimizer) float64 {
	if opt == Adam {
		return c.DistortionAdam
	}
	return c.DistortionSGD
}

func isFinite(x float64) bool {
	return !math.IsInf(x, 0) && !math.IsNaN(x)
}

// computeChannel fills every quantity of c that depends only on the
// BatchNorm vectors, ε and the conv bias, which the caller has set.
func computeChannel(c *Channel, tinyVarianceRatio float64) {
	inputsFinite := isFinite(c.Gamma) && isFinite(c.Beta) && isFinite(c.RunningMean) && isFinite(c.RunningVar) && isFinite(c.Eps)
	if c.HasConvBias && !isFinite(c.ConvBias) {
		inputsFinite = false
	}
	if !inputsFinite {
		c.addFlag(FlagNonFiniteInput)
	}
	if c.Gamma == 0 {
		c.addFlag(FlagDead)
	}
	if c.Gamma < 0 {
		c.addFlag(FlagNegativeGamma)
	}
	if c.RunningVar < 0 {
		c.addFlag(FlagNegativeVar)
	}

	variance := c.RunningVar + c.Eps
	if !(variance > 0) { // also true for a NaN variance
		c.addFlag(FlagNoOmega)
		c.InvStd = math.NaN()
		c.LogInvStd = math.NaN()
	} else {
		c.InvStd = 1 / math.Sqrt(variance)
		c.LogInvStd = -0.5 * math.Log(variance)
	}
	if c.RunningVar >= 0 && c.RunningVar < tinyVarianceRatio*c.Eps {
		c.addFlag(FlagTinyVariance)
	}

	c.Omega = c.Gamma * c.InvStd
	c.LogAbsGamma = math.Log(math.Abs(c.Gamma))
	c.FusedBias = c.Beta + c.Omega*(c.ConvBias-c.RunningMean)
	c.DistortionSGD = 1 / (c.Omega * c.Omega)
	c.DistortionAdam = 1 / math.Abs(c.Omega)

	// A dead channel's infinite D is expected and explained by FlagDead.
	// Anything else non-finite with finite inputs and an ω is an overflow.
	if inputsFinite && !c.HasFlag(FlagNoOmega) {
		derived := []float64{c.InvStd, c.Omega, c.FusedBias}
		if c.Gamma != 0 {
			derived = append(derived, c.DistortionSGD, c.DistortionAdam)
		}
		for _, v := range derived {
			if !isFinite(v) {
				c.addFlag(FlagOverflow)
				break
			}
		}
	}
}

// setWeightNorm stores ‖W_c‖, NaN when the row has a non-finite element,
// and derives ‖W'_c‖ = |ω|·‖W_c‖.
func (c *Channel) setWeightNorm(norm float64) {
	c.HasWeightNorms = true
	c.WeightNorm = norm
	c.FusedWeightNorm = math.Abs(c.Omega) * norm
	if math.IsNaN(norm) {
		c.addFlag(FlagNonFiniteWeight)
		return
	}
	if !isFinite(c.FusedWeightNorm) && isFinite(c.Omega) {
		c.addFlag(FlagOverflow)
	}
}
