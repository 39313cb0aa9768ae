package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/convbn-diag/convbn-diag/analysis"
	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/examples"
	"github.com/convbn-diag/convbn-diag/internal/atomicfile"
	"github.com/convbn-diag/convbn-diag/reports"
)

// reportOptions are the settings of one report run. The analysis flags
// shared with analyze live in Analyze.
type reportOptions struct {
	Analyze analyzeOptions

	NoFigures bool
}

func newCmdReport(s *streams, runF func(*reportOptions) error) *cobra.Command {
	opts := &reportOptions{Analyze: analyzeOptions{IO: s, Format: string(reports.FormatTable), Width: reports.DefaultWidth, PlotFormat: "png"}}
	a := &opts.Analyze
	cmd := &cobra.Command{
		Use:   "report [flags] CHECKPOINT -o FILE.html",
		Short: "Write a self-contained HTML report with figures",
		Long: `Analyze one checkpoint like analyze does and write a single HTML page:
the summary, four figures (|ω| per layer, the distortion D per layer
against the risk limits, a histogram of |ω|, and log|γ| against
−½·log(σ²+ε)), the layer table with each layer's ε and its source, and a
plain-language explanation of every medium or high risk or flagged layer.

The page is self-contained: the figures are inline SVG and it loads no
script, style sheet, font or image, so it can be mailed or archived as
one file. The output file is replaced only when complete.`,
		Example: `  # The built-in example:
  convbn-diag report --example -o flags.html

  # A checkpoint, rating Adam's distortion:
  convbn-diag report --optimizer adam -o resnet20.html resnet20.th`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.Files = args
			a.EpsSet = cmd.Flags().Changed("eps")
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return reportRun(opts)
		},
	}

	f := cmd.Flags()
	f.StringVarP(&a.Output, "output", "o", "", "write the HTML page to `FILE` (replaced only when complete); - for standard output")
	f.BoolVar(&opts.NoFigures, "no-figures", false, "leave the figures out")
	addAnalysisFlags(cmd, a)
	return cmd
}

// addAnalysisFlags adds the flags that choose the input and set the
// analysis, shared by report and explain.
func addAnalysisFlags(cmd *cobra.Command, a *analyzeOptions) {
	f := cmd.Flags()
	f.StringVar(&a.Example, "example", "", "use a built-in example checkpoint instead of a file (bare --example means \"flags\"; pick another as --example=NAME; names: "+strings.Join(examples.Names(), ", ")+")")
	f.Lookup("example").NoOptDefVal = "flags"
	f.Float64Var(&a.Eps, "eps", convbn.DefaultEps, "BatchNorm ε for layers whose file does not store one; a stored ε always wins")
	f.StringVar(&a.Optimizer, "optimizer", "sgd", "optimizer whose distortion sets the risk level: sgd (D = 1/ω²) or adam (D = 1/|ω|)")
	f.StringVar(&a.Overshoot, "overshoot", "", "overshoot risk limits `LOW,MEDIUM,HIGH` on a layer's largest D (default 2,10,100)")
	f.StringVar(&a.Stall, "stall", "", "stall risk limits `LOW,MEDIUM,HIGH` on a layer's median D (default 0.5,0.1,0.01)")
	f.StringVar(&a.Key, "key", "", "use only the model at this `KEY` of a file holding several (for example ema)")
	f.StringArrayVar(&a.Pairs, "pair", nil, "force a pair `CONV=BN` by module names (repeatable)")
	f.StringArrayVar(&a.NoPair, "no-pair", nil, "keep the conv or BatchNorm module `NAME` unpaired (repeatable)")
}

func (o *reportOptions) validate() error {
	a := &o.Analyze
	if a.Output == "" {
		return usageErrorf("report needs -o FILE.html (or -o - for standard output)")
	}
	if err := a.validate(); err != nil {
		return err
	}
	return nil
}

func reportRun(opts *reportOptions) error {
	a := &opts.Analyze
	aopts, _ := a.analysisOptions()
	popts, _ := a.pairOptions()
	src := a.Example
	if src == "" {
		src = a.Files[0]
	}
	fr, err := analyzeSource(a, src, popts, aopts)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}

	hopts := reports.HTMLOptions{ToolVersion: version, NoFigures: opts.NoFigures}
	render := func(w io.Writer) error { return reports.WriteHTML(w, fr, hopts) }
	if a.Output == "-" {
		err = render(a.IO.Out)
	} else {
		err = atomicfile.Write(a.Output, render)
	}
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	if a.Output != "-" {
		if fi, err := os.Stat(a.Output); err == nil {
			fmt.Fprintf(a.IO.ErrOut, "wrote %s (%d bytes)\n", a.Output, fi.Size())
		}
	}
	return nil
}

// addPlotFlags adds analyze's figure flags.
func addPlotFlags(cmd *cobra.Command, o *analyzeOptions) {
	f := cmd.Flags()
	f.StringVar(&o.Plot, "plot", "", "also draw the four figures as one image to `FILE`; .png, .svg or .pdf chooses the format (one model only)")
	f.StringVar(&o.PlotDir, "plot-dir", "", "also write each figure to `DIR` as omega-box, distortion, omega-hist and gamma-variance, with layer-key.txt naming the layer indices")
	f.StringVar(&o.PlotFormat, "plot-format", "png", "format of the --plot-dir files: png, svg or pdf")
}

// validatePlotFlags checks --plot, --plot-dir and --plot-format.
func (o *analyzeOptions) validatePlotFlags() error {
	if o.Plot != "" {
		if _, err := reports.FigureFormat(o.Plot); err != nil {
			return usageErrorf("--plot: %v", err)
		}
		if fi, err := os.Stat(o.Plot); err == nil && fi.IsDir() {
			return usageErrorf("--plot %s is a directory; give a file name, or use --plot-dir", o.Plot)
		}
	}
	valid := false
	for _, f := range reports.FigureFormats {
		valid = valid || o.PlotFormat == f
	}
	if !valid {
		return usageErrorf("--plot-format: invalid format %q: use %s", o.PlotFormat, strings.Join(reports.FigureFormats, ", "))
	}
	return nil
}

// writePlots writes the --plot and --plot-dir figures of results.
func writePlots(opts *analyzeOptions, results []*analysis.FileReport) error {
	if opts.Plot == "" && opts.PlotDir == "" {
		return nil
	}
	type model struct {
		file *analysis.FileReport
		m    *analysis.ModelReport
	}
	var models []model
	for _, fr := range results {
		for _, m := range fr.Models {
			models = append(models, model{fr, m})
		}
	}

	if opts.Plot != "" {
		if len(models) != 1 {
			return fmt.Errorf("--plot %s draws one model, but the input has %d; choose one with --key, or use --plot-dir", opts.Plot, len(models))
		}
		format, _ := reports.FigureFormat(opts.Plot)
		figs, err := reports.NewFigures(models[0].m, models[0].file.Options, format)
		if err != nil {
			return fmt.Errorf("--plot %s: %w", opts.Plot, err)
		}
		if err := reports.SaveCombined(opts.Plot, figs); err != nil {
			return err
		}
	}

	if opts.PlotDir != "" {
		used := map[string]bool{}
		for i, mo := range models {
			prefix := ""
			if len(models) > 1 {
				prefix = plotPrefix(mo.file.Path, mo.m.Key)
				if used[prefix] {
					prefix = fmt.Sprintf("%s%d-", prefix, i)
				}
				used[prefix] = true
			}
			figs, err := reports.NewFigures(mo.m, mo.file.Options, opts.PlotFormat)
			if err != nil {
				return fmt.Errorf("--plot-dir: %s: %w", mo.file.Path, err)
			}
			if _, err := reports.SaveFigureDir(opts.PlotDir, prefix, figs, opts.PlotFormat); err != nil {
				return err
			}
			key := filepath.Join(opts.PlotDir, prefix+"layer-key.txt")
			err = atomicfile.Write(key, func(w io.Writer) error {
				_, err := io.WriteString(w, reports.LayerKey(mo.m))
				return err
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// plotPrefix returns the figure file prefix of one model when several are
// plotted: the checkpoint's base name without extension, then the model
// key, with characters other than letters, digits, '.', '_' and '-'
// replaced by '_'.
func plotPrefix(path, key string) string {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if key != "" {
		base += "-" + key
	}
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, base)
	return clean + "-"
}
