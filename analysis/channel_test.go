package analysis

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// foldOracle folds a weight with plain loops over its flat index and
// returns ‖W_c‖, ‖W'_c‖ per output channel, computing W' = ω·W element by
// element. It decomposes each flat index into coordinates, so it shares no
// row logic with the package.
func foldOracle(s pairSpec, omega []float64) (norm, fusedNorm []float64) {
	n := len(omega)
	norm = make([]float64, n)
	fusedNorm = make([]float64, n)
	g := max(s.groups, 1)
	rowLen := 1
	for _, d := range s.shape[1:] {
		rowLen *= d
	}
	inner := rowLen / s.shape[1]
	for k, w := range s.weight {
		i := k / rowLen
		c := i
		if s.transposed {
			j := (k % rowLen) / inner
			c = (i/(s.shape[0]/g))*s.shape[1] + j
		}
		fused := omega[c] * w
		norm[c] += w * w
		fusedNorm[c] += fused * fused
	}
	for c := range norm {
		norm[c] = math.Sqrt(norm[c])
		fusedNorm[c] = math.Sqrt(fusedNorm[c])
	}
	return norm, fusedNorm
}

func TestChannelFoldMatchesLoops(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name       string
		shape      []int
		groups     int
		transposed bool
		out        int
	}{
		{"conv2d", []int{6, 3, 3, 3}, 1, false, 6},
		{"conv1d", []int{5, 4, 7}, 1, false, 5},
		{"grouped", []int{8, 2, 3, 3}, 4, false, 8},
		{"depthwise", []int{6, 1, 3, 3}, 6, false, 6},
		{"transposed", []int{4, 6, 2, 2}, 1, true, 6},
		{"transposed grouped", []int{6, 2, 3, 3}, 3, true, 6},
		{"transposed depthwise", []int{4, 1, 3}, 4, true, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := randomSpec(rng, tc.shape, tc.groups, tc.transposed, tc.out)
			opts := DefaultOptions()
			opts.WeightNorms = true
			opts.ChunkElements = 7 // forces several chunks
			l, err := AnalyzePair("test.pth", s.pair(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if l.NumChannels() != tc.out {
				t.Fatalf("channel count mismatch: got %d, want %d", l.NumChannels(), tc.out)
			}

			omega := make([]float64, tc.out)
			for c := range omega {
				omega[c] = s.gamma[c] / math.Sqrt(s.variance[c]+s.eps)
			}
			norm, fusedNorm := foldOracle(s, omega)
			for c, ch := range l.Channels {
				fusedBias := s.beta[c] + omega[c]*(s.bias[c]-s.mean[c])
				checks := []struct {
					what      string
					got, want float64
				}{
					{"omega", ch.Omega, omega[c]},
					{"fused bias", ch.FusedBias, fusedBias},
					{"weight norm", ch.WeightNorm, norm[c]},
					{"fused weight norm", ch.FusedWeightNorm, fusedNorm[c]},
					{"distortion sgd", ch.DistortionSGD, 1 / (omega[c] * omega[c])},
					{"distortion adam", ch.DistortionAdam, 1 / math.Abs(omega[c])},
					{"log terms", ch.LogAbsGamma + ch.LogInvStd, math.Log(math.Abs(omega[c]))},
				}
				for _, k := range checks {
					if !relClose(k.got, k.want, 1e-12, 1e-14) {
						t.Errorf("channel %d %s mismatch: got %v, want %v", c, k.what, k.got, k.want)
					}
				}
			}
		})
	}
}

func TestChannelNonAffineNoBias(t *testing.T) {
	s := pairSpec{
		shape:    []int{2, 1, 1, 1},
		weight:   []float64{3, -4},
		mean:     []float64{0.5, -2},
		variance: []float64{3, 0.25},
		eps:      1,
	}
	opts := DefaultOptions()
	opts.WeightNorms = true
	l, err := AnalyzePair("test.pth", s.pair(), opts)
	if err != nil {
		t.Fatal(err)
	}
	// γ = 1, β = 0, b = 0: ω = 1/√(σ²+ε) = 1/2 and 1/√1.25; b' = −ω·μ.
	wantOmega := []float64{0.5, 1 / math.Sqrt(1.25)}
	for c, ch := range l.Channels {
		if ch.Gamma != 1 || ch.Beta != 0 || ch.HasConvBias {
			t.Errorf("channel %d defaults mismatch: got γ=%v β=%v bias=%v, want 1, 0, false", c, ch.Gamma, ch.Beta, ch.HasConvBias)
		}
		if !relClose(ch.Omega, wantOmega[c], 1e-15, 0) {
			t.Errorf("channel %d omega mismatch: got %v, want %v", c, ch.Omega, wantOmega[c])
		}
		if want := -wantOmega[c] * s.mean[c]; !relClose(ch.FusedBias, want, 1e-15, 0) {
			t.Errorf("channel %d fused bias mismatch: got %v, want %v", c, ch.FusedBias, want)
		}
	}
	if got := l.Channels[1].FusedWeightNorm; !relClose(got, 4/math.Sqrt(1.25), 1e-15, 0) {
		t.Errorf("fused weight norm mismatch: got %v, want %v", got, 4/math.Sqrt(1.25))
	}
}

func TestChannelFlags(t *testing.T) {
	inf, nan := math.Inf(1), math.NaN()
	s := pairSpec{
		shape:  []int{7, 1},
		weight: []float64{1, 1, 1, nan, 1, 1, 1e300},
		bias:   []float64{0, 0, 0, 0, inf, 0, 0},
		gamma:  []float64{0, 1, 1, 1, 1, 1e-200, 1e200},
		beta:   []float64{0, 0, 0, 0, 0, 0, 0},
		mean:   []float64{0, 0, 0, 0, 0, 0, 0},
		//            dead  neg   noω  weight bias tiny-ω  huge ‖W'‖
		variance: []float64{1, -5e-6, -2, 1, 1, 1e-9, 1},
		eps:      1e-5,
	}
	opts := DefaultOptions()
	opts.WeightNorms = true
	l, err := AnalyzePair("test.pth", s.pair(), opts)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]Flag{
		{FlagDead},
		{FlagNegativeVar},
		{FlagNegativeVar, FlagNoOmega},
		{FlagNonFiniteWeight},
		{FlagNonFiniteInput},
		{FlagTinyVariance, FlagOverflow},
		{FlagOverflow},
	}
	for c, ch := range l.Channels {
		got := slices.Clone(ch.Flags)
		slices.Sort(got)
		w := slices.Clone(want[c])
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("channel %d flags mismatch: got %v, want %v", c, got, w)
		}
	}

	if d := l.Channels[0].DistortionSGD; !math.IsInf(d, 1) {
		t.Errorf("dead channel distortion mismatch: got %v, want +Inf", d)
	}
	if o := l.Channels[2].Omega; !math.IsNaN(o) {
		t.Errorf("no-omega channel omega mismatch: got %v, want NaN", o)
	}
	if st := l.Stats; st.Dead != 1 || st.FlagCounts[FlagNegativeVar] != 2 || st.FlagCounts[FlagOverflow] != 2 {
		t.Errorf("flag counts mismatch: got dead=%d %v", st.Dead, st.FlagCounts)
	}
}

func TestChannelTinyVarianceRatio(t *testing.T) {
	s := pairSpec{
		shape:    []int{3, 1},
		weight:   []float64{1, 1, 1},
		mean:     []float64{0, 0, 0},
		variance: []float64{0.99e-3, 1e-3, 0},
		eps:      1e-3,
	}
	l, err := AnalyzePair("test.pth", s.pair(), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	for c, want := range []bool{true, false, true} {
		if got := l.Channels[c].HasFlag(FlagTinyVariance); got != want {
			t.Errorf("channel %d tiny-variance flag mismatch: got %v, want %v", c, got, want)
		}
	}
}

func TestNonFiniteStatisticsLeaveStats(t *testing.T) {
	channels := []Channel{
		{Index: 0, Gamma: math.Inf(1), RunningVar: 1, Eps: 1e-5},
		{Index: 1, Gamma: 1, RunningVar: math.NaN(), Eps: 1e-5},
		{Index: 2, Gamma: 0.5, RunningVar: 1, Eps: 1e-5},
	}
	for i := range channels {
		computeChannel(&channels[i], 1)
	}
	if !channels[1].HasFlag(FlagNoOmega) {
		t.Errorf("NaN running_var: flags %v, want %s", channels[1].Flags, FlagNoOmega)
	}
	s := layerStats(channels, SGD)
	wantD := 1 / (0.5 * 0.5 / (1 + 1e-5))
	if math.Abs(s.MedianDistortionSGD-wantD) > 1e-12*wantD || math.Abs(s.MaxDistortionSGD-wantD) > 1e-12*wantD {
		t.Errorf("median and max D_SGD: got %g and %g, want %g from the one finite channel", s.MedianDistortionSGD, s.MaxDistortionSGD, wantD)
	}
	if s.AtMostTenth != 0 {
		t.Errorf("D ≤ 0.1 count: got %d, want 0 (γ = ∞ must not count as D = 0)", s.AtMostTenth)
	}
}
