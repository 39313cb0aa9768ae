package main

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReportExample(t *testing.T) {
	out := filepath.Join(t.TempDir(), "flags.html")
	code, _, errOut := runCLI(t, "report", "--example", "-o", out)
	if code != 0 {
		t.Fatalf("report exit %d: %s", code, errOut)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, name := range []string{"features.0", "features.3", "features.6", "features.12", "<svg", "Layers that need attention"} {
		if !strings.Contains(page, name) {
			t.Errorf("report lacks %q", name)
		}
	}
	if !strings.Contains(errOut, "wrote "+out) {
		t.Errorf("stderr %q does not name the file written", errOut)
	}
}

func TestReportUsageErrors(t *testing.T) {
	cases := [][]string{
		{"report", "--example"},
		{"report", "--example", "-o", "x.html", "model.pt"},
		{"report", "-o", "x.html", "a.pt", "b.pt"},
		{"report", "--example", "-o", "x.html", "--optimizer", "rmsprop"},
		{"report", "--example", "-o", "x.html", "--overshoot", "1,2"},
	}
	for _, args := range cases {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%s: exit %d, want %d", strings.Join(args, " "), code, exitUsage)
		}
	}
}

func TestReportMissingFileWritesNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "r.html")
	code, _, errOut := runCLI(t, "report", "-o", out, filepath.Join(dir, "missing.pt"))
	if code != exitFailure {
		t.Errorf("missing checkpoint: exit %d, want %d", code, exitFailure)
	}
	if !strings.Contains(errOut, "missing.pt") {
		t.Errorf("stderr %q does not name the missing file", errOut)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a failed report left %d files in the output folder", len(entries))
	}
}

func TestAnalyzePlotFiles(t *testing.T) {
	dir := t.TempDir()
	combined := filepath.Join(dir, "all.png")
	figDir := filepath.Join(dir, "figs")
	code, _, errOut := runCLI(t, "analyze", "--example", "--plot", combined, "--plot-dir", figDir, "--plot-format", "svg")
	if code != 0 {
		t.Fatalf("analyze exit %d: %s", code, errOut)
	}
	f, err := os.Open(combined)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatalf("--plot file is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 800 {
		t.Errorf("combined figure is %dx%d pixels, too small for four figures", b.Dx(), b.Dy())
	}
	for _, name := range []string{"omega-box.svg", "distortion.svg", "omega-hist.svg", "gamma-variance.svg", "layer-key.txt"} {
		b, err := os.ReadFile(filepath.Join(figDir, name))
		if err != nil {
			t.Errorf("--plot-dir: %v", err)
			continue
		}
		if strings.HasSuffix(name, ".svg") && !bytes.Contains(b, []byte("<svg")) {
			t.Errorf("%s is not an SVG file", name)
		}
		if name == "layer-key.txt" && !bytes.Contains(b, []byte("3  features.12  (BatchNorm features.13)")) {
			t.Errorf("layer key lacks the line of layer 3:\n%s", b)
		}
	}
}

func TestAnalyzePlotUsageErrors(t *testing.T) {
	dir := t.TempDir()
	cases := [][]string{
		{"analyze", "--example", "--plot", filepath.Join(dir, "x.jpg")},
		{"analyze", "--example", "--plot", dir},
		{"analyze", "--example", "--plot-dir", dir, "--plot-format", "gif"},
	}
	for _, args := range cases {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%s: exit %d, want %d", strings.Join(args, " "), code, exitUsage)
		}
	}
}

// requireChromium returns the Chromium binary, or skips the test when it
// is missing, except under CI, where the test fails instead.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but /usr/bin/chromium is missing: %v", err)
		}
		t.Skipf("/usr/bin/chromium not found (install Debian's chromium package): %v", err)
	}
}

// renderPage renders an HTML file to a PNG with scripts/render-report.sh
// and decodes it.
func renderPage(t *testing.T, html, size string) image.Image {
	t.Helper()
	out := filepath.Join(t.TempDir(), "page.png")
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "render-report.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(script, html, out, size)
	cmd.WaitDelay = 5 * time.Second
	done := make(chan error, 1)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("render-report.sh failed: %v\n%s", err, stderr.String())
		}
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("render-report.sh timed out after 90 s")
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	return img
}

// pageStats are the pixel counts checkRendered judges a screenshot by.
type pageStats struct {
	colors        int     // distinct colors
	dominantShare float64 // share of the most frequent color
	skyBlue       int     // pixels of the figures' box and bar fill
	vermillion    int     // pixels of the overshoot limits and marks
	highRow       int     // pixels of the high-risk table row shade
}

func measurePage(img image.Image) pageStats {
	var s pageStats
	counts := map[uint32]int{}
	b := img.Bounds()
	near := func(r, g, b uint32, wr, wg, wb int) bool {
		d := func(x uint32, w int) int { v := int(x>>8) - w; return v * v }
		return d(r, wr)+d(g, wg)+d(b, wb) < 3*12*12
	}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			counts[(r>>8)<<16|(g>>8)<<8|bl>>8]++
			switch {
			case near(r, g, bl, 86, 180, 233):
				s.skyBlue++
			case near(r, g, bl, 213, 94, 0):
				s.vermillion++
			case near(r, g, bl, 0xfb, 0xe3, 0xd3):
				s.highRow++
			}
		}
	}
	top := 0
	for _, n := range counts {
		top = max(top, n)
	}
	s.colors = len(counts)
	s.dominantShare = float64(top) / float64(b.Dx()*b.Dy())
	return s
}

// checkRendered returns why a screenshot of a report looks blank or
// broken, or "" when it shows text, figures and the table.
func checkRendered(s pageStats) string {
	var problems []string
	if s.colors < 200 {
		problems = append(problems, fmt.Sprintf("only %d distinct colors", s.colors))
	}
	if s.dominantShare > 0.97 {
		problems = append(problems, fmt.Sprintf("one color covers %.1f%% of the page", 100*s.dominantShare))
	}
	if s.skyBlue < 2000 {
		problems = append(problems, fmt.Sprintf("%d pixels of figure fill, so the figures did not render", s.skyBlue))
	}
	if s.vermillion < 200 {
		problems = append(problems, fmt.Sprintf("%d vermillion pixels, so the risk limits are missing", s.vermillion))
	}
	if s.highRow < 2000 {
		problems = append(problems, fmt.Sprintf("%d pixels of high-risk row shade, so the table is missing", s.highRow))
	}
	return strings.Join(problems, "; ")
}

func TestReportRendersInChromium(t *testing.T) {
	requireChromium(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "flags.html")
	if code, _, errOut := runCLI(t, "report", "--example", "-o", page); code != 0 {
		t.Fatalf("report exit %d: %s", code, errOut)
	}
	stats := measurePage(renderPage(t, page, "1280,5000"))
	t.Logf("page stats: %+v", stats)
	if problem := checkRendered(stats); problem != "" {
		t.Errorf("the rendered report looks broken: %s (stats %+v)", problem, stats)
	}

	// The same check must reject a page without figures.
	bare := filepath.Join(dir, "bare.html")
	if code, _, errOut := runCLI(t, "report", "--example", "--no-figures", "-o", bare); code != 0 {
		t.Fatalf("report exit %d: %s", code, errOut)
	}
	if problem := checkRendered(measurePage(renderPage(t, bare, "1280,5000"))); problem == "" {
		t.Errorf("the check accepted a report without figures")
	}
}

func TestPlotPrefix(t *testing.T) {
	cases := []struct{ path, key, want string }{
		{"/x/resnet20.th", "", "resnet20-"},
		{"runs/last.pt", "ema", "last-ema-"},
		{"a b/c d.pth", "model/state", "c_d-model_state-"},
	}
	for _, c := range cases {
		if got := plotPrefix(c.path, c.key); got != c.want {
			t.Errorf("plotPrefix(%q, %q) = %q, want %q", c.path, c.key, got, c.want)
		}
	}
}
