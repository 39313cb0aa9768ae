// Package analysis computes, for every Conv→BatchNorm pair of a model, the
// per-channel quantities of the fold and how much Deploy-mode training
// (training the fused weights W' = ω·W) distorts each channel's learning
// rate, then summarizes them per layer and per model. Everything is float64.
//
// # Per channel
//
// With γ, β, μ = running_mean, σ² = running_var, ε and the conv bias b
// (b = 0 when the conv has none; γ = 1 and β = 0 for a non-affine
// BatchNorm):
//
//	s = 1/√(σ²+ε)              inverse standard deviation (InvStd)
//	ω = γ·s                    the BatchNorm scale (Omega)
//	b' = β + ω(b − μ)          fused bias (FusedBias)
//	‖W'_c‖ = |ω|·‖W_c‖         fused weight norm (FusedWeightNorm)
//	D_SGD = 1/ω²               distortion for SGD and SGD with momentum
//	D_Adam = 1/|ω|             distortion for the Adam family
//	log|ω| = log|γ| − ½·log(σ²+ε)   (LogAbsGamma + LogInvStd)
//
// D is the ratio of a Deploy-mode step on W'_c to the Eval/Tune-mode step
// on the same coordinates: D > 1 means Deploy overshoots, D < 1 that it
// barely trains. The two log terms tell whether a small ω comes from a
// small γ or from a large variance.
//
// Output channel c of an ordinary, grouped or depthwise conv is weight
// dimension 0. A transposed conv's weight is [C_in, C_out/G, k…]; element
// [i, j, …] feeds output channel g(i)·(C_out/G) + j with g(i) = ⌊i/(C_in/G)⌋.
//
// Flags mark what a channel's numbers cannot show: dead (γ = 0, so ω = 0
// and D = ∞), negative-gamma (ω < 0, which leaves D unchanged),
// non-finite-input, negative-running-var, no-omega (σ²+ε ≤ 0),
// tiny-variance (σ² < TinyVarianceRatio·ε, default 1·ε, so ε rather than
// the data sets ω), non-finite-weight and overflow.
//
// # Per layer
//
// LayerStats gives the minimum, median, maximum and geometric mean of |ω|
// over channels with finite, nonzero ω, the median and maximum of D_SGD and
// D_Adam over channels with finite D, the counts of channels with D ≥ 10,
// D ≥ 100 and D ≤ 0.1 for the selected optimizer (Options.Optimizer), the
// number of dead channels and a count per flag. Dead channels have an
// infinite D; they are counted as dead, not in the maximum or the counts.
//
// # Risk rule
//
// D below is the selected optimizer's distortion (D_SGD by default, D_Adam
// with Options.Optimizer = Adam), over channels where it is finite. Two
// sides are rated separately:
//
//   - overshoot, from the layer's largest D: high when max D ≥ 100, medium
//     when ≥ 10, low when ≥ 2. One channel that moves too far is enough to
//     make Deploy training diverge.
//   - stall, from the layer's median D: high when median D ≤ 0.01, medium
//     when ≤ 0.1, low when ≤ 0.5. A few slow channels do little harm, a
//     layer whose typical channel barely moves does.
//
// The layer's risk is the higher of the two levels, named with its side.
// When both sides reach the same level other than none, the side is
// "both". Comparisons with a limit, here and in the counts, allow a
// relative 1e-12 for rounding, so ω = 0.1 counts as D = 100. The limits
// are the fields of Thresholds; DefaultThresholds returns the values
// above. A model's summary counts a layer as risky when its level is
// medium or high. A layer in which no channel has a finite ω because its
// statistics are not finite or σ²+ε ≤ 0 is rated high with side invalid:
// its fold gives no usable weights, and a --fail-on gate must not pass it.
//
// # Reading cost
//
// AnalyzePair reads only the BatchNorm vectors and the conv bias, and uses
// the conv weight's shape. With Options.WeightNorms it also reads the conv
// weight, in slices along dimension 0 of about Options.ChunkElements
// elements, so no float64 copy of a whole large weight is made.
//
// # Use
//
//	opts := analysis.DefaultOptions()
//	opts.Optimizer = analysis.Adam
//	opts.WeightNorms = perChannel
//	results := make([]convbn.Result, len(f.Models))
//	// fill results[i] by pair discovery on f.Models[i]
//	report, err := analysis.AnalyzeFile(f, results, opts)
//
// The reports package renders a FileReport as a terminal table, Markdown,
// JSON or CSV.
package analysis
