package checkpoint

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sync"
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
	return t.Float64sInto(nil)
}

// Float64sInto is Float64s writing into dst, which it grows when its
// capacity is too small, and returns the filled slice. Reading many chunks
// into one buffer avoids allocating and clearing a new one for each.
func (t *Tensor) Float64sInto(dst []float64) ([]float64, error) {
	if len(t.Strides) != len(t.Shape) {
		return nil, fmt.Errorf("tensor %s: %d strides for %d dimensions", t.Name, len(t.Strides), len(t.Shape))
	}
	lo, hi, err := t.span()
	if err != nil {
		return nil, err
	}
	n := t.NumElements()
	if t.isContiguous() {
		dst = resize(dst, n)
		if err := t.Storage.readInto(t.Offset, t.Offset+int64(n), dst); err != nil {
			return nil, fmt.Errorf("tensor %s: %w", t.Name, err)
		}
		return dst, nil
	}

	raw := make([]float64, hi-lo)
	if err := t.Storage.readInto(lo, hi, raw); err != nil {
		return nil, fmt.Errorf("tensor %s: %w", t.Name, err)
	}
	out := resize(dst, n)
	if n == 0 {
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

// resize returns dst with length n, reallocated when its capacity is short.
func resize(dst []float64, n int) []float64 {
	if cap(dst) < n {
		return make([]float64, n)
	}
	return dst[:n]
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

// readBuffers recycles the byte buffers that storage reads go through.
var readBuffers sync.Pool

// readInto converts storage elements [lo, hi) to float64 in dst, which
// must have length hi − lo.
func (s *Storage) readInto(lo, hi int64, dst []float64) error {
	if s.mem != nil {
		copy(dst, s.mem[lo:hi])
		return nil
	}
	if hi <= lo {
		return nil
	}
	size := int64(s.DType.Size())
	if size == 0 {
		return fmt.Errorf("storage %s has dtype %s, which cannot be read as numbers", s.Key, s.DType)
	}
	buf, err := s.readBytes(lo, hi)
	if err != nil {
		return err
	}
	defer readBuffers.Put(&buf)
	return decodeInto(dst, buf, s.DType, s.order)
}

// readBytes reads the raw bytes of file-storage elements [lo, hi) into a
// buffer from readBuffers, which the caller returns with
// readBuffers.Put(&buf) once done with it.
func (s *Storage) readBytes(lo, hi int64) ([]byte, error) {
	size := int64(s.DType.Size())
	n := int((hi - lo) * size)
	var buf []byte
	if p, ok := readBuffers.Get().(*[]byte); ok && cap(*p) >= n {
		buf = (*p)[:n]
	} else {
		buf = make([]byte, n)
	}
	if _, err := s.src.ReadAt(buf, s.base+lo*size); err != nil {
		readBuffers.Put(&buf)
		return nil, fmt.Errorf("read storage %s of %s (elements %d to %d): %w", s.Key, s.file, lo, hi, err)
	}
	return buf, nil
}

// decodeInto converts little- or big-endian elements of dtype d to float64
// in dst. Each dtype has its own loop, because a switch per element would
// cost more than the conversion itself on large weights, and little-endian
// data, the common case, goes through binary.LittleEndian directly so that
// the compiler inlines the loads.
func decodeInto(dst []float64, buf []byte, d DType, order binary.ByteOrder) error {
	le := order == binary.ByteOrder(binary.LittleEndian)
	switch {
	case d == Float32 && le:
		decodeFloat32LE(dst, buf)
	case d == Float32:
		for i := range dst {
			dst[i] = float64(math.Float32frombits(order.Uint32(buf[4*i:])))
		}
	case d == Float64 && le:
		for i := range dst {
			dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(buf[8*i:]))
		}
	case d == Float64:
		for i := range dst {
			dst[i] = math.Float64frombits(order.Uint64(buf[8*i:]))
		}
	case d == Float16:
		for i := range dst {
			dst[i] = Float16ToFloat64(order.Uint16(buf[2*i:]))
		}
	case d == BFloat16:
		for i := range dst {
			dst[i] = float64(math.Float32frombits(uint32(order.Uint16(buf[2*i:])) << 16))
		}
	case d == Int64:
		for i := range dst {
			dst[i] = float64(int64(order.Uint64(buf[8*i:])))
		}
	case d == Int32 || d == QInt32:
		for i := range dst {
			dst[i] = float64(int32(order.Uint32(buf[4*i:])))
		}
	case d == Int16:
		for i := range dst {
			dst[i] = float64(int16(order.Uint16(buf[2*i:])))
		}
	case d == Int8 || d == QInt8:
		for i := range dst {
			dst[i] = float64(int8(buf[i]))
		}
	case d == Uint8 || d == QUInt8:
		for i := range dst {
			dst[i] = float64(buf[i])
		}
	case d == Bool:
		for i := range dst {
			dst[i] = 0
			if buf[i] != 0 {
				dst[i] = 1
			}
		}
	default:
		return fmt.Errorf("dtype %s cannot be read as real numbers", d)
	}
	return nil
}

// Float16ToFloat64 converts an IEEE 754 half-precision value to float64.
func Float16ToFloat64(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	if exp != 0 && exp != 0x1f {
		// A normal number: rebias the exponent into float32's layout.
		bits := uint32(h&0x8000)<<16 | uint32(exp-15+127)<<23 | uint32(h&0x3ff)<<13
		return float64(math.Float32frombits(bits))
	}
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
		// Bound every stride so that span's sums cannot overflow.
		if t.Offset < 0 || t.Offset > t.Storage.Len {
			return fmt.Errorf("storage offset %d is outside a storage of %d elements", t.Offset, t.Storage.Len)
		}
		for i, s := range t.Shape {
			stride := int64(t.Strides[i])
			if stride < 0 {
				stride = -stride
			}
			if s > 1 && stride > (1<<62)/int64(maxTensorDims)/int64(s-1) {
				return fmt.Errorf("view of shape %v and strides %v reaches beyond any storage", t.Shape, t.Strides)
			}
		}
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
