package convbn

import (
	"errors"
	"math"
	"testing"

	"github.com/convbn-diag/convbn-diag/gradients"
	"github.com/convbn-diag/convbn-diag/nn"
)

// gradsOf returns the block's gradients in a fixed order: weight, bias,
// γ, β, with nil for those the block does not have.
func gradsOf[T nn.Float](b *Block[T]) map[string][]T {
	g := map[string][]T{"weight": b.WeightGrad, "bias": b.BiasGrad}
	if b.BN != nil && b.BN.Affine {
		g["gamma"], g["beta"] = b.BN.GammaGrad, b.BN.BetaGrad
	}
	return g
}

func testTuneEqualsEval[T nn.Float](t *testing.T, tol float64) {
	for si, spec := range gradSpecs {
		for seed := uint64(0); seed < 3; seed++ {
			spec := spec
			spec.deadChannel = seed == 2 && spec.affine
			eval, x := newRandomBlock[T](spec, 1000*uint64(si)+seed)
			tune := cloneBlock(eval)
			mustSetMode(t, eval, Eval)
			mustSetMode(t, tune, Tune)
			probe, err := eval.Forward(x)
			if err != nil {
				t.Fatal(err)
			}
			r := nn.Convert[T](uniform(newRNG(seed+50), probe.Len(), -1, 1))

			zEval, dxEval := step(t, eval, x, r)
			zTune, dxTune := step(t, tune, x, r)
			assertRelErr(t, spec.name+" output", zTune.Data, zEval.Data, tol)
			assertRelErr(t, spec.name+" dx", dxTune.Data, dxEval.Data, tol)
			want := gradsOf(eval)
			for name, got := range gradsOf(tune) {
				assertRelErr(t, spec.name+" d"+name, got, want[name], tol)
			}
		}
	}
}

func TestTuneEqualsEvalFloat64(t *testing.T) { testTuneEqualsEval[float64](t, 1e-12) }
func TestTuneEqualsEvalFloat32(t *testing.T) { testTuneEqualsEval[float32](t, 1e-4) }

// TestDeployRelations checks that Deploy computes Eval's function and that
// Eval's gradients are the fused gradients mapped back by the chain rule.
func TestDeployRelations(t *testing.T) {
	for si, spec := range gradSpecs {
		t.Run(spec.name, func(t *testing.T) {
			eval, x := newRandomBlock[float64](spec, uint64(300+si))
			mustSetMode(t, eval, Eval)
			deploy := cloneBlock(eval)
			if _, _, err := deploy.Fold(); err != nil {
				t.Fatal(err)
			}
			probe, err := eval.Forward(x)
			if err != nil {
				t.Fatal(err)
			}
			r := uniform(newRNG(uint64(400+si)), probe.Len(), -1, 1)

			zEval, dxEval := step(t, eval, x, r)
			zDeploy, dxDeploy := step(t, deploy, x, r)
			assertRelErr(t, "output", zDeploy.Data, zEval.Data, 1e-13)
			assertRelErr(t, "dx", dxDeploy.Data, dxEval.Data, 1e-13)

			invStd, err := eval.BN.InvStd()
			if err != nil {
				t.Fatal(err)
			}
			omega := make([]float64, spec.out)
			for c := range omega {
				omega[c] = eval.BN.GammaAt(c) * invStd[c]
			}
			fold := gradients.Fold[float64]{Weight: eval.Weight, Bias: eval.Bias, Mean: eval.BN.RunningMean, InvStd: invStd, Omega: omega}
			var implied gradients.Unfused[float64]
			implied.Weight = make([]float64, len(eval.Weight))
			if eval.Bias != nil {
				implied.Bias = make([]float64, spec.out)
			}
			if spec.affine {
				implied.Gamma = make([]float64, spec.out)
				implied.Beta = make([]float64, spec.out)
			}
			gradients.AddFromFused(&fold, deploy.WeightGrad, deploy.BiasGrad, &implied)
			assertRelErr(t, "dweight", eval.WeightGrad, implied.Weight, 1e-13)
			if eval.Bias != nil {
				assertRelErr(t, "dbias", eval.BiasGrad, implied.Bias, 1e-13)
			}
			if spec.affine {
				assertRelErr(t, "dgamma", eval.BN.GammaGrad, implied.Gamma, 1e-12)
				assertRelErr(t, "dbeta", eval.BN.BetaGrad, implied.Beta, 1e-13)
			}
		})
	}
}

func TestDeployCannotReturnToEval(t *testing.T) {
	b, _ := newRandomBlock[float64](gradSpecs[0], 9)
	mustSetMode(t, b, Deploy)
	for _, m := range []Mode{Eval, Tune, Train} {
		err := b.SetMode(m)
		if !errors.Is(err, ErrFoldIrreversible) {
			t.Errorf("SetMode(%s) on a Deploy block: got %v, want ErrFoldIrreversible", m, err)
		}
	}
	if b.Mode() != Deploy {
		t.Errorf("mode after refused switch: got %s, want deploy", b.Mode())
	}
	if _, _, err := b.Fold(); err == nil {
		t.Error("Fold on a Deploy block: got nil error")
	}
}

func TestFoldRejectsNegativeVariance(t *testing.T) {
	b, x := newRandomBlock[float64](gradSpecs[0], 10)
	b.BN.RunningVar[2] = -1
	if _, _, err := b.Fold(); err == nil {
		t.Fatal("Fold with running_var + eps < 0: got nil error")
	}
	mustSetMode(t, b, Eval)
	if _, err := b.Forward(x); err == nil {
		t.Fatal("Eval forward with running_var + eps < 0: got nil error")
	}
}

func TestBackwardWithoutForward(t *testing.T) {
	b, x := newRandomBlock[float64](gradSpecs[0], 11)
	mustSetMode(t, b, Eval)
	z, err := b.Forward(x)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Backward(z); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Backward(z); err == nil {
		t.Fatal("second Backward after one Forward: got nil error")
	}
}

// fusedWeight returns ω_c·W_c for a non-Deploy block, or the Deploy
// block's own W'.
func fusedWeight(t *testing.T, b *Block[float64]) []float64 {
	t.Helper()
	if b.Mode() == Deploy {
		return append([]float64(nil), b.Weight...)
	}
	w, _, _, _, err := b.fuse()
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func oneStepRatio(t *testing.T, spec blockSpec, opt func() nn.Optimizer[float64]) (*gradients.StepRatio, []float64) {
	t.Helper()
	eval, x := newRandomBlock[float64](spec, 77)
	mustSetMode(t, eval, Eval)
	deploy := cloneBlock(eval)
	mustSetMode(t, deploy, Deploy)
	probe, err := eval.Forward(x)
	if err != nil {
		t.Fatal(err)
	}
	r := uniform(newRNG(78), probe.Len(), -1, 1)

	invStd, err := eval.BN.InvStd()
	if err != nil {
		t.Fatal(err)
	}
	omega := make([]float64, spec.out)
	for c := range omega {
		omega[c] = eval.BN.GammaAt(c) * invStd[c]
	}

	// γ, β and b are frozen: only the conv weight is handed to the optimizer.
	var deltas [2][]float64
	for i, b := range []*Block[float64]{eval, deploy} {
		before := fusedWeight(t, b)
		b.ZeroGrad()
		step(t, b, x, r)
		opt().Step([]*nn.Param[float64]{{Name: "weight", Value: b.Weight, Grad: b.WeightGrad}})
		after := fusedWeight(t, b)
		deltas[i] = make([]float64, len(before))
		for j := range before {
			deltas[i][j] = after[j] - before[j]
		}
	}
	ratio, err := gradients.MeasureStepRatio(deltas[1], deltas[0], spec.out)
	if err != nil {
		t.Fatal(err)
	}
	return ratio, omega
}

func TestOneStepRatioSGD(t *testing.T) {
	spec := gradSpecs[0]
	spec.deadChannel = true
	spec.negativeGamma = true
	for _, momentum := range []float64{0, 0.9} {
		ratio, omega := oneStepRatio(t, spec, func() nn.Optimizer[float64] {
			return &nn.SGD[float64]{LR: 1e-3, Momentum: momentum}
		})
		for c, o := range omega {
			if o == 0 {
				continue
			}
			want := 1 / (o * o)
			if math.Abs(ratio.Ratio[c]-want) > 1e-9*want {
				t.Errorf("momentum %g channel %d: ratio %.15g, want 1/ω² = %.15g", momentum, c, ratio.Ratio[c], want)
			}
		}
		if len(ratio.Dead) != 1 || ratio.Dead[0] != spec.out-1 {
			t.Errorf("dead channels: got %v, want [%d]", ratio.Dead, spec.out-1)
		}
	}
}

func TestOneStepRatioAdam(t *testing.T) {
	spec := gradSpecs[0]
	spec.deadChannel = true
	ratio, omega := oneStepRatio(t, spec, func() nn.Optimizer[float64] {
		a := nn.NewAdam[float64](1e-3)
		a.Eps = 0
		return a
	})
	for c, o := range omega {
		if o == 0 {
			continue
		}
		want := 1 / math.Abs(o)
		if math.Abs(ratio.Ratio[c]-want) > 1e-9*want {
			t.Errorf("channel %d: ratio %.15g, want 1/|ω| = %.15g", c, ratio.Ratio[c], want)
		}
	}
	if len(ratio.Dead) != 1 || ratio.Dead[0] != spec.out-1 {
		t.Errorf("dead channels: got %v, want [%d]", ratio.Dead, spec.out-1)
	}
}

func testHeldBytes[T nn.Float](t *testing.T) {
	size := nn.ElementSize[T]()
	for si, spec := range gradSpecs {
		held := map[Mode]Held{}
		var lenX, lenY, lenW int
		for _, mode := range []Mode{Train, Eval, Tune, Deploy} {
			b, x := newRandomBlock[T](spec, uint64(si))
			mustSetMode(t, b, mode)
			z, err := b.Forward(x)
			if err != nil {
				t.Fatal(err)
			}
			held[mode] = b.Held()
			lenX, lenY, lenW = x.Len(), z.Len(), len(b.Weight)
			if _, err := b.Backward(z); err != nil {
				t.Fatal(err)
			}
			if h := b.Held(); h.Bytes != 0 || h.PerChannelBytes != 0 {
				t.Errorf("%s %s: held after backward %+v, want nothing", spec.name, mode, h)
			}
		}
		c := int64(spec.out)
		checks := []struct {
			what      string
			got, want int64
		}{
			{"deploy bytes = |X|", held[Deploy].Bytes, int64(lenX) * size},
			{"tune bytes = deploy + |W|", held[Tune].Bytes, held[Deploy].Bytes + int64(lenW)*size},
			{"eval bytes = |X| + |Y|", held[Eval].Bytes, int64(lenX+lenY) * size},
			{"train bytes = |X| + |Y|", held[Train].Bytes, int64(lenX+lenY) * size},
			{"tune per-channel = ω, s", held[Tune].PerChannelBytes, 2 * c * size},
			{"train per-channel = mean, 1/std", held[Train].PerChannelBytes, 2 * c * size},
			{"eval per-channel", held[Eval].PerChannelBytes, 0},
			{"deploy per-channel", held[Deploy].PerChannelBytes, 0},
		}
		for _, ch := range checks {
			if ch.got != ch.want {
				t.Errorf("%s: %s: got %d, want %d", spec.name, ch.what, ch.got, ch.want)
			}
		}
	}
}

func TestHeldBytesFloat64(t *testing.T) { testHeldBytes[float64](t) }
func TestHeldBytesFloat32(t *testing.T) { testHeldBytes[float32](t) }
