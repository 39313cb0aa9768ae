package reports

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/analysis"
	"github.com/convbn-diag/convbn-diag/convbn"
)

func layerByName(t *testing.T, m *analysis.ModelReport, name string) *analysis.Layer {
	t.Helper()
	i, err := FindLayer(m.Layers, name)
	if err != nil {
		t.Fatal(err)
	}
	return m.Layers[i]
}

func TestExplainNumbersFromInputs(t *testing.T) {
	m, opts := flagsModel(t, analysis.SGD)
	l := layerByName(t, m, "features.6")
	var buf bytes.Buffer
	if err := WriteExplanation(&buf, "flags.pt", l, ExplainOptions{Analysis: opts, Channels: []int{14, 3}}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, c := range []int{14, 3} {
		ch := l.Channels[c]
		// Recompute from γ, σ² and ε alone.
		s := 1 / math.Sqrt(ch.RunningVar+ch.Eps)
		omega := ch.Gamma * s
		for name, want := range map[string]float64{
			"s": s, "ω": omega, "D_SGD": 1 / (omega * omega), "D_Adam": 1 / math.Abs(omega),
			"b'": ch.Beta + omega*(ch.ConvBias-ch.RunningMean),
		} {
			if !strings.Contains(out, ExplainNumber(want)) {
				t.Errorf("channel %d: explanation lacks %s = %s", c, name, ExplainNumber(want))
			}
		}
	}
	if !strings.Contains(out, "Verdict for features.6: risk high (overshoot)") {
		t.Errorf("explanation lacks the verdict line:\n%s", out)
	}
	if !strings.Contains(out, "stored in the checkpoint") {
		t.Errorf("explanation does not say where ε came from")
	}
}

func TestExplainInvalidChannel(t *testing.T) {
	m, opts := flagsModel(t, analysis.SGD)
	l := layerByName(t, m, "features.0")
	err := WriteExplanation(&bytes.Buffer{}, "flags.pt", l, ExplainOptions{Analysis: opts, Channels: []int{99}})
	if err == nil || !strings.Contains(err.Error(), "channel 99") {
		t.Errorf("channel 99 of a 16-channel layer: got error %v, want one naming channel 99", err)
	}
}

func TestExtremeChannels(t *testing.T) {
	m, _ := flagsModel(t, analysis.SGD)
	l := layerByName(t, m, "features.6")
	got := ExtremeChannels(l, analysis.SGD)
	argMax, argMin := -1, -1
	for c, ch := range l.Channels {
		if d := ch.DistortionSGD; isFiniteFloat(d) {
			if argMax < 0 || d > l.Channels[argMax].DistortionSGD {
				argMax = c
			}
			if argMin < 0 || d < l.Channels[argMin].DistortionSGD {
				argMin = c
			}
		}
	}
	if len(got) < 2 || got[0] != argMax || got[1] != argMin {
		t.Fatalf("ExtremeChannels = %v, want %d (largest D) and %d (smallest D) first", got, argMax, argMin)
	}
	for c, ch := range l.Channels {
		if len(ch.Flags) == 0 {
			continue
		}
		found := false
		for _, g := range got {
			found = found || g == c
		}
		if !found {
			t.Errorf("flagged channel %d (%v) is missing from %v", c, ch.Flags, got)
		}
	}
}

func TestFindLayer(t *testing.T) {
	m, _ := flagsModel(t, analysis.SGD)
	for _, name := range []string{"features.6", "features.7"} {
		i, err := FindLayer(m.Layers, name)
		if err != nil || m.Layers[i].Conv != "features.6" {
			t.Errorf("FindLayer(%q) = %d, %v; want the layer of conv features.6", name, i, err)
		}
	}
	_, err := FindLayer(m.Layers, "feature.6")
	if err == nil || !strings.Contains(err.Error(), "close matches: features.6") {
		t.Errorf("FindLayer of a misspelt name: got %v, want features.6 first among close matches", err)
	}
	_, err = FindLayer(m.Layers, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz")
	if err == nil || strings.Contains(err.Error(), "close matches") {
		t.Errorf("FindLayer of an unrelated name: got %v, want an error without close matches", err)
	}
}

// memoryLayer returns a layer with a 32x16x3x3 conv weight.
func memoryLayer(transposed bool) *analysis.Layer {
	l := &analysis.Layer{Conv: "conv", BN: "bn", WeightShape: []int{32, 16, 3, 3}, Groups: 1, Channels: make([]analysis.Channel, 32)}
	if transposed {
		l.WeightShape = []int{16, 32, 3, 3}
		l.Transposed = true
	}
	return l
}

func TestEstimateMemory(t *testing.T) {
	stored := memoryLayer(false)
	stored.Stride, stored.Padding, stored.Dilation = []int{2, 2}, []int{1, 1}, []int{1, 1}
	stored.GeometrySource = convbn.SourceFile

	transposed := memoryLayer(true)
	transposed.Stride, transposed.Padding = []int{2}, []int{1}
	transposed.GeometrySource = convbn.SourceFile

	cases := []struct {
		name     string
		layer    *analysis.Layer
		in       MemoryInput
		x, y, w  int64 // elements, worked out by hand
		bytes    int64
		geometry string
	}{
		// (32 + 2 − 2 − 1)/2 + 1 = 16.
		{"stored geometry", stored, MemoryInput{Batch: 2, Height: 32, Width: 32, DType: "float16"},
			2 * 16 * 32 * 32, 2 * 32 * 16 * 16, 32 * 16 * 9, 2, "stored"},
		// Stride 1, same padding: the output keeps 20x30.
		{"assumed geometry", memoryLayer(false), MemoryInput{Batch: 1, Height: 20, Width: 30, DType: "float32"},
			16 * 20 * 30, 32 * 20 * 30, 32 * 16 * 9, 4, "assumed"},
		// (11 + 0 − 2 − 1)/3 + 1 = 3 rows, (11 + 2 − 2 − 1)/1 + 1 = 11 columns.
		{"flag geometry", memoryLayer(false), MemoryInput{Batch: 1, Height: 11, Width: 11, DType: "float64", Stride: []int{3, 1}, Padding: []int{0, 1}},
			16 * 11 * 11, 32 * 3 * 11, 32 * 16 * 9, 8, "--stride"},
		// Transposed: (8 − 1)·2 − 2 + 2 + 1 = 15.
		{"transposed", transposed, MemoryInput{Batch: 1, Height: 8, Width: 8, DType: "bfloat16"},
			16 * 8 * 8, 32 * 15 * 15, 16 * 32 * 9, 2, "stored"},
	}
	for _, c := range cases {
		e, err := EstimateMemory(c.layer, c.in)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if e.InputElements != c.x || e.OutputElements != c.y || e.WeightElements != c.w {
			t.Errorf("%s: |X|, |Y|, |W| = %d, %d, %d; want %d, %d, %d", c.name, e.InputElements, e.OutputElements, e.WeightElements, c.x, c.y, c.w)
		}
		if want := (c.x + c.y) * c.bytes; e.EvalBytes != want {
			t.Errorf("%s: Eval bytes = %d, want %d", c.name, e.EvalBytes, want)
		}
		if want := (c.x + c.w) * c.bytes; e.TuneBytes != want {
			t.Errorf("%s: Tune bytes = %d, want %d", c.name, e.TuneBytes, want)
		}
		if want := c.x * c.bytes; e.DeployBytes != want {
			t.Errorf("%s: Deploy bytes = %d, want %d", c.name, e.DeployBytes, want)
		}
		if want := (c.y - c.w) * c.bytes; e.TuneSavings() != want {
			t.Errorf("%s: Tune savings = %d, want %d", c.name, e.TuneSavings(), want)
		}
		if !strings.Contains(e.Geometry, c.geometry) {
			t.Errorf("%s: geometry note %q does not mention %q", c.name, e.Geometry, c.geometry)
		}
	}
}

func TestEstimateMemoryErrors(t *testing.T) {
	oneD := &analysis.Layer{Conv: "conv1d", WeightShape: []int{8, 4, 3}, Groups: 1, Channels: make([]analysis.Channel, 8)}
	if _, err := EstimateMemory(oneD, MemoryInput{Batch: 1, Height: 4, Width: 4, DType: "float32"}); err == nil || !strings.Contains(err.Error(), "2-d conv") {
		t.Errorf("1-d conv: got %v, want an error asking for a 2-d conv", err)
	}
	if _, err := EstimateMemory(memoryLayer(false), MemoryInput{Batch: 1, Height: 4, Width: 4, DType: "int8"}); err == nil || !strings.Contains(err.Error(), "dtype") {
		t.Errorf("dtype int8: got %v, want an invalid dtype error", err)
	}
	tiny := MemoryInput{Batch: 1, Height: 1, Width: 1, DType: "float32", Stride: []int{1}, Padding: []int{0}}
	if _, err := EstimateMemory(memoryLayer(false), tiny); err == nil || !strings.Contains(err.Error(), "empty output") {
		t.Errorf("1x1 input to a 3x3 kernel without padding: got %v, want an empty-output error", err)
	}
}

func TestPDFUnwritableTempDir(t *testing.T) {
	m, opts := flagsModel(t, analysis.SGD)
	figs, err := NewFigures(m, opts, "pdf")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "missing"))

	var buf bytes.Buffer
	err = WriteFigure(&buf, figs[0], "pdf")
	if err == nil || !strings.Contains(err.Error(), "TMPDIR") {
		t.Errorf("PDF with a missing TMPDIR: got error %v, want one naming TMPDIR", err)
	}
	if buf.Len() != 0 {
		t.Errorf("a failed PDF wrote %d bytes", buf.Len())
	}

	out := filepath.Join(t.TempDir(), "all.pdf")
	if err := SaveCombined(out, figs); err == nil {
		t.Errorf("SaveCombined with a missing TMPDIR succeeded")
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 0 {
		t.Errorf("a failed SaveCombined left %d files behind", len(entries))
	}
}

func TestPDFLabelsSpellGreek(t *testing.T) {
	m, opts := flagsModel(t, analysis.SGD)
	figs, err := NewFigures(m, opts, "pdf")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range figs {
		for _, s := range []string{f.Plot.Title.Text, f.Plot.X.Label.Text, f.Plot.Y.Label.Text} {
			if strings.ContainsAny(s, "ωγσε−≥≤∞√≠") {
				t.Errorf("%s: PDF label %q has a character outside code page 1252", f.Name, s)
			}
		}
	}
}

func TestFigureFormat(t *testing.T) {
	for path, want := range map[string]string{"a.png": "png", "b/C.SVG": "svg", "x.pdf": "pdf"} {
		if got, err := FigureFormat(path); err != nil || got != want {
			t.Errorf("FigureFormat(%q) = %q, %v; want %q", path, got, err, want)
		}
	}
	for _, path := range []string{"a.jpg", "noext", ""} {
		if _, err := FigureFormat(path); err == nil {
			t.Errorf("FigureFormat(%q) accepted an unsupported name", path)
		}
	}
}

func TestEstimateMemoryRejectsBadInputs(t *testing.T) {
	l := &analysis.Layer{Conv: "conv", WeightShape: []int{16, 16, 3, 3}, Groups: 1, Channels: make([]analysis.Channel, 16)}
	cases := []struct {
		name string
		in   MemoryInput
		want string
	}{
		// PyTorch floors (2 − 2 − 1)/5 to −1, so the output is empty;
		// truncating division would give 1.
		{"kernel larger than input", MemoryInput{Height: 2, Width: 2, Batch: 1, DType: "float32", Stride: []int{5}, Padding: []int{0}}, "empty output"},
		{"overflowing sizes", MemoryInput{Height: 99999999, Width: 99999999, Batch: 99999999, DType: "float32"}, "2^62"},
	}
	for _, c := range cases {
		_, err := EstimateMemory(l, c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
}
