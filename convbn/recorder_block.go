package convbn

import (
	"math"
	"time"

	"github.com/convbn-diag/convbn-diag/gradients"
	"github.com/convbn-diag/convbn-diag/nn"
)

// report builds the Record of one pass and hands it to the Recorder.
func (b *Block[T]) report(phase Phase, elapsed time.Duration) {
	nan := math.NaN()
	r := &Record{
		Block: b.Name, Step: b.step, Phase: phase, Mode: b.mode, Duration: elapsed,
		WeightNorm: nan, WeightGradNorm: nan, GammaNorm: nan, GammaGradNorm: nan,
		FusedWeightNorm: nan, FusedWeightGradNorm: nan,
	}
	if phase == PhaseForward {
		r.Held = b.Held()
		r.Held.Items = append([]HeldItem(nil), r.Held.Items...)
	}
	backward := phase == PhaseBackward
	channels := b.Conv.OutChannels
	k := len(b.Weight) / channels
	var ch *ChannelRecord
	if b.RecordChannels {
		ch = &ChannelRecord{}
		r.Channels = ch
	}

	if b.mode == Deploy {
		r.FusedWeightNorm = nn.Norm(b.Weight)
		if backward {
			r.FusedWeightGradNorm = nn.Norm(b.WeightGrad)
		}
		if ch != nil {
			ch.FusedWeightNorm = rowNorms(b.Weight, channels, k)
			if backward {
				ch.FusedWeightGradNorm = rowNorms(b.WeightGrad, channels, k)
			}
		}
		b.Recorder.Record(r)
		return
	}

	r.WeightNorm = nn.Norm(b.Weight)
	if b.BN.Affine {
		r.GammaNorm = nn.Norm(b.BN.Gamma)
	}
	if backward {
		r.WeightGradNorm = nn.Norm(b.WeightGrad)
		if b.BN.Affine {
			r.GammaGradNorm = nn.Norm(b.BN.GammaGrad)
		}
	}
	if ch != nil {
		ch.WeightNorm = rowNorms(b.Weight, channels, k)
		if backward {
			ch.WeightGradNorm = rowNorms(b.WeightGrad, channels, k)
		}
	}
	if b.mode == Train {
		b.Recorder.Record(r)
		return
	}

	// Implied fused quantities from the running statistics.
	invStd, err := b.BN.InvStd()
	if err != nil {
		// Forward has already failed on the same statistics; nothing to imply.
		b.Recorder.Record(r)
		return
	}
	omega := make([]T, channels)
	for c := range omega {
		omega[c] = b.BN.GammaAt(c) * invStd[c]
	}
	fused := make([]T, len(b.Weight))
	for c, o := range omega {
		for i, v := range b.Weight[c*k : (c+1)*k] {
			fused[c*k+i] = o * v
		}
	}
	r.FusedWeightNorm = nn.Norm(fused)
	if ch != nil {
		ch.Omega = nn.Convert[float64](omega)
		ch.FusedWeightNorm = rowNorms(fused, channels, k)
	}
	if backward {
		fusedGrad, dead := gradients.FusedWeightGradFromUnfused(b.WeightGrad, omega)
		r.DeadChannels = len(dead)
		r.FusedWeightGradNorm = nn.Norm(fusedGrad)
		if ch != nil {
			ch.FusedWeightGradNorm = rowNorms(fusedGrad, channels, k)
			for _, c := range dead {
				ch.FusedWeightGradNorm[c] = math.NaN()
			}
		}
	}
	b.Recorder.Record(r)
}

func rowNorms[T nn.Float](v []T, rows, k int) []float64 {
	out := make([]float64, rows)
	for c := range out {
		out[c] = nn.Norm(v[c*k : (c+1)*k])
	}
	return out
}
