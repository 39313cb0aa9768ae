package reports

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/cmpimg"
	"gonum.org/v1/plot/vg"

	"github.com/convbn-diag/convbn-diag/analysis"
	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/examples"
)

// goldenDelta is cmpimg's normalized color tolerance for golden figures:
// it absorbs antialiasing differences between platforms, not changed
// marks or labels.
const goldenDelta = 0.02

// flagsModel returns the analysis of the built-in "flags" example.
func flagsModel(t testing.TB, opt analysis.Optimizer) (*analysis.ModelReport, analysis.Options) {
	t.Helper()
	f, err := examples.Open("flags")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	results := make([]convbn.Result, len(f.Models))
	for i, m := range f.Models {
		r, err := convbn.FindPairs(m, f.Metadata, convbn.Options{})
		if err != nil {
			t.Fatal(err)
		}
		results[i] = *r
	}
	opts := analysis.DefaultOptions()
	opts.Optimizer = opt
	fr, err := analysis.AnalyzeFile(f, results, opts)
	if err != nil {
		t.Fatal(err)
	}
	return fr.Models[0], opts
}

func TestFigureGoldens(t *testing.T) {
	m, opts := flagsModel(t, analysis.SGD)
	figs, err := NewFigures(m, opts, "png")
	if err != nil {
		t.Fatal(err)
	}
	if len(figs) != len(FigureNames) {
		t.Fatalf("NewFigures returned %d figures, want %d", len(figs), len(FigureNames))
	}
	for i, f := range figs {
		if f.Name != FigureNames[i] {
			t.Errorf("figure %d is named %q, want %q", i, f.Name, FigureNames[i])
		}
		var buf bytes.Buffer
		if err := WriteFigure(&buf, f, "png"); err != nil {
			t.Fatalf("write %s: %v", f.Name, err)
		}
		checkGolden(t, f.Name+".png", buf.Bytes())
	}

	var buf bytes.Buffer
	if err := WriteCombined(&buf, figs, "png"); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "combined.png", buf.Bytes())
}

// checkGolden compares got with testdata/NAME_golden.EXT, or rewrites the
// golden file with -regen, the flag that gonum.org/v1/plot/cmpimg defines.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	ext := filepath.Ext(name)
	golden := filepath.Join("testdata", strings.TrimSuffix(name, ext)+"_golden"+ext)
	if *cmpimg.GenerateTestData {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./reports -run TestFigureGoldens -regen to create it)", err)
	}
	ok, err := cmpimg.EqualApprox(strings.TrimPrefix(ext, "."), got, want, goldenDelta)
	if err != nil {
		t.Fatalf("compare %s: %v", name, err)
	}
	if !ok {
		out := filepath.Join(os.TempDir(), "convbn-diag-"+name)
		if err := os.WriteFile(out, got, 0o644); err != nil {
			t.Log(err)
		}
		t.Errorf("%s differs from %s beyond delta %g; the new image is %s (run with -regen if the change is intended)", name, golden, goldenDelta, out)
	}
}

// manyLayersModel returns a model of n layers of 8 channels each, with
// |ω| spread over four decades and a dead channel every tenth layer.
func manyLayersModel(t *testing.T, n int) (*analysis.ModelReport, analysis.Options) {
	t.Helper()
	var result convbn.Result
	for i := range n {
		gamma := make([]float64, 8)
		variance := make([]float64, 8)
		for c := range gamma {
			gamma[c] = math.Pow(10, -2+4*float64((i*8+c)%37)/36)
			variance[c] = 1 + float64(c)
		}
		if i%10 == 0 {
			gamma[0] = 0
		}
		name := fmt.Sprintf("blocks.%d", i)
		result.Pairs = append(result.Pairs, newPair(name+".conv", name+".bn", gamma, variance, false))
	}
	f := &checkpoint.File{Path: "many.pt", Models: []*checkpoint.Model{{}}}
	opts := analysis.DefaultOptions()
	fr, err := analysis.AnalyzeFile(f, []convbn.Result{result}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return fr.Models[0], opts
}

func TestFiguresManyLayers(t *testing.T) {
	m, opts := manyLayersModel(t, 200)
	figs, err := NewFigures(m, opts, "png")
	if err != nil {
		t.Fatal(err)
	}
	ticks := layerTicks{n: 200}.Ticks(-0.7, 199.7)
	labels := 0
	for _, tk := range ticks {
		if tk.Label != "" {
			labels++
		}
	}
	if labels > 21 {
		t.Errorf("200 layers get %d labelled ticks, want at most 21", labels)
	}
	for _, f := range figs {
		if f.Width > 16*vg.Inch {
			t.Errorf("%s is %v wide, more than 16 inches", f.Name, f.Width)
		}
		var buf bytes.Buffer
		if err := WriteFigure(&buf, f, "png"); err != nil {
			t.Errorf("write %s: %v", f.Name, err)
		}
	}
	if dir := os.Getenv("CONVBN_DIAG_FIGURE_DIR"); dir != "" {
		if _, err := SaveFigureDir(dir, "many-", figs, "png"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLog10TickLabels(t *testing.T) {
	want := map[float64]string{-5: "1e-5", -3: "0.001", -1: "0.1", 0: "1", 2: "100", 3: "1000", 4: "1e4"}
	for _, tk := range (log10Ticks{}).Ticks(-5.2, 4.3) {
		if tk.Label == "" {
			continue
		}
		if w, ok := want[tk.Value]; ok && tk.Label != w {
			t.Errorf("tick at 10^%g is labelled %q, want %q", tk.Value, tk.Label, w)
		}
		if strings.Contains(tk.Label, "99999") || strings.Contains(tk.Label, "00001") {
			t.Errorf("tick label %q shows rounding noise", tk.Label)
		}
	}
}
