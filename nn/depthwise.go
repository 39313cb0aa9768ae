package nn

// depthwiseForward convolves each input channel with its own filters
// directly. Group g has input channel g and output channels
// g·M … (g+1)·M − 1, with M = OutChannels/Groups. im2col would copy KH·KW
// values per output element to feed a multiply with a single row, so a
// direct loop is faster here.
func (c *Conv2d[T]) depthwiseForward(x *Tensor[T], w []T, y *Tensor[T]) {
	n, ci, h, wd := x.Dims4()
	_, co, oh, ow := y.Dims4()
	m := co / ci
	kk := c.KernelH * c.KernelW
	parallelFor(n*co, n*co*oh*ow*kk, func(lo, hi int) {
		for so := lo; so < hi; so++ {
			s, o := so/co, so%co
			plane := x.Data[(s*ci+o/m)*h*wd : (s*ci+o/m+1)*h*wd]
			out := y.Data[(s*co+o)*oh*ow : (s*co+o+1)*oh*ow]
			c.depthwisePlane(plane, h, wd, w[o*kk:(o+1)*kk], out, oh, ow)
		}
	})
}

func (c *Conv2d[T]) depthwisePlane(x []T, h, w int, k []T, y []T, oh, ow int) {
	sh, sw := c.stride()
	dh, dw := c.dilation()
	ph, pw := c.Padding[0], c.Padding[1]
	for oy := 0; oy < oh; oy++ {
		out := y[oy*ow : (oy+1)*ow]
		for i := 0; i < c.KernelH; i++ {
			iy := oy*sh - ph + i*dh
			if iy < 0 || iy >= h {
				continue
			}
			row := x[iy*w : (iy+1)*w]
			for j := 0; j < c.KernelW; j++ {
				kv := k[i*c.KernelW+j]
				off := j*dw - pw

				// Output columns whose input column ox·sw + off lies in
				// [0, w) form one contiguous range.
				lo, hi := validRange(off, sw, w, ow)
				if sw == 1 {
					src := row[lo+off : hi+off]
					dst := out[lo:hi]
					for t, v := range src {
						dst[t] += kv * v
					}
					continue
				}
				for ox := lo; ox < hi; ox++ {
					out[ox] += kv * row[ox*sw+off]
				}
			}
		}
	}
}

// validRange returns the output columns [lo, hi) for which ox·stride + off
// lies in [0, w).
func validRange(off, stride, w, ow int) (lo, hi int) {
	lo = 0
	if off < 0 {
		lo = (-off + stride - 1) / stride
	}
	hi = ow
	if last := (w - 1 - off); last < 0 {
		hi = 0
	} else if m := last/stride + 1; m < hi {
		hi = m
	}
	if hi < lo {
		hi = lo
	}
	return lo, hi
}

func (c *Conv2d[T]) depthwiseBackward(x *Tensor[T], w []T, dy, dx *Tensor[T], dw []T) {
	n, ci, h, wd := x.Dims4()
	_, co, oh, ow := dy.Dims4()
	m := co / ci
	kk := c.KernelH * c.KernelW
	sh, sw := c.stride()
	dil0, dil1 := c.dilation()
	ph, pw := c.Padding[0], c.Padding[1]

	// Work is split by input channel: group g owns input plane g of every
	// sample and weight rows g·M … (g+1)·M − 1, so no two goroutines write
	// the same element of dx or dw.
	parallelFor(ci, n*co*oh*ow*kk*2, func(gLo, gHi int) {
		for s := 0; s < n; s++ {
			for o := gLo * m; o < gHi*m; o++ {
				plane := x.Data[(s*ci+o/m)*h*wd : (s*ci+o/m+1)*h*wd]
				dplane := dx.Data[(s*ci+o/m)*h*wd : (s*ci+o/m+1)*h*wd]
				g := dy.Data[(s*co+o)*oh*ow : (s*co+o+1)*oh*ow]
				k := w[o*kk : (o+1)*kk]
				dk := dw[o*kk : (o+1)*kk]
				for i := 0; i < c.KernelH; i++ {
					for j := 0; j < c.KernelW; j++ {
						kv := k[i*c.KernelW+j]
						off := j*dil1 - pw
						lo, hi := validRange(off, sw, wd, ow)
						var acc T
						for oy := 0; oy < oh; oy++ {
							iy := oy*sh - ph + i*dil0
							if iy < 0 || iy >= h {
								continue
							}
							row := plane[iy*wd : (iy+1)*wd]
							drow := dplane[iy*wd : (iy+1)*wd]
							grow := g[oy*ow : (oy+1)*ow]
							if sw == 1 {
								src := row[lo+off : hi+off]
								dst := drow[lo+off : hi+off]
								gs := grow[lo:hi]
								for t, gv := range gs {
									acc += gv * src[t]
									dst[t] += kv * gv
								}
								continue
							}
							for ox := lo; ox < hi; ox++ {
								gv := grow[ox]
								acc += gv * row[ox*sw+off]
								drow[ox*sw+off] += kv * gv
							}
						}
						dk[i*c.KernelW+j] += acc
					}
				}
			}
		}
	})
}
