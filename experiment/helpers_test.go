package experiment

import (
	"testing"

	"github.com/convbn-diag/convbn-diag/examples"
	"github.com/convbn-diag/convbn-diag/mnist"
)

// testData returns the embedded pretrained weights and the MNIST folder,
// skipping the test when the MNIST files are not in the module cache.
func testData(t *testing.T) (*Weights, string) {
	t.Helper()
	dir, err := mnist.Locate("")
	if err != nil {
		t.Skipf("MNIST files missing: %v", err)
	}
	f, err := examples.Open("mnist")
	if err != nil {
		t.Fatalf("open the mnist example: %v", err)
	}
	defer f.Close()
	w, err := LoadWeights(f)
	if err != nil {
		t.Fatalf("load the mnist example: %v", err)
	}
	return w, dir
}

func loadTask(t *testing.T, dir string, digits []int, n, nTest int) (train, test *mnist.Set) {
	t.Helper()
	train, test, err := LoadTask(dir, digits, n, nTest)
	if err != nil {
		t.Fatalf("load digits %v: %v", digits, err)
	}
	return train, test
}
