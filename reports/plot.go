package reports

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgpdf"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/convbn-diag/convbn-diag/analysis"
	"github.com/convbn-diag/convbn-diag/internal/atomicfile"
)

// Figure names, which are also the base names of the files that
// SaveFigureDir writes.
const (
	// FigureOmegaBox is the per-layer box plot of log|ω|.
	FigureOmegaBox = "omega-box"
	// FigureDistortion is the per-layer largest and median distortion D
	// with the risk thresholds.
	FigureDistortion = "distortion"
	// FigureOmegaHist is the histogram of log₁₀|ω| over all channels.
	FigureOmegaHist = "omega-hist"
	// FigureGammaVariance is the scatter of log|γ| against −½·log(σ²+ε).
	FigureGammaVariance = "gamma-variance"
)

// FigureNames lists the figures in the order NewFigures returns them.
var FigureNames = []string{FigureOmegaBox, FigureDistortion, FigureOmegaHist, FigureGammaVariance}

// FigureFormats lists the file formats figures can be written in.
var FigureFormats = []string{"png", "svg", "pdf"}

// Figure is one plot of a model's analysis with the size it is drawn at.
type Figure struct {
	Name  string // one of FigureNames
	Title string
	Plot  *plot.Plot

	Width, Height vg.Length
}

// pngDPI is the resolution of PNG figures: 1 pt is 1.5 pixels.
const pngDPI = 108

// FigureFormat returns the figure format that the extension of path
// names: png, svg or pdf.
func FigureFormat(path string) (string, error) {
	ext := strings.ToLower(strings.TrimPrefix(filepath.Ext(path), "."))
	for _, f := range FigureFormats {
		if ext == f {
			return f, nil
		}
	}
	return "", fmt.Errorf("invalid figure file name %q: end it in .png, .svg or .pdf to choose the format", path)
}

// NewFigures draws every figure of m, in the order of FigureNames. The
// distortion figure uses opts.Optimizer and opts.Thresholds. format is the
// format the figures will be written in: for "pdf" the labels spell Greek
// letters and math signs out ("omega", ">="), because gonum/plot's PDF
// backend encodes text in code page 1252, which has no Greek.
func NewFigures(m *analysis.ModelReport, opts analysis.Options, format string) ([]Figure, error) {
	if len(m.Layers) == 0 {
		return nil, fmt.Errorf("no Conv→BatchNorm layers to plot")
	}
	tx := newFigureText(format)
	builders := []func(*analysis.ModelReport, analysis.Options, figureText) (Figure, error){
		newOmegaBoxFigure,
		newDistortionFigure,
		newOmegaHistFigure,
		newGammaVarianceFigure,
	}
	figs := make([]Figure, 0, len(builders))
	for _, build := range builders {
		f, err := build(m, opts, tx)
		if err != nil {
			return nil, err
		}
		figs = append(figs, f)
	}
	return figs, nil
}

// WriteFigure draws f in format (png, svg or pdf) and writes it to w.
func WriteFigure(w io.Writer, f Figure, format string) error {
	return writeCanvas(w, f.Width, f.Height, format, func(dc draw.Canvas) {
		f.Plot.Draw(dc)
	})
}

// WriteCombined draws figs as one image, two figures per row, and writes
// it to w in format (png, svg or pdf).
func WriteCombined(w io.Writer, figs []Figure, format string) error {
	if len(figs) == 0 {
		return fmt.Errorf("no figures to write")
	}
	const cols = 2
	rows := (len(figs) + cols - 1) / cols
	var tileW, tileH vg.Length
	for _, f := range figs {
		tileW, tileH = max(tileW, f.Width), max(tileH, f.Height)
	}
	pad := vg.Points(12)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: pad, PadY: pad, PadTop: pad, PadBottom: pad, PadLeft: pad, PadRight: pad}
	width := vg.Length(cols)*tileW + vg.Length(cols+1)*pad
	height := vg.Length(rows)*tileH + vg.Length(rows+1)*pad
	return writeCanvas(w, width, height, format, func(dc draw.Canvas) {
		for i, f := range figs {
			f.Plot.Draw(tiles.At(dc, i%cols, i/cols))
		}
	})
}

// writeCanvas makes a canvas of format, lets paint draw on it and writes
// it to w. A panic inside gonum/plot's backends, which they raise for
// failures such as an unwritable temporary folder, becomes an error.
func writeCanvas(w io.Writer, width, height vg.Length, format string, paint func(draw.Canvas)) (err error) {
	var c vg.CanvasWriterTo
	switch format {
	case "png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(pngDPI))}
	case "svg":
		c = vgsvg.New(width, height)
	case "pdf":
		// vgpdf converts each font through files in a new folder under
		// os.TempDir and panics when it cannot create one.
		dir, err := os.MkdirTemp("", "convbn-diag-pdf-")
		if err != nil {
			return fmt.Errorf("write PDF figure: the PDF writer needs a writable temporary folder (set TMPDIR to one): %w", err)
		}
		os.RemoveAll(dir)
		c = vgpdf.New(width, height)
	default:
		return fmt.Errorf("invalid figure format %q: use png, svg or pdf", format)
	}

	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("draw %s figure: %v", format, r)
		}
	}()
	paint(draw.New(c))
	// Render to memory first, so that a failure leaves w untouched.
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return fmt.Errorf("encode %s figure: %w", format, err)
	}
	_, err = buf.WriteTo(w)
	return err
}

// SaveCombined writes figs as one image to path, in the format its
// extension names. path is replaced only when the whole image was written.
func SaveCombined(path string, figs []Figure) error {
	format, err := FigureFormat(path)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, func(w io.Writer) error {
		if err := WriteCombined(w, figs, format); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	})
}

// SaveFigureDir writes each figure to dir as prefix + name + "." + format,
// creating dir when needed, and returns the paths written. Each file is
// replaced only when complete; on an error the files already written stay.
func SaveFigureDir(dir, prefix string, figs []Figure, format string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create figure folder: %w", err)
	}
	var paths []string
	for _, f := range figs {
		path := filepath.Join(dir, prefix+f.Name+"."+format)
		err := atomicfile.Write(path, func(w io.Writer) error {
			if err := WriteFigure(w, f, format); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			return nil
		})
		if err != nil {
			return paths, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// LayerKey returns one line per layer, "index  conv  (BN)", the key to the
// layer indices on the figures' x axes.
func LayerKey(m *analysis.ModelReport) string {
	var b strings.Builder
	width := len(fmt.Sprint(len(m.Layers) - 1))
	for i, l := range m.Layers {
		fmt.Fprintf(&b, "%*d  %s  (BatchNorm %s)\n", width, i, l.Conv, l.BN)
	}
	return b.String()
}
