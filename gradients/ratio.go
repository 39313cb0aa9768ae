package gradients

import (
	"fmt"
	"math"

	"github.com/convbn-diag/convbn-diag/nn"
)

// StepRatio compares one optimizer step taken in Deploy mode with one taken
// in Eval (or Tune) mode from the same point, both expressed as changes of
// the fused weight W'. Ratio[c] = ‖ΔW'_Deploy,c‖ / ‖ΔW'_Eval,c‖. With γ
// frozen the chain rule gives 1/ω_c² for SGD, because Eval's step in W'
// is ω_c·(η·ω_c·G'_c), and 1/|ω_c| for Adam's first step with ε = 0,
// which moves every element by η·sign(gradient). Channels whose Eval step
// is exactly zero (dead channels, γ_c = 0) are listed in Dead with Ratio
// +Inf, and nothing is divided by their zero step.
type StepRatio struct {
	Ratio []float64
	Dead  []int
}

// MeasureStepRatio returns the per-channel step ratio from the fused-weight
// changes of both modes. Output channel c is the c-th of channels equal
// contiguous rows.
func MeasureStepRatio[T nn.Float](deployDelta, evalDelta []T, channels int) (*StepRatio, error) {
	if channels <= 0 || len(deployDelta) != len(evalDelta) || len(deployDelta)%channels != 0 {
		return nil, fmt.Errorf("step ratio: %d and %d elements cannot be split into %d channels", len(deployDelta), len(evalDelta), channels)
	}
	k := len(deployDelta) / channels
	r := &StepRatio{Ratio: make([]float64, channels)}
	for c := range channels {
		e := nn.Norm(evalDelta[c*k : (c+1)*k])
		if e == 0 {
			r.Dead = append(r.Dead, c)
			r.Ratio[c] = math.Inf(1)
			continue
		}
		r.Ratio[c] = nn.Norm(deployDelta[c*k:(c+1)*k]) / e
	}
	return r, nil
}
