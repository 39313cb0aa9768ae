// Package testenv locates what the tests compare against: the real
// checkpoints kept beside the repository, and Debian's Python with PyTorch,
// torchvision and ONNX as the reference implementation.
//
// Both are optional on a developer's machine, where a test without them
// skips with a message naming what is missing. Under CI (the environment
// variable CI set) a missing reference fails the test instead, so CI never
// passes by skipping.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Python is Debian's interpreter, which imports the python3-torch,
// python3-torchvision and python3-onnx packages. A python3 earlier on PATH
// (pyenv, a virtualenv) usually does not.
const Python = "/usr/bin/python3"

// ModuleRoot returns the folder holding go.mod, found by walking up from
// the test's working directory.
func ModuleRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// SharedCheckpoints returns the folder of real checkpoints beside the
// repository (../shared/checkpoints from the module root). The test skips
// when it is absent, naming the path.
func SharedCheckpoints(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(ModuleRoot(tb), "..", "shared", "checkpoints")
	if _, err := os.Stat(dir); err != nil {
		tb.Skipf("real checkpoints not available: %s is missing", dir)
	}
	return dir
}

// Checkpoint returns the path of the real checkpoint name, skipping the test
// as SharedCheckpoints does.
func Checkpoint(tb testing.TB, name string) string {
	tb.Helper()
	return filepath.Join(SharedCheckpoints(tb), name)
}

var (
	importMu      sync.Mutex
	importResults = map[string]error{}
)

// RequirePython skips the test unless Python can import every module in
// modules ("torch", "torchvision", "onnx"), and fails it instead under CI.
// The import is tried once per process for each set of modules.
func RequirePython(tb testing.TB, modules ...string) {
	tb.Helper()
	stmt := "import " + strings.Join(modules, ", ")

	importMu.Lock()
	err, tried := importResults[stmt]
	if !tried {
		var out []byte
		out, err = exec.Command(Python, "-c", stmt).CombinedOutput()
		if err != nil {
			err = &importError{stmt: stmt, err: err, output: strings.TrimSpace(string(out))}
		}
		importResults[stmt] = err
	}
	importMu.Unlock()

	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("%v (CI requires the PyTorch reference: apt-get install python3-torch python3-torchvision python3-onnx)", err)
	}
	tb.Skipf("%v; apt-get install python3-torch python3-torchvision python3-onnx to run this test", err)
}

type importError struct {
	stmt   string
	err    error
	output string
}

func (e *importError) Error() string {
	return Python + " -c '" + e.stmt + "' failed: " + e.err.Error() + ": " + e.output
}
