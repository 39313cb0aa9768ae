package experiment

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/examples"
	"github.com/convbn-diag/convbn-diag/internal/testenv"
	"github.com/convbn-diag/convbn-diag/nn"
)

// systemPython is the interpreter that can import torch; the python3 on
// PATH may be another one.
const systemPython = "/usr/bin/python3"

// requireTorch skips the test when torch cannot be imported, unless the CI
// environment variable is set, in which case the test fails.
func requireTorch(t *testing.T) {
	t.Helper()
	testenv.RequirePython(t, "torch")
}

// torchReference is what testdata/mnist_reference.py prints.
type torchReference struct {
	EvalLogits   []float64 `json:"eval_logits"`
	DeployLogits []float64 `json:"deploy_logits"`
	Loss         float64   `json:"loss"`
	LambdaEval   float64   `json:"lambda_eval"`
	LambdaDeploy float64   `json:"lambda_deploy"`
}

func TestTorchForwardAndHessian(t *testing.T) {
	requireTorch(t)
	w, dir := testData(t)
	src, _ := loadTask(t, dir, SourceDigits, 64, 1)

	// Hand the images and labels to PyTorch as raw little-endian files.
	tmp := t.TempDir()
	x, labels := batchTensor[float64](src, span(src.Len()))
	imgPath, lblPath, ckptPath := filepath.Join(tmp, "images.f64"), filepath.Join(tmp, "labels.i64"), filepath.Join(tmp, "mnist.pt")
	imgBytes := make([]byte, 8*len(x.Data))
	for i, v := range x.Data {
		binary.LittleEndian.PutUint64(imgBytes[8*i:], math.Float64bits(v))
	}
	lblBytes := make([]byte, 8*len(labels))
	for i, l := range labels {
		binary.LittleEndian.PutUint64(lblBytes[8*i:], uint64(l))
	}
	ckpt, err := examples.Bytes("mnist")
	if err != nil {
		t.Fatal(err)
	}
	for path, b := range map[string][]byte{imgPath: imgBytes, lblPath: lblBytes, ckptPath: ckpt} {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const iterations = 30
	out, err := exec.Command(systemPython, "testdata/mnist_reference.py", ckptPath, imgPath, lblPath, strconv.Itoa(iterations)).Output()
	if err != nil {
		t.Fatalf("mnist_reference.py: %v", err)
	}
	var ref torchReference
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatalf("decode the reference output: %v", err)
	}

	// The embedded checkpoint stores float32 values, which both sides
	// widen to float64 exactly, so only summation order separates them.
	for _, mode := range []convbn.Mode{convbn.Eval, convbn.Deploy} {
		net, err := Build[float64](w, false, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := net.SetMode(mode); err != nil {
			t.Fatal(err)
		}
		logits, err := net.Forward(x)
		if err != nil {
			t.Fatal(err)
		}
		want := ref.EvalLogits
		if mode == convbn.Deploy {
			want = ref.DeployLogits
		}
		if len(want) != logits.Len() {
			t.Fatalf("%s: %d logits, PyTorch has %d", mode, logits.Len(), len(want))
		}
		maxDiff := 0.0
		for i, v := range logits.Data {
			maxDiff = math.Max(maxDiff, math.Abs(v-want[i]))
		}
		if maxDiff > 1e-9 {
			t.Errorf("%s logits differ from PyTorch by up to %g, want ≤ 1e-9", mode, maxDiff)
		}
		if mode == convbn.Eval {
			loss, _, err := nn.SoftmaxCrossEntropy(logits, labels)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(loss-ref.Loss) > 1e-12 {
				t.Errorf("loss %.15g, PyTorch %.15g", loss, ref.Loss)
			}
		}
	}

	// Finite-difference Hessian-vector products against PyTorch's exact
	// double backward; both run power iteration from different starts.
	// NOTE: the central difference with step h crosses ReLU and max-pool
	// kinks, so it measures curvature smoothed over a scale h, which
	// PyTorch's almost-everywhere Hessian leaves out. On these 64 images
	// that adds about 1% to λ_max in Eval coordinates and 6% in fused
	// coordinates, and the 10% tolerance is there for that bias.
	for _, c := range []struct {
		mode convbn.Mode
		want float64
	}{{convbn.Eval, ref.LambdaEval}, {convbn.Deploy, ref.LambdaDeploy}} {
		fb, err := newFullBatch(w, src, c.mode)
		if err != nil {
			t.Fatal(err)
		}
		got, residual, err := fb.lambdaMax(iterations, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: λ_max %.6g (residual %.2g), PyTorch %.6g", c.mode, got, residual, c.want)
		if math.Abs(got/c.want-1) > 0.1 {
			t.Errorf("%s: λ_max %.6g, PyTorch double backward gives %.6g", c.mode, got, c.want)
		}
	}
}
