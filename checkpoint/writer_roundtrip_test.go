package checkpoint

import (
	"bytes"
	"math"
	"path/filepath"
	"testing"
)

// decodeExpected converts raw little-endian elements of dtype d to float64
// independently of the reader: float16 by its IEEE definition, bfloat16 as
// the upper half of a float32.
func decodeExpected(t *testing.T, raw []byte, d DType) []float64 {
	t.Helper()
	size := d.Size()
	out := make([]float64, len(raw)/size)
	for i := range out {
		b := raw[i*size:]
		switch d {
		case Float32:
			out[i] = float64(math.Float32frombits(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24))
		case Float64, Int64:
			var u uint64
			for k := 7; k >= 0; k-- {
				u = u<<8 | uint64(b[k])
			}
			if d == Int64 {
				out[i] = float64(int64(u))
			} else {
				out[i] = math.Float64frombits(u)
			}
		case BFloat16:
			out[i] = float64(math.Float32frombits((uint32(b[0]) | uint32(b[1])<<8) << 16))
		case Float16:
			h := uint16(b[0]) | uint16(b[1])<<8
			exp := int(h>>10) & 0x1f
			frac := float64(h & 0x3ff)
			var v float64
			switch exp {
			case 0:
				v = frac / 1024 * math.Pow(2, -14)
			case 0x1f:
				v = math.Inf(1)
				if frac != 0 {
					v = math.NaN()
				}
			default:
				v = (1 + frac/1024) * math.Pow(2, float64(exp-15))
			}
			if h&0x8000 != 0 {
				v = -v
			}
			out[i] = v
		default:
			t.Fatalf("no expected decoding for %s", d)
		}
	}
	return out
}

func TestWriteTorchRoundTrip(t *testing.T) {
	cases := torchCases(t)
	layers := []LayerSpec{{Name: "features.0", Type: "Conv2d", Stride: []int{2, 2}, Groups: 4}}
	for _, withMeta := range []bool{false, true} {
		sources := make([]TensorSource, len(cases))
		for i, c := range cases {
			sources[i] = rawSource(c.name, c.dtype, c.shape, c.raw)
		}
		opts := &TorchWriteOptions{}
		if withMeta {
			opts = &TorchWriteOptions{Metadata: map[string]string{"note": "σ² ≥ 0"}, Layers: layers}
		}
		path := filepath.Join(t.TempDir(), "roundtrip.pt")
		if err := WriteTorchFile(path, sources, opts); err != nil {
			t.Fatalf("WriteTorchFile: %v", err)
		}

		f, err := Open(path)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer f.Close()
		if f.Format != FormatTorchZip {
			t.Errorf("format mismatch: got %s, want %s", f.Format, FormatTorchZip)
		}
		if len(f.Models) != 1 {
			t.Fatalf("Open found %d models, want 1", len(f.Models))
		}
		m := f.Models[0]
		wantKey := ""
		if withMeta {
			wantKey = "state_dict"
		}
		if m.Key != wantKey {
			t.Errorf("model key mismatch: got %q, want %q", m.Key, wantKey)
		}
		if len(m.Tensors) != len(cases) {
			t.Fatalf("Open found %d tensors, want %d", len(m.Tensors), len(cases))
		}
		for i, c := range cases {
			got := m.Tensors[i]
			if got.Name != c.name || got.DType != c.dtype {
				t.Errorf("tensor %d mismatch: got %s %s, want %s %s", i, got.Name, got.DType, c.name, c.dtype)
				continue
			}
			wantShape := c.shape
			if wantShape == nil {
				wantShape = []int{}
			}
			if !equalInts(got.Shape, wantShape) {
				t.Errorf("tensor %s shape mismatch: got %v, want %v", c.name, got.Shape, wantShape)
			}
			vals, err := got.Float64s()
			if err != nil {
				t.Errorf("tensor %s: Float64s: %v", c.name, err)
				continue
			}
			want := decodeExpected(t, c.raw, c.dtype)
			if len(vals) != len(want) {
				t.Errorf("tensor %s: read %d elements, want %d", c.name, len(vals), len(want))
				continue
			}
			for k := range want {
				same := vals[k] == want[k] && math.Signbit(vals[k]) == math.Signbit(want[k])
				if !same && !(math.IsNaN(vals[k]) && math.IsNaN(want[k])) {
					t.Errorf("tensor %s element %d mismatch: got %v, want %v", c.name, k, vals[k], want[k])
				}
			}
		}

		wantMeta, err := torchMetadata(opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Metadata) != len(wantMeta) {
			t.Errorf("metadata mismatch: got %v, want %v", f.Metadata, wantMeta)
		}
		for k, v := range wantMeta {
			if f.Metadata[k] != v {
				t.Errorf("metadata %q mismatch: got %q, want %q", k, f.Metadata[k], v)
			}
		}
	}
}

func TestWriteTorchRoundTripReaderAt(t *testing.T) {
	sources, raws := smallSources(t)
	var buf bytes.Buffer
	if err := WriteTorch(&buf, sources, nil); err != nil {
		t.Fatalf("WriteTorch: %v", err)
	}
	f, err := OpenReaderAt("small.pt", bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatalf("OpenReaderAt: %v", err)
	}
	if len(f.Models) != 1 || len(f.Models[0].Tensors) != len(raws) {
		t.Fatalf("OpenReaderAt found %d models, want 1 with %d tensors", len(f.Models), len(raws))
	}
	for i, tensor := range f.Models[0].Tensors {
		vals, err := tensor.Float64s()
		if err != nil {
			t.Fatalf("tensor %s: %v", tensor.Name, err)
		}
		want := decodeExpected(t, raws[i], Float32)
		for k := range want {
			if vals[k] != want[k] {
				t.Fatalf("tensor %s element %d mismatch: got %v, want %v", tensor.Name, k, vals[k], want[k])
			}
		}
	}
}
