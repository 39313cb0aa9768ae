package convbn

import (
	"math"
	"testing"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/internal/testenv"
	"github.com/convbn-diag/convbn-diag/nn"
)

// realCheckpointPath returns the path of a checkpoint in the shared folder
// beside the repository, or skips the test when the folder is absent.
func realCheckpointPath(t *testing.T, name string) string {
	t.Helper()
	return testenv.Checkpoint(t, name)
}

// TestRealResNet20Modes runs every ConvBN pair of a trained CIFAR ResNet-20
// in Eval, Tune and Deploy mode, whose ω span many orders of magnitude, and
// checks that the three modes agree and that ‖∂L/∂W'_c‖ = ‖∂L/∂W_c‖/|ω_c|.
func TestRealResNet20Modes(t *testing.T) {
	path := realCheckpointPath(t, "akamaster_resnet20-12fca82f.th")
	f, err := checkpoint.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	res, err := FindPairs(f.Models[0], f.Metadata, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pairs) != 19 {
		t.Fatalf("pairs in resnet20: got %d, want 19", len(res.Pairs))
	}
	minOmega, maxOmega := math.Inf(1), 0.0
	for i := range res.Pairs {
		p := &res.Pairs[i]
		eval, err := NewBlockFromPair[float64](p)
		if err != nil {
			t.Fatal(err)
		}
		if eval.Mode() != Eval {
			t.Fatalf("%s: NewBlockFromPair mode %s, want eval", p.Conv.Name, eval.Mode())
		}
		tune := cloneBlock(eval)
		mustSetMode(t, tune, Tune)
		deploy := cloneBlock(eval)
		mustSetMode(t, deploy, Deploy)

		rng := newRNG(uint64(i))
		x := nn.FromSlice(uniform(rng, 2*eval.Conv.InChannels*6*6, -1, 1), 2, eval.Conv.InChannels, 6, 6)
		probe, err := eval.Forward(x)
		if err != nil {
			t.Fatal(err)
		}
		r := uniform(rng, probe.Len(), -1, 1)
		zEval, dxEval := step(t, eval, x, r)
		zTune, dxTune := step(t, tune, x, r)
		zDeploy, dxDeploy := step(t, deploy, x, r)

		assertRelErr(t, p.Conv.Name+" tune output", zTune.Data, zEval.Data, 1e-12)
		assertRelErr(t, p.Conv.Name+" deploy output", zDeploy.Data, zEval.Data, 1e-12)
		assertRelErr(t, p.Conv.Name+" tune dx", dxTune.Data, dxEval.Data, 1e-12)
		assertRelErr(t, p.Conv.Name+" deploy dx", dxDeploy.Data, dxEval.Data, 1e-12)
		assertRelErr(t, p.Conv.Name+" tune dweight", tune.WeightGrad, eval.WeightGrad, 1e-12)
		assertRelErr(t, p.Conv.Name+" tune dgamma", tune.BN.GammaGrad, eval.BN.GammaGrad, 1e-12)
		assertRelErr(t, p.Conv.Name+" tune dbeta", tune.BN.BetaGrad, eval.BN.BetaGrad, 1e-12)

		invStd, err := eval.BN.InvStd()
		if err != nil {
			t.Fatal(err)
		}
		k := len(eval.Weight) / eval.Conv.OutChannels
		for c := range eval.Conv.OutChannels {
			omega := math.Abs(eval.BN.Gamma[c] * invStd[c])
			minOmega, maxOmega = math.Min(minOmega, omega), math.Max(maxOmega, omega)
			fused := nn.Norm(deploy.WeightGrad[c*k : (c+1)*k])
			unfused := nn.Norm(eval.WeightGrad[c*k : (c+1)*k])
			if omega == 0 || fused == 0 {
				continue
			}
			if got := unfused / omega; math.Abs(got-fused) > 1e-10*fused {
				t.Errorf("%s channel %d: ‖∂W‖/|ω| = %.15g, Deploy's ‖∂W'‖ = %.15g (ω = %g)", p.Conv.Name, c, got, fused, omega)
			}
		}
	}
	t.Logf("|ω| over all channels: [%.3g, %.3g]", minOmega, maxOmega)
}

// syntheticPair returns a pair of a 2→3 3×3 conv with bias and an affine
// BatchNorm, built from in-memory tensors.
func syntheticPair() *Pair {
	ramp := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = 0.1 * float64(i+1)
		}
		return v
	}
	momentum := 0.03
	return &Pair{
		Conv: Conv{
			Name: "features.0", Weight: checkpoint.NewTensor("features.0.weight", []int{3, 2, 3, 3}, ramp(54)),
			Bias: checkpoint.NewTensor("features.0.bias", []int{3}, ramp(3)), Groups: 1,
			Stride: []int{2, 2}, Padding: []int{1, 1}, Dilation: []int{1, 1}, GeometrySource: SourceFile,
		},
		BN: BatchNorm{
			Name: "features.1", Affine: true, Eps: 1e-3, Momentum: &momentum,
			Weight:            checkpoint.NewTensor("features.1.weight", []int{3}, ramp(3)),
			Bias:              checkpoint.NewTensor("features.1.bias", []int{3}, ramp(3)),
			RunningMean:       checkpoint.NewTensor("features.1.running_mean", []int{3}, ramp(3)),
			RunningVar:        checkpoint.NewTensor("features.1.running_var", []int{3}, ramp(3)),
			NumBatchesTracked: checkpoint.NewTensor("features.1.num_batches_tracked", []int{}, []float64{42}),
		},
	}
}

func TestNewBlockFromPairSettings(t *testing.T) {
	b, err := NewBlockFromPair[float32](syntheticPair())
	if err != nil {
		t.Fatal(err)
	}
	if b.Conv.Stride != [2]int{2, 2} || b.Conv.Padding != [2]int{1, 1} {
		t.Errorf("geometry: got stride %v padding %v, want [2 2] and [1 1]", b.Conv.Stride, b.Conv.Padding)
	}
	if b.BN.Eps != 1e-3 || b.BN.Momentum == nil || *b.BN.Momentum != 0.03 || b.BN.NumBatchesTracked != 42 {
		t.Errorf("BatchNorm settings: got eps %g momentum %v tracked %d", b.BN.Eps, b.BN.Momentum, b.BN.NumBatchesTracked)
	}
	if b.Weight[53] != float32(5.4) || b.Bias[2] != float32(0.3) || b.BN.RunningVar[1] != float32(0.2) {
		t.Errorf("values: got weight[53] %g bias[2] %g running_var[1] %g", b.Weight[53], b.Bias[2], b.BN.RunningVar[1])
	}
}

func TestNewBlockFromPairRejectsMalformed(t *testing.T) {
	cases := map[string]func(p *Pair){
		"1-D conv weight": func(p *Pair) {
			p.Conv.Weight = checkpoint.NewTensor("features.0.weight", []int{3, 2, 3}, make([]float64, 18))
		},
		"transposed conv": func(p *Pair) { p.Conv.Transposed = true },
		"short running_var": func(p *Pair) {
			p.BN.RunningVar = checkpoint.NewTensor("features.1.running_var", []int{2}, []float64{1, 1})
		},
		"missing running_mean": func(p *Pair) { p.BN.RunningMean = nil },
		"bad groups":           func(p *Pair) { p.Conv.Groups = 2 },
		"negative padding":     func(p *Pair) { p.Conv.Padding = []int{-1, 0} },
		"two-element counter": func(p *Pair) {
			p.BN.NumBatchesTracked = checkpoint.NewTensor("features.1.num_batches_tracked", []int{2}, []float64{1, 2})
		},
	}
	for name, spoil := range cases {
		p := syntheticPair()
		spoil(p)
		if _, err := NewBlockFromPair[float64](p); err == nil {
			t.Errorf("%s: got nil error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
