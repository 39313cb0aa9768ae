package analysis

import (
	"math"
	"math/rand/v2"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
)

// pairSpec describes a synthetic ConvBN pair; nil vectors are omitted.
type pairSpec struct {
	shape      []int
	groups     int
	transposed bool
	weight     []float64
	bias       []float64 // nil: conv without bias
	gamma      []float64 // nil together with beta: non-affine BatchNorm
	beta       []float64
	mean       []float64
	variance   []float64
	eps        float64
}

func (s pairSpec) pair() *convbn.Pair {
	n := len(s.mean)
	p := &convbn.Pair{
		Conv: convbn.Conv{
			Name:       "features.0",
			Weight:     checkpoint.NewTensor("features.0.weight", s.shape, s.weight),
			Transposed: s.transposed,
			Groups:     s.groups,
		},
		BN: convbn.BatchNorm{
			Name:        "features.1",
			RunningMean: checkpoint.NewTensor("features.1.running_mean", []int{n}, s.mean),
			RunningVar:  checkpoint.NewTensor("features.1.running_var", []int{n}, s.variance),
			Eps:         s.eps,
			EpsSource:   convbn.SourceDefault,
			Affine:      s.gamma != nil,
		},
		Evidence: convbn.EvidenceSeqIndex,
	}
	if s.bias != nil {
		p.Conv.Bias = checkpoint.NewTensor("features.0.bias", []int{n}, s.bias)
	}
	if s.gamma != nil {
		p.BN.Weight = checkpoint.NewTensor("features.1.weight", []int{n}, s.gamma)
		p.BN.Bias = checkpoint.NewTensor("features.1.bias", []int{n}, s.beta)
	}
	return p
}

// randomSpec returns a pair with seeded random values: γ of both signs
// spread over several decades, positive variances and a conv bias.
func randomSpec(rng *rand.Rand, shape []int, groups int, transposed bool, outChannels int) pairSpec {
	size := 1
	for _, d := range shape {
		size *= d
	}
	s := pairSpec{shape: shape, groups: groups, transposed: transposed, eps: 1e-5}
	s.weight = normals(rng, size, 0.3)
	s.bias = normals(rng, outChannels, 0.1)
	s.beta = normals(rng, outChannels, 0.5)
	s.mean = normals(rng, outChannels, 1)
	for range outChannels {
		g := math.Pow(10, rng.Float64()*4-3)
		if rng.IntN(2) == 0 {
			g = -g
		}
		s.gamma = append(s.gamma, g)
		s.variance = append(s.variance, math.Pow(10, rng.Float64()*4-2))
	}
	return s
}

func normals(rng *rand.Rand, n int, sd float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = sd * rng.NormFloat64()
	}
	return x
}

// relClose reports whether got and want agree to rel relative to want, or
// to abs absolute.
func relClose(got, want, rel, abs float64) bool {
	return math.Abs(got-want) <= math.Max(abs, rel*math.Abs(want))
}
