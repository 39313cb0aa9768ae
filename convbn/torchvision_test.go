package convbn

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/internal/testenv"
)

// torchPython is Debian's interpreter, the one that has torch installed.
const torchPython = "/usr/bin/python3"

// requireTorchvision skips the test when torch cannot be imported, except under
// CI (CI set), where a missing torch fails the test so it is never skipped
// silently.
func requireTorchvision(t *testing.T) {
	t.Helper()
	testenv.RequirePython(t, "torch", "torchvision")
}

// torchvisionArch is one architecture's entry in the script's pairs.json.
type torchvisionArch struct {
	Files []string          `json:"files"`
	Pairs map[string]string `json:"pairs"`
	Convs map[string]struct {
		Groups      int  `json:"groups"`
		Transposed  bool `json:"transposed"`
		OutChannels int  `json:"out_channels"`
	} `json:"convs"`
	BatchNorms map[string]struct {
		Eps      float64  `json:"eps"`
		Momentum *float64 `json:"momentum"`
	} `json:"batchnorms"`
	// StateDictAmbiguous lists the convs of fx pairs that a state dict
	// cannot settle, because they are grouped transposed convs.
	StateDictAmbiguous []string `json:"state_dict_ambiguous"`
}

// TestTorchvisionPairs compares FindPairs with the pairs torch.fx traces
// in torchvision models, for state dicts in both torch.save formats and for
// whole pickled modules. The script writes about 700 MB into a temporary
// folder and takes a few seconds.
func TestTorchvisionPairs(t *testing.T) {
	requireTorchvision(t)
	script := filepath.Join(pairsModuleRoot(t), "scripts", "torchvision_checkpoints.py")
	dir := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, torchPython, script, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", torchPython, script, err, out)
	}
	t.Logf("script took %.1f s", time.Since(start).Seconds())

	raw, err := os.ReadFile(filepath.Join(dir, "pairs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index map[string]torchvisionArch
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatalf("pairs.json: %v", err)
	}
	if len(index) < 15 {
		t.Fatalf("pairs.json lists %d architectures, want at least 15", len(index))
	}

	names := make([]string, 0, len(index))
	for name := range index {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		arch := index[name]
		for _, file := range arch.Files {
			t.Run(file, func(t *testing.T) {
				checkTorchvisionFile(t, filepath.Join(dir, file), arch)
			})
		}
	}
}

// checkTorchvisionFile checks one checkpoint against the fx result: the
// exact pair set, no ambiguity, every conv and BatchNorm accounted for, and
// groups and transposition that agree with the module where they are
// stored or inferred.
func checkTorchvisionFile(t *testing.T, path string, arch torchvisionArch) {
	f, err := checkpoint.Open(path)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer f.Close()
	if len(f.Models) != 1 {
		t.Fatalf("got %d models, want 1", len(f.Models))
	}
	r, err := FindPairs(f.Models[0], f.Metadata, Options{})
	if err != nil {
		t.Fatalf("FindPairs: %v", err)
	}

	// A state dict does not store groups, so a grouped transposed conv's
	// BatchNorm matches neither weight dimension and only --pair can
	// confirm the pair; FindPairs must report it as ambiguous. A pickled
	// module stores groups, so there every fx pair must be found.
	want := arch.Pairs
	wantAmbiguous := map[string]bool{}
	if f.Models[0].Root == nil && len(arch.StateDictAmbiguous) > 0 {
		want = map[string]string{}
		for conv, bn := range arch.Pairs {
			want[conv] = bn
		}
		for _, conv := range arch.StateDictAmbiguous {
			delete(want, conv)
			wantAmbiguous[conv], wantAmbiguous[arch.Pairs[conv]] = true, true
		}
	}
	comparePairSets(t, filepath.Base(path), pairMap(r), want)
	for _, a := range r.Ambiguous {
		if !wantAmbiguous[a.Name] {
			t.Errorf("ambiguous %s (candidates %v): %s", a.Name, a.Candidates, a.Reason)
		}
		delete(wantAmbiguous, a.Name)
	}
	for name := range wantAmbiguous {
		t.Errorf("%s: want it reported as ambiguous (grouped transposed conv in a state dict)", name)
	}

	for _, p := range r.Pairs {
		want, ok := arch.Convs[p.Conv.Name]
		if !ok {
			t.Errorf("paired conv %s is not a conv module of the model", p.Conv.Name)
			continue
		}
		if p.Conv.Transposed != want.Transposed || p.Conv.OutChannels() != want.OutChannels {
			t.Errorf("%s: transposed %v with %d output channels, want %v with %d", p.Conv.Name, p.Conv.Transposed, p.Conv.OutChannels(), want.Transposed, want.OutChannels)
		}
		if p.Conv.GroupsSource != "" && p.Conv.Groups != want.Groups {
			t.Errorf("%s: groups %d (%s), want %d", p.Conv.Name, p.Conv.Groups, p.Conv.GroupsSource, want.Groups)
		}
		if f.Models[0].Root != nil && p.Conv.GroupsSource != SourceFile {
			t.Errorf("%s: groups source %q in a pickled module, want %q", p.Conv.Name, p.Conv.GroupsSource, SourceFile)
		}

		settings := arch.BatchNorms[p.BN.Name]
		wantSource := SourceDefault
		if f.Models[0].Root != nil {
			wantSource = SourceFile
		}
		if p.BN.EpsSource != wantSource || p.BN.MomentumSource != wantSource {
			t.Errorf("%s: eps from %s, momentum from %s, want both from %s", p.BN.Name, p.BN.EpsSource, p.BN.MomentumSource, wantSource)
		}
		if wantSource == SourceFile && (p.BN.Eps != settings.Eps || formatMomentum(p.BN.Momentum) != formatMomentum(settings.Momentum)) {
			t.Errorf("%s: eps %g momentum %s, want %g and %s", p.BN.Name, p.BN.Eps, formatMomentum(p.BN.Momentum), settings.Eps, formatMomentum(settings.Momentum))
		}
	}

	listed := map[string]bool{}
	for _, p := range r.Pairs {
		listed[p.Conv.Name], listed[p.BN.Name] = true, true
	}
	for _, u := range r.Unpaired {
		if listed[u.Name] {
			t.Errorf("%s is both paired and unpaired (%s)", u.Name, u.Reason)
		}
		listed[u.Name] = true
	}
	for _, a := range r.Ambiguous {
		listed[a.Name] = true
	}
	for conv := range arch.Convs {
		if !listed[conv] {
			t.Errorf("conv %s is neither paired nor listed as unpaired", conv)
		}
	}
	for bn := range arch.BatchNorms {
		if !listed[bn] {
			t.Errorf("BatchNorm %s is neither paired nor listed as unpaired", bn)
		}
	}
}
