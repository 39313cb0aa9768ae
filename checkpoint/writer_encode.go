package checkpoint

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// AppendElements appends values to dst as little-endian elements of dtype
// d and returns the extended slice. Floating-point values are rounded to
// nearest, ties to even, the way Tensor.to(dtype) rounds a float64 tensor
// in torch 1.13: float32 directly, float16 and bfloat16 through float32.
// Values beyond a dtype's range become ±Inf, and NaN stays NaN. Int64 takes
// only integers in [-2⁶³, 2⁶³) and returns an error naming the index of
// any other value. Dtypes other than those five are rejected.
func AppendElements(dst []byte, d DType, values []float64) ([]byte, error) {
	switch d {
	case Float32:
		for _, v := range values {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(float32(v)))
		}
	case Float64:
		for _, v := range values {
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
		}
	case Float16:
		for _, v := range values {
			dst = binary.LittleEndian.AppendUint16(dst, Float32ToFloat16(float32(v)))
		}
	case BFloat16:
		for _, v := range values {
			dst = binary.LittleEndian.AppendUint16(dst, Float32ToBFloat16(float32(v)))
		}
	case Int64:
		for i, v := range values {
			if v != math.Trunc(v) || v < -(1<<63) || v >= 1<<63 {
				return dst, fmt.Errorf("element %d is %v, which is not an int64", i, v)
			}
			dst = binary.LittleEndian.AppendUint64(dst, uint64(int64(v)))
		}
	default:
		return dst, fmt.Errorf("dtype %s cannot be encoded, so use float32, float64, float16, bfloat16 or int64", d)
	}
	return dst, nil
}

// Float64Data returns a TensorSource.WriteData function that writes values
// encoded as dtype d with AppendElements. It encodes in chunks, so memory
// beyond values stays small.
func Float64Data(d DType, values []float64) func(io.Writer) error {
	return func(w io.Writer) error {
		const chunk = 1 << 14
		buf := make([]byte, 0, chunk*max(d.Size(), 1))
		for start := 0; start < len(values); start += chunk {
			var err error
			buf, err = AppendElements(buf[:0], d, values[start:min(start+chunk, len(values))])
			if err != nil {
				return fmt.Errorf("encode as %s: %w", d, err)
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		return nil
	}
}

// GeneratedData returns a TensorSource.WriteData function for n elements
// of dtype d that fill computes block by block: each call receives the
// index of the block's first element and a slice to fill with the next
// len(values) elements. Only one block is held in memory, so it suits
// tensors too large to keep. An error from fill stops the write.
func GeneratedData(d DType, n int64, fill func(first int64, values []float64) error) func(io.Writer) error {
	return func(w io.Writer) error {
		const block = 1 << 14
		values := make([]float64, block)
		buf := make([]byte, 0, block*max(d.Size(), 1))
		for first := int64(0); first < n; first += block {
			chunk := values[:min(int64(block), n-first)]
			if err := fill(first, chunk); err != nil {
				return fmt.Errorf("generate elements from %d: %w", first, err)
			}
			var err error
			buf, err = AppendElements(buf[:0], d, chunk)
			if err != nil {
				return fmt.Errorf("encode as %s: %w", d, err)
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		return nil
	}
}

// ReaderData returns a TensorSource.WriteData function that copies r, which
// must yield the tensor's raw little-endian bytes and then io.EOF. WriteTorch
// reports an error when r yields more or fewer bytes than the tensor takes.
func ReaderData(r io.Reader) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := io.Copy(w, r)
		return err
	}
}

// Float32ToFloat16 converts f to IEEE 754 half precision, rounding to
// nearest with ties to even. Values beyond ±65504 after rounding become
// ±Inf, magnitudes up to 2⁻²⁵ become ±0, and NaN becomes a quiet
// NaN with f's sign.
func Float32ToFloat16(f float32) uint16 {
	bits := math.Float32bits(f)
	sign := uint16(bits>>16) & 0x8000
	exp := int(bits>>23) & 0xff
	mant := bits & 0x7fffff

	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}

	// halfExp is the biased half-precision exponent of f.
	halfExp := exp - 127 + 15
	if halfExp >= 0x1f {
		return sign | 0x7c00
	}

	if halfExp > 0 {
		// Normal half: drop 13 mantissa bits. A carry out of the
		// mantissa raises the exponent, and from the largest finite
		// value it yields exactly Inf (0x7c00).
		h := uint32(halfExp)<<10 | mant>>13
		rest := mant & 0x1fff
		if rest > 0x1000 || (rest == 0x1000 && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}

	// Subnormal half (unit 2⁻²⁴) or zero: the value is
	// (mant | 2²³)·2^(exp−150), so shift right by 14 − halfExp.
	shift := uint(14 - halfExp)
	if shift >= 25 {
		return sign
	}
	full := mant | 0x800000
	h := full >> shift
	rest := full & (1<<shift - 1)
	halfway := uint32(1) << (shift - 1)
	if rest > halfway || (rest == halfway && h&1 == 1) {
		h++
	}
	return sign | uint16(h)
}

// Float32ToBFloat16 converts f to bfloat16 (the upper 16 bits of a
// float32), rounding to nearest with ties to even as PyTorch does. NaN
// becomes a quiet NaN with f's sign.
func Float32ToBFloat16(f float32) uint16 {
	bits := math.Float32bits(f)
	if f != f {
		return uint16(bits>>16) | 0x40
	}
	bias := uint32(0x7fff) + (bits>>16)&1
	return uint16((bits + bias) >> 16)
}
