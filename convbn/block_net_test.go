package convbn

import (
	"math/rand/v2"
	"testing"

	"github.com/convbn-diag/convbn-diag/gradients"
	"github.com/convbn-diag/convbn-diag/nn"
)

// TestNetFiniteDifferences checks the gradients of the whole network
// (blocks, ReLU, max pool, global average pool, linear head and
// cross-entropy) in every mode.
func TestNetFiniteDifferences(t *testing.T) {
	for _, mode := range []Mode{Train, Eval, Tune, Deploy} {
		t.Run(mode.String(), func(t *testing.T) {
			net, err := NewNet[float64](NetConfig{InChannels: 2, Channels: []int{3, 4}, Classes: 3, Seed: 5})
			if err != nil {
				t.Fatal(err)
			}
			rng := newRNG(6)
			for _, b := range net.Blocks() {
				copy(b.BN.Gamma, uniform(rng, len(b.BN.Gamma), 0.5, 1.5))
				copy(b.BN.Beta, uniform(rng, len(b.BN.Beta), -0.5, 0.5))
				copy(b.BN.RunningVar, uniform(rng, len(b.BN.RunningVar), 0.5, 2))
			}
			if err := net.SetMode(mode); err != nil {
				t.Fatal(err)
			}
			x := nn.FromSlice(uniform(rng, 3*2*6*6, -1, 1), 3, 2, 6, 6)
			labels := []int{0, 2, 1}

			net.ZeroGrad()
			_, grad, err := net.Loss(x, labels)
			if err != nil {
				t.Fatal(err)
			}
			dx, err := net.Backward(grad)
			if err != nil {
				t.Fatal(err)
			}
			vars := []gradients.Variable{{Name: "x", Value: x.Data, Grad: dx.Data}}
			for _, p := range net.Params() {
				vars = append(vars, gradients.Variable{Name: p.Name, Value: p.Value, Grad: p.Grad})
			}
			loss := func() (float64, error) {
				l, _, err := net.Loss(x, labels)
				return l, err
			}
			rep, err := gradients.Check(loss, vars, 1e-6, gradients.DefaultTolerance)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range rep.Mismatches {
				t.Errorf("gradient mismatch: %v", m)
			}
		})
	}
}

// barImages returns n 8×8 single-channel images of four classes: a
// horizontal bar, a vertical bar, a diagonal and a centered square, at
// random positions, with uniform noise.
func barImages(rng *rand.Rand, n int) (*nn.Tensor[float32], []int) {
	const size = 8
	x := nn.NewTensor[float32](n, 1, size, size)
	labels := make([]int, n)
	for i := range n {
		class := rng.IntN(4)
		labels[i] = class
		img := x.Data[i*size*size : (i+1)*size*size]
		for j := range img {
			img[j] = float32(0.3 * rng.Float64())
		}
		pos := 1 + rng.IntN(size-2)
		for k := range size {
			switch class {
			case 0:
				img[pos*size+k] = 1
			case 1:
				img[k*size+pos] = 1
			case 2:
				img[k*size+k] = 1
			}
		}
		if class == 3 {
			for yy := 2; yy < 6; yy++ {
				for xx := 2; xx < 6; xx++ {
					img[yy*size+xx] = 1
				}
			}
		}
	}
	return x, labels
}

func accuracy(t *testing.T, net *Net[float32], x *nn.Tensor[float32], labels []int) float64 {
	t.Helper()
	logits, err := net.Forward(x)
	if err != nil {
		t.Fatal(err)
	}
	k := logits.Shape[1]
	correct := 0
	for i, label := range labels {
		best := 0
		for j := 1; j < k; j++ {
			if logits.Data[i*k+j] > logits.Data[i*k+best] {
				best = j
			}
		}
		if best == label {
			correct++
		}
	}
	return float64(correct) / float64(len(labels))
}

// TestNetLearns trains in Train mode with SGD and momentum, then fine-tunes
// in Tune and in Deploy mode with AdamW, and requires high accuracy on
// held-out images after each stage.
func TestNetLearns(t *testing.T) {
	rng := newRNG(31)
	net, err := NewNet[float32](NetConfig{InChannels: 1, Channels: []int{8, 16}, Classes: 4, Seed: 32})
	if err != nil {
		t.Fatal(err)
	}
	testX, testY := barImages(rng, 200)

	sgd := &nn.SGD[float32]{LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4}
	var first, last float64
	for it := range 150 {
		x, y := barImages(rng, 32)
		loss, err := net.TrainStep(x, y, sgd, nil)
		if err != nil {
			t.Fatal(err)
		}
		if it == 0 {
			first = loss
		}
		last = loss
	}
	if err := net.SetMode(Eval); err != nil {
		t.Fatal(err)
	}
	acc := accuracy(t, net, testX, testY)
	t.Logf("train mode: loss %.3f → %.3f, held-out accuracy %.3f", first, last, acc)
	if acc < 0.9 {
		t.Fatalf("accuracy after training: got %.3f, want ≥ 0.9", acc)
	}

	for _, mode := range []Mode{Tune, Deploy} {
		if err := net.SetMode(mode); err != nil {
			t.Fatal(err)
		}
		adamw := &nn.Adam[float32]{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1e-2, Decoupled: true}
		for range 20 {
			x, y := barImages(rng, 32)
			if _, err := net.TrainStep(x, y, adamw, nil); err != nil {
				t.Fatal(err)
			}
		}
		acc := accuracy(t, net, testX, testY)
		t.Logf("%s fine-tuning: held-out accuracy %.3f", mode, acc)
		if acc < 0.9 {
			t.Errorf("accuracy after %s fine-tuning: got %.3f, want ≥ 0.9", mode, acc)
		}
	}
}
