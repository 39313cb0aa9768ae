package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/examples"
	"github.com/convbn-diag/convbn-diag/experiment"
	"github.com/convbn-diag/convbn-diag/internal/atomicfile"
	"github.com/convbn-diag/convbn-diag/reports"
)

// defaultExperimentExample is the embedded pretrained network that
// simulate and sweep use when given no checkpoint.
const defaultExperimentExample = "mnist"

// loadPretrained reads the network `convbn-diag pretrain` saved, from path
// or, when path is empty, from the embedded example.
func loadPretrained(path string) (*experiment.Weights, error) {
	var f *checkpoint.File
	var err error
	if path == "" {
		f, err = examples.Open(defaultExperimentExample)
	} else {
		f, err = checkpoint.Open(path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return experiment.LoadWeights(f)
}

// progressLine rewrites one status line on a terminal and prints nothing
// elsewhere.
type progressLine struct {
	w       io.Writer
	enabled bool
	last    string
}

func (p *progressLine) show(format string, args ...any) {
	if !p.enabled {
		return
	}
	s := fmt.Sprintf(format, args...)
	if s == p.last {
		return
	}
	p.last = s
	fmt.Fprintf(p.w, "\r\033[K%s", s)
}

func (p *progressLine) done() {
	if p.enabled && p.last != "" {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// experimentPlots are the figure flags of simulate and sweep.
type experimentPlots struct {
	Plot, Dir, Format string
}

func (p *experimentPlots) addFlags(cmd *cobra.Command, names string) {
	f := cmd.Flags()
	f.StringVar(&p.Plot, "plot", "", "also draw the figures as one image to `FILE`; .png, .svg or .pdf chooses the format")
	f.StringVar(&p.Dir, "plot-dir", "", "also write each figure to `DIR` ("+names+")")
	f.StringVar(&p.Format, "plot-format", "png", "format of the --plot-dir files: png, svg or pdf")
}

func (p *experimentPlots) validate() error {
	if p.Plot != "" {
		if _, err := reports.FigureFormat(p.Plot); err != nil {
			return usageErrorf("--plot: %v", err)
		}
	}
	if !slices.Contains(reports.FigureFormats, p.Format) {
		return usageErrorf("--plot-format: invalid format %q: use %s", p.Format, strings.Join(reports.FigureFormats, ", "))
	}
	return nil
}

// save draws the figures build returns for each format requested and
// writes them.
func (p *experimentPlots) save(build func(format string) ([]reports.Figure, error)) error {
	if p.Plot != "" {
		format, _ := reports.FigureFormat(p.Plot)
		figs, err := build(format)
		if err != nil {
			return err
		}
		if len(figs) == 1 {
			// SaveCombined would leave the second column of its grid empty.
			err = atomicfile.Write(p.Plot, func(w io.Writer) error { return reports.WriteFigure(w, figs[0], format) })
		} else {
			err = reports.SaveCombined(p.Plot, figs)
		}
		if err != nil {
			return err
		}
	}
	if p.Dir != "" {
		figs, err := build(p.Format)
		if err != nil {
			return err
		}
		if _, err := reports.SaveFigureDir(p.Dir, "", figs, p.Format); err != nil {
			return err
		}
	}
	return nil
}
