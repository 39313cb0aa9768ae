package experiment

import (
	"fmt"
	"math"

	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/mnist"
	"github.com/convbn-diag/convbn-diag/nn"
)

// RealisticConfig sets the sweep outside the analysis's assumptions:
// fine-tuning on the target task with a fresh head, every parameter
// trained, mini-batches, in float32. No prediction applies to it.
type RealisticConfig struct {
	Grid      Grid
	Optimizer string // "sgd" (with Momentum) or "adam"
	Momentum  float64
	Steps     int
	BatchSize int
	Seed      uint64
	Modes     []convbn.Mode
}

// RealisticSweep is the measured η* of each mode for one optimizer.
type RealisticSweep struct {
	Optimizer string       `json:"optimizer"`
	Modes     []*ModeSweep `json:"modes"`
	// MeasuredRatio is η*_Deploy/η*_Eval on the grid.
	MeasuredRatio Float `json:"measured_ratio"`
}

// SweepRealistic measures each mode's largest stable learning rate when
// fine-tuning w on train. A trial is stable when the mean loss of its last
// 5 steps is below its first loss and no loss diverged.
func SweepRealistic(cfg RealisticConfig, w *Weights, train *mnist.Set) (*RealisticSweep, error) {
	if err := cfg.Grid.Validate(); err != nil {
		return nil, err
	}
	if cfg.Steps < 5 {
		return nil, fmt.Errorf("steps %d: need at least 5", cfg.Steps)
	}
	order, err := batchOrder(train.Len(), cfg.BatchSize, cfg.Steps, cfg.Seed)
	if err != nil {
		return nil, err
	}
	out := &RealisticSweep{Optimizer: cfg.Optimizer}
	rates := map[convbn.Mode]float64{}
	for _, mode := range cfg.Modes {
		ms, err := cfg.Grid.descend(mode.String(), func(lr float64) (Trial, error) {
			return fineTuneTrial(cfg, mode, lr, w, train, order)
		})
		if err != nil {
			return nil, err
		}
		out.Modes = append(out.Modes, ms)
		rates[mode] = float64(ms.MaxRate)
	}
	out.MeasuredRatio = Float(math.NaN())
	if e, ok := rates[convbn.Eval]; ok {
		if d, ok := rates[convbn.Deploy]; ok {
			out.MeasuredRatio = Float(d / e)
		}
	}
	return out, nil
}

func fineTuneTrial(cfg RealisticConfig, mode convbn.Mode, lr float64, w *Weights, train *mnist.Set, order [][]int) (Trial, error) {
	net, err := Build[float32](w, true, len(TargetDigits), cfg.Seed^streamHead)
	if err != nil {
		return Trial{}, err
	}
	if err := net.SetMode(mode); err != nil {
		return Trial{}, err
	}
	opt, err := NewOptimizer[float32](cfg.Optimizer, lr, cfg.Momentum)
	if err != nil {
		return Trial{}, err
	}
	params := net.Params()
	x := nn.NewTensor[float32](cfg.BatchSize, 1, mnist.Side, mnist.Side)
	var losses []float64
	for _, idx := range order {
		labels := mnist.Batch(train, idx, x.Data)
		net.ZeroGrad()
		loss, grad, err := net.Loss(x, labels)
		if err != nil {
			return Trial{}, err
		}
		losses = append(losses, loss)
		if diverging(loss, losses[0]) {
			break
		}
		if _, err := net.Backward(grad); err != nil {
			return Trial{}, err
		}
		opt.Step(params)
	}
	return judge(lr, losses, 5), nil
}
