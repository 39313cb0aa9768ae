package flagsnet

import (
	"math"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// convGeometry is the geometry of one square convolution.
type convGeometry struct {
	stride, padding, dilation, groups int
	bias                              bool
}

// conv adds a Conv2d or ConvTranspose2d with a k×k kernel and Kaiming-normal
// weights (std √(2/fan_in)), plus a bias drawn uniformly from
// ±1/√fan_in, PyTorch's default, when geo.bias is set.
func (n *Net) conv(g *generator, name, typ string, in, out, k int, geo convGeometry) {
	var shape []int
	var fanIn int
	if typ == "ConvTranspose2d" {
		// Transposed convs store [C_in, C_out/G, k, k]; PyTorch's fan_in
		// for them is dimension 1 times the kernel size.
		shape = []int{in, out / geo.groups, k, k}
		fanIn = out / geo.groups * k * k
	} else {
		shape = []int{out, in / geo.groups, k, k}
		fanIn = in / geo.groups * k * k
	}
	std := math.Sqrt(2 / float64(fanIn))
	n.add(name+".weight", checkpoint.Float32, shape, g.normals(shape[0]*shape[1]*k*k, 0, std))
	if geo.bias {
		bound := 1 / math.Sqrt(float64(fanIn))
		n.add(name+".bias", checkpoint.Float32, []int{out}, g.uniforms(out, -bound, bound))
	}

	n.Layers = append(n.Layers, checkpoint.LayerSpec{
		Name:     name,
		Type:     typ,
		Stride:   []int{geo.stride, geo.stride},
		Padding:  []int{geo.padding, geo.padding},
		Dilation: []int{geo.dilation, geo.dilation},
		Groups:   geo.groups,
	})
}

// bnStats are the ranges from which a BatchNorm's parameters and running
// statistics are drawn.
type bnStats struct {
	gammaLo, gammaHi float64 // γ uniform in [gammaLo, gammaHi)
	varLo, varHi     float64 // σ² from varLo to varHi, skewed toward varLo
	meanStd          float64 // μ normal with mean 0
}

// bnTensors gives access to a BatchNorm's vectors after they are added, so
// that Build can plant flagged channels.
type bnTensors struct {
	gamma, beta, mean, variance []float64
}

// batchNorm adds a BatchNorm2d of c channels with the given ε and
// momentum, and returns its vectors.
func (n *Net) batchNorm(g *generator, name string, c int, eps, momentum float64, st bnStats) bnTensors {
	bn := bnTensors{
		gamma:    g.uniforms(c, st.gammaLo, st.gammaHi),
		beta:     g.normals(c, 0, 0.1),
		mean:     g.normals(c, 0, st.meanStd),
		variance: make([]float64, c),
	}
	// A squared uniform skews the variances toward varLo.
	for i, u := range g.uniforms(c, 0, 1) {
		bn.variance[i] = st.varLo + float64((st.varHi-st.varLo)*(u*u))
	}

	n.add(name+".weight", checkpoint.Float32, []int{c}, bn.gamma)
	n.add(name+".bias", checkpoint.Float32, []int{c}, bn.beta)
	n.add(name+".running_mean", checkpoint.Float32, []int{c}, bn.mean)
	n.add(name+".running_var", checkpoint.Float32, []int{c}, bn.variance)
	// 50 epochs of 938 batches, as for MNIST with batch size 64.
	n.add(name+".num_batches_tracked", checkpoint.Int64, []int{}, []float64{46900})

	affine, track := true, true
	n.Layers = append(n.Layers, checkpoint.LayerSpec{
		Name:              name,
		Type:              "BatchNorm2d",
		Eps:               eps,
		Momentum:          &momentum,
		Affine:            &affine,
		TrackRunningStats: &track,
	})
	return bn
}

// linear adds a Linear layer with PyTorch's default uniform initialization.
func (n *Net) linear(g *generator, name string, in, out int) {
	bound := 1 / math.Sqrt(float64(in))
	n.add(name+".weight", checkpoint.Float32, []int{out, in}, g.uniforms(out*in, -bound, bound))
	n.add(name+".bias", checkpoint.Float32, []int{out}, g.uniforms(out, -bound, bound))
	n.Layers = append(n.Layers, checkpoint.LayerSpec{Name: name, Type: "Linear"})
}

// plain adds a layer without parameters, such as a ReLU.
func (n *Net) plain(name, typ string) {
	n.Layers = append(n.Layers, checkpoint.LayerSpec{Name: name, Type: typ})
}

// add appends a tensor. The slice is kept, so Build can still change the
// values until the network is written.
func (n *Net) add(name string, d checkpoint.DType, shape []int, values []float64) {
	n.Tensors = append(n.Tensors, Tensor{Name: name, DType: d, Shape: shape, Values: values})
}
