package checkpoint

import (
	"bytes"
	"math"
	"testing"
)

// TestSegmentSumSquares compares the fused float32 path with sums over
// Float64s, for whole rows, for runs inside rows and for ranges that start
// mid-tensor (unaligned with the chunk a caller would use).
func TestSegmentSumSquares(t *testing.T) {
	const rows, cols = 7, 12
	values := make([]float64, rows*cols)
	for i := range values {
		values[i] = math.Sin(float64(i)*0.7) * float64(i%5+1)
	}
	sources := []TensorSource{
		{Name: "w32", DType: Float32, Shape: []int{rows, cols}, WriteData: Float64Data(Float32, values)},
		{Name: "w64", DType: Float64, Shape: []int{rows, cols}, WriteData: Float64Data(Float64, values)},
	}
	var buf bytes.Buffer
	if err := WriteTorch(&buf, sources, nil); err != nil {
		t.Fatal(err)
	}
	f, err := OpenReaderAt("sumsq.pt", bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*Tensor{}
	for _, tn := range f.Models[0].Tensors {
		byName[tn.Name] = tn
	}
	w32 := byName["w32"]
	all, err := w32.Float64s()
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct{ lo, hi, seg int }{
		{0, rows * cols, cols},
		{0, rows * cols, 4},
		{2 * cols, 5 * cols, cols},
		{cols + 3, cols + 9, 3},
		{5, 5, 1},
	}
	for _, c := range cases {
		dst := make([]float64, (c.hi-c.lo)/c.seg)
		ok, err := w32.SegmentSumSquares(c.lo, c.hi, c.seg, dst)
		if err != nil || !ok {
			t.Fatalf("[%d, %d) by %d: ok %v, err %v; want the fast path", c.lo, c.hi, c.seg, ok, err)
		}
		for k := range dst {
			want := 0.0
			for _, x := range all[c.lo+k*c.seg : c.lo+(k+1)*c.seg] {
				want += x * x
			}
			if math.Abs(dst[k]-want) > 1e-12*want {
				t.Errorf("[%d, %d) by %d, segment %d: got %g, want %g", c.lo, c.hi, c.seg, k, dst[k], want)
			}
		}
	}

	// Anything but contiguous float32 in a file declines the fast path.
	dst := make([]float64, cols)
	if ok, _ := byName["w64"].SegmentSumSquares(0, rows*cols, cols, dst[:rows]); ok {
		t.Error("float64 tensor took the float32 fast path")
	}
	transposed := *w32
	transposed.Shape, transposed.Strides = []int{cols, rows}, []int{1, cols}
	if ok, _ := transposed.SegmentSumSquares(0, rows*cols, rows, dst[:cols]); ok {
		t.Error("non-contiguous view took the fast path")
	}
	if ok, _ := w32.SegmentSumSquares(0, 10, 3, dst); ok {
		t.Error("a range that is not a multiple of the segment length took the fast path")
	}
}
