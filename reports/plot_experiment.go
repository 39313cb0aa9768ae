package reports

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/experiment"
)

// Names of the figures of simulate and sweep, also the base names of the
// files SaveFigureDir writes.
const (
	// FigureLoss is the batch loss per step of every mode of a simulation.
	FigureLoss = "loss"
	// FigureRelativeUpdate is each block's ‖ΔW'‖/‖W'‖ per step, Deploy
	// against Eval and Tune.
	FigureRelativeUpdate = "relative-update"
	// FigureLRSweep is the final loss of each full-batch trial against its
	// learning rate, with the measured and predicted largest stable rates.
	FigureLRSweep = "lr-sweep"
)

// modeColors gives each block mode one Okabe–Ito color.
var modeColors = map[convbn.Mode]color.Color{
	convbn.Train: colorGrey, convbn.Eval: colorBlue, convbn.Tune: colorGreen, convbn.Deploy: colorVermillion,
}

// blockDashes are the dash patterns that distinguish blocks in the
// relative-update figure.
var blockDashes = [][]vg.Length{nil, {vg.Points(5), vg.Points(3)}, {vg.Points(1.5), vg.Points(2)}, {vg.Points(8), vg.Points(2), vg.Points(2), vg.Points(2)}}

// log10Points returns (x, log₁₀ y) for the finite, positive y.
func log10Points(xs, ys []float64) plotter.XYs {
	var pts plotter.XYs
	for i, y := range ys {
		if isFiniteFloat(y) && y > 0 {
			pts = append(pts, plotter.XY{X: xs[i], Y: math.Log10(y)})
		}
	}
	return pts
}

// NewSimulationFigures draws the loss and relative-update figures of sim
// for format (png, svg or pdf). Losses and updates are on log₁₀ axes; a
// diverged run's non-finite last loss is left out, and the legend names
// the step it diverged at.
func NewSimulationFigures(sim *experiment.Simulation, format string) ([]Figure, error) {
	if len(sim.Runs) == 0 {
		return nil, fmt.Errorf("no runs to plot")
	}
	tx := newFigureText(format)

	loss := newFigurePlot(tx, fmt.Sprintf("Fine-tuning loss per step (%s, η = %g)", sim.Config.Optimizer, sim.Config.LR), "step", "batch loss")
	loss.Y.Tick.Marker = log10Ticks{}
	for _, r := range sim.Runs {
		var xs, ys []float64
		for _, st := range r.Steps {
			xs, ys = append(xs, float64(st.Step)), append(ys, float64(st.Loss))
		}
		l, err := plotter.NewLine(log10Points(xs, ys))
		if err != nil {
			return nil, fmt.Errorf("loss figure, %s: %w", r.Mode, err)
		}
		l.LineStyle = line(modeColors[r.Mode], 1.5)
		name := r.Mode.String()
		if r.DivergedStep > 0 {
			name += fmt.Sprintf(" (diverged at step %d)", r.DivergedStep)
		}
		loss.Add(l)
		loss.Legend.Add(tx.s(name), l)
	}
	loss.Legend.Top = true

	upd := newFigurePlot(tx, "Relative update ‖ΔW'‖/‖W'‖ per block, fused coordinates", "step", "‖ΔW'‖/‖W'‖")
	upd.Y.Tick.Marker = log10Ticks{}
	for _, r := range sim.Runs {
		if r.Mode == convbn.Train {
			continue
		}
		if len(r.Steps) == 0 {
			continue
		}
		for b := range r.Steps[0].Layers {
			var xs, ys []float64
			for _, st := range r.Steps {
				if b < len(st.Layers) {
					xs, ys = append(xs, float64(st.Step)), append(ys, float64(st.Layers[b].RelativeUpdate))
				}
			}
			pts := log10Points(xs, ys)
			if len(pts) == 0 {
				continue
			}
			l, err := plotter.NewLine(pts)
			if err != nil {
				return nil, fmt.Errorf("relative-update figure, %s: %w", r.Mode, err)
			}
			l.LineStyle = line(modeColors[r.Mode], 1.2, blockDashes[b%len(blockDashes)]...)
			upd.Add(l)
			upd.Legend.Add(tx.s(r.Mode.String()+" "+r.Steps[0].Layers[b].Block), l)
		}
	}
	upd.Legend.Top = true

	return []Figure{
		{Name: FigureLoss, Title: loss.Title.Text, Plot: loss, Width: 7 * vg.Inch, Height: 4.5 * vg.Inch},
		{Name: FigureRelativeUpdate, Title: upd.Title.Text, Plot: upd, Width: 7 * vg.Inch, Height: 4.5 * vg.Inch},
	}, nil
}

// NewSweepFigure draws the final loss of every full-batch trial of gd
// against its learning rate, one series per mode, with vertical lines at
// each mode's measured η* (solid) and predicted 2/λ_max (dashed). Trials
// whose final loss is not finite sit at the top edge.
func NewSweepFigure(gd *experiment.GDSweep, format string) (Figure, error) {
	tx := newFigureText(format)
	p := newFigurePlot(tx, "Full-batch GD: final loss against learning rate", "learning rate η", "final loss")
	p.X.Tick.Marker = log10Ticks{}
	p.Y.Tick.Marker = log10Ticks{}

	top, bottom := math.Inf(-1), math.Inf(1)
	for _, m := range gd.Modes {
		for _, t := range m.Trials {
			if v := float64(t.FinalLoss); isFiniteFloat(v) && v > 0 {
				top, bottom = math.Max(top, math.Log10(v)), math.Min(bottom, math.Log10(v))
			}
		}
	}
	if math.IsInf(top, -1) {
		top, bottom = 1, 0
	}
	predicted := map[string]float64{"eval": float64(gd.PredictedEval), "deploy": float64(gd.PredictedDeploy)}
	for _, m := range gd.Modes {
		mode := convbn.Eval
		if m.Mode == "deploy" {
			mode = convbn.Deploy
		}
		c := modeColors[mode]
		var pts, edge plotter.XYs
		for _, t := range m.Trials {
			v := float64(t.FinalLoss)
			if isFiniteFloat(v) && v > 0 {
				pts = append(pts, plotter.XY{X: math.Log10(t.LR), Y: math.Log10(v)})
			} else {
				edge = append(edge, plotter.XY{X: math.Log10(t.LR), Y: top})
			}
		}
		if len(pts) > 0 {
			s, err := plotter.NewScatter(pts)
			if err != nil {
				return Figure{}, err
			}
			s.GlyphStyle = glyph(draw.CircleGlyph{}, c, 3)
			p.Add(s)
			p.Legend.Add(tx.s(m.Mode+" trials"), s)
		}
		if len(edge) > 0 {
			s, err := edgeScatter(edge, glyph(draw.TriangleGlyph{}, c, 3))
			if err != nil {
				return Figure{}, err
			}
			p.Add(s)
			p.Legend.Add(tx.s(fmt.Sprintf("%s: %d trials with a non-finite loss", m.Mode, len(edge))), s)
		}
		for _, v := range []struct {
			x      float64
			label  string
			dashes []vg.Length
		}{
			{float64(m.MaxRate), "measured η*", nil},
			{predicted[m.Mode], "2/λ_max", []vg.Length{vg.Points(4), vg.Points(3)}},
		} {
			if !isFiniteFloat(v.x) || v.x <= 0 {
				continue
			}
			l, err := plotter.NewLine(plotter.XYs{{X: math.Log10(v.x), Y: bottom}, {X: math.Log10(v.x), Y: top}})
			if err != nil {
				return Figure{}, err
			}
			l.LineStyle = line(c, 1.2, v.dashes...)
			p.Add(l)
			p.Legend.Add(tx.s(fmt.Sprintf("%s %s = %.3g", m.Mode, v.label, v.x)), l)
		}
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Title.Text = tx.s(fmt.Sprintf("Full-batch GD: final loss against η\nη*_Deploy/η*_Eval measured %.3g, Hessian %.3g, bound [%.2g, %.2g]",
		float64(gd.MeasuredRatio), float64(gd.HessianRatio), float64(gd.BoundLow), float64(gd.BoundHigh)))
	return Figure{Name: FigureLRSweep, Title: p.Title.Text, Plot: p, Width: 8 * vg.Inch, Height: 5 * vg.Inch}, nil
}
