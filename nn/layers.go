package nn

import (
	"fmt"
	"math"
)

// ReLU is max(x, 0) elementwise.
type ReLU[T Float] struct {
	mask []bool
}

// Forward returns max(x, 0) and keeps which elements were positive.
func (r *ReLU[T]) Forward(x *Tensor[T]) (*Tensor[T], error) {
	y := NewTensor[T](x.Shape...)
	r.mask = make([]bool, x.Len())
	for i, v := range x.Data {
		if v > 0 {
			y.Data[i] = v
			r.mask[i] = true
		}
	}
	return y, nil
}

// Backward passes dy through where the input was positive.
func (r *ReLU[T]) Backward(dy *Tensor[T]) (*Tensor[T], error) {
	if len(r.mask) != dy.Len() {
		return nil, fmt.Errorf("relu: backward gradient has %d elements, forward had %d", dy.Len(), len(r.mask))
	}
	dx := NewTensor[T](dy.Shape...)
	for i, keep := range r.mask {
		if keep {
			dx.Data[i] = dy.Data[i]
		}
	}
	r.mask = nil
	return dx, nil
}

// Params returns nil: ReLU has no parameters.
func (r *ReLU[T]) Params() []*Param[T] { return nil }

// MaxPool2d takes the maximum over non-overlapping Size×Size windows of an
// NCHW tensor (stride = Size, no padding); rows and columns that do not
// fill a window are dropped, as in PyTorch with ceil_mode=False.
type MaxPool2d[T Float] struct {
	Size int

	inShape []int
	argmax  []int
}

// Forward returns the window maxima and keeps their positions.
func (m *MaxPool2d[T]) Forward(x *Tensor[T]) (*Tensor[T], error) {
	n, c, h, w := x.Dims4()
	k := m.Size
	if k < 1 || h < k || w < k {
		return nil, fmt.Errorf("maxpool: window %d does not fit a %dx%d input", k, h, w)
	}
	oh, ow := h/k, w/k
	y := NewTensor[T](n, c, oh, ow)
	m.inShape = append([]int(nil), x.Shape...)
	m.argmax = make([]int, y.Len())
	for p := 0; p < n*c; p++ {
		plane := x.Data[p*h*w : (p+1)*h*w]
		for oy := 0; oy < oh; oy++ {
			for ox := 0; ox < ow; ox++ {
				best := (oy*k)*w + ox*k
				for i := 0; i < k; i++ {
					for j := 0; j < k; j++ {
						if idx := (oy*k+i)*w + ox*k + j; plane[idx] > plane[best] {
							best = idx
						}
					}
				}
				o := (p*oh+oy)*ow + ox
				y.Data[o] = plane[best]
				m.argmax[o] = p*h*w + best
			}
		}
	}
	return y, nil
}

// Backward routes each output gradient to the position of its maximum.
func (m *MaxPool2d[T]) Backward(dy *Tensor[T]) (*Tensor[T], error) {
	if len(m.argmax) != dy.Len() {
		return nil, fmt.Errorf("maxpool: backward gradient has %d elements, forward had %d", dy.Len(), len(m.argmax))
	}
	dx := NewTensor[T](m.inShape...)
	for o, idx := range m.argmax {
		dx.Data[idx] += dy.Data[o]
	}
	m.argmax = nil
	return dx, nil
}

// Params returns nil: pooling has no parameters.
func (m *MaxPool2d[T]) Params() []*Param[T] { return nil }

// GlobalAvgPool averages each channel of an NCHW tensor to one value and
// returns an N×C tensor.
type GlobalAvgPool[T Float] struct {
	inShape []int
}

// Forward returns the per-channel means.
func (g *GlobalAvgPool[T]) Forward(x *Tensor[T]) (*Tensor[T], error) {
	n, c, h, w := x.Dims4()
	g.inShape = append([]int(nil), x.Shape...)
	y := NewTensor[T](n, c)
	p := h * w
	for i := range y.Data {
		var sum float64
		for _, v := range x.Data[i*p : (i+1)*p] {
			sum += float64(v)
		}
		y.Data[i] = T(sum / float64(p))
	}
	return y, nil
}

// Backward spreads each gradient evenly over its channel.
func (g *GlobalAvgPool[T]) Backward(dy *Tensor[T]) (*Tensor[T], error) {
	if g.inShape == nil {
		return nil, fmt.Errorf("global average pool: backward without a forward pass")
	}
	dx := NewTensor[T](g.inShape...)
	p := g.inShape[2] * g.inShape[3]
	for i, v := range dy.Data {
		share := v / T(p)
		for j := i * p; j < (i+1)*p; j++ {
			dx.Data[j] = share
		}
	}
	return dx, nil
}

// Params returns nil: pooling has no parameters.
func (g *GlobalAvgPool[T]) Params() []*Param[T] { return nil }

// Linear is y = x·Wᵀ + b for an N×In input, with W of shape [Out, In] as in
// PyTorch.
type Linear[T Float] struct {
	In, Out            int
	Weight, WeightGrad []T
	Bias, BiasGrad     []T
	// Gemm is the matrix multiply; nil means DefaultGemm.
	Gemm Gemm[T]

	x *Tensor[T]
}

// NewLinear returns a layer initialized as PyTorch does: weight and bias
// uniform in ±1/√In, drawn from uniform01, a source of numbers in [0, 1).
func NewLinear[T Float](in, out int, uniform01 func() float64) *Linear[T] {
	l := &Linear[T]{In: in, Out: out, Weight: make([]T, in*out), WeightGrad: make([]T, in*out), Bias: make([]T, out), BiasGrad: make([]T, out)}
	bound := 1 / math.Sqrt(float64(in))
	for i := range l.Weight {
		l.Weight[i] = T((2*uniform01() - 1) * bound)
	}
	for i := range l.Bias {
		l.Bias[i] = T((2*uniform01() - 1) * bound)
	}
	return l
}

func (l *Linear[T]) gemm() Gemm[T] {
	if l.Gemm == nil {
		l.Gemm = DefaultGemm[T]()
	}
	return l.Gemm
}

// Forward returns x·Wᵀ + b and keeps x.
func (l *Linear[T]) Forward(x *Tensor[T]) (*Tensor[T], error) {
	if len(x.Shape) != 2 || x.Shape[1] != l.In {
		return nil, fmt.Errorf("linear: input shape %v, want [N %d]", x.Shape, l.In)
	}
	n := x.Shape[0]
	y := NewTensor[T](n, l.Out)
	for i := 0; i < n; i++ {
		copy(y.Data[i*l.Out:(i+1)*l.Out], l.Bias)
	}
	l.gemm().Gemm(false, true, n, l.Out, l.In, 1, x.Data, l.In, l.Weight, l.In, 1, y.Data, l.Out)
	l.x = x
	return y, nil
}

// Backward adds ∂L/∂W = dyᵀ·x and ∂L/∂b = Σ dy, and returns dy·W.
func (l *Linear[T]) Backward(dy *Tensor[T]) (*Tensor[T], error) {
	if l.x == nil {
		return nil, fmt.Errorf("linear: backward without a forward pass")
	}
	n := l.x.Shape[0]
	if dy.Len() != n*l.Out {
		return nil, fmt.Errorf("linear: backward gradient has %d elements, want %d", dy.Len(), n*l.Out)
	}
	g := l.gemm()
	g.Gemm(true, false, l.Out, l.In, n, 1, dy.Data, l.Out, l.x.Data, l.In, 1, l.WeightGrad, l.In)
	for i := 0; i < n; i++ {
		for o, v := range dy.Data[i*l.Out : (i+1)*l.Out] {
			l.BiasGrad[o] += v
		}
	}
	dx := NewTensor[T](n, l.In)
	g.Gemm(false, false, n, l.In, l.Out, 1, dy.Data, l.Out, l.Weight, l.In, 0, dx.Data, l.In)
	l.x = nil
	return dx, nil
}

// Params returns the weight (marked for decay) and the bias.
func (l *Linear[T]) Params() []*Param[T] {
	return []*Param[T]{
		{Name: "linear.weight", Value: l.Weight, Grad: l.WeightGrad, Decay: true},
		{Name: "linear.bias", Value: l.Bias, Grad: l.BiasGrad},
	}
}

// SoftmaxCrossEntropy returns the mean over the batch of −log softmax(z)[y]
// for N×K logits z and labels y in [0, K), and ∂loss/∂z. It fails on a
// label outside [0, K).
func SoftmaxCrossEntropy[T Float](logits *Tensor[T], labels []int) (float64, *Tensor[T], error) {
	if len(logits.Shape) != 2 || logits.Shape[0] != len(labels) {
		return 0, nil, fmt.Errorf("cross-entropy: logits shape %v for %d labels", logits.Shape, len(labels))
	}
	n, k := logits.Shape[0], logits.Shape[1]
	grad := NewTensor[T](n, k)
	var loss float64
	for i, label := range labels {
		if label < 0 || label >= k {
			return 0, nil, fmt.Errorf("cross-entropy: label %d of sample %d is outside [0, %d)", label, i, k)
		}
		row := logits.Data[i*k : (i+1)*k]
		maxv := math.Inf(-1)
		for _, v := range row {
			maxv = math.Max(maxv, float64(v))
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v) - maxv)
		}
		logSum := maxv + math.Log(sum)
		loss += logSum - float64(row[label])
		for j, v := range row {
			p := math.Exp(float64(v) - logSum)
			if j == label {
				p--
			}
			grad.Data[i*k+j] = T(p / float64(n))
		}
	}
	return loss / float64(n), grad, nil
}
