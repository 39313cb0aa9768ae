package convbn_test

import (
	"errors"
	"fmt"

	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/nn"
)

// A 1×1 conv with two output channels followed by a BatchNorm, folded into
// one conv: W'_c = ω_c·W_c and b'_c = β_c + ω_c·(b_c − μ_c) with
// ω_c = γ_c/√(σ²_c + ε).
func ExampleBlock_Fold() {
	conv := nn.NewConv2d[float64](1, 2, 1, 1)
	bn := nn.NewBatchNorm2d[float64](2)
	bn.Eps = 0
	copy(bn.Gamma, []float64{2, 0.5})
	copy(bn.Beta, []float64{1, 0})
	copy(bn.RunningMean, []float64{0.5, -1})
	copy(bn.RunningVar, []float64{4, 0.25})

	b := convbn.NewBlock("block", conv, true, bn)
	copy(b.Weight, []float64{3, -2})
	copy(b.Bias, []float64{1, 1})
	if err := b.SetMode(convbn.Eval); err != nil {
		panic(err)
	}
	w, bias, err := b.Fold()
	if err != nil {
		panic(err)
	}
	fmt.Println("W' =", w, "b' =", bias)

	err = b.SetMode(convbn.Eval)
	fmt.Println("back to eval refused:", errors.Is(err, convbn.ErrFoldIrreversible))
	// Output:
	// W' = [3 -2] b' = [1.5 2]
	// back to eval refused: true
}

// Memory a Tune block holds for backward compared with an Eval block, for
// a 16→16 3×3 conv on a batch of 8 images of 16×16 in float32.
func ExampleBlock_Held() {
	held := map[convbn.Mode]convbn.Held{}
	for _, mode := range []convbn.Mode{convbn.Eval, convbn.Tune, convbn.Deploy} {
		conv := nn.NewConv2d[float32](16, 16, 3, 3)
		conv.Padding = [2]int{1, 1}
		b := convbn.NewBlock("block", conv, false, nn.NewBatchNorm2d[float32](16))
		if err := b.SetMode(mode); err != nil {
			panic(err)
		}
		if _, err := b.Forward(nn.NewTensor[float32](8, 16, 16, 16)); err != nil {
			panic(err)
		}
		held[mode] = b.Held()
	}
	for _, mode := range []convbn.Mode{convbn.Eval, convbn.Tune, convbn.Deploy} {
		fmt.Printf("%-6s %7d B + %3d B per-channel\n", mode, held[mode].Bytes, held[mode].PerChannelBytes)
	}
	fmt.Printf("tune/eval = %.3f\n", float64(held[convbn.Tune].Bytes)/float64(held[convbn.Eval].Bytes))
	// Output:
	// eval    262144 B +   0 B per-channel
	// tune    140288 B + 128 B per-channel
	// deploy  131072 B +   0 B per-channel
	// tune/eval = 0.535
}
