package nn

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestOptimizersMatchTorch(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "torch_optim_reference.json"))
	if err != nil {
		t.Fatalf("read reference: %v (regenerate with /usr/bin/python3 scripts/torch_reference.py)", err)
	}
	var ref struct {
		Optim []struct {
			Name    string      `json:"name"`
			Initial refTensor   `json:"initial"`
			Grads   []refTensor `json:"grads"`
			After   []refTensor `json:"after"`
		} `json:"optim"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatalf("decode testdata/torch_optim_reference.json: %v", err)
	}
	// The optimizers as scripts/torch_reference.py configures them.
	makers := map[string]func() Optimizer[float64]{
		"sgd":                func() Optimizer[float64] { return &SGD[float64]{LR: 0.1} },
		"sgd_momentum_decay": func() Optimizer[float64] { return &SGD[float64]{LR: 0.1, Momentum: 0.9, WeightDecay: 0.01} },
		"adam":               func() Optimizer[float64] { return NewAdam[float64](0.01) },
		"adam_eps0_decay": func() Optimizer[float64] {
			a := NewAdam[float64](0.01)
			a.Eps, a.WeightDecay = 0, 0.05
			return a
		},
		"adamw": func() Optimizer[float64] {
			return &Adam[float64]{LR: 0.01, Beta1: 0.8, Beta2: 0.99, Eps: 1e-8, WeightDecay: 0.1, Decoupled: true}
		},
	}
	if len(ref.Optim) != len(makers) {
		t.Fatalf("reference has %d optimizer cases, test knows %d", len(ref.Optim), len(makers))
	}
	for _, tc := range ref.Optim {
		t.Run(tc.Name, func(t *testing.T) {
			mk, ok := makers[tc.Name]
			if !ok {
				t.Fatalf("no optimizer for reference case %q", tc.Name)
			}
			opt := mk()
			p := &Param[float64]{Name: "p", Value: append([]float64(nil), tc.Initial.Data...), Decay: true}
			for i, g := range tc.Grads {
				// A fresh Param per step, as Block.Params builds them, must
				// keep the optimizer's state.
				p = &Param[float64]{Name: "p", Value: p.Value, Grad: append([]float64(nil), g.Data...), Decay: true}
				opt.Step([]*Param[float64]{p})
				assertClose(t, "step "+string(rune('1'+i)), p.Value, tc.After[i].Data, 1e-12, 1e-14)
			}
		})
	}
}

func TestAdamEpsZeroSkipsZeroGradient(t *testing.T) {
	a := NewAdam[float64](0.1)
	a.Eps = 0
	p := &Param[float64]{Value: []float64{1, 2}, Grad: []float64{0, -3}}
	a.Step([]*Param[float64]{p})
	if p.Value[0] != 1 {
		t.Errorf("element with zero gradient moved: got %g, want 1", p.Value[0])
	}
	if want := 2.1; p.Value[1] != want {
		t.Errorf("first step with eps 0: got %.17g, want %g (sign step of size lr)", p.Value[1], want)
	}
}
