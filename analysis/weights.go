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

	// Per-channel sums of squares. A run of elements is summed plainly,
	// which is exact enough and fast; only a run whose plain sum overflows,
	// underflows or meets a non-finite element goes through the LAPACK
	// dlassq scheme (scale²·ssq), so float64 weights near either end of the
	// range still give the right norm.
	plain := make([]float64, len(channels))
	scale := make([]float64, len(channels))
	ssq := make([]float64, len(channels))
	nonFinite := make([]bool, len(channels))
	scaled := func(c int, x float64) {
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
	accumulate := func(c int, xs []float64) {
		sum := sumSquares(xs)
		if isFinite(sum) && sum > 1e-280 {
			plain[c] += sum
			return
		}
		for _, x := range xs {
			scaled(c, x)
		}
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

	// segLen is the run of consecutive elements that belongs to one output
	// channel: a whole row, or for a transposed conv one of its
	// outPerGroup slices.
	segLen := rowLen
	if conv.Transposed {
		segLen = innerLen
	}

	var buf, sums []float64
	for lo := 0; lo < rows; lo += perChunk {
		hi := min(lo+perChunk, rows)

		// Fast path: float32 weights summed as they are read. Float32
		// squares neither overflow nor underflow in float64, so only a
		// non-finite sum sends the chunk down the general path below.
		if segLen > 0 {
			sums = resizeFloats(sums, (hi-lo)*rowLen/segLen)
			ok, err := w.SegmentSumSquares(lo*rowLen, hi*rowLen, segLen, sums)
			if err != nil {
				return fmt.Errorf("%s: conv %s: %w", file, conv.Name, err)
			}
			if ok && allFinite(sums) {
				for k, sum := range sums {
					if !conv.Transposed {
						plain[lo+k] += sum
						continue
					}
					i, j := lo+k/outPerGroup, k%outPerGroup
					plain[(i/inPerGroup)*outPerGroup+j] += sum
				}
				continue
			}
		}

		x, err := readRows(w, lo, hi, buf)
		if err != nil {
			return fmt.Errorf("%s: conv %s: %w", file, conv.Name, err)
		}
		buf = x
		for i := lo; i < hi; i++ {
			row := x[(i-lo)*rowLen : (i-lo+1)*rowLen]
			if !conv.Transposed {
				accumulate(i, row)
				continue
			}
			base := (i / inPerGroup) * outPerGroup
			for j := 0; j < outPerGroup; j++ {
				accumulate(base+j, row[j*innerLen:(j+1)*innerLen])
			}
		}
	}

	for c := range channels {
		norm := math.Hypot(math.Sqrt(plain[c]), scale[c]*math.Sqrt(ssq[c]))
		if nonFinite[c] {
			norm = math.NaN()
		}
		channels[c].setWeightNorm(norm)
	}
	return nil
}

// readRows returns elements [lo, hi) along dimension 0 of t in row-major
// order, reusing buf's storage when it is large enough. It reads a view of t, so only those rows' bytes are loaded.
func readRows(t *checkpoint.Tensor, lo, hi int, buf []float64) ([]float64, error) {
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
	return view.Float64sInto(buf)
}

// sumSquares returns Σ x² over xs. Four independent partial sums let the
// additions overlap instead of waiting on one another.
func sumSquares(xs []float64) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(xs); i += 4 {
		s0 += xs[i] * xs[i]
		s1 += xs[i+1] * xs[i+1]
		s2 += xs[i+2] * xs[i+2]
		s3 += xs[i+3] * xs[i+3]
	}
	for ; i < len(xs); i++ {
		s0 += xs[i] * xs[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// resizeFloats returns xs with length n, reallocated when its capacity is
// short.
func resizeFloats(xs []float64, n int) []float64 {
	if cap(xs) < n {
		return make([]float64, n)
	}
	return xs[:n]
}

// allFinite reports whether every element of xs is finite.
func allFinite(xs []float64) bool {
	for _, x := range xs {
		if !isFinite(x) {
			return false
		}
	}
	return true
}
