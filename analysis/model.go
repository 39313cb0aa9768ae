package analysis

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
)

// FileReport is the analysis of every model in one checkpoint file.
type FileReport struct {
	Path     string
	Format   checkpoint.Format
	Globals  []string
	Warnings []string
	Models   []*ModelReport

	// Options are the options the analysis ran with.
	Options Options
}

// ModelReport is the analysis of one model: its layers in network order,
// the pair-discovery leftovers and a summary.
type ModelReport struct {
	Key            string
	StrippedPrefix string

	Layers    []*Layer
	Unpaired  []convbn.Unpaired
	Ambiguous []convbn.Ambiguity
	Notes     []string

	Summary Summary
}

// Summary condenses a model's layers.
type Summary struct {
	Layers   int
	Channels int

	// Layers whose risk is medium or high, by the side that sets the
	// level. A layer with side both counts in Overshoot and in Stall.
	RiskyOvershoot int
	RiskyStall     int
	// RiskyInvalid counts layers rated high because no channel has a
	// finite ω (side invalid).
	RiskyInvalid int
	// RiskCounts counts layers per risk level, none included.
	RiskCounts map[Level]int

	// Dead is the number of dead channels (γ = 0) in all layers.
	Dead int

	// Optimizer is the optimizer whose distortion the extremes below use.
	Optimizer Optimizer
	// MaxDistortion is the largest finite distortion of any channel, at
	// MaxLayer (conv name) channel MaxChannel; MaxLayer is "" and
	// MaxDistortion NaN when no channel has a finite distortion.
	MaxDistortion float64
	MaxLayer      string
	MaxChannel    int
	// MinDistortion is the smallest finite distortion of any channel, at
	// MinLayer channel MinChannel, with the same convention.
	MinDistortion float64
	MinLayer      string
	MinChannel    int
}

// AnalyzeFile analyzes every model of f. results holds pair discovery's
// outcome for each model, in the order of f.Models.
func AnalyzeFile(f *checkpoint.File, results []convbn.Result, opts Options) (*FileReport, error) {
	if len(results) != len(f.Models) {
		return nil, fmt.Errorf("%s: %d pair results for %d models", f.Path, len(results), len(f.Models))
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	fr := &FileReport{
		Path:     f.Path,
		Format:   f.Format,
		Globals:  f.Globals,
		Warnings: f.Warnings,
		Options:  opts,
	}
	for i, m := range f.Models {
		mr, err := AnalyzeModel(f.Path, m, &results[i], opts)
		if err != nil {
			return nil, err
		}
		fr.Models = append(fr.Models, mr)
	}
	return fr, nil
}

// AnalyzeModel analyzes the pairs of one model in network order. file
// names the checkpoint in errors.
func AnalyzeModel(file string, m *checkpoint.Model, r *convbn.Result, opts Options) (*ModelReport, error) {
	mr := &ModelReport{
		Key:            m.Key,
		StrippedPrefix: m.StrippedPrefix,
		Unpaired:       r.Unpaired,
		Ambiguous:      r.Ambiguous,
		Notes:          r.Notes,
	}
	layers, err := analyzePairs(file, r.Pairs, opts)
	if err != nil {
		return nil, err
	}
	mr.Layers = layers
	mr.Summary = Summarize(mr.Layers, opts.Optimizer)
	return mr, nil
}

// analyzePairs analyzes pairs on up to GOMAXPROCS goroutines, since reading
// and reducing large conv weights is CPU-bound, and returns the layers in
// the order of pairs. The error, if any, is the one of the first failing
// pair, so the result does not depend on scheduling.
func analyzePairs(file string, pairs []convbn.Pair, opts Options) ([]*Layer, error) {
	layers := make([]*Layer, len(pairs))
	errs := make([]error, len(pairs))
	workers := min(runtime.GOMAXPROCS(0), len(pairs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				layers[i], errs[i] = AnalyzePair(file, &pairs[i], opts)
			}
		}()
	}
	for i := range pairs {
		next <- i
	}
	close(next)
	wg.Wait()

	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return layers, nil
}

// Summarize condenses layers analyzed with optimizer opt.
func Summarize(layers []*Layer, opt Optimizer) Summary {
	s := Summary{
		Layers:        len(layers),
		RiskCounts:    map[Level]int{},
		Optimizer:     opt,
		MaxDistortion: math.NaN(),
		MaxChannel:    -1,
		MinDistortion: math.NaN(),
		MinChannel:    -1,
	}
	for _, l := range layers {
		s.Channels += l.NumChannels()
		s.Dead += l.Stats.Dead
		s.RiskCounts[l.Risk.Level]++
		if l.Risk.Level.Rank() >= LevelMedium.Rank() {
			if l.Risk.Side == SideOvershoot || l.Risk.Side == SideBoth {
				s.RiskyOvershoot++
			}
			if l.Risk.Side == SideStall || l.Risk.Side == SideBoth {
				s.RiskyStall++
			}
			if l.Risk.Side == SideInvalid {
				s.RiskyInvalid++
			}
		}
		for c := range l.Channels {
			d := l.Channels[c].Distortion(opt)
			if !isFinite(d) || !isFinite(l.Channels[c].Omega) {
				continue
			}
			if s.MaxLayer == "" || d > s.MaxDistortion {
				s.MaxDistortion, s.MaxLayer, s.MaxChannel = d, l.Conv, c
			}
			if s.MinLayer == "" || d < s.MinDistortion {
				s.MinDistortion, s.MinLayer, s.MinChannel = d, l.Conv, c
			}
		}
	}
	return s
}
