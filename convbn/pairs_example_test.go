package convbn_test

import (
	"fmt"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
)

// exampleZeros returns an in-memory tensor of the given shape.
func exampleZeros(name string, shape ...int) *checkpoint.Tensor {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return checkpoint.NewTensor(name, shape, make([]float64, n))
}

// A state dict of Sequential(Conv2d, BatchNorm2d, ReLU, Conv2d, ReLU,
// BatchNorm2d): the second conv's BatchNorm sits behind a ReLU, so only the
// first block folds.
func ExampleFindPairs() {
	m := &checkpoint.Model{}
	for _, t := range []*checkpoint.Tensor{
		exampleZeros("features.0.weight", 16, 3, 3, 3),
		exampleZeros("features.1.weight", 16), exampleZeros("features.1.bias", 16),
		exampleZeros("features.1.running_mean", 16), exampleZeros("features.1.running_var", 16),
		exampleZeros("features.3.weight", 32, 16, 3, 3), exampleZeros("features.3.bias", 32),
		exampleZeros("features.5.weight", 32), exampleZeros("features.5.bias", 32),
		exampleZeros("features.5.running_mean", 32), exampleZeros("features.5.running_var", 32),
	} {
		m.Tensors = append(m.Tensors, t)
	}

	r, err := convbn.FindPairs(m, nil, convbn.Options{Eps: 1e-3, EpsSet: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range r.Pairs {
		fmt.Printf("%s → %s (%s), eps %g from %s\n", p.Conv.Name, p.BN.Name, p.Evidence, p.BN.Eps, p.BN.EpsSource)
	}
	for _, u := range r.Unpaired {
		fmt.Printf("unpaired %s %s: %s\n", u.Kind, u.Name, u.Reason)
	}
	// Output:
	// features.0 → features.1 (sequential-index), eps 0.001 from flag
	// unpaired conv features.3: index gap: features.4 sits between features.3 and features.5, so the BatchNorm does not take the conv's output directly
	// unpaired batchnorm features.5: index gap: features.4 sits between features.3 and features.5, so the BatchNorm does not take the conv's output directly
}
