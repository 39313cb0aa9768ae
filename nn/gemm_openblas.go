//go:build openblas

package nn

import (
	"gonum.org/v1/netlib/blas/netlib"
)

// #cgo LDFLAGS: -lopenblas
import "C"

// OpenBLASGemm is a Gemm backed by OpenBLAS through gonum's netlib cgo
// bindings. It exists only in programs built with the openblas tag, which
// needs OpenBLAS's headers and library (Debian: libopenblas-dev).
type OpenBLASGemm[T Float] struct{}

// Gemm computes C = alpha·op(A)·op(B) + beta·C with OpenBLAS's dgemm or
// sgemm.
func (OpenBLASGemm[T]) Gemm(transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	impl := netlib.Implementation{}
	ta, tb := transpose(transA), transpose(transB)
	switch av := any(a).(type) {
	case []float64:
		impl.Dgemm(ta, tb, m, n, k, float64(alpha), av, lda, any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	case []float32:
		impl.Sgemm(ta, tb, m, n, k, float32(alpha), av, lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
	default:
		panic("nn.OpenBLASGemm: element type must be float32 or float64")
	}
}

func openBLASGemm[T Float]() Gemm[T] { return OpenBLASGemm[T]{} }
