package convbn

import (
	"math"
	"testing"
	"time"

	"github.com/convbn-diag/convbn-diag/nn"
)

// benchShape is one block geometry of the benchmarks, batch 32, float32.
type benchShape struct {
	name                  string
	in, out, k, pad, size int
	groups                int
}

var benchShapes = []benchShape{
	{name: "dense64_3x3_32px", in: 64, out: 64, k: 3, pad: 1, size: 32, groups: 1},
	{name: "pointwise256_1x1_14px", in: 256, out: 256, k: 1, pad: 0, size: 14, groups: 1},
	{name: "depthwise128_3x3_28px", in: 128, out: 128, k: 3, pad: 1, size: 28, groups: 128},
}

const benchBatch = 32

func (s benchShape) spec() blockSpec {
	return blockSpec{name: s.name, in: s.in, out: s.out, k: s.k, stride: 1, pad: s.pad, dil: 1, groups: s.groups, affine: true, batch: benchBatch, height: s.size, width: s.size}
}

// convFlops returns the floating-point operations (2 per multiply-add) of
// one forward conv. Backward costs twice as much, for ∂W and ∂X.
func (s benchShape) convFlops() float64 {
	return 2 * float64(benchBatch*s.out*(s.in/s.groups)*s.k*s.k*s.size*s.size)
}

// BenchmarkBlockStep times one forward and backward pass of a block in each
// mode and reports the bytes the mode holds for backward.
func BenchmarkBlockStep(b *testing.B) {
	for _, shape := range benchShapes {
		for _, mode := range []Mode{Train, Eval, Tune, Deploy} {
			b.Run(shape.name+"/"+mode.String(), func(b *testing.B) {
				blk, x := newRandomBlock[float32](shape.spec(), 1)
				if err := blk.SetMode(mode); err != nil {
					b.Fatal(err)
				}
				z, err := blk.Forward(x)
				if err != nil {
					b.Fatal(err)
				}
				held := blk.Held()
				dz := nn.FromSlice(nn.Convert[float32](uniform(newRNG(2), z.Len(), -1, 1)), z.Shape...)
				if _, err := blk.Backward(dz); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := blk.Forward(x); err != nil {
						b.Fatal(err)
					}
					if _, err := blk.Backward(dz); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(held.Bytes), "held-B")
				b.ReportMetric(float64(held.PerChannelBytes), "held-per-channel-B")
				b.ReportMetric(3*shape.convFlops()*float64(b.N)/b.Elapsed().Seconds()/1e9, "conv-GFLOP/s")
			})
		}
	}
}

// BenchmarkConvStep times the conv kernel alone, forward and backward,
// and for depthwise shapes also reports the bytes the kernel streams
// (input, weight and output read or written once per pass).
func BenchmarkConvStep(b *testing.B) {
	for _, shape := range benchShapes {
		b.Run(shape.name, func(b *testing.B) {
			blk, x := newRandomBlock[float32](shape.spec(), 1)
			conv := blk.Conv
			y := conv.Forward(x, blk.Weight, nil)
			dy := nn.FromSlice(nn.Convert[float32](uniform(newRNG(2), y.Len(), -1, 1)), y.Shape...)
			dw := make([]float32, len(blk.Weight))
			b.ResetTimer()
			for b.Loop() {
				conv.Forward(x, blk.Weight, nil)
				conv.Backward(x, blk.Weight, dy, dw, nil)
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(3*shape.convFlops()*float64(b.N)/sec/1e9, "GFLOP/s")
			if conv.IsDepthwise() {
				// Forward reads x, writes y; backward reads x and dy and
				// writes dx.
				bytes := float64(2*x.Len()+3*y.Len()) * 4
				b.ReportMetric(bytes*float64(b.N)/sec/1e9, "GB/s")
			}
		})
	}
}

// BenchmarkGemmShapes runs the backend's GEMMs with the matrix shapes of
// one dense conv step (per sample: forward Co×K·K×P, ∂W Co×P·P×K, ∂cols
// K×Co·Co×P), without im2col, so BenchmarkConvStep's GFLOP/s can be read
// as a fraction of it.
func BenchmarkGemmShapes(b *testing.B) {
	for _, shape := range benchShapes {
		if shape.groups != 1 {
			continue
		}
		b.Run(shape.name, func(b *testing.B) {
			co, k, p := shape.out, shape.in*shape.k*shape.k, shape.size*shape.size
			rng := newRNG(3)
			w := nn.Convert[float32](uniform(rng, co*k, -1, 1))
			cols := nn.Convert[float32](uniform(rng, k*p, -1, 1))
			dy := nn.Convert[float32](uniform(rng, co*p, -1, 1))
			y := make([]float32, co*p)
			dw := make([]float32, co*k)
			dcols := make([]float32, k*p)
			g := nn.DefaultGemm[float32]()
			b.ResetTimer()
			for b.Loop() {
				for range benchBatch {
					g.Gemm(false, false, co, p, k, 1, w, k, cols, p, 0, y, p)
					g.Gemm(false, true, co, k, p, 1, dy, p, cols, p, 1, dw, k)
					g.Gemm(true, false, k, p, co, 1, w, k, dy, p, 0, dcols, p)
				}
			}
			b.ReportMetric(3*shape.convFlops()*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkPairedTuneDeploy runs one Tune step and one Deploy step of the
// same block in every iteration and reports both times and their
// ratio, so that load from other processes affects both alike.
func BenchmarkPairedTuneDeploy(b *testing.B) {
	for _, shape := range benchShapes {
		b.Run(shape.name, func(b *testing.B) {
			tune, x := newRandomBlock[float32](shape.spec(), 1)
			deploy := cloneBlock(tune)
			if err := tune.SetMode(Tune); err != nil {
				b.Fatal(err)
			}
			if err := deploy.SetMode(Deploy); err != nil {
				b.Fatal(err)
			}
			z, err := tune.Forward(x)
			if err != nil {
				b.Fatal(err)
			}
			dz := nn.FromSlice(nn.Convert[float32](uniform(newRNG(2), z.Len(), -1, 1)), z.Shape...)
			run := func(blk *Block[float32]) time.Duration {
				start := time.Now()
				if _, err := blk.Forward(x); err != nil {
					b.Fatal(err)
				}
				if _, err := blk.Backward(dz); err != nil {
					b.Fatal(err)
				}
				return time.Since(start)
			}
			// The order flips every iteration so that neither mode always
			// runs right after the other's allocations.
			var tuneTime, deployTime time.Duration
			tuneMin, deployMin := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
			first := true
			for b.Loop() {
				var tt, dt time.Duration
				if first {
					tt = run(tune)
					dt = run(deploy)
				} else {
					dt = run(deploy)
					tt = run(tune)
				}
				first = !first
				tuneTime, deployTime = tuneTime+tt, deployTime+dt
				tuneMin, deployMin = min(tuneMin, tt), min(deployMin, dt)
			}
			b.ReportMetric(float64(tuneTime.Nanoseconds())/float64(b.N), "tune-ns/step")
			b.ReportMetric(float64(deployTime.Nanoseconds())/float64(b.N), "deploy-ns/step")
			b.ReportMetric(float64(tuneTime)/float64(deployTime), "tune/deploy")
			// The ratio of the fastest steps is less sensitive to load from
			// other processes than the ratio of the totals.
			b.ReportMetric(float64(tuneMin)/float64(deployMin), "tune/deploy-min")
		})
	}
}

// BenchmarkPairedConvGemm alternates one conv forward and backward with the
// same GEMMs run alone (BenchmarkGemmShapes' work) in every iteration and
// reports the conv's throughput as a fraction of the GEMMs'.
func BenchmarkPairedConvGemm(b *testing.B) {
	for _, shape := range benchShapes {
		if shape.groups != 1 {
			continue
		}
		b.Run(shape.name, func(b *testing.B) {
			blk, x := newRandomBlock[float32](shape.spec(), 1)
			conv := blk.Conv
			y := conv.Forward(x, blk.Weight, nil)
			dy := nn.FromSlice(nn.Convert[float32](uniform(newRNG(2), y.Len(), -1, 1)), y.Shape...)
			dw := make([]float32, len(blk.Weight))

			co, k, p := shape.out, shape.in*shape.k*shape.k, shape.size*shape.size
			rng := newRNG(3)
			w := nn.Convert[float32](uniform(rng, co*k, -1, 1))
			cols := nn.Convert[float32](uniform(rng, k*p, -1, 1))
			gy := make([]float32, co*p)
			gdy := nn.Convert[float32](uniform(rng, co*p, -1, 1))
			gdw := make([]float32, co*k)
			dcols := make([]float32, k*p)
			g := nn.DefaultGemm[float32]()

			var convTime, gemmTime time.Duration
			convMin, gemmMin := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
			for b.Loop() {
				start := time.Now()
				conv.Forward(x, blk.Weight, nil)
				conv.Backward(x, blk.Weight, dy, dw, nil)
				ct := time.Since(start)

				start = time.Now()
				for range benchBatch {
					g.Gemm(false, false, co, p, k, 1, w, k, cols, p, 0, gy, p)
					g.Gemm(false, true, co, k, p, 1, gdy, p, cols, p, 1, gdw, k)
					g.Gemm(true, false, k, p, co, 1, w, k, gdy, p, 0, dcols, p)
				}
				gt := time.Since(start)

				convTime, gemmTime = convTime+ct, gemmTime+gt
				convMin, gemmMin = min(convMin, ct), min(gemmMin, gt)
			}
			flops := 3 * shape.convFlops() * float64(b.N)
			b.ReportMetric(flops/convTime.Seconds()/1e9, "conv-GFLOP/s")
			b.ReportMetric(flops/gemmTime.Seconds()/1e9, "gemm-GFLOP/s")
			b.ReportMetric(float64(gemmTime)/float64(convTime), "conv/gemm-throughput")
			b.ReportMetric(float64(gemmMin)/float64(convMin), "conv/gemm-throughput-min")
		})
	}
}
