package nn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// naiveGemm is the textbook triple loop, the oracle for Gemm backends.
func naiveGemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var sum float64
			for l := 0; l < k; l++ {
				var av, bv float64
				if transA {
					av = a[l*lda+i]
				} else {
					av = a[i*lda+l]
				}
				if transB {
					bv = b[j*ldb+l]
				} else {
					bv = b[l*ldb+j]
				}
				sum += av * bv
			}
			c[i*ldc+j] = alpha*sum + beta*c[i*ldc+j]
		}
	}
}

func testGemmBackend(t *testing.T, g64 Gemm[float64], g32 Gemm[float32]) {
	rng := rand.New(rand.NewPCG(3, 4))
	random := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.Float64()*2 - 1
		}
		return v
	}
	for _, tc := range []struct{ m, n, k int }{{1, 1, 1}, {3, 5, 7}, {17, 9, 33}, {64, 70, 40}} {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				lda, ldb := tc.k, tc.n
				if ta {
					lda = tc.m
				}
				if tb {
					ldb = tc.k
				}
				a, b, c := random(tc.m*tc.k), random(tc.k*tc.n), random(tc.m*tc.n)
				want := append([]float64(nil), c...)
				naiveGemm(ta, tb, tc.m, tc.n, tc.k, 0.7, a, lda, b, ldb, 0.3, want, tc.n)

				got := append([]float64(nil), c...)
				g64.Gemm(ta, tb, tc.m, tc.n, tc.k, 0.7, a, lda, b, ldb, 0.3, got, tc.n)
				assertClose(t, "float64 gemm", got, want, 1e-12, 1e-12)

				got32 := Convert[float32](c)
				g32.Gemm(ta, tb, tc.m, tc.n, tc.k, 0.7, Convert[float32](a), lda, Convert[float32](b), ldb, 0.3, got32, tc.n)
				assertClose(t, "float32 gemm", got32, want, 1e-4, 1e-4*math.Sqrt(float64(tc.k)))
			}
		}
	}
}

func TestGonumGemm(t *testing.T) { testGemmBackend(t, GonumGemm[float64]{}, GonumGemm[float32]{}) }
