package reports

import (
	"fmt"
	"math"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/convbn-diag/convbn-diag/analysis"
)

// figureHeight is the height of every single figure.
const figureHeight = 4.8 * vg.Inch

// legendRoom is the share of a figure's data range added above the data
// so that the legend, drawn in the top left corner, does not cover it.
const legendRoom = 0.32

func isFiniteFloat(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// valueRange widens [lo, hi] to span at least minSpan, pads it by pad on
// both sides and adds legendRoom of the span above for the legend.
func valueRange(lo, hi, minSpan, pad float64) (float64, float64) {
	if !(lo <= hi) {
		lo, hi = -1, 1
	}
	if hi-lo < minSpan {
		mid := (lo + hi) / 2
		lo, hi = mid-minSpan/2, mid+minSpan/2
	}
	lo, hi = lo-pad, hi+pad
	return lo, hi + legendRoom*(hi-lo)
}

// edgeScatter returns a scatter of pts drawn with sty, for the marks that
// callers place on an axis edge.
func edgeScatter(pts plotter.XYs, sty draw.GlyphStyle) (*plotter.Scatter, error) {
	s, err := plotter.NewScatter(pts)
	if err != nil {
		return nil, err
	}
	s.GlyphStyle = sty
	return s, nil
}

// newOmegaBoxFigure draws one box per layer of log10|ω| over the channels
// with finite, nonzero ω. Dead channels are marked on the bottom edge and
// channels without a finite ω on the top edge, one mark per layer, with
// the channel counts in the legend.
func newOmegaBoxFigure(m *analysis.ModelReport, _ analysis.Options, tx figureText) (Figure, error) {
	n := len(m.Layers)
	width := layerAxisWidth(n)
	p := newFigurePlot(tx, "Per-layer distribution of |ω| = |γ|/√(σ²+ε)",
		"layer index in network order (names in the layer key)",
		"|ω| (log scale; boxes are quartiles of log10|ω|)")

	boxWidth := min(vg.Points(18), (width-vg.Inch)/vg.Length(n)*0.7)
	lo, hi := math.Inf(1), math.Inf(-1)
	var deadXs, nonFiniteXs []float64
	dead, nonFinite := 0, 0
	for i, l := range m.Layers {
		var logs plotter.Values
		layerDead, layerNonFinite := 0, 0
		for c := range l.Channels {
			a := math.Abs(l.Channels[c].Omega)
			switch {
			case a == 0:
				layerDead++
			case isFiniteFloat(a):
				logs = append(logs, math.Log10(a))
			default:
				layerNonFinite++
			}
		}
		dead += layerDead
		nonFinite += layerNonFinite
		if layerDead > 0 {
			deadXs = append(deadXs, float64(i))
		}
		if layerNonFinite > 0 {
			nonFiniteXs = append(nonFiniteXs, float64(i))
		}
		if len(logs) == 0 {
			continue
		}
		box, err := plotter.NewBoxPlot(boxWidth, float64(i), logs)
		if err != nil {
			return Figure{}, fmt.Errorf("box plot of layer %s: %w", l.Conv, err)
		}
		box.FillColor = colorSkyBlue
		box.BoxStyle = line(colorBlue, 0.8)
		box.WhiskerStyle = line(colorBlue, 0.8)
		box.MedianStyle = line(colorBlack, 1.4)
		box.GlyphStyle = glyph(draw.CircleGlyph{}, colorBlue, 1.3)
		box.CapWidth = boxWidth / 2
		p.Add(box)
		for _, v := range logs {
			lo, hi = min(lo, v), max(hi, v)
		}
	}

	yMin, yMax := valueRange(lo, hi, 2, 0.25)
	marks := []struct {
		xs    []float64
		y     float64
		sty   draw.GlyphStyle
		label string
	}{
		{deadXs, yMin, glyph(draw.CrossGlyph{}, colorVermillion, 4), "dead, ω = 0: " + countOf(dead, "channel") + " (marked on the bottom edge)"},
		{nonFiniteXs, yMax, glyph(draw.TriangleGlyph{}, colorPurple, 4), "no finite ω: " + countOf(nonFinite, "channel") + " (marked on the top edge)"},
	}
	for _, mk := range marks {
		pts := make(plotter.XYs, len(mk.xs))
		for i, x := range mk.xs {
			pts[i] = plotter.XY{X: x, Y: mk.y}
		}
		s, err := edgeScatter(pts, mk.sty)
		if err != nil {
			return Figure{}, err
		}
		p.Add(s)
		p.Legend.Add(tx.s(mk.label), s)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.YOffs = -vg.Points(8)

	p.X.Min, p.X.Max = -0.7, float64(n)-0.3
	p.X.Tick.Marker = layerTicks{n: n}
	p.Y.Min, p.Y.Max = yMin, yMax
	p.Y.Tick.Marker = log10Ticks{}
	p.Add(plotter.NewGrid())
	return Figure{Name: FigureOmegaBox, Title: p.Title.Text, Plot: p, Width: width, Height: figureHeight}, nil
}

// newDistortionFigure draws each layer's largest and median finite
// distortion D of the selected optimizer with the six risk limits as
// horizontal lines.
func newDistortionFigure(m *analysis.ModelReport, opts analysis.Options, tx figureText) (Figure, error) {
	n := len(m.Layers)
	width := layerAxisWidth(n)
	dName := "D_SGD = 1/ω²"
	if opts.Optimizer == analysis.Adam {
		dName = "D_Adam = 1/|ω|"
	}
	p := newFigurePlot(tx, "Per-layer Deploy-mode distortion "+dName,
		"layer index in network order (names in the layer key)",
		"D = Deploy step / Eval step (log scale)")

	var maxPts, medPts plotter.XYs
	var deadXs []float64
	deadLayers := 0
	th := opts.Thresholds
	lo, hi := math.Log10(th.StallHigh), math.Log10(th.OvershootHigh)
	for i, l := range m.Layers {
		maxD, medD := l.Stats.Max(opts.Optimizer), l.Stats.Median(opts.Optimizer)
		if isFiniteFloat(maxD) && maxD > 0 {
			maxPts = append(maxPts, plotter.XY{X: float64(i), Y: math.Log10(maxD)})
			lo, hi = min(lo, math.Log10(maxD)), max(hi, math.Log10(maxD))
		}
		if isFiniteFloat(medD) && medD > 0 {
			medPts = append(medPts, plotter.XY{X: float64(i), Y: math.Log10(medD)})
			lo, hi = min(lo, math.Log10(medD)), max(hi, math.Log10(medD))
		}
		if l.Stats.Dead > 0 {
			deadXs = append(deadXs, float64(i))
			deadLayers++
		}
	}
	yMin, yMax := valueRange(lo, hi, 2, 0.4)

	// Risk limits: overshoot in vermillion, stall in purple; the dash
	// pattern gives the level.
	limits := []struct {
		value float64
		side  string
		level string
		cmp   string
	}{
		{th.OvershootHigh, "overshoot", "high", "≥"},
		{th.OvershootMedium, "overshoot", "medium", "≥"},
		{th.OvershootLow, "overshoot", "low", "≥"},
		{th.StallLow, "stall", "low", "≤"},
		{th.StallMedium, "stall", "medium", "≤"},
		{th.StallHigh, "stall", "high", "≤"},
	}
	// The limits' labels sit in a margin right of the last layer, which
	// the x range is widened by, so that they never cover data.
	labelText := make([]string, len(limits))
	labelW := vg.Length(0)
	for i, lim := range limits {
		labelText[i] = tx.s(fmt.Sprintf("%s %s: %s D %s %s", lim.side, lim.level, sideStat(lim.side), lim.cmp, FormatCompact(lim.value)))
		labelW = max(labelW, labelStyle(8, colorBlack).Width(labelText[i])+vg.Points(8))
	}
	plotW := width - 1.2*vg.Inch
	xEnd := float64(n) - 0.3
	xMax := xEnd + (xEnd+0.7)*float64(labelW)/float64(plotW-labelW)

	var labels plotter.XYLabels
	var styles []text.Style
	for i, lim := range limits {
		c := colorVermillion
		if lim.side == "stall" {
			c = colorPurple
		}
		var dashes []vg.Length
		switch lim.level {
		case "medium":
			dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		case "low":
			dashes = []vg.Length{vg.Points(1.5), vg.Points(3)}
		}
		y := math.Log10(lim.value)
		l, err := plotter.NewLine(plotter.XYs{{X: -0.7, Y: y}, {X: xMax, Y: y}})
		if err != nil {
			return Figure{}, err
		}
		l.LineStyle = line(c, 1, dashes...)
		p.Add(l)
		labels.XYs = append(labels.XYs, plotter.XY{X: xMax, Y: y})
		labels.Labels = append(labels.Labels, labelText[i])
		sty := labelStyle(8, c)
		sty.XAlign = draw.XRight
		sty.YAlign = draw.YBottom
		styles = append(styles, sty)
	}
	lbl, err := plotter.NewLabels(labels)
	if err != nil {
		return Figure{}, err
	}
	lbl.TextStyle = styles
	lbl.Offset = vg.Point{X: -vg.Points(2), Y: vg.Points(1.5)}
	p.Add(lbl)

	maxLine, maxScatter, err := plotter.NewLinePoints(maxPts)
	if err != nil {
		return Figure{}, err
	}
	maxLine.LineStyle = line(colorBlue, 1)
	maxScatter.GlyphStyle = glyph(draw.CircleGlyph{}, colorBlue, 2.6)
	medLine, medScatter, err := plotter.NewLinePoints(medPts)
	if err != nil {
		return Figure{}, err
	}
	medLine.LineStyle = line(colorGreen, 1, vg.Points(4), vg.Points(2))
	medScatter.GlyphStyle = glyph(draw.SquareGlyph{}, colorGreen, 2.4)
	if n > 60 {
		maxScatter.GlyphStyle.Radius = vg.Points(1.6)
		medScatter.GlyphStyle.Radius = vg.Points(1.5)
	}
	p.Add(maxLine, maxScatter, medLine, medScatter)

	deadPts := make(plotter.XYs, len(deadXs))
	for i, x := range deadXs {
		deadPts[i] = plotter.XY{X: x, Y: yMax}
	}
	deadScatter, err := edgeScatter(deadPts, glyph(draw.CrossGlyph{}, colorVermillion, 4))
	if err != nil {
		return Figure{}, err
	}
	p.Add(deadScatter)

	p.Legend.Add(tx.s("largest finite D of the layer"), maxLine, maxScatter)
	p.Legend.Add(tx.s("median finite D of the layer"), medLine, medScatter)
	p.Legend.Add(tx.s("layers with a dead channel, D = ∞: "+countOf(deadLayers, "layer")+" (top edge)"), deadScatter)
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.YOffs = -vg.Points(8)

	p.X.Min, p.X.Max = -0.7, xMax
	p.X.Tick.Marker = layerTicks{n: n}
	p.Y.Min, p.Y.Max = yMin, yMax
	p.Y.Tick.Marker = log10Ticks{}
	p.Add(plotter.NewGrid())
	return Figure{Name: FigureDistortion, Title: p.Title.Text, Plot: p, Width: width, Height: figureHeight}, nil
}

// sideStat names the layer statistic a risk side compares with its limits.
func sideStat(side string) string {
	if side == "stall" {
		return "median"
	}
	return "largest"
}

// newOmegaHistFigure draws the histogram of log10|ω| over every channel
// with a finite, nonzero ω; the others are counted in the legend.
func newOmegaHistFigure(m *analysis.ModelReport, _ analysis.Options, tx figureText) (Figure, error) {
	var logs plotter.Values
	dead, nonFinite := 0, 0
	for _, l := range m.Layers {
		for c := range l.Channels {
			a := math.Abs(l.Channels[c].Omega)
			switch {
			case a == 0:
				dead++
			case isFiniteFloat(a):
				logs = append(logs, math.Log10(a))
			default:
				nonFinite++
			}
		}
	}
	p := newFigurePlot(tx, "Distribution of |ω| over all channels",
		"|ω| = |γ|/√(σ²+ε) (log scale; bins of equal width in log10|ω|)",
		"channels")

	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range logs {
		lo, hi = min(lo, v), max(hi, v)
	}
	var hist *plotter.Histogram
	if len(logs) > 0 {
		bins := min(max(int(math.Ceil(math.Sqrt(float64(len(logs))))), 10), 60)
		h, err := plotter.NewHist(logs, bins)
		if err != nil {
			return Figure{}, err
		}
		h.FillColor = colorSkyBlue
		h.LineStyle = line(colorBlue, 0.6)
		p.Add(h)
		hist = h
		p.Legend.Add(tx.s(fmt.Sprintf("channels with finite ω ≠ 0: %d", len(logs))), h)
	}
	xMin, xMax := lo-0.2, hi+0.2
	if !(xMin < xMax) || xMax-xMin < 1 {
		mid := 0.0
		if len(logs) > 0 {
			mid = (lo + hi) / 2
		}
		xMin, xMax = mid-0.5, mid+0.5
	}
	xMin, xMax = min(xMin, -0.2), max(xMax, 0.2)

	one, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 0, Y: 1}})
	if err != nil {
		return Figure{}, err
	}
	one.LineStyle = line(colorBlack, 1, vg.Points(5), vg.Points(3))
	p.Legend.Add(tx.s("|ω| = 1: Deploy and Eval steps agree"), one)
	p.Legend.Add(tx.s("dead, ω = 0: " + countOf(dead, "channel") + " (not in the histogram)"))
	p.Legend.Add(tx.s("no finite ω: " + countOf(nonFinite, "channel") + " (not in the histogram)"))
	// The legend goes on the side away from the |ω| = 1 line.
	p.Legend.Top, p.Legend.Left = true, -xMin > xMax

	p.X.Min, p.X.Max = xMin, xMax
	p.X.Tick.Marker = log10Ticks{}
	p.Y.Min = 0
	p.Y.Tick.Marker = plainTicks{}
	// The reference line spans the y range, which the tallest bin sets.
	yMax := 1.0
	if hist != nil {
		for _, bin := range hist.Bins {
			yMax = max(yMax, bin.Weight)
		}
	}
	p.Y.Max = yMax * (1 + legendRoom + 0.1)
	one.XYs[1].Y = p.Y.Max
	p.Add(one)
	return Figure{Name: FigureOmegaHist, Title: p.Title.Text, Plot: p, Width: 7 * vg.Inch, Height: figureHeight}, nil
}

// newGammaVarianceFigure draws each channel at x = log10|γ| and
// y = −½·log10(σ²+ε), so log10|ω| = x + y and the dashed diagonals are
// lines of constant |ω|. A channel far left has a small γ; a channel far
// down has a large variance. Dead channels (γ = 0) are marked on the left
// edge and channels with σ²+ε ≤ 0 on the bottom edge.
func newGammaVarianceFigure(m *analysis.ModelReport, opts analysis.Options, tx figureText) (Figure, error) {
	p := newFigurePlot(tx, "Where |ω| comes from: γ or the running variance",
		"log10|γ|  (BatchNorm weight; further left: smaller γ)",
		"−½·log10(σ²+ε) = log10 s  (lower: larger variance)")

	th := opts.Thresholds
	var over, stall, middle, deadPts, noVarPts plotter.XYs
	xLo, xHi, yLo, yHi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, l := range m.Layers {
		for c := range l.Channels {
			ch := &l.Channels[c]
			x, y := ch.LogAbsGamma/math.Ln10, ch.LogInvStd/math.Ln10
			switch {
			case math.IsInf(x, -1) && isFiniteFloat(y):
				deadPts = append(deadPts, plotter.XY{Y: y})
				yLo, yHi = min(yLo, y), max(yHi, y)
				continue
			case isFiniteFloat(x) && !isFiniteFloat(y):
				noVarPts = append(noVarPts, plotter.XY{X: x})
				xLo, xHi = min(xLo, x), max(xHi, x)
				continue
			case !isFiniteFloat(x) || !isFiniteFloat(y):
				continue
			}
			xLo, xHi, yLo, yHi = min(xLo, x), max(xHi, x), min(yLo, y), max(yHi, y)
			pt := plotter.XY{X: x, Y: y}
			d := ch.Distortion(opts.Optimizer)
			switch {
			case d >= th.OvershootMedium:
				over = append(over, pt)
			case d <= th.StallMedium:
				stall = append(stall, pt)
			default:
				middle = append(middle, pt)
			}
		}
	}
	xMin, xMax := paddedRange(xLo, xHi)
	yMin, yMax := valueRange(yLo, yHi, 1, 0.15)
	for i := range deadPts {
		deadPts[i].X = xMin
	}
	for i := range noVarPts {
		noVarPts[i].Y = yMin
	}

	// Lines of constant |ω|: x + y = k for every whole k the frame crosses,
	// each labelled along the line near its lower end. The label's angle
	// uses the data area's approximate size in points.
	const width, height = 7 * vg.Inch, figureHeight
	pxPerX := float64(width-vg.Inch) / (xMax - xMin)
	pxPerY := float64(height-vg.Inch) / (yMax - yMin)
	angle := -math.Atan(pxPerY / pxPerX)
	var labels plotter.XYLabels
	for k := math.Ceil(xMin + yMin); k <= math.Floor(xMax+yMax); k++ {
		x0, x1 := max(xMin, k-yMax), min(xMax, k-yMin)
		if x1-x0 < 0.15*(xMax-xMin) {
			continue
		}
		l, err := plotter.NewLine(plotter.XYs{{X: x0, Y: k - x0}, {X: x1, Y: k - x1}})
		if err != nil {
			return Figure{}, err
		}
		l.LineStyle = line(colorGrey, 0.7, vg.Points(4), vg.Points(3))
		p.Add(l)
		at := x1 - 0.04*(xMax-xMin)
		labels.XYs = append(labels.XYs, plotter.XY{X: at, Y: k - at})
		labels.Labels = append(labels.Labels, tx.s("|ω| = "+powerOfTenLabel(int(k))))
	}
	if len(labels.XYs) > 0 {
		lbl, err := plotter.NewLabels(labels)
		if err != nil {
			return Figure{}, err
		}
		for i := range lbl.TextStyle {
			lbl.TextStyle[i] = labelStyle(8, colorGrey)
			lbl.TextStyle[i].XAlign = draw.XRight
			lbl.TextStyle[i].YAlign = draw.YBottom
			lbl.TextStyle[i].Rotation = angle
		}
		lbl.Offset = vg.Point{Y: vg.Points(2)}
		p.Add(lbl)
	}

	dName := "D_SGD"
	if opts.Optimizer == analysis.Adam {
		dName = "D_Adam"
	}
	radius := 2.2
	if len(over)+len(stall)+len(middle) > 2000 {
		radius = 1.4
	}
	groups := []struct {
		pts   plotter.XYs
		sty   draw.GlyphStyle
		label string
	}{
		{middle, glyph(draw.CircleGlyph{}, colorGrey, radius), fmt.Sprintf("channel, %s between the medium limits: %d", dName, len(middle))},
		{stall, glyph(draw.SquareGlyph{}, colorBlue, radius), fmt.Sprintf("channel, %s ≤ %s (stalls): %d", dName, FormatCompact(th.StallMedium), len(stall))},
		{over, glyph(draw.CircleGlyph{}, colorVermillion, radius), fmt.Sprintf("channel, %s ≥ %s (overshoots): %d", dName, FormatCompact(th.OvershootMedium), len(over))},
		{deadPts, glyph(draw.CrossGlyph{}, colorVermillion, 4), "dead, γ = 0: " + countOf(len(deadPts), "channel") + " (left edge)"},
		{noVarPts, glyph(draw.TriangleGlyph{}, colorPurple, 4), "σ²+ε ≤ 0, no ω: " + countOf(len(noVarPts), "channel") + " (bottom edge)"},
	}
	for _, g := range groups {
		s, err := edgeScatter(g.pts, g.sty)
		if err != nil {
			return Figure{}, err
		}
		p.Add(s)
		p.Legend.Add(tx.s(g.label), s)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.YOffs = -vg.Points(6)

	p.X.Min, p.X.Max = xMin, xMax
	p.Y.Min, p.Y.Max = yMin, yMax
	p.X.Tick.Marker = plainTicks{}
	p.Y.Tick.Marker = plainTicks{}
	p.Add(plotter.NewGrid())
	return Figure{Name: FigureGammaVariance, Title: p.Title.Text, Plot: p, Width: width, Height: height}, nil
}

// paddedRange pads [lo, hi] by a tenth of its span, at least 0.25.
func paddedRange(lo, hi float64) (float64, float64) {
	if !(lo <= hi) {
		return -1, 1
	}
	pad := max(0.1*(hi-lo), 0.25)
	return lo - pad, hi + pad
}

// countOf writes n and noun, with an s for a count other than one.
func countOf(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
