package convbn

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// exportedPair is one pair as testdata/export_models.py describes it from
// the PyTorch model.
type exportedPair struct {
	Conv       string   `json:"conv"`
	BN         string   `json:"bn"`
	Omega      []string `json:"omega"`
	Eps        float64  `json:"eps"`
	Momentum   float64  `json:"momentum"`
	Groups     int      `json:"groups"`
	Stride     []int    `json:"stride"`
	Padding    []int    `json:"padding"`
	Dilation   []int    `json:"dilation"`
	Transposed bool     `json:"transposed"`
}

// exportModels runs testdata/export_models.py into a temporary folder and
// returns the folder and its expectations.
func exportModels(t *testing.T) (string, map[string]struct {
	Fused bool           `json:"fused"`
	Pairs []exportedPair `json:"pairs"`
}) {
	t.Helper()
	requireTorchvision(t)
	dir := t.TempDir()
	script := filepath.Join(pairsModuleRoot(t), "convbn", "testdata", "export_models.py")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, torchPython, script, dir).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", torchPython, script, err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var expected map[string]struct {
		Fused bool           `json:"fused"`
		Pairs []exportedPair `json:"pairs"`
	}
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatalf("decode expected.json: %v", err)
	}
	return dir, expected
}

func TestPairsOfTorchExports(t *testing.T) {
	dir, expected := exportModels(t)
	for name, want := range expected {
		t.Run(name, func(t *testing.T) {
			f, err := checkpoint.Open(filepath.Join(dir, name))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()
			if len(f.Models) != 1 {
				t.Fatalf("model count mismatch: got %d, want 1", len(f.Models))
			}
			isONNX := strings.HasSuffix(name, ".onnx")
			if wantFormat := map[bool]checkpoint.Format{true: checkpoint.FormatONNX, false: checkpoint.FormatTorchScript}[isONNX]; f.Format != wantFormat {
				t.Errorf("format mismatch: got %s, want %s", f.Format, wantFormat)
			}
			res, err := FindPairs(f.Models[0], f.Metadata, Options{})
			if err != nil {
				t.Fatalf("FindPairs: %v", err)
			}

			if got := containsNote(res.Notes, "already fused"); got != want.Fused {
				t.Errorf("already-fused note present = %v, want %v (notes %q)", got, want.Fused, res.Notes)
			}
			gotSet, wantSet := map[string]string{}, map[string]string{}
			for _, p := range res.Pairs {
				gotSet[p.Conv.Name] = p.BN.Name
			}
			for _, p := range want.Pairs {
				wantSet[p.Conv] = p.BN
			}
			comparePairSets(t, name, gotSet, wantSet)

			pairs := pairsByConv(res.Pairs)
			for _, w := range want.Pairs {
				p, ok := pairs[w.Conv]
				if !ok {
					continue
				}
				checkExportedPair(t, p, w, isONNX)
			}
		})
	}
}

// checkExportedPair compares one found pair with PyTorch's description.
// ONNX stores ε and momentum as float32, so ε is compared with the float32
// value and ω to a relative 1e-7, the size of that rounding's effect.
func checkExportedPair(t *testing.T, p Pair, w exportedPair, isONNX bool) {
	t.Helper()
	wantEps := w.Eps
	wantEvidence := EvidenceModule
	if isONNX {
		wantEps = float64(float32(w.Eps))
		wantEvidence = EvidenceGraph
	}
	if p.Evidence != wantEvidence {
		t.Errorf("%s evidence mismatch: got %s, want %s", p.Conv.Name, p.Evidence, wantEvidence)
	}
	if p.BN.Eps != wantEps || p.BN.EpsSource != SourceFile {
		t.Errorf("%s eps mismatch: got %v from %s, want %v from file", p.BN.Name, p.BN.Eps, p.BN.EpsSource, wantEps)
	}
	if p.BN.Momentum == nil || *p.BN.Momentum != w.Momentum || p.BN.MomentumSource != SourceFile {
		t.Errorf("%s momentum mismatch: got %v from %s, want %v from file", p.BN.Name, p.BN.Momentum, p.BN.MomentumSource, w.Momentum)
	}
	if p.Conv.Groups != w.Groups || p.Conv.GroupsSource != SourceFile {
		t.Errorf("%s groups mismatch: got %d from %q, want %d from file", p.Conv.Name, p.Conv.Groups, p.Conv.GroupsSource, w.Groups)
	}
	if p.Conv.Transposed != w.Transposed {
		t.Errorf("%s transposed mismatch: got %v, want %v", p.Conv.Name, p.Conv.Transposed, w.Transposed)
	}
	if !equalInts(p.Conv.Stride, w.Stride) || !equalInts(p.Conv.Dilation, w.Dilation) {
		t.Errorf("%s geometry mismatch: got stride %v dilation %v, want %v %v", p.Conv.Name, p.Conv.Stride, p.Conv.Dilation, w.Stride, w.Dilation)
	}
	// ONNX ConvTranspose pads are the crop of the output, which is what
	// PyTorch's padding means for a transposed conv too.
	if !equalInts(p.Conv.Padding, w.Padding) {
		t.Errorf("%s padding mismatch: got %v, want %v", p.Conv.Name, p.Conv.Padding, w.Padding)
	}
	if p.Conv.OutChannels() != len(w.Omega) {
		t.Errorf("%s output channels mismatch: got %d, want %d", p.Conv.Name, p.Conv.OutChannels(), len(w.Omega))
	}

	got := pairOmegas(t, p)
	if len(got) != len(w.Omega) {
		t.Fatalf("%s channel count mismatch: got %d, want %d", p.BN.Name, len(got), len(w.Omega))
	}
	for c, s := range w.Omega {
		want, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("parse ω %q: %v", s, err)
		}
		if rel := math.Abs(got[c]-want) / math.Abs(want); rel > 1e-7 {
			t.Errorf("%s channel %d ω mismatch: got %v, want %v (relative error %.2g)", p.BN.Name, c, got[c], want, rel)
		}
	}
}
