package convbn

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/nn"
)

// realCheckpointPath returns the path of a checkpoint in the shared folder
// beside the repository, or skips the test when the folder is absent.
func realCheckpointPath(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
	folder := filepath.Join(dir, "..", "shared", "checkpoints")
	if _, err := os.Stat(folder); err != nil {
		t.Skipf("real checkpoints not available: %s is missing", folder)
	}
	return filepath.Join(folder, name)
}

func readFloats(t *testing.T, tensor *checkpoint.Tensor) []float64 {
	t.Helper()
	if tensor == nil {
		return nil
	}
	v, err := tensor.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// blockFromPair builds a float64 block from a discovered pair. Geometry the
// file does not store is taken as stride 1 with "same" padding, which is
// enough for checks that compare modes on the same input.
func blockFromPair(t *testing.T, p *Pair) *Block[float64] {
	t.Helper()
	shape := p.Conv.Weight.Shape
	if len(shape) != 4 || p.Conv.Transposed {
		t.Fatalf("pair %s: weight shape %v is not a 2-D conv", p.Conv.Name, shape)
	}
	groups := max(p.Conv.Groups, 1)
	conv := &nn.Conv2d[float64]{
		InChannels: shape[1] * groups, OutChannels: shape[0], KernelH: shape[2], KernelW: shape[3],
		Stride: [2]int{1, 1}, Padding: [2]int{shape[2] / 2, shape[3] / 2}, Dilation: [2]int{1, 1}, Groups: groups,
	}
	bn := nn.NewBatchNorm2d[float64](shape[0])
	bn.Eps = p.BN.Eps
	copy(bn.RunningMean, readFloats(t, p.BN.RunningMean))
	copy(bn.RunningVar, readFloats(t, p.BN.RunningVar))
	if p.BN.Affine {
		copy(bn.Gamma, readFloats(t, p.BN.Weight))
		copy(bn.Beta, readFloats(t, p.BN.Bias))
	} else {
		bn.Affine = false
		bn.Gamma, bn.Beta, bn.GammaGrad, bn.BetaGrad = nil, nil, nil, nil
	}
	b := NewBlock(p.Conv.Name, conv, p.Conv.Bias != nil, bn)
	copy(b.Weight, readFloats(t, p.Conv.Weight))
	if p.Conv.Bias != nil {
		copy(b.Bias, readFloats(t, p.Conv.Bias))
	}
	return b
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
		eval := blockFromPair(t, p)
		mustSetMode(t, eval, Eval)
		tune := cloneBlock(eval)
		mustSetMode(t, tune, Tune)
		deploy := cloneBlock(eval)
		mustSetMode(t, deploy, Deploy)

		rng := newRNG(uint64(i))
		x := nn.FromSlice(uniform(rng, 2*eval.Conv.InChannels*6*6, -1, 1), 2, eval.Conv.InChannels, 6, 6)
		r := uniform(rng, 2*eval.Conv.OutChannels*6*6, -1, 1)
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
