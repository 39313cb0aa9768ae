package nn

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Gemm is the matrix multiply behind the convolution and linear layers:
//
//	C = alpha·op(A)·op(B) + beta·C
//
// with row-major matrices, op(A) of size m×k, op(B) of size k×n and C of
// size m×n. transA and transB select the transpose; lda, ldb and ldc are the
// row strides in elements.
type Gemm[T Float] interface {
	Gemm(transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int)
}

// GonumGemm is the default Gemm: gonum's pure-Go BLAS (Dgemm for float64,
// Sgemm for float32), which splits large products across goroutines.
type GonumGemm[T Float] struct{}

// Gemm computes C = alpha·op(A)·op(B) + beta·C with gonum's BLAS.
func (GonumGemm[T]) Gemm(transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	impl := gonum.Implementation{}
	ta, tb := transpose(transA), transpose(transB)
	switch av := any(a).(type) {
	case []float64:
		impl.Dgemm(ta, tb, m, n, k, float64(alpha), av, lda, any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	case []float32:
		impl.Sgemm(ta, tb, m, n, k, float32(alpha), av, lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
	default:
		panic("nn.GonumGemm: element type must be float32 or float64")
	}
}

func transpose(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// DefaultGemm returns the backend used when a layer's Gemm is nil: OpenBLAS
// when the program is built with the openblas tag, gonum otherwise.
func DefaultGemm[T Float]() Gemm[T] {
	if g := openBLASGemm[T](); g != nil {
		return g
	}
	return GonumGemm[T]{}
}
