package main

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/examples"
)

func TestAnalyzeExampleTable(t *testing.T) {
	code, stdout, stderr := runCLI(t, "analyze", "--example")
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		"features.0", "Summary:", "Columns:", "D_SGD = 1/ω²",
		"flags on features.0: dead: 1 channel (3); negative-gamma: 1 channel (7)",
		"flags on features.3: tiny-variance: 1 channel (9)",
		"flags on features.6: negative-running-var: 1 channel (20); no-omega: 1 channel (20)",
		"unpaired conv features.9",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestAnalyzeFailOn(t *testing.T) {
	// The flags example has a high-risk layer, so both levels trigger.
	for _, level := range []string{"medium", "high"} {
		code, stdout, stderr := runCLI(t, "analyze", "--example", "--fail-on", level)
		if code != exitRiskSeen {
			t.Errorf("--fail-on %s: exit status %d, want %d (stderr %q)", level, code, exitRiskSeen, stderr)
		}
		if stdout == "" {
			t.Errorf("--fail-on %s: no report written before failing", level)
		}
	}

	// Loose limits leave no layer at medium or above.
	code, _, stderr := runCLI(t, "analyze", "--example", "--fail-on", "medium",
		"--overshoot", "1e9,1e10,1e11", "--stall", "1e-9,1e-10,1e-11")
	if code != exitOK {
		t.Errorf("--fail-on with loose limits: exit status %d, want %d (stderr %q)", code, exitOK, stderr)
	}
}

func TestAnalyzeFileErrorBeatsFailOn(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "flags.pt")
	b, err := examples.Bytes("flags")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, b, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.pt")
	if err := os.WriteFile(bad, []byte("<html></html>"), 0o644); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runCLI(t, "analyze", "--fail-on", "high", "-f", "json", good, bad)
	if code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr, bad) {
		t.Errorf("stderr %q does not name %s", stderr, bad)
	}
	doc := decodeReport(t, stdout)
	if len(doc.Files) != 1 || doc.Files[0].File != good {
		t.Errorf("report should hold only the good file, got %+v", doc.Files)
	}
}

func TestAnalyzeOutputFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report.md")
	code, stdout, stderr := runCLI(t, "analyze", "--example", "-f", "markdown", "-o", out)
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout not empty with -o: %q", stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "| layer |") {
		t.Errorf("Markdown report lacks the table header:\n%s", b)
	}
}

func TestAnalyzePairOverrides(t *testing.T) {
	path := filepath.Join(sharedCheckpoints(t), "akamaster_resnet20-12fca82f.th")

	code, stdout, stderr := runCLI(t, "analyze", "-f", "json", "--no-pair", "conv1", path)
	if code != exitOK {
		t.Fatalf("--no-pair: exit status %d, stderr %q", code, stderr)
	}
	layers := decodeReport(t, stdout).Files[0].Models[0].Layers
	if len(layers) != 18 {
		t.Errorf("--no-pair conv1: got %d pairs, want 18", len(layers))
	}
	for _, l := range layers {
		if l.Conv == "conv1" {
			t.Errorf("--no-pair conv1: conv1 still paired with %s", l.BN)
		}
	}

	code, _, stderr = runCLI(t, "analyze", "--pair", "nosuch.conv=bn1", path)
	if code != exitFailure {
		t.Errorf("--pair with an unknown conv: exit status %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr, "nosuch.conv") {
		t.Errorf("stderr %q does not name the unknown module", stderr)
	}
}

// TestAnalyzeBadInputs feeds files that are not checkpoints, or are broken
// ones, and expects exit status 1, a message naming the file, and no report.
func TestAnalyzeBadInputs(t *testing.T) {
	dir := t.TempDir()
	example, err := examples.Bytes("flags")
	if err != nil {
		t.Fatal(err)
	}

	var noPickle bytes.Buffer
	zw := zip.NewWriter(&noPickle)
	w, _ := zw.Create("archive/version")
	w.Write([]byte("3\n"))
	zw.Close()

	cases := []struct {
		name    string
		content []byte // nil: a directory
		want    string // part of the message besides the path
	}{
		{"empty.pt", []byte{}, "empty"},
		{"folder.pt", nil, "directory"},
		{"truncated.pt", example[:len(example)/2], ""},
		{"nopickle.pt", noPickle.Bytes(), "data.pkl"},
		{"lfs.pt", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:4f180cf23ba0717ada0badd6c685026d73d48f184d00fc159c2641284b2ac0a3\nsize 4062133\n"), "git lfs pull"},
		{"page.pt", []byte("<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body></body></html>\n"), "HTML"},
		{"frame.pkl", []byte{0x80, 0x04, 0x95, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name)
			if c.content == nil {
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, c.content, 0o644); err != nil {
				t.Fatal(err)
			}

			code, stdout, stderr := runCLI(t, "analyze", path)
			if code != exitFailure {
				t.Errorf("exit status %d, want %d (stderr %q)", code, exitFailure, stderr)
			}
			if !strings.Contains(stderr, path) {
				t.Errorf("stderr %q does not name %s", stderr, path)
			}
			if !strings.Contains(strings.ToLower(stderr), strings.ToLower(c.want)) {
				t.Errorf("stderr %q does not mention %q", stderr, c.want)
			}
			if stdout != "" {
				t.Errorf("stdout not empty: %q", stdout)
			}
		})
	}
}

func TestAnalyzePerChannelTable(t *testing.T) {
	for _, format := range []string{"table", "markdown"} {
		code, stdout, stderr := runCLI(t, "analyze", "--example", "--per-channel", "-f", format)
		if code != exitOK {
			t.Fatalf("%s: exit status %d, stderr %q", format, code, stderr)
		}
		// The example's four pairs have 16 + 16 + 32 + 16 channels.
		if got := strings.Count(stdout, "features."); got < 80 {
			t.Errorf("%s: %d rows name a layer, want at least one per channel (80)", format, got)
		}
		for _, want := range []string{"Adam", "‖W'‖", "negative-gamma", "tiny-variance"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("%s: per-channel output lacks %q", format, want)
			}
		}
		for i, line := range strings.Split(stdout, "\n") {
			if format == "table" && len([]rune(line)) > 120 {
				t.Errorf("table line %d is %d characters wide", i+1, len([]rune(line)))
			}
		}
	}
}

// TestFuseRefusesUnreadTensors checks that fuse writes nothing for a file
// holding tensors the reader skips (silero's quantized Linear layers),
// since the fused state dict would lack them.
func TestFuseRefusesUnreadTensors(t *testing.T) {
	in := filepath.Join(sharedCheckpoints(t), "silero_vad_micro.jit")
	out := filepath.Join(t.TempDir(), "fused.pt")
	code, _, stderr := runCLI(t, "fuse", in, "-o", out)
	if code != exitFailure {
		t.Errorf("exit status %d, want %d (stderr %q)", code, exitFailure, stderr)
	}
	if !strings.Contains(stderr, "_packed_params") {
		t.Errorf("stderr %q does not name the unread tensors", stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("fuse wrote %s although tensors were unread (stat error %v)", out, err)
	}
}

// TestExperimentOutputsCheckedFirst checks that simulate, sweep and
// pretrain reject bad output paths before training.
func TestExperimentOutputsCheckedFirst(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nodir", "a.json")
	same := filepath.Join(dir, "same.json")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"simulate missing folder", []string{"simulate", "--json", missing}, "does not exist"},
		{"simulate same file twice", []string{"simulate", "--json", same, "--csv", same}, "both write"},
		{"sweep missing folder", []string{"sweep", "--json", missing}, "does not exist"},
		{"pretrain missing folder", []string{"pretrain", "-o", missing}, "does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, c.args...)
			if code != exitUsage {
				t.Errorf("exit status %d, want %d (stderr %q)", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q does not mention %q", stderr, c.want)
			}
		})
	}
}
