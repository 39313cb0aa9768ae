package analysis

import (
	"fmt"
	"math"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
)

// weightNorms sets ‖W_c‖ and ‖W'_c‖ on every channel. It reads the weight
// in slices along dimension 0 of at most about chunk elements, so a large
// weight is never held as one float64 copy.
//
// For an ordinary, grouped or depthwise conv, slice i of dimension 0 is
// output channel i. For a transposed conv with weight [C_in, C_out/G, k…],
// element [i, j, …] belongs to output channel g(i)·(C_out/G) + j with
// g(i) = ⌊i/(C_in/G)⌋.
func weightNorms(file string, conv *convbn.Conv, groups int, channels []Channel, chunk int) error {
	w := conv.Weight
	if len(w.Strides) != len(w.Shape) {
		return fmt.Errorf("%s: conv %s: weight %s has %d strides for %d dimensions", file, conv.Name, w.Name, len(w.Strides), len(w.Shape))
	}
	if chunk <= 0 {
		chunk = DefaultChunkElements
	}
	rows := w.Shape[0]
	rowLen := 1
	for _, d := range w.Shape[1:] {
		rowLen *= d
	}

	// Per-channel sums of squares kept as scale²·ssq, the LAPACK dlassq
	// scheme, so that float64 weights near the top of the range do not
	// overflow the sum.
	scale := make([]float64, len(channels))
	ssq := make([]float64, len(channels))
	nonFinite := make([]bool, len(channels))
	accumulate := func(c int, x float64) {
		if !isFinite(x) {
			nonFinite[c] = true
			return
		}
		a := math.Abs(x)
		if a == 0 {
			return
		}
		if a > scale[c] {
			r := scale[c] / a
			ssq[c] = 1 + ssq[c]*r*r
			scale[c] = a
			return
		}
		r := a / scale[c]
		ssq[c] += r * r
	}

	perChunk := 1
	if rowLen > 0 && chunk/rowLen > 1 {
		perChunk = chunk / rowLen
	}
	inPerGroup := rows / groups
	outPerGroup := 0
	if conv.Transposed {
		outPerGroup = w.Shape[1]
	}
	innerLen := 0
	if conv.Transposed && outPerGroup > 0 {
		innerLen = rowLen / outPerGroup
	}

	for lo := 0; lo < rows; lo += perChunk {
		hi := min(lo+perChunk, rows)
		x, err := readRows(w, lo, hi)
		if err != nil {
			return fmt.Errorf("%s: conv %s: %w", file, conv.Name, err)
		}
		for i := lo; i < hi; i++ {
			row := x[(i-lo)*rowLen : (i-lo+1)*rowLen]
			if !conv.Transposed {
				for _, v := range row {
					accumulate(i, v)
				}
				continue
			}
			base := (i / inPerGroup) * outPerGroup
			for j := 0; j < outPerGroup; j++ {
				for _, v := range row[j*innerLen : (j+1)*innerLen] {
					accumulate(base+j, v)
				}
			}
		}
	}

	for c := range channels {
		norm := scale[c] * math.Sqrt(ssq[c])
		if nonFinite[c] {
			norm = math.NaN()
		}
		channels[c].setWeightNorm(norm)
	}
	return nil
}

// readRows returns elements [lo, hi) along dimension 0 of t in row-major
// order. It reads a view of t, so only those rows' bytes are loaded.
func readRows(t *checkpoint.Tensor, lo, hi int) ([]float64, error) {
	shape := append([]int(nil), t.Shape...)
	shape[0] = hi - lo
	view := &checkpoint.Tensor{
		Name:    t.Name,
		DType:   t.DType,
		Shape:   shape,
		Strides: t.Strides,
		Offset:  t.Offset + int64(lo)*int64(t.Strides[0]),
		Storage: t.Storage,
	}
	return view.Float64s()
}
