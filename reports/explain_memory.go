package reports

import (
	"fmt"
	"math"
	"strings"

	"github.com/convbn-diag/convbn-diag/analysis"
)

// MemoryInput describes the input of one 2-d conv layer for
// EstimateMemory.
type MemoryInput struct {
	Batch         int
	Height, Width int
	// DType is the element type of activations and weights: float32,
	// float16, bfloat16 or float64.
	DType string
	// Stride and Padding are used when the checkpoint stores no conv
	// geometry: one value for both spatial dimensions or one per
	// dimension, nil when not given.
	Stride, Padding []int
}

// MemoryEstimate is the memory one training step saves for the backward
// pass of a ConvBN block in each mode. Eval keeps the conv input X and
// output Y, Tune keeps X and the fused weight W', and Deploy only X.
type MemoryEstimate struct {
	InputShape, OutputShape [4]int // N, C, H, W
	Stride, Padding         [2]int
	Dilation                [2]int
	// Geometry names where Stride, Padding and Dilation came from.
	Geometry string

	InputElements, OutputElements, WeightElements int64
	BytesPerElement                               int

	EvalBytes, TuneBytes, DeployBytes int64
}

// TuneSavings returns the bytes Tune mode saves over Eval mode per step;
// it is negative when the weight is larger than the conv output.
func (e MemoryEstimate) TuneSavings() int64 { return e.EvalBytes - e.TuneBytes }

// DTypeSize returns the bytes per element of the named floating-point type.
func DTypeSize(name string) (int, error) {
	switch name {
	case "float32":
		return 4, nil
	case "float16", "bfloat16":
		return 2, nil
	case "float64":
		return 8, nil
	}
	return 0, fmt.Errorf("invalid dtype %q: use float32, float16, bfloat16 or float64", name)
}

// EstimateMemory computes the activation memory of l's three modes for
// input in. The conv geometry comes from the checkpoint when it stores
// it, else from in.Stride and in.Padding, else stride 1 with the padding
// that keeps the spatial size ("same").
func EstimateMemory(l *analysis.Layer, in MemoryInput) (MemoryEstimate, error) {
	var e MemoryEstimate
	if len(l.WeightShape) != 4 {
		return e, fmt.Errorf("layer %s: --input HxW needs a 2-d conv, but its weight has shape %s", l.Conv, formatShape(l.WeightShape))
	}
	if in.Batch < 1 || in.Height < 1 || in.Width < 1 {
		return e, fmt.Errorf("invalid input %dx%d with batch %d: every size must be at least 1", in.Height, in.Width, in.Batch)
	}
	size, err := DTypeSize(in.DType)
	if err != nil {
		return e, err
	}
	e.BytesPerElement = size

	k := [2]int{l.WeightShape[2], l.WeightShape[3]}
	same := false
	e.Dilation = [2]int{1, 1}
	switch {
	case l.GeometrySource != "" && l.Stride != nil && l.Padding != nil:
		if e.Stride, err = pair2("stride", l.Stride); err != nil {
			return e, fmt.Errorf("layer %s: %w", l.Conv, err)
		}
		if e.Padding, err = pair2("padding", l.Padding); err != nil {
			return e, fmt.Errorf("layer %s: %w", l.Conv, err)
		}
		if l.Dilation != nil {
			if e.Dilation, err = pair2("dilation", l.Dilation); err != nil {
				return e, fmt.Errorf("layer %s: %w", l.Conv, err)
			}
		}
		e.Geometry = "stored in the checkpoint"
	case in.Stride != nil || in.Padding != nil:
		e.Stride, e.Padding = [2]int{1, 1}, [2]int{}
		if in.Stride != nil {
			if e.Stride, err = pair2("--stride", in.Stride); err != nil {
				return e, err
			}
		}
		if in.Padding != nil {
			if e.Padding, err = pair2("--padding", in.Padding); err != nil {
				return e, err
			}
		}
		e.Geometry = "from --stride and --padding (dilation 1)"
	default:
		same = true
		e.Stride = [2]int{1, 1}
		e.Padding = [2]int{(k[0] - 1) / 2, (k[1] - 1) / 2}
		e.Geometry = "assumed: stride 1 and same padding, because the checkpoint does not store the geometry (give --stride and --padding)"
	}
	for i, s := range e.Stride {
		if s < 1 {
			return e, fmt.Errorf("layer %s: invalid stride %d: it must be at least 1", l.Conv, s)
		}
		if e.Padding[i] < 0 {
			return e, fmt.Errorf("layer %s: invalid padding %d: it must be zero or positive", l.Conv, e.Padding[i])
		}
	}

	inHW := [2]int{in.Height, in.Width}
	var outHW [2]int
	for i := range outHW {
		span := e.Dilation[i] * (k[i] - 1)
		switch {
		case same:
			outHW[i] = inHW[i]
		case l.Transposed:
			// NOTE: output_padding is not stored in state dicts and is
			// taken as 0 here.
			outHW[i] = (inHW[i]-1)*e.Stride[i] - 2*e.Padding[i] + span + 1
		default:
			// PyTorch floors this quotient; a negative numerator means the
			// kernel does not fit, which Go's truncating division would
			// hide by returning 1.
			num := inHW[i] + 2*e.Padding[i] - span - 1
			outHW[i] = 0
			if num >= 0 {
				outHW[i] = num/e.Stride[i] + 1
			}
		}
		if outHW[i] < 1 {
			return e, fmt.Errorf("layer %s: a %dx%d input gives an empty output with kernel %dx%d, stride %v and padding %v", l.Conv, in.Height, in.Width, k[0], k[1], e.Stride, e.Padding)
		}
	}

	inC := l.WeightShape[1] * l.Groups
	if l.Transposed {
		inC = l.WeightShape[0]
	}
	e.InputShape = [4]int{in.Batch, inC, inHW[0], inHW[1]}
	e.OutputShape = [4]int{in.Batch, l.NumChannels(), outHW[0], outHW[1]}
	e.InputElements = product(e.InputShape[:])
	e.OutputElements = product(e.OutputShape[:])
	e.WeightElements = product(l.WeightShape)

	// Every count below stays far from overflow when the largest, Eval's,
	// fits in 2^62 bytes.
	evalBytes := (float64(e.InputElements) + float64(e.OutputElements)) * float64(size)
	if e.InputElements < 0 || e.OutputElements < 0 || e.WeightElements < 0 || evalBytes > 1<<62 {
		return e, fmt.Errorf("invalid input %dx%d with batch %d: the activations of layer %s would exceed 2^62 bytes", in.Height, in.Width, in.Batch, l.Conv)
	}
	b := int64(size)
	e.EvalBytes = (e.InputElements + e.OutputElements) * b
	e.TuneBytes = (e.InputElements + e.WeightElements) * b
	e.DeployBytes = e.InputElements * b
	return e, nil
}

// pair2 expands one value or one per spatial dimension to two values.
func pair2(what string, v []int) ([2]int, error) {
	switch len(v) {
	case 1:
		return [2]int{v[0], v[0]}, nil
	case 2:
		return [2]int{v[0], v[1]}, nil
	}
	return [2]int{}, fmt.Errorf("%s has %d values %v; a 2-d conv needs 1 or 2", what, len(v), v)
}

// product multiplies dims, returning −1 when the product overflows int64.
func product(dims []int) int64 {
	p := int64(1)
	for _, d := range dims {
		if d != 0 && p > math.MaxInt64/int64(d) {
			return -1
		}
		p *= int64(d)
	}
	return p
}

// formatBytes writes a byte count with a binary unit ("1.5 MiB").
func formatBytes(n int64) string {
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v := float64(n)
	u := 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%s%d B", sign, n)
	}
	return fmt.Sprintf("%s%.3g %s", sign, v, units[u])
}

func writeMemory(ew *errWriter, l *analysis.Layer, e MemoryEstimate) {
	shape := func(s [4]int) string { return formatShape(s[:]) }
	ew.println(fmt.Sprintf("Memory saved for the backward pass of %s, per step (%d bytes per element)", l.Conv, e.BytesPerElement))
	ew.println(fmt.Sprintf("  geometry: stride %dx%d, padding %dx%d, dilation %dx%d, %s",
		e.Stride[0], e.Stride[1], e.Padding[0], e.Padding[1], e.Dilation[0], e.Dilation[1], e.Geometry))
	ew.println(fmt.Sprintf("  |X| = %s = %d elements, |Y| = %s = %d elements, |W| = %s = %d elements",
		shape(e.InputShape), e.InputElements, shape(e.OutputShape), e.OutputElements, formatShape(l.WeightShape), e.WeightElements))
	ew.println(fmt.Sprintf("  Eval   keeps |X| + |Y|: %d bytes (%s)", e.EvalBytes, formatBytes(e.EvalBytes)))
	ew.println(fmt.Sprintf("  Tune   keeps |X| + |W|: %d bytes (%s)", e.TuneBytes, formatBytes(e.TuneBytes)))
	ew.println(fmt.Sprintf("  Deploy keeps |X|:       %d bytes (%s)", e.DeployBytes, formatBytes(e.DeployBytes)))
	save := e.TuneSavings()
	verb := "saves"
	if save < 0 {
		verb = "costs"
	}
	ew.println(fmt.Sprintf("  Tune %s %s over Eval (%s bytes), at the same gradients; per-channel vectors add O(C) more.",
		verb, formatBytes(abs64(save)), strings.TrimPrefix(fmt.Sprint(save), "-")))
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
