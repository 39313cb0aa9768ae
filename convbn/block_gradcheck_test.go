package convbn

import (
	"testing"

	"github.com/convbn-diag/convbn-diag/gradients"
)

// TestBlockFiniteDifferences checks every gradient of every mode against
// float64 central differences of L = Σ z·r.
func TestBlockFiniteDifferences(t *testing.T) {
	for si, spec := range gradSpecs {
		for _, mode := range []Mode{Train, Eval, Tune, Deploy} {
			t.Run(spec.name+"/"+mode.String(), func(t *testing.T) {
				b, x := newRandomBlock[float64](spec, uint64(100+si))
				mustSetMode(t, b, mode)
				z, err := b.Forward(x)
				if err != nil {
					t.Fatal(err)
				}
				r := uniform(newRNG(uint64(200+si)), z.Len(), -1, 1)

				b.ZeroGrad()
				_, dx := step(t, b, x, r)

				loss := func() (float64, error) {
					z, err := b.Forward(x)
					if err != nil {
						return 0, err
					}
					var sum float64
					for i, v := range z.Data {
						sum += v * r[i]
					}
					return sum, nil
				}
				vars := []gradients.Variable{
					{Name: "x", Value: x.Data, Grad: dx.Data},
					{Name: "weight", Value: b.Weight, Grad: b.WeightGrad},
				}
				if b.Bias != nil {
					vars = append(vars, gradients.Variable{Name: "bias", Value: b.Bias, Grad: b.BiasGrad})
				}
				if b.BN != nil && b.BN.Affine {
					vars = append(vars,
						gradients.Variable{Name: "gamma", Value: b.BN.Gamma, Grad: b.BN.GammaGrad},
						gradients.Variable{Name: "beta", Value: b.BN.Beta, Grad: b.BN.BetaGrad})
				}
				rep, err := gradients.Check(loss, vars, 1e-5, gradients.DefaultTolerance)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range rep.Mismatches {
					t.Errorf("gradient mismatch: %v", m)
				}
				want := x.Len() + len(b.Weight) + len(b.Bias)
				if b.BN != nil && b.BN.Affine {
					want += 2 * spec.out
				}
				if rep.Checked != want {
					t.Errorf("checked %d elements, want %d", rep.Checked, want)
				}
				t.Logf("max abs error %.2g, max rel error %.2g over %d elements", rep.MaxAbsErr, rep.MaxRelErr, rep.Checked)
			})
		}
	}
}

func TestCheckerRejectsWrongGradient(t *testing.T) {
	spec := gradSpecs[0]
	b, x := newRandomBlock[float64](spec, 1)
	mustSetMode(t, b, Tune)
	z, err := b.Forward(x)
	if err != nil {
		t.Fatal(err)
	}
	r := uniform(newRNG(2), z.Len(), -1, 1)
	b.ZeroGrad()
	step(t, b, x, r)
	b.BN.GammaGrad[1] *= 1 + 1e-4

	loss := func() (float64, error) {
		z, err := b.Forward(x)
		if err != nil {
			return 0, err
		}
		var sum float64
		for i, v := range z.Data {
			sum += v * r[i]
		}
		return sum, nil
	}
	rep, err := gradients.Check(loss, []gradients.Variable{{Name: "gamma", Value: b.BN.Gamma, Grad: b.BN.GammaGrad}}, 1e-5, gradients.DefaultTolerance)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Mismatches) != 1 || rep.Mismatches[0].Index != 1 {
		t.Fatalf("checker mismatches: got %v, want exactly gamma[1]", rep.Mismatches)
	}
}
