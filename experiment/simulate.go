package experiment

import (
	"fmt"
	"math"
	"time"

	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/mnist"
	"github.com/convbn-diag/convbn-diag/nn"
)

// SimulateConfig sets a fine-tuning run on the target task (digits 5–9,
// fresh head), repeated in each mode with the same optimizer, learning
// rate, seed and batch order.
type SimulateConfig struct {
	Modes     []convbn.Mode `json:"modes"`
	Steps     int           `json:"steps"`
	BatchSize int           `json:"batch_size"`
	// Optimizer is "sgd" (with Momentum) or "adam" (PyTorch defaults).
	Optimizer string  `json:"optimizer"`
	LR        float64 `json:"lr"`
	Momentum  float64 `json:"momentum"`
	Seed      uint64  `json:"seed"`
	// Float64 runs in float64 instead of float32.
	Float64 bool `json:"float64"`
	// ConvOnly trains only the conv weights (W, or W' in Deploy mode) and
	// freezes γ, β and the fresh head, as the stability analysis assumes.
	ConvOnly bool `json:"conv_only"`
}

// DefaultSimulateConfig returns the default run: 150 SGD steps of 64
// images with momentum 0.9 at η = 0.01, in all four modes.
func DefaultSimulateConfig() SimulateConfig {
	return SimulateConfig{
		Modes: []convbn.Mode{convbn.Train, convbn.Eval, convbn.Tune, convbn.Deploy},
		Steps: 150, BatchSize: 64, Optimizer: "sgd", LR: 0.01, Momentum: 0.9, Seed: 1,
	}
}

// DivergenceFactor is how many times its first loss a run's loss must
// reach to count as diverged (a NaN or infinite loss always does).
const DivergenceFactor = 10

// TuneEvalBound returns the largest |loss_Tune − loss_Eval| a run may show,
// and over how many first steps it is checked (0: all): 1e-9 over all steps
// in float64, 1e-4 over the first 20 steps in float32, after which
// rounding differences are allowed to grow and are only reported.
func TuneEvalBound(float64Run bool) (bound float64, steps int) {
	if float64Run {
		return 1e-9, 0
	}
	return 1e-4, 20
}

// Simulation is the output of Simulate, without timings, so that it is the
// same for the same seed and inputs.
type Simulation struct {
	Config SimulateConfig `json:"config"`
	DType  string         `json:"dtype"`
	Runs   []*ModeRun     `json:"runs"`
	// MaxTuneEvalLossDiff is the largest |loss_Tune − loss_Eval| over the
	// steps TuneEvalBound checks, and MaxTuneEvalLossDiffAll over every
	// step both ran; NaN without both modes.
	MaxTuneEvalLossDiff    Float `json:"max_tune_eval_loss_diff"`
	MaxTuneEvalLossDiffAll Float `json:"max_tune_eval_loss_diff_all_steps"`
	TuneEvalBound          Float `json:"tune_eval_bound"`
	TuneEvalBoundSteps     int   `json:"tune_eval_bound_steps"`
}

// ModeRun is one mode's trajectory.
type ModeRun struct {
	Mode convbn.Mode `json:"mode"`
	// DivergedStep is the first step whose loss was not finite or at least
	// DivergenceFactor × the first loss; 0 when the run did not diverge.
	// A diverged run stops there.
	DivergedStep int         `json:"diverged_step"`
	TestAccuracy Float       `json:"test_accuracy"`
	TestLoss     Float       `json:"test_loss"`
	Steps        []StepStats `json:"steps"`
	// BytesHeld is the number of bytes the ConvBN blocks keep for backward
	// on each step (activation- and parameter-sized tensors), the same on
	// every step.
	BytesHeld int64 `json:"bytes_held"`

	elapsed time.Duration
}

// StepStats is one training step: the batch loss and accuracy before the
// update and the per-layer norms.
type StepStats struct {
	Step     int   `json:"step"`
	Loss     Float `json:"loss"`
	Accuracy Float `json:"accuracy"`
	// BytesHeld is the number of bytes the ConvBN blocks held between this
	// step's forward and backward passes.
	BytesHeld int64        `json:"bytes_held"`
	Layers    []LayerStats `json:"layers"`
}

// LayerStats are one block's norms on one step. WeightNorm and
// WeightGradNorm are ‖W‖ and ‖∂L/∂W‖ of the trained conv weight (W' in
// Deploy mode) before the update; FusedWeightNorm is ‖W'‖ with
// W'_c = ω_c·W_c from the running statistics before the update, and
// RelativeUpdate is ‖W'_after − W'_before‖/‖W'_before‖. In Train mode ω
// uses the running statistics, which the step also updates.
type LayerStats struct {
	Block           string `json:"block"`
	WeightNorm      Float  `json:"weight_norm"`
	WeightGradNorm  Float  `json:"weight_grad_norm"`
	FusedWeightNorm Float  `json:"fused_weight_norm"`
	RelativeUpdate  Float  `json:"relative_update"`
}

// Timing is the wall-clock cost of one mode's run, kept out of Simulation.
type Timing struct {
	Mode        convbn.Mode `json:"mode"`
	Steps       int         `json:"steps"`
	Seconds     float64     `json:"seconds"`
	SecondsStep float64     `json:"seconds_per_step"`
}

// Timings returns each run's wall-clock time.
func (s *Simulation) Timings() []Timing {
	var out []Timing
	for _, r := range s.Runs {
		t := Timing{Mode: r.Mode, Steps: len(r.Steps), Seconds: r.elapsed.Seconds()}
		if t.Steps > 0 {
			t.SecondsStep = t.Seconds / float64(t.Steps)
		}
		out = append(out, t)
	}
	return out
}

// Validate reports the first invalid setting.
func (c *SimulateConfig) Validate() error {
	switch {
	case len(c.Modes) == 0:
		return fmt.Errorf("no modes to run")
	case c.Steps < 1:
		return fmt.Errorf("steps %d: need at least 1", c.Steps)
	case c.BatchSize < 2:
		return fmt.Errorf("batch size %d: Train mode needs at least 2", c.BatchSize)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return fmt.Errorf("learning rate %g must be positive and finite", c.LR)
	case c.Optimizer != "sgd" && c.Optimizer != "adam":
		return fmt.Errorf("optimizer %q: use sgd or adam", c.Optimizer)
	case c.Momentum < 0 || c.Momentum >= 1:
		return fmt.Errorf("momentum %g must be in [0, 1)", c.Momentum)
	}
	return nil
}

// Simulate fine-tunes w on train in every configured mode and measures the
// result on test. progress, when not nil, is called after every step.
func Simulate(cfg SimulateConfig, w *Weights, train, test *mnist.Set, progress func(mode convbn.Mode, step int)) (*Simulation, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	order, err := batchOrder(train.Len(), cfg.BatchSize, cfg.Steps, cfg.Seed)
	if err != nil {
		return nil, err
	}
	sim := &Simulation{Config: cfg, DType: "float32"}
	if cfg.Float64 {
		sim.DType = "float64"
	}
	for _, m := range cfg.Modes {
		var run *ModeRun
		if cfg.Float64 {
			run, err = simulateMode[float64](cfg, m, w, train, test, order, progress)
		} else {
			run, err = simulateMode[float32](cfg, m, w, train, test, order, progress)
		}
		if err != nil {
			return nil, fmt.Errorf("%s mode: %w", m, err)
		}
		sim.Runs = append(sim.Runs, run)
	}
	sim.compareTuneEval()
	return sim, nil
}

func (s *Simulation) compareTuneEval() {
	bound, steps := TuneEvalBound(s.Config.Float64)
	s.TuneEvalBound, s.TuneEvalBoundSteps = Float(bound), steps
	s.MaxTuneEvalLossDiff, s.MaxTuneEvalLossDiffAll = Float(math.NaN()), Float(math.NaN())
	var tune, eval *ModeRun
	for _, r := range s.Runs {
		switch r.Mode {
		case convbn.Tune:
			tune = r
		case convbn.Eval:
			eval = r
		}
	}
	if tune == nil || eval == nil {
		return
	}
	var checked, all float64
	for i := 0; i < len(tune.Steps) && i < len(eval.Steps); i++ {
		d := math.Abs(float64(tune.Steps[i].Loss - eval.Steps[i].Loss))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		all = math.Max(all, d)
		if steps == 0 || i < steps {
			checked = math.Max(checked, d)
		}
	}
	s.MaxTuneEvalLossDiff, s.MaxTuneEvalLossDiffAll = Float(checked), Float(all)
}

// NewOptimizer returns the optimizer name selects: SGD with momentum, or
// Adam with PyTorch's defaults.
func NewOptimizer[T nn.Float](name string, lr, momentum float64) (nn.Optimizer[T], error) {
	switch name {
	case "sgd":
		return &nn.SGD[T]{LR: lr, Momentum: momentum}, nil
	case "adam":
		return nn.NewAdam[T](lr), nil
	}
	return nil, fmt.Errorf("optimizer %q: use sgd or adam", name)
}

func simulateMode[T nn.Float](cfg SimulateConfig, mode convbn.Mode, w *Weights, train, test *mnist.Set, order [][]int, progress func(convbn.Mode, int)) (*ModeRun, error) {
	net, err := Build[T](w, true, len(TargetDigits), cfg.Seed^streamHead)
	if err != nil {
		return nil, err
	}
	if err := net.SetMode(mode); err != nil {
		return nil, err
	}
	opt, err := NewOptimizer[T](cfg.Optimizer, cfg.LR, cfg.Momentum)
	if err != nil {
		return nil, err
	}
	params := net.Params()
	if cfg.ConvOnly {
		params = params[:0]
		for _, b := range net.Blocks() {
			params = append(params, b.Params()[0])
		}
	}

	run := &ModeRun{Mode: mode}
	x := nn.NewTensor[T](cfg.BatchSize, 1, mnist.Side, mnist.Side)
	start := time.Now()
	var firstLoss float64
	for step, idx := range order {
		labels := mnist.Batch(train, idx, x.Data)
		st, held, err := trainStep(net, x, labels, opt, params, step+1, firstLoss)
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", step+1, err)
		}
		if step == 0 {
			firstLoss = float64(st.Loss)
		}
		run.BytesHeld = held
		run.Steps = append(run.Steps, st)
		if st.Layers == nil {
			run.DivergedStep = step + 1
			break
		}
		if progress != nil {
			progress(mode, step+1)
		}
	}
	run.elapsed = time.Since(start)

	run.TestAccuracy, run.TestLoss = Float(math.NaN()), Float(math.NaN())
	if run.DivergedStep == 0 {
		acc, loss, err := evaluateNet(net, test)
		if err != nil {
			return nil, err
		}
		run.TestAccuracy, run.TestLoss = Float(acc), Float(loss)
	}
	return run, nil
}

// trainStep runs one step on the batch x and returns its statistics and
// the bytes the blocks held for backward. When the loss diverges (see
// DivergenceFactor; firstLoss is 0 on the first step) it skips the update
// and returns statistics without Layers.
func trainStep[T nn.Float](net *convbn.Net[T], x *nn.Tensor[T], labels []int, opt nn.Optimizer[T], params []*nn.Param[T], step int, firstLoss float64) (StepStats, int64, error) {
	blocks := net.Blocks()
	before := make([][]float64, len(blocks))
	for i, b := range blocks {
		before[i] = fusedWeight(b)
	}

	net.ZeroGrad()
	logits, err := net.Forward(x)
	if err != nil {
		return StepStats{}, 0, err
	}
	var held int64
	for _, b := range blocks {
		held += b.Held().Bytes
	}
	loss, grad, err := nn.SoftmaxCrossEntropy(logits, labels)
	if err != nil {
		return StepStats{}, 0, err
	}
	st := StepStats{Step: step, Loss: Float(loss), Accuracy: Float(accuracy(logits, labels)), BytesHeld: held}
	if step == 1 {
		firstLoss = loss
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) || loss >= DivergenceFactor*firstLoss {
		return st, held, nil
	}

	if _, err := net.Backward(grad); err != nil {
		return StepStats{}, 0, err
	}
	for _, b := range blocks {
		st.Layers = append(st.Layers, LayerStats{Block: b.Name, WeightNorm: Float(nn.Norm(b.Weight)), WeightGradNorm: Float(nn.Norm(b.WeightGrad))})
	}
	opt.Step(params)

	for i, b := range blocks {
		after := fusedWeight(b)
		norm := nn.Norm(before[i])
		for j := range after {
			after[j] -= before[i][j]
		}
		st.Layers[i].FusedWeightNorm = Float(norm)
		st.Layers[i].RelativeUpdate = Float(nn.Norm(after) / norm)
	}
	return st, held, nil
}

// fusedWeight returns the block's W' = ω·W in float64: its weight in
// Deploy mode, and ω from γ and the running statistics otherwise.
func fusedWeight[T nn.Float](b *convbn.Block[T]) []float64 {
	w := nn.Convert[float64](b.Weight)
	if b.Mode() == convbn.Deploy {
		return w
	}
	k := len(w) / b.Conv.OutChannels
	for c := range b.Conv.OutChannels {
		o := float64(b.BN.GammaAt(c)) / math.Sqrt(float64(b.BN.RunningVar[c])+b.BN.Eps)
		for i := c * k; i < (c+1)*k; i++ {
			w[i] *= o
		}
	}
	return w
}
