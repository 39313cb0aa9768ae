package nn

import "math"

// Optimizer updates parameters from their gradients.
type Optimizer[T Float] interface {
	Step(params []*Param[T])
}

// SGD is stochastic gradient descent with optional momentum and L2 weight
// decay, following PyTorch's torch.optim.SGD without dampening or Nesterov:
//
//	d = ∂L/∂w + λ·w      (λ only for parameters with Decay set)
//	v ← μ·v + d          (v = d on the first step)
//	w ← w − η·v
//
// Per-parameter state is keyed by the parameter's storage, so a Params call
// that builds new Param values for the same slices keeps its state.
type SGD[T Float] struct {
	LR, Momentum, WeightDecay float64

	velocity map[*T][]T
}

// Step applies one update to every parameter.
func (o *SGD[T]) Step(params []*Param[T]) {
	if o.velocity == nil {
		o.velocity = make(map[*T][]T)
	}
	for _, p := range params {
		if len(p.Value) == 0 {
			continue
		}
		decay := 0.0
		if p.Decay {
			decay = o.WeightDecay
		}
		var v []T
		if o.Momentum != 0 {
			key := &p.Value[0]
			prev, seen := o.velocity[key]
			if !seen {
				prev = make([]T, len(p.Value))
				o.velocity[key] = prev
			}
			v = prev
			for i, g := range p.Grad {
				d := float64(g) + decay*float64(p.Value[i])
				if seen {
					d += o.Momentum * float64(v[i])
				}
				v[i] = T(d)
			}
		}
		for i, g := range p.Grad {
			step := float64(g) + decay*float64(p.Value[i])
			if v != nil {
				step = float64(v[i])
			}
			p.Value[i] = T(float64(p.Value[i]) - o.LR*step)
		}
	}
}

// Adam is the Adam optimizer, or AdamW when Decoupled is set, following
// PyTorch's torch.optim.Adam and AdamW:
//
//	g = ∂L/∂w + λ·w              (Adam with weight decay; AdamW uses ∂L/∂w)
//	m ← β₁·m + (1 − β₁)·g,  v ← β₂·v + (1 − β₂)·g²
//	w ← w·(1 − η·λ)               (AdamW only)
//	w ← w − η·m̂ / (√v̂ + ε),      m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ)
//
// Eps may be 0, which makes the first step sign(g)·η. An element whose
// gradient has been 0 on every step so far then has m̂ = v̂ = 0 and is not
// moved, where the formula would give 0/0. Weight decay applies only to
// parameters with Decay set.
type Adam[T Float] struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
	Decoupled                          bool

	steps int
	m, v  map[*T][]float64
}

// NewAdam returns Adam with PyTorch's defaults β₁ = 0.9, β₂ = 0.999,
// ε = 1e-8 and no weight decay.
func NewAdam[T Float](lr float64) *Adam[T] {
	return &Adam[T]{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
}

// Step applies one update to every parameter.
func (o *Adam[T]) Step(params []*Param[T]) {
	if o.m == nil {
		o.m, o.v = make(map[*T][]float64), make(map[*T][]float64)
	}
	o.steps++
	c1 := 1 - math.Pow(o.Beta1, float64(o.steps))
	c2 := 1 - math.Pow(o.Beta2, float64(o.steps))
	for _, p := range params {
		if len(p.Value) == 0 {
			continue
		}
		key := &p.Value[0]
		m, ok := o.m[key]
		if !ok {
			m = make([]float64, len(p.Value))
			o.m[key] = m
			o.v[key] = make([]float64, len(p.Value))
		}
		v := o.v[key]
		decay := 0.0
		if p.Decay {
			decay = o.WeightDecay
		}
		for i, gt := range p.Grad {
			w := float64(p.Value[i])
			g := float64(gt)
			if !o.Decoupled {
				g += decay * w
			}
			m[i] = o.Beta1*m[i] + (1-o.Beta1)*g
			v[i] = o.Beta2*v[i] + (1-o.Beta2)*g*g
			if o.Decoupled {
				w *= 1 - o.LR*decay
			}
			mHat, vHat := m[i]/c1, v[i]/c2
			denom := math.Sqrt(vHat) + o.Eps
			if denom > 0 {
				w -= o.LR * mHat / denom
			}
			p.Value[i] = T(w)
		}
	}
}
