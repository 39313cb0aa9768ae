package nn

import (
	"fmt"
	"math"
)

// Float is the element type of tensors: float32 for speed, float64 for
// verification.
type Float interface {
	~float32 | ~float64
}

// Tensor is a dense row-major tensor. Image tensors are NCHW: batch,
// channels, height, width.
type Tensor[T Float] struct {
	Shape []int
	Data  []T
}

// NewTensor returns a zero tensor of the given shape.
func NewTensor[T Float](shape ...int) *Tensor[T] {
	return &Tensor[T]{Shape: append([]int(nil), shape...), Data: make([]T, numElements(shape))}
}

// FromSlice returns a tensor of the given shape that uses data as its
// storage. It panics when len(data) does not match the shape.
func FromSlice[T Float](data []T, shape ...int) *Tensor[T] {
	if n := numElements(shape); n != len(data) {
		panic(fmt.Sprintf("nn.FromSlice: shape %v needs %d elements, got %d", shape, n, len(data)))
	}
	return &Tensor[T]{Shape: append([]int(nil), shape...), Data: data}
}

func numElements(shape []int) int {
	n := 1
	for _, s := range shape {
		if s < 0 {
			panic(fmt.Sprintf("nn: negative dimension in shape %v", shape))
		}
		n *= s
	}
	return n
}

// Len returns the number of elements.
func (t *Tensor[T]) Len() int { return len(t.Data) }

// Bytes returns the size of the tensor's elements in bytes.
func (t *Tensor[T]) Bytes() int64 { return int64(len(t.Data)) * ElementSize[T]() }

// Clone returns a deep copy.
func (t *Tensor[T]) Clone() *Tensor[T] {
	return &Tensor[T]{Shape: append([]int(nil), t.Shape...), Data: append([]T(nil), t.Data...)}
}

// Dims4 returns the NCHW dimensions of a 4-D tensor. It panics on any other
// rank.
func (t *Tensor[T]) Dims4() (n, c, h, w int) {
	if len(t.Shape) != 4 {
		panic(fmt.Sprintf("nn: want an NCHW tensor, got shape %v", t.Shape))
	}
	return t.Shape[0], t.Shape[1], t.Shape[2], t.Shape[3]
}

// ElementSize returns the size of one element of T in bytes.
func ElementSize[T Float]() int64 {
	var zero T
	if _, ok := any(zero).(float32); ok {
		return 4
	}
	return 8
}

// Norm returns the Euclidean norm of v, accumulated in float64.
func Norm[T Float](v []T) float64 {
	var scale, ssq float64 = 0, 1
	for _, x := range v {
		a := math.Abs(float64(x))
		if a == 0 {
			continue
		}
		if scale < a {
			ssq = 1 + ssq*(scale/a)*(scale/a)
			scale = a
		} else {
			ssq += (a / scale) * (a / scale)
		}
	}
	return scale * math.Sqrt(ssq)
}

// Convert returns a copy of src with its elements converted to U.
func Convert[U, T Float](src []T) []U {
	out := make([]U, len(src))
	for i, v := range src {
		out[i] = U(v)
	}
	return out
}
