package checkpoint

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/convbn-diag/convbn-diag/internal/testenv"
)

// torchPython is the interpreter that has torch; the python3 on PATH may not.
const torchPython = "/usr/bin/python3"

// moduleRoot returns the directory holding go.mod.
func moduleRoot(t testing.TB) string {
	t.Helper()
	return testenv.ModuleRoot(t)
}

// realCheckpoint returns the path of a file in the shared checkpoint folder
// beside the repository, skipping the test when the folder is absent.
func realCheckpoint(t testing.TB, name string) string {
	t.Helper()
	return testenv.Checkpoint(t, name)
}

var (
	torchOnce sync.Once
	torchErr  error
)

// requireTorchReader skips the test when torch cannot be imported, except under
// CI (CI set in the environment), where the missing reference is a failure.
func requireTorchReader(t testing.TB) {
	t.Helper()
	torchOnce.Do(func() {
		torchErr = exec.Command(torchPython, "-c", "import torch").Run()
	})
	if torchErr == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s cannot import torch (%v); CI requires the PyTorch reference", torchPython, torchErr)
	}
	t.Skipf("%s cannot import torch (%v); skipping the PyTorch comparison", torchPython, torchErr)
}

// torchTensor is one tensor as torch loaded it.
type torchTensor struct {
	DType  string   `json:"dtype"`
	Shape  []int    `json:"shape"`
	Values []string `json:"values"` // float.hex() of each element as float64
}

// floats parses the hexadecimal float strings.
func (tt torchTensor) floats(t testing.TB) []float64 {
	t.Helper()
	out := make([]float64, len(tt.Values))
	for i, s := range tt.Values {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("parse torch value %q: %v", s, err)
		}
		out[i] = v
	}
	return out
}

// torchValues runs testdata/torch_values.py on path and returns the named
// tensors of the model at key (all of them when names is empty).
func torchValues(t testing.TB, path, key string, names ...string) map[string]torchTensor {
	t.Helper()
	requireTorchReader(t)
	script := filepath.Join(moduleRoot(t), "checkpoint", "testdata", "torch_values.py")
	args := append([]string{script, path, key}, names...)
	cmd := exec.Command(torchPython, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("torch_values.py %s %q: %v", path, key, err)
	}
	var res struct {
		Tensors map[string]torchTensor `json:"tensors"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("decode torch_values.py output: %v", err)
	}
	return res.Tensors
}

// compareTensor checks dtype, shape and every element of got against what
// torch loaded, with exact equality (NaN matches NaN).
func compareTensor(t testing.TB, got *Tensor, want torchTensor) {
	t.Helper()
	if got.DType.String() != want.DType {
		t.Errorf("%s dtype mismatch: got %s, want %s", got.Name, got.DType, want.DType)
	}
	if !sameShape(got.Shape, want.Shape) {
		t.Errorf("%s shape mismatch: got %v, want %v", got.Name, got.Shape, want.Shape)
		return
	}
	values, err := got.Float64s()
	if err != nil {
		t.Errorf("%s: Float64s: %v", got.Name, err)
		return
	}
	wantValues := want.floats(t)
	if len(values) != len(wantValues) {
		t.Errorf("%s element count mismatch: got %d, want %d", got.Name, len(values), len(wantValues))
		return
	}
	bad := 0
	for i, v := range values {
		w := wantValues[i]
		if v == w || (math.IsNaN(v) && math.IsNaN(w)) {
			continue
		}
		if bad < 3 {
			t.Errorf("%s element %d mismatch: got %v, want %v", got.Name, i, v, w)
		}
		bad++
	}
	if bad > 3 {
		t.Errorf("%s: %d elements differ in all", got.Name, bad)
	}
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// tensorByName returns the tensor of m with the given name, or nil.
func tensorByName(m *Model, name string) *Tensor {
	for _, t := range m.Tensors {
		if t.Name == name {
			return t
		}
	}
	return nil
}
