package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/experiment"
	"github.com/convbn-diag/convbn-diag/internal/atomicfile"
	"github.com/convbn-diag/convbn-diag/mnist"
	"github.com/convbn-diag/convbn-diag/reports"
)

// simulateOptions are the settings of one simulate run.
type simulateOptions struct {
	IO *streams

	Checkpoint string // "" for the embedded mnist example
	MNIST      string
	Modes      []string
	DType      string
	Images     int
	TestImages int
	JSON       string
	CSV        string
	Timings    string
	Plots      experimentPlots
	Config     experiment.SimulateConfig
}

func newCmdSimulate(s *streams, runF func(*simulateOptions) error) *cobra.Command {
	opts := &simulateOptions{IO: s, Config: experiment.DefaultSimulateConfig()}
	cmd := &cobra.Command{
		Use:   "simulate [flags] [CHECKPOINT]",
		Short: "Fine-tune a pretrained network in each ConvBN mode and compare the runs",
		Long: `Fine-tune the network that pretrain saved (the embedded "mnist" example when
no CHECKPOINT is given) on MNIST digits 5–9 with a fresh linear head, once
per mode (train, eval, tune, deploy), with the same optimizer, learning
rate, seed and batch order. Eval and Tune compute the same function and
gradients, so their losses agree up to rounding; Deploy trains the fused
weights W' = ω·W, which scales each channel's SGD step by 1/ω², and with
small ω it can diverge where Eval and Tune do not.

--json and --csv record per step the batch loss and accuracy (before the
update) and per block ‖W‖ and ‖∂L/∂W‖ of the trained weight (W' in
Deploy), ‖W'‖ and the relative update ‖ΔW'‖/‖W'‖ in fused coordinates,
plus the bytes each mode's blocks hold for backward. They are identical
for the same seed; wall-clock times go to --timings only. A mode diverges
when its loss is not finite or reaches 10× its first loss; it stops there.

Standard output gets a summary: test accuracy per mode, the largest
|loss_Tune − loss_Eval| (bound 1e-9 over all steps in float64, 1e-4 over
the first 20 steps in float32), where Deploy diverged, and bytes held and
time per step per mode.`,
		Example: `  convbn-diag simulate
  convbn-diag simulate --lr 0.3 --json sim.json --csv sim.csv mnist.pt
  convbn-diag simulate --dtype float64 --modes eval,tune --steps 50`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Checkpoint = args[0]
			}
			if err := opts.parse(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return simulateRun(opts)
		},
	}
	f := cmd.Flags()
	c := &opts.Config
	f.StringVar(&opts.MNIST, "mnist", "", "read the MNIST files from `DIR` instead of the Go module cache")
	f.StringSliceVar(&opts.Modes, "modes", []string{"train", "eval", "tune", "deploy"}, "modes to run, in order")
	f.StringVar(&opts.DType, "dtype", "float32", "element type: float32 or float64")
	f.IntVar(&opts.Images, "images", 4096, "training images of digits 5–9 to draw batches from")
	f.IntVar(&opts.TestImages, "test-images", 1000, "test images of digits 5–9 that measure final accuracy")
	f.IntVar(&c.Steps, "steps", c.Steps, "training steps per mode")
	f.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "images per step")
	f.StringVar(&c.Optimizer, "optimizer", c.Optimizer, "sgd (with --momentum) or adam (β₁ 0.9, β₂ 0.999, ε 1e-8)")
	f.Float64Var(&c.LR, "lr", c.LR, "learning rate")
	f.Float64Var(&c.Momentum, "momentum", c.Momentum, "SGD momentum")
	f.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the fresh head and the batch order")
	f.BoolVar(&c.ConvOnly, "conv-only", c.ConvOnly, "train only the conv weights; γ, β and the fresh head stay frozen")
	f.StringVar(&opts.JSON, "json", "", "write the per-step record as JSON to `FILE`")
	f.StringVar(&opts.CSV, "csv", "", "write the per-step record as CSV to `FILE`, one row per mode, step and block")
	f.StringVar(&opts.Timings, "timings", "", "write wall-clock times per mode as JSON to `FILE`")
	opts.Plots.addFlags(cmd, reports.FigureLoss+", "+reports.FigureRelativeUpdate)
	return cmd
}

func (o *simulateOptions) parse() error {
	o.Config.Modes = nil
	for _, name := range o.Modes {
		m, err := parseMode(name)
		if err != nil {
			return usageErrorf("--modes: %v", err)
		}
		o.Config.Modes = append(o.Config.Modes, m)
	}
	switch o.DType {
	case "float32", "float64":
		o.Config.Float64 = o.DType == "float64"
	default:
		return usageErrorf("--dtype: invalid value %q: use float32 or float64", o.DType)
	}
	if err := o.Config.Validate(); err != nil {
		return usageErrorf("%v", err)
	}
	if err := o.Plots.validate(); err != nil {
		return err
	}
	if err := checkOutputs([]string{o.Checkpoint}, []string{"--json", "--csv", "--timings", "--plot"},
		[]string{o.JSON, o.CSV, o.Timings, o.Plots.Plot}); err != nil {
		return err
	}
	if o.Images < o.Config.BatchSize || o.TestImages < 1 {
		return usageErrorf("--images %d must be at least --batch-size %d, and --test-images at least 1", o.Images, o.Config.BatchSize)
	}
	return nil
}

func parseMode(name string) (convbn.Mode, error) {
	for _, m := range []convbn.Mode{convbn.Train, convbn.Eval, convbn.Tune, convbn.Deploy} {
		if strings.EqualFold(name, m.String()) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown mode %q: use train, eval, tune or deploy", name)
}

func simulateRun(opts *simulateOptions) error {
	w, err := loadPretrained(opts.Checkpoint)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	dir, err := mnist.Locate(opts.MNIST)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	train, test, err := experiment.LoadTask(dir, experiment.TargetDigits, opts.Images, opts.TestImages)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	p := &progressLine{w: opts.IO.ErrOut, enabled: opts.IO.ErrIsTerminal}
	sim, err := experiment.Simulate(opts.Config, w, train, test, func(m convbn.Mode, step int) {
		p.show("simulate %s step %d/%d", m, step, opts.Config.Steps)
	})
	p.done()
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	writes := []struct {
		path  string
		write func(io.Writer) error
	}{
		{opts.JSON, func(w io.Writer) error { return writeJSON(w, sim) }},
		{opts.CSV, func(w io.Writer) error { return writeSimulationCSV(w, sim) }},
		{opts.Timings, func(w io.Writer) error { return writeJSON(w, sim.Timings()) }},
	}
	for _, wr := range writes {
		if wr.path == "" {
			continue
		}
		if err := atomicfile.Write(wr.path, wr.write); err != nil {
			return &exitError{code: exitFailure, err: err}
		}
	}
	err = opts.Plots.save(func(format string) ([]reports.Figure, error) { return reports.NewSimulationFigures(sim, format) })
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	printSimulation(opts.IO.Out, sim)
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeSimulationCSV writes one row per mode, step and block.
func writeSimulationCSV(w io.Writer, sim *experiment.Simulation) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"mode", "step", "loss", "accuracy", "bytes_held", "block", "weight_norm", "weight_grad_norm", "fused_weight_norm", "relative_update"})
	for _, r := range sim.Runs {
		for _, st := range r.Steps {
			head := []string{r.Mode.String(), strconv.Itoa(st.Step), st.Loss.String(), st.Accuracy.String(), strconv.FormatInt(st.BytesHeld, 10)}
			if len(st.Layers) == 0 { // the step on which the run diverged
				cw.Write(append(head, "", "", "", "", ""))
				continue
			}
			for _, l := range st.Layers {
				cw.Write(append(head, l.Block, l.WeightNorm.String(), l.WeightGradNorm.String(), l.FusedWeightNorm.String(), l.RelativeUpdate.String()))
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

func printSimulation(out io.Writer, sim *experiment.Simulation) {
	c := sim.Config
	fmt.Fprintf(out, "Fine-tuning on digits 5–9 (fresh head), %s, η = %g, %d steps of %d images, %s\n\n", c.Optimizer, c.LR, c.Steps, c.BatchSize, sim.DType)
	fmt.Fprintf(out, "%-7s %10s %10s %10s %14s %12s %s\n", "mode", "test acc", "last loss", "steps run", "bytes held", "ms/step", "diverged")
	timings := sim.Timings()
	for i, r := range sim.Runs {
		div := "no"
		if r.DivergedStep > 0 {
			div = fmt.Sprintf("at step %d", r.DivergedStep)
		}
		last := math.NaN()
		if n := len(r.Steps); n > 0 {
			last = float64(r.Steps[n-1].Loss)
		}
		fmt.Fprintf(out, "%-7s %10.4f %10.4g %10d %14d %12.1f %s\n", r.Mode, float64(r.TestAccuracy), last, len(r.Steps), r.BytesHeld, 1000*timings[i].SecondsStep, div)
	}
	if !math.IsNaN(float64(sim.MaxTuneEvalLossDiff)) {
		over := "all steps"
		if sim.TuneEvalBoundSteps > 0 {
			over = fmt.Sprintf("the first %d steps", sim.TuneEvalBoundSteps)
		}
		verdict := "within"
		if !(sim.MaxTuneEvalLossDiff <= sim.TuneEvalBound) {
			verdict = "OUTSIDE"
		}
		fmt.Fprintf(out, "\nmax |loss_Tune − loss_Eval| over %s: %.3g (%s the bound %g); over all steps: %.3g\n", over, float64(sim.MaxTuneEvalLossDiff), verdict, float64(sim.TuneEvalBound), float64(sim.MaxTuneEvalLossDiffAll))
	}
	fmt.Fprintln(out, "test acc: accuracy on the held-out test images after the last step (NaN for a diverged run); bytes held: what the ConvBN blocks keep for backward per step.")
}
