package analysis_test

import (
	"fmt"

	"github.com/convbn-diag/convbn-diag/analysis"
	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
)

func ExampleAnalyzePair() {
	// A 1×1 conv with two output channels and a BatchNorm with σ² + ε = 4,
	// so s = 0.5 and ω = γ/2.
	pair := &convbn.Pair{
		Conv: convbn.Conv{
			Name:   "features.0",
			Weight: checkpoint.NewTensor("features.0.weight", []int{2, 1, 1, 1}, []float64{3, 4}),
			Groups: 1,
		},
		BN: convbn.BatchNorm{
			Name:        "features.1",
			Weight:      checkpoint.NewTensor("features.1.weight", []int{2}, []float64{0.2, 4}),
			Bias:        checkpoint.NewTensor("features.1.bias", []int{2}, []float64{0, 1}),
			RunningMean: checkpoint.NewTensor("features.1.running_mean", []int{2}, []float64{0, 0.5}),
			RunningVar:  checkpoint.NewTensor("features.1.running_var", []int{2}, []float64{3.75, 3.75}),
			Eps:         0.25,
			Affine:      true,
		},
	}
	opts := analysis.DefaultOptions()
	opts.WeightNorms = true
	layer, err := analysis.AnalyzePair("example.pth", pair, opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, ch := range layer.Channels {
		fmt.Printf("channel %d: ω = %.3g, b' = %.3g, ‖W'‖ = %.3g, D_SGD = %.3g, D_Adam = %.3g\n",
			ch.Index, ch.Omega, ch.FusedBias, ch.FusedWeightNorm, ch.DistortionSGD, ch.DistortionAdam)
	}
	fmt.Println("risk:", layer.Risk)
	// Output:
	// channel 0: ω = 0.1, b' = 0, ‖W'‖ = 0.3, D_SGD = 100, D_Adam = 10
	// channel 1: ω = 2, b' = 0, ‖W'‖ = 8, D_SGD = 0.25, D_Adam = 0.5
	// risk: high (overshoot)
}
