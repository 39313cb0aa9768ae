package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/internal/testenv"
)

// systemPython is the interpreter that can import torch. The python3 on
// PATH may be another one.
const systemPython = "/usr/bin/python3"

// requireTorch skips the test when torch cannot be imported, unless the CI
// environment variable is set, in which case the test fails.
func requireTorch(t *testing.T) {
	t.Helper()
	testenv.RequirePython(t, "torch")
}

// runPython runs script with the system interpreter and args and returns
// its standard output.
func runPython(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(systemPython, append([]string{"-c", script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s failed: %v\n%s", systemPython, err, stderr.String())
	}
	return out
}

// torchDumpScript loads a checkpoint with torch.load(weights_only=True) and
// prints, as JSON, every tensor's dtype, shape, layout and element bit
// patterns, plus the metadata dict when there is one.
const torchDumpScript = `
import json, sys, torch
obj = torch.load(sys.argv[1], weights_only=True)
meta = None
if isinstance(obj, dict) and "state_dict" in obj:
    meta = obj["convbn_diag_metadata"]
    assert set(obj) == {"state_dict", "convbn_diag_metadata"}, sorted(obj)
    assert all(type(k) is str and type(v) is str for k, v in meta.items())
    obj = obj["state_dict"]
assert type(obj).__name__ == "OrderedDict", type(obj)
bits = {torch.float16: torch.int16, torch.bfloat16: torch.int16,
        torch.float32: torch.int32, torch.float64: torch.int64,
        torch.int64: torch.int64}
out = []
for name, t in obj.items():
    out.append({
        "name": name,
        "dtype": str(t.dtype).replace("torch.", ""),
        "shape": list(t.shape),
        "contiguous": t.is_contiguous(),
        "offset": t.storage_offset(),
        "requires_grad": t.requires_grad,
        "bits": [str(b) for b in t.reshape(-1).view(bits[t.dtype]).tolist()],
    })
json.dump({"tensors": out, "metadata": meta}, sys.stdout)
`

// torchDump is the JSON that torchDumpScript prints.
type torchDump struct {
	Tensors []struct {
		Name         string   `json:"name"`
		DType        string   `json:"dtype"`
		Shape        []int    `json:"shape"`
		Contiguous   bool     `json:"contiguous"`
		Offset       int      `json:"offset"`
		RequiresGrad bool     `json:"requires_grad"`
		Bits         []string `json:"bits"`
	} `json:"tensors"`
	Metadata map[string]string `json:"metadata"`
}

// loadWithTorch returns what torch.load(path, weights_only=True) reads.
func loadWithTorch(t *testing.T, path string) torchDump {
	t.Helper()
	var dump torchDump
	if err := json.Unmarshal(runPython(t, torchDumpScript, path), &dump); err != nil {
		t.Fatalf("decode torch dump of %s: %v", path, err)
	}
	return dump
}

// elementBits splits little-endian element bytes into the signed integers
// that torch's Tensor.view(int dtype) returns for them, as decimal strings.
func elementBits(raw []byte, d DType) []string {
	size := d.Size()
	out := make([]string, 0, len(raw)/size)
	for i := 0; i+size <= len(raw); i += size {
		var v int64
		switch size {
		case 2:
			v = int64(int16(binary.LittleEndian.Uint16(raw[i:])))
		case 4:
			v = int64(int32(binary.LittleEndian.Uint32(raw[i:])))
		case 8:
			v = int64(binary.LittleEndian.Uint64(raw[i:]))
		}
		out = append(out, strconv.FormatInt(v, 10))
	}
	return out
}

// specialValues are float64 inputs that exercise rounding, subnormals,
// overflow and non-finite values in every dtype.
var specialValues = []float64{
	0, math.Copysign(0, -1), 1, -1, 0.1, -2.5, 1.0 / 3,
	65504, 65520, 70000, -1e6, 3.4e38, 1e39,
	6e-8, 2.9e-8, 3e-8, 1e-40, 1e-300, 5.960464477539063e-08,
	math.Inf(1), math.Inf(-1), math.NaN(),
	1 + 1.0/2048, 1 + 3.0/2048, 1 + 1.0/256, 1 + 3.0/256,
}

// torchCase is one tensor for the torch cross-check, with its raw bytes.
type torchCase struct {
	name  string
	dtype DType
	shape []int
	raw   []byte
}

// torchCases returns tensors of every writable dtype in several shapes:
// a scalar, an empty tensor, 1-D special values and a 4-D conv weight.
func torchCases(t *testing.T) []torchCase {
	t.Helper()
	var cases []torchCase
	for _, d := range []DType{Float32, Float64, Float16, BFloat16, Int64} {
		vals := specialValues
		if d == Int64 {
			vals = []float64{0, 1, -1, 255, 256, 65535, 65536, -(1 << 31), 1<<31 - 1, 1 << 40, -(1 << 62), 1<<63 - 1024}
		}
		scalar := []float64{vals[4]}
		conv := make([]float64, 4*3*3*3)
		for i := range conv {
			conv[i] = math.Sin(float64(i)) * 0.3
			if d == Int64 {
				conv[i] = float64(i*7 - 50)
			}
		}
		for _, c := range []struct {
			suffix string
			shape  []int
			values []float64
		}{
			{"scalar", nil, scalar},
			{"empty", []int{0, 3}, nil},
			{"special", []int{len(vals)}, vals},
			{"conv.weight", []int{4, 3, 3, 3}, conv},
		} {
			raw, err := AppendElements(nil, d, c.values)
			if err != nil {
				t.Fatalf("AppendElements(%s, %s): %v", d, c.suffix, err)
			}
			cases = append(cases, torchCase{name: d.String() + "." + c.suffix, dtype: d, shape: c.shape, raw: raw})
		}
	}
	return cases
}

func TestWriteTorchLoadsInTorch(t *testing.T) {
	requireTorch(t)
	cases := torchCases(t)
	sources := make([]TensorSource, len(cases))
	for i, c := range cases {
		sources[i] = TensorSource{Name: c.name, DType: c.dtype, Shape: c.shape, WriteData: ReaderData(bytes.NewReader(c.raw))}
	}
	momentum := 0.1
	layers := []LayerSpec{
		{Name: "features.0", Type: "Conv2d", Stride: []int{1, 1}, Padding: []int{1, 1}, Dilation: []int{1, 1}, Groups: 1},
		{Name: "features.1", Type: "BatchNorm2d", Eps: 1e-5, Momentum: &momentum},
	}
	metadata := map[string]string{"source": "writer test", "unicode": "ε = 1e-5, ω = γ/√(σ²+ε)", "empty": ""}

	for _, withMeta := range []bool{false, true} {
		opts := &TorchWriteOptions{}
		if withMeta {
			opts = &TorchWriteOptions{Root: "flags", Metadata: metadata, Layers: layers}
		}
		for i, c := range cases {
			sources[i].WriteData = ReaderData(bytes.NewReader(c.raw))
		}
		path := filepath.Join(t.TempDir(), "all_dtypes.pt")
		if err := WriteTorchFile(path, sources, opts); err != nil {
			t.Fatalf("WriteTorchFile: %v", err)
		}
		dump := loadWithTorch(t, path)

		if len(dump.Tensors) != len(cases) {
			t.Fatalf("torch read %d tensors, want %d", len(dump.Tensors), len(cases))
		}
		for i, c := range cases {
			got := dump.Tensors[i]
			if got.Name != c.name {
				t.Errorf("tensor %d name mismatch: got %q, want %q", i, got.Name, c.name)
				continue
			}
			if got.DType != c.dtype.String() {
				t.Errorf("tensor %s dtype mismatch: got %s, want %s", c.name, got.DType, c.dtype)
			}
			wantShape := c.shape
			if wantShape == nil {
				wantShape = []int{}
			}
			if !equalInts(got.Shape, wantShape) {
				t.Errorf("tensor %s shape mismatch: got %v, want %v", c.name, got.Shape, wantShape)
			}
			if !got.Contiguous || got.Offset != 0 || got.RequiresGrad {
				t.Errorf("tensor %s: contiguous %v, storage offset %d, requires_grad %v; want true, 0, false", c.name, got.Contiguous, got.Offset, got.RequiresGrad)
			}
			want := elementBits(c.raw, c.dtype)
			if len(got.Bits) != len(want) {
				t.Errorf("tensor %s: torch read %d elements, want %d", c.name, len(got.Bits), len(want))
				continue
			}
			for k := range want {
				if got.Bits[k] != want[k] {
					t.Errorf("tensor %s element %d bits mismatch: got %s, want %s", c.name, k, got.Bits[k], want[k])
				}
			}
		}

		if !withMeta {
			if dump.Metadata != nil {
				t.Errorf("torch read metadata %v from a file written without metadata", dump.Metadata)
			}
			continue
		}
		wantMeta, err := torchMetadata(opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(dump.Metadata) != len(wantMeta) {
			t.Errorf("metadata has %d keys, want %d: %v", len(dump.Metadata), len(wantMeta), dump.Metadata)
		}
		for k, v := range wantMeta {
			if dump.Metadata[k] != v {
				t.Errorf("metadata %q mismatch: got %q, want %q", k, dump.Metadata[k], v)
			}
		}
		var gotLayers []LayerSpec
		if err := json.Unmarshal([]byte(dump.Metadata[MetadataLayersKey]), &gotLayers); err != nil {
			t.Fatalf("layer metadata is not JSON: %v", err)
		}
		if len(gotLayers) != 2 || gotLayers[1].Eps != 1e-5 || gotLayers[1].Momentum == nil || *gotLayers[1].Momentum != 0.1 || gotLayers[0].Groups != 1 {
			t.Errorf("layer metadata mismatch: got %+v", gotLayers)
		}
		if dump.Metadata[MetadataFormatKey] != MetadataFormat {
			t.Errorf("metadata format mismatch: got %q, want %q", dump.Metadata[MetadataFormatKey], MetadataFormat)
		}
	}
}

// torchConvertScript converts the float64 values given on stdin as a JSON
// list of decimal strings (exact, and able to carry -0, NaN and Inf) to
// each dtype with Tensor.to and prints the element bit patterns.
const torchConvertScript = `
import json, sys, torch
vals = torch.tensor([float(s) for s in json.load(sys.stdin)], dtype=torch.float64)
bits = {"float16": (torch.float16, torch.int16), "bfloat16": (torch.bfloat16, torch.int16),
        "float32": (torch.float32, torch.int32)}
json.dump({k: [str(b) for b in vals.to(d).view(v).tolist()] for k, (d, v) in bits.items()}, sys.stdout)
`

func TestAppendElementsMatchesTorch(t *testing.T) {
	requireTorch(t)

	// Special values, random magnitudes across the float16 and bfloat16
	// ranges, the float16 subnormal range and exact rounding ties.
	vals := append([]float64(nil), specialValues...)
	seed := uint64(12345)
	for range 4000 {
		seed = seed*6364136223846793005 + 1442695040888963407
		mant := float64(seed>>11) / (1 << 53)
		exp := int(seed>>3%64) - 40
		v := math.Ldexp(1+mant, exp)
		if seed&1 == 1 {
			v = -v
		}
		vals = append(vals, v)
	}
	for k := range 2048 {
		vals = append(vals, float64(k)*math.Ldexp(1, -25), 1+float64(k)*math.Ldexp(1, -11))
	}

	text := make([]string, len(vals))
	for i, v := range vals {
		text[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	in, err := json.Marshal(text)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(systemPython, "-c", torchConvertScript)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s failed: %v\n%s", systemPython, err, stderr.String())
	}
	var want map[string][]string
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatalf("decode torch output: %v", err)
	}

	for _, d := range []DType{Float16, BFloat16, Float32} {
		raw, err := AppendElements(nil, d, vals)
		if err != nil {
			t.Fatalf("AppendElements(%s): %v", d, err)
		}
		got := elementBits(raw, d)
		bad := 0
		for i := range got {
			// torch's vectorized bfloat16 conversion returns 0xffff for
			// NaN while its scalar one returns 0x7fc0; any NaN will do.
			if math.IsNaN(vals[i]) && isNaNBits(d, got[i]) && isNaNBits(d, want[d.String()][i]) {
				continue
			}
			if got[i] != want[d.String()][i] {
				bad++
				if bad <= 5 {
					t.Errorf("%s of %v bits mismatch: got %s, want %s", d, vals[i], got[i], want[d.String()][i])
				}
			}
		}
		if bad > 5 {
			t.Errorf("%s: %d of %d conversions differ from torch", d, bad, len(vals))
		}
	}
}

func TestPickleIntMatchesPython(t *testing.T) {
	if _, err := os.Stat(systemPython); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing", systemPython)
		}
		t.Skipf("%s is missing: %v", systemPython, err)
	}
	vals := []int64{0, 1, 255, 256, 65535, 65536, -1, -128, -129, 1<<31 - 1, 1 << 31, -(1 << 31), -(1 << 31) - 1,
		1 << 40, -(1 << 40), 1<<63 - 1, -(1 << 63), 127 << 48, -(128 << 48)}
	p := &pickler{globals: map[string]int{}}
	p.buf = append(p.buf, pickleOpProto, 2, pickleOpMark)
	for _, v := range vals {
		p.int(v)
	}
	p.buf = append(p.buf, pickleOpTuple, pickleOpStop)

	const script = `
import pickle, sys
print(" ".join(str(v) for v in pickle.loads(sys.stdin.buffer.read())))
`
	cmd := exec.Command(systemPython, "-c", script)
	cmd.Stdin = bytes.NewReader(p.buf)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pickle.loads failed: %v", err)
	}
	got := strings.Fields(string(out))
	if len(got) != len(vals) {
		t.Fatalf("Python read %d ints, want %d: %q", len(got), len(vals), out)
	}
	for i, v := range vals {
		if got[i] != strconv.FormatInt(v, 10) {
			t.Errorf("pickled int mismatch: got %s, want %d", got[i], v)
		}
	}
}

// isNaNBits reports whether the decimal bit pattern from elementBits is a
// NaN of dtype d.
func isNaNBits(d DType, bits string) bool {
	v, err := strconv.ParseInt(bits, 10, 64)
	if err != nil {
		return false
	}
	switch d {
	case Float16:
		return uint16(v)&0x7c00 == 0x7c00 && uint16(v)&0x3ff != 0
	case BFloat16:
		return uint16(v)&0x7f80 == 0x7f80 && uint16(v)&0x7f != 0
	case Float32:
		return math.IsNaN(float64(math.Float32frombits(uint32(v))))
	}
	return math.IsNaN(math.Float64frombits(uint64(v)))
}

func equalInts(a, b []int) bool {
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
