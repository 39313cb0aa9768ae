package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
)

// fuseReport describes one fuse run: what was folded, what was left, and
// the rounding of the fused weights. Its JSON form is the --format json
// report; writeFuseMap writes the same fields without the precision.
type fuseReport struct {
	Input        string `json:"input"`
	InputFormat  string `json:"input_format"`
	Output       string `json:"output"`
	OutputFormat string `json:"output_format"` // "pt" or "safetensors"
	Map          string `json:"map"`
	ModelKey     string `json:"model_key"`
	// Prefix is the DataParallel prefix that every output name keeps, as
	// in the input file.
	Prefix string `json:"prefix"`
	// PickledModule is true when the input held a whole module (a
	// pickled nn.Module or TorchScript), of which only the state dict is
	// written.
	PickledModule  bool   `json:"pickled_module"`
	RequestedDType string `json:"requested_dtype,omitempty"`

	Tensors        int `json:"output_tensors"`
	RemovedTensors int `json:"removed_tensors"`

	Layers   []*fuseLayer      `json:"layers"`
	Skipped  []fuseSkip        `json:"skipped"`
	Unpaired []convbn.Unpaired `json:"unpaired"`
	Notes    []string          `json:"notes"`
}

// foldEntry is one folded pair as the JSON map records it.
type foldEntry struct {
	Conv       string          `json:"conv"`
	BN         string          `json:"bn"`
	Channels   int             `json:"channels"`
	Groups     int             `json:"groups"`
	Transposed bool            `json:"transposed"`
	Eps        float64         `json:"eps"`
	EpsSource  convbn.Source   `json:"eps_source"`
	Evidence   convbn.Evidence `json:"evidence"`
	// WeightKey and BiasKey are the output names of W' and b'.
	WeightKey string `json:"weight_key"`
	BiasKey   string `json:"bias_key"`
	// BiasAdded is true when the conv had no bias and b' is a new entry.
	BiasAdded   bool     `json:"bias_added"`
	RemovedKeys []string `json:"removed_keys"`
}

// fuseLayer is one folded pair with the rounding of its fused weight.
type fuseLayer struct {
	foldEntry
	SourceDType string `json:"source_dtype"`
	OutputDType string `json:"output_dtype"`
	BiasDType   string `json:"bias_dtype"`

	// Float32RelErr is ‖fl32(W') − W'‖₂/‖W'‖₂, the relative error of W'
	// rounded to float32 against the float64 fold; null when ‖W'‖ = 0 or
	// W' does not fit float32.
	Float32RelErr *float64 `json:"float32_rel_err"`
	// Half is the half-precision check, present when the output dtype is
	// float16 or bfloat16.
	Half *halfCheck `json:"half,omitempty"`

	outDType, biasDType checkpoint.DType
	precision           *precision
}

// halfCheck is the rounding of W' and b' to a half-precision dtype.
type halfCheck struct {
	DType string `json:"dtype"`
	// RelErr is ‖round(W') − W'‖₂/‖W'‖₂ in DType; null when not finite.
	RelErr *float64 `json:"rel_err"`
	// Overflow lists the channels with an element of W' or b' that rounds
	// to ±Inf; Underflow those with a nonzero element that rounds to 0 or
	// to a subnormal number.
	Overflow  []int `json:"overflow_channels"`
	Underflow []int `json:"underflow_channels"`
}

// fuseSkip is a pair left unfused, with the reason.
type fuseSkip struct {
	Conv   string `json:"conv"`
	BN     string `json:"bn"`
	Reason string `json:"reason"`
}

// precision accumulates the rounding errors of one layer's W' and b'.
type precision struct {
	// Sums of squares of W' and of its float32 rounding error.
	ref, diff32 float64

	half      checkpoint.DType // checkpoint.Invalid when no half check
	diffHalf  float64
	overflow  map[int]bool
	underflow map[int]bool
}

// newPrecision returns the accumulators for a layer written as out.
func newPrecision(out checkpoint.DType) *precision {
	p := &precision{}
	if out == checkpoint.Float16 || out == checkpoint.BFloat16 {
		p.half = out
		p.overflow = map[int]bool{}
		p.underflow = map[int]bool{}
	}
	return p
}

// roundHalf rounds x to d (float16 or bfloat16) the way the writer stores
// it, through float32, and returns the stored value.
func roundHalf(d checkpoint.DType, x float64) float64 {
	if d == checkpoint.Float16 {
		return checkpoint.Float16ToFloat64(checkpoint.Float32ToFloat16(float32(x)))
	}
	return float64(math.Float32frombits(uint32(checkpoint.Float32ToBFloat16(float32(x))) << 16))
}

// minNormal returns the smallest positive normal number of a half dtype.
func minNormal(d checkpoint.DType) float64 {
	if d == checkpoint.Float16 {
		return 0x1p-14
	}
	return 0x1p-126
}

func (p *precision) addWeight(c int, x float64) {
	d := float64(float32(x)) - x
	p.ref += x * x
	p.diff32 += d * d
	if p.half != checkpoint.Invalid {
		r := p.checkHalf(c, x)
		p.diffHalf += (r - x) * (r - x)
	}
}

func (p *precision) addBias(c int, x float64) {
	if p.half != checkpoint.Invalid {
		p.checkHalf(c, x)
	}
}

// checkHalf records whether x overflows or underflows in the half dtype
// and returns its rounded value.
func (p *precision) checkHalf(c int, x float64) float64 {
	r := roundHalf(p.half, x)
	switch {
	case math.IsInf(r, 0) && !math.IsInf(x, 0):
		p.overflow[c] = true
	case x != 0 && math.Abs(r) < minNormal(p.half):
		p.underflow[c] = true
	}
	return r
}

// finish turns the accumulated sums into the layer's report fields.
func (l *fuseLayer) finish() {
	p := l.precision
	l.Float32RelErr = finiteOrNil(math.Sqrt(p.diff32) / math.Sqrt(p.ref))
	if p.half != checkpoint.Invalid {
		l.Half = &halfCheck{
			DType:     p.half.String(),
			RelErr:    finiteOrNil(math.Sqrt(p.diffHalf) / math.Sqrt(p.ref)),
			Overflow:  sortedChannels(p.overflow),
			Underflow: sortedChannels(p.underflow),
		}
	}
}

func finiteOrNil(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

// writeFuseMap writes the JSON map of the fold: the report without the
// precision fields.
func writeFuseMap(w io.Writer, r *fuseReport) error {
	type mapDoc struct {
		*fuseReport
		Layers []foldEntry `json:"layers"`
	}
	doc := mapDoc{fuseReport: r, Layers: make([]foldEntry, len(r.Layers))}
	for i, l := range r.Layers {
		doc.Layers[i] = l.foldEntry
	}
	return encodeJSON(w, doc)
}

func encodeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeFuseReport writes the per-layer fusion report as a table or JSON.
func writeFuseReport(w io.Writer, format string, r *fuseReport) error {
	if format == "json" {
		return encodeJSON(w, r)
	}
	var b strings.Builder
	kind := "state dict"
	if r.PickledModule {
		kind = "state dict of the whole module"
	}
	fmt.Fprintf(&b, "%s (%s) → %s (%s, %d tensors)\n", r.Input, r.InputFormat, r.Output, kind, r.Tensors)

	half := ""
	for _, l := range r.Layers {
		if l.Half != nil {
			half = l.Half.DType
		}
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	header := "layer\tbn\tC\teps\tdtype\tf32 err\t"
	if half != "" {
		header += half + " err\toverflow\tunderflow\t"
	}
	fmt.Fprintln(tw, header)
	for _, l := range r.Layers {
		row := fmt.Sprintf("%s\t%s\t%d\t%g\t%s\t%s\t", l.Conv, l.BN, l.Channels, l.Eps, l.OutputDType, formatErr(l.Float32RelErr))
		if half != "" {
			if l.Half != nil {
				row += fmt.Sprintf("%s\t%d\t%d\t", formatErr(l.Half.RelErr), len(l.Half.Overflow), len(l.Half.Underflow))
			} else {
				row += "-\t-\t-\t"
			}
		}
		fmt.Fprintln(tw, row)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	added := 0
	for _, l := range r.Layers {
		if l.BiasAdded {
			added++
		}
	}
	fmt.Fprintf(&b, "  %d pairs folded, %d BatchNorm entries removed, %d conv biases added; map in %s.\n", len(r.Layers), r.RemovedTensors, added, r.Map)
	fmt.Fprintf(&b, "  err is ‖round(W') − W'‖/‖W'‖ against the float64 fold; overflow and underflow count channels whose W' or b' rounds to ±Inf, or from nonzero to 0 or a subnormal.\n")
	if r.Prefix != "" {
		fmt.Fprintf(&b, "  Names keep the file's prefix %q.\n", r.Prefix)
	}
	if r.PickledModule {
		b.WriteString("  The input holds a whole module (a pickled nn.Module or TorchScript); the output holds only its state dict.\n")
	}
	for _, l := range r.Layers {
		if l.Half == nil {
			continue
		}
		if len(l.Half.Overflow) > 0 {
			fmt.Fprintf(&b, "  %s: W' or b' overflows %s in channels %s.\n", l.Conv, l.Half.DType, channelList(l.Half.Overflow))
		}
		if len(l.Half.Underflow) > 0 {
			fmt.Fprintf(&b, "  %s: W' or b' underflows %s in channels %s.\n", l.Conv, l.Half.DType, channelList(l.Half.Underflow))
		}
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(&b, "  Not fused: %s→%s: %s.\n", s.Conv, s.BN, s.Reason)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func formatErr(x *float64) string {
	if x == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2g", *x)
}

// channelList formats up to 20 channel indices.
func channelList(cs []int) string {
	parts := make([]string, 0, min(len(cs), 20))
	for _, c := range cs[:min(len(cs), 20)] {
		parts = append(parts, fmt.Sprint(c))
	}
	s := strings.Join(parts, ", ")
	if len(cs) > 20 {
		s += fmt.Sprintf(" and %d more", len(cs)-20)
	}
	return s
}
