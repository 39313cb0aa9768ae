package main

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
)

// fuseOptions are the settings of one fuse run: flag values and the
// injected streams.
type fuseOptions struct {
	IO *streams

	Input  string
	Output string // the fused checkpoint, .pt, .pth or .safetensors
	Map    string // the JSON map of the fold, "" for beside Output
	Format string // report format on standard output: table or json
	DType  string // dtype of the fused weights and biases, "" to keep the conv's

	Eps    float64
	EpsSet bool
	Key    string
	Pairs  []string
	NoPair []string

	Quiet bool
	// progressMinBytes, when positive, replaces the file size from which a
	// progress bar is drawn; tests lower it.
	progressMinBytes int64
}

// fuseDTypes are the dtypes --dtype accepts.
var fuseDTypes = map[string]checkpoint.DType{
	"float64":  checkpoint.Float64,
	"float32":  checkpoint.Float32,
	"float16":  checkpoint.Float16,
	"bfloat16": checkpoint.BFloat16,
}

func newCmdFuse(s *streams, runF func(*fuseOptions) error) *cobra.Command {
	opts := &fuseOptions{IO: s}
	cmd := &cobra.Command{
		Use:   "fuse [flags] CHECKPOINT -o FUSED",
		Short: "Fold every BatchNorm into its conv and write the Deploy-mode state dict",
		Long: `Fold every Conv→BatchNorm pair of a checkpoint into its conv and write the
state dict of the Deploy-mode model: each paired conv's weight becomes
W' = ω·W with ω = γ/√(σ²+ε) per output channel (along dimension 1 for a
transposed conv), its bias becomes b' = β + ω(b − μ) (added when the conv
had none), and the BatchNorm's weight, bias, running_mean, running_var and
num_batches_tracked are removed. Every other tensor is copied unchanged,
with its name, dtype and bytes. Names are written as they appear in the
file, with any DataParallel "module." prefix kept.

The output format follows the -o extension: .pt or .pth for a PyTorch zip
checkpoint that torch.load(..., weights_only=True) reads, .safetensors for
safetensors. A whole pickled nn.Module is written as its state dict. A JSON
map of what was folded (each pair's conv, BatchNorm, ε and its source, the
pairing evidence and the output keys) goes beside the output, FUSED with
the extension .json, or to --map.

The fold is computed in float64 and written in the conv weight's dtype, or
in --dtype. The report on standard output gives, per layer, the relative
error ‖round(W') − W'‖/‖W'‖ of float32 W' against the float64 fold, and for
a float16 or bfloat16 output that dtype's error and the channels whose W'
or b' overflows (rounds to ±Inf) or underflows (a nonzero value that
rounds to 0 or to a subnormal number).

A file holding tensors convbn-diag cannot decode (quantized or float8
data) is refused, since the output would lack them.

A pair whose ω or b' is not finite (σ²+ε ≤ 0, say) is left unfused, with
a warning; its conv and BatchNorm entries are copied unchanged.

Exit status: 0 on success; 1 when the checkpoint cannot be read or the
output cannot be written (no output file is left behind); 2 for invalid
flags or arguments.`,
		Example: `  # Fold a checkpoint's BatchNorms and write safetensors:
  convbn-diag fuse resnet20.th -o resnet20-fused.safetensors

  # A PyTorch checkpoint in float16, with the half-precision report as JSON:
  convbn-diag fuse model.pt -o model-fused.pt --dtype float16 -f json

  # The EMA weights of a training checkpoint, with the map in another place:
  convbn-diag fuse --key ema last.pt -o ema-fused.pt --map maps/ema.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Input = args[0]
			opts.EpsSet = cmd.Flags().Changed("eps")
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return fuseRun(opts)
		},
	}

	f := cmd.Flags()
	f.StringVarP(&opts.Output, "output", "o", "", "write the fused state dict to `FILE` (.pt, .pth or .safetensors; required)")
	f.StringVar(&opts.Map, "map", "", "write the JSON map of the fold to `FILE` (default: the output with the extension .json)")
	f.StringVarP(&opts.Format, "format", "f", "table", "report format on standard output: table or json")
	f.StringVar(&opts.DType, "dtype", "", "write fused weights and biases as `DTYPE` (float32, float16, bfloat16 or float64) instead of the conv weight's dtype")
	f.Float64Var(&opts.Eps, "eps", convbn.DefaultEps, "BatchNorm ε for layers whose file does not store one; a stored ε always wins")
	f.StringVar(&opts.Key, "key", "", "fuse the model at this `KEY` of a file holding several (for example ema)")
	f.StringArrayVar(&opts.Pairs, "pair", nil, "force a pair `CONV=BN` by module names (repeatable)")
	f.StringArrayVar(&opts.NoPair, "no-pair", nil, "keep the conv or BatchNorm module `NAME` unpaired and unfused (repeatable)")
	f.BoolVarP(&opts.Quiet, "quiet", "q", false, "draw no progress bar (bars appear only on a terminal, for files of 50 MB or more)")
	return cmd
}

// outputKind returns "pt" or "safetensors" for the output's extension, or
// "" when the extension names neither.
func outputKind(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".pt", ".pth":
		return "pt"
	case ".safetensors":
		return "safetensors"
	}
	return ""
}

// mapPath returns the --map file, or the output with the extension .json.
func (o *fuseOptions) mapPath() string {
	if o.Map != "" {
		return o.Map
	}
	return strings.TrimSuffix(o.Output, filepath.Ext(o.Output)) + ".json"
}

// validate checks the flag values and arguments that need no reading of
// the checkpoint.
func (o *fuseOptions) validate() error {
	if o.Output == "" || o.Output == "-" {
		return usageErrorf("fuse needs -o FILE for the fused checkpoint (.pt, .pth or .safetensors)")
	}
	if outputKind(o.Output) == "" {
		return usageErrorf("-o %s: unknown extension %q: use .pt, .pth or .safetensors", o.Output, filepath.Ext(o.Output))
	}
	if o.Format != "table" && o.Format != "json" {
		return usageErrorf("--format: invalid value %q: use table or json", o.Format)
	}
	if _, ok := fuseDTypes[o.DType]; o.DType != "" && !ok {
		return usageErrorf("--dtype: invalid value %q: use float32, float16, bfloat16 or float64", o.DType)
	}
	if o.EpsSet && !(o.Eps > 0) {
		return usageErrorf("--eps: invalid value %g: ε must be positive", o.Eps)
	}
	if _, err := o.pairOptions(); err != nil {
		return usageErrorf("%v", err)
	}

	outputs := []struct{ flag, path string }{{"-o", o.Output}, {"--map", o.mapPath()}}
	for _, out := range outputs {
		if info, err := os.Stat(out.path); err == nil && info.IsDir() {
			return usageErrorf("%s %s is a directory; give a file name", out.flag, out.path)
		}
		if samePath(out.path, o.Input) {
			return usageErrorf("%s %s would overwrite the checkpoint being fused; choose another output file", out.flag, out.path)
		}
	}
	if samePath(o.Output, o.mapPath()) {
		return usageErrorf("--map %s is the fused checkpoint's own path; choose another file", o.mapPath())
	}
	return nil
}

// samePath reports whether a and b name the same file: the same existing
// file, or the same cleaned absolute path.
func samePath(a, b string) bool {
	ia, errA := os.Stat(a)
	ib, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(ia, ib)
	}
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	return errA == nil && errB == nil && absA == absB
}

// pairOptions turns the pairing flags into pair-discovery options, with
// the same rules as analyze.
func (o *fuseOptions) pairOptions() (convbn.Options, error) {
	a := &analyzeOptions{Eps: o.Eps, EpsSet: o.EpsSet, Pairs: o.Pairs, NoPair: o.NoPair}
	return a.pairOptions()
}
