package reports

import (
	"image/color"
	"math"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// The Okabe–Ito palette, which stays distinguishable under the common
// forms of color blindness.
var (
	colorBlack      = color.RGBA{0, 0, 0, 255}
	colorOrange     = color.RGBA{230, 159, 0, 255}
	colorSkyBlue    = color.RGBA{86, 180, 233, 255}
	colorGreen      = color.RGBA{0, 158, 115, 255} // bluish green
	colorBlue       = color.RGBA{0, 114, 178, 255}
	colorVermillion = color.RGBA{213, 94, 0, 255}
	colorPurple     = color.RGBA{204, 121, 167, 255} // reddish purple
	colorGrey       = color.RGBA{153, 153, 153, 255}
)

// figureText spells the figures' labels for one output format.
type figureText struct {
	plain bool
}

func newFigureText(format string) figureText {
	return figureText{plain: format == "pdf"}
}

// plainReplacer spells out the characters that code page 1252, the text
// encoding of gonum/plot's PDF backend, lacks.
var plainReplacer = strings.NewReplacer(
	"ω", "omega", "γ", "gamma", "σ", "sigma", "ε", "eps", "μ", "mu",
	"−", "-", "≥", ">=", "≤", "<=", "∞", "inf", "₁₀", "10", "‖", "||", "→", "->", "…", "...", "√", "sqrt", "≠", "!=", "≈", "~",
)

// s returns label in the spelling of the output format.
func (t figureText) s(label string) string {
	if t.plain {
		return plainReplacer.Replace(label)
	}
	return label
}

// newFigurePlot returns a plot with the house title and axis styles.
func newFigurePlot(tx figureText, title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = tx.s(title)
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.Title.Padding = vg.Points(6)
	p.X.Label.Text = tx.s(xLabel)
	p.Y.Label.Text = tx.s(yLabel)
	p.X.Label.TextStyle.Font.Size = vg.Points(11)
	p.Y.Label.TextStyle.Font.Size = vg.Points(11)
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Legend.Padding = vg.Points(2)
	p.Legend.ThumbnailWidth = vg.Points(18)
	return p
}

// log10Ticks labels an axis whose values are log₁₀ of a quantity with the
// quantity itself: major ticks at powers of ten ("0.01", "1", "1e5") and,
// across at most 6 decades, minor ticks at 2…9 times a power.
//
// It replaces plot.LogTicks, whose labels print rounding noise such as
// 9.999999999999999e-05.
type log10Ticks struct{}

// Ticks returns the ticks between lo and hi, which are log₁₀ values.
func (log10Ticks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi >= lo) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return nil
	}
	first, last := int(math.Ceil(lo-1e-9)), int(math.Floor(hi+1e-9))
	step := 1
	for (last-first)/step > 8 {
		step++
	}
	var ticks []plot.Tick
	for e := first; e <= last; e++ {
		if (e-first)%step == 0 {
			ticks = append(ticks, plot.Tick{Value: float64(e), Label: powerOfTenLabel(e)})
		} else {
			ticks = append(ticks, plot.Tick{Value: float64(e)})
		}
	}
	if hi-lo <= 6 {
		for e := int(math.Floor(lo)); e <= last; e++ {
			for k := 2; k <= 9; k++ {
				v := float64(e) + math.Log10(float64(k))
				if v >= lo && v <= hi {
					ticks = append(ticks, plot.Tick{Value: v})
				}
			}
		}
	}
	return ticks
}

// powerOfTenLabel writes 10^e as a decimal from 0.001 to 1000 and as
// "1e5" or "1e-5" beyond.
func powerOfTenLabel(e int) string {
	if e >= -3 && e <= 3 {
		return strconv.FormatFloat(math.Pow(10, float64(e)), 'f', -1, 64)
	}
	return "1e" + strconv.Itoa(e)
}

// layerTicks labels a layer-index axis at whole indices, thinned to at
// most about 20 labels, with unlabelled ticks at every layer when there
// are at most 100.
type layerTicks struct {
	n int // number of layers
}

// Ticks returns the ticks of the layer indices between lo and hi.
func (t layerTicks) Ticks(lo, hi float64) []plot.Tick {
	step := 1
	for _, s := range []int{1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000} {
		step = s
		if t.n/s <= 20 {
			break
		}
	}
	var ticks []plot.Tick
	for i := max(0, int(math.Ceil(lo))); i < t.n && float64(i) <= hi; i++ {
		switch {
		case i%step == 0:
			ticks = append(ticks, plot.Tick{Value: float64(i), Label: strconv.Itoa(i)})
		case t.n <= 100:
			ticks = append(ticks, plot.Tick{Value: float64(i)})
		}
	}
	return ticks
}

// plainTicks labels an axis with gonum/plot's default tick positions and
// labels in FormatCompact's short form.
type plainTicks struct{}

// Ticks returns the default ticks with compact labels.
func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			v := ticks[i].Value
			if math.Abs(v) < 1e-9*math.Max(math.Abs(lo), math.Abs(hi)) {
				v = 0
			}
			ticks[i].Label = FormatCompact(v)
		}
	}
	return ticks
}

// layerAxisWidth returns a figure width that leaves about 6 pt per layer,
// between 7 and 16 inches.
func layerAxisWidth(layers int) vg.Length {
	w := 3*vg.Inch + vg.Length(layers)*vg.Points(6)
	return min(max(w, 7*vg.Inch), 16*vg.Inch)
}

// glyph returns a glyph style of shape, color and radius in points.
func glyph(shape draw.GlyphDrawer, c color.Color, radius float64) draw.GlyphStyle {
	return draw.GlyphStyle{Shape: shape, Color: c, Radius: vg.Points(radius)}
}

// line returns a line style of color, width in points and dash pattern.
func line(c color.Color, width float64, dashes ...vg.Length) draw.LineStyle {
	return draw.LineStyle{Color: c, Width: vg.Points(width), Dashes: dashes}
}

// labelStyle returns a left-aligned text style of size points and color
// c in the plot's default font.
func labelStyle(size float64, c color.Color) text.Style {
	return text.Style{
		Color:   c,
		Font:    font.From(plot.DefaultFont, vg.Points(size)),
		XAlign:  draw.XLeft,
		YAlign:  draw.YCenter,
		Handler: plot.DefaultTextHandler,
	}
}
