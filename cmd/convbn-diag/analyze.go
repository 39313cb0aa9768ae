package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/convbn-diag/convbn-diag/analysis"
	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/examples"
	"github.com/convbn-diag/convbn-diag/internal/atomicfile"
	"github.com/convbn-diag/convbn-diag/reports"
)

// analyzeOptions are the settings of one analyze run: flag values and the
// injected streams.
type analyzeOptions struct {
	IO *streams

	Files   []string
	Example string // name of an embedded example, "" for none

	Format     string
	Output     string
	PerChannel bool
	Legend     bool
	Width      int

	Eps       float64
	EpsSet    bool
	Optimizer string
	Overshoot string // "low,medium,high" distortion limits, "" for defaults
	Stall     string
	FailOn    string
	Key       string
	Pairs     []string // CONV=BN
	NoPair    []string

	// Jobs is the number of files analyzed at the same time; 0 means
	// GOMAXPROCS.
	Jobs int
	// Quiet turns the progress bars off.
	Quiet bool
	// progressMinBytes, when positive, replaces the file size from which a
	// progress bar is drawn; tests lower it.
	progressMinBytes int64

	Plot       string // combined figure file, "" for none
	PlotDir    string // folder for one file per figure, "" for none
	PlotFormat string // format of the --plot-dir files
}

func newCmdAnalyze(s *streams, runF func(*analyzeOptions) error) *cobra.Command {
	opts := &analyzeOptions{IO: s}
	cmd := &cobra.Command{
		Use:   "analyze [flags] CHECKPOINT...",
		Short: "Diagnose every Conv→BatchNorm layer of a checkpoint",
		Long: `Find every Conv→BatchNorm pair in each checkpoint and report, per layer (or
per channel with --per-channel), the BatchNorm scale ω = γ/√(σ²+ε), the
fused weights W' = ω·W and b' = β + ω(b − μ), and the learning-rate
distortion D of training the fused weights (Deploy mode) instead of the
original ones (Eval or Tune mode): D_SGD = 1/ω², D_Adam = 1/|ω|. D ≫ 1
means Deploy-mode training overshoots that channel; D ≪ 1 means it
barely trains it.

Readable formats: PyTorch zip checkpoints (torch.save since 1.6) and legacy
PyTorch pickles, as state dicts, training checkpoints or whole pickled
nn.Modules; TorchScript archives; safetensors; ONNX. Nothing in a file is
executed.

Exit status: 0 when every file was analyzed; 1 when a file could not be
read or analyzed (the others are still reported); 2 for invalid flags or
arguments; 3 with --fail-on when a layer at or above that risk level was
found (1 takes precedence).`,
		Example: `  # The built-in example, which needs no file:
  convbn-diag analyze --example

  # A checkpoint, one row per layer:
  convbn-diag analyze resnet20.th

  # One row per channel as CSV, for a spreadsheet or pandas:
  convbn-diag analyze --per-channel --format csv -o channels.csv model.pt

  # Adam's distortion, and fail a CI job on any high-risk layer:
  convbn-diag analyze --optimizer adam --fail-on high model.pt

  # A checkpoint with "model" and "ema", analyzing only the EMA weights:
  convbn-diag analyze --key ema last.pt

  # Several files, four at a time, reported in argument order:
  convbn-diag analyze --jobs 4 -f csv runs/*/best.pt`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Files = args
			opts.EpsSet = cmd.Flags().Changed("eps")
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return analyzeRun(opts)
		},
	}

	f := cmd.Flags()
	f.StringVar(&opts.Example, "example", "", "analyze a built-in example checkpoint instead of a file (bare --example means \"flags\"; pick another as --example=NAME; names: "+strings.Join(examples.Names(), ", ")+")")
	f.Lookup("example").NoOptDefVal = "flags"
	f.StringVarP(&opts.Format, "format", "f", "table", "output format: table, json, csv or markdown")
	f.StringVarP(&opts.Output, "output", "o", "", "write the report to `FILE` (replaced only when complete) instead of standard output")
	f.BoolVar(&opts.PerChannel, "per-channel", false, "one row per channel, with weight norms (reads every conv weight)")
	f.BoolVar(&opts.Legend, "legend", true, "explain the table's columns under it (table format only)")
	f.IntVar(&opts.Width, "width", reports.DefaultWidth, "maximum line width of the table format, in characters")
	f.Float64Var(&opts.Eps, "eps", convbn.DefaultEps, "BatchNorm ε for layers whose file does not store one; a stored ε always wins")
	f.StringVar(&opts.Optimizer, "optimizer", "sgd", "optimizer whose distortion sets the risk level: sgd (D = 1/ω²) or adam (D = 1/|ω|)")
	f.StringVar(&opts.Overshoot, "overshoot", "", "overshoot risk limits `LOW,MEDIUM,HIGH` on a layer's largest D (default 2,10,100)")
	f.StringVar(&opts.Stall, "stall", "", "stall risk limits `LOW,MEDIUM,HIGH` on a layer's median D (default 0.5,0.1,0.01)")
	f.StringVar(&opts.FailOn, "fail-on", "", "exit with status 3 when a layer's risk is at or above `LEVEL` (medium or high)")
	f.StringVar(&opts.Key, "key", "", "analyze only the model at this `KEY` of a file holding several (for example ema)")
	f.StringArrayVar(&opts.Pairs, "pair", nil, "force a pair `CONV=BN` by module names (repeatable)")
	f.StringArrayVar(&opts.NoPair, "no-pair", nil, "keep the conv or BatchNorm module `NAME` unpaired (repeatable)")
	f.IntVarP(&opts.Jobs, "jobs", "j", runtime.GOMAXPROCS(0), "analyze up to `N` files at the same time (0: one per CPU); results keep the argument order")
	f.BoolVarP(&opts.Quiet, "quiet", "q", false, "draw no progress bar (bars appear only on a terminal, for files of 50 MB or more)")
	addPlotFlags(cmd, opts)
	return cmd
}

// validate checks the flag values and arguments that need no file.
func (o *analyzeOptions) validate() error {
	if o.Example == "" && len(o.Files) == 0 {
		return usageErrorf("analyze needs a CHECKPOINT argument or --example")
	}
	if o.Example != "" && len(o.Files) > 0 {
		if slices.Contains(examples.Names(), o.Files[0]) {
			return usageErrorf("analyze takes either CHECKPOINT arguments or --example, not both; to pick the %s example, write --example=%s", o.Files[0], o.Files[0])
		}
		return usageErrorf("analyze takes either CHECKPOINT arguments or --example, not both")
	}
	if o.Example != "" && !slices.Contains(examples.Names(), o.Example) {
		return usageErrorf("--example: no example named %q; the examples are %s", o.Example, strings.Join(examples.Names(), ", "))
	}
	o.FailOn = strings.ToLower(o.FailOn)
	if _, err := reports.ParseFormat(o.Format); err != nil {
		return usageErrorf("--format: %v", err)
	}
	if _, err := o.analysisOptions(); err != nil {
		return usageErrorf("%v", err)
	}
	if o.FailOn != "" && o.FailOn != string(analysis.LevelMedium) && o.FailOn != string(analysis.LevelHigh) {
		return usageErrorf("--fail-on: invalid level %q: use medium or high", o.FailOn)
	}
	if o.EpsSet && !(o.Eps > 0) {
		return usageErrorf("--eps: invalid value %g: ε must be positive", o.Eps)
	}
	if o.Jobs < 0 {
		return usageErrorf("--jobs: invalid value %d: use 1 or more, or 0 for one per CPU", o.Jobs)
	}
	if o.Width < 40 {
		return usageErrorf("--width: invalid value %d: use at least 40", o.Width)
	}
	if _, err := o.pairOptions(); err != nil {
		return usageErrorf("%v", err)
	}
	if err := o.validatePlotFlags(); err != nil {
		return err
	}
	if o.Output != "" && o.Output != "-" {
		out, err := os.Stat(o.Output)
		if err == nil && out.IsDir() {
			return usageErrorf("-o %s is a directory; give a file name", o.Output)
		}
		for _, f := range o.Files {
			if in, err2 := os.Stat(f); err == nil && err2 == nil && os.SameFile(in, out) {
				return usageErrorf("-o %s would overwrite the checkpoint being analyzed; choose another output file", o.Output)
			}
		}
	}
	return nil
}

// analysisOptions turns the flags into analysis options.
func (o *analyzeOptions) analysisOptions() (analysis.Options, error) {
	a := analysis.DefaultOptions()
	opt, err := analysis.ParseOptimizer(o.Optimizer)
	if err != nil {
		return a, fmt.Errorf("--optimizer: %v", err)
	}
	a.Optimizer = opt
	a.WeightNorms = o.PerChannel
	if o.Overshoot != "" {
		v, err := parseLimits("--overshoot", o.Overshoot)
		if err != nil {
			return a, err
		}
		a.Thresholds.OvershootLow, a.Thresholds.OvershootMedium, a.Thresholds.OvershootHigh = v[0], v[1], v[2]
	}
	if o.Stall != "" {
		v, err := parseLimits("--stall", o.Stall)
		if err != nil {
			return a, err
		}
		a.Thresholds.StallLow, a.Thresholds.StallMedium, a.Thresholds.StallHigh = v[0], v[1], v[2]
	}
	if err := a.Validate(); err != nil {
		return a, err
	}
	return a, nil
}

// parseLimits parses three comma-separated numbers.
func parseLimits(flag, s string) ([3]float64, error) {
	var v [3]float64
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return v, fmt.Errorf("%s: invalid value %q: give three numbers LOW,MEDIUM,HIGH", flag, s)
	}
	for i, p := range parts {
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return v, fmt.Errorf("%s: invalid number %q in %q", flag, p, s)
		}
		v[i] = x
	}
	return v, nil
}

// pairOptions turns the flags into pair-discovery options.
func (o *analyzeOptions) pairOptions() (convbn.Options, error) {
	p := convbn.Options{Eps: o.Eps, EpsSet: o.EpsSet, NoPair: o.NoPair}
	for _, kv := range o.Pairs {
		conv, bn, ok := strings.Cut(kv, "=")
		if !ok || conv == "" || bn == "" {
			return p, fmt.Errorf("--pair: invalid value %q: use CONV=BN with module names, for example layer1.0.conv1=layer1.0.bn1", kv)
		}
		if p.Pairs == nil {
			p.Pairs = map[string]string{}
		}
		if prev, dup := p.Pairs[conv]; dup && prev != bn {
			return p, fmt.Errorf("--pair: conv %s is paired twice, with %s and %s", conv, prev, bn)
		}
		p.Pairs[conv] = bn
	}
	return p, nil
}

func analyzeRun(opts *analyzeOptions) error {
	aopts, _ := opts.analysisOptions()
	popts, _ := opts.pairOptions()
	format, _ := reports.ParseFormat(opts.Format)

	var (
		results []*analysis.FileReport
		failed  bool
	)
	sources := opts.Files
	if opts.Example != "" {
		sources = []string{opts.Example}
	}
	for _, r := range analyzeSources(opts, sources, popts, aopts) {
		if r.err != nil {
			failed = true
			fmt.Fprintf(opts.IO.ErrOut, "convbn-diag: %v\n", r.err)
			continue
		}
		results = append(results, r.report)
	}
	if len(results) == 0 {
		return silentExit(exitFailure)
	}

	ropts := reports.Options{ToolVersion: version, PerChannel: opts.PerChannel, Width: opts.Width, Legend: opts.Legend}
	if err := writeReport(opts, format, results, ropts); err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	if err := writePlots(opts, results); err != nil {
		return &exitError{code: exitFailure, err: err}
	}

	switch {
	case failed:
		return silentExit(exitFailure)
	case opts.FailOn != "" && riskAtLeast(results, analysis.Level(opts.FailOn)):
		fmt.Fprintf(opts.IO.ErrOut, "convbn-diag: a layer's risk is %s or higher (--fail-on %s)\n", opts.FailOn, opts.FailOn)
		return silentExit(exitRiskSeen)
	}
	return nil
}

// selectModel keeps only the model at key in f, when key is set.
func selectModel(f *checkpoint.File, key string) error {
	if len(f.Models) == 0 {
		return fmt.Errorf("%s: no tensors found; is this a checkpoint of model weights?", f.Path)
	}
	if key == "" {
		return nil
	}
	var keys []string
	for _, m := range f.Models {
		if m.Key == key {
			f.Models = []*checkpoint.Model{m}
			return nil
		}
		k := m.Key
		if k == "" {
			k = `"" (the top-level object)`
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return fmt.Errorf("%s: --key %s: no model with that key; the file holds %s", f.Path, key, strings.Join(keys, ", "))
}

// writeReport renders results to the -o file or standard output.
func writeReport(opts *analyzeOptions, format reports.Format, results []*analysis.FileReport, ropts reports.Options) error {
	render := func(w io.Writer) error { return reports.Write(w, format, results, ropts) }
	if opts.Output == "" || opts.Output == "-" {
		return render(opts.IO.Out)
	}
	return atomicfile.Write(opts.Output, render)
}

// riskAtLeast reports whether any layer's risk level is at or above min.
func riskAtLeast(results []*analysis.FileReport, min analysis.Level) bool {
	for _, fr := range results {
		for _, m := range fr.Models {
			for _, l := range m.Layers {
				if l.Risk.Level.Rank() >= min.Rank() {
					return true
				}
			}
		}
	}
	return false
}
