package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// safetensorsDump is the output of testdata/safetensors_values.py.
type safetensorsDump struct {
	HeaderLen int64                  `json:"header_len"`
	Metadata  map[string]string      `json:"metadata"`
	Tensors   map[string]torchTensor `json:"tensors"`
}

// pythonSafetensors decodes path with the json+struct reader in testdata.
// It skips the test when /usr/bin/python3 cannot run, except under CI.
func pythonSafetensors(t *testing.T, path string) safetensorsDump {
	t.Helper()
	if err := exec.Command(torchPython, "-c", "import json, struct").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s cannot run (%v); CI requires the Python reference", torchPython, err)
		}
		t.Skipf("%s cannot run (%v); skipping the Python comparison", torchPython, err)
	}
	script := filepath.Join(moduleRoot(t), "checkpoint", "testdata", "safetensors_values.py")
	cmd := exec.Command(torchPython, script, path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("safetensors_values.py %s: %v: %s", path, err, stderr.String())
	}
	var dump safetensorsDump
	if err := json.Unmarshal(out, &dump); err != nil {
		t.Fatalf("decode safetensors_values.py output: %v", err)
	}
	return dump
}

func TestSafetensorsRealTinygrad(t *testing.T) {
	path := realCheckpoint(t, "tinygrad_mnist_conv_relu_bn.safetensors")
	f, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer f.Close()

	if f.Format != FormatSafetensors {
		t.Errorf("format mismatch: got %s, want %s", f.Format, FormatSafetensors)
	}
	if len(f.Models) != 1 {
		t.Fatalf("model count mismatch: got %d, want 1", len(f.Models))
	}
	if len(f.Metadata) != 0 {
		t.Errorf("metadata mismatch: got %v, want none", f.Metadata)
	}
	if len(f.Warnings) != 0 {
		t.Errorf("unexpected warnings: %q", f.Warnings)
	}
	m := f.Models[0]
	counts := map[DType]int{}
	for _, tn := range m.Tensors {
		counts[tn.DType]++
	}
	if counts[Float32] != 18 || counts[Int64] != 2 || len(counts) != 2 {
		t.Errorf("dtype counts mismatch: got %v, want 18 float32 and 2 int64", counts)
	}
	nbt := tensorByName(m, "layers.4.num_batches_tracked")
	if nbt == nil || nbt.DType != Int64 || !sameShape(nbt.Shape, []int{1}) {
		t.Fatalf("layers.4.num_batches_tracked mismatch: got %+v, want int64 of shape [1]", nbt)
	}
	if w := tensorByName(m, "layers.2.weight"); w == nil || !sameShape(w.Shape, []int{32, 32, 5, 5}) {
		t.Errorf("layers.2.weight shape mismatch: got %+v, want [32 32 5 5]", w)
	}

	// File order is data order, which for this file is also header order.
	want := pythonSafetensors(t, path)
	if len(want.Tensors) != len(m.Tensors) {
		t.Fatalf("tensor count mismatch: got %d, want %d", len(m.Tensors), len(want.Tensors))
	}
	for _, tn := range m.Tensors {
		ref, ok := want.Tensors[tn.Name]
		if !ok {
			t.Errorf("tensor %s not in the Python reader's output", tn.Name)
			continue
		}
		ref.DType = strings.ToLower(map[string]string{"F32": "float32", "I64": "int64"}[ref.DType])
		compareTensor(t, tn, ref)
	}
}

// safetensorsBytes assembles a safetensors file from a raw JSON header and
// data, with the header length written as given.
func safetensorsBytes(header string, headerLen uint64, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, headerLen)
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func TestSafetensorsMalformedHeaders(t *testing.T) {
	data := make([]byte, 24) // room for six float32 values
	cases := []struct {
		name   string
		header string
		length int64 // header length to declare; -1 means the true length
		kind   error
		tensor string // the tensor the error must name, "" for none
		reason string // a fragment of the message
	}{
		{"overlapping", `{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, -1, ErrMalformed, "b", "overlap"},
		{"reversed", `{"a":{"dtype":"F32","shape":[0],"data_offsets":[16,8]}}`, -1, ErrMalformed, "a", "reversed"},
		{"out of range", `{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}`, -1, ErrTruncated, "a", "beyond"},
		{"wrong size", `{"a":{"dtype":"F32","shape":[5],"data_offsets":[0,24]}}`, -1, ErrMalformed, "a", "takes 5 elements"},
		{"gap", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}`, -1, ErrMalformed, "b", "gap"},
		{"trailing bytes", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, -1, ErrMalformed, "", "not indexed"},
		{"duplicate name", `{"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]},"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}`, -1, ErrMalformed, "a", "twice"},
		{"missing field", `{"a":{"dtype":"F32","data_offsets":[0,24]}}`, -1, ErrMalformed, "a", "needs dtype"},
		{"negative dimension", `{"a":{"dtype":"F32","shape":[-6],"data_offsets":[0,24]}}`, -1, ErrMalformed, "a", "shape"},
		{"metadata not strings", `{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}`, -1, ErrMalformed, "", "__metadata__"},
		{"non-JSON", `{"a":{"dtype":"F32",shape:[6]}}`, -1, ErrMalformed, "", "JSON"},
		{"array header", `{"a":1}`, -1, ErrMalformed, "a", "invalid entry"},
		{"length beyond file", `{"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}`, 1 << 20, ErrTruncated, "", "beyond the end"},
		{"length over cap", `{"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}}`, maxSafetensorsHeader + 1, ErrDeclaredSize, "", "limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := uint64(len(c.header))
			if c.length >= 0 {
				n = uint64(c.length)
			}
			path := filepath.Join(t.TempDir(), "bad.safetensors")
			if err := os.WriteFile(path, safetensorsBytes(c.header, n, data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path)
			if !errors.Is(err, c.kind) {
				t.Fatalf("error kind mismatch: got %v, want %v", err, c.kind)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error is %T, want *FormatError", err)
			}
			if fe.Format != FormatSafetensors {
				t.Errorf("format mismatch: got %q, want %q", fe.Format, FormatSafetensors)
			}
			if fe.Tensor != c.tensor {
				t.Errorf("tensor mismatch: got %q, want %q", fe.Tensor, c.tensor)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("error %q does not name the file", msg)
			}
			if c.tensor != "" && !strings.Contains(msg, "tensor "+c.tensor) {
				t.Errorf("error %q does not name tensor %s", msg, c.tensor)
			}
			if !strings.Contains(msg, c.reason) {
				t.Errorf("error %q does not mention %q", msg, c.reason)
			}
		})
	}
}

func TestSafetensorsUnknownDTypeSkipped(t *testing.T) {
	header := `{"__metadata__":{"format":"pt"},"f8":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]},"x":{"dtype":"F16","shape":[2],"data_offsets":[4,8]},"odd":{"dtype":"F4X","shape":[1],"data_offsets":[8,8]}}`
	data := []byte{1, 2, 3, 4, 0x00, 0x3c, 0x00, 0xc0} // float16 1 and -2
	f, err := OpenReaderAt("mixed.safetensors", bytes.NewReader(safetensorsBytes(header, uint64(len(header)), data)), int64(8+len(header)+len(data)))
	if err != nil {
		t.Fatalf("OpenReaderAt: %v", err)
	}
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata mismatch: got %v, want format=pt", f.Metadata)
	}
	if len(f.Warnings) != 2 || !strings.Contains(f.Warnings[0], "f8") || !strings.Contains(f.Warnings[1], "odd") {
		t.Errorf("warnings mismatch: got %q, want one for f8 and one for odd", f.Warnings)
	}
	if got := strings.Join(f.Unread, ","); got != "f8,odd" {
		t.Errorf("unread tensors: got %q, want f8,odd", got)
	}
	if len(f.Models) != 1 || len(f.Models[0].Tensors) != 1 {
		t.Fatalf("model mismatch: got %+v, want one model with tensor x", f.Models)
	}
	got, err := f.Models[0].Tensors[0].Float64s()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != 1 || got[1] != -2 {
		t.Errorf("x values mismatch: got %v, want [1 -2]", got)
	}
}

func TestSafetensorsLFSPointer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.safetensors")
	pointer := "version https://git-lfs.github.com/spec/v1\noid sha256:22972e102b673068019fc3bcea944536a1beb86988334b771d1cc606f547a1e3\nsize 353816\n"
	if err := os.WriteFile(path, []byte(pointer), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path)
	if !errors.Is(err, ErrLFSPointer) {
		t.Fatalf("error mismatch: got %v, want ErrLFSPointer", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "git lfs pull") {
		t.Errorf("error %q does not name the file and the fix", err)
	}
}

// writerCase is one tensor for the writer tests with its element values.
type writerCase struct {
	name   string
	dtype  DType
	shape  []int
	values []float64
}

// encodeLE encodes values as little-endian elements of d.
func encodeLE(d DType, values []float64) []byte {
	var b bytes.Buffer
	for _, v := range values {
		switch d {
		case Float64:
			binary.Write(&b, binary.LittleEndian, v)
		case Float32:
			binary.Write(&b, binary.LittleEndian, float32(v))
		case Float16:
			binary.Write(&b, binary.LittleEndian, float16Bits(v))
		case BFloat16:
			binary.Write(&b, binary.LittleEndian, uint16(math.Float32bits(float32(v))>>16))
		case Int64:
			binary.Write(&b, binary.LittleEndian, int64(v))
		case Int32:
			binary.Write(&b, binary.LittleEndian, int32(v))
		case Int16:
			binary.Write(&b, binary.LittleEndian, int16(v))
		case Int8:
			binary.Write(&b, binary.LittleEndian, int8(v))
		case Uint8, Bool:
			b.WriteByte(byte(v))
		}
	}
	return b.Bytes()
}

// float16Bits encodes the values used in these tests, which are exact in
// half precision: zero or ±m·2^e with a normal exponent.
func float16Bits(v float64) uint16 {
	if v == 0 {
		return 0
	}
	var sign uint16
	if v < 0 {
		sign, v = 0x8000, -v
	}
	frac, exp := math.Frexp(v) // v = frac·2^exp, frac in [0.5, 1)
	mant := uint16((frac*2 - 1) * 1024)
	return sign | uint16(exp-1+15)<<10 | mant
}

func writerCases() []writerCase {
	return []writerCase{
		{"conv.weight", Float32, []int{2, 1, 2}, []float64{0.5, -1.25, 3, 0.0009765625}},
		{"bn.running_var", Float64, []int{3}, []float64{1e-300, 2.5, math.Pi}},
		{"half", Float16, []int{2, 2}, []float64{1, -0.5, 65504, 0.125}},
		{"brain", BFloat16, []int{2}, []float64{-2, 0.375}},
		{"bn.num_batches_tracked", Int64, []int{}, []float64{1 << 40}},
		{"i32", Int32, []int{2}, []float64{-7, 1 << 30}},
		{"i16", Int16, []int{1}, []float64{-300}},
		{"i8", Int8, []int{3}, []float64{-128, 0, 127}},
		{"u8", Uint8, []int{2}, []float64{0, 255}},
		{"mask", Bool, []int{3}, []float64{1, 0, 1}},
		{"empty", Float32, []int{0, 4}, nil},
	}
}

func writerSources(cases []writerCase) []TensorSource {
	out := make([]TensorSource, len(cases))
	for i, c := range cases {
		raw := encodeLE(c.dtype, c.values)
		out[i] = TensorSource{Name: c.name, DType: c.dtype, Shape: c.shape, WriteData: func(w io.Writer) error {
			_, err := w.Write(raw)
			return err
		}}
	}
	return out
}

func TestWriteSafetensorsRoundTrip(t *testing.T) {
	cases := writerCases()
	metadata := map[string]string{"convbn_diag.format": "1", "note": "ω <fused>"}
	path := filepath.Join(t.TempDir(), "out.safetensors")
	if err := WriteSafetensorsFile(path, writerSources(cases), metadata); err != nil {
		t.Fatalf("WriteSafetensorsFile: %v", err)
	}

	f, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer f.Close()
	if f.Format != FormatSafetensors {
		t.Errorf("format mismatch: got %s, want %s", f.Format, FormatSafetensors)
	}
	if len(f.Metadata) != 2 || f.Metadata["note"] != metadata["note"] {
		t.Errorf("metadata mismatch: got %v, want %v", f.Metadata, metadata)
	}
	m := f.Models[0]
	if len(m.Tensors) != len(cases) {
		t.Fatalf("tensor count mismatch: got %d, want %d", len(m.Tensors), len(cases))
	}
	for i, c := range cases {
		tn := m.Tensors[i]
		if tn.Name != c.name || tn.DType != c.dtype || !sameShape(tn.Shape, c.shape) {
			t.Errorf("tensor %d mismatch: got %s %s %v, want %s %s %v", i, tn.Name, tn.DType, tn.Shape, c.name, c.dtype, c.shape)
			continue
		}
		got, err := tn.Float64s()
		if err != nil {
			t.Errorf("%s: Float64s: %v", c.name, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(append([]float64{}, c.values...)) {
			t.Errorf("%s values mismatch: got %v, want %v", c.name, got, c.values)
		}
	}
}

func TestWriteSafetensorsReadByPython(t *testing.T) {
	cases := writerCases()
	path := filepath.Join(t.TempDir(), "out.safetensors")
	if err := WriteSafetensorsFile(path, writerSources(cases), map[string]string{"k": "v"}); err != nil {
		t.Fatalf("WriteSafetensorsFile: %v", err)
	}
	dump := pythonSafetensors(t, path)
	if dump.HeaderLen%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", dump.HeaderLen)
	}
	if dump.Metadata["k"] != "v" {
		t.Errorf("metadata mismatch: got %v, want k=v", dump.Metadata)
	}
	for _, c := range cases {
		ref, ok := dump.Tensors[c.name]
		if !ok {
			t.Errorf("tensor %s missing from the Python reader's output", c.name)
			continue
		}
		if ref.DType != safetensorsDTypeName[c.dtype] || !sameShape(ref.Shape, c.shape) {
			t.Errorf("%s mismatch: got %s %v, want %s %v", c.name, ref.DType, ref.Shape, safetensorsDTypeName[c.dtype], c.shape)
		}
		got := ref.floats(t)
		if fmt.Sprint(got) != fmt.Sprint(append([]float64{}, c.values...)) {
			t.Errorf("%s values mismatch: got %v, want %v", c.name, got, c.values)
		}
	}
}

func TestWriteSafetensorsRejectsBadInput(t *testing.T) {
	ok := func(w io.Writer) error { _, err := w.Write(make([]byte, 8)); return err }
	cases := []struct {
		name    string
		tensors []TensorSource
		want    string
	}{
		{"empty name", []TensorSource{{Name: "", DType: Float32, Shape: []int{2}, WriteData: ok}}, "empty name"},
		{"reserved name", []TensorSource{{Name: "__metadata__", DType: Float32, Shape: []int{2}, WriteData: ok}}, "reserved"},
		{"duplicate", []TensorSource{{Name: "a", DType: Float32, Shape: []int{2}, WriteData: ok}, {Name: "a", DType: Float32, Shape: []int{2}, WriteData: ok}}, "twice"},
		{"complex dtype", []TensorSource{{Name: "a", DType: Complex64, Shape: []int{1}, WriteData: ok}}, "cannot be written"},
		{"negative shape", []TensorSource{{Name: "a", DType: Float32, Shape: []int{-2}, WriteData: ok}}, "negative"},
		{"short data", []TensorSource{{Name: "a", DType: Float32, Shape: []int{3}, WriteData: ok}}, "wrote 8 bytes"},
		{"long data", []TensorSource{{Name: "a", DType: Float32, Shape: []int{1}, WriteData: ok}}, "more than the 4 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.safetensors")
			if err := os.WriteFile(path, []byte("previous"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := WriteSafetensorsFile(path, c.tensors, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error mismatch: got %v, want one containing %q", err, c.want)
			}
			if b, _ := os.ReadFile(path); string(b) != "previous" {
				t.Errorf("existing file changed to %q after a failed write", b)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("temporary file left behind: %d entries in the folder", len(entries))
			}
		})
	}
}
