package nn

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// naiveConv computes y, and for a given dy also dx and dw, with direct loops
// over the definition y[n,o,i,j] = Σ w[o,c,p,q]·x[n, g·Cg + c, i·s − pad + p·d, …].
func naiveConv(c *Conv2d[float64], x *Tensor[float64], w []float64, dy *Tensor[float64]) (y, dx *Tensor[float64], dw []float64) {
	n, ci, h, wd := x.Dims4()
	oh, ow := c.OutputSize(h, wd)
	g := c.groups()
	cig, cog := ci/g, c.OutChannels/g
	sh, sw := c.stride()
	dh, dwl := c.dilation()
	y = NewTensor[float64](n, c.OutChannels, oh, ow)
	dx = NewTensor[float64](x.Shape...)
	dw = make([]float64, len(w))
	for s := 0; s < n; s++ {
		for o := 0; o < c.OutChannels; o++ {
			grp := o / cog
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					yi := ((s*c.OutChannels+o)*oh+i)*ow + j
					for cc := 0; cc < cig; cc++ {
						for p := 0; p < c.KernelH; p++ {
							for q := 0; q < c.KernelW; q++ {
								iy := i*sh - c.Padding[0] + p*dh
								ix := j*sw - c.Padding[1] + q*dwl
								if iy < 0 || iy >= h || ix < 0 || ix >= wd {
									continue
								}
								xi := ((s*ci+grp*cig+cc)*h+iy)*wd + ix
								wi := ((o*cig+cc)*c.KernelH+p)*c.KernelW + q
								y.Data[yi] += w[wi] * x.Data[xi]
								if dy != nil {
									dx.Data[xi] += w[wi] * dy.Data[yi]
									dw[wi] += x.Data[xi] * dy.Data[yi]
								}
							}
						}
					}
				}
			}
		}
	}
	return y, dx, dw
}

// TestConvMatchesDirectLoops covers shapes too large for the PyTorch
// reference file, so the parallel depthwise path and the pointwise path
// without im2col run too.
func TestConvMatchesDirectLoops(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	random := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.Float64()*2 - 1
		}
		return v
	}
	cases := []struct {
		n, in, out, k, stride, pad, dil, groups, size int
	}{
		{4, 16, 16, 3, 1, 1, 1, 16, 24}, // depthwise, parallel
		{4, 16, 32, 3, 2, 1, 1, 16, 23}, // depthwise, multiplier 2, stride 2
		{3, 8, 8, 5, 1, 4, 2, 8, 20},    // depthwise, dilation 2
		{2, 12, 12, 1, 1, 0, 1, 1, 10},  // pointwise
		{2, 12, 8, 1, 2, 0, 1, 4, 9},    // grouped 1×1 with stride (im2col)
		{2, 6, 10, 3, 1, 2, 2, 2, 11},   // grouped, dilated
		{1, 3, 4, 4, 3, 2, 1, 1, 13},    // even kernel, stride 3
	}
	for _, tc := range cases {
		name := fmt.Sprintf("n%d_%dto%d_k%d_s%d_p%d_d%d_g%d", tc.n, tc.in, tc.out, tc.k, tc.stride, tc.pad, tc.dil, tc.groups)
		t.Run(name, func(t *testing.T) {
			conv := &Conv2d[float64]{
				InChannels: tc.in, OutChannels: tc.out, KernelH: tc.k, KernelW: tc.k,
				Stride: [2]int{tc.stride, tc.stride}, Padding: [2]int{tc.pad, tc.pad},
				Dilation: [2]int{tc.dil, tc.dil}, Groups: tc.groups,
			}
			x := FromSlice(random(tc.n*tc.in*tc.size*tc.size), tc.n, tc.in, tc.size, tc.size)
			w := random(conv.WeightLen())
			y := conv.Forward(x, w, nil)
			dy := FromSlice(random(y.Len()), y.Shape...)
			wantY, wantDX, wantDW := naiveConv(conv, x, w, dy)

			assertClose(t, "y", y.Data, wantY.Data, 1e-12, 1e-12)
			dw := make([]float64, len(w))
			dx := conv.Backward(x, w, dy, dw, nil)
			assertClose(t, "dx", dx.Data, wantDX.Data, 1e-12, 1e-12)
			assertClose(t, "dw", dw, wantDW, 1e-12, 1e-11)
		})
	}
}
