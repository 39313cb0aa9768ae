package main

import (
	"fmt"
	"io"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/examples"
	"github.com/convbn-diag/convbn-diag/experiment"
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
