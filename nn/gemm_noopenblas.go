//go:build !openblas

package nn

// openBLASGemm returns nil because the program was built without the
// openblas tag.
func openBLASGemm[T Float]() Gemm[T] { return nil }
