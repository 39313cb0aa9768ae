package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/internal/testenv"
)

// runCLI runs convbn-diag with args and returns the exit status and the
// captured standard output and error.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(args, &streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

// sharedCheckpoints returns the folder of real checkpoints beside the
// repository, or skips the test when it is absent.
func sharedCheckpoints(t *testing.T) string {
	t.Helper()
	return testenv.SharedCheckpoints(t)
}

func TestAnalyzeFlagsParsed(t *testing.T) {
	var got *analyzeOptions
	cmd := newCmdAnalyze(&streams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}, func(o *analyzeOptions) error {
		got = o
		return nil
	})
	cmd.SetArgs([]string{"--per-channel", "-f", "csv", "-o", "x.csv", "--eps", "1e-3", "--optimizer", "adam",
		"--fail-on", "high", "--key", "ema", "--pair", "a.conv=a.bn", "--no-pair", "b.bn", "m.pt"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if got == nil {
		t.Fatal("run function not called")
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"files", strings.Join(got.Files, ","), "m.pt"},
		{"per-channel", got.PerChannel, true},
		{"format", got.Format, "csv"},
		{"output", got.Output, "x.csv"},
		{"eps", got.Eps, 1e-3},
		{"eps set", got.EpsSet, true},
		{"optimizer", got.Optimizer, "adam"},
		{"fail-on", got.FailOn, "high"},
		{"key", got.Key, "ema"},
		{"pair", strings.Join(got.Pairs, ","), "a.conv=a.bn"},
		{"no-pair", strings.Join(got.NoPair, ","), "b.bn"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s mismatch: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestAnalyzeBareExampleFlag(t *testing.T) {
	var got *analyzeOptions
	cmd := newCmdAnalyze(&streams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}, func(o *analyzeOptions) error {
		got = o
		return nil
	})
	cmd.SetArgs([]string{"--example"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if got.Example != "flags" {
		t.Errorf("bare --example: got %q, want %q", got.Example, "flags")
	}
}

func TestAnalyzeUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // part of the message
	}{
		{"no argument", []string{"analyze"}, "CHECKPOINT"},
		{"unknown flag", []string{"analyze", "--bogus", "x.pt"}, "--bogus"},
		{"bad format", []string{"analyze", "-f", "xml", "x.pt"}, "xml"},
		{"bad optimizer", []string{"analyze", "--optimizer", "rmsprop", "x.pt"}, "rmsprop"},
		{"bad fail-on", []string{"analyze", "--fail-on", "low", "x.pt"}, "--fail-on"},
		{"bad eps", []string{"analyze", "--eps", "-1", "x.pt"}, "--eps"},
		{"bad pair", []string{"analyze", "--pair", "conv1", "x.pt"}, "CONV=BN"},
		{"bad overshoot", []string{"analyze", "--overshoot", "10,2", "x.pt"}, "--overshoot"},
		{"unordered stall", []string{"analyze", "--stall", "0.01,0.1,0.5", "x.pt"}, "stall"},
		{"example and file", []string{"analyze", "--example", "x.pt"}, "not both"},
		{"unknown command", []string{"analyse"}, "unknown command"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, c.args...)
			if code != exitUsage {
				t.Errorf("exit status: got %d, want %d (stderr %q)", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q does not mention %q", stderr, c.want)
			}
			if stdout != "" {
				t.Errorf("stdout not empty on a usage error: %q", stdout)
			}
		})
	}
}

func TestAnalyzeMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.pt")
	code, stdout, stderr := runCLI(t, "analyze", path)
	if code != exitFailure {
		t.Errorf("exit status: got %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr, path) {
		t.Errorf("stderr %q does not name %s", stderr, path)
	}
	if stdout != "" {
		t.Errorf("stdout not empty: %q", stdout)
	}
}

func TestAnalyzeFailedFileWritesNoOutput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "empty.pt")
	if err := os.WriteFile(bad, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report.json")
	code, _, stderr := runCLI(t, "analyze", "-f", "json", "-o", out, bad)
	if code != exitFailure {
		t.Errorf("exit status: got %d, want %d (stderr %q)", code, exitFailure, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output file exists after a failed analysis (stat error %v)", err)
	}
}

func TestAnalyzeRefusesToOverwriteInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "model.pt")
	if err := os.WriteFile(in, []byte("not a checkpoint"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "analyze", "-o", in, in)
	if code != exitUsage {
		t.Errorf("exit status: got %d, want %d", code, exitUsage)
	}
	if !strings.Contains(stderr, "overwrite") {
		t.Errorf("stderr %q does not explain the overwrite", stderr)
	}
	got, _ := os.ReadFile(in)
	if string(got) != "not a checkpoint" {
		t.Errorf("input changed to %q", got)
	}
}

// jsonDoc is the part of the JSON report the CLI tests read.
type jsonDoc struct {
	SchemaVersion int `json:"schema_version"`
	Files         []struct {
		File   string `json:"file"`
		Models []struct {
			Key    string `json:"key"`
			Layers []struct {
				Conv string `json:"conv"`
				BN   string `json:"bn"`
				Eps  float64
			} `json:"layers"`
		} `json:"models"`
	} `json:"files"`
}

func decodeReport(t *testing.T, s string) jsonDoc {
	t.Helper()
	var doc jsonDoc
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatalf("JSON report does not parse: %v\n%s", err, s)
	}
	return doc
}

func TestAnalyzeUnknownExample(t *testing.T) {
	code, _, stderr := runCLI(t, "analyze", "--example=nosuch")
	if code != exitUsage {
		t.Errorf("exit status %d, want %d", code, exitUsage)
	}
	if !strings.Contains(stderr, "flags") {
		t.Errorf("stderr %q does not list the examples", stderr)
	}
}

func TestAnalyzeFailOnIgnoresCase(t *testing.T) {
	code, _, stderr := runCLI(t, "analyze", "--example", "--fail-on", "HIGH")
	if code != exitRiskSeen {
		t.Errorf("--fail-on HIGH: exit status %d, want %d (stderr %q)", code, exitRiskSeen, stderr)
	}
}
