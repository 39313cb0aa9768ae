package checkpoint

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// fixtureModel is one model that make_fixtures.py expects in a file.
type fixtureModel struct {
	Key     string                 `json:"key"`
	Prefix  string                 `json:"prefix"`
	Order   []string               `json:"order"`
	Tensors map[string]torchTensor `json:"tensors"`
}

// fixtureModule is the class, attributes and slots of one live module.
type fixtureModule struct {
	Class    string         `json:"class"`
	Attrs    map[string]any `json:"attrs"`
	Params   [][2]string    `json:"params"`
	Children []string       `json:"children"`
}

type fixtureFile struct {
	Models   []fixtureModel           `json:"models"`
	Metadata map[string]string        `json:"metadata"`
	Warnings []string                 `json:"warnings"`
	Modules  map[string]fixtureModule `json:"modules"`
}

// TestTorchWrittenFixtures makes torch write small checkpoints covering
// both formats, every storage dtype, views, big-endian and deflated
// archives, pickled modules and nested training checkpoints, and compares
// everything Open returns with what torch held before saving.
func TestTorchWrittenFixtures(t *testing.T) {
	requireTorchReader(t)
	dir := t.TempDir()
	script := filepath.Join(moduleRoot(t), "checkpoint", "testdata", "make_fixtures.py")
	cmd := exec.Command(torchPython, script, dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("make_fixtures.py: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var expected map[string]fixtureFile
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatalf("decode expected.json: %v", err)
	}
	names := make([]string, 0, len(expected))
	for name := range expected {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) < 14 {
		t.Fatalf("make_fixtures.py wrote %d fixtures, want at least 14", len(names))
	}

	for _, name := range names {
		want := expected[name]
		t.Run(name, func(t *testing.T) {
			f, err := Open(filepath.Join(dir, name))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()
			checkFixture(t, f, want)
		})
	}

	if _, err := os.Stat(filepath.Join(dir, "executed")); err == nil {
		t.Errorf("opening dangerous.pt executed its payload")
	}
}

func checkFixture(t *testing.T, f *File, want fixtureFile) {
	t.Helper()
	wantFormat := FormatTorchZip
	if strings.Contains(f.Path, "legacy") {
		wantFormat = FormatTorchLegacy
	}
	if f.Format != wantFormat {
		t.Errorf("format mismatch: got %s, want %s", f.Format, wantFormat)
	}
	if len(f.Models) != len(want.Models) {
		t.Fatalf("model count mismatch: got %d, want %d", len(f.Models), len(want.Models))
	}
	for i, wm := range want.Models {
		m := f.Models[i]
		if m.Key != wm.Key {
			t.Errorf("model %d key mismatch: got %q, want %q", i, m.Key, wm.Key)
		}
		if m.StrippedPrefix != wm.Prefix {
			t.Errorf("model %s prefix mismatch: got %q, want %q", wm.Key, m.StrippedPrefix, wm.Prefix)
		}
		got := make([]string, len(m.Tensors))
		for j, tn := range m.Tensors {
			got[j] = tn.Name
		}
		if strings.Join(got, ",") != strings.Join(wm.Order, ",") {
			t.Errorf("model %q tensor order mismatch:\ngot  %v\nwant %v", wm.Key, got, wm.Order)
		}
		for _, name := range wm.Order {
			tn := tensorByName(m, name)
			if tn == nil {
				t.Errorf("model %q: tensor %s not found", wm.Key, name)
				continue
			}
			compareTensor(t, tn, wm.Tensors[name])
		}
	}

	for k, v := range want.Metadata {
		if f.Metadata[k] != v {
			t.Errorf("metadata %s mismatch: got %q, want %q", k, f.Metadata[k], v)
		}
	}
	if len(f.Metadata) != len(want.Metadata) {
		t.Errorf("metadata size mismatch: got %d entries, want %d", len(f.Metadata), len(want.Metadata))
	}
	for _, w := range want.Warnings {
		found := false
		for _, g := range f.Warnings {
			found = found || strings.Contains(g, w)
		}
		if !found {
			t.Errorf("no warning mentions %q; warnings: %q", w, f.Warnings)
		}
	}
	if len(want.Warnings) == 0 && len(f.Warnings) != 0 {
		t.Errorf("unexpected warnings: %q", f.Warnings)
	}
	if len(want.Modules) > 0 {
		checkModules(t, f.Models[0].Root, want.Modules)
	}
}

// checkModules compares the module tree with the live modules' facts.
func checkModules(t *testing.T, root *Module, want map[string]fixtureModule) {
	t.Helper()
	if root == nil {
		t.Fatal("Model.Root is nil for a pickled module")
	}
	got := map[string]*Module{}
	var walk func(m *Module)
	walk = func(m *Module) {
		got[m.Name] = m
		for _, c := range m.Children {
			walk(c)
		}
	}
	walk(root)
	if len(got) != len(want) {
		t.Errorf("module count mismatch: got %d, want %d", len(got), len(want))
	}
	for name, wm := range want {
		m := got[name]
		if m == nil {
			t.Errorf("module %q not found", name)
			continue
		}
		if m.Class != wm.Class {
			t.Errorf("module %q class mismatch: got %s, want %s", name, m.Class, wm.Class)
		}
		for k, wv := range wm.Attrs {
			if !jsonEqual(m.Attrs[k], wv) {
				t.Errorf("module %q attribute %s mismatch: got %v, want %v", name, k, m.Attrs[k], wv)
			}
		}
		if len(m.Params) != len(wm.Params) {
			t.Errorf("module %q params mismatch: got %v, want %v", name, m.Params, wm.Params)
		} else {
			for i, p := range wm.Params {
				if m.Params[i].Short != p[0] || m.Params[i].Full != p[1] {
					t.Errorf("module %q param %d mismatch: got %v, want %v", name, i, m.Params[i], p)
				}
			}
		}
		var children []string
		for _, c := range m.Children {
			children = append(children, c.Name)
		}
		if strings.Join(children, ",") != strings.Join(wm.Children, ",") {
			t.Errorf("module %q children mismatch: got %v, want %v", name, children, wm.Children)
		}
	}
}

// jsonEqual compares an Attrs value with its JSON-decoded expectation,
// where numbers decode as float64.
func jsonEqual(got, want any) bool {
	switch w := want.(type) {
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !jsonEqual(g[i], w[i]) {
				return false
			}
		}
		return true
	case float64:
		switch g := got.(type) {
		case int64:
			return float64(g) == w
		case float64:
			return g == w
		}
		return false
	}
	return got == want
}
