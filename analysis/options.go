package analysis

import "fmt"

// Optimizer selects which learning-rate distortion drives the risk level
// and the distortion counts of a layer.
type Optimizer string

// Optimizers whose Deploy-mode distortion the analysis computes.
const (
	// SGD is plain SGD or SGD with momentum: D = 1/ω².
	SGD Optimizer = "sgd"
	// Adam is the Adam family (Adam, AdamW): D ≈ 1/|ω|.
	Adam Optimizer = "adam"
)

// ParseOptimizer returns the Optimizer named by s ("sgd" or "adam").
func ParseOptimizer(s string) (Optimizer, error) {
	switch Optimizer(s) {
	case SGD, Adam:
		return Optimizer(s), nil
	}
	return "", fmt.Errorf("invalid optimizer %q: use sgd or adam", s)
}

// Thresholds are the distortion limits behind a layer's risk level and its
// distortion counts. D is the selected optimizer's distortion of a channel:
// how many times larger a Deploy-mode step on W'_c is than the
// Eval/Tune-mode step on the same coordinates.
//
// Overshoot compares the layer's largest finite D with OvershootLow,
// OvershootMedium and OvershootHigh (D at or above a limit reaches that
// level), because a single channel that moves too far can make training
// diverge. Stall compares the layer's median finite D with StallLow,
// StallMedium and StallHigh (D at or below a limit reaches that level),
// because a few slow channels do little harm while a layer whose typical
// channel barely moves does.
type Thresholds struct {
	OvershootLow    float64
	OvershootMedium float64
	OvershootHigh   float64

	StallLow    float64
	StallMedium float64
	StallHigh   float64

	// TinyVarianceRatio flags a channel whose running variance is below
	// TinyVarianceRatio·ε, where ε rather than the data sets ω.
	TinyVarianceRatio float64
}

// DefaultThresholds returns the thresholds used unless the caller sets
// others: overshoot at D ≥ 2, 10 and 100, stall at median D ≤ 0.5, 0.1 and
// 0.01, and tiny variance below 1·ε.
//
// NOTE: these limits are judgment calls: no training run has calibrated
// which D makes Deploy training diverge or stall in practice.
func DefaultThresholds() Thresholds {
	return Thresholds{
		OvershootLow:      2,
		OvershootMedium:   10,
		OvershootHigh:     100,
		StallLow:          0.5,
		StallMedium:       0.1,
		StallHigh:         0.01,
		TinyVarianceRatio: 1,
	}
}

// Validate reports whether the thresholds are ordered: 1 ≤ OvershootLow ≤
// OvershootMedium ≤ OvershootHigh, 0 < StallHigh ≤ StallMedium ≤ StallLow ≤
// 1, and TinyVarianceRatio ≥ 0.
func (t Thresholds) Validate() error {
	if !(1 <= t.OvershootLow && t.OvershootLow <= t.OvershootMedium && t.OvershootMedium <= t.OvershootHigh) {
		return fmt.Errorf("invalid overshoot thresholds %g, %g, %g: they must satisfy 1 ≤ low ≤ medium ≤ high", t.OvershootLow, t.OvershootMedium, t.OvershootHigh)
	}
	if !(0 < t.StallHigh && t.StallHigh <= t.StallMedium && t.StallMedium <= t.StallLow && t.StallLow <= 1) {
		return fmt.Errorf("invalid stall thresholds %g, %g, %g: they must satisfy 1 ≥ low ≥ medium ≥ high > 0", t.StallLow, t.StallMedium, t.StallHigh)
	}
	if !(t.TinyVarianceRatio >= 0) {
		return fmt.Errorf("invalid tiny-variance ratio %g: it must be zero or positive", t.TinyVarianceRatio)
	}
	return nil
}

// Options control an analysis. The zero value is not usable; start from
// DefaultOptions.
type Options struct {
	// Optimizer selects D_SGD or D_Adam for the risk level and the counts.
	Optimizer  Optimizer
	Thresholds Thresholds

	// WeightNorms requests ‖W_c‖ and ‖W'_c‖, which read every conv weight.
	// Without it only the BatchNorm vectors, the conv shapes and the conv
	// biases are read.
	WeightNorms bool

	// ChunkElements bounds how many weight elements are read at once when
	// weight norms are computed; 0 means DefaultChunkElements.
	ChunkElements int
}

// DefaultChunkElements is the default number of weight elements read per
// chunk (512 KiB of float64, which stays in cache and avoids page faults
// from large fresh buffers).
const DefaultChunkElements = 1 << 16

// DefaultOptions returns SGD, the default thresholds and no weight norms.
func DefaultOptions() Options {
	return Options{Optimizer: SGD, Thresholds: DefaultThresholds()}
}

// Validate reports whether the options are usable.
func (o Options) Validate() error {
	if _, err := ParseOptimizer(string(o.Optimizer)); err != nil {
		return err
	}
	if o.ChunkElements < 0 {
		return fmt.Errorf("invalid chunk size %d: it must be zero or positive", o.ChunkElements)
	}
	return o.Thresholds.Validate()
}
