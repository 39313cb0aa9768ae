package experiment

import (
	"fmt"
	"math"
)

// Grid is a geometric grid of learning rates, tried from the largest down.
type Grid struct {
	Max, Min float64
	// Factor is the ratio of neighbouring rates, above 1.
	Factor float64
	// StopAfterStable ends the descent after this many consecutive stable
	// rates (0: try every rate). Every rate above the last one tried was
	// tried, so the largest stable rate found is the largest stable rate
	// on the grid down to there.
	StopAfterStable int
}

// Validate reports an invalid grid.
func (g *Grid) Validate() error {
	if !(g.Min > 0) || !(g.Max >= g.Min) || math.IsInf(g.Max, 0) || !(g.Factor > 1) {
		return fmt.Errorf("learning-rate grid [%g, %g] with factor %g: need 0 < min ≤ max and factor > 1", g.Min, g.Max, g.Factor)
	}
	if n := math.Log(g.Max/g.Min) / math.Log(g.Factor); n > 200 {
		return fmt.Errorf("learning-rate grid [%g, %g] with factor %g has %.0f rates, more than 200", g.Min, g.Max, g.Factor, n)
	}
	return nil
}

// Trial is one learning rate tried by a sweep.
type Trial struct {
	LR float64 `json:"lr"`
	// Stable is false when the loss became non-finite, reached
	// DivergenceFactor × its first value, or ended above its first value.
	Stable    bool  `json:"stable"`
	Steps     int   `json:"steps"`
	FirstLoss Float `json:"first_loss"`
	FinalLoss Float `json:"final_loss"`
}

// ModeSweep is every rate tried in one mode and the largest stable one
// (NaN when none was stable).
type ModeSweep struct {
	Mode      string  `json:"mode"`
	Trials    []Trial `json:"trials"`
	MaxRate   Float   `json:"max_stable_lr"`
	AllStable bool    `json:"all_stable"`
}

// descend tries the grid's rates from the largest down with try and
// returns every trial.
func (g *Grid) descend(mode string, try func(lr float64) (Trial, error)) (*ModeSweep, error) {
	ms := &ModeSweep{Mode: mode, MaxRate: Float(math.NaN()), AllStable: true}
	stableRun := 0
	for i := 0; ; i++ {
		lr := g.Max / math.Pow(g.Factor, float64(i))
		if lr < g.Min*(1-1e-9) {
			break
		}
		t, err := try(lr)
		if err != nil {
			return nil, fmt.Errorf("%s mode, learning rate %g: %w", mode, lr, err)
		}
		ms.Trials = append(ms.Trials, t)
		if !t.Stable {
			ms.AllStable = false
			stableRun = 0
			continue
		}
		if math.IsNaN(float64(ms.MaxRate)) {
			ms.MaxRate = Float(lr)
		}
		stableRun++
		if g.StopAfterStable > 0 && stableRun >= g.StopAfterStable {
			break
		}
	}
	return ms, nil
}

// judge turns a loss trajectory into a Trial. The losses end at the first
// non-finite loss or the first that reaches DivergenceFactor × the first.
// The end-of-run loss is the mean of the last tail losses.
func judge(lr float64, losses []float64, tail int) Trial {
	t := Trial{LR: lr, Steps: len(losses), FirstLoss: Float(losses[0])}
	last := losses[len(losses)-1]
	if math.IsNaN(last) || math.IsInf(last, 0) || last >= DivergenceFactor*losses[0] {
		t.FinalLoss = Float(last)
		return t
	}
	tail = min(tail, len(losses))
	var mean float64
	for _, l := range losses[len(losses)-tail:] {
		mean += l / float64(tail)
	}
	t.FinalLoss = Float(mean)
	t.Stable = mean < losses[0]
	return t
}

// diverging reports whether a loss ends a run.
func diverging(loss, first float64) bool {
	return math.IsNaN(loss) || math.IsInf(loss, 0) || loss >= DivergenceFactor*first
}
