package reports

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/convbn-diag/convbn-diag/analysis"
	"github.com/convbn-diag/convbn-diag/convbn"
)

// ExplainOptions control WriteExplanation.
type ExplainOptions struct {
	// Analysis are the options the layer was analyzed with; Optimizer and
	// Thresholds enter the verdict.
	Analysis analysis.Options
	// Channels are the channels to derive; nil means ExtremeChannels.
	Channels []int
	// Memory adds the activation memory of Eval, Tune and Deploy mode when
	// it is not nil.
	Memory *MemoryInput
}

// ExplainNumber formats a number in explanations: six significant digits,
// or "inf", "-inf" and "nan" for numbers that are not finite.
func ExplainNumber(x float64) string {
	switch {
	case math.IsNaN(x):
		return "nan"
	case math.IsInf(x, 1):
		return "inf"
	case math.IsInf(x, -1):
		return "-inf"
	}
	return strconv.FormatFloat(x, 'g', 6, 64)
}

// ExtremeChannels returns the channels an explanation of l covers by
// default: the channel with the largest and the one with the smallest
// finite distortion of opt, then every flagged channel, in that order and
// without repeats.
func ExtremeChannels(l *analysis.Layer, opt analysis.Optimizer) []int {
	argMax, argMin := -1, -1
	for c := range l.Channels {
		d := l.Channels[c].Distortion(opt)
		if !isFiniteFloat(d) {
			continue
		}
		if argMax < 0 || d > l.Channels[argMax].Distortion(opt) {
			argMax = c
		}
		if argMin < 0 || d < l.Channels[argMin].Distortion(opt) {
			argMin = c
		}
	}
	var out []int
	seen := map[int]bool{}
	add := func(c int) {
		if c >= 0 && !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	add(argMax)
	add(argMin)
	for c := range l.Channels {
		if len(l.Channels[c].Flags) > 0 {
			add(c)
		}
	}
	return out
}

// FindLayer returns the index of the layer whose conv or BatchNorm module
// path is name. For an unknown name the error lists up to five close
// matches.
func FindLayer(layers []*analysis.Layer, name string) (int, error) {
	for i, l := range layers {
		if l.Conv == name || l.BN == name {
			return i, nil
		}
	}
	type candidate struct {
		name string
		dist int
	}
	var cands []candidate
	for _, l := range layers {
		for _, n := range []string{l.Conv, l.BN} {
			d := editDistance(name, n)
			if strings.Contains(n, name) || strings.Contains(name, n) {
				d = min(d, 1)
			}
			cands = append(cands, candidate{n, d})
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].dist < cands[j].dist })
	var close []string
	limit := max(3, len([]rune(name))/2)
	for _, c := range cands {
		if len(close) == 5 || c.dist > limit {
			break
		}
		close = append(close, c.name)
	}
	if len(close) == 0 {
		return -1, fmt.Errorf("no Conv→BatchNorm layer named %q; run analyze to list the %d layers", name, len(layers))
	}
	return -1, fmt.Errorf("no Conv→BatchNorm layer named %q; close matches: %s", name, strings.Join(close, ", "))
}

// editDistance returns the Levenshtein distance between a and b in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// WriteExplanation derives the theory of one layer with its own numbers:
// ω from γ, σ² and ε, the fused weight's scale, one SGD and one Adam step
// in Deploy against Eval/Tune mode, and the risk verdict. file names the
// checkpoint in the heading.
func WriteExplanation(w io.Writer, file string, l *analysis.Layer, opts ExplainOptions) error {
	ew := &errWriter{w: w}
	channels := opts.Channels
	if channels == nil {
		channels = ExtremeChannels(l, opts.Analysis.Optimizer)
	}
	for _, c := range channels {
		if c < 0 || c >= len(l.Channels) {
			return fmt.Errorf("layer %s has channels 0 to %d; channel %d does not exist", l.Conv, len(l.Channels)-1, c)
		}
	}

	// Check the memory inputs before writing anything, so that an invalid
	// --input leaves no half-written explanation behind.
	var est MemoryEstimate
	if opts.Memory != nil {
		var err error
		if est, err = EstimateMemory(l, *opts.Memory); err != nil {
			return err
		}
	}

	writeExplainHeading(ew, file, l)
	for _, c := range channels {
		ew.println("")
		writeChannelDerivation(ew, l, c, opts.Analysis)
	}
	ew.println("")
	writeVerdict(ew, l, opts.Analysis)
	if opts.Memory != nil {
		ew.println("")
		writeMemory(ew, l, est)
	}
	return ew.err
}

func writeExplainHeading(ew *errWriter, file string, l *analysis.Layer) {
	ew.println(fmt.Sprintf("Layer %s → BatchNorm %s (%s)", l.Conv, l.BN, file))
	kind := "conv"
	if l.Transposed {
		kind = "transposed conv"
	}
	bias := "no bias"
	if l.HasBias {
		bias = "with bias"
	}
	ew.println(fmt.Sprintf("  %s weight %s, groups %d, %s; %d output channels", kind, formatShape(l.WeightShape), l.Groups, bias, l.NumChannels()))
	ew.println(fmt.Sprintf("  ε = %s, %s", ExplainNumber(l.Eps), EpsSourceText(l.EpsSource)))
	if !l.Affine {
		ew.println("  The BatchNorm is not affine: γ = 1 and β = 0.")
	}
	ew.println("  Notation: s = 1/√(σ²+ε), ω = γ·s, W'_c = ω·W_c, b'_c = β + ω(b − μ); η is the learning rate.")
}

// EpsSourceText returns a phrase naming where a layer's ε came from.
func EpsSourceText(src convbn.Source) string {
	switch src {
	case convbn.SourceFile:
		return "stored in the checkpoint"
	case convbn.SourceFlag:
		return "from --eps, because the checkpoint does not store it"
	case convbn.SourceDefault:
		return "PyTorch's default, because the checkpoint does not store it (set it with --eps)"
	case convbn.SourceInferred:
		return "inferred"
	}
	return "source unknown"
}

// channelRole names why channel c is explained: the extreme it is and its
// flags.
func channelRole(l *analysis.Layer, c int, opt analysis.Optimizer) string {
	var roles []string
	if ext := ExtremeChannels(l, opt); len(ext) > 0 {
		d := distortionName(opt)
		if ext[0] == c {
			roles = append(roles, "largest "+d)
		}
		if len(ext) > 1 && ext[1] == c && ext[0] != c {
			roles = append(roles, "smallest "+d)
		}
	}
	for _, f := range l.Channels[c].Flags {
		roles = append(roles, string(f))
	}
	if len(roles) == 0 {
		return ""
	}
	return " (" + strings.Join(roles, ", ") + ")"
}

func distortionName(opt analysis.Optimizer) string {
	if opt == analysis.Adam {
		return "D_Adam"
	}
	return "D_SGD"
}

// writeChannelDerivation writes the four steps of the theory for channel c.
func writeChannelDerivation(ew *errWriter, l *analysis.Layer, c int, opts analysis.Options) {
	ch := &l.Channels[c]
	n := ExplainNumber
	ew.println(fmt.Sprintf("Channel %d%s", c, channelRole(l, c, opts.Optimizer)))
	ew.println(fmt.Sprintf("  γ = %s, β = %s, μ = %s, σ² = %s, ε = %s", n(ch.Gamma), n(ch.Beta), n(ch.RunningMean), n(ch.RunningVar), n(ch.Eps)))

	ew.println("  1. BatchNorm scale")
	ew.println(fmt.Sprintf("     s = 1/√(σ² + ε) = 1/√(%s + %s) = %s", n(ch.RunningVar), operand(ch.Eps), n(ch.InvStd)))
	ew.println(fmt.Sprintf("     ω = γ·s = %s × %s = %s", n(ch.Gamma), operand(ch.InvStd), n(ch.Omega)))
	switch {
	case ch.HasFlag(analysis.FlagNoOmega):
		ew.println("     σ² + ε ≤ 0, so s and ω do not exist: the running variance is invalid, and no step below can be computed.")
	case ch.HasFlag(analysis.FlagDead):
		ew.println("     γ = 0, so ω = 0: the channel is dead. Eval mode gives W_c no gradient, while Deploy mode trains W'_c = 0 at the full rate, so D is infinite.")
	case isFiniteFloat(ch.LogAbsGamma) && isFiniteFloat(ch.LogInvStd):
		ew.println(fmt.Sprintf("     log₁₀|ω| = log₁₀|γ| − ½·log₁₀(σ²+ε) = %s + %s = %s: %s",
			n(ch.LogAbsGamma/math.Ln10), operand(ch.LogInvStd/math.Ln10), n((ch.LogAbsGamma+ch.LogInvStd)/math.Ln10),
			omegaCause(ch)))
	}
	if ch.HasFlag(analysis.FlagTinyVariance) {
		ew.println(fmt.Sprintf("     σ² = %s is below %s·ε, so ε rather than the data sets s.", n(ch.RunningVar), n(opts.Thresholds.TinyVarianceRatio)))
	}
	if ch.HasFlag(analysis.FlagNegativeGamma) {
		ew.println("     γ < 0, so ω < 0: the fold flips the sign of W'_c, which does not change D.")
	}

	if !isFiniteFloat(ch.Omega) {
		ew.println("  Without a finite ω the fused weights and both distortions are not defined.")
		return
	}

	ew.println("  2. Fused weight and bias")
	if ch.HasWeightNorms {
		ew.println(fmt.Sprintf("     ‖W'_c‖ = |ω|·‖W_c‖ = %s × %s = %s", n(math.Abs(ch.Omega)), n(ch.WeightNorm), n(ch.FusedWeightNorm)))
	} else {
		ew.println(fmt.Sprintf("     ‖W'_c‖ = |ω|·‖W_c‖ = %s·‖W_c‖ (the weight norms were not read)", n(math.Abs(ch.Omega))))
	}
	b := "0"
	if ch.HasConvBias {
		b = n(ch.ConvBias)
	}
	ew.println(fmt.Sprintf("     b'_c = β + ω(b − μ) = %s + %s × (%s − %s) = %s", n(ch.Beta), operand(ch.Omega), b, operand(ch.RunningMean), n(ch.FusedBias)))
	if !ch.HasConvBias {
		ew.println("     (the conv has no bias, so b = 0)")
	}

	ew.println("  3. One SGD step (also SGD with momentum), G'_c = ∂L/∂W'_c, g_c = ∂L/∂b'_c")
	ew.println("     Deploy:    ΔW'_c = −η·G'_c")
	ew.println("     Eval/Tune: ΔW'_c = −η·ω²·G'_c − η·s²·(⟨W_c, G'_c⟩ + (b − μ)·g_c)·W_c")
	ew.println(fmt.Sprintf("              with ω² = %s and s² = %s", n(ch.Omega*ch.Omega), n(ch.InvStd*ch.InvStd)))
	ew.println("     The second Eval term is the γ update; it points along W_c and is absent when γ is frozen.")
	if ch.HasWeightNorms && ch.Gamma != 0 {
		ew.println(fmt.Sprintf("     Its size relative to the first term is about ‖W_c‖²/γ² = %s.", n(ch.WeightNorm*ch.WeightNorm/(ch.Gamma*ch.Gamma))))
	}
	ew.println(fmt.Sprintf("     D_SGD = 1/ω² = %s: %s", n(ch.DistortionSGD), stepComparison(ch.DistortionSGD)))

	ew.println("  4. One Adam step (Adam, AdamW), which moves each element by about η in its own coordinates")
	ew.println(fmt.Sprintf("     Eval/Tune moves W'_c by about η·|ω| = %s·η per element, Deploy by about η.", n(math.Abs(ch.Omega))))
	ew.println(fmt.Sprintf("     D_Adam ≈ 1/|ω| = %s: %s", n(ch.DistortionAdam), stepComparison(ch.DistortionAdam)))
}

// operand formats x as the second operand of a sum or product, in
// brackets when it is negative.
func operand(x float64) string {
	if x < 0 {
		return "(" + ExplainNumber(x) + ")"
	}
	return ExplainNumber(x)
}

// omegaCause returns whether γ or the variance makes |ω| far from 1.
func omegaCause(ch *analysis.Channel) string {
	g, v := ch.LogAbsGamma/math.Ln10, ch.LogInvStd/math.Ln10
	total := g + v
	if math.Abs(total) < 0.3 {
		return "|ω| is close to 1"
	}
	size := "small"
	if total > 0 {
		size = "large"
	}
	switch {
	case math.Abs(g) >= 2*math.Abs(v):
		return "the " + size + " |ω| comes mostly from γ"
	case math.Abs(v) >= 2*math.Abs(g):
		return "the " + size + " |ω| comes mostly from the running variance"
	}
	return "γ and the running variance both make |ω| " + size
}

// stepComparison returns a phrase comparing a Deploy step with an Eval
// step for distortion d.
func stepComparison(d float64) string {
	switch {
	case math.IsNaN(d):
		return "not defined for this channel"
	case math.IsInf(d, 1):
		return "Deploy trains a channel that Eval does not move at all"
	case d >= 1:
		return fmt.Sprintf("a Deploy step moves W'_c %s times as far as an Eval/Tune step", FormatCompact(d))
	}
	return fmt.Sprintf("a Deploy step moves W'_c only %s of an Eval/Tune step (%s times less)", FormatCompact(d), FormatCompact(1/d))
}

// writeVerdict writes the layer's risk with the statistics and limits
// behind it.
func writeVerdict(ew *errWriter, l *analysis.Layer, opts analysis.Options) {
	opt := opts.Optimizer
	d := distortionName(opt)
	th := opts.Thresholds
	ew.println(fmt.Sprintf("Verdict for %s: risk %s", l.Conv, l.Risk.String()))
	ew.println(fmt.Sprintf("  overshoot %s: largest finite %s = %s against the limits %s, %s, %s (low, medium, high; D at or above)",
		l.Risk.Overshoot, d, ExplainNumber(l.Stats.Max(opt)), FormatCompact(th.OvershootLow), FormatCompact(th.OvershootMedium), FormatCompact(th.OvershootHigh)))
	ew.println(fmt.Sprintf("  stall %s: median finite %s = %s against the limits %s, %s, %s (low, medium, high; D at or below)",
		l.Risk.Stall, d, ExplainNumber(l.Stats.Median(opt)), FormatCompact(th.StallLow), FormatCompact(th.StallMedium), FormatCompact(th.StallHigh)))
	for _, s := range LayerAdvice(l, opts) {
		ew.println("  " + s)
	}
}

// LayerAdvice returns plain-language sentences on what a layer's numbers
// mean for Deploy-mode training: the typical and worst channel, the
// flagged channels and, for medium or high risk, what to do.
func LayerAdvice(l *analysis.Layer, opts analysis.Options) []string {
	opt := opts.Optimizer
	s := &l.Stats
	optName := "SGD"
	if opt == analysis.Adam {
		optName = "Adam"
	}
	var out []string
	if med := s.Median(opt); isFiniteFloat(med) {
		out = append(out, fmt.Sprintf("The median |ω| is %s, so one Deploy-mode %s step moves the typical channel's fused weights %s the distance of an Eval- or Tune-mode step.",
			FormatCompact(s.MedianAbsOmega), optName, timesText(med)))
	}
	if s.ArgMaxDistortion >= 0 {
		out = append(out, fmt.Sprintf("The worst channel, %d, moves %s as far.", s.ArgMaxDistortion, timesText(s.Max(opt))))
	}
	if flags := FlaggedChannels(l); flags != "" {
		out = append(out, "Flagged channels: "+flags+".")
	}
	if l.Risk.Level.Rank() < analysis.LevelMedium.Rank() {
		return out
	}
	switch l.Risk.Side {
	case analysis.SideOvershoot, analysis.SideBoth:
		out = append(out, "Training this layer's fused weights at a learning rate tuned for Eval mode can diverge: train in Tune or Eval mode, or scale the layer's learning rate by about ω² (SGD) or |ω| (Adam).")
	case analysis.SideStall:
		out = append(out, "Deploy-mode training would barely change this layer: train in Tune or Eval mode, or raise its learning rate by about 1/D.")
	}
	return out
}

// timesText writes a factor as "389 times" or "0.0138 times".
func timesText(d float64) string {
	if math.IsInf(d, 1) {
		return "infinitely many times"
	}
	return FormatCompact(d) + " times"
}
