package analysis

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/internal/testenv"
)

// checkpointDir returns the shared folder of real checkpoints, found next
// to the module root, or skips the test when it is absent.
func checkpointDir(t *testing.T) string {
	t.Helper()
	return testenv.SharedCheckpoints(t)
}

// realFile is one real checkpoint and the ε its BatchNorms use.
type realFile struct {
	name string
	eps  float64
	// required is false for formats whose reader may be missing; such a
	// file is skipped when Open fails.
	required bool
}

var realFiles = []realFile{
	{"akamaster_resnet20-12fca82f.th", 1e-5, true},
	{"ultralytics_yolov5n.pt", 1e-3, true},
	{"ecg1d_conv_relu_bn.pth", 1e-5, true},
	{"dcgan_mnist_generator_convT.pth", 1e-5, true},
	{"ulfd_version-RFB-320.pth", 1e-5, true},
	{"kuangliu_style_ckpt_convbias.pth", 1e-5, true},
	{"linear_bn1d_tabular_densenet.pth", 1e-5, true},
	{"silero_vad_micro.jit", 1e-5, false},
	{"tinygrad_mnist_conv_relu_bn.safetensors", 1e-5, false},
	{"ulfd_version-RFB-320.onnx", 1e-5, false},
}

// openPairs opens a real file and finds the pairs of each model.
func openPairs(t *testing.T, path string) (*checkpoint.File, []convbn.Result, error) {
	t.Helper()
	f, err := checkpoint.Open(path)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { f.Close() })
	results := make([]convbn.Result, len(f.Models))
	for i, m := range f.Models {
		r, err := convbn.FindPairs(m, f.Metadata, convbn.Options{})
		if err != nil {
			t.Fatalf("find pairs in %s model %q: %v", path, m.Key, err)
		}
		results[i] = *r
	}
	return f, results, nil
}

// referenceLayer computes ω and ‖W'_c‖ of a pair from its tensors with
// plain float64 loops: it folds every weight element W' = ω_c·W using the
// flat index to find the element's output channel.
func referenceLayer(t *testing.T, p *convbn.Pair) (omega, fusedNorm []float64) {
	t.Helper()
	read := func(x *checkpoint.Tensor) []float64 {
		v, err := x.Float64s()
		if err != nil {
			t.Fatalf("read %s: %v", x.Name, err)
		}
		return v
	}
	mean, variance := read(p.BN.RunningMean), read(p.BN.RunningVar)
	var gamma []float64
	if p.BN.Affine {
		gamma = read(p.BN.Weight)
	}
	omega = make([]float64, len(mean))
	for c := range omega {
		g := 1.0
		if gamma != nil {
			g = gamma[c]
		}
		omega[c] = g / math.Sqrt(variance[c]+p.BN.Eps)
	}

	w := read(p.Conv.Weight)
	shape := p.Conv.Weight.Shape
	rowLen := len(w) / shape[0]
	groups := max(p.Conv.Groups, 1)
	sums := make([]float64, len(omega))
	for k, x := range w {
		i := k / rowLen
		c := i
		if p.Conv.Transposed {
			j := (k % rowLen) / (rowLen / shape[1])
			c = (i/(shape[0]/groups))*shape[1] + j
		}
		fused := omega[c] * x
		sums[c] += fused * fused
	}
	fusedNorm = make([]float64, len(sums))
	for c, s := range sums {
		fusedNorm[c] = math.Sqrt(s)
	}
	return omega, fusedNorm
}

// normClose reports whether ‖got − want‖₂ ≤ rel·‖want‖₂ + abs, skipping
// positions where want is not finite, which must match got exactly in
// kind.
func normClose(got, want []float64, rel, abs float64) (diff, size float64, ok bool) {
	if len(got) != len(want) {
		return math.Inf(1), 0, false
	}
	for i := range want {
		if !isFinite(want[i]) {
			if isFinite(got[i]) {
				return math.Inf(1), 0, false
			}
			continue
		}
		diff += (got[i] - want[i]) * (got[i] - want[i])
		size += want[i] * want[i]
	}
	diff, size = math.Sqrt(diff), math.Sqrt(size)
	return diff, size, diff <= rel*size+abs
}

func TestRealFilesAgainstLoops(t *testing.T) {
	dir := checkpointDir(t)
	for _, rf := range realFiles {
		t.Run(rf.name, func(t *testing.T) {
			path := filepath.Join(dir, rf.name)
			f, results, err := openPairs(t, path)
			if err != nil {
				if !rf.required {
					t.Skipf("reader cannot open %s yet: %v", rf.name, err)
				}
				t.Fatal(err)
			}
			opts := DefaultOptions()
			opts.WeightNorms = true
			opts.ChunkElements = 4096
			report, err := AnalyzeFile(f, results, opts)
			if err != nil {
				t.Fatal(err)
			}

			pairs := 0
			for mi, mr := range report.Models {
				for li, l := range mr.Layers {
					pairs++
					p := &results[mi].Pairs[li]
					// ONNX stores ε as float32, so 1e-5 reads as 9.99999974738e-06.
					if !relClose(l.Eps, rf.eps, 1e-6, 0) {
						t.Errorf("%s: eps mismatch: got %g (%s), want %g", l.Conv, l.Eps, l.EpsSource, rf.eps)
					}
					omega, fusedNorm := referenceLayer(t, p)
					gotOmega := make([]float64, l.NumChannels())
					gotNorm := make([]float64, l.NumChannels())
					for c, ch := range l.Channels {
						gotOmega[c], gotNorm[c] = ch.Omega, ch.FusedWeightNorm
					}
					if d, s, ok := normClose(gotOmega, omega, 1e-6, 1e-12); !ok {
						t.Errorf("%s: omega mismatch: ‖got − want‖ = %g, ‖want‖ = %g", l.Conv, d, s)
					}
					if d, s, ok := normClose(gotNorm, fusedNorm, 1e-6, 1e-12); !ok {
						t.Errorf("%s: fused weight norm mismatch: ‖got − want‖ = %g, ‖want‖ = %g", l.Conv, d, s)
					}
				}
			}
			t.Logf("%s: %d models, %d pairs", rf.name, len(report.Models), pairs)
		})
	}
}

func TestRealFileYoloEps(t *testing.T) {
	dir := checkpointDir(t)
	f, results, err := openPairs(t, filepath.Join(dir, "ultralytics_yolov5n.pt"))
	if err != nil {
		t.Fatal(err)
	}
	report, err := AnalyzeFile(f, results, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	layers := 0
	for _, m := range report.Models {
		for _, l := range m.Layers {
			layers++
			if l.Eps != 1e-3 || l.EpsSource != convbn.SourceFile {
				t.Errorf("%s: eps mismatch: got %g from %q, want 0.001 from the file", l.Conv, l.Eps, l.EpsSource)
			}
			if strings.HasPrefix(l.Conv, "model.24") {
				t.Errorf("Detect conv %s paired, but it has no BatchNorm", l.Conv)
			}
		}
	}
	if layers == 0 {
		t.Error("no pairs found in yolov5n")
	}
}
