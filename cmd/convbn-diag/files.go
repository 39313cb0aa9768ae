package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/convbn-diag/convbn-diag/analysis"
	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/examples"
	"github.com/convbn-diag/convbn-diag/internal/progress"
)

// fileResult is the outcome of analyzing one source: a report or an error.
type fileResult struct {
	report *analysis.FileReport
	err    error
}

// analyzeSources analyzes sources on up to opts.Jobs goroutines and returns
// one result per source, in the order of sources, whatever order the
// analyses finish in.
func analyzeSources(opts *analyzeOptions, sources []string, popts convbn.Options, aopts analysis.Options) []fileResult {
	bars := newProgress(opts.IO, opts.Quiet, opts.progressMinBytes)
	results := make([]fileResult, len(sources))
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = runtime.GOMAXPROCS(0)
	}
	jobs = min(jobs, len(sources))
	next := make(chan int)
	var wg sync.WaitGroup
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fr, err := analyzeSourceProgress(opts, sources[i], popts, aopts, bars)
				results[i] = fileResult{report: fr, err: err}
			}
		}()
	}
	for i := range sources {
		next <- i
	}
	close(next)
	wg.Wait()
	bars.Wait()
	return results
}

// newProgress returns the progress bars for a command: drawn on the
// error stream only when it is a terminal and quiet is false. minBytes
// overrides the size from which a file gets a bar when positive.
func newProgress(s *streams, quiet bool, minBytes int64) *progress.Set {
	bars := progress.New(s.ErrOut, s.ErrIsTerminal && !quiet)
	if minBytes > 0 {
		bars.MinBytes = minBytes
	}
	return bars
}

// analyzeSource opens one checkpoint (or embedded example), finds its pairs
// and analyzes them, without a progress bar.
func analyzeSource(opts *analyzeOptions, src string, popts convbn.Options, aopts analysis.Options) (*analysis.FileReport, error) {
	return analyzeSourceProgress(opts, src, popts, aopts, nil)
}

// analyzeSourceProgress is analyzeSource with a progress bar from bars for
// a file of at least bars.MinBytes, counting the bytes of the tensors the
// analysis reads. A nil bars draws nothing.
func analyzeSourceProgress(opts *analyzeOptions, src string, popts convbn.Options, aopts analysis.Options, bars *progress.Set) (*analysis.FileReport, error) {
	var (
		f       *checkpoint.File
		counter *progress.ReaderAt
		closeF  func() error
		err     error
	)
	if opts.Example != "" {
		f, err = examples.Open(src)
		if f != nil {
			closeF = f.Close
		}
	} else {
		f, counter, closeF, err = openCounted(src, bars)
	}
	if err != nil {
		return nil, err
	}
	defer closeF()

	if err := selectModel(f, opts.Key); err != nil {
		return nil, err
	}
	results := make([]convbn.Result, len(f.Models))
	for i, m := range f.Models {
		r, err := convbn.FindPairs(m, f.Metadata, popts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		results[i] = *r
	}

	var bar *progress.Bar
	if counter != nil {
		bar = bars.Add(filepath.Base(src), analysisBytes(results, aopts.WeightNorms))
		counter.Attach(bar)
	}
	fr, err := analysis.AnalyzeFile(f, results, aopts)
	if err != nil {
		bar.Abort()
		return nil, err
	}
	bar.Done()
	return fr, nil
}

// openCounted opens the checkpoint at path and returns it with the
// function that closes it. When bars wants a bar for a file of its size,
// the file is read through a progress.ReaderAt, which is returned so that a
// bar can be attached once the bytes to read are known; otherwise the
// ReaderAt is nil.
func openCounted(path string, bars *progress.Set) (*checkpoint.File, *progress.ReaderAt, func() error, error) {
	info, err := os.Stat(path)
	if err != nil || !info.Mode().IsRegular() || !bars.Wants(info.Size()) {
		f, err := checkpoint.Open(path)
		if err != nil {
			return nil, nil, nil, err
		}
		return f, nil, f.Close, nil
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	counter := progress.NewReaderAt(fh)
	f, err := checkpoint.OpenReaderAt(path, counter, info.Size())
	if err != nil {
		fh.Close()
		return nil, nil, nil, err
	}
	return f, counter, fh.Close, nil
}

// analysisBytes returns how many tensor bytes analyzing the pairs of
// results reads: the BatchNorm vectors and conv biases, and the conv
// weights too when weights is true.
func analysisBytes(results []convbn.Result, weights bool) int64 {
	var n int64
	add := func(t *checkpoint.Tensor) {
		if t != nil {
			n += t.ByteSize()
		}
	}
	for i := range results {
		for j := range results[i].Pairs {
			p := &results[i].Pairs[j]
			add(p.BN.Weight)
			add(p.BN.Bias)
			add(p.BN.RunningMean)
			add(p.BN.RunningVar)
			add(p.Conv.Bias)
			if weights {
				add(p.Conv.Weight)
			}
		}
	}
	return n
}
