package nn

import "fmt"

// Conv2d describes a 2-D convolution (cross-correlation, as in PyTorch) over
// NCHW tensors. The layer holds only geometry and a scratch buffer. Weight
// and bias are passed to Forward and Backward, so one Conv2d serves both the
// unfused weight W and the fused weight W' of a ConvBN block.
//
// The weight has shape [OutChannels, InChannels/Groups, KernelH, KernelW].
// When every group has exactly one input channel (depthwise convolution)
// the layer uses a direct kernel. Otherwise it multiplies the weight with the
// im2col columns of each sample and group through Gemm. A Conv2d reuses one
// scratch buffer of a single sample's columns across calls, so it is not
// safe for concurrent use.
type Conv2d[T Float] struct {
	InChannels, OutChannels int
	KernelH, KernelW        int
	Stride, Padding         [2]int // (height, width)
	Dilation                [2]int // (height, width); 0 is read as 1
	Groups                  int    // 0 is read as 1

	// Gemm is the matrix multiply; nil means DefaultGemm.
	Gemm Gemm[T]

	cols  []T // im2col scratch of one sample and group
	dcols []T // gradient of cols
}

// NewConv2d returns a convolution with stride 1, no padding, dilation 1 and
// one group.
func NewConv2d[T Float](in, out, kh, kw int) *Conv2d[T] {
	return &Conv2d[T]{InChannels: in, OutChannels: out, KernelH: kh, KernelW: kw, Stride: [2]int{1, 1}, Dilation: [2]int{1, 1}, Groups: 1}
}

// WeightLen returns the number of elements of the weight.
func (c *Conv2d[T]) WeightLen() int {
	return c.OutChannels * (c.InChannels / c.groups()) * c.KernelH * c.KernelW
}

// WeightShape returns [OutChannels, InChannels/Groups, KernelH, KernelW].
func (c *Conv2d[T]) WeightShape() []int {
	return []int{c.OutChannels, c.InChannels / c.groups(), c.KernelH, c.KernelW}
}

func (c *Conv2d[T]) groups() int {
	if c.Groups < 1 {
		return 1
	}
	return c.Groups
}

func (c *Conv2d[T]) dilation() (int, int) {
	dh, dw := c.Dilation[0], c.Dilation[1]
	if dh < 1 {
		dh = 1
	}
	if dw < 1 {
		dw = 1
	}
	return dh, dw
}

func (c *Conv2d[T]) stride() (int, int) {
	sh, sw := c.Stride[0], c.Stride[1]
	if sh < 1 {
		sh = 1
	}
	if sw < 1 {
		sw = 1
	}
	return sh, sw
}

// OutputSize returns the output height and width for an h×w input.
func (c *Conv2d[T]) OutputSize(h, w int) (int, int) {
	sh, sw := c.stride()
	dh, dw := c.dilation()
	oh := (h+2*c.Padding[0]-dh*(c.KernelH-1)-1)/sh + 1
	ow := (w+2*c.Padding[1]-dw*(c.KernelW-1)-1)/sw + 1
	return oh, ow
}

// IsDepthwise reports whether every group has one input channel, the case
// the direct kernel handles.
func (c *Conv2d[T]) IsDepthwise() bool {
	return c.groups() > 1 && c.InChannels == c.groups()
}

// isPointwise reports whether the im2col columns equal the input itself,
// so the copy can be skipped: a 1×1 kernel with stride 1 and no padding.
func (c *Conv2d[T]) isPointwise() bool {
	sh, sw := c.stride()
	return c.KernelH == 1 && c.KernelW == 1 && sh == 1 && sw == 1 && c.Padding == [2]int{}
}

func (c *Conv2d[T]) check(x *Tensor[T], w, b []T) (n, h, wd, oh, ow int) {
	n, ci, h, wd := x.Dims4()
	g := c.groups()
	if ci != c.InChannels || c.InChannels%g != 0 || c.OutChannels%g != 0 {
		panic(fmt.Sprintf("nn.Conv2d: input has %d channels, layer has %d in, %d out, %d groups", ci, c.InChannels, c.OutChannels, g))
	}
	if len(w) != c.WeightLen() {
		panic(fmt.Sprintf("nn.Conv2d: weight has %d elements, shape %v needs %d", len(w), c.WeightShape(), c.WeightLen()))
	}
	if b != nil && len(b) != c.OutChannels {
		panic(fmt.Sprintf("nn.Conv2d: bias has %d elements, want %d", len(b), c.OutChannels))
	}
	oh, ow = c.OutputSize(h, wd)
	if oh < 1 || ow < 1 {
		panic(fmt.Sprintf("nn.Conv2d: input %dx%d is smaller than the dilated kernel", h, wd))
	}
	return n, h, wd, oh, ow
}

func (c *Conv2d[T]) gemm() Gemm[T] {
	if c.Gemm == nil {
		c.Gemm = DefaultGemm[T]()
	}
	return c.Gemm
}

// Forward returns the convolution of x with weight w plus bias b (nil for
// no bias).
func (c *Conv2d[T]) Forward(x *Tensor[T], w, b []T) *Tensor[T] {
	n, _, _, oh, ow := c.check(x, w, b)
	y := NewTensor[T](n, c.OutChannels, oh, ow)
	if c.IsDepthwise() {
		c.depthwiseForward(x, w, y)
	} else {
		c.gemmForward(x, w, y)
	}
	if b != nil {
		p := oh * ow
		for s := 0; s < n; s++ {
			for o := 0; o < c.OutChannels; o++ {
				row := y.Data[(s*c.OutChannels+o)*p : (s*c.OutChannels+o+1)*p]
				bo := b[o]
				for i := range row {
					row[i] += bo
				}
			}
		}
	}
	return y
}

// Backward returns ∂L/∂x given the input x, the weight w used in Forward
// and dy = ∂L/∂y. It adds ∂L/∂w to dw and, when db is not nil, ∂L/∂b to db.
func (c *Conv2d[T]) Backward(x *Tensor[T], w []T, dy *Tensor[T], dw, db []T) *Tensor[T] {
	n, _, _, oh, ow := c.check(x, w, nil)
	if dn, dc, dh, dww := dy.Dims4(); dn != n || dc != c.OutChannels || dh != oh || dww != ow {
		panic(fmt.Sprintf("nn.Conv2d: output gradient has shape %v, want [%d %d %d %d]", dy.Shape, n, c.OutChannels, oh, ow))
	}
	if len(dw) != len(w) {
		panic(fmt.Sprintf("nn.Conv2d: weight gradient has %d elements, want %d", len(dw), len(w)))
	}
	if db != nil {
		if len(db) != c.OutChannels {
			panic(fmt.Sprintf("nn.Conv2d: bias gradient has %d elements, want %d", len(db), c.OutChannels))
		}
		p := oh * ow
		for s := 0; s < n; s++ {
			for o := 0; o < c.OutChannels; o++ {
				var sum T
				for _, v := range dy.Data[(s*c.OutChannels+o)*p : (s*c.OutChannels+o+1)*p] {
					sum += v
				}
				db[o] += sum
			}
		}
	}
	dx := NewTensor[T](x.Shape...)
	if c.IsDepthwise() {
		c.depthwiseBackward(x, w, dy, dx, dw)
	} else {
		c.gemmBackward(x, w, dy, dx, dw)
	}
	return dx
}

func (c *Conv2d[T]) gemmForward(x *Tensor[T], w []T, y *Tensor[T]) {
	n, ci, h, wd := x.Dims4()
	_, co, oh, ow := y.Dims4()
	g := c.groups()
	cig, cog := ci/g, co/g
	k := cig * c.KernelH * c.KernelW
	p := oh * ow
	gemm := c.gemm()
	for s := 0; s < n; s++ {
		for gi := 0; gi < g; gi++ {
			xs := x.Data[(s*ci+gi*cig)*h*wd : (s*ci+(gi+1)*cig)*h*wd]
			cols := xs
			if !c.isPointwise() {
				cols = c.scratch(&c.cols, k*p)
				c.im2col(xs, cig, h, wd, oh, ow, cols)
			}
			ys := y.Data[(s*co+gi*cog)*p : (s*co+(gi+1)*cog)*p]
			gemm.Gemm(false, false, cog, p, k, 1, w[gi*cog*k:(gi+1)*cog*k], k, cols, p, 0, ys, p)
		}
	}
}

func (c *Conv2d[T]) gemmBackward(x *Tensor[T], w []T, dy, dx *Tensor[T], dw []T) {
	n, ci, h, wd := x.Dims4()
	_, co, oh, ow := dy.Dims4()
	g := c.groups()
	cig, cog := ci/g, co/g
	k := cig * c.KernelH * c.KernelW
	p := oh * ow
	gemm := c.gemm()
	for s := 0; s < n; s++ {
		for gi := 0; gi < g; gi++ {
			xs := x.Data[(s*ci+gi*cig)*h*wd : (s*ci+(gi+1)*cig)*h*wd]
			dxs := dx.Data[(s*ci+gi*cig)*h*wd : (s*ci+(gi+1)*cig)*h*wd]
			dys := dy.Data[(s*co+gi*cog)*p : (s*co+(gi+1)*cog)*p]
			wg := w[gi*cog*k : (gi+1)*cog*k]
			dwg := dw[gi*cog*k : (gi+1)*cog*k]

			// The columns are rebuilt from x: the block keeps x, not its
			// im2col expansion, for backward.
			cols, dcols := xs, dxs
			if !c.isPointwise() {
				cols = c.scratch(&c.cols, k*p)
				c.im2col(xs, cig, h, wd, oh, ow, cols)
				dcols = c.scratch(&c.dcols, k*p)
			}

			// ∂L/∂W_g += dY · colsᵀ
			gemm.Gemm(false, true, cog, k, p, 1, dys, p, cols, p, 1, dwg, k)
			// ∂L/∂cols = W_gᵀ · dY
			gemm.Gemm(true, false, k, p, cog, 1, wg, k, dys, p, 0, dcols, p)

			if !c.isPointwise() {
				c.col2im(dcols, cig, h, wd, oh, ow, dxs)
			}
		}
	}
}

func (c *Conv2d[T]) scratch(buf *[]T, n int) []T {
	if cap(*buf) < n {
		*buf = make([]T, n)
	}
	return (*buf)[:n]
}

// im2col writes the columns of one sample and group: row (ci·KH + i)·KW + j,
// column oy·ow + ox holds x[ci, oy·sh − ph + i·dh, ox·sw − pw + j·dw], or 0
// in the padding.
func (c *Conv2d[T]) im2col(x []T, channels, h, w, oh, ow int, cols []T) {
	sh, sw := c.stride()
	dh, dw := c.dilation()
	ph, pw := c.Padding[0], c.Padding[1]
	p := oh * ow
	row := 0
	for ch := 0; ch < channels; ch++ {
		plane := x[ch*h*w : (ch+1)*h*w]
		for i := 0; i < c.KernelH; i++ {
			for j := 0; j < c.KernelW; j++ {
				dst := cols[row*p : (row+1)*p]
				row++
				for oy := 0; oy < oh; oy++ {
					iy := oy*sh - ph + i*dh
					out := dst[oy*ow : (oy+1)*ow]
					if iy < 0 || iy >= h {
						clear(out)
						continue
					}
					src := plane[iy*w : (iy+1)*w]
					ix := j*dw - pw
					for ox := range out {
						if ix >= 0 && ix < w {
							out[ox] = src[ix]
						} else {
							out[ox] = 0
						}
						ix += sw
					}
				}
			}
		}
	}
}

// col2im adds the column gradients back into dx, the transpose of im2col.
// dx must start at zero for the sample and group.
func (c *Conv2d[T]) col2im(cols []T, channels, h, w, oh, ow int, dx []T) {
	sh, sw := c.stride()
	dh, dw := c.dilation()
	ph, pw := c.Padding[0], c.Padding[1]
	p := oh * ow
	row := 0
	for ch := 0; ch < channels; ch++ {
		plane := dx[ch*h*w : (ch+1)*h*w]
		for i := 0; i < c.KernelH; i++ {
			for j := 0; j < c.KernelW; j++ {
				src := cols[row*p : (row+1)*p]
				row++
				for oy := 0; oy < oh; oy++ {
					iy := oy*sh - ph + i*dh
					if iy < 0 || iy >= h {
						continue
					}
					dst := plane[iy*w : (iy+1)*w]
					ix := j*dw - pw
					for _, v := range src[oy*ow : (oy+1)*ow] {
						if ix >= 0 && ix < w {
							dst[ix] += v
						}
						ix += sw
					}
				}
			}
		}
	}
}
