package checkpoint

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// DefaultChunkBytes is the number of bytes WriteElementsTo reads at a time
// when its caller passes 0.
const DefaultChunkBytes = 4 << 20

// ByteSize returns the number of bytes the tensor's elements take in its
// dtype: NumElements()·DType.Size().
func (t *Tensor) ByteSize() int64 {
	return int64(t.NumElements()) * int64(t.DType.Size())
}

// WriteElementsTo copies the tensor's elements to w in row-major order of
// its shape, as little-endian values of the tensor's own dtype, and returns
// the number of bytes written. The bytes are copied as stored, so int64
// values beyond 2⁵³, NaN payloads and quantized or complex elements come
// through exactly; only big-endian storages are byte-swapped. A contiguous
// tensor is read at most chunkBytes at a time (DefaultChunkBytes when
// chunkBytes ≤ 0), so no copy of a whole large tensor is held.
//
// A tensor held in memory (NewTensor) is written as float64.
func (t *Tensor) WriteElementsTo(w io.Writer, chunkBytes int) (int64, error) {
	if chunkBytes <= 0 {
		chunkBytes = DefaultChunkBytes
	}
	if len(t.Strides) != len(t.Shape) {
		return 0, fmt.Errorf("tensor %s: %d strides for %d dimensions", t.Name, len(t.Strides), len(t.Shape))
	}
	lo, hi, err := t.span()
	if err != nil {
		return 0, err
	}
	n := int64(t.NumElements())
	if n == 0 {
		return 0, nil
	}
	st := t.Storage
	if st.mem != nil {
		return t.writeMemory(w, chunkBytes)
	}
	size := int64(st.DType.Size())
	if size == 0 || t.DType.Size() != int(size) {
		return 0, fmt.Errorf("tensor %s: dtype %s of storage %s has no fixed element size", t.Name, st.DType, st.Key)
	}
	swap := swapUnit(st.DType)
	if st.order == binary.ByteOrder(binary.LittleEndian) || st.order == nil {
		swap = 0
	}

	if !t.isContiguous() {
		// NOTE: a strided view is gathered from one read of its whole span,
		// so it is held in memory once; torch.save writes contiguous
		// tensors, so only views saved on purpose pay this.
		raw := make([]byte, (hi-lo)*size)
		if _, err := st.src.ReadAt(raw, st.base+lo*size); err != nil {
			return 0, fmt.Errorf("tensor %s: read storage %s of %s (elements %d to %d): %w", t.Name, st.Key, st.file, lo, hi, err)
		}
		out := make([]byte, 0, min(int64(chunkBytes), n*size))
		var written int64
		idx := make([]int, len(t.Shape))
		for range n {
			pos := t.Offset - lo
			for i, v := range idx {
				pos += int64(v) * int64(t.Strides[i])
			}
			out = append(out, raw[pos*size:(pos+1)*size]...)
			for i := len(idx) - 1; i >= 0; i-- {
				idx[i]++
				if idx[i] < t.Shape[i] {
					break
				}
				idx[i] = 0
			}
			if len(out)+int(size) > cap(out) {
				m, err := writeSwapped(w, out, swap)
				written += m
				if err != nil {
					return written, err
				}
				out = out[:0]
			}
		}
		m, err := writeSwapped(w, out, swap)
		return written + m, err
	}

	per := max(int64(chunkBytes)/size, 1)
	buf := make([]byte, min(per, n)*size)
	var written int64
	for first := t.Offset; first < t.Offset+n; first += per {
		last := min(first+per, t.Offset+n)
		b := buf[:(last-first)*size]
		if _, err := st.src.ReadAt(b, st.base+first*size); err != nil {
			return written, fmt.Errorf("tensor %s: read storage %s of %s (elements %d to %d): %w", t.Name, st.Key, st.file, first, last, err)
		}
		m, err := writeSwapped(w, b, swap)
		written += m
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// writeMemory writes an in-memory float64 tensor as little-endian float64.
func (t *Tensor) writeMemory(w io.Writer, chunkBytes int) (int64, error) {
	values, err := t.Float64s()
	if err != nil {
		return 0, err
	}
	per := max(chunkBytes/8, 1)
	buf := make([]byte, 0, min(per, len(values))*8)
	var written int64
	for i := 0; i < len(values); i += per {
		buf = buf[:0]
		for _, v := range values[i:min(i+per, len(values))] {
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
		}
		m, err := w.Write(buf)
		written += int64(m)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// swapUnit returns the width in bytes of the numbers whose byte order a
// big-endian storage of dtype d reverses: the element size, or half of it
// for complex dtypes, whose real and imaginary parts are swapped apart.
func swapUnit(d DType) int {
	switch d {
	case Complex64:
		return 4
	case Complex128:
		return 8
	}
	return d.Size()
}

// writeSwapped reverses every unit-byte group of b in place when unit > 1
// and writes b to w.
func writeSwapped(w io.Writer, b []byte, unit int) (int64, error) {
	if unit > 1 {
		for i := 0; i+unit <= len(b); i += unit {
			for j, k := i, i+unit-1; j < k; j, k = j+1, k-1 {
				b[j], b[k] = b[k], b[j]
			}
		}
	}
	n, err := w.Write(b)
	return int64(n), err
}
