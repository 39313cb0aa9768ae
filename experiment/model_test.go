package experiment

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// smallWeights returns a one-block network with 2 channels and 3 classes.
func smallWeights() *Weights {
	return &Weights{
		Channels: []int{2}, Classes: 3,
		Blocks: []BlockWeights{{
			Weight: make([]float64, 2*1*9), Gamma: []float64{0.5, -2}, Beta: []float64{0.1, 0.2},
			RunningMean: []float64{0, 1}, RunningVar: []float64{4, 0.25}, Eps: 1e-5, Momentum: 0.1, NumBatchesTracked: 7,
		}},
		HeadWeight: []float64{1, 2, 3, 4, 5, 6}, HeadBias: []float64{0, 1, 2},
	}
}

func saveAndLoad(t *testing.T, w *Weights) (*Weights, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.pt")
	if err := Save(path, w, map[string]int{"steps": 1}); err != nil {
		t.Fatal(err)
	}
	f, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return LoadWeights(f)
}

func TestSaveLoadRoundTrip(t *testing.T) {
	want := smallWeights()
	got, err := saveAndLoad(t, want)
	if err != nil {
		t.Fatal(err)
	}
	if got.Classes != 3 || len(got.Blocks) != 1 || got.Channels[0] != 2 {
		t.Fatalf("loaded %d classes, %d blocks, channels %v; want 3, 1, [2]", got.Classes, len(got.Blocks), got.Channels)
	}
	b := got.Blocks[0]
	if b.NumBatchesTracked != 7 || b.Eps != 1e-5 || b.Momentum != 0.1 {
		t.Errorf("batches tracked %d, ε %g, momentum %g; want 7, 1e-5, 0.1", b.NumBatchesTracked, b.Eps, b.Momentum)
	}
	// Values pass through float32, and these are exact in float32.
	for i, v := range []float64{0.5, -2} {
		if b.Gamma[i] != v {
			t.Errorf("γ[%d] = %g, want %g", i, b.Gamma[i], v)
		}
	}
	if om := b.Omega(); math.Abs(om[1]-(-2/math.Sqrt(0.25+1e-5))) > 1e-6 {
		t.Errorf("ω[1] = %g, want −2/√(0.25+1e-5)", om[1])
	}
	if got.HeadWeight[5] != 6 || got.HeadBias[2] != 2 {
		t.Errorf("head weight %v, bias %v", got.HeadWeight, got.HeadBias)
	}
}

func TestLoadRejectsBadVariance(t *testing.T) {
	w := smallWeights()
	w.Blocks[0].RunningVar[1] = -1
	_, err := saveAndLoad(t, w)
	if err == nil || !strings.Contains(err.Error(), "block0.bn.running_var") || !strings.Contains(err.Error(), "channel 1") {
		t.Errorf("error %v, want one naming block0.bn.running_var channel 1", err)
	}
}

func TestLoadRejectsNaN(t *testing.T) {
	w := smallWeights()
	w.HeadWeight[4] = math.NaN()
	_, err := saveAndLoad(t, w)
	if err == nil || !strings.Contains(err.Error(), "head.weight") || !strings.Contains(err.Error(), "element 4") {
		t.Errorf("error %v, want one naming head.weight element 4", err)
	}
}
