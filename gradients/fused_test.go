package gradients

import (
	"math"
	"math/rand/v2"
	"testing"
)

func uniform(rng *rand.Rand, n int, lo, hi float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = lo + (hi-lo)*rng.Float64()
	}
	return v
}

// TestAddFromFusedMatchesFiniteDifferences checks the chain-rule relations
// against central differences of L = ⟨G', W'⟩ + ⟨g, b'⟩, where W' and b'
// are recomputed from W, b, γ, β by the fold.
func TestAddFromFusedMatchesFiniteDifferences(t *testing.T) {
	const channels, k = 4, 6
	rng := rand.New(rand.NewPCG(1, 2))
	w := uniform(rng, channels*k, -1, 1)
	b := uniform(rng, channels, -1, 1)
	gamma := uniform(rng, channels, 0.2, 2)
	gamma[2] = -gamma[2]
	beta := uniform(rng, channels, -1, 1)
	mean := uniform(rng, channels, -0.5, 0.5)
	variance := uniform(rng, channels, 0.1, 3)
	const eps = 1e-5
	gw := uniform(rng, channels*k, -1, 1)
	gb := uniform(rng, channels, -1, 1)

	loss := func() (float64, error) {
		var sum float64
		for c := range channels {
			omega := gamma[c] / math.Sqrt(variance[c]+eps)
			for i := range k {
				sum += gw[c*k+i] * omega * w[c*k+i]
			}
			sum += gb[c] * (beta[c] + omega*(b[c]-mean[c]))
		}
		return sum, nil
	}

	invStd := make([]float64, channels)
	omega := make([]float64, channels)
	for c := range channels {
		invStd[c] = 1 / math.Sqrt(variance[c]+eps)
		omega[c] = gamma[c] * invStd[c]
	}
	out := Unfused[float64]{
		Weight: make([]float64, channels*k), Bias: make([]float64, channels),
		Gamma: make([]float64, channels), Beta: make([]float64, channels),
	}
	AddFromFused(&Fold[float64]{Weight: w, Bias: b, Mean: mean, InvStd: invStd, Omega: omega}, gw, gb, &out)

	rep, err := Check(loss, []Variable{
		{Name: "weight", Value: w, Grad: out.Weight},
		{Name: "bias", Value: b, Grad: out.Bias},
		{Name: "gamma", Value: gamma, Grad: out.Gamma},
		{Name: "beta", Value: beta, Grad: out.Beta},
	}, 1e-6, DefaultTolerance)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rep.Mismatches {
		t.Errorf("gradient mismatch: %v", m)
	}
	if rep.Checked != channels*k+3*channels {
		t.Errorf("checked %d elements, want %d", rep.Checked, channels*k+3*channels)
	}
}

func TestFusedWeightGradFromUnfusedDeadChannel(t *testing.T) {
	grad := []float64{2, 4, 0, 0, -3, 6}
	omega := []float64{2, 0, -3}
	fused, dead := FusedWeightGradFromUnfused(grad, omega)
	want := []float64{1, 2, 0, 0, 1, -2}
	for i := range want {
		if fused[i] != want[i] {
			t.Fatalf("fused gradient mismatch at %d: got %g, want %g", i, fused[i], want[i])
		}
	}
	if len(dead) != 1 || dead[0] != 1 {
		t.Fatalf("dead channels: got %v, want [1]", dead)
	}
}

func TestMeasureStepRatio(t *testing.T) {
	deploy := []float64{3, 4, 1, 0, 5, 0}
	eval := []float64{0.3, 0.4, 0, 0, 1, 0}
	r, err := MeasureStepRatio(deploy, eval, 3)
	if err != nil {
		t.Fatal(err)
	}
	if r.Ratio[0] != 10 || r.Ratio[2] != 5 {
		t.Errorf("ratios: got %v, want [10 +Inf 5]", r.Ratio)
	}
	if !math.IsInf(r.Ratio[1], 1) || len(r.Dead) != 1 || r.Dead[0] != 1 {
		t.Errorf("dead channel: got ratio %g, dead %v, want +Inf and [1]", r.Ratio[1], r.Dead)
	}
	if _, err := MeasureStepRatio(deploy, eval, 4); err == nil {
		t.Error("6 elements split into 4 channels: got nil error")
	}
}

func TestCheckFindsWrongGradient(t *testing.T) {
	x := []float64{0.3, -1.2, 2}
	f := func() (float64, error) { return math.Sin(x[0]) * x[1] * x[1] * math.Exp(x[2]/4), nil }
	grad := []float64{
		math.Cos(x[0]) * x[1] * x[1] * math.Exp(x[2]/4),
		2 * math.Sin(x[0]) * x[1] * math.Exp(x[2]/4),
		math.Sin(x[0]) * x[1] * x[1] * math.Exp(x[2]/4) / 4,
	}
	rep, err := Check(f, []Variable{{Name: "x", Value: x, Grad: grad}}, 0, DefaultTolerance)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Mismatches) != 0 {
		t.Fatalf("correct gradient rejected: %v", rep.Mismatches)
	}
	if x[0] != 0.3 || x[1] != -1.2 || x[2] != 2 {
		t.Fatalf("Check did not restore the values: %v", x)
	}
	grad[2] *= 1.001
	rep, err = Check(f, []Variable{{Name: "x", Value: x, Grad: grad}}, 0, DefaultTolerance)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Mismatches) != 1 || rep.Mismatches[0].Index != 2 {
		t.Fatalf("wrong gradient: got mismatches %v, want x[2] only", rep.Mismatches)
	}
}
