package reports

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/cmpimg"

	"github.com/convbn-diag/convbn-diag/analysis"
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
