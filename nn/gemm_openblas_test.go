//go:build openblas

package nn

import "testing"

func TestOpenBLASGemm(t *testing.T) {
	testGemmBackend(t, OpenBLASGemm[float64]{}, OpenBLASGemm[float32]{})
}

func TestDefaultGemmIsOpenBLAS(t *testing.T) {
	if _, ok := DefaultGemm[float64]().(OpenBLASGemm[float64]); !ok {
		t.Fatalf("DefaultGemm with the openblas tag: got %T, want OpenBLASGemm", DefaultGemm[float64]())
	}
}
