package checkpoint

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// Size returns the number of bytes of one element, or 0 for Invalid.
func (d DType) Size() int {
	switch d {
	case Float64, Int64, Complex64:
		return 8
	case Float32, Int32, QInt32:
		return 4
	case Float16, BFloat16, Int16:
		return 2
	case Int8, Uint8, Bool, QInt8, QUInt8:
		return 1
	case Complex128:
		return 16
	}
	return 0
}

// String returns the PyTorch name of the dtype, such as "float32".
func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	case Float16:
		return "float16"
	case BFloat16:
		return "bfloat16"
	case Int64:
		return "int64"
	case Int32:
		return "int32"
	case Int16:
		return "int16"
	case Int8:
		return "int8"
	case Uint8:
		return "uint8"
	case Bool:
		return "bool"
	case Complex64:
		return "complex64"
	case Complex128:
		return "complex128"
	case QInt8:
		return "qint8"
	case QUInt8:
		return "quint8"
	case QInt32:
		return "qint32"
	}
	return "invalid"
}

// IsFloat reports whether the dtype holds real floating-point numbers.
func (d DType) IsFloat() bool {
	return d == Float32 || d == Float64 || d == Float16 || d == BFloat16
}

// Storage is a flat run of elements that one or more tensors view. Its bytes
// stay in the file until a tensor that views it is read.
type Storage struct {
	// Key identifies the storage inside the file (the zip entry name under
	// data/, or the legacy storage key).
	Key   string
	DType DType
	// Len is the number of elements, validated against the bytes available.
	Len int64

	order binary.ByteOrder
	src   io.ReaderAt // nil for an in-memory storage
	base  int64       // byte offset of element 0 in src
	mem   []float64   // elements of an in-memory storage
	file  string      // path used in error messages
}

// NewFileStorage returns a storage of n elements of dtype d whose bytes
// start at byte offset base of src, in the given byte order. file names the
// source in error messages. The caller must have checked that
// base + n·d.Size() bytes exist.
func NewFileStorage(key string, d DType, n int64, src io.ReaderAt, base int64, order binary.ByteOrder, file string) *Storage {
	return &Storage{Key: key, DType: d, Len: n, order: order, src: src, base: base, file: file}
}

// NewTensor returns a contiguous float64 tensor held in memory. It is meant
// for tests and for values computed rather than read from a file.
func NewTensor(name string, shape []int, data []float64) *Tensor {
	n := 1
	for _, s := range shape {
		n *= s
	}
	if n != len(data) {
		panic(fmt.Sprintf("checkpoint.NewTensor %s: shape %v needs %d elements, got %d", name, shape, n, len(data)))
	}
	st := &Storage{Key: name, DType: Float64, Len: int64(n), mem: data}
	return &Tensor{Name: name, DType: Float64, Shape: append([]int(nil), shape...), Strides: ContiguousStrides(shape), Storage: st}
}

// ContiguousStrides returns the row-major strides, in elements, of shape.
func ContiguousStrides(shape []int) []int {
	strides := make([]int, len(shape))
	step := 1
	for i := len(shape) - 1; i >= 0; i-- {
		strides[i] = step
		step *= shape[i]
	}
	return strides
}

// NumElements returns the product of the tensor's shape (1 for a scalar).
func (t *Tensor) NumElements() int {
	n := 1
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// span returns the lowest and one past the highest storage element the
// tensor touches.
func (t *Tensor) span() (lo, hi int64, err error) {
	if t.NumElements() == 0 {
		return t.Offset, t.Offset, nil
	}
	lo, hi = t.Offset, t.Offset
	for i, s := range t.Shape {
		if s <= 0 {
			continue
		}
		step := int64(t.Strides[i]) * int64(s-1)
		if step < 0 {
			lo += step
		} else {
			hi += step
		}
	}
	hi++
	if lo < 0 || t.Storage == nil || hi > t.Storage.Len {
		n := int64(-1)
		if t.Storage != nil {
			n = t.Storage.Len
		}
		return 0, 0, fmt.Errorf("tensor %s: view (offset %d, shape %v, strides %v) reaches elements [%d, %d) of a storage of %d", t.Name, t.Offset, t.Shape, t.Strides, lo, hi, n)
	}
	return lo, hi, nil
}

// Float64s reads the tensor's elements in row-major order of its shape,
// honoring the storage offset and strides, converted to float64.
func (t *Tensor) Float64s() ([]float64, error) {
	if len(t.Strides) != len(t.Shape) {
		return nil, fmt.Errorf("tensor %s: %d strides for %d dimensions", t.Name, len(t.Strides), len(t.Shape))
	}
	lo, hi, err := t.span()
	if err != nil {
		return nil, err
	}
	raw, err := t.Storage.read(lo, hi)
	if err != nil {
		return nil, fmt.Errorf("tensor %s: %w", t.Name, err)
	}
	if t.isContiguous() {
		start := t.Offset - lo
		if t.Storage.mem != nil {
			return append([]float64(nil), raw[start:start+int64(t.NumElements())]...), nil
		}
		return raw[start : start+int64(t.NumElements())], nil
	}
	out := make([]float64, t.NumElements())
	if len(out) == 0 {
		return out, nil
	}
	idx := make([]int, len(t.Shape))
	for k := range out {
		pos := t.Offset - lo
		for i, v := range idx {
			pos += int64(v) * int64(t.Strides[i])
		}
		out[k] = raw[pos]
		for i := len(idx) - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < t.Shape[i] {
				break
			}
			idx[i] = 0
		}
	}
	return out, nil
}

// isContiguous reports whether the tensor's elements are laid out in
// row-major order without gaps, so a read needs no index walk.
func (t *Tensor) isContiguous() bool {
	step := 1
	for i := len(t.Shape) - 1; i >= 0; i-- {
		if t.Shape[i] != 1 && t.Strides[i] != step {
			return false
		}
		step *= t.Shape[i]
	}
	return true
}

// read returns storage elements [lo, hi) as float64.
func (s *Storage) read(lo, hi int64) ([]float64, error) {
	if s.mem != nil {
		return s.mem[lo:hi], nil
	}
	if hi <= lo {
		return nil, nil
	}
	size := int64(s.DType.Size())
	if size == 0 {
		return nil, fmt.Errorf("storage %s has dtype %s, which cannot be read as numbers", s.Key, s.DType)
	}
	buf := make([]byte, (hi-lo)*size)
	if _, err := s.src.ReadAt(buf, s.base+lo*size); err != nil {
		return nil, fmt.Errorf("read storage %s of %s (elements %d to %d): %w", s.Key, s.file, lo, hi, err)
	}
	return decode(buf, s.DType, s.order)
}

// decode converts little- or big-endian elements of dtype d to float64.
// Each dtype has its own loop, because a switch per element would cost more
// than the conversion itself on large weights.
func decode(buf []byte, d DType, order binary.ByteOrder) ([]float64, error) {
	size := d.Size()
	if size == 0 {
		return nil, fmt.Errorf("dtype %s cannot be read as real numbers", d)
	}
	out := make([]float64, len(buf)/size)
	switch d {
	case Float32:
		for i := range out {
			out[i] = float64(math.Float32frombits(order.Uint32(buf[4*i:])))
		}
	case Float64:
		for i := range out {
			out[i] = math.Float64frombits(order.Uint64(buf[8*i:]))
		}
	case Float16:
		for i := range out {
			out[i] = Float16ToFloat64(order.Uint16(buf[2*i:]))
		}
	case BFloat16:
		for i := range out {
			out[i] = float64(math.Float32frombits(uint32(order.Uint16(buf[2*i:])) << 16))
		}
	case Int64:
		for i := range out {
			out[i] = float64(int64(order.Uint64(buf[8*i:])))
		}
	case Int32, QInt32:
		for i := range out {
			out[i] = float64(int32(order.Uint32(buf[4*i:])))
		}
	case Int16:
		for i := range out {
			out[i] = float64(int16(order.Uint16(buf[2*i:])))
		}
	case Int8, QInt8:
		for i := range out {
			out[i] = float64(int8(buf[i]))
		}
	case Uint8, QUInt8:
		for i := range out {
			out[i] = float64(buf[i])
		}
	case Bool:
		for i := range out {
			if buf[i] != 0 {
				out[i] = 1
			}
		}
	default:
		return nil, fmt.Errorf("dtype %s cannot be read as real numbers", d)
	}
	return out, nil
}

// Float16ToFloat64 converts an IEEE 754 half-precision value to float64.
func Float16ToFloat64(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1+frac/1024, exp-15)
}

// maxBroadcastFactor bounds how many elements a view may have per storage
// element. Only overlapping views (a stride of 0 from expand) exceed 1, and
// the bound keeps Float64s from allocating far beyond the file's size.
const maxBroadcastFactor = 16

// checkView verifies that t's elements lie inside its storage and that its
// element count is bounded by the storage size.
func checkView(t *Tensor) error {
	n := int64(1)
	for _, s := range t.Shape {
		if s == 0 {
			n = 0
			break
		}
		if n > math.MaxInt64/int64(s) {
			n = math.MaxInt64
		} else {
			n *= int64(s)
		}
	}
	if n > 0 {
		if _, _, err := t.span(); err != nil {
			return err
		}
	}
	limit := t.Storage.Len
	if limit < 1 {
		limit = 1
	}
	if limit <= (math.MaxInt64-1<<16)/maxBroadcastFactor {
		limit = limit*maxBroadcastFactor + 1<<16
	} else {
		limit = math.MaxInt64
	}
	if n > limit {
		return fmt.Errorf("view of shape %v and strides %v has %d elements but its storage holds only %d", t.Shape, t.Strides, n, t.Storage.Len)
	}
	return nil
}
