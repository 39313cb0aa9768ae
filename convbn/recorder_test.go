package convbn

import (
	"math"
	"testing"

	"github.com/convbn-diag/convbn-diag/nn"
)

func assertNear(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-12*math.Max(1, math.Abs(want)) {
		t.Errorf("%s mismatch: got %.15g, want %.15g", what, got, want)
	}
}

func TestRecorderNorms(t *testing.T) {
	spec := gradSpecs[0]
	spec.deadChannel = true
	base, x := newRandomBlock[float64](spec, 21)
	r := uniform(newRNG(22), spec.batch*spec.out*spec.height*spec.width, -1, 1)

	// Deploy's own ‖∂L/∂W'‖ is the independent value for the implied ones.
	deploy := cloneBlock(base)
	mustSetMode(t, deploy, Deploy)
	deployRec := &MemoryRecorder{}
	deploy.Recorder = deployRec
	step(t, deploy, x, r)
	dRecs := deployRec.Records()
	if len(dRecs) != 2 {
		t.Fatalf("deploy records: got %d, want 2", len(dRecs))
	}
	assertNear(t, "deploy fused weight norm", dRecs[1].FusedWeightNorm, nn.Norm(deploy.Weight))
	assertNear(t, "deploy fused weight grad norm", dRecs[1].FusedWeightGradNorm, nn.Norm(deploy.WeightGrad))
	if !math.IsNaN(dRecs[1].WeightNorm) || !math.IsNaN(dRecs[1].GammaNorm) {
		t.Errorf("deploy unfused norms: got %g and %g, want NaN", dRecs[1].WeightNorm, dRecs[1].GammaNorm)
	}

	for _, mode := range []Mode{Eval, Tune} {
		b := cloneBlock(base)
		mustSetMode(t, b, mode)
		rec := &MemoryRecorder{}
		b.Recorder = rec
		b.RecordChannels = true
		step(t, b, x, r)
		recs := rec.Records()
		if len(recs) != 2 {
			t.Fatalf("%s records: got %d, want 2", mode, len(recs))
		}
		fwd, bwd := recs[0], recs[1]
		if fwd.Phase != PhaseForward || bwd.Phase != PhaseBackward || fwd.Mode != mode || fwd.Step != 1 || bwd.Step != 1 {
			t.Errorf("%s record headers: got %+v / %+v", mode, fwd.Phase, bwd.Phase)
		}
		wantHeld := int64(x.Len()+len(r)) * 8
		if mode == Tune {
			wantHeld = int64(x.Len()+len(b.Weight)) * 8
		}
		if fwd.Held.Bytes != wantHeld {
			t.Errorf("%s forward held bytes: got %d, want %d", mode, fwd.Held.Bytes, wantHeld)
		}
		if bwd.Held.Bytes != 0 {
			t.Errorf("%s backward held bytes: got %d, want 0", mode, bwd.Held.Bytes)
		}
		if !math.IsNaN(fwd.WeightGradNorm) {
			t.Errorf("%s forward record carries a gradient norm %g, want NaN", mode, fwd.WeightGradNorm)
		}
		assertNear(t, mode.String()+" weight norm", bwd.WeightNorm, nn.Norm(b.Weight))
		assertNear(t, mode.String()+" weight grad norm", bwd.WeightGradNorm, nn.Norm(b.WeightGrad))
		assertNear(t, mode.String()+" gamma norm", bwd.GammaNorm, nn.Norm(b.BN.Gamma))
		assertNear(t, mode.String()+" gamma grad norm", bwd.GammaGradNorm, nn.Norm(b.BN.GammaGrad))
		assertNear(t, mode.String()+" implied fused weight norm", bwd.FusedWeightNorm, dRecs[1].FusedWeightNorm)

		// The dead channel's G' is unknown in Eval and Tune; compare the
		// live channels with Deploy's.
		if bwd.DeadChannels != 1 {
			t.Errorf("%s dead channels: got %d, want 1", mode, bwd.DeadChannels)
		}
		k := len(b.Weight) / spec.out
		live := nn.Norm(deploy.WeightGrad[:(spec.out-1)*k])
		assertNear(t, mode.String()+" implied fused grad norm", bwd.FusedWeightGradNorm, live)
		ch := bwd.Channels
		if ch == nil || len(ch.Omega) != spec.out || len(ch.FusedWeightGradNorm) != spec.out {
			t.Fatalf("%s channel record: got %+v", mode, ch)
		}
		if ch.Omega[spec.out-1] != 0 || !math.IsNaN(ch.FusedWeightGradNorm[spec.out-1]) {
			t.Errorf("%s dead channel: omega %g, fused grad norm %g, want 0 and NaN", mode, ch.Omega[spec.out-1], ch.FusedWeightGradNorm[spec.out-1])
		}
		for c := 0; c < spec.out-1; c++ {
			assertNear(t, "channel fused grad norm", ch.FusedWeightGradNorm[c], nn.Norm(deploy.WeightGrad[c*k:(c+1)*k]))
		}
		if fwd.Duration <= 0 || bwd.Duration <= 0 {
			t.Errorf("%s durations: got %v and %v, want positive", mode, fwd.Duration, bwd.Duration)
		}
	}
}

// countingRecorder counts records without keeping them, so benchmarks
// measure the cost of building a record and not of storing it.
type countingRecorder struct{ n int }

func (c *countingRecorder) Record(*Record) { c.n++ }

// BenchmarkRecorderOverhead runs one Tune training step of a small block
// with no recorder, with a recorder, and with per-channel arrays.
func BenchmarkRecorderOverhead(b *testing.B) {
	spec := blockSpec{name: "bench", in: 16, out: 16, k: 3, stride: 1, pad: 1, dil: 1, groups: 1, affine: true, batch: 8, height: 16, width: 16}
	for _, variant := range []string{"none", "norms", "channels"} {
		b.Run(variant, func(b *testing.B) {
			blk, x := newRandomBlock[float32](spec, 1)
			if err := blk.SetMode(Tune); err != nil {
				b.Fatal(err)
			}
			switch variant {
			case "norms":
				blk.Recorder = &countingRecorder{}
			case "channels":
				blk.Recorder = &countingRecorder{}
				blk.RecordChannels = true
			}
			dz := nn.NewTensor[float32](spec.batch, spec.out, spec.height, spec.width)
			for i := range dz.Data {
				dz.Data[i] = float32(i%7) - 3
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := blk.Forward(x); err != nil {
					b.Fatal(err)
				}
				if _, err := blk.Backward(dz); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
