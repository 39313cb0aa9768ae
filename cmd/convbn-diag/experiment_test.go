package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/mnist"
)

// requireMNIST skips the test when the MNIST files are not in the module
// cache.
func requireMNIST(t *testing.T) {
	t.Helper()
	if _, err := mnist.Locate(""); err != nil {
		t.Skipf("MNIST files missing: %v", err)
	}
}

func TestPretrainCommandShort(t *testing.T) {
	requireMNIST(t)
	out := filepath.Join(t.TempDir(), "small.pt")
	code, stdout, stderr := runCLI(t, "pretrain", "-o", out, "--steps", "8", "--batch-size", "16", "--images", "256", "--test-images", "50", "--channels", "4,8")
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"wrote " + out, "block1", "median"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if stderr != "" {
		t.Errorf("progress written to a non-terminal stderr: %q", stderr)
	}

	// The checkpoint it wrote feeds simulate.
	figDir := filepath.Join(t.TempDir(), "figures")
	code, stdout, stderr = runCLI(t, "simulate", out, "--steps", "2", "--batch-size", "8", "--images", "32", "--test-images", "10", "--modes", "eval,deploy", "--plot-dir", figDir, "--plot-format", "svg")
	if code != exitOK {
		t.Fatalf("simulate on the new checkpoint: exit status %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "deploy") {
		t.Errorf("simulate output lacks the deploy row:\n%s", stdout)
	}
	for _, name := range []string{"loss.svg", "relative-update.svg"} {
		if b, err := os.ReadFile(filepath.Join(figDir, name)); err != nil || !bytes.Contains(b, []byte("<svg")) {
			t.Errorf("figure %s: %d bytes, error %v", name, len(b), err)
		}
	}
}

func TestSimulateCommandDeterministic(t *testing.T) {
	requireMNIST(t)
	dir := t.TempDir()
	var outputs [2][2][]byte
	for i := range outputs {
		js, csv := filepath.Join(dir, "sim.json"), filepath.Join(dir, "sim.csv")
		timings := filepath.Join(dir, "timings.json")
		code, stdout, stderr := runCLI(t, "simulate", "--steps", "4", "--batch-size", "8", "--images", "64", "--test-images", "20",
			"--json", js, "--csv", csv, "--timings", timings)
		if code != exitOK {
			t.Fatalf("run %d: exit status %d, stderr %q", i, code, stderr)
		}
		for _, want := range []string{"train", "eval", "tune", "deploy", "max |loss_Tune − loss_Eval| over the first 20 steps"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("run %d: summary lacks %q:\n%s", i, want, stdout)
			}
		}
		for j, path := range []string{js, csv} {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			outputs[i][j] = b
		}
		if b, err := os.ReadFile(timings); err != nil || !bytes.Contains(b, []byte("seconds_per_step")) {
			t.Errorf("run %d: timings file %q, error %v", i, b, err)
		}
	}
	for j, name := range []string{"JSON", "CSV"} {
		if !bytes.Equal(outputs[0][j], outputs[1][j]) {
			t.Errorf("%s differs between two runs with the same seed", name)
		}
	}
	// 4 modes × 4 steps × 3 blocks rows and a header.
	if rows := bytes.Count(outputs[0][1], []byte("\n")); rows != 1+4*4*3 {
		t.Errorf("CSV has %d lines, want %d", rows, 1+4*4*3)
	}
}

func TestSimulateCommandBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"simulate", "--modes", "eval,fold"},
		{"simulate", "--dtype", "float16"},
		{"simulate", "--lr", "0"},
		{"sweep", "--lr-factor", "1"},
		{"pretrain", "--batch-size", "1"},
		{"simulate", "--plot", "figure.gif"},
	} {
		code, _, stderr := runCLI(t, args...)
		if code != exitUsage {
			t.Errorf("%v: exit status %d, want %d; stderr %q", args, code, exitUsage, stderr)
		}
	}
}

func TestSimulateCommandNotPretrained(t *testing.T) {
	code, _, stderr := runCLI(t, "simulate", "../../examples/flags.pt", "--steps", "1")
	if code != exitFailure {
		t.Fatalf("exit status %d, want %d; stderr %q", code, exitFailure, stderr)
	}
	if !strings.Contains(stderr, "convbn-diag pretrain") {
		t.Errorf("error does not say which checkpoints work: %q", stderr)
	}
}

func TestSweepCommandShort(t *testing.T) {
	requireMNIST(t)
	js := filepath.Join(t.TempDir(), "sweep.json")
	fig := filepath.Join(t.TempDir(), "sweep.png")
	code, stdout, stderr := runCLI(t, "sweep", "--images", "32", "--steps", "8", "--lr-max", "0.2", "--lr-min", "0.001", "--lr-factor", "2",
		"--power-iterations", "4", "--realistic-images", "64", "--realistic-steps", "5", "--realistic-batch-size", "16", "--json", js, "--plot", fig)
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"Hessian prediction", "bound [min ω², max ω²]", "One step", "Realistic fine-tuning", "adam"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	if png, err := os.ReadFile(fig); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("sweep figure: %d bytes, error %v", len(png), err)
	}
	for _, key := range []string{`"full_batch_gd"`, `"hessian_ratio"`, `"one_step_sgd"`, `"realistic"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

func TestMNISTLocateMissingFolder(t *testing.T) {
	code, _, stderr := runCLI(t, "simulate", "--mnist", filepath.Join(t.TempDir(), "none"), "--steps", "1")
	if code != exitFailure {
		t.Fatalf("exit status %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr, "MNIST files not found") {
		t.Errorf("error %q does not say the files are missing", stderr)
	}
}
