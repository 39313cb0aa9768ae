package analysis

import (
	"math"
	"testing"
)

// layerWithOmegas returns a non-affine layer whose channels have the given
// ω exactly: γ = ω, σ² = 1 − ε with ε = 2⁻¹⁰, so σ² + ε = 1.
func layerWithOmegas(t *testing.T, omegas []float64, opts Options) *Layer {
	t.Helper()
	eps := 1.0 / 1024
	n := len(omegas)
	s := pairSpec{
		shape:    []int{n, 1},
		weight:   make([]float64, n),
		gamma:    omegas,
		beta:     make([]float64, n),
		mean:     make([]float64, n),
		variance: make([]float64, n),
		eps:      eps,
	}
	for c := range s.variance {
		s.variance[c] = 1 - eps
	}
	l, err := AnalyzePair("test.pth", s.pair(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestRiskThresholdEdges(t *testing.T) {
	// ω = (1 ∓ 1e-9)/√threshold puts D_SGD = 1/ω² just beside each edge.
	justAbove := func(d float64) float64 { return 1 / math.Sqrt(d) * (1 - 1e-9) }
	justBelow := func(d float64) float64 { return 1 / math.Sqrt(d) * (1 + 1e-9) }
	cases := []struct {
		name   string
		omegas []float64
		want   Risk
	}{
		{"neutral", []float64{1, 1}, Risk{LevelNone, SideNone, LevelNone, LevelNone}},
		{"max above 2", []float64{1, justAbove(2)}, Risk{LevelLow, SideOvershoot, LevelLow, LevelNone}},
		{"max below 2", []float64{1, justBelow(2)}, Risk{LevelNone, SideNone, LevelNone, LevelNone}},
		{"max above 10", []float64{1, justAbove(10)}, Risk{LevelMedium, SideOvershoot, LevelMedium, LevelNone}},
		{"max below 10", []float64{1, justBelow(10)}, Risk{LevelLow, SideOvershoot, LevelLow, LevelNone}},
		{"max above 100", []float64{1, justAbove(100)}, Risk{LevelHigh, SideOvershoot, LevelHigh, LevelNone}},
		{"max below 100", []float64{1, justBelow(100)}, Risk{LevelMedium, SideOvershoot, LevelMedium, LevelNone}},
		// 1/0.1² rounds to 99.99999999999998, which still counts as 100.
		{"max 100 rounded", []float64{1, 0.1}, Risk{LevelHigh, SideOvershoot, LevelHigh, LevelNone}},
		{"median 0.1 rounded", []float64{math.Sqrt(10), math.Sqrt(10)}, Risk{LevelMedium, SideStall, LevelNone, LevelMedium}},
		{"median below 0.5", []float64{justBelow(0.5), justBelow(0.5)}, Risk{LevelLow, SideStall, LevelNone, LevelLow}},
		{"median above 0.5", []float64{justAbove(0.5), justAbove(0.5)}, Risk{LevelNone, SideNone, LevelNone, LevelNone}},
		{"median below 0.1", []float64{justBelow(0.1), justBelow(0.1)}, Risk{LevelMedium, SideStall, LevelNone, LevelMedium}},
		{"median above 0.1", []float64{justAbove(0.1), justAbove(0.1)}, Risk{LevelLow, SideStall, LevelNone, LevelLow}},
		{"median below 0.01", []float64{justBelow(0.01), justBelow(0.01)}, Risk{LevelHigh, SideStall, LevelNone, LevelHigh}},
		{"median above 0.01", []float64{justAbove(0.01), justAbove(0.01)}, Risk{LevelMedium, SideStall, LevelNone, LevelMedium}},
		// Medians of {8, 8, 1/64}: D = {1/64, 1/64, 64}, median 1/64 ≤ 0.1
		// and max 64 ≥ 10, so both sides are medium.
		{"both medium", []float64{8, 8, 0.125}, Risk{LevelMedium, SideBoth, LevelMedium, LevelMedium}},
		{"stall wins", []float64{16, 16, 0.5}, Risk{LevelHigh, SideStall, LevelLow, LevelHigh}},
		{"dead only", []float64{0, 0}, Risk{LevelNone, SideNone, LevelNone, LevelNone}},
	}
	for _, tc := range cases {
		l := layerWithOmegas(t, tc.omegas, DefaultOptions())
		if l.Risk != tc.want {
			t.Errorf("%s: risk mismatch: got %+v, want %+v (max D %v, median D %v)", tc.name, l.Risk, tc.want, l.Stats.MaxDistortionSGD, l.Stats.MedianDistortionSGD)
		}
	}
}

func TestRiskAtExactEdges(t *testing.T) {
	// Powers of two make D_SGD = 1/ω² exact, so D sits on each edge; an
	// edge value itself reaches its level.
	opts := DefaultOptions()
	opts.Thresholds = Thresholds{
		OvershootLow: 4, OvershootMedium: 16, OvershootHigh: 64,
		StallLow: 0.25, StallMedium: 1.0 / 16, StallHigh: 1.0 / 64,
	}
	cases := []struct {
		omegas []float64
		want   Level
	}{
		{[]float64{1, 0.5}, LevelLow},
		{[]float64{1, 0.25}, LevelMedium},
		{[]float64{1, 0.125}, LevelHigh},
		{[]float64{2, 2}, LevelLow},
		{[]float64{4, 4}, LevelMedium},
		{[]float64{8, 8}, LevelHigh},
	}
	for _, tc := range cases {
		l := layerWithOmegas(t, tc.omegas, opts)
		if l.Risk.Level != tc.want {
			t.Errorf("ω %v: level mismatch: got %s, want %s (max D %v, median D %v)", tc.omegas, l.Risk.Level, tc.want, l.Stats.MaxDistortionSGD, l.Stats.MedianDistortionSGD)
		}
	}
}

func TestRiskAdamAndCustomThresholds(t *testing.T) {
	// ω = 0.25: D_SGD = 16 (medium), D_Adam = 4 (low).
	omegas := []float64{1, 0.25}
	if got := layerWithOmegas(t, omegas, DefaultOptions()).Risk.Level; got != LevelMedium {
		t.Errorf("sgd level mismatch: got %s, want medium", got)
	}
	opts := DefaultOptions()
	opts.Optimizer = Adam
	l := layerWithOmegas(t, omegas, opts)
	if l.Risk.Level != LevelLow {
		t.Errorf("adam level mismatch: got %s, want low", l.Risk.Level)
	}
	if l.Stats.AtLeast10 != 0 {
		t.Errorf("adam count D ≥ 10 mismatch: got %d, want 0", l.Stats.AtLeast10)
	}

	opts = DefaultOptions()
	opts.Thresholds.OvershootHigh = 16
	if got := layerWithOmegas(t, omegas, opts).Risk.Level; got != LevelHigh {
		t.Errorf("custom threshold level mismatch: got %s, want high", got)
	}
}

func TestLayerStatsCounts(t *testing.T) {
	// D_SGD = 1/ω²: 0.25, 1, 16, 256, 1024, then a dead channel.
	l := layerWithOmegas(t, []float64{2, -1, 0.25, 0.0625, 0.03125, 0}, DefaultOptions())
	st := l.Stats
	if st.OmegaChannels != 5 || st.Dead != 1 {
		t.Errorf("channel counts mismatch: got %d with ω, %d dead, want 5 and 1", st.OmegaChannels, st.Dead)
	}
	if st.AtLeast10 != 3 || st.AtLeast100 != 2 || st.AtMostTenth != 0 {
		t.Errorf("distortion counts mismatch: got ≥10 %d, ≥100 %d, ≤0.1 %d, want 3, 2, 0", st.AtLeast10, st.AtLeast100, st.AtMostTenth)
	}
	checks := []struct {
		what      string
		got, want float64
	}{
		{"min |ω|", st.MinAbsOmega, 0.03125},
		{"median |ω|", st.MedianAbsOmega, 0.25},
		{"max |ω|", st.MaxAbsOmega, 2},
		{"geometric mean |ω|", st.GeoMeanAbsOmega, math.Pow(2*1*0.25*0.0625*0.03125, 0.2)},
		{"max D_SGD", st.MaxDistortionSGD, 1024},
		{"median D_SGD", st.MedianDistortionSGD, 16},
		{"max D_Adam", st.MaxDistortionAdam, 32},
		{"median D_Adam", st.MedianDistortionAdam, 4},
	}
	for _, k := range checks {
		if !relClose(k.got, k.want, 1e-12, 0) {
			t.Errorf("%s mismatch: got %v, want %v", k.what, k.got, k.want)
		}
	}
	if st.ArgMaxDistortion != 4 {
		t.Errorf("argmax mismatch: got %d, want 4", st.ArgMaxDistortion)
	}
}

func TestSummarizeModel(t *testing.T) {
	a := layerWithOmegas(t, []float64{1, 0.05}, DefaultOptions()) // high overshoot, D 400
	a.Conv = "a"
	b := layerWithOmegas(t, []float64{20, 20, 0}, DefaultOptions()) // high stall, one dead
	b.Conv = "b"
	c := layerWithOmegas(t, []float64{1, 1}, DefaultOptions())
	c.Conv = "c"
	s := Summarize([]*Layer{a, b, c}, SGD)
	if s.Layers != 3 || s.Channels != 7 || s.Dead != 1 {
		t.Errorf("counts mismatch: got %d layers, %d channels, %d dead, want 3, 7, 1", s.Layers, s.Channels, s.Dead)
	}
	if s.RiskyOvershoot != 1 || s.RiskyStall != 1 || s.RiskCounts[LevelNone] != 1 {
		t.Errorf("risky layers mismatch: got overshoot %d, stall %d, none %d", s.RiskyOvershoot, s.RiskyStall, s.RiskCounts[LevelNone])
	}
	if s.MaxLayer != "a" || s.MaxChannel != 1 || !relClose(s.MaxDistortion, 400, 1e-12, 0) {
		t.Errorf("largest distortion mismatch: got %v at %s/%d, want 400 at a/1", s.MaxDistortion, s.MaxLayer, s.MaxChannel)
	}
	if s.MinLayer != "b" || !relClose(s.MinDistortion, 1.0/400, 1e-12, 0) {
		t.Errorf("smallest distortion mismatch: got %v at %s, want 0.0025 at b", s.MinDistortion, s.MinLayer)
	}
}

func TestThresholdsValidate(t *testing.T) {
	bad := DefaultThresholds()
	bad.OvershootMedium = 1000
	if bad.Validate() == nil {
		t.Error("unordered overshoot thresholds accepted")
	}
	bad = DefaultThresholds()
	bad.StallHigh = 0
	if bad.Validate() == nil {
		t.Error("zero stall threshold accepted")
	}
	if _, err := ParseOptimizer("rmsprop"); err == nil {
		t.Error("unknown optimizer accepted")
	}
}

func TestRiskInvalidStatistics(t *testing.T) {
	channels := []Channel{
		{Index: 0, Gamma: 1, RunningVar: math.NaN(), Eps: 1e-5},
		{Index: 1, Gamma: 1, RunningVar: -1, Eps: 1e-5},
	}
	for i := range channels {
		computeChannel(&channels[i], 1)
	}
	s := layerStats(channels, SGD)
	r := assessRisk(&s, DefaultOptions())
	if r.Level != LevelHigh || r.Side != SideInvalid {
		t.Errorf("risk of a layer without any finite ω: got %v, want high (invalid)", r)
	}

	dead := []Channel{{Index: 0, Gamma: 0, RunningVar: 1, Eps: 1e-5}}
	computeChannel(&dead[0], 1)
	s = layerStats(dead, SGD)
	if r := assessRisk(&s, DefaultOptions()); r.Level != LevelNone {
		t.Errorf("risk of an all-dead layer: got %v, want none", r)
	}
}
