package reports

import (
	"encoding/json"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/convbn-diag/convbn-diag/analysis"
)

// SchemaVersion is the version of the JSON document's layout. It changes
// when a field is renamed or removed or its meaning changes.
const SchemaVersion = 1

// Number is a float64 that JSON writes as null when it is not finite; the
// reason is in the enclosing object's flags. Null reads back as NaN.
type Number float64

// MarshalJSON writes the number, or null when it is infinite or NaN.
func (n Number) MarshalJSON() ([]byte, error) {
	x := float64(n)
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, x, 'g', -1, 64), nil
}

// UnmarshalJSON reads a number, or null as NaN.
func (n *Number) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Number(math.NaN())
		return nil
	}
	var x float64
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	*n = Number(x)
	return nil
}

// OptionalNumber is a Number that may be absent: a field of this type with
// the omitzero option is left out when Valid is false, and written as a
// Number (null when not finite) otherwise.
type OptionalNumber struct {
	Value Number
	Valid bool
}

// IsZero reports whether the number is absent.
func (o OptionalNumber) IsZero() bool { return !o.Valid }

// MarshalJSON writes the number, or null when it is not finite.
func (o OptionalNumber) MarshalJSON() ([]byte, error) { return o.Value.MarshalJSON() }

// UnmarshalJSON reads a number, or null as NaN; either makes it valid.
func (o *OptionalNumber) UnmarshalJSON(b []byte) error {
	o.Valid = true
	return o.Value.UnmarshalJSON(b)
}

// Document is the JSON report. docs/json-schema.md describes every field.
type Document struct {
	SchemaVersion int         `json:"schema_version"`
	Tool          ToolInfo    `json:"tool"`
	Options       OptionsJSON `json:"options"`
	Files         []FileJSON  `json:"files"`
	// Failures lists the input files that could not be analyzed.
	Failures []Failure `json:"failures"`
}

// ToolInfo names the program that wrote a document.
type ToolInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// OptionsJSON records the analysis options behind a document.
type OptionsJSON struct {
	Optimizer   string         `json:"optimizer"`
	Thresholds  ThresholdsJSON `json:"thresholds"`
	WeightNorms bool           `json:"weight_norms"`
	PerChannel  bool           `json:"per_channel"`
}

// ThresholdsJSON is analysis.Thresholds in JSON.
type ThresholdsJSON struct {
	OvershootLow      float64 `json:"overshoot_low"`
	OvershootMedium   float64 `json:"overshoot_medium"`
	OvershootHigh     float64 `json:"overshoot_high"`
	StallLow          float64 `json:"stall_low"`
	StallMedium       float64 `json:"stall_medium"`
	StallHigh         float64 `json:"stall_high"`
	TinyVarianceRatio float64 `json:"tiny_variance_ratio"`
}

// FileJSON is one checkpoint file.
type FileJSON struct {
	File     string      `json:"file"`
	Format   string      `json:"format"`
	Globals  []string    `json:"globals"`
	Warnings []string    `json:"warnings"`
	Models   []ModelJSON `json:"models"`
}

// ModelJSON is one model of a file.
type ModelJSON struct {
	Key            string          `json:"key"`
	StrippedPrefix string          `json:"stripped_prefix"`
	Layers         []LayerJSON     `json:"layers"`
	Unpaired       []UnpairedJSON  `json:"unpaired"`
	Ambiguous      []AmbiguousJSON `json:"ambiguous"`
	Notes          []string        `json:"notes"`
	Summary        SummaryJSON     `json:"summary"`
}

// UnpairedJSON is a conv or BatchNorm outside every pair.
type UnpairedJSON struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// AmbiguousJSON is a conv or BatchNorm whose partner is uncertain.
type AmbiguousJSON struct {
	Name       string   `json:"name"`
	Candidates []string `json:"candidates"`
	Reason     string   `json:"reason"`
}

// LayerJSON is one Conv→BatchNorm pair.
type LayerJSON struct {
	Index        int    `json:"index"`
	Conv         string `json:"conv"`
	BN           string `json:"bn"`
	WeightShape  []int  `json:"weight_shape"`
	Groups       int    `json:"groups"`
	GroupsSource string `json:"groups_source"`
	Transposed   bool   `json:"transposed"`
	HasBias      bool   `json:"has_bias"`
	Affine       bool   `json:"affine"`
	Evidence     string `json:"evidence"`
	Eps          Number `json:"eps"`
	EpsSource    string `json:"eps_source"`

	// Stride, Padding and Dilation are absent when the file does not store
	// the conv geometry; Momentum is null for a cumulative average.
	Stride         []int    `json:"stride,omitempty"`
	Padding        []int    `json:"padding,omitempty"`
	Dilation       []int    `json:"dilation,omitempty"`
	GeometrySource string   `json:"geometry_source,omitempty"`
	Momentum       *float64 `json:"momentum"`
	MomentumSource string   `json:"momentum_source"`

	NumChannels   int `json:"num_channels"`
	OmegaChannels int `json:"omega_channels"`

	MinAbsOmega     Number `json:"min_abs_omega"`
	MedianAbsOmega  Number `json:"median_abs_omega"`
	MaxAbsOmega     Number `json:"max_abs_omega"`
	GeoMeanAbsOmega Number `json:"geo_mean_abs_omega"`

	MaxDistortionSGD     Number `json:"max_distortion_sgd"`
	MedianDistortionSGD  Number `json:"median_distortion_sgd"`
	MaxDistortionAdam    Number `json:"max_distortion_adam"`
	MedianDistortionAdam Number `json:"median_distortion_adam"`
	ArgMaxDistortion     int    `json:"argmax_distortion"`

	DistortionAtLeast10   int `json:"distortion_at_least_10"`
	DistortionAtLeast100  int `json:"distortion_at_least_100"`
	DistortionAtMostTenth int `json:"distortion_at_most_0_1"`
	Dead                  int `json:"dead"`

	FlagCounts map[string]int `json:"flag_counts"`
	Flags      []string       `json:"flags"`
	Risk       RiskJSON       `json:"risk"`
	Notes      []string       `json:"notes"`

	Channels []ChannelJSON `json:"channels,omitempty"`
}

// RiskJSON is a layer's risk.
type RiskJSON struct {
	Level     string `json:"level"`
	Side      string `json:"side"`
	Overshoot string `json:"overshoot"`
	Stall     string `json:"stall"`
}

// ChannelJSON is one output channel. ConvBias is null when the conv has no
// bias; WeightNorm and FusedWeightNorm are absent when weight norms were
// not computed.
type ChannelJSON struct {
	Channel         int            `json:"channel"`
	Gamma           Number         `json:"gamma"`
	Beta            Number         `json:"beta"`
	RunningMean     Number         `json:"running_mean"`
	RunningVar      Number         `json:"running_var"`
	Eps             Number         `json:"eps"`
	InvStd          Number         `json:"inv_std"`
	Omega           Number         `json:"omega"`
	ConvBias        *Number        `json:"conv_bias"`
	FusedBias       Number         `json:"fused_bias"`
	DistortionSGD   Number         `json:"distortion_sgd"`
	DistortionAdam  Number         `json:"distortion_adam"`
	LogAbsGamma     Number         `json:"log_abs_gamma"`
	LogInvStd       Number         `json:"log_inv_std"`
	WeightNorm      OptionalNumber `json:"weight_norm,omitzero"`
	FusedWeightNorm OptionalNumber `json:"fused_weight_norm,omitzero"`
	Flags           []string       `json:"flags"`
}

// SummaryJSON is a model's summary.
type SummaryJSON struct {
	Layers         int            `json:"layers"`
	Channels       int            `json:"channels"`
	Dead           int            `json:"dead"`
	RiskyOvershoot int            `json:"risky_overshoot"`
	RiskyStall     int            `json:"risky_stall"`
	RiskyInvalid   int            `json:"risky_invalid"`
	RiskCounts     map[string]int `json:"risk_counts"`
	Optimizer      string         `json:"optimizer"`
	MaxDistortion  ExtremeJSON    `json:"max_distortion"`
	MinDistortion  ExtremeJSON    `json:"min_distortion"`
}

// ExtremeJSON locates a model's largest or smallest finite distortion;
// Value is null and Layer "" when no channel has one.
type ExtremeJSON struct {
	Value   Number `json:"value"`
	Layer   string `json:"layer"`
	Channel int    `json:"channel"`
}

// NewDocument converts analysis reports to the JSON document.
func NewDocument(files []*analysis.FileReport, opts Options) *Document {
	doc := &Document{
		SchemaVersion: SchemaVersion,
		Tool:          ToolInfo{Name: "convbn-diag", Version: opts.ToolVersion},
		Files:         []FileJSON{},
		Failures:      nonNil(opts.Failures),
	}
	if len(files) > 0 {
		o := files[0].Options
		t := o.Thresholds
		doc.Options = OptionsJSON{
			Optimizer:   string(o.Optimizer),
			WeightNorms: o.WeightNorms,
			PerChannel:  opts.PerChannel,
			Thresholds: ThresholdsJSON{
				OvershootLow: t.OvershootLow, OvershootMedium: t.OvershootMedium, OvershootHigh: t.OvershootHigh,
				StallLow: t.StallLow, StallMedium: t.StallMedium, StallHigh: t.StallHigh,
				TinyVarianceRatio: t.TinyVarianceRatio,
			},
		}
	}
	for _, f := range files {
		fj := FileJSON{
			File:     f.Path,
			Format:   string(f.Format),
			Globals:  nonNil(f.Globals),
			Warnings: nonNil(f.Warnings),
			Models:   []ModelJSON{},
		}
		for _, m := range f.Models {
			fj.Models = append(fj.Models, newModelJSON(m, opts.PerChannel))
		}
		doc.Files = append(doc.Files, fj)
	}
	return doc
}

func newModelJSON(m *analysis.ModelReport, perChannel bool) ModelJSON {
	mj := ModelJSON{
		Key:            m.Key,
		StrippedPrefix: m.StrippedPrefix,
		Layers:         []LayerJSON{},
		Unpaired:       []UnpairedJSON{},
		Ambiguous:      []AmbiguousJSON{},
		Notes:          nonNil(m.Notes),
	}
	for i, l := range m.Layers {
		mj.Layers = append(mj.Layers, newLayerJSON(i, l, perChannel))
	}
	for _, u := range m.Unpaired {
		mj.Unpaired = append(mj.Unpaired, UnpairedJSON{Name: u.Name, Kind: u.Kind, Reason: u.Reason})
	}
	for _, a := range m.Ambiguous {
		mj.Ambiguous = append(mj.Ambiguous, AmbiguousJSON{Name: a.Name, Candidates: nonNil(a.Candidates), Reason: a.Reason})
	}

	s := m.Summary
	mj.Summary = SummaryJSON{
		Layers:         s.Layers,
		Channels:       s.Channels,
		Dead:           s.Dead,
		RiskyOvershoot: s.RiskyOvershoot,
		RiskyStall:     s.RiskyStall,
		RiskyInvalid:   s.RiskyInvalid,
		RiskCounts:     map[string]int{},
		Optimizer:      string(s.Optimizer),
		MaxDistortion:  ExtremeJSON{Value: Number(s.MaxDistortion), Layer: s.MaxLayer, Channel: s.MaxChannel},
		MinDistortion:  ExtremeJSON{Value: Number(s.MinDistortion), Layer: s.MinLayer, Channel: s.MinChannel},
	}
	for _, level := range []analysis.Level{analysis.LevelNone, analysis.LevelLow, analysis.LevelMedium, analysis.LevelHigh} {
		mj.Summary.RiskCounts[string(level)] = s.RiskCounts[level]
	}
	return mj
}

// Layer-level flags that explain a null statistic.
const (
	flagNoFiniteOmega      = "no-finite-omega"
	flagNoFiniteDistortion = "no-finite-distortion"
)

func newLayerJSON(index int, l *analysis.Layer, perChannel bool) LayerJSON {
	s := &l.Stats
	lj := LayerJSON{
		Index:        index,
		Conv:         l.Conv,
		BN:           l.BN,
		WeightShape:  nonNil(l.WeightShape),
		Groups:       l.Groups,
		GroupsSource: string(l.GroupsSource),
		Transposed:   l.Transposed,
		HasBias:      l.HasBias,
		Affine:       l.Affine,
		Evidence:     string(l.Evidence),
		Eps:          Number(l.Eps),
		EpsSource:    string(l.EpsSource),

		Stride:         l.Stride,
		Padding:        l.Padding,
		Dilation:       l.Dilation,
		GeometrySource: string(l.GeometrySource),
		Momentum:       l.Momentum,
		MomentumSource: string(l.MomentumSource),

		NumChannels:   l.NumChannels(),
		OmegaChannels: s.OmegaChannels,

		MinAbsOmega:     Number(s.MinAbsOmega),
		MedianAbsOmega:  Number(s.MedianAbsOmega),
		MaxAbsOmega:     Number(s.MaxAbsOmega),
		GeoMeanAbsOmega: Number(s.GeoMeanAbsOmega),

		MaxDistortionSGD:     Number(s.MaxDistortionSGD),
		MedianDistortionSGD:  Number(s.MedianDistortionSGD),
		MaxDistortionAdam:    Number(s.MaxDistortionAdam),
		MedianDistortionAdam: Number(s.MedianDistortionAdam),
		ArgMaxDistortion:     s.ArgMaxDistortion,

		DistortionAtLeast10:   s.AtLeast10,
		DistortionAtLeast100:  s.AtLeast100,
		DistortionAtMostTenth: s.AtMostTenth,
		Dead:                  s.Dead,

		FlagCounts: map[string]int{},
		Risk: RiskJSON{
			Level:     string(l.Risk.Level),
			Side:      string(l.Risk.Side),
			Overshoot: string(l.Risk.Overshoot),
			Stall:     string(l.Risk.Stall),
		},
		Notes: nonNil(l.Notes),
	}
	lj.Flags = layerFlags(l)
	for f, n := range s.FlagCounts {
		lj.FlagCounts[string(f)] = n
	}
	if perChannel {
		lj.Channels = make([]ChannelJSON, 0, len(l.Channels))
		for i := range l.Channels {
			lj.Channels = append(lj.Channels, newChannelJSON(&l.Channels[i]))
		}
	}
	return lj
}

// layerFlags lists, sorted, every flag of the layer's channels, plus
// no-finite-omega and no-finite-distortion when a statistic is null
// because no channel entered it.
func layerFlags(l *analysis.Layer) []string {
	flags := []string{}
	for f := range l.Stats.FlagCounts {
		flags = append(flags, string(f))
	}
	if l.Stats.OmegaChannels == 0 {
		flags = append(flags, flagNoFiniteOmega)
	}
	if math.IsNaN(l.Stats.MaxDistortionSGD) || math.IsNaN(l.Stats.MaxDistortionAdam) {
		flags = append(flags, flagNoFiniteDistortion)
	}
	slices.Sort(flags)
	return flags
}

func newChannelJSON(c *analysis.Channel) ChannelJSON {
	cj := ChannelJSON{
		Channel:        c.Index,
		Gamma:          Number(c.Gamma),
		Beta:           Number(c.Beta),
		RunningMean:    Number(c.RunningMean),
		RunningVar:     Number(c.RunningVar),
		Eps:            Number(c.Eps),
		InvStd:         Number(c.InvStd),
		Omega:          Number(c.Omega),
		FusedBias:      Number(c.FusedBias),
		DistortionSGD:  Number(c.DistortionSGD),
		DistortionAdam: Number(c.DistortionAdam),
		LogAbsGamma:    Number(c.LogAbsGamma),
		LogInvStd:      Number(c.LogInvStd),
		Flags:          []string{},
	}
	if c.HasConvBias {
		b := Number(c.ConvBias)
		cj.ConvBias = &b
	}
	if c.HasWeightNorms {
		cj.WeightNorm = OptionalNumber{Value: Number(c.WeightNorm), Valid: true}
		cj.FusedWeightNorm = OptionalNumber{Value: Number(c.FusedWeightNorm), Valid: true}
	}
	for _, f := range c.Flags {
		cj.Flags = append(cj.Flags, string(f))
	}
	return cj
}

func nonNil[T any](x []T) []T {
	if x == nil {
		return []T{}
	}
	return x
}

// WriteJSON writes the JSON document for files, indented, with a final
// newline.
func WriteJSON(w io.Writer, files []*analysis.FileReport, opts Options) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(NewDocument(files, opts))
}
