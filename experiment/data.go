package experiment

import (
	"fmt"

	"github.com/convbn-diag/convbn-diag/mnist"
	"github.com/convbn-diag/convbn-diag/nn"
)

// SourceDigits and TargetDigits are the two tasks: pretraining classifies
// digits 0–4, fine-tuning digits 5–9, each as classes 0–4.
var (
	SourceDigits = []int{0, 1, 2, 3, 4}
	TargetDigits = []int{5, 6, 7, 8, 9}
)

// LoadTask returns the first n training images (all when n ≤ 0) and the
// first nTest test images of the given digits from the MNIST folder dir.
func LoadTask(dir string, digits []int, n, nTest int) (train, test *mnist.Set, err error) {
	full, err := mnist.Load(dir, "train")
	if err != nil {
		return nil, nil, err
	}
	if train, err = full.Subset(digits, n); err != nil {
		return nil, nil, err
	}
	fullTest, err := mnist.Load(dir, "test")
	if err != nil {
		return nil, nil, err
	}
	if test, err = fullTest.Subset(digits, nTest); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// batchTensor returns the images idx of s as an N×1×28×28 tensor with their
// labels.
func batchTensor[T nn.Float](s *mnist.Set, idx []int) (*nn.Tensor[T], []int) {
	x := nn.NewTensor[T](len(idx), 1, mnist.Side, mnist.Side)
	labels := mnist.Batch(s, idx, x.Data)
	return x, labels
}

// span returns 0, 1, …, n−1.
func span(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// batchOrder returns steps batches of size indices into a set of n images.
// The batches cut successive seeded permutations, so every mode of a run
// trains on the same batches in the same order.
func batchOrder(n, size, steps int, seed uint64) ([][]int, error) {
	if size < 1 || size > n {
		return nil, fmt.Errorf("batch size %d does not fit %d images", size, n)
	}
	rng := newRand(seed)
	var perm []int
	out := make([][]int, steps)
	for s := range out {
		if len(perm) < size {
			perm = append(perm, rng.Perm(n)...)
		}
		out[s] = perm[:size:size]
		perm = perm[size:]
	}
	return out, nil
}

// accuracy returns the fraction of rows of the N×K logits whose largest
// entry is at the label.
func accuracy[T nn.Float](logits *nn.Tensor[T], labels []int) float64 {
	k := logits.Shape[1]
	right := 0
	for i, l := range labels {
		row := logits.Data[i*k : (i+1)*k]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		if best == l {
			right++
		}
	}
	return float64(right) / float64(len(labels))
}
