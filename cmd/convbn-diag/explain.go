package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/convbn-diag/convbn-diag/analysis"
	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/examples"
	"github.com/convbn-diag/convbn-diag/reports"
)

// explainOptions are the settings of one explain run. The analysis flags
// shared with analyze live in Analyze.
type explainOptions struct {
	Analyze analyzeOptions

	Layer    string
	Channels []int

	Input   string // "HxW", "" for no memory estimate
	Batch   int
	DType   string
	Stride  string // "S" or "SH,SW", "" when not given
	Padding string
}

func newCmdExplain(s *streams, runF func(*explainOptions) error) *cobra.Command {
	opts := &explainOptions{Analyze: analyzeOptions{IO: s, Format: string(reports.FormatTable), Width: reports.DefaultWidth, PlotFormat: "png"}}
	a := &opts.Analyze
	cmd := &cobra.Command{
		Use:   "explain [flags] CHECKPOINT LAYER",
		Short: "Derive one layer's ω, distortion and risk with its own numbers",
		Long: `Walk through the theory for one Conv→BatchNorm layer with the layer's own
numbers substituted: ω = γ/√(σ²+ε) with ε and where it came from, the
fused weight's norm ‖W'_c‖ = |ω|·‖W_c‖ and bias b', what one SGD step and
one Adam step do in Deploy mode against Eval or Tune mode (D_SGD = 1/ω²,
D_Adam ≈ 1/|ω|, and the γ-update term of the Eval step), and the layer's
risk verdict.

LAYER is the conv's or the BatchNorm's module path, as analyze lists it.
Without --channel the explanation covers the channels with the largest
and the smallest distortion and every flagged channel.

With --input HxW it adds the bytes each mode saves for the backward pass
(Eval keeps the conv input X and output Y, Tune X and the fused weight,
Deploy only X). The conv geometry comes from the checkpoint when it
stores it, else from --stride and --padding, else stride 1 with same
padding is assumed and the output says so.`,
		Example: `  # The riskiest layer of the built-in example:
  convbn-diag explain --example features.6

  # Channel 3 of a layer, named by its BatchNorm, with memory for 224x224 inputs:
  convbn-diag explain --channel 3 --input 224x224 --batch 32 resnet20.th layer1.0.bn1`,
		Args: func(cmd *cobra.Command, args []string) error {
			want := 2
			if a.Example != "" {
				want = 1
			}
			if len(args) != want {
				if want == 1 {
					return usageErrorf("explain --example takes one argument, LAYER; got %d", len(args))
				}
				return usageErrorf("explain takes two arguments, CHECKPOINT and LAYER; got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Layer = args[len(args)-1]
			a.Files = args[:len(args)-1]
			a.EpsSet = cmd.Flags().Changed("eps")
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return explainRun(opts)
		},
	}

	f := cmd.Flags()
	f.IntSliceVar(&opts.Channels, "channel", nil, "explain only output channel `C` (repeatable, or a comma-separated list)")
	f.StringVar(&opts.Input, "input", "", "add the memory each mode saves for an input of `HxW` pixels")
	f.IntVar(&opts.Batch, "batch", 1, "batch size `N` for --input")
	f.StringVar(&opts.DType, "dtype", "float32", "element type for --input: float32, float16, bfloat16 or float64")
	f.StringVar(&opts.Stride, "stride", "", "conv stride `S` or `SH,SW` for --input when the checkpoint does not store it")
	f.StringVar(&opts.Padding, "padding", "", "conv padding `P` or `PH,PW` for --input when the checkpoint does not store it")
	addAnalysisFlags(cmd, a)
	return cmd
}

func (o *explainOptions) validate() error {
	if err := o.Analyze.validate(); err != nil {
		return err
	}
	for _, c := range o.Channels {
		if c < 0 {
			return usageErrorf("--channel: invalid channel %d: channels count from 0", c)
		}
	}
	if o.Input == "" {
		for _, name := range []string{"stride", "padding"} {
			if (name == "stride" && o.Stride != "") || (name == "padding" && o.Padding != "") {
				return usageErrorf("--%s needs --input HxW", name)
			}
		}
		return nil
	}
	if _, err := o.memoryInput(); err != nil {
		return usageErrorf("%v", err)
	}
	return nil
}

// memoryInput turns --input, --batch, --dtype, --stride and --padding into
// a memory request.
func (o *explainOptions) memoryInput() (*reports.MemoryInput, error) {
	h, w, ok := strings.Cut(strings.ToLower(o.Input), "x")
	height, err1 := strconv.Atoi(h)
	width, err2 := strconv.Atoi(w)
	if !ok || err1 != nil || err2 != nil || height < 1 || width < 1 {
		return nil, fmt.Errorf("--input: invalid size %q: use HxW in pixels, for example 224x224", o.Input)
	}
	if o.Batch < 1 {
		return nil, fmt.Errorf("--batch: invalid value %d: use at least 1", o.Batch)
	}
	if _, err := reports.DTypeSize(o.DType); err != nil {
		return nil, fmt.Errorf("--dtype: %v", err)
	}
	in := &reports.MemoryInput{Batch: o.Batch, Height: height, Width: width, DType: o.DType}
	if in.Stride, err1 = parseGeometry("--stride", o.Stride, 1); err1 != nil {
		return nil, err1
	}
	if in.Padding, err1 = parseGeometry("--padding", o.Padding, 0); err1 != nil {
		return nil, err1
	}
	return in, nil
}

// parseGeometry parses "S" or "SH,SW" with every value at least min; ""
// gives nil.
func parseGeometry(flag, s string, min int) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return nil, fmt.Errorf("%s: invalid value %q: give one number or two, as H,W", flag, s)
	}
	v := make([]int, len(parts))
	for i, p := range parts {
		x, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || x < min {
			return nil, fmt.Errorf("%s: invalid value %q: use whole numbers of at least %d", flag, s, min)
		}
		v[i] = x
	}
	return v, nil
}

func explainRun(opts *explainOptions) error {
	a := &opts.Analyze
	aopts, _ := a.analysisOptions()
	popts, _ := a.pairOptions()

	var (
		f   *checkpoint.File
		err error
	)
	if a.Example != "" {
		f, err = examples.Open(a.Example)
	} else {
		f, err = checkpoint.Open(a.Files[0])
	}
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	defer f.Close()
	if err := selectModel(f, a.Key); err != nil {
		return &exitError{code: exitFailure, err: err}
	}

	layer, err := findExplainLayer(f, opts.Layer, popts, aopts)
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	eopts := reports.ExplainOptions{Analysis: aopts, Channels: opts.Channels}
	if opts.Input != "" {
		eopts.Memory, _ = opts.memoryInput()
	}
	if err := reports.WriteExplanation(a.IO.Out, f.Path, layer, eopts); err != nil {
		return &exitError{code: exitFailure, err: fmt.Errorf("%s: %w", f.Path, err)}
	}
	return nil
}

// findExplainLayer finds the layer named name in f's models and analyzes
// it again with its weight norms. A name found in several models needs
// --key.
func findExplainLayer(f *checkpoint.File, name string, popts convbn.Options, aopts analysis.Options) (*analysis.Layer, error) {
	type hit struct {
		model string
		pair  convbn.Pair
	}
	var (
		hits      []hit
		allLayers []*analysis.Layer
		lastErr   error
	)
	for _, m := range f.Models {
		r, err := convbn.FindPairs(m, f.Metadata, popts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		mr, err := analysis.AnalyzeModel(f.Path, m, r, aopts)
		if err != nil {
			return nil, err
		}
		allLayers = append(allLayers, mr.Layers...)
		i, err := reports.FindLayer(mr.Layers, name)
		if err != nil {
			lastErr = err
			continue
		}
		hits = append(hits, hit{model: m.Key, pair: r.Pairs[i]})
	}
	switch len(hits) {
	case 0:
		if len(f.Models) > 1 {
			_, lastErr = reports.FindLayer(allLayers, name)
		}
		return nil, fmt.Errorf("%s: %w", f.Path, lastErr)
	case 1:
	default:
		keys := make([]string, len(hits))
		for i, h := range hits {
			keys[i] = h.model
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("%s: layer %s is in the models %s; choose one with --key", f.Path, name, strings.Join(keys, ", "))
	}

	withNorms := aopts
	withNorms.WeightNorms = true
	return analysis.AnalyzePair(f.Path, &hits[0].pair, withNorms)
}
