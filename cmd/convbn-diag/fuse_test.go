package main

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// readFuseJSON decodes a fuse map or JSON report.
func readFuseJSON(t *testing.T, data []byte) fuseReport {
	t.Helper()
	var r fuseReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("decode fuse JSON: %v\n%s", err, data)
	}
	return r
}

// openTensors opens a checkpoint and returns its only model's tensors by
// name.
func openTensors(t *testing.T, path string) (*checkpoint.File, map[string]*checkpoint.Tensor) {
	t.Helper()
	f, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if len(f.Models) != 1 {
		t.Fatalf("%s: %d models, want 1", path, len(f.Models))
	}
	m := map[string]*checkpoint.Tensor{}
	for _, tt := range f.Models[0].Tensors {
		m[tt.Name] = tt
	}
	return f, m
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

func TestFuseKeepsOtherTensors(t *testing.T) {
	dir := sharedCheckpoints(t)
	in := filepath.Join(dir, "kuangliu_style_ckpt_convbias.pth")
	before := fileHash(t, in)
	out := filepath.Join(t.TempDir(), "fused.pt")
	code, _, stderr := runCLI(t, "fuse", in, "-o", out)
	if code != exitOK {
		t.Fatalf("fuse exit %d, stderr %q", code, stderr)
	}
	if fileHash(t, in) != before {
		t.Fatal("fuse modified its input")
	}
	mapData, err := os.ReadFile(filepath.Join(filepath.Dir(out), "fused.json"))
	if err != nil {
		t.Fatalf("map not written beside the output: %v", err)
	}
	r := readFuseJSON(t, mapData)
	if len(r.Layers) != 5 || r.Prefix != "module." || r.ModelKey != "net" {
		t.Fatalf("map mismatch: got %d layers, prefix %q, key %q; want 5, module., net", len(r.Layers), r.Prefix, r.ModelKey)
	}

	_, inT := openTensors(t, in)
	_, outT := openTensors(t, out)
	removed := map[string]bool{}
	fused := map[string]bool{}
	for _, l := range r.Layers {
		if l.BiasAdded || l.EpsSource != "default" || l.Eps != 1e-5 {
			t.Errorf("layer %s: bias added %v, eps %g from %s; want an existing bias and the default 1e-5", l.Conv, l.BiasAdded, l.Eps, l.EpsSource)
		}
		for _, k := range l.RemovedKeys {
			removed[strings.TrimPrefix(k, r.Prefix)] = true
		}
		fused[strings.TrimPrefix(l.WeightKey, r.Prefix)] = true
		fused[strings.TrimPrefix(l.BiasKey, r.Prefix)] = true
	}
	if len(removed) != 25 {
		t.Errorf("removed keys: got %d, want 25 (5 per BatchNorm)", len(removed))
	}
	for name, tin := range inT {
		tout, ok := outT[name]
		switch {
		case removed[name]:
			if ok {
				t.Errorf("BatchNorm entry %s still in the output", name)
			}
		case !ok:
			t.Errorf("tensor %s missing from the output", name)
		case fused[name]:
			if tout.DType != tin.DType || !slices.Equal(tout.Shape, tin.Shape) {
				t.Errorf("fused %s: got %s %v, want %s %v", name, tout.DType, tout.Shape, tin.DType, tin.Shape)
			}
		default:
			a, _ := tin.Float64s()
			b, _ := tout.Float64s()
			if tout.DType != tin.DType || !slices.Equal(a, b) {
				t.Errorf("unfused tensor %s changed (dtype %s → %s)", name, tin.DType, tout.DType)
			}
		}
	}
	if len(outT) != len(inT)-25 {
		t.Errorf("output tensors: got %d, want %d", len(outT), len(inT)-25)
	}
}

func TestFuseOutputNamesKeepPrefix(t *testing.T) {
	dir := sharedCheckpoints(t)
	out := filepath.Join(t.TempDir(), "fused.safetensors")
	code, _, stderr := runCLI(t, "fuse", filepath.Join(dir, "kuangliu_style_ckpt_convbias.pth"), "-o", out)
	if code != exitOK {
		t.Fatalf("fuse exit %d, stderr %q", code, stderr)
	}
	names := safetensorsNames(t, out)
	if len(names) == 0 || !strings.HasPrefix(names[0], "module.ConvPart.0.") {
		t.Errorf("safetensors names: got %v, want names starting module.ConvPart.0.", names)
	}
	if slices.Contains(names, "module.ConvPart.1.running_var") {
		t.Error("BatchNorm running_var written to the safetensors output")
	}
}

// safetensorsNames returns the tensor names of a safetensors file's header
// in data order.
func safetensorsNames(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := int(data[0]) | int(data[1])<<8 | int(data[2])<<16 | int(data[3])<<24
	var header map[string]struct {
		Offsets [2]int64 `json:"data_offsets"`
	}
	if err := json.Unmarshal(data[8:8+n], &header); err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range header {
		if k != "__metadata__" {
			names = append(names, k)
		}
	}
	slices.SortFunc(names, func(a, b string) int { return int(header[a].Offsets[0] - header[b].Offsets[0]) })
	return names
}

func TestFusePickledModuleHalf(t *testing.T) {
	dir := sharedCheckpoints(t)
	out := filepath.Join(t.TempDir(), "yolo.safetensors")
	code, stdout, stderr := runCLI(t, "fuse", "-f", "json", filepath.Join(dir, "ultralytics_yolov5n.pt"), "-o", out)
	if code != exitOK {
		t.Fatalf("fuse exit %d, stderr %q", code, stderr)
	}
	r := readFuseJSON(t, []byte(stdout))
	if !r.PickledModule || len(r.Layers) != 57 {
		t.Fatalf("got pickled %v and %d layers, want a pickled module with 57 pairs", r.PickledModule, len(r.Layers))
	}
	for _, l := range r.Layers {
		if l.OutputDType != "float16" || l.Half == nil || l.Half.DType != "float16" || l.Eps != 1e-3 || l.EpsSource != "file" {
			t.Fatalf("layer %s: dtype %s, half %+v, eps %g (%s); want float16 with a float16 check and ε 1e-3 from the file", l.Conv, l.OutputDType, l.Half, l.Eps, l.EpsSource)
		}
	}
}

// writeHalfFixture writes a one-pair checkpoint (conv without bias) in
// which, with ε = 1e-9, channel 0 has ω ≈ 3.2e4, so W' reaches −1.3e5,
// beyond float16's largest finite 65504; channel 1 has ω ≈ 1e-6, so W'
// falls below float16's smallest normal 2⁻¹⁴; channel 2 is ordinary.
func writeHalfFixture(t *testing.T, path string) {
	t.Helper()
	vec := func(name string, v ...float64) checkpoint.TensorSource {
		return checkpoint.TensorSource{Name: name, DType: checkpoint.Float32, Shape: []int{len(v)}, WriteData: float32Data(v)}
	}
	tensors := []checkpoint.TensorSource{
		{Name: "features.0.weight", DType: checkpoint.Float32, Shape: []int{3, 3, 1, 1}, WriteData: float32Data(halfFixtureWeight)},
		vec("features.1.weight", 1, 1e-6, 1),
		vec("features.1.bias", 0, 0, 0.5),
		vec("features.1.running_mean", 0, 0, 0.1),
		vec("features.1.running_var", 1e-12, 1, 2),
	}
	if err := checkpoint.WriteTorchFile(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
}

var halfFixtureWeight = []float64{1, -4, 0.5, 1, 1, -1, 0.25, 0.5, 2}

func float32Data(v []float64) func(io.Writer) error {
	return func(w io.Writer) error {
		b, err := checkpoint.AppendElements(nil, checkpoint.Float32, v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
}

func TestFuseHalfOverflowUnderflow(t *testing.T) {
	tmp := t.TempDir()
	in := filepath.Join(tmp, "tiny.pt")
	writeHalfFixture(t, in)
	out := filepath.Join(tmp, "tiny-fused.pt")
	code, stdout, stderr := runCLI(t, "fuse", "--dtype", "float16", "-f", "json", "--eps", "1e-9", in, "-o", out)
	if code != exitOK {
		t.Fatalf("fuse exit %d, stderr %q", code, stderr)
	}
	r := readFuseJSON(t, []byte(stdout))
	if len(r.Layers) != 1 || r.Layers[0].Half == nil {
		t.Fatalf("report: got %+v, want one layer with a float16 check", r.Layers)
	}
	h := r.Layers[0].Half
	if !slices.Equal(h.Overflow, []int{0}) {
		t.Errorf("overflow channels: got %v, want [0]", h.Overflow)
	}
	if !slices.Equal(h.Underflow, []int{1}) {
		t.Errorf("underflow channels: got %v, want [1]", h.Underflow)
	}
	if h.RelErr != nil {
		t.Errorf("float16 error: got %v, want null because W' overflows", *h.RelErr)
	}
	if e := r.Layers[0].Float32RelErr; e == nil || *e > 0x1p-24 {
		t.Errorf("float32 error: got %v, want at most 2⁻²⁴", e)
	}
	if !r.Layers[0].BiasAdded || r.Layers[0].BiasKey != "features.0.bias" {
		t.Errorf("bias: added %v as %q, want features.0.bias added", r.Layers[0].BiasAdded, r.Layers[0].BiasKey)
	}

	_, got := openTensors(t, out)
	w, b := got["features.0.weight"], got["features.0.bias"]
	if w == nil || b == nil || w.DType != checkpoint.Float16 || b.DType != checkpoint.Float16 {
		t.Fatalf("fused tensors: got %v and %v, want float16 weight and bias", w, b)
	}
	ws, _ := w.Float64s()
	bs, _ := b.Float64s()
	omega2 := 1 / math.Sqrt(2+1e-9)
	for k := 6; k < 9; k++ {
		want := checkpoint.Float16ToFloat64(checkpoint.Float32ToFloat16(float32(omega2 * halfFixtureWeight[k])))
		if ws[k] != want {
			t.Errorf("W'[%d] mismatch: got %v, want %v", k, ws[k], want)
		}
	}
	if !math.IsInf(ws[1], -1) {
		t.Errorf("W'[1]: got %v, want -Inf in float16", ws[1])
	}
	wantB2 := checkpoint.Float16ToFloat64(checkpoint.Float32ToFloat16(float32(0.5 + omega2*(0-0.1))))
	if bs[2] != wantB2 {
		t.Errorf("b'[2] mismatch: got %v, want %v", bs[2], wantB2)
	}
}

func TestFuseUsageErrors(t *testing.T) {
	tmp := t.TempDir()
	in := filepath.Join(tmp, "tiny.pt")
	writeHalfFixture(t, in)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no output", []string{"fuse", in}, "-o"},
		{"output is input", []string{"fuse", in, "-o", in}, "overwrite"},
		{"map is input", []string{"fuse", in, "-o", filepath.Join(tmp, "x.pt"), "--map", in}, "overwrite"},
		{"map is output", []string{"fuse", in, "-o", filepath.Join(tmp, "x.pt"), "--map", filepath.Join(tmp, "x.pt")}, "--map"},
		{"extension", []string{"fuse", in, "-o", filepath.Join(tmp, "x.onnx")}, ".safetensors"},
		{"dtype", []string{"fuse", in, "-o", filepath.Join(tmp, "x.pt"), "--dtype", "int8"}, "--dtype"},
		{"format", []string{"fuse", in, "-o", filepath.Join(tmp, "x.pt"), "-f", "csv"}, "--format"},
		{"two inputs", []string{"fuse", in, in, "-o", filepath.Join(tmp, "x.pt")}, "arg"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(t, c.args...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and a message with %q", c.name, code, stderr, exitUsage, c.want)
		}
	}
	entries, _ := os.ReadDir(tmp)
	if len(entries) != 1 {
		t.Errorf("usage errors left files behind: %v", entries)
	}
}

func TestFuseUnreadableInputWritesNothing(t *testing.T) {
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "bad.pt")
	if err := os.WriteFile(bad, []byte("<html>login</html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{bad, filepath.Join(tmp, "missing.pt")} {
		out := filepath.Join(tmp, "out.pt")
		code, stdout, stderr := runCLI(t, "fuse", in, "-o", out)
		if code != exitFailure || !strings.Contains(stderr, filepath.Base(in)) || stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %d and a message naming the file", in, code, stdout, stderr, exitFailure)
		}
	}
	entries, _ := os.ReadDir(tmp)
	if len(entries) != 1 {
		t.Errorf("failed runs left files behind: %v", entries)
	}
}

func TestFuseTableReport(t *testing.T) {
	tmp := t.TempDir()
	in := filepath.Join(tmp, "tiny.pt")
	writeHalfFixture(t, in)
	code, stdout, stderr := runCLI(t, "fuse", "--dtype", "bfloat16", in, "-o", filepath.Join(tmp, "f.pt"))
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"features.0", "features.1", "bfloat16 err", "1 pairs folded", "1 conv biases added"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
}
