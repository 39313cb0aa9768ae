package experiment

import (
	"fmt"
	"math"

	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/mnist"
	"github.com/convbn-diag/convbn-diag/nn"
)

// StepCheck compares, channel by channel, one optimizer step of Deploy
// mode with one of Eval mode from the same point in fused coordinates:
// measured ‖ΔW'_c‖_Deploy/‖ΔW'_c‖_Eval against the predicted 1/ω_c² for
// SGD and 1/|ω_c| for Adam with ε = 0 (whose first step is η·sign(g)).
// Only the conv weights move; γ, β and the head are frozen.
type StepCheck struct {
	Optimizer string        `json:"optimizer"`
	LR        float64       `json:"lr"`
	Channels  []ChannelStep `json:"channels"`
	// Correlation is Pearson's r between log predicted and log measured
	// ratios; MaxRelDeviation is max_c |measured/predicted − 1|.
	Correlation     Float `json:"correlation_log"`
	MaxRelDeviation Float `json:"max_relative_deviation"`
}

// ChannelStep is one output channel's predicted and measured step ratio.
type ChannelStep struct {
	Block     string `json:"block"`
	Channel   int    `json:"channel"`
	Omega     Float  `json:"omega"`
	Predicted Float  `json:"predicted"`
	Measured  Float  `json:"measured"`
}

// CheckStep runs the one-step comparison on the images of s in float64.
// optimizer is "sgd" or "adam"; lr only scales both steps.
func CheckStep(w *Weights, s *mnist.Set, optimizer string, lr float64) (*StepCheck, error) {
	deltas := map[convbn.Mode][][]float64{}
	for _, mode := range []convbn.Mode{convbn.Eval, convbn.Deploy} {
		fb, err := newFullBatch(w, s, mode)
		if err != nil {
			return nil, err
		}
		var opt nn.Optimizer[float64]
		switch optimizer {
		case "sgd":
			opt = &nn.SGD[float64]{LR: lr}
		case "adam":
			a := nn.NewAdam[float64](lr)
			a.Eps = 0
			opt = a
		default:
			return nil, fmt.Errorf("optimizer %q: use sgd or adam", optimizer)
		}
		blocks := fb.net.Blocks()
		var before [][]float64
		for _, b := range blocks {
			before = append(before, fusedWeight(b))
		}
		if _, _, err := fb.gradient(); err != nil {
			return nil, err
		}
		opt.Step(fb.params)
		for i, b := range blocks {
			after := fusedWeight(b)
			for j := range after {
				after[j] -= before[i][j]
			}
			deltas[mode] = append(deltas[mode], after)
		}
	}

	out := &StepCheck{Optimizer: optimizer, LR: lr}
	var logP, logM []float64
	maxDev := 0.0
	for i := range w.Blocks {
		omega := w.Blocks[i].Omega()
		k := len(deltas[convbn.Eval][i]) / len(omega)
		for c, o := range omega {
			pred := 1 / (o * o)
			if optimizer == "adam" {
				pred = 1 / math.Abs(o)
			}
			e := nn.Norm(deltas[convbn.Eval][i][c*k : (c+1)*k])
			d := nn.Norm(deltas[convbn.Deploy][i][c*k : (c+1)*k])
			meas := d / e
			out.Channels = append(out.Channels, ChannelStep{Block: fmt.Sprintf("block%d", i), Channel: c, Omega: Float(o), Predicted: Float(pred), Measured: Float(meas)})
			if e == 0 || d == 0 || math.IsInf(pred, 0) {
				continue
			}
			logP, logM = append(logP, math.Log(pred)), append(logM, math.Log(meas))
			maxDev = math.Max(maxDev, math.Abs(meas/pred-1))
		}
	}
	out.Correlation = Float(pearson(logP, logM))
	out.MaxRelDeviation = Float(maxDev)
	return out, nil
}

func pearson(a, b []float64) float64 {
	n := float64(len(a))
	var ma, mb float64
	for i := range a {
		ma += a[i] / n
		mb += b[i] / n
	}
	var sab, saa, sbb float64
	for i := range a {
		sab += (a[i] - ma) * (b[i] - mb)
		saa += (a[i] - ma) * (a[i] - ma)
		sbb += (b[i] - mb) * (b[i] - mb)
	}
	return sab / math.Sqrt(saa*sbb)
}
