package reports

import (
	"math"
	"testing"

	"github.com/convbn-diag/convbn-diag/analysis"
	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
)

// newPair returns a pair named conv/bn with the given γ and σ² (ε = 1e-5,
// β = 0.5, μ = 0.1, weight of ones [C, 2]); withBias adds a conv bias of
// 0.25.
func newPair(conv, bn string, gamma, variance []float64, withBias bool) convbn.Pair {
	n := len(gamma)
	fill := func(v float64, k int) []float64 {
		x := make([]float64, k)
		for i := range x {
			x[i] = v
		}
		return x
	}
	p := convbn.Pair{
		Conv: convbn.Conv{
			Name:   conv,
			Weight: checkpoint.NewTensor(conv+".weight", []int{n, 2}, fill(1, 2*n)),
			Groups: 1,
		},
		BN: convbn.BatchNorm{
			Name:        bn,
			Weight:      checkpoint.NewTensor(bn+".weight", []int{n}, gamma),
			Bias:        checkpoint.NewTensor(bn+".bias", []int{n}, fill(0.5, n)),
			RunningMean: checkpoint.NewTensor(bn+".running_mean", []int{n}, fill(0.1, n)),
			RunningVar:  checkpoint.NewTensor(bn+".running_var", []int{n}, variance),
			Eps:         1e-5,
			EpsSource:   convbn.SourceDefault,
			Affine:      true,
		},
		Evidence: convbn.EvidenceModule,
	}
	if withBias {
		p.Conv.Bias = checkpoint.NewTensor(conv+".bias", []int{n}, fill(0.25, n))
	}
	return p
}

// fixtureReport returns a file with one model of three layers: an ordinary
// one, one with very long names, and one with a dead channel, a channel
// without ω and a NaN γ.
func fixtureReport(t *testing.T, weightNorms bool) *analysis.FileReport {
	t.Helper()
	long := "backbone.stage4.residual_block_17.bottleneck.expand_pointwise_projection_convolution_with_a_very_long_name"
	model := &checkpoint.Model{Key: "state_dict", StrippedPrefix: "module."}
	result := convbn.Result{
		Pairs: []convbn.Pair{
			newPair("conv1", "bn1", []float64{1, 0.5, 2}, []float64{1, 1, 1}, true),
			newPair(long+".conv", long+".bn", []float64{0.01, 0.02}, []float64{4, 4}, false),
			newPair("layer2.conv", "layer2.bn", []float64{0, 1, math.NaN()}, []float64{1, -1, 1}, true),
		},
		Unpaired:  []convbn.Unpaired{{Name: "fc", Kind: "conv", Reason: "no BatchNorm follows it"}},
		Ambiguous: []convbn.Ambiguity{{Name: "head.bn", Candidates: []string{"head.a", "head.b"}, Reason: "two convs of 3 channels precede it"}},
		Notes:     []string{"eps taken from PyTorch's default for 3 BatchNorms"},
	}
	f := &checkpoint.File{Path: "/tmp/model.pth", Format: checkpoint.FormatTorchZip, Models: []*checkpoint.Model{model}, Globals: []string{"collections.OrderedDict"}}
	opts := analysis.DefaultOptions()
	opts.WeightNorms = weightNorms
	r, err := analysis.AnalyzeFile(f, []convbn.Result{result}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
