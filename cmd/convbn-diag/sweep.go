package main

import (
	"fmt"
	"io"
	"math"

	"github.com/spf13/cobra"

	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/experiment"
	"github.com/convbn-diag/convbn-diag/internal/atomicfile"
	"github.com/convbn-diag/convbn-diag/mnist"
	"github.com/convbn-diag/convbn-diag/reports"
)

// sweepOptions are the settings of one sweep run.
type sweepOptions struct {
	IO *streams

	Checkpoint string
	MNIST      string
	JSON       string
	Plots      experimentPlots

	Images          int // full-batch source images
	GD              experiment.GDConfig
	StepLR          float64
	Realistic       bool
	RealisticImages int
	RealisticSteps  int
	RealisticBatch  int
	SGDGrid         experiment.Grid
	AdamGrid        experiment.Grid
}

// sweepResult is the document that --json writes.
type sweepResult struct {
	GD        *experiment.GDSweep          `json:"full_batch_gd"`
	StepSGD   *experiment.StepCheck        `json:"one_step_sgd"`
	StepAdam  *experiment.StepCheck        `json:"one_step_adam"`
	Realistic []*experiment.RealisticSweep `json:"realistic,omitempty"`
}

func newCmdSweep(s *streams, runF func(*sweepOptions) error) *cobra.Command {
	sqrt2 := math.Sqrt2
	opts := &sweepOptions{
		IO: s, Images: 256, StepLR: 1e-3, Realistic: true,
		GD:              experiment.GDConfig{Grid: experiment.Grid{Max: 1, Min: 1e-4, Factor: sqrt2, StopAfterStable: 2}, Steps: 20, PowerIterations: 12, Seed: 1},
		RealisticImages: 2048, RealisticSteps: 30, RealisticBatch: 32,
		SGDGrid:  experiment.Grid{Max: 10, Min: 1e-4, Factor: sqrt2, StopAfterStable: 2},
		AdamGrid: experiment.Grid{Max: 1, Min: 1e-5, Factor: sqrt2, StopAfterStable: 2},
	}
	cmd := &cobra.Command{
		Use:   "sweep [flags] [CHECKPOINT]",
		Short: "Measure each mode's largest stable learning rate and test the prediction",
		Long: `Starting from the network that pretrain saved (the embedded "mnist" example
when no CHECKPOINT is given), measure the largest stable learning rate η*
of Eval and Deploy mode and compare η*_Deploy/η*_Eval with two predictions.

1. Under the stability analysis's assumptions: full-batch gradient descent
   on --images source images (digits 0–4) from the pretrained point, only
   conv weights trained (γ, β and head frozen), float64. Predictions: the
   Hessian ratio λ_max(D H' D)/λ_max(H') by power iteration with
   Hessian-vector products (central differences of gradients), and the
   bound [min ω², max ω²]. Tune is not swept: with γ frozen it computes
   the same function and gradients as Eval.
2. One step from the same point, per channel: measured Deploy/Eval ratio
   of ‖ΔW'_c‖ against 1/ω_c² (SGD) and 1/|ω_c| (Adam with ε = 0).
3. With --realistic: fine-tuning on digits 5–9 with a fresh head, every
   parameter trained, mini-batches, SGD with momentum 0.9 and Adam, in
   Eval, Tune and Deploy. No prediction applies; η* is only measured.

Rates are tried on a geometric grid from the largest down; every rate tried
is reported, and the descent stops after two consecutive stable rates. A
trial is unstable when its loss is not finite, reaches 10× its first loss,
or ends above it (mini-batch runs: the mean of the last 5 losses).`,
		Example: `  convbn-diag sweep
  convbn-diag sweep --realistic=false --images 128 --json sweep.json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Checkpoint = args[0]
			}
			if err := opts.GD.Validate(); err != nil {
				return usageErrorf("%v", err)
			}
			if opts.Images < 2 || !(opts.StepLR > 0) || opts.RealisticSteps < 5 || opts.RealisticBatch < 2 || opts.RealisticImages < opts.RealisticBatch {
				return usageErrorf("need --images ≥ 2, --step-lr > 0, --realistic-steps ≥ 5 and 2 ≤ --realistic-batch-size ≤ --realistic-images")
			}
			if err := opts.Plots.validate(); err != nil {
				return err
			}
			if err := checkOutputs([]string{opts.Checkpoint}, []string{"--json", "--plot"}, []string{opts.JSON, opts.Plots.Plot}); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return sweepRun(opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.MNIST, "mnist", "", "read the MNIST files from `DIR` instead of the Go module cache")
	f.StringVar(&opts.JSON, "json", "", "write every trial and prediction as JSON to `FILE`")
	f.IntVar(&opts.Images, "images", opts.Images, "source images for full-batch gradient descent and the one-step check")
	f.IntVar(&opts.GD.Steps, "steps", opts.GD.Steps, "gradient-descent steps per trial")
	f.Float64Var(&opts.GD.Grid.Max, "lr-max", opts.GD.Grid.Max, "largest full-batch learning rate tried")
	f.Float64Var(&opts.GD.Grid.Min, "lr-min", opts.GD.Grid.Min, "smallest full-batch learning rate tried")
	f.Float64Var(&opts.GD.Grid.Factor, "lr-factor", opts.GD.Grid.Factor, "ratio of neighbouring learning rates")
	f.IntVar(&opts.GD.PowerIterations, "power-iterations", opts.GD.PowerIterations, "Hessian-vector products per λ_max estimate")
	f.Uint64Var(&opts.GD.Seed, "seed", opts.GD.Seed, "seed of the power iteration's start vector and of the realistic runs")
	f.Float64Var(&opts.StepLR, "step-lr", opts.StepLR, "learning rate of the one-step check")
	f.BoolVar(&opts.Realistic, "realistic", opts.Realistic, "also sweep realistic fine-tuning (SGD with momentum and Adam)")
	f.IntVar(&opts.RealisticImages, "realistic-images", opts.RealisticImages, "training images of digits 5–9 for the realistic sweep")
	f.IntVar(&opts.RealisticSteps, "realistic-steps", opts.RealisticSteps, "mini-batch steps per realistic trial")
	f.IntVar(&opts.RealisticBatch, "realistic-batch-size", opts.RealisticBatch, "images per realistic step")
	opts.Plots.addFlags(cmd, reports.FigureLRSweep)
	return cmd
}

func sweepRun(opts *sweepOptions) error {
	fail := func(err error) error { return &exitError{code: exitFailure, err: err} }
	w, err := loadPretrained(opts.Checkpoint)
	if err != nil {
		return fail(err)
	}
	dir, err := mnist.Locate(opts.MNIST)
	if err != nil {
		return fail(err)
	}
	src, _, err := experiment.LoadTask(dir, experiment.SourceDigits, opts.Images, 1)
	if err != nil {
		return fail(err)
	}
	p := &progressLine{w: opts.IO.ErrOut, enabled: opts.IO.ErrIsTerminal}
	res := &sweepResult{}
	p.show("sweep: full-batch gradient descent")
	if res.GD, err = experiment.SweepGD(opts.GD, w, src); err != nil {
		p.done()
		return fail(err)
	}
	p.show("sweep: one-step check")
	if res.StepSGD, err = experiment.CheckStep(w, src, "sgd", opts.StepLR); err != nil {
		p.done()
		return fail(err)
	}
	if res.StepAdam, err = experiment.CheckStep(w, src, "adam", opts.StepLR); err != nil {
		p.done()
		return fail(err)
	}
	if opts.Realistic {
		tgt, _, err := experiment.LoadTask(dir, experiment.TargetDigits, opts.RealisticImages, 1)
		if err != nil {
			p.done()
			return fail(err)
		}
		for _, opt := range []string{"sgd", "adam"} {
			p.show("sweep: realistic fine-tuning with %s", opt)
			grid := opts.SGDGrid
			if opt == "adam" {
				grid = opts.AdamGrid
			}
			rs, err := experiment.SweepRealistic(experiment.RealisticConfig{
				Grid: grid, Optimizer: opt, Momentum: 0.9, Steps: opts.RealisticSteps, BatchSize: opts.RealisticBatch, Seed: opts.GD.Seed,
				Modes: []convbn.Mode{convbn.Eval, convbn.Tune, convbn.Deploy},
			}, w, tgt)
			if err != nil {
				p.done()
				return fail(err)
			}
			res.Realistic = append(res.Realistic, rs)
		}
	}
	p.done()
	if opts.JSON != "" {
		if err := atomicfile.Write(opts.JSON, func(wr io.Writer) error { return writeJSON(wr, res) }); err != nil {
			return fail(err)
		}
	}
	err = opts.Plots.save(func(format string) ([]reports.Figure, error) {
		fig, err := reports.NewSweepFigure(res.GD, format)
		return []reports.Figure{fig}, err
	})
	if err != nil {
		return fail(err)
	}
	printSweep(opts.IO.Out, res, opts.GD.Grid.Factor)
	return nil
}

// printSweep writes the summary; gridFactor is the ratio of neighbouring
// learning rates, the resolution of every measured η*.
func printSweep(out io.Writer, res *sweepResult, gridFactor float64) {
	gd := res.GD
	fmt.Fprintf(out, "1. Full-batch gradient descent on %d images of digits 0–4, conv weights only (the analysis's assumptions)\n", gd.Images)
	for _, m := range gd.Modes {
		fmt.Fprintf(out, "   %-7s η* = %-10.4g tried:", m.Mode, float64(m.MaxRate))
		for _, t := range m.Trials {
			mark := "✗"
			if t.Stable {
				mark = "✓"
			}
			fmt.Fprintf(out, " %.3g%s", t.LR, mark)
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "   λ_max(D H' D) = %.4g (2/λ = %.4g), λ_max(H') = %.4g (2/λ = %.4g)\n", float64(gd.LambdaEval), float64(gd.PredictedEval), float64(gd.LambdaDeploy), float64(gd.PredictedDeploy))
	if m := float64(gd.MeasuredRatio); math.IsNaN(m) || math.IsInf(m, 0) {
		// A mode with no stable rate on the grid has no η*, so there is no
		// ratio to set against the predictions.
		fmt.Fprintf(out, "   η*_Deploy/η*_Eval not measured: a mode had no stable rate on the grid; widen it with --lr-min and --lr-max (Hessian prediction %.4g)\n", float64(gd.HessianRatio))
		fmt.Fprintf(out, "   bound [min ω², max ω²] = [%.3g, %.3g]\n", float64(gd.BoundLow), float64(gd.BoundHigh))
	} else {
		fmt.Fprintf(out, "   η*_Deploy/η*_Eval measured %.4g, Hessian prediction %.4g (factor %.3g apart; the grid step is %.3g)\n", m, float64(gd.HessianRatio), float64(gd.HessianFactor), gridFactor)
		inside := "inside"
		if !gd.WithinBound {
			inside = "OUTSIDE"
		}
		fmt.Fprintf(out, "   bound [min ω², max ω²] = [%.3g, %.3g]: the measurement is %s it\n", float64(gd.BoundLow), float64(gd.BoundHigh), inside)
	}
	if gd.HessianFactor > 1.5 {
		fmt.Fprintf(out, "   The Hessian prediction MISSES the measurement by a factor %.3g.\n", float64(gd.HessianFactor))
	}

	fmt.Fprintln(out, "\n2. One step from the pretrained point, per channel (γ, β, head frozen)")
	for _, sc := range []*experiment.StepCheck{res.StepSGD, res.StepAdam} {
		pred := "1/ω²"
		if sc.Optimizer == "adam" {
			pred = "1/|ω| (Adam ε = 0)"
		}
		fmt.Fprintf(out, "   %-4s predicted %s against measured ‖ΔW'_c‖ ratio over %d channels: correlation of logs %.6f, largest relative deviation %.3g\n", sc.Optimizer, pred, len(sc.Channels), float64(sc.Correlation), float64(sc.MaxRelDeviation))
	}

	if len(res.Realistic) > 0 {
		fmt.Fprintln(out, "\n3. Realistic fine-tuning on digits 5–9, fresh head, every parameter, mini-batches (measured only; no prediction applies)")
		for _, rs := range res.Realistic {
			for _, m := range rs.Modes {
				fmt.Fprintf(out, "   %-4s %-7s η* = %-10.4g tried:", rs.Optimizer, m.Mode, float64(m.MaxRate))
				for _, t := range m.Trials {
					mark := "✗"
					if t.Stable {
						mark = "✓"
					}
					fmt.Fprintf(out, " %.3g%s", t.LR, mark)
				}
				fmt.Fprintln(out)
			}
			fmt.Fprintf(out, "   %-4s η*_Deploy/η*_Eval measured %.4g\n", rs.Optimizer, float64(rs.MeasuredRatio))
		}
	}
}
