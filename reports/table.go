package reports

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/convbn-diag/convbn-diag/analysis"
)

// Align is a column's alignment.
type Align int

// Alignments.
const (
	AlignLeft Align = iota
	AlignRight
)

// Column is one column of a Table.
type Column struct {
	Header string
	Align  Align
	// Legend explains the column once, under a table or in help text.
	Legend string
	// Shrink allows the terminal renderer to shorten the column's cells
	// from the left, keeping their end, to fit the line width.
	Shrink bool
}

// Table is the layout shared by the terminal and Markdown renderers: cells
// are already formatted text.
type Table struct {
	Columns []Column
	Rows    [][]string
}

// NewLayerTable returns one row per layer of m in network order. The
// distortion columns use optimizer opt.
func NewLayerTable(m *analysis.ModelReport, opt analysis.Optimizer) *Table {
	t := &Table{Columns: layerColumns(opt)}
	for _, l := range m.Layers {
		s := &l.Stats
		t.Rows = append(t.Rows, []string{
			displayText(l.Conv),
			strconv.Itoa(l.NumChannels()),
			FormatCompact(l.Eps),
			statCell(s.MedianAbsOmega),
			statCell(s.MinAbsOmega),
			statCell(s.MaxAbsOmega),
			statCell(s.Max(opt)),
			statCell(s.Median(opt)),
			strconv.Itoa(s.AtLeast10),
			strconv.Itoa(s.AtLeast100),
			strconv.Itoa(s.AtMostTenth),
			strconv.Itoa(s.Dead),
			riskLabel(l.Risk),
		})
	}
	return t
}

// NewChannelTable returns one row per output channel of every layer of m,
// in network order. The weight-norm columns are "-" when the analysis did
// not compute weight norms.
func NewChannelTable(m *analysis.ModelReport) *Table {
	t := &Table{Columns: channelColumns()}
	for _, l := range m.Layers {
		for i := range l.Channels {
			c := &l.Channels[i]
			norm, fused := "-", "-"
			if c.HasWeightNorms {
				norm, fused = FormatCompact(c.WeightNorm), FormatCompact(c.FusedWeightNorm)
			}
			flags := make([]string, len(c.Flags))
			for j, f := range c.Flags {
				flags[j] = string(f)
			}
			t.Rows = append(t.Rows, []string{
				displayText(l.Conv),
				strconv.Itoa(c.Index),
				FormatCompact(c.Gamma),
				FormatCompact(c.RunningVar),
				FormatCompact(c.Omega),
				FormatCompact(c.DistortionSGD),
				FormatCompact(c.DistortionAdam),
				norm,
				fused,
				FormatCompact(c.FusedBias),
				strings.Join(flags, ","),
			})
		}
	}
	return t
}

func channelColumns() []Column {
	return []Column{
		{Header: "layer", Align: AlignLeft, Shrink: true, Legend: "conv module path; long paths lose their start, shown as ..."},
		{Header: "ch", Align: AlignRight, Legend: "output channel c"},
		{Header: "γ", Align: AlignRight, Legend: "BatchNorm weight γ_c (1 when the BatchNorm is not affine)"},
		{Header: "σ²", Align: AlignRight, Legend: "running variance σ²_c"},
		{Header: "ω", Align: AlignRight, Legend: "ω_c = γ_c/√(σ²_c+ε)"},
		{Header: "D_SGD", Align: AlignRight, Legend: "1/ω_c²: Deploy SGD step / Eval SGD step on W'_c"},
		{Header: "D_Adam", Align: AlignRight, Legend: "1/|ω_c|: Deploy Adam step / Eval Adam step on W'_c"},
		{Header: "‖W‖", Align: AlignRight, Legend: "norm of the conv weights of channel c"},
		{Header: "‖W'‖", Align: AlignRight, Legend: "fused weight norm |ω_c|·‖W_c‖"},
		{Header: "b'", Align: AlignRight, Legend: "fused bias β_c + ω_c(b_c − μ_c)"},
		{Header: "flags", Align: AlignLeft, Legend: "conditions on the channel, such as dead (γ = 0) or tiny-variance"},
	}
}

// ChannelLegend returns the per-channel table's column legend, one line
// per column.
func ChannelLegend() string {
	return legendText(channelColumns())
}

// statCell formats a layer statistic; NaN means it covers no channels.
func statCell(x float64) string {
	if x != x {
		return "-"
	}
	return FormatCompact(x)
}

func layerColumns(opt analysis.Optimizer) []Column {
	d := "D_SGD = 1/ω²"
	if opt == analysis.Adam {
		d = "D_Adam = 1/|ω|"
	}
	return []Column{
		{Header: "layer", Align: AlignLeft, Shrink: true, Legend: "conv module path; long paths lose their start, shown as ..."},
		{Header: "C", Align: AlignRight, Legend: "output channels"},
		{Header: "eps", Align: AlignRight, Legend: "BatchNorm ε used (its source is in JSON and CSV)"},
		{Header: "med|ω|", Align: AlignRight, Legend: "median |ω| over channels with finite, nonzero ω = γ/√(σ²+ε); - when none"},
		{Header: "min|ω|", Align: AlignRight, Legend: "minimum |ω|, same channels"},
		{Header: "max|ω|", Align: AlignRight, Legend: "maximum |ω|, same channels"},
		{Header: "max D", Align: AlignRight, Legend: "largest finite distortion " + d + ": Deploy step / Eval step"},
		{Header: "med D", Align: AlignRight, Legend: "median finite distortion D"},
		{Header: "D≥10", Align: AlignRight, Legend: "channels with D ≥ 10 (Deploy overshoots)"},
		{Header: "D≥100", Align: AlignRight, Legend: "channels with D ≥ 100"},
		{Header: "D≤0.1", Align: AlignRight, Legend: "channels with D ≤ 0.1 (Deploy barely trains)"},
		{Header: "dead", Align: AlignRight, Legend: "channels with γ = 0 (ω = 0, D infinite, not in the other columns)"},
		{Header: "risk", Align: AlignLeft, Legend: "none, low, med or high; side over(shoot) from max D, stall from med D, both, or invalid (no finite ω)"},
	}
}

// Legend returns the column legend for optimizer opt, one line per
// column, for help text or under a table.
func Legend(opt analysis.Optimizer) string {
	return legendText(layerColumns(opt))
}

// legendText lists each column's header and legend, aligned.
func legendText(cols []Column) string {
	var b strings.Builder
	width := 0
	for _, c := range cols {
		width = max(width, utf8.RuneCountInString(c.Header))
	}
	for _, c := range cols {
		fmt.Fprintf(&b, "  %s%s  %s\n", c.Header, strings.Repeat(" ", width-utf8.RuneCountInString(c.Header)), c.Legend)
	}
	return b.String()
}

// widths returns each column's width in characters: the longest of its
// header and cells.
func (t *Table) widths() []int {
	w := make([]int, len(t.Columns))
	for i, c := range t.Columns {
		w[i] = utf8.RuneCountInString(c.Header)
	}
	for _, row := range t.Rows {
		for i, cell := range row {
			w[i] = max(w[i], utf8.RuneCountInString(cell))
		}
	}
	return w
}

// shortenLeft shortens s to at most width characters by replacing its
// start with "...", keeping the end.
func shortenLeft(s string, width int) string {
	n := utf8.RuneCountInString(s)
	if n <= width {
		return s
	}
	if width <= 3 {
		return strings.Repeat(".", max(width, 0))
	}
	runes := []rune(s)
	return "..." + string(runes[n-(width-3):])
}

// pad aligns s in a field of width characters.
func pad(s string, width int, a Align) string {
	gap := width - utf8.RuneCountInString(s)
	if gap <= 0 {
		return s
	}
	if a == AlignRight {
		return strings.Repeat(" ", gap) + s
	}
	return s + strings.Repeat(" ", gap)
}
