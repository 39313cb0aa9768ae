package nn

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// refTensor is a tensor as scripts/torch_reference.py stores it.
type refTensor struct {
	Shape []int     `json:"shape"`
	Data  []float64 `json:"data"`
}

func (r *refTensor) tensor() *Tensor[float64] {
	return FromSlice(append([]float64(nil), r.Data...), r.Shape...)
}

type refBNState struct {
	RunningMean       refTensor `json:"running_mean"`
	RunningVar        refTensor `json:"running_var"`
	NumBatchesTracked int64     `json:"num_batches_tracked"`
}

type refConv struct {
	Name     string     `json:"name"`
	Stride   [2]int     `json:"stride"`
	Padding  [2]int     `json:"padding"`
	Dilation [2]int     `json:"dilation"`
	Groups   int        `json:"groups"`
	X        refTensor  `json:"x"`
	Weight   refTensor  `json:"weight"`
	Bias     *refTensor `json:"bias"`
	Y        refTensor  `json:"y"`
	DY       refTensor  `json:"dy"`
	DX       refTensor  `json:"dx"`
	DWeight  refTensor  `json:"dweight"`
	DBias    *refTensor `json:"dbias"`
}

type refBNTrain struct {
	Name     string     `json:"name"`
	Momentum *float64   `json:"momentum"`
	Affine   bool       `json:"affine"`
	Eps      float64    `json:"eps"`
	Initial  refBNState `json:"initial"`
	Gamma    refTensor  `json:"gamma"`
	Beta     refTensor  `json:"beta"`
	Steps    []struct {
		Y      refTensor  `json:"y"`
		Z      refTensor  `json:"z"`
		DZ     refTensor  `json:"dz"`
		DY     refTensor  `json:"dy"`
		DGamma refTensor  `json:"dgamma"`
		DBeta  refTensor  `json:"dbeta"`
		After  refBNState `json:"after"`
	} `json:"steps"`
}

type refBNEval struct {
	Name   string     `json:"name"`
	Affine bool       `json:"affine"`
	Eps    float64    `json:"eps"`
	State  refBNState `json:"state"`
	Gamma  refTensor  `json:"gamma"`
	Beta   refTensor  `json:"beta"`
	Y      refTensor  `json:"y"`
	Z      refTensor  `json:"z"`
	DZ     refTensor  `json:"dz"`
	DY     refTensor  `json:"dy"`
	DGamma refTensor  `json:"dgamma"`
	DBeta  refTensor  `json:"dbeta"`
}

type refFile struct {
	Conv    []refConv    `json:"conv"`
	BNTrain []refBNTrain `json:"bn_train"`
	BNEval  []refBNEval  `json:"bn_eval"`
}

func loadReference(t *testing.T) *refFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "torch_reference.json"))
	if err != nil {
		t.Fatalf("read reference: %v (regenerate with /usr/bin/python3 scripts/torch_reference.py)", err)
	}
	var ref refFile
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatalf("decode testdata/torch_reference.json: %v", err)
	}
	return &ref
}

// assertClose fails unless |got − want| ≤ atol + rtol·|want| elementwise.
func assertClose[T Float](t *testing.T, what string, got []T, want []float64, rtol, atol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s length mismatch: got %d, want %d", what, len(got), len(want))
	}
	for i, w := range want {
		g := float64(got[i])
		if math.Abs(g-w) > atol+rtol*math.Abs(w) || math.IsNaN(g) {
			t.Fatalf("%s mismatch at %d: got %.17g, want %.17g", what, i, g, w)
		}
	}
}

func TestConvMatchesTorch(t *testing.T) {
	for _, tc := range loadReference(t).Conv {
		t.Run(tc.Name, func(t *testing.T) {
			x := tc.X.tensor()
			conv := &Conv2d[float64]{
				InChannels: tc.X.Shape[1], OutChannels: tc.Weight.Shape[0],
				KernelH: tc.Weight.Shape[2], KernelW: tc.Weight.Shape[3],
				Stride: tc.Stride, Padding: tc.Padding, Dilation: tc.Dilation, Groups: tc.Groups,
			}
			var bias, dbias []float64
			if tc.Bias != nil {
				bias = tc.Bias.Data
				dbias = make([]float64, len(bias))
			}
			y := conv.Forward(x, tc.Weight.Data, bias)
			assertClose(t, "y", y.Data, tc.Y.Data, 1e-12, 1e-12)

			dw := make([]float64, len(tc.Weight.Data))
			dx := conv.Backward(x, tc.Weight.Data, tc.DY.tensor(), dw, dbias)
			assertClose(t, "dx", dx.Data, tc.DX.Data, 1e-12, 1e-12)
			assertClose(t, "dweight", dw, tc.DWeight.Data, 1e-12, 1e-12)
			if tc.Bias != nil {
				assertClose(t, "dbias", dbias, tc.DBias.Data, 1e-12, 1e-12)
			}
		})
	}
}

func TestBatchNormTrainMatchesTorch(t *testing.T) {
	for _, tc := range loadReference(t).BNTrain {
		t.Run(tc.Name, func(t *testing.T) {
			c := len(tc.Initial.RunningMean.Data)
			bn := NewBatchNorm2d[float64](c)
			bn.Eps, bn.Momentum, bn.Affine = tc.Eps, tc.Momentum, tc.Affine
			copy(bn.RunningMean, tc.Initial.RunningMean.Data)
			copy(bn.RunningVar, tc.Initial.RunningVar.Data)
			bn.NumBatchesTracked = tc.Initial.NumBatchesTracked
			if tc.Affine {
				copy(bn.Gamma, tc.Gamma.Data)
				copy(bn.Beta, tc.Beta.Data)
			} else {
				bn.Gamma, bn.Beta, bn.GammaGrad, bn.BetaGrad = nil, nil, nil, nil
			}
			for i, st := range tc.Steps {
				bn.ZeroGrad()
				y := st.Y.tensor()
				z, mean, invStd, err := bn.TrainForward(y)
				if err != nil {
					t.Fatal(err)
				}
				assertClose(t, "z", z.Data, st.Z.Data, 1e-11, 1e-12)
				assertClose(t, "running_mean", bn.RunningMean, st.After.RunningMean.Data, 1e-12, 1e-14)
				assertClose(t, "running_var", bn.RunningVar, st.After.RunningVar.Data, 1e-12, 1e-14)
				if bn.NumBatchesTracked != st.After.NumBatchesTracked {
					t.Fatalf("step %d num_batches_tracked mismatch: got %d, want %d", i, bn.NumBatchesTracked, st.After.NumBatchesTracked)
				}
				dy := bn.TrainBackward(y, st.DZ.tensor(), mean, invStd)
				assertClose(t, "dy", dy.Data, st.DY.Data, 1e-10, 1e-12)
				if tc.Affine {
					assertClose(t, "dgamma", bn.GammaGrad, st.DGamma.Data, 1e-11, 1e-12)
					assertClose(t, "dbeta", bn.BetaGrad, st.DBeta.Data, 1e-11, 1e-12)
				}
			}
		})
	}
}

func TestBatchNormEvalMatchesTorch(t *testing.T) {
	for _, tc := range loadReference(t).BNEval {
		t.Run(tc.Name, func(t *testing.T) {
			c := len(tc.State.RunningMean.Data)
			bn := NewBatchNorm2d[float64](c)
			bn.Eps, bn.Affine = tc.Eps, tc.Affine
			copy(bn.RunningMean, tc.State.RunningMean.Data)
			copy(bn.RunningVar, tc.State.RunningVar.Data)
			if tc.Affine {
				copy(bn.Gamma, tc.Gamma.Data)
				copy(bn.Beta, tc.Beta.Data)
			} else {
				bn.Gamma, bn.Beta, bn.GammaGrad, bn.BetaGrad = nil, nil, nil, nil
			}
			y := tc.Y.tensor()
			z, err := bn.EvalForward(y)
			if err != nil {
				t.Fatal(err)
			}
			assertClose(t, "z", z.Data, tc.Z.Data, 1e-12, 1e-14)
			dy, err := bn.EvalBackward(y, tc.DZ.tensor())
			if err != nil {
				t.Fatal(err)
			}
			assertClose(t, "dy", dy.Data, tc.DY.Data, 1e-12, 1e-14)
			if tc.Affine {
				assertClose(t, "dgamma", bn.GammaGrad, tc.DGamma.Data, 1e-12, 1e-13)
				assertClose(t, "dbeta", bn.BetaGrad, tc.DBeta.Data, 1e-12, 1e-13)
			}
			if bn.NumBatchesTracked != tc.State.NumBatchesTracked {
				t.Fatalf("eval changed num_batches_tracked: got %d, want %d", bn.NumBatchesTracked, tc.State.NumBatchesTracked)
			}
		})
	}
}

// moduleRoot returns the directory holding go.mod, searching upward.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// TestTorchReferenceIsCurrent reruns the generator into a temporary
// directory and compares its output with the committed file.
func TestTorchReferenceIsCurrent(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but /usr/bin/python3 cannot import torch: %v (install python3-torch)", err)
		}
		t.Skipf("/usr/bin/python3 cannot import torch (%v); install python3-torch to run this check", err)
	}
	root := moduleRoot(t)
	out := t.TempDir()
	cmd := exec.Command("/usr/bin/python3", filepath.Join(root, "scripts", "torch_reference.py"), out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/torch_reference.py failed: %v\n%s", err, msg)
	}
	for _, rel := range []string{"nn/testdata/torch_reference.json", "nn/testdata/torch_optim_reference.json", "convbn/testdata/torch_reference.json"} {
		fresh, err := os.ReadFile(filepath.Join(out, rel))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(fresh, committed) {
			continue
		}
		// torch's conv results change in the last bits with the BLAS that
		// libblas.so.3 points to (reference BLAS or OpenBLAS). Numbers may
		// therefore differ by rounding, and any other difference means the
		// committed file is stale.
		var a, b any
		if err := json.Unmarshal(fresh, &a); err != nil {
			t.Fatalf("decode regenerated %s: %v", rel, err)
		}
		if err := json.Unmarshal(committed, &b); err != nil {
			t.Fatalf("decode committed %s: %v", rel, err)
		}
		if path, ok := sameJSON(a, b, "$"); !ok {
			t.Errorf("%s is stale at %s: rerun /usr/bin/python3 scripts/torch_reference.py and commit the result", rel, path)
		}
	}
}

// sameJSON reports whether two decoded JSON values have the same structure
// and strings, and numbers equal to within 1e-12 relative plus 1e-13
// absolute. On a difference it returns the path of the first one.
func sameJSON(a, b any, path string) (string, bool) {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return path, false
		}
		for k, v := range av {
			if p, ok := sameJSON(v, bv[k], path+"."+k); !ok {
				return p, false
			}
		}
		return "", true
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return path, false
		}
		for i := range av {
			if p, ok := sameJSON(av[i], bv[i], fmt.Sprintf("%s[%d]", path, i)); !ok {
				return p, false
			}
		}
		return "", true
	case float64:
		bv, ok := b.(float64)
		if !ok || math.Abs(av-bv) > 1e-12*math.Abs(bv)+1e-13 {
			return path, false
		}
		return "", true
	default:
		return path, a == b
	}
}

func TestSameJSONTolerance(t *testing.T) {
	a := map[string]any{"x": []any{1.0, "s"}, "n": 2.0}
	near := map[string]any{"x": []any{1.0 + 1e-14, "s"}, "n": 2.0}
	far := map[string]any{"x": []any{1.0 + 1e-9, "s"}, "n": 2.0}
	renamed := map[string]any{"x": []any{1.0, "t"}, "n": 2.0}
	if _, ok := sameJSON(a, near, "$"); !ok {
		t.Error("rounding-level difference reported as stale")
	}
	if p, ok := sameJSON(a, far, "$"); ok || p != "$.x[0]" {
		t.Errorf("changed number: got path %q ok %v, want $.x[0] false", p, ok)
	}
	if _, ok := sameJSON(a, renamed, "$"); ok {
		t.Error("changed string not reported")
	}
}

func TestBatchNormTrainRejectsSingleValue(t *testing.T) {
	bn := NewBatchNorm2d[float64](2)
	if _, _, _, err := bn.TrainForward(NewTensor[float64](1, 2, 1, 1)); err == nil {
		t.Fatal("one value per channel: got nil error")
	}
	if bn.NumBatchesTracked != 0 {
		t.Errorf("rejected batch was counted: num_batches_tracked %d", bn.NumBatchesTracked)
	}
}
