package analysis

// Level is a layer's risk level under Deploy-mode training.
type Level string

// Risk levels, lowest first.
const (
	LevelNone   Level = "none"
	LevelLow    Level = "low"
	LevelMedium Level = "medium"
	LevelHigh   Level = "high"
)

// Rank returns 0 for none up to 3 for high, so levels compare as numbers.
func (l Level) Rank() int {
	switch l {
	case LevelLow:
		return 1
	case LevelMedium:
		return 2
	case LevelHigh:
		return 3
	}
	return 0
}

// Side is the direction in which Deploy mode distorts training.
type Side string

// Sides of a risk. SideNone goes with LevelNone.
const (
	SideNone Side = ""
	// SideOvershoot: Deploy steps are larger than Eval/Tune steps (D > 1),
	// so Deploy training can diverge at a learning rate that suits Eval.
	SideOvershoot Side = "overshoot"
	// SideStall: Deploy steps are smaller (D < 1), so Deploy barely trains.
	SideStall Side = "stall"
	// SideBoth: the overshoot and stall levels are equal and not none.
	SideBoth Side = "both"
	// SideInvalid: no channel has a finite ω because the statistics are
	// not finite or σ²+ε ≤ 0, so the layer cannot be folded at all.
	SideInvalid Side = "invalid"
)

// Risk is a layer's risk level with the side that sets it, and the level
// each side reaches on its own.
type Risk struct {
	Level Level
	Side  Side

	Overshoot Level
	Stall     Level
}

// String returns "none", or the level followed by the side in brackets,
// such as "high (overshoot)".
func (r Risk) String() string {
	if r.Level == LevelNone || r.Level == "" {
		return string(LevelNone)
	}
	return string(r.Level) + " (" + string(r.Side) + ")"
}

// assessRisk applies the thresholds to a layer's largest finite distortion
// (overshoot) and median finite distortion (stall); see Thresholds. A
// layer in which no channel has a finite ω because of non-finite
// statistics or σ²+ε ≤ 0 is rated high with side invalid, because folding
// it gives no usable weights. A layer whose channels are all dead has risk
// none, and its flags give the reason.
func assessRisk(s *LayerStats, opts Options) Risk {
	t := opts.Thresholds
	maxD, medianD := s.Max(opts.Optimizer), s.Median(opts.Optimizer)

	r := Risk{Level: LevelNone, Overshoot: LevelNone, Stall: LevelNone}
	if s.OmegaChannels == 0 && (s.FlagCounts[FlagNonFiniteInput] > 0 || s.FlagCounts[FlagNoOmega] > 0) {
		r.Level, r.Side = LevelHigh, SideInvalid
		return r
	}
	switch {
	case atLeast(maxD, t.OvershootHigh):
		r.Overshoot = LevelHigh
	case atLeast(maxD, t.OvershootMedium):
		r.Overshoot = LevelMedium
	case atLeast(maxD, t.OvershootLow):
		r.Overshoot = LevelLow
	}
	switch {
	case atMost(medianD, t.StallHigh):
		r.Stall = LevelHigh
	case atMost(medianD, t.StallMedium):
		r.Stall = LevelMedium
	case atMost(medianD, t.StallLow):
		r.Stall = LevelLow
	}

	switch o, st := r.Overshoot.Rank(), r.Stall.Rank(); {
	case o == 0 && st == 0:
	case o > st:
		r.Level, r.Side = r.Overshoot, SideOvershoot
	case st > o:
		r.Level, r.Side = r.Stall, SideStall
	default:
		r.Level, r.Side = r.Overshoot, SideBoth
	}
	return r
}

// edgeTolerance is the relative slack of threshold comparisons. It keeps
// a distortion that is a threshold up to rounding on the threshold's side:
// γ = 0.2 and σ² + ε = 4 give ω = 0.1 but 1/ω² = 99.99999999999998.
const edgeTolerance = 1e-12

// atLeast reports whether d ≥ limit up to edgeTolerance.
func atLeast(d, limit float64) bool { return d >= limit*(1-edgeTolerance) }

// atMost reports whether d ≤ limit up to edgeTolerance.
func atMost(d, limit float64) bool { return d <= limit*(1+edgeTolerance) }
