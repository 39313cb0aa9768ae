package analysis

import (
	"fmt"
	"math"
	"sort"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
)

// Layer is the analysis of one Conv→BatchNorm pair.
type Layer struct {
	Conv string // conv module path
	BN   string // BatchNorm module path

	WeightShape []int
	Groups      int
	// GroupsSource records whether Groups was stored in the file or
	// inferred from shapes. It is "" when Groups is assumed to be 1.
	GroupsSource convbn.Source
	Transposed   bool
	HasBias      bool // whether the conv has a bias
	Affine       bool // whether the BatchNorm has γ and β
	Evidence     convbn.Evidence

	Eps       float64
	EpsSource convbn.Source

	// Stride, Padding and Dilation are the conv geometry, one entry per
	// spatial dimension, nil when the file does not store it
	// (GeometrySource "").
	Stride, Padding, Dilation []int
	GeometrySource            convbn.Source

	// Momentum is the BatchNorm's running-statistics momentum, nil for a
	// cumulative average or when unknown. MomentumSource records which.
	Momentum       *float64
	MomentumSource convbn.Source

	// Notes are pair discovery's remarks about this pair.
	Notes []string

	Channels []Channel

	// Stats summarizes Channels; see LayerStats for which channels enter
	// each number.
	Stats LayerStats
	Risk  Risk
}

// NumChannels returns the number of output channels.
func (l *Layer) NumChannels() int { return len(l.Channels) }

// LayerStats summarizes a layer's channels.
//
// The |ω| statistics use only channels whose ω is finite and nonzero, and
// the distortion statistics only channels whose distortion is finite, so a
// dead channel (γ = 0, D = ∞) is counted in Dead rather than in Max. A
// statistic over no channels is NaN.
type LayerStats struct {
	// OmegaChannels is the number of channels with finite, nonzero ω.
	OmegaChannels int

	MinAbsOmega     float64
	MedianAbsOmega  float64
	MaxAbsOmega     float64
	GeoMeanAbsOmega float64 // exp of the mean of log|ω|

	MaxDistortionSGD     float64
	MedianDistortionSGD  float64
	MaxDistortionAdam    float64
	MedianDistortionAdam float64

	// ArgMaxDistortion is the channel with the largest finite distortion of
	// the selected optimizer, or -1 when there is none.
	ArgMaxDistortion int

	// Counts of channels by the selected optimizer's finite distortion D.
	AtLeast10   int // D ≥ 10
	AtLeast100  int // D ≥ 100
	AtMostTenth int // D ≤ 0.1

	Dead int // channels with γ = 0

	// FlagCounts counts channels per flag.
	FlagCounts map[Flag]int
}

// Max returns the layer's largest finite distortion for opt.
func (s *LayerStats) Max(opt Optimizer) float64 {
	if opt == Adam {
		return s.MaxDistortionAdam
	}
	return s.MaxDistortionSGD
}

// Median returns the layer's median finite distortion for opt.
func (s *LayerStats) Median(opt Optimizer) float64 {
	if opt == Adam {
		return s.MedianDistortionAdam
	}
	return s.MedianDistortionSGD
}

// AnalyzePair computes the per-channel quantities, statistics and risk of
// one pair. It reads the BatchNorm vectors and the conv bias, and the conv
// weight only when opts.WeightNorms is set. file names the checkpoint in
// errors.
func AnalyzePair(file string, p *convbn.Pair, opts Options) (*Layer, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	conv, bn := &p.Conv, &p.BN
	if conv.Weight == nil {
		return nil, fmt.Errorf("%s: conv %s has no weight tensor", file, conv.Name)
	}
	l := &Layer{
		Conv:         conv.Name,
		BN:           bn.Name,
		WeightShape:  append([]int(nil), conv.Weight.Shape...),
		Groups:       conv.Groups,
		GroupsSource: conv.GroupsSource,
		Notes:        p.Notes,
		Transposed:   conv.Transposed,
		HasBias:      conv.Bias != nil,
		Affine:       bn.Affine,
		Evidence:     p.Evidence,
		Eps:          bn.Eps,
		EpsSource:    bn.EpsSource,

		Stride:         conv.Stride,
		Padding:        conv.Padding,
		Dilation:       conv.Dilation,
		GeometrySource: conv.GeometrySource,
		Momentum:       bn.Momentum,
		MomentumSource: bn.MomentumSource,
	}
	if l.Groups < 1 {
		l.Groups = 1
	}
	n, err := outChannels(file, conv, l.Groups)
	if err != nil {
		return nil, err
	}

	vectors, err := readVectors(file, p, n)
	if err != nil {
		return nil, err
	}
	l.Channels = make([]Channel, n)
	for c := range l.Channels {
		ch := &l.Channels[c]
		ch.Index = c
		ch.Gamma, ch.Beta = 1, 0
		if vectors.gamma != nil {
			ch.Gamma = vectors.gamma[c]
		}
		if vectors.beta != nil {
			ch.Beta = vectors.beta[c]
		}
		ch.RunningMean = vectors.mean[c]
		ch.RunningVar = vectors.variance[c]
		ch.Eps = bn.Eps
		if vectors.bias != nil {
			ch.ConvBias = vectors.bias[c]
			ch.HasConvBias = true
		}
		computeChannel(ch, opts.Thresholds.TinyVarianceRatio)
	}

	if opts.WeightNorms {
		if err := weightNorms(file, conv, l.Groups, l.Channels, opts.ChunkElements); err != nil {
			return nil, err
		}
	}

	l.Stats = layerStats(l.Channels, opts.Optimizer)
	l.Risk = assessRisk(&l.Stats, opts)
	return l, nil
}

// outChannels checks the conv weight's shape against its groups and
// returns the number of output channels.
func outChannels(file string, conv *convbn.Conv, groups int) (int, error) {
	shape := conv.Weight.Shape
	if len(shape) < 2 {
		return 0, fmt.Errorf("%s: conv %s: weight %s has shape %v, but a conv weight needs at least 2 dimensions", file, conv.Name, conv.Weight.Name, shape)
	}
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%s: conv %s: weight %s has a negative dimension in shape %v", file, conv.Name, conv.Weight.Name, shape)
		}
	}
	if !conv.Transposed {
		if shape[0]%groups != 0 {
			return 0, fmt.Errorf("%s: conv %s: weight %s has %d output channels, not divisible by its %d groups; check the groups setting", file, conv.Name, conv.Weight.Name, shape[0], groups)
		}
		return shape[0], nil
	}
	if shape[0]%groups != 0 {
		return 0, fmt.Errorf("%s: transposed conv %s: weight %s has %d input channels, not divisible by its %d groups; check the groups setting", file, conv.Name, conv.Weight.Name, shape[0], groups)
	}
	return shape[1] * groups, nil
}

type bnVectors struct {
	gamma, beta, mean, variance, bias []float64
}

// readVectors reads γ, β, μ, σ² and the conv bias and checks that each has
// n elements. γ and β stay nil for a non-affine BatchNorm, bias for a conv
// without one.
func readVectors(file string, p *convbn.Pair, n int) (*bnVectors, error) {
	var v bnVectors
	read := func(owner, role string, t *checkpoint.Tensor, required bool) ([]float64, error) {
		if t == nil {
			if required {
				return nil, fmt.Errorf("%s: %s has no %s tensor", file, owner, role)
			}
			return nil, nil
		}
		if got := t.NumElements(); got != n {
			return nil, fmt.Errorf("%s: %s: %s %s has %d elements (shape %v), but the conv has %d output channels", file, owner, role, t.Name, got, t.Shape, n)
		}
		x, err := t.Float64s()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: read %s: %w", file, owner, role, err)
		}
		return x, nil
	}

	var err error
	bnName := "batchnorm " + p.BN.Name
	if p.BN.Affine {
		if v.gamma, err = read(bnName, "weight (γ)", p.BN.Weight, true); err != nil {
			return nil, err
		}
		if v.beta, err = read(bnName, "bias (β)", p.BN.Bias, true); err != nil {
			return nil, err
		}
	}
	if v.mean, err = read(bnName, "running_mean", p.BN.RunningMean, true); err != nil {
		return nil, err
	}
	if v.variance, err = read(bnName, "running_var", p.BN.RunningVar, true); err != nil {
		return nil, err
	}
	if v.bias, err = read("conv "+p.Conv.Name, "bias", p.Conv.Bias, false); err != nil {
		return nil, err
	}
	return &v, nil
}

// layerStats summarizes channels; opt selects the distortion behind
// ArgMaxDistortion and the counts.
func layerStats(channels []Channel, opt Optimizer) LayerStats {
	s := LayerStats{ArgMaxDistortion: -1, FlagCounts: map[Flag]int{}}
	var absOmega, dSGD, dAdam []float64
	maxD := math.Inf(-1)
	for i := range channels {
		ch := &channels[i]
		for _, f := range ch.Flags {
			s.FlagCounts[f]++
		}
		if ch.HasFlag(FlagDead) {
			s.Dead++
		}
		if a := math.Abs(ch.Omega); isFinite(a) && a != 0 {
			absOmega = append(absOmega, a)
		}
		// An infinite γ gives D = 0, which tells nothing about the layer, so
		// distortions count only where ω itself is finite.
		if !isFinite(ch.Omega) {
			continue
		}
		if isFinite(ch.DistortionSGD) {
			dSGD = append(dSGD, ch.DistortionSGD)
		}
		if isFinite(ch.DistortionAdam) {
			dAdam = append(dAdam, ch.DistortionAdam)
		}

		d := ch.Distortion(opt)
		if !isFinite(d) {
			continue
		}
		if d > maxD {
			maxD, s.ArgMaxDistortion = d, i
		}
		if atLeast(d, 10) {
			s.AtLeast10++
		}
		if atLeast(d, 100) {
			s.AtLeast100++
		}
		if atMost(d, 0.1) {
			s.AtMostTenth++
		}
	}

	s.OmegaChannels = len(absOmega)
	s.MinAbsOmega, s.MedianAbsOmega, s.MaxAbsOmega = minMedianMax(absOmega)
	s.GeoMeanAbsOmega = math.NaN()
	if len(absOmega) > 0 {
		sumLog := 0.0
		for _, a := range absOmega {
			sumLog += math.Log(a)
		}
		s.GeoMeanAbsOmega = math.Exp(sumLog / float64(len(absOmega)))
	}
	_, s.MedianDistortionSGD, s.MaxDistortionSGD = minMedianMax(dSGD)
	_, s.MedianDistortionAdam, s.MaxDistortionAdam = minMedianMax(dAdam)
	return s
}

// minMedianMax sorts x in place and returns its minimum, median (the mean
// of the two middle values for an even count) and maximum, or NaN for all
// three when x is empty.
func minMedianMax(x []float64) (lo, median, hi float64) {
	if len(x) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	sort.Float64s(x)
	n := len(x)
	median = x[n/2]
	if n%2 == 0 {
		median = x[n/2-1]/2 + x[n/2]/2
	}
	return x[0], median, x[n-1]
}
