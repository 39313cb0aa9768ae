package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/convbn-diag/convbn-diag/analysis"
	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/internal/atomicfile"
	"github.com/convbn-diag/convbn-diag/internal/progress"
)

// torchWritable lists the dtypes the .pt writer stores.
var torchWritable = map[checkpoint.DType]bool{
	checkpoint.Float32: true, checkpoint.Float64: true, checkpoint.Float16: true,
	checkpoint.BFloat16: true, checkpoint.Int64: true,
}

func fuseRun(opts *fuseOptions) error {
	popts, _ := opts.pairOptions()
	fail := func(err error) error { return &exitError{code: exitFailure, err: err} }

	bars := newProgress(opts.IO, opts.Quiet, opts.progressMinBytes)
	f, counter, closeF, err := openCounted(opts.Input, bars)
	if err != nil {
		return fail(err)
	}
	defer closeF()
	if err := selectModel(f, opts.Key); err != nil {
		return fail(err)
	}
	if len(f.Models) > 1 {
		var keys []string
		for _, m := range f.Models {
			keys = append(keys, m.Key)
		}
		return fail(fmt.Errorf("%s: the file holds %d models (%s); choose the one to fuse with --key", f.Path, len(f.Models), strings.Join(keys, ", ")))
	}
	if n := len(f.Unread); n > 0 {
		shown := f.Unread[:min(n, 5)]
		more := ""
		if n > len(shown) {
			more = fmt.Sprintf(" and %d more", n-len(shown))
		}
		return fail(fmt.Errorf("%s: %d tensors cannot be read by convbn-diag (%s%s: quantized or float8 data), so the fused state dict would silently lack them; fuse writes no incomplete model", f.Path, n, strings.Join(shown, ", "), more))
	}
	m := f.Models[0]
	found, err := convbn.FindPairs(m, f.Metadata, popts)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", f.Path, err))
	}

	plan, err := planFuse(opts, f, m, found)
	if err != nil {
		return fail(err)
	}
	for _, s := range plan.report.Skipped {
		fmt.Fprintf(opts.IO.ErrOut, "convbn-diag: warning: %s: pair %s→%s left unfused: %s\n", f.Path, s.Conv, s.BN, s.Reason)
	}

	var bar *progress.Bar
	if counter != nil {
		var total int64
		for _, t := range m.Tensors {
			total += t.ByteSize()
		}
		bar = bars.Add(filepath.Base(opts.Input), total)
		counter.Attach(bar)
	}
	err = writeFused(opts, plan)
	if err != nil {
		bar.Abort()
	} else {
		bar.Done()
	}
	bars.Wait()
	if err != nil {
		return fail(err)
	}

	if err := atomicfile.Write(opts.mapPath(), func(w io.Writer) error { return writeFuseMap(w, plan.report) }); err != nil {
		// The checkpoint without its map would be a partial result.
		if rmErr := os.Remove(opts.Output); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove %s: %w", opts.Output, rmErr))
		}
		return fail(fmt.Errorf("write map %s: %w", opts.mapPath(), err))
	}
	if err := writeFuseReport(opts.IO.Out, opts.Format, plan.report); err != nil {
		return fail(err)
	}
	return nil
}

// fusePlan is the output state dict as a list of tensor sources, with the
// report that writing them fills in.
type fusePlan struct {
	sources []checkpoint.TensorSource
	report  *fuseReport
}

// planFuse folds every finite pair and lists the output tensors in file
// order: a folded conv's weight and bias replaced (the bias inserted after
// the weight when the conv had none), its BatchNorm's entries dropped and
// every other tensor copied as stored.
func planFuse(opts *fuseOptions, f *checkpoint.File, m *checkpoint.Model, found *convbn.Result) (*fusePlan, error) {
	prefix := m.StrippedPrefix
	r := &fuseReport{
		Input:          f.Path,
		InputFormat:    string(f.Format),
		Output:         opts.Output,
		OutputFormat:   outputKind(opts.Output),
		Map:            opts.mapPath(),
		ModelKey:       m.Key,
		Prefix:         prefix,
		PickledModule:  m.Root != nil,
		RequestedDType: opts.DType,
		Unpaired:       found.Unpaired,
		Notes:          found.Notes,
	}

	weightOf := map[*checkpoint.Tensor]*fuseLayer{}
	biasOf := map[*checkpoint.Tensor]*fuseLayer{}
	dropped := map[*checkpoint.Tensor]bool{}
	folds := map[*fuseLayer]*analysis.Fold{}
	for i := range found.Pairs {
		p := &found.Pairs[i]
		l, fold, skip := foldLayer(opts, f.Path, prefix, p)
		if skip != nil {
			r.Skipped = append(r.Skipped, *skip)
			continue
		}
		r.Layers = append(r.Layers, l)
		folds[l] = fold
		weightOf[p.Conv.Weight] = l
		if p.Conv.Bias != nil {
			biasOf[p.Conv.Bias] = l
		}
		for _, t := range []*checkpoint.Tensor{p.BN.Weight, p.BN.Bias, p.BN.RunningMean, p.BN.RunningVar, p.BN.NumBatchesTracked} {
			if t != nil {
				dropped[t] = true
				l.RemovedKeys = append(l.RemovedKeys, prefix+t.Name)
			}
		}
	}

	kind := outputKind(opts.Output)
	plan := &fusePlan{report: r}
	for _, t := range m.Tensors {
		switch {
		case dropped[t]:
			continue
		case weightOf[t] != nil:
			l := weightOf[t]
			plan.sources = append(plan.sources, fusedWeightSource(f.Path, l, folds[l]))
			if l.BiasAdded {
				plan.sources = append(plan.sources, fusedBiasSource(l, folds[l]))
			}
		case biasOf[t] != nil:
			l := biasOf[t]
			plan.sources = append(plan.sources, fusedBiasSource(l, folds[l]))
		default:
			if kind == "pt" && !torchWritable[t.DType] {
				return nil, fmt.Errorf("%s: tensor %s has dtype %s, which a .pt output cannot store; write .safetensors instead", f.Path, prefix+t.Name, t.DType)
			}
			plan.sources = append(plan.sources, copySource(prefix+t.Name, t))
		}
	}
	r.Tensors = len(plan.sources)
	for _, l := range r.Layers {
		r.RemovedTensors += len(l.RemovedKeys)
	}
	return plan, nil
}

// foldLayer computes the fold of one pair and its report entry, or says
// why the pair is left unfused.
func foldLayer(opts *fuseOptions, file, prefix string, p *convbn.Pair) (*fuseLayer, *analysis.Fold, *fuseSkip) {
	skip := func(reason string) (*fuseLayer, *analysis.Fold, *fuseSkip) {
		return nil, nil, &fuseSkip{Conv: p.Conv.Name, BN: p.BN.Name, Reason: reason}
	}
	w := p.Conv.Weight
	if w == nil || !w.DType.IsFloat() {
		return skip("the conv weight is missing or not a floating-point tensor")
	}
	if p.Conv.Bias != nil && !p.Conv.Bias.DType.IsFloat() {
		return skip("the conv bias is not a floating-point tensor")
	}
	fold, err := analysis.NewFold(file, p)
	if err != nil {
		return skip(err.Error())
	}
	if bad := fold.NonFinite(); len(bad) > 0 {
		return skip(fmt.Sprintf("ω or b' is not finite in %d channel(s), first %d (flags %v)", len(bad), bad[0], fold.Layer.Channels[bad[0]].Flags))
	}

	out := w.DType
	if opts.DType != "" {
		out = fuseDTypes[opts.DType]
	}
	biasOut := out
	if p.Conv.Bias != nil && opts.DType == "" {
		biasOut = p.Conv.Bias.DType
	}
	l := &fuseLayer{
		foldEntry: foldEntry{
			Conv:       p.Conv.Name,
			BN:         p.BN.Name,
			Channels:   len(fold.Omega),
			Groups:     fold.Groups,
			Transposed: p.Conv.Transposed,
			Eps:        p.BN.Eps,
			EpsSource:  p.BN.EpsSource,
			Evidence:   p.Evidence,
			WeightKey:  prefix + w.Name,
			BiasAdded:  p.Conv.Bias == nil,
		},
		SourceDType: w.DType.String(),
		OutputDType: out.String(),
		BiasDType:   biasOut.String(),
		outDType:    out,
		biasDType:   biasOut,
	}
	if p.Conv.Bias != nil {
		l.BiasKey = prefix + p.Conv.Bias.Name
	} else {
		l.BiasKey = prefix + p.Conv.Name + ".bias"
	}
	l.precision = newPrecision(out)
	return l, fold, nil
}

// fusedWeightSource streams W' chunk by chunk in the layer's output dtype
// and records its rounding errors on the way.
func fusedWeightSource(file string, l *fuseLayer, fold *analysis.Fold) checkpoint.TensorSource {
	w := fold.Pair.Conv.Weight
	return checkpoint.TensorSource{
		Name:  l.WeightKey,
		DType: l.outDType,
		Shape: append([]int(nil), w.Shape...),
		WriteData: func(out io.Writer) error {
			var buf []byte
			rowLen := fold.RowLen()
			err := fold.FusedWeightChunks(file, 0, func(lo, hi int, fused []float64) error {
				for i := lo; i < hi; i++ {
					row := fused[(i-lo)*rowLen : (i-lo+1)*rowLen]
					for k, x := range row {
						l.precision.addWeight(fold.ChannelOf(i, k), x)
					}
				}
				var err error
				if buf, err = checkpoint.AppendElements(buf[:0], l.outDType, fused); err != nil {
					return fmt.Errorf("encode fused weight: %w", err)
				}
				_, err = out.Write(buf)
				return err
			})
			l.finish()
			return err
		},
	}
}

// fusedBiasSource writes b' in the layer's bias dtype.
func fusedBiasSource(l *fuseLayer, fold *analysis.Fold) checkpoint.TensorSource {
	return checkpoint.TensorSource{
		Name:  l.BiasKey,
		DType: l.biasDType,
		Shape: []int{len(fold.FusedBias)},
		WriteData: func(out io.Writer) error {
			for c, b := range fold.FusedBias {
				l.precision.addBias(c, b)
			}
			buf, err := checkpoint.AppendElements(nil, l.biasDType, fold.FusedBias)
			if err != nil {
				return fmt.Errorf("encode fused bias: %w", err)
			}
			_, err = out.Write(buf)
			return err
		},
	}
}

// copySource copies t's stored bytes unchanged under name.
func copySource(name string, t *checkpoint.Tensor) checkpoint.TensorSource {
	return checkpoint.TensorSource{
		Name:  name,
		DType: t.DType,
		Shape: append([]int(nil), t.Shape...),
		WriteData: func(w io.Writer) error {
			_, err := t.WriteElementsTo(w, 0)
			return err
		},
	}
}

// writeFused writes the plan's tensors to the output, atomically, in the
// format its extension names.
func writeFused(opts *fuseOptions, plan *fusePlan) error {
	var err error
	if outputKind(opts.Output) == "safetensors" {
		err = checkpoint.WriteSafetensorsFile(opts.Output, plan.sources, nil)
	} else {
		err = checkpoint.WriteTorchFile(opts.Output, plan.sources, nil)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", opts.Input, err)
	}
	return nil
}

// sortedChannels returns the keys of set in increasing order.
func sortedChannels(set map[int]bool) []int {
	out := make([]int, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Ints(out)
	return out
}
