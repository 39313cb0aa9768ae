package convbn

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/convbn-diag/convbn-diag/nn"
)

type refTensor struct {
	Shape []int     `json:"shape"`
	Data  []float64 `json:"data"`
}

type refGrads struct {
	DX      refTensor  `json:"dx"`
	DWeight refTensor  `json:"dweight"`
	DBias   *refTensor `json:"dbias"`
	DGamma  *refTensor `json:"dgamma"`
	DBeta   *refTensor `json:"dbeta"`
}

type refBlock struct {
	Name        string     `json:"name"`
	Stride      [2]int     `json:"stride"`
	Padding     [2]int     `json:"padding"`
	Dilation    [2]int     `json:"dilation"`
	Groups      int        `json:"groups"`
	ConvBias    bool       `json:"conv_bias"`
	Affine      bool       `json:"affine"`
	Eps         float64    `json:"eps"`
	X           refTensor  `json:"x"`
	Weight      refTensor  `json:"weight"`
	Bias        *refTensor `json:"bias"`
	Gamma       *refTensor `json:"gamma"`
	Beta        *refTensor `json:"beta"`
	RunningMean refTensor  `json:"running_mean"`
	RunningVar  refTensor  `json:"running_var"`
	Z           refTensor  `json:"z"`
	DZ          refTensor  `json:"dz"`
	Eval        refGrads   `json:"eval"`
	TuneZ       refTensor  `json:"tune_z"`
	Tune        refGrads   `json:"tune"`
	Deploy      struct {
		FusedWeight refTensor `json:"fused_weight"`
		FusedBias   refTensor `json:"fused_bias"`
		Z           refTensor `json:"z"`
		DX          refTensor `json:"dx"`
		DWeight     refTensor `json:"dweight"`
		DBias       refTensor `json:"dbias"`
	} `json:"deploy"`
	Train struct {
		refGrads
		Z     refTensor `json:"z"`
		After struct {
			RunningMean       refTensor `json:"running_mean"`
			RunningVar        refTensor `json:"running_var"`
			NumBatchesTracked int64     `json:"num_batches_tracked"`
		} `json:"after"`
	} `json:"train"`
}

// blockFromReference builds a Train-mode float64 block holding the case's
// parameters and statistics.
func blockFromReference(rc *refBlock) *Block[float64] {
	w := rc.Weight.Shape
	conv := &nn.Conv2d[float64]{
		InChannels: rc.X.Shape[1], OutChannels: w[0], KernelH: w[2], KernelW: w[3],
		Stride: rc.Stride, Padding: rc.Padding, Dilation: rc.Dilation, Groups: rc.Groups,
	}
	bn := nn.NewBatchNorm2d[float64](w[0])
	bn.Eps = rc.Eps
	copy(bn.RunningMean, rc.RunningMean.Data)
	copy(bn.RunningVar, rc.RunningVar.Data)
	if rc.Affine {
		copy(bn.Gamma, rc.Gamma.Data)
		copy(bn.Beta, rc.Beta.Data)
	} else {
		bn.Affine = false
		bn.Gamma, bn.Beta, bn.GammaGrad, bn.BetaGrad = nil, nil, nil, nil
	}
	b := NewBlock(rc.Name, conv, rc.ConvBias, bn)
	copy(b.Weight, rc.Weight.Data)
	if rc.ConvBias {
		copy(b.Bias, rc.Bias.Data)
	}
	return b
}

// assertClose fails unless |got − want| ≤ atol + rtol·|want| elementwise.
func assertClose(t *testing.T, what string, got, want []float64, rtol, atol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s length mismatch: got %d, want %d", what, len(got), len(want))
	}
	for i, w := range want {
		if d := math.Abs(got[i] - w); !(d <= atol+rtol*math.Abs(w)) {
			t.Fatalf("%s mismatch at %d: got %.17g, want %.17g", what, i, got[i], w)
		}
	}
}

func assertGrads(t *testing.T, b *Block[float64], dx *nn.Tensor[float64], want *refGrads) {
	t.Helper()
	const rtol, atol = 1e-10, 1e-12
	assertClose(t, "dx", dx.Data, want.DX.Data, rtol, atol)
	assertClose(t, "dweight", b.WeightGrad, want.DWeight.Data, rtol, atol)
	if want.DBias != nil {
		assertClose(t, "dbias", b.BiasGrad, want.DBias.Data, rtol, atol)
	}
	if want.DGamma != nil {
		assertClose(t, "dgamma", b.BN.GammaGrad, want.DGamma.Data, rtol, atol)
		assertClose(t, "dbeta", b.BN.BetaGrad, want.DBeta.Data, rtol, atol)
	}
}

func TestBlockMatchesTorch(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "torch_reference.json"))
	if err != nil {
		t.Fatalf("read reference: %v (regenerate with /usr/bin/python3 scripts/torch_reference.py)", err)
	}
	var ref struct {
		Blocks []refBlock `json:"blocks"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatalf("decode testdata/torch_reference.json: %v", err)
	}
	if len(ref.Blocks) == 0 {
		t.Fatal("reference has no blocks")
	}
	for i := range ref.Blocks {
		rc := &ref.Blocks[i]
		x := nn.FromSlice(rc.X.Data, rc.X.Shape...)

		t.Run(rc.Name+"/eval", func(t *testing.T) {
			b := blockFromReference(rc)
			mustSetMode(t, b, Eval)
			z, dx := step(t, b, x, rc.DZ.Data)
			assertClose(t, "z", z.Data, rc.Z.Data, 1e-12, 1e-13)
			assertGrads(t, b, dx, &rc.Eval)
		})
		t.Run(rc.Name+"/tune", func(t *testing.T) {
			b := blockFromReference(rc)
			mustSetMode(t, b, Tune)
			z, dx := step(t, b, x, rc.DZ.Data)
			assertClose(t, "z", z.Data, rc.TuneZ.Data, 1e-12, 1e-13)
			assertGrads(t, b, dx, &rc.Tune)
		})
		t.Run(rc.Name+"/deploy", func(t *testing.T) {
			b := blockFromReference(rc)
			mustSetMode(t, b, Eval)
			w, bias, err := b.Fold()
			if err != nil {
				t.Fatal(err)
			}
			assertClose(t, "fused weight", w, rc.Deploy.FusedWeight.Data, 1e-13, 1e-15)
			assertClose(t, "fused bias", bias, rc.Deploy.FusedBias.Data, 1e-13, 1e-15)
			z, dx := step(t, b, x, rc.DZ.Data)
			assertClose(t, "z", z.Data, rc.Deploy.Z.Data, 1e-12, 1e-13)
			assertClose(t, "dx", dx.Data, rc.Deploy.DX.Data, 1e-12, 1e-13)
			assertClose(t, "dweight", b.WeightGrad, rc.Deploy.DWeight.Data, 1e-12, 1e-13)
			assertClose(t, "dbias", b.BiasGrad, rc.Deploy.DBias.Data, 1e-12, 1e-13)
		})
		t.Run(rc.Name+"/train", func(t *testing.T) {
			b := blockFromReference(rc)
			z, dx := step(t, b, x, rc.DZ.Data)
			assertClose(t, "z", z.Data, rc.Train.Z.Data, 1e-10, 1e-12)
			assertGrads(t, b, dx, &rc.Train.refGrads)
			assertClose(t, "running_mean", b.BN.RunningMean, rc.Train.After.RunningMean.Data, 1e-12, 1e-14)
			assertClose(t, "running_var", b.BN.RunningVar, rc.Train.After.RunningVar.Data, 1e-12, 1e-14)
			if b.BN.NumBatchesTracked != rc.Train.After.NumBatchesTracked {
				t.Errorf("num_batches_tracked mismatch: got %d, want %d", b.BN.NumBatchesTracked, rc.Train.After.NumBatchesTracked)
			}
		})
	}
}

// TestBlockFloat32MatchesTorch runs the reference cases in float32 and
// compares norm-wise with PyTorch's float64 values.
func TestBlockFloat32MatchesTorch(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "torch_reference.json"))
	if err != nil {
		t.Fatalf("read reference: %v (regenerate with /usr/bin/python3 scripts/torch_reference.py)", err)
	}
	var ref struct {
		Blocks []refBlock `json:"blocks"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatalf("decode testdata/torch_reference.json: %v", err)
	}
	const tol = 1e-5
	for i := range ref.Blocks {
		rc := &ref.Blocks[i]
		for _, mode := range []Mode{Train, Eval, Tune, Deploy} {
			t.Run(rc.Name+"/"+mode.String(), func(t *testing.T) {
				b64 := blockFromReference(rc)
				b := &Block[float32]{
					Name:       b64.Name,
					Conv:       &nn.Conv2d[float32]{InChannels: b64.Conv.InChannels, OutChannels: b64.Conv.OutChannels, KernelH: b64.Conv.KernelH, KernelW: b64.Conv.KernelW, Stride: b64.Conv.Stride, Padding: b64.Conv.Padding, Dilation: b64.Conv.Dilation, Groups: b64.Conv.Groups},
					Weight:     nn.Convert[float32](b64.Weight),
					WeightGrad: make([]float32, len(b64.Weight)),
				}
				if b64.Bias != nil {
					b.Bias, b.BiasGrad = nn.Convert[float32](b64.Bias), make([]float32, len(b64.Bias))
				}
				bn := *nn.NewBatchNorm2d[float32](b64.BN.Channels)
				bn.Eps, bn.Affine = b64.BN.Eps, b64.BN.Affine
				bn.RunningMean, bn.RunningVar = nn.Convert[float32](b64.BN.RunningMean), nn.Convert[float32](b64.BN.RunningVar)
				if bn.Affine {
					bn.Gamma, bn.Beta = nn.Convert[float32](b64.BN.Gamma), nn.Convert[float32](b64.BN.Beta)
				} else {
					bn.Gamma, bn.Beta, bn.GammaGrad, bn.BetaGrad = nil, nil, nil, nil
				}
				b.BN = &bn
				mustSetMode(t, b, mode)

				x := nn.FromSlice(nn.Convert[float32](rc.X.Data), rc.X.Shape...)
				z, dx := step(t, b, x, nn.Convert[float32](rc.DZ.Data))
				want := map[Mode]*refGrads{Train: &rc.Train.refGrads, Eval: &rc.Eval, Tune: &rc.Tune}[mode]
				switch mode {
				case Train:
					assertRelErr(t, "z", z.Data, rc.Train.Z.Data, tol)
				case Eval:
					assertRelErr(t, "z", z.Data, rc.Z.Data, tol)
				case Tune:
					assertRelErr(t, "z", z.Data, rc.TuneZ.Data, tol)
				case Deploy:
					assertRelErr(t, "z", z.Data, rc.Deploy.Z.Data, tol)
					assertRelErr(t, "dx", dx.Data, rc.Deploy.DX.Data, tol)
					assertRelErr(t, "dweight", b.WeightGrad, rc.Deploy.DWeight.Data, tol)
					assertRelErr(t, "dbias", b.BiasGrad, rc.Deploy.DBias.Data, tol)
					return
				}
				assertRelErr(t, "dx", dx.Data, want.DX.Data, tol)
				assertRelErr(t, "dweight", b.WeightGrad, want.DWeight.Data, tol)
				if want.DBias != nil && mode != Train {
					// In Train mode ∂L/∂b is 0 up to rounding, so a relative
					// error is meaningless there.
					assertRelErr(t, "dbias", b.BiasGrad, want.DBias.Data, tol)
				}
				if want.DGamma != nil {
					assertRelErr(t, "dgamma", b.BN.GammaGrad, want.DGamma.Data, tol)
					assertRelErr(t, "dbeta", b.BN.BetaGrad, want.DBeta.Data, tol)
				}
			})
		}
	}
}
