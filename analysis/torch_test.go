package analysis

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// torchPython is Debian's interpreter, the one that can import torch.
const torchPython = "/usr/bin/python3"

// requireTorch skips the test when torch cannot be imported, except under
// CI (CI set), where it fails instead.
func requireTorch(t *testing.T) {
	t.Helper()
	out, err := exec.Command(torchPython, "-c", "import torch").CombinedOutput()
	if err == nil {
		return
	}
	msg := "torch cannot be imported by " + torchPython + ": " + err.Error() + ": " + string(out)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func TestFoldAgainstTorch(t *testing.T) {
	requireTorch(t)
	rng := rand.New(rand.NewPCG(7, 8))
	cases := []struct {
		name       string
		shape      []int
		groups     int
		transposed bool
		out        int
	}{
		{"conv2d", []int{6, 3, 3, 3}, 1, false, 6},
		{"grouped conv1d", []int{8, 2, 3}, 4, false, 8},
		{"depthwise conv2d", []int{5, 1, 3, 3}, 5, false, 5},
		{"transposed conv2d", []int{4, 6, 3, 3}, 1, true, 6},
		{"transposed grouped conv2d", []int{6, 2, 3, 3}, 3, true, 6},
		{"transposed grouped conv1d", []int{4, 3, 2}, 2, true, 6},
	}
	specs := make([]pairSpec, len(cases))
	var blocks []map[string]any
	for i, tc := range cases {
		s := randomSpec(rng, tc.shape, tc.groups, tc.transposed, tc.out)
		specs[i] = s
		blocks = append(blocks, map[string]any{
			"shape": s.shape, "groups": s.groups, "transposed": s.transposed,
			"weight": s.weight, "bias": s.bias, "gamma": s.gamma, "beta": s.beta,
			"mean": s.mean, "variance": s.variance, "eps": s.eps,
		})
	}
	input, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	inputPath := filepath.Join(t.TempDir(), "blocks.json")
	if err := os.WriteFile(inputPath, input, 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(torchPython, filepath.Join("testdata", "fold_oracle.py"), inputPath)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fold_oracle.py failed: %v\n%s", err, stderr.String())
	}
	var wants []struct {
		Omega           []float64 `json:"omega"`
		FusedBias       []float64 `json:"fused_bias"`
		FusedWeightNorm []float64 `json:"fused_weight_norm"`
	}
	if err := json.Unmarshal(out, &wants); err != nil {
		t.Fatalf("decode torch output: %v", err)
	}
	if len(wants) != len(cases) {
		t.Fatalf("torch returned %d blocks, want %d", len(wants), len(cases))
	}

	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := wants[i]
			opts := DefaultOptions()
			opts.WeightNorms = true
			l, err := AnalyzePair("torch.pth", specs[i].pair(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(want.Omega) != l.NumChannels() {
				t.Fatalf("channel count mismatch: got %d, torch %d", l.NumChannels(), len(want.Omega))
			}
			for c, ch := range l.Channels {
				if !relClose(ch.Omega, want.Omega[c], 1e-12, 1e-15) {
					t.Errorf("channel %d omega mismatch: got %v, want %v", c, ch.Omega, want.Omega[c])
				}
				if !relClose(ch.FusedBias, want.FusedBias[c], 1e-12, 1e-15) {
					t.Errorf("channel %d fused bias mismatch: got %v, want %v", c, ch.FusedBias, want.FusedBias[c])
				}
				if !relClose(ch.FusedWeightNorm, want.FusedWeightNorm[c], 1e-12, 1e-15) {
					t.Errorf("channel %d fused weight norm mismatch: got %v, want %v", c, ch.FusedWeightNorm, want.FusedWeightNorm[c])
				}
			}
		})
	}
}
