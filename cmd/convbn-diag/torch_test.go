package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/internal/testenv"
)

// requireTorch skips the test when Debian's PyTorch is not installed, except
// under CI (CI set), where a missing reference is a failure.
func requireTorch(t *testing.T) {
	t.Helper()
	testenv.RequirePython(t, "torch")
}

// runPython runs a Python script with Debian's interpreter.
func runPython(t *testing.T, script string, args ...string) {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", append([]string{"-c", script}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
}

// TestAnalyzeSeveralModels saves a training checkpoint holding "model" and
// "ema" with torch and checks that each is analyzed on its own, and that
// --key picks one.
func TestAnalyzeSeveralModels(t *testing.T) {
	requireTorch(t)
	path := filepath.Join(t.TempDir(), "last.pt")
	runPython(t, `
import sys, torch, torch.nn as nn
torch.manual_seed(0)
def net(width):
    return nn.Sequential(nn.Conv2d(3, width, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3), nn.BatchNorm2d(width))
model, ema = net(8), net(8)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
model(torch.randn(2, 3, 8, 8)).sum().backward()
opt.step()
torch.save({'epoch': 3, 'model': model.state_dict(), 'ema': ema.state_dict(),
            'optimizer': opt.state_dict(), 'updates': None}, sys.argv[1])
`, path)

	code, stdout, stderr := runCLI(t, "analyze", "-f", "json", path)
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr)
	}
	models := decodeReport(t, stdout).Files[0].Models
	keys := map[string]int{}
	for _, m := range models {
		keys[m.Key] = len(m.Layers)
	}
	if len(models) != 2 || keys["model"] != 2 || keys["ema"] != 2 {
		t.Errorf("models: got %v (key → pairs), want model and ema with 2 pairs each", keys)
	}

	code, stdout, stderr = runCLI(t, "analyze", "-f", "json", "--key", "ema", path)
	if code != exitOK {
		t.Fatalf("--key ema: exit status %d, stderr %q", code, stderr)
	}
	models = decodeReport(t, stdout).Files[0].Models
	if len(models) != 1 || models[0].Key != "ema" {
		t.Errorf("--key ema: got %+v, want only the ema model", models)
	}

	code, _, stderr = runCLI(t, "analyze", "--key", "nosuch", path)
	if code != exitFailure {
		t.Errorf("--key nosuch: exit status %d, want %d", code, exitFailure)
	}
	for _, want := range []string{"nosuch", "ema", "model"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("--key nosuch: stderr %q does not mention %q", stderr, want)
		}
	}
}
