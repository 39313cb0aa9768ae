package experiment

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/convbn-diag/convbn-diag/convbn"
)

func TestSimulateTuneMatchesEval(t *testing.T) {
	w, dir := testData(t)
	train, test := loadTask(t, dir, TargetDigits, 256, 50)

	for _, float64Run := range []bool{true, false} {
		cfg := DefaultSimulateConfig()
		cfg.Modes = []convbn.Mode{convbn.Eval, convbn.Tune}
		cfg.Steps, cfg.BatchSize, cfg.Float64 = 25, 16, float64Run
		sim, err := Simulate(cfg, w, train, test, nil)
		if err != nil {
			t.Fatal(err)
		}
		bound, _ := TuneEvalBound(float64Run)
		got := float64(sim.MaxTuneEvalLossDiff)
		t.Logf("float64 %v: max |loss_Tune − loss_Eval| %.3g in the checked steps, %.3g over all", float64Run, got, float64(sim.MaxTuneEvalLossDiffAll))
		if !(got <= bound) {
			t.Errorf("float64 %v: max |loss_Tune − loss_Eval| = %g, want ≤ %g", float64Run, got, bound)
		}
		if got == 0 && !float64Run {
			t.Errorf("float32 Tune and Eval agree exactly, which suggests both ran the same code path")
		}
		for _, r := range sim.Runs {
			if len(r.Steps) != cfg.Steps {
				t.Errorf("%s ran %d steps, want %d", r.Mode, len(r.Steps), cfg.Steps)
			}
		}
	}
}

func TestSimulateRecordsHeldBytes(t *testing.T) {
	w, dir := testData(t)
	train, test := loadTask(t, dir, TargetDigits, 64, 10)

	cfg := DefaultSimulateConfig()
	cfg.Steps, cfg.BatchSize, cfg.Float64 = 2, 8, true
	sim, err := Simulate(cfg, w, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Held elements per block: X always; plus Y in Train and Eval, plus W'
	// in Tune. Block inputs are 1×28×28, 8×14×14 and 16×7×7; outputs are
	// 8×28×28, 16×14×14 and 32×7×7 for each of the 8 images.
	x := 8 * (1*28*28 + 8*14*14 + 16*7*7)
	y := 8 * (8*28*28 + 16*14*14 + 32*7*7)
	wt := 8*1*9 + 16*8*9 + 32*16*9
	want := map[convbn.Mode]int64{convbn.Train: int64(8 * (x + y)), convbn.Eval: int64(8 * (x + y)), convbn.Tune: int64(8 * (x + wt)), convbn.Deploy: int64(8 * x)}
	for _, r := range sim.Runs {
		if r.BytesHeld != want[r.Mode] {
			t.Errorf("%s: bytes held %d, want %d", r.Mode, r.BytesHeld, want[r.Mode])
		}
		for _, st := range r.Steps {
			if st.BytesHeld != want[r.Mode] {
				t.Errorf("%s step %d: bytes held %d, want %d", r.Mode, st.Step, st.BytesHeld, want[r.Mode])
			}
			for _, l := range st.Layers {
				if u := float64(l.RelativeUpdate); !(u > 0) || math.IsInf(u, 0) {
					t.Errorf("%s step %d %s: relative update %v, want positive and finite", r.Mode, st.Step, l.Block, u)
				}
			}
		}
	}
	if _, err := json.Marshal(sim); err != nil {
		t.Errorf("encode simulation: %v", err)
	}
}

func TestSimulateDeployDivergenceDetected(t *testing.T) {
	w, dir := testData(t)
	train, test := loadTask(t, dir, TargetDigits, 64, 10)

	cfg := DefaultSimulateConfig()
	cfg.Modes = []convbn.Mode{convbn.Deploy}
	cfg.Steps, cfg.BatchSize, cfg.LR, cfg.Momentum = 10, 16, 50, 0
	sim, err := Simulate(cfg, w, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := sim.Runs[0]
	if r.DivergedStep == 0 {
		t.Fatalf("Deploy at η = 50 did not diverge; losses %v", r.Steps)
	}
	if !math.IsNaN(float64(r.TestAccuracy)) {
		t.Errorf("diverged run has test accuracy %v, want NaN", r.TestAccuracy)
	}
}
