package reports

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"strconv"
	"strings"

	"gonum.org/v1/plot/vg"

	"github.com/convbn-diag/convbn-diag/analysis"
)

// HTMLOptions control WriteHTML.
type HTMLOptions struct {
	// ToolVersion is written in the page footer.
	ToolVersion string
	// NoFigures leaves the figures out.
	NoFigures bool
}

// htmlStyle is the page's only style sheet; the page loads nothing else.
const htmlStyle = `
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 2rem auto; max-width: 78rem; padding: 0 1rem; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
.meta { color: #555; }
.summary { background: #f3f6fa; border-left: 4px solid #0072b2; padding: 0.6rem 1rem; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(34rem, 1fr)); gap: 1rem 2rem; }
.figures figure.wide { grid-column: 1 / -1; }
figure { margin: 0.6rem 0; }
figure svg { width: 100%; max-width: 62rem; height: auto; display: block; }
figcaption { color: #444; font-size: 0.92rem; max-width: 60rem; }
table { border-collapse: collapse; font-size: 0.86rem; margin: 0.8rem 0; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.45rem; }
th { background: #f0f0f0; }
td.r { text-align: right; font-variant-numeric: tabular-nums; }
td.name { font-family: ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all; }
tr.high td { background: #fbe3d3; }
tr.medium td { background: #fdf1d8; }
.layer { border-left: 4px solid #d55e00; padding: 0.1rem 1rem; margin: 1rem 0; }
.layer.stall { border-left-color: #cc79a7; }
dl.legend dt { font-weight: bold; float: left; clear: left; width: 6rem; }
dl.legend dd { margin-left: 6.5rem; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
`

// WriteHTML renders f as one self-contained HTML page. Per model it has
// the summary, the figures as inline SVG and the layer table with each
// layer's index and ε source. A plain-language explanation follows for
// every layer of medium or high risk or with flagged channels, then the
// leftovers of pair discovery. The page references no file, script,
// style sheet, font or image outside itself.
func WriteHTML(w io.Writer, f *analysis.FileReport, opts HTMLOptions) error {
	ew := &errWriter{w: w}
	esc := html.EscapeString
	opt := f.Options.Optimizer
	th := f.Options.Thresholds

	ew.println("<!DOCTYPE html>")
	ew.println(`<html lang="en">`)
	ew.println("<head>")
	ew.println(`<meta charset="utf-8">`)
	ew.println(`<meta name="viewport" content="width=device-width, initial-scale=1">`)
	ew.println("<title>convbn-diag report: " + esc(f.Path) + "</title>")
	ew.println("<style>" + htmlStyle + "</style>")
	ew.println("</head>")
	ew.println("<body>")
	ew.println("<h1>ConvBN stability report</h1>")
	ew.println(fmt.Sprintf(`<p class="meta"><code>%s</code> (%s). Optimizer %s: D = %s. Overshoot limits on a layer's largest D: %s, %s, %s; stall limits on its median D: %s, %s, %s (low, medium, high).</p>`,
		esc(f.Path), esc(string(f.Format)), esc(string(opt)), esc(distortionFormula(opt)),
		FormatCompact(th.OvershootLow), FormatCompact(th.OvershootMedium), FormatCompact(th.OvershootHigh),
		FormatCompact(th.StallLow), FormatCompact(th.StallMedium), FormatCompact(th.StallHigh)))
	ew.println(`<p>Each ConvBN block can be trained with the BatchNorm folded into the conv (Deploy mode, W' = ω·W with ω = γ/√(σ²+ε)) or kept apart (Eval or Tune mode). One Deploy-mode step moves channel c of W' D times as far as the same step in Eval or Tune mode: D_SGD = 1/ω² for SGD and about D_Adam = 1/|ω| for Adam. D ≫ 1 means Deploy training overshoots; D ≪ 1 means it barely trains.</p>`)
	for _, warning := range f.Warnings {
		ew.println(`<p class="meta">Warning: ` + esc(warning) + "</p>")
	}

	for _, m := range f.Models {
		if err := writeHTMLModel(ew, f, m, opts); err != nil {
			return err
		}
	}

	ew.println("<h2>Columns</h2>")
	ew.println(`<dl class="legend">`)
	ew.println("<dt>#</dt><dd>layer index in network order, as on the figures' x axes</dd>")
	for _, c := range htmlLayerColumns(opt) {
		ew.println("<dt>" + esc(c.Header) + "</dt><dd>" + esc(c.Legend) + "</dd>")
	}
	ew.println("</dl>")
	version := opts.ToolVersion
	if version == "" {
		version = "dev"
	}
	ew.println(`<p class="meta">Written by convbn-diag ` + esc(version) + ".</p>")
	ew.println("</body>")
	ew.println("</html>")
	return ew.err
}

func distortionFormula(opt analysis.Optimizer) string {
	if opt == analysis.Adam {
		return "D_Adam = 1/|ω|"
	}
	return "D_SGD = 1/ω²"
}

func writeHTMLModel(ew *errWriter, f *analysis.FileReport, m *analysis.ModelReport, opts HTMLOptions) error {
	esc := html.EscapeString
	opt := f.Options.Optimizer
	heading := "Model (top level)"
	if m.Key != "" {
		heading = "Model <code>" + esc(m.Key) + "</code>"
	}
	if m.StrippedPrefix != "" {
		heading += fmt.Sprintf(", prefix <code>%s</code> removed from names", esc(m.StrippedPrefix))
	}
	ew.println("<h2>" + heading + "</h2>")
	ew.println(`<p class="summary">` + esc(strings.Join(SummaryLines(m.Summary), " ")) + "</p>")
	if len(m.Layers) == 0 {
		ew.println("<p>No Conv→BatchNorm pairs found.</p>")
		return ew.err
	}

	if !opts.NoFigures {
		if err := writeHTMLFigures(ew, m, f.Options); err != nil {
			return err
		}
	}

	ew.println("<h3>Layers</h3>")
	writeHTMLTable(ew, newHTMLLayerTable(m, opt), m)

	var flagged []*analysis.Layer
	for _, l := range m.Layers {
		if l.Risk.Level.Rank() >= analysis.LevelMedium.Rank() || FlaggedChannels(l) != "" {
			flagged = append(flagged, l)
		}
	}
	if len(flagged) > 0 {
		ew.println("<h3>Layers that need attention</h3>")
		ew.println("<p>Every layer of medium or high risk, or with flagged channels. <code>convbn-diag explain CHECKPOINT LAYER</code> derives each number.</p>")
	}
	for _, l := range flagged {
		class := "layer"
		if l.Risk.Side == analysis.SideStall {
			class += " stall"
		}
		ew.println(fmt.Sprintf(`<div class="%s"><h4><code>%s</code> → <code>%s</code>: risk %s</h4>`, class, esc(l.Conv), esc(l.BN), esc(l.Risk.String())))
		ew.println(fmt.Sprintf("<p>ε = %s, %s.</p>", FormatCompact(l.Eps), esc(EpsSourceText(l.EpsSource))))
		ew.println("<p>" + esc(strings.Join(LayerAdvice(l, f.Options), " ")) + "</p>")
		ew.println("</div>")
	}

	var items []string
	for _, u := range m.Unpaired {
		items = append(items, fmt.Sprintf("unpaired %s <code>%s</code>: %s", esc(u.Kind), esc(u.Name), esc(u.Reason)))
	}
	for _, a := range m.Ambiguous {
		items = append(items, fmt.Sprintf("ambiguous <code>%s</code> (candidates %s): %s", esc(a.Name), esc(strings.Join(a.Candidates, ", ")), esc(a.Reason)))
	}
	for _, n := range m.Notes {
		items = append(items, "note: "+esc(n))
	}
	for _, l := range m.Layers {
		for _, n := range l.Notes {
			items = append(items, fmt.Sprintf("note on <code>%s</code>: %s", esc(l.Conv), esc(n)))
		}
	}
	if len(items) > 0 {
		ew.println("<h3>Pair discovery</h3>")
		ew.println("<ul>")
		for _, it := range items {
			ew.println("<li>" + it + "</li>")
		}
		ew.println("</ul>")
	}
	return ew.err
}

// figureCaptions explain how to read each figure, by figure name.
var figureCaptions = map[string]string{
	FigureOmegaBox:      "Each box spans the quartiles of log₁₀|ω| over one layer's channels, with the median as a black line; whiskers reach the last channel within 1.5 interquartile ranges and dots mark channels beyond. Dead channels (ω = 0) sit on the bottom edge and channels without a finite ω on the top edge, counted in the legend.",
	FigureDistortion:    "The largest and median finite distortion D of each layer. The horizontal lines are the risk limits: a layer's largest D at or above an overshoot line and its median D at or below a stall line set its risk level.",
	FigureOmegaHist:     "How |ω| is spread over all channels; left of the dashed line Deploy training overshoots, right of it it stalls.",
	FigureGammaVariance: "Each channel at log₁₀|γ| (x) and −½·log₁₀(σ²+ε) (y); their sum is log₁₀|ω|, so the dashed diagonals are lines of constant |ω|. A channel with small |ω| far to the left owes it to a small γ, one far down to a large running variance.",
}

// writeHTMLFigures writes m's figures as inline SVG.
func writeHTMLFigures(ew *errWriter, m *analysis.ModelReport, opts analysis.Options) error {
	figs, err := NewFigures(m, opts, "svg")
	if err != nil {
		return err
	}
	ew.println("<h3>Figures</h3>")
	ew.println(`<div class="figures">`)
	for _, fig := range figs {
		var buf bytes.Buffer
		if err := WriteFigure(&buf, fig, "svg"); err != nil {
			return fmt.Errorf("figure %s: %w", fig.Name, err)
		}
		svg, err := inlineSVG(buf.Bytes(), fig.Title)
		if err != nil {
			return fmt.Errorf("figure %s: %w", fig.Name, err)
		}
		class := ""
		if fig.Width > 8*vg.Inch {
			class = ` class="wide"`
		}
		ew.println(fmt.Sprintf(`<figure id="figure-%s"%s>`, fig.Name, class))
		ew.print(svg)
		ew.println("<figcaption>" + html.EscapeString(figureCaptions[fig.Name]) + "</figcaption>")
		ew.println("</figure>")
	}
	ew.println("</div>")
	return nil
}

// inlineSVG turns a standalone SVG document into an element for an HTML
// page: it drops the XML declaration and comments before the svg element
// and labels the element with title for screen readers.
func inlineSVG(doc []byte, title string) (string, error) {
	s := string(doc)
	i := strings.Index(s, "<svg")
	if i < 0 {
		return "", fmt.Errorf("the SVG writer produced no svg element")
	}
	s = s[i:]
	s = strings.Replace(s, "<svg", `<svg role="img" aria-label="`+html.EscapeString(title)+`"`, 1)
	return s, nil
}

// htmlLayerColumns are the layer table's columns with the ε source after
// the ε column.
func htmlLayerColumns(opt analysis.Optimizer) []Column {
	cols := layerColumns(opt)
	out := make([]Column, 0, len(cols)+1)
	for _, c := range cols {
		out = append(out, c)
		if c.Header == "eps" {
			out = append(out, Column{Header: "eps source", Align: AlignLeft, Legend: "where ε came from: file (stored in the checkpoint), flag (--eps) or default (PyTorch's 1e-5)"})
		}
	}
	return out
}

// newHTMLLayerTable returns the layer table of NewLayerTable with an
// ε-source column after the ε column.
func newHTMLLayerTable(m *analysis.ModelReport, opt analysis.Optimizer) *Table {
	t := NewLayerTable(m, opt)
	epsCol := -1
	for i, c := range t.Columns {
		if c.Header == "eps" {
			epsCol = i
		}
	}
	sources := make([]string, len(m.Layers))
	for i, l := range m.Layers {
		sources[i] = string(l.EpsSource)
	}
	t.insertColumn(epsCol+1, htmlLayerColumns(opt)[epsCol+1], sources)
	return t
}

// insertColumn inserts column c with cells at position i.
func (t *Table) insertColumn(i int, c Column, cells []string) {
	t.Columns = append(t.Columns[:i], append([]Column{c}, t.Columns[i:]...)...)
	for r := range t.Rows {
		t.Rows[r] = append(t.Rows[r][:i], append([]string{cells[r]}, t.Rows[r][i:]...)...)
	}
}

// writeHTMLTable writes t with the layer index as the first column and
// each row shaded by the layer's risk level.
func writeHTMLTable(ew *errWriter, t *Table, m *analysis.ModelReport) {
	esc := html.EscapeString
	ew.println("<table>")
	ew.print("<thead><tr><th>#</th>")
	for _, c := range t.Columns {
		ew.print("<th>" + esc(c.Header) + "</th>")
	}
	ew.println("</tr></thead>")
	ew.println("<tbody>")
	for r, row := range t.Rows {
		ew.print(fmt.Sprintf(`<tr class="%s"><td class="r">%s</td>`, esc(string(m.Layers[r].Risk.Level)), strconv.Itoa(r)))
		for i, cell := range row {
			class := "r"
			switch {
			case i == 0:
				class = "name"
			case t.Columns[i].Align == AlignLeft:
				class = ""
			}
			ew.print(fmt.Sprintf(`<td class="%s">%s</td>`, class, esc(cell)))
		}
		ew.println("</tr>")
	}
	ew.println("</tbody>")
	ew.println("</table>")
}
