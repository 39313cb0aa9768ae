package examples

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/convbn-diag/convbn-diag/experiment"
	"github.com/convbn-diag/convbn-diag/mnist"
)

// TestMNISTUpToDate pretrains with the default settings and compares the
// checkpoint with the embedded one, byte for byte.
func TestMNISTUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("pretraining takes about 20 s")
	}
	dir, err := mnist.Locate("")
	if err != nil {
		t.Skipf("MNIST files missing: %v", err)
	}
	cfg := experiment.DefaultPretrainConfig()
	train, test, err := experiment.LoadTask(dir, experiment.SourceDigits, cfg.Images, cfg.TestImages)
	if err != nil {
		t.Fatal(err)
	}
	res, err := experiment.Pretrain(cfg, train, test, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mnist.pt")
	if err := experiment.Save(path, res.Weights, cfg); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Bytes("mnist")
	if !bytes.Equal(got, want) {
		t.Errorf("mnist.pt differs from what the default pretraining writes; run `go generate ./examples` and commit mnist.pt")
	}
	if m := res.Omega.All.Median; !(m < 0.5) {
		t.Errorf("median |ω| %.3g, want below 0.5", m)
	}
}
