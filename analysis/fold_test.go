package analysis

import (
	"math"
	"math/rand/v2"
	"testing"
)

// foldElementOracle returns W' for every weight element by walking the
// full index [i, j, rest] and computing the output channel from the
// definition, independently of Fold's row arithmetic.
func foldElementOracle(s pairSpec) []float64 {
	omega := make([]float64, len(s.mean))
	for c := range omega {
		omega[c] = s.gamma[c] / math.Sqrt(s.variance[c]+s.eps)
	}
	rest := 1
	for _, d := range s.shape[2:] {
		rest *= d
	}
	out := make([]float64, len(s.weight))
	for k := range s.weight {
		i := k / (s.shape[1] * rest)
		j := (k / rest) % s.shape[1]
		c := i
		if s.transposed {
			inPerGroup := s.shape[0] / s.groups
			c = (i/inPerGroup)*s.shape[1] + j
		}
		out[k] = omega[c] * s.weight[k]
	}
	return out
}

func TestFoldMatchesOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	cases := []struct {
		name       string
		shape      []int
		groups     int
		transposed bool
		out        int
	}{
		{"conv", []int{6, 4, 3, 3}, 1, false, 6},
		{"grouped", []int{6, 2, 3, 3}, 2, false, 6},
		{"depthwise", []int{5, 1, 3, 3}, 5, false, 5},
		{"transposed", []int{4, 3, 2, 2}, 1, true, 3},
		{"transposed grouped", []int{4, 3, 2, 2}, 2, true, 6},
		{"transposed 1d", []int{6, 2, 5}, 3, true, 6},
	}
	for _, c := range cases {
		s := randomSpec(rng, c.shape, c.groups, c.transposed, c.out)
		want := foldElementOracle(s)
		f, err := NewFold("test.pth", s.pair())
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, chunk := range []int{0, 1, 7, 1000} {
			got := make([]float64, 0, len(want))
			err := f.FusedWeightChunks("test.pth", chunk, func(lo, hi int, fused []float64) error {
				got = append(got, fused...)
				return nil
			})
			if err != nil {
				t.Fatalf("%s chunk %d: %v", c.name, chunk, err)
			}
			for k := range want {
				if !relClose(got[k], want[k], 1e-15, 0) {
					t.Errorf("%s chunk %d: W'[%d] mismatch: got %v, want %v", c.name, chunk, k, got[k], want[k])
					break
				}
			}
		}
		for ch := range f.FusedBias {
			omega := s.gamma[ch] / math.Sqrt(s.variance[ch]+s.eps)
			wantB := s.beta[ch] + omega*(s.bias[ch]-s.mean[ch])
			if !relClose(f.FusedBias[ch], wantB, 1e-14, 1e-15) {
				t.Errorf("%s: b'[%d] mismatch: got %v, want %v", c.name, ch, f.FusedBias[ch], wantB)
			}
		}
		if bad := f.NonFinite(); len(bad) != 0 {
			t.Errorf("%s: non-finite channels %v, want none", c.name, bad)
		}
	}
}

func TestFoldNonFinite(t *testing.T) {
	s := pairSpec{
		shape:    []int{3, 1},
		weight:   []float64{1, 2, 3},
		gamma:    []float64{1, 0, 1},
		beta:     []float64{0, 0, 0},
		mean:     []float64{0, 0, 0},
		variance: []float64{1, 1, -1},
		eps:      1e-5,
	}
	f, err := NewFold("test.pth", s.pair())
	if err != nil {
		t.Fatal(err)
	}
	if bad := f.NonFinite(); len(bad) != 1 || bad[0] != 2 {
		t.Errorf("non-finite channels: got %v, want [2] (σ²+ε < 0); a dead channel (γ = 0) folds to 0", bad)
	}
}
