package reports

import (
	"encoding/csv"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/convbn-diag/convbn-diag/analysis"
)

// ChannelCSVHeader is the header of the per-channel CSV, in column order.
var ChannelCSVHeader = []string{
	"file", "model", "layer", "conv", "bn", "channel",
	"gamma", "beta", "running_mean", "running_var", "eps", "inv_std", "omega",
	"conv_bias", "distortion_sgd", "distortion_adam",
	"weight_norm", "fused_weight_norm", "fused_bias", "flags",
}

// LayerCSVHeader is the header of the per-layer CSV, in column order.
var LayerCSVHeader = []string{
	"file", "model", "layer", "conv", "bn", "weight_shape", "groups", "transposed", "has_bias",
	"eps", "eps_source", "channels", "omega_channels",
	"min_abs_omega", "median_abs_omega", "max_abs_omega", "geo_mean_abs_omega",
	"max_distortion_sgd", "median_distortion_sgd", "max_distortion_adam", "median_distortion_adam",
	"distortion_at_least_10", "distortion_at_least_100", "distortion_at_most_0_1", "dead",
	"risk", "risk_side", "flags",
}

// WriteCSV writes one row per layer, or with opts.PerChannel one row per
// channel. Numbers are written in the shortest form that reads back
// exactly. Numbers that are not finite are written as inf, -inf or nan,
// and the flags column names the reason. Flags are separated by ";". The layer
// column is the pair's 0-based position in network order and model is the
// model's key inside the file.
func WriteCSV(w io.Writer, files []*analysis.FileReport, opts Options) error {
	cw := csv.NewWriter(w)
	header := LayerCSVHeader
	if opts.PerChannel {
		header = ChannelCSVHeader
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	for _, f := range files {
		for _, m := range f.Models {
			for i, l := range m.Layers {
				prefix := []string{csvText(f.Path), csvText(m.Key), strconv.Itoa(i), csvText(l.Conv), csvText(l.BN)}
				if !opts.PerChannel {
					if err := cw.Write(append(prefix, layerCSVRow(l)...)); err != nil {
						return err
					}
					continue
				}
				for c := range l.Channels {
					if err := cw.Write(append(slices.Clone(prefix), channelCSVRow(&l.Channels[c])...)); err != nil {
						return err
					}
				}
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvText guards a text cell taken from the file against spreadsheet
// formula injection: a cell starting with =, +, -, @, tab or carriage
// return gets a leading apostrophe, which spreadsheets show as text. Number
// columns never pass through it, so negative numbers stay numbers.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// layerCSVRow returns the per-layer columns after file, model, layer,
// conv and bn. A statistic over no channels is written as nan, and the
// flags column then lists no-finite-omega or no-finite-distortion.
func layerCSVRow(l *analysis.Layer) []string {
	s := &l.Stats
	return []string{
		formatShape(l.WeightShape),
		strconv.Itoa(l.Groups),
		strconv.FormatBool(l.Transposed),
		strconv.FormatBool(l.HasBias),
		formatExact(l.Eps),
		string(l.EpsSource),
		strconv.Itoa(l.NumChannels()),
		strconv.Itoa(s.OmegaChannels),
		formatExact(s.MinAbsOmega),
		formatExact(s.MedianAbsOmega),
		formatExact(s.MaxAbsOmega),
		formatExact(s.GeoMeanAbsOmega),
		formatExact(s.MaxDistortionSGD),
		formatExact(s.MedianDistortionSGD),
		formatExact(s.MaxDistortionAdam),
		formatExact(s.MedianDistortionAdam),
		strconv.Itoa(s.AtLeast10),
		strconv.Itoa(s.AtLeast100),
		strconv.Itoa(s.AtMostTenth),
		strconv.Itoa(s.Dead),
		string(l.Risk.Level),
		string(l.Risk.Side),
		strings.Join(layerFlags(l), ";"),
	}
}

// channelCSVRow returns the per-channel columns after file, model, layer,
// conv and bn. conv_bias is empty when the conv has no bias; weight_norm
// and fused_weight_norm are empty when weight norms were not computed.
func channelCSVRow(c *analysis.Channel) []string {
	bias, norm, fusedNorm := "", "", ""
	if c.HasConvBias {
		bias = formatExact(c.ConvBias)
	}
	if c.HasWeightNorms {
		norm, fusedNorm = formatExact(c.WeightNorm), formatExact(c.FusedWeightNorm)
	}
	flags := make([]string, len(c.Flags))
	for i, f := range c.Flags {
		flags[i] = string(f)
	}
	return []string{
		strconv.Itoa(c.Index),
		formatExact(c.Gamma),
		formatExact(c.Beta),
		formatExact(c.RunningMean),
		formatExact(c.RunningVar),
		formatExact(c.Eps),
		formatExact(c.InvStd),
		formatExact(c.Omega),
		bias,
		formatExact(c.DistortionSGD),
		formatExact(c.DistortionAdam),
		norm,
		fusedNorm,
		formatExact(c.FusedBias),
		strings.Join(flags, ";"),
	}
}
