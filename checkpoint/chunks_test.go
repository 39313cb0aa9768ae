package checkpoint

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
)

// countingSource records how many reads reach it.
type countingSource struct {
	r     *bytes.Reader
	reads int
}

func (c *countingSource) ReadAt(p []byte, off int64) (int, error) {
	c.reads++
	return c.r.ReadAt(p, off)
}

func TestWriteElementsExactBytes(t *testing.T) {
	big := []int64{1<<53 + 1, -(1 << 62), 3, 0, -1, 1<<63 - 1}
	le := make([]byte, 8*len(big))
	be := make([]byte, 8*len(big))
	for i, v := range big {
		binary.LittleEndian.PutUint64(le[8*i:], uint64(v))
		binary.BigEndian.PutUint64(be[8*i:], uint64(v))
	}
	for _, c := range []struct {
		name  string
		data  []byte
		order binary.ByteOrder
	}{{"little-endian", le, binary.LittleEndian}, {"big-endian", be, binary.BigEndian}} {
		src := &countingSource{r: bytes.NewReader(c.data)}
		st := NewFileStorage("0", Int64, int64(len(big)), src, 0, c.order, "test.pt")
		tt := &Tensor{Name: "counts", DType: Int64, Shape: []int{2, 3}, Strides: []int{3, 1}, Storage: st}
		var out bytes.Buffer
		n, err := tt.WriteElementsTo(&out, 16)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if n != int64(len(le)) || !bytes.Equal(out.Bytes(), le) {
			t.Errorf("%s: bytes mismatch: got %x, want %x", c.name, out.Bytes(), le)
		}
		if src.reads != 3 {
			t.Errorf("%s: got %d reads of at most 16 bytes, want 3", c.name, src.reads)
		}
	}
}

func TestWriteElementsStridedView(t *testing.T) {
	// Storage holds a 2×3 float32 matrix; the tensor is its transpose
	// (shape [3, 2], strides [1, 3]) starting one element in, over a
	// storage of 7 elements.
	values := []float32{9, 1, 2, 3, 4, 5, 6}
	raw := make([]byte, 4*len(values))
	for i, v := range values {
		binary.BigEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	st := NewFileStorage("0", Float32, int64(len(values)), bytes.NewReader(raw), 0, binary.BigEndian, "test.pt")
	tt := &Tensor{Name: "t", DType: Float32, Shape: []int{3, 2}, Strides: []int{1, 3}, Offset: 1, Storage: st}
	var out bytes.Buffer
	if _, err := tt.WriteElementsTo(&out, 8); err != nil {
		t.Fatal(err)
	}
	want := []float32{1, 4, 2, 5, 3, 6}
	for i, w := range want {
		got := math.Float32frombits(binary.LittleEndian.Uint32(out.Bytes()[4*i:]))
		if got != w {
			t.Errorf("element %d mismatch: got %v, want %v", i, got, w)
		}
	}
	if out.Len() != 4*len(want) {
		t.Errorf("length mismatch: got %d bytes, want %d", out.Len(), 4*len(want))
	}
}

func TestWriteElementsViewOutsideStorage(t *testing.T) {
	st := NewFileStorage("0", Float32, 4, bytes.NewReader(make([]byte, 16)), 0, binary.LittleEndian, "test.pt")
	tt := &Tensor{Name: "t", DType: Float32, Shape: []int{5}, Strides: []int{1}, Storage: st}
	if _, err := tt.WriteElementsTo(&bytes.Buffer{}, 0); err == nil {
		t.Error("a view past its storage was written without an error")
	}
}

func TestWriteElementsMemoryTensor(t *testing.T) {
	tt := NewTensor("m", []int{3}, []float64{1.5, -2, math.Inf(1)})
	var out bytes.Buffer
	if _, err := tt.WriteElementsTo(&out, 8); err != nil {
		t.Fatal(err)
	}
	for i, w := range []float64{1.5, -2, math.Inf(1)} {
		if got := math.Float64frombits(binary.LittleEndian.Uint64(out.Bytes()[8*i:])); got != w {
			t.Errorf("element %d mismatch: got %v, want %v", i, got, w)
		}
	}
}

func TestDecodeFloat32Aligned(t *testing.T) {
	values := []float32{1.5, -0, float32(math.Inf(-1)), 3.4e38, 1e-45, -2.25}
	// One spare byte in front gives a misaligned copy for the fallback.
	raw := make([]byte, 1+4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(raw[1+4*i:], math.Float32bits(v))
	}
	aligned := append([]byte(nil), raw[1:]...)
	for name, buf := range map[string][]byte{"aligned": aligned, "misaligned": raw[1:]} {
		dst := make([]float64, len(values))
		decodeFloat32LE(dst, buf)
		for i, v := range values {
			if dst[i] != float64(v) || math.Signbit(dst[i]) != math.Signbit(float64(v)) {
				t.Errorf("%s element %d mismatch: got %v, want %v", name, i, dst[i], v)
			}
		}
	}
}
