package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestAnalyzeJobsKeepArgumentOrder(t *testing.T) {
	dir := sharedCheckpoints(t)
	files := []string{
		filepath.Join(dir, "ulfd_version-RFB-320.pth"),
		filepath.Join(dir, "akamaster_resnet20-12fca82f.th"),
		filepath.Join(t.TempDir(), "missing.pt"),
		filepath.Join(dir, "kuangliu_style_ckpt_convbias.pth"),
		filepath.Join(dir, "dcgan_mnist_generator_convT.pth"),
	}
	var reference string
	for _, jobs := range []string{"1", "3", "8"} {
		code, stdout, stderr := runCLI(t, append([]string{"analyze", "-f", "json", "--per-channel", "--jobs", jobs}, files...)...)
		if code != exitFailure {
			t.Errorf("--jobs %s: exit %d, want %d because one file is missing", jobs, code, exitFailure)
		}
		if strings.Count(stderr, "convbn-diag:") != 1 || !strings.Contains(stderr, "missing.pt") {
			t.Errorf("--jobs %s: stderr %q, want one error naming missing.pt", jobs, stderr)
		}
		doc := decodeReport(t, stdout)
		var got []string
		for _, f := range doc.Files {
			got = append(got, f.File)
		}
		want := []string{files[0], files[1], files[3], files[4]}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("--jobs %s: file order %v, want %v", jobs, got, want)
		}
		if reference == "" {
			reference = stdout
		} else if stdout != reference {
			t.Errorf("--jobs %s: report differs from --jobs 1", jobs)
		}
	}
}

func TestAnalyzeJobsUsageError(t *testing.T) {
	code, _, stderr := runCLI(t, "analyze", "--jobs", "-1", "--example")
	if code != exitUsage || !strings.Contains(stderr, "--jobs") {
		t.Errorf("exit %d, stderr %q; want %d and a message about --jobs", code, stderr, exitUsage)
	}
}

// runWithProgress runs analyze or fuse on streams whose error stream
// claims to be a terminal or not, with bars drawn for files from 1 byte
// on, and returns what reached the error stream.
func runWithProgress(t *testing.T, terminal bool, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	s := &streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut, ErrIsTerminal: terminal}
	root := newRootCmd(s)
	for _, c := range root.Commands() {
		switch c.Name() {
		case "analyze":
			root.RemoveCommand(c)
			root.AddCommand(newCmdAnalyze(s, func(o *analyzeOptions) error {
				o.progressMinBytes = 1
				return analyzeRun(o)
			}))
		case "fuse":
			root.RemoveCommand(c)
			root.AddCommand(newCmdFuse(s, func(o *fuseOptions) error {
				o.progressMinBytes = 1
				return fuseRun(o)
			}))
		}
	}
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return errOut.String()
}

func TestProgressSilentWithoutTerminal(t *testing.T) {
	dir := sharedCheckpoints(t)
	in := filepath.Join(dir, "akamaster_resnet20-12fca82f.th")
	stderr := runWithProgress(t, false, "analyze", "--per-channel", in)
	if stderr != "" {
		t.Errorf("analyze wrote %q to a non-terminal error stream", stderr)
	}
	stderr = runWithProgress(t, false, "fuse", in, "-o", filepath.Join(t.TempDir(), "f.pt"))
	if stderr != "" {
		t.Errorf("fuse wrote %q to a non-terminal error stream", stderr)
	}
	stderr = runWithProgress(t, true, "analyze", "--quiet", "--per-channel", in)
	if stderr != "" {
		t.Errorf("analyze --quiet wrote %q to a terminal error stream", stderr)
	}
}

func TestProgressEnabledOnTerminal(t *testing.T) {
	s := &streams{ErrOut: &bytes.Buffer{}, ErrIsTerminal: true}
	if bars := newProgress(s, false, 0); !bars.Wants(60_000_000) || bars.Wants(1_000_000) {
		t.Error("a terminal should get bars for a 60 MB file and none for a 1 MB file")
	}
	if newProgress(s, true, 0).Enabled() {
		t.Error("--quiet left the bars enabled")
	}
	s.ErrIsTerminal = false
	if newProgress(s, false, 0).Enabled() {
		t.Error("a non-terminal error stream got bars")
	}
}

func TestProgressDrawsOnTerminal(t *testing.T) {
	dir := sharedCheckpoints(t)
	stderr := runWithProgress(t, true, "analyze", "--per-channel", filepath.Join(dir, "ultralytics_yolov5n.pt"))
	if !strings.Contains(stderr, "ultralytics_yolov5n.pt") || !strings.Contains(stderr, "MB") {
		t.Errorf("terminal error stream got %q, want a bar naming the file and counting MB", stderr)
	}
}
