package experiment

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/convbn"
	"github.com/convbn-diag/convbn-diag/nn"
)

// Metadata keys that pretrain stores beside the layer list.
const (
	MetaKind     = "convbn_diag.experiment"
	MetaKindMNIS = "mnist-pretrained"
	MetaSettings = "convbn_diag.pretrain_settings"
)

// Weights are the parameters and BatchNorm statistics of the network
// NewNet builds, in float64, independent of the element type it runs in.
type Weights struct {
	// Channels lists the output channels of each ConvBN block.
	Channels []int
	Classes  int
	// Blocks holds one entry per ConvBN block.
	Blocks []BlockWeights
	// HeadWeight is Classes×Channels[last]; HeadBias has Classes values.
	HeadWeight, HeadBias []float64
}

// BlockWeights are one ConvBN block's conv weight (out×in×3×3), γ, β,
// running mean and variance, ε, momentum and batches tracked.
type BlockWeights struct {
	Weight                  []float64
	Gamma, Beta             []float64
	RunningMean, RunningVar []float64
	Eps, Momentum           float64
	NumBatchesTracked       int64
}

// Omega returns ω_c = γ_c/√(σ²_c + ε) of every channel of the block.
func (b *BlockWeights) Omega() []float64 {
	out := make([]float64, len(b.Gamma))
	for c := range out {
		out[c] = b.Gamma[c] / math.Sqrt(b.RunningVar[c]+b.Eps)
	}
	return out
}

// Snapshot copies the weights of a Train-, Eval- or Tune-mode network built
// by NewNet.
func Snapshot[T nn.Float](net *convbn.Net[T]) (*Weights, error) {
	w := &Weights{}
	for _, b := range net.Blocks() {
		if b.BN == nil {
			return nil, fmt.Errorf("snapshot: block %s is in Deploy mode, whose fold cannot be undone", b.Name)
		}
		w.Channels = append(w.Channels, b.Conv.OutChannels)
		bw := BlockWeights{
			Weight: nn.Convert[float64](b.Weight), Gamma: nn.Convert[float64](b.BN.Gamma), Beta: nn.Convert[float64](b.BN.Beta),
			RunningMean: nn.Convert[float64](b.BN.RunningMean), RunningVar: nn.Convert[float64](b.BN.RunningVar),
			Eps: b.BN.Eps, NumBatchesTracked: b.BN.NumBatchesTracked,
		}
		if b.BN.Momentum != nil {
			bw.Momentum = *b.BN.Momentum
		}
		w.Blocks = append(w.Blocks, bw)
	}
	head := headOf(net)
	w.Classes = head.Out
	w.HeadWeight, w.HeadBias = nn.Convert[float64](head.Weight), nn.Convert[float64](head.Bias)
	return w, nil
}

func headOf[T nn.Float](net *convbn.Net[T]) *nn.Linear[T] {
	return net.Layers[len(net.Layers)-1].(*nn.Linear[T])
}

// Build returns a Train-mode network holding w. With freshHead, the linear
// head is replaced by a new one for classes outputs, initialized as
// PyTorch does from seed.
func Build[T nn.Float](w *Weights, freshHead bool, classes int, seed uint64) (*convbn.Net[T], error) {
	if !freshHead {
		classes = w.Classes
	}
	net, err := convbn.NewNet[T](convbn.NetConfig{InChannels: 1, Channels: w.Channels, Classes: classes, Seed: seed})
	if err != nil {
		return nil, err
	}
	for i, b := range net.Blocks() {
		bw := &w.Blocks[i]
		copy(b.Weight, nn.Convert[T](bw.Weight))
		copy(b.BN.Gamma, nn.Convert[T](bw.Gamma))
		copy(b.BN.Beta, nn.Convert[T](bw.Beta))
		copy(b.BN.RunningMean, nn.Convert[T](bw.RunningMean))
		copy(b.BN.RunningVar, nn.Convert[T](bw.RunningVar))
		b.BN.Eps = bw.Eps
		m := bw.Momentum
		b.BN.Momentum = &m
		b.BN.NumBatchesTracked = bw.NumBatchesTracked
	}
	if !freshHead {
		head := headOf(net)
		copy(head.Weight, nn.Convert[T](w.HeadWeight))
		copy(head.Bias, nn.Convert[T](w.HeadBias))
	}
	return net, nil
}

// layerSpecs lists the network's layers in forward order, as pretrain
// stores them in the checkpoint's metadata.
func (w *Weights) layerSpecs() []checkpoint.LayerSpec {
	var specs []checkpoint.LayerSpec
	for i, bw := range w.Blocks {
		m := bw.Momentum
		affine, track := true, true
		specs = append(specs,
			checkpoint.LayerSpec{Name: fmt.Sprintf("block%d.conv", i), Type: "Conv2d", Stride: []int{1, 1}, Padding: []int{1, 1}, Dilation: []int{1, 1}, Groups: 1},
			checkpoint.LayerSpec{Name: fmt.Sprintf("block%d.bn", i), Type: "BatchNorm2d", Eps: bw.Eps, Momentum: &m, Affine: &affine, TrackRunningStats: &track},
			checkpoint.LayerSpec{Name: fmt.Sprintf("block%d.relu", i), Type: "ReLU"})
		if i < len(w.Blocks)-1 {
			specs = append(specs, checkpoint.LayerSpec{Name: fmt.Sprintf("block%d.pool", i), Type: "MaxPool2d"})
		}
	}
	return append(specs,
		checkpoint.LayerSpec{Name: "pool", Type: "AdaptiveAvgPool2d"},
		checkpoint.LayerSpec{Name: "flatten", Type: "Flatten"},
		checkpoint.LayerSpec{Name: "head", Type: "Linear"})
}

// Save writes w to path as a PyTorch zip checkpoint with float32 tensors,
// the layer list and settings (a JSON object) in its metadata.
func Save(path string, w *Weights, settings any) error {
	var tensors []checkpoint.TensorSource
	in := 1
	for i, bw := range w.Blocks {
		out := w.Channels[i]
		p := fmt.Sprintf("block%d.", i)
		tensors = append(tensors,
			floatTensor(p+"conv.weight", bw.Weight, out, in, 3, 3),
			floatTensor(p+"bn.weight", bw.Gamma, out),
			floatTensor(p+"bn.bias", bw.Beta, out),
			floatTensor(p+"bn.running_mean", bw.RunningMean, out),
			floatTensor(p+"bn.running_var", bw.RunningVar, out),
			int64Scalar(p+"bn.num_batches_tracked", bw.NumBatchesTracked))
		in = out
	}
	tensors = append(tensors, floatTensor("head.weight", w.HeadWeight, w.Classes, in), floatTensor("head.bias", w.HeadBias, w.Classes))
	js, err := json.Marshal(settings)
	if err != nil {
		return fmt.Errorf("save %s: encode settings: %w", path, err)
	}
	return checkpoint.WriteTorchFile(path, tensors, &checkpoint.TorchWriteOptions{
		Layers:   w.layerSpecs(),
		Metadata: map[string]string{MetaKind: MetaKindMNIS, MetaSettings: string(js)},
	})
}

func floatTensor(name string, v []float64, shape ...int) checkpoint.TensorSource {
	return checkpoint.TensorSource{Name: name, DType: checkpoint.Float32, Shape: shape, WriteData: func(w io.Writer) error {
		buf := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(float32(x)))
		}
		_, err := w.Write(buf)
		return err
	}}
}

func int64Scalar(name string, v int64) checkpoint.TensorSource {
	return checkpoint.TensorSource{Name: name, DType: checkpoint.Int64, WriteData: func(w io.Writer) error {
		return binary.Write(w, binary.LittleEndian, v)
	}}
}

// LoadWeights reads the network that pretrain saved from an opened
// checkpoint. It fails, naming the tensor or layer, on any file that
// pretrain did not write or whose shapes do not fit its layer list.
func LoadWeights(f *checkpoint.File) (*Weights, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s; simulate and sweep need a checkpoint written by `convbn-diag pretrain`", f.Path, fmt.Sprintf(format, args...))
	}
	if f.Metadata[MetaKind] != MetaKindMNIS {
		return nil, fail("metadata key %s is %q, want %q", MetaKind, f.Metadata[MetaKind], MetaKindMNIS)
	}
	var specs []checkpoint.LayerSpec
	if err := json.Unmarshal([]byte(f.Metadata[checkpoint.MetadataLayersKey]), &specs); err != nil {
		return nil, fail("invalid layer list under %s: %v", checkpoint.MetadataLayersKey, err)
	}
	if len(f.Models) != 1 {
		return nil, fail("found %d models, want 1", len(f.Models))
	}
	tensors := map[string]*checkpoint.Tensor{}
	for _, t := range f.Models[0].Tensors {
		tensors[t.Name] = t
	}
	read := func(name string, shape ...int) ([]float64, error) {
		t, ok := tensors[name]
		if !ok {
			return nil, fail("tensor %s is missing", name)
		}
		if fmt.Sprint(t.Shape) != fmt.Sprint(shape) {
			return nil, fail("tensor %s has shape %v, want %v", name, t.Shape, shape)
		}
		v, err := t.Float64s()
		if err != nil {
			return nil, fail("tensor %s: %v", name, err)
		}
		for i, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, fail("tensor %s: element %d is %v", name, i, x)
			}
		}
		return v, nil
	}

	w := &Weights{}
	in := 1
	for _, s := range specs {
		if s.Type != "BatchNorm2d" {
			continue
		}
		i := len(w.Blocks)
		if s.Name != fmt.Sprintf("block%d.bn", i) || !(s.Eps > 0) || s.Momentum == nil {
			return nil, fail("layer %q: want BatchNorm2d block%d.bn with a positive ε and a momentum", s.Name, i)
		}
		p := strings.TrimSuffix(s.Name, "bn")
		gt, ok := tensors[p+"bn.weight"]
		if !ok || len(gt.Shape) != 1 {
			return nil, fail("tensor %sbn.weight is missing or not a vector", p)
		}
		gamma, err := read(p+"bn.weight", gt.Shape...)
		if err != nil {
			return nil, err
		}
		out := len(gamma)
		bw := BlockWeights{Gamma: gamma, Eps: s.Eps, Momentum: *s.Momentum}
		if bw.Weight, err = read(p+"conv.weight", out, in, 3, 3); err != nil {
			return nil, err
		}
		if bw.Beta, err = read(p+"bn.bias", out); err != nil {
			return nil, err
		}
		if bw.RunningMean, err = read(p+"bn.running_mean", out); err != nil {
			return nil, err
		}
		if bw.RunningVar, err = read(p+"bn.running_var", out); err != nil {
			return nil, err
		}
		for c, v := range bw.RunningVar {
			if !(v+bw.Eps > 0) {
				return nil, fail("tensor %sbn.running_var: channel %d has σ²+ε = %g, which has no square root", p, c, v+bw.Eps)
			}
		}
		if nbt, err := read(p + "bn.num_batches_tracked"); err == nil && len(nbt) == 1 {
			bw.NumBatchesTracked = int64(nbt[0])
		}
		w.Channels = append(w.Channels, out)
		w.Blocks = append(w.Blocks, bw)
		in = out
	}
	if len(w.Blocks) == 0 {
		return nil, fail("the layer list has no BatchNorm2d")
	}
	t, ok := tensors["head.bias"]
	if !ok || len(t.Shape) != 1 {
		return nil, fail("tensor head.bias is missing or not a vector")
	}
	w.Classes = t.Shape[0]
	var err error
	if w.HeadBias, err = read("head.bias", w.Classes); err != nil {
		return nil, err
	}
	if w.HeadWeight, err = read("head.weight", w.Classes, in); err != nil {
		return nil, err
	}
	return w, nil
}

// Settings returns the pretraining settings stored in the checkpoint's
// metadata, as raw JSON, or "" when there are none.
func Settings(f *checkpoint.File) string { return f.Metadata[MetaSettings] }

// formatFloat prints v in the shortest form that reads back exactly.
func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
