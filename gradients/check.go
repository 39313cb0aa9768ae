package gradients

import (
	"fmt"
	"math"
)

// Variable is one input of a scalar function together with its analytic
// gradient. Check perturbs Value in place and restores it.
type Variable struct {
	Name  string
	Value []float64
	Grad  []float64
}

// Tolerance accepts an analytic derivative a against a numerical one n when
// |a − n| ≤ Abs or |a − n| ≤ Rel·max(|a|, |n|).
type Tolerance struct {
	Rel, Abs float64
}

// DefaultTolerance is relative 1e-6 or absolute 1e-9, suited to float64
// central differences with step 1e-6 on well-scaled inputs.
var DefaultTolerance = Tolerance{Rel: 1e-6, Abs: 1e-9}

// Mismatch is one element whose analytic and numerical derivatives
// disagree beyond the tolerance.
type Mismatch struct {
	Variable string
	Index    int
	Analytic float64
	Numeric  float64
}

// String formats the mismatch for a test failure.
func (m Mismatch) String() string {
	return fmt.Sprintf("%s[%d]: analytic %.12g, central difference %.12g", m.Variable, m.Index, m.Analytic, m.Numeric)
}

// CheckReport summarizes a gradient check.
type CheckReport struct {
	Checked    int
	Mismatches []Mismatch
	// MaxAbsErr and MaxRelErr are the largest |a − n| and
	// |a − n|/max(|a|, |n|) over all checked elements.
	MaxAbsErr, MaxRelErr float64
}

// Check compares every element of every variable's Grad with the central
// difference (f(v + h) − f(v − h)) / 2h, where f is recomputed from the
// current values of all variables. A non-positive step means 1e-6. f must
// be deterministic apart from state that does not change its value (a
// BatchNorm's running statistics in train mode, for example).
func Check(f func() (float64, error), vars []Variable, step float64, tol Tolerance) (*CheckReport, error) {
	if step <= 0 {
		step = 1e-6
	}
	rep := &CheckReport{}
	for _, v := range vars {
		if len(v.Grad) != len(v.Value) {
			return nil, fmt.Errorf("variable %s: %d gradient elements for %d values", v.Name, len(v.Grad), len(v.Value))
		}
		for i := range v.Value {
			orig := v.Value[i]
			v.Value[i] = orig + step
			plus, err := f()
			if err != nil {
				v.Value[i] = orig
				return nil, fmt.Errorf("variable %s[%d] + %g: %w", v.Name, i, step, err)
			}
			v.Value[i] = orig - step
			minus, err := f()
			v.Value[i] = orig
			if err != nil {
				return nil, fmt.Errorf("variable %s[%d] − %g: %w", v.Name, i, step, err)
			}
			numeric := (plus - minus) / (2 * step)
			analytic := v.Grad[i]
			diff := math.Abs(analytic - numeric)
			scale := math.Max(math.Abs(analytic), math.Abs(numeric))
			rel := 0.0
			if scale > 0 {
				rel = diff / scale
			}
			rep.Checked++
			rep.MaxAbsErr = math.Max(rep.MaxAbsErr, diff)
			rep.MaxRelErr = math.Max(rep.MaxRelErr, rel)
			if !(diff <= tol.Abs || diff <= tol.Rel*scale) {
				rep.Mismatches = append(rep.Mismatches, Mismatch{Variable: v.Name, Index: i, Analytic: analytic, Numeric: numeric})
			}
		}
	}
	return rep, nil
}
