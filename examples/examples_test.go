package examples

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/checkpoint"
	"github.com/convbn-diag/convbn-diag/examples/internal/flagsnet"
)

func TestFlagsUpToDate(t *testing.T) {
	var buf bytes.Buffer
	if err := flagsnet.Build().Write(&buf); err != nil {
		t.Fatalf("generate flags example: %v", err)
	}
	if !bytes.Equal(buf.Bytes(), flagsCheckpoint) {
		t.Errorf("embedded flags.pt (%d bytes) differs from the generator's output (%d bytes); run go generate ./examples", len(flagsCheckpoint), buf.Len())
	}
	if len(flagsCheckpoint) >= 200<<10 {
		t.Errorf("flags.pt has %d bytes, want less than 200 KiB", len(flagsCheckpoint))
	}
}

func TestNamesAndLookup(t *testing.T) {
	if got := Names(); !slices.Equal(got, []string{"flags", "mnist"}) {
		t.Errorf("Names mismatch: got %v, want [flags mnist]", got)
	}
	for _, name := range Names() {
		if s, err := Summary(name); err != nil || s == "" {
			t.Errorf("Summary(%q) = %q, %v; want a description", name, s, err)
		}
		if f, err := FileName(name); err != nil || !strings.HasSuffix(f, ".pt") {
			t.Errorf("FileName(%q) = %q, %v; want a .pt name", name, f, err)
		}
	}

	_, err := Bytes("nope")
	if err == nil || !strings.Contains(err.Error(), `"nope" not found`) || !strings.Contains(err.Error(), "flags") {
		t.Errorf("Bytes(nope) error mismatch: got %v, want one naming the missing example and listing flags", err)
	}
	if _, err := Open("nope"); err == nil {
		t.Error("Open(nope) succeeded, want an error")
	}

	b, err := Bytes("flags")
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if flagsCheckpoint[0] == b[0] {
		t.Error("Bytes returned the embedded slice itself; changing it changed the example")
	}
}

// storedValues returns a tensor's values as the checkpoint stores them,
// rounded to float32.
func storedValues(t *testing.T, tensor flagsnet.Tensor) []float64 {
	t.Helper()
	raw, err := checkpoint.AppendElements(nil, tensor.DType, tensor.Values)
	if err != nil {
		t.Fatalf("encode %s: %v", tensor.Name, err)
	}
	out := make([]float64, len(tensor.Values))
	for i := range out {
		switch tensor.DType {
		case checkpoint.Float32:
			u := uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24
			out[i] = float64(math.Float32frombits(u))
		case checkpoint.Int64:
			out[i] = tensor.Values[i]
		default:
			t.Fatalf("tensor %s has dtype %s, which this test does not decode", tensor.Name, tensor.DType)
		}
	}
	return out
}

func TestOpenFlagsMatchesGenerator(t *testing.T) {
	net := flagsnet.Build()
	f, err := Open("flags")
	if err != nil {
		t.Fatalf("Open(flags): %v", err)
	}
	if f.Path != "flags.pt" || f.Format != checkpoint.FormatTorchZip {
		t.Errorf("file mismatch: got path %q format %s, want flags.pt %s", f.Path, f.Format, checkpoint.FormatTorchZip)
	}
	if len(f.Warnings) != 0 {
		t.Errorf("reading flags.pt gave warnings: %q", f.Warnings)
	}
	if len(f.Models) != 1 {
		t.Fatalf("flags.pt has %d models, want 1", len(f.Models))
	}
	m := f.Models[0]
	if len(m.Tensors) != len(net.Tensors) {
		t.Fatalf("flags.pt has %d tensors, want %d", len(m.Tensors), len(net.Tensors))
	}
	for i, want := range net.Tensors {
		got := m.Tensors[i]
		if got.Name != want.Name || got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) {
			t.Errorf("tensor %d mismatch: got %s %s %v, want %s %s %v", i, got.Name, got.DType, got.Shape, want.Name, want.DType, want.Shape)
			continue
		}
		vals, err := got.Float64s()
		if err != nil {
			t.Fatalf("read %s: %v", got.Name, err)
		}
		for k, w := range storedValues(t, want) {
			if vals[k] != w {
				t.Errorf("tensor %s element %d mismatch: got %v, want %v", got.Name, k, vals[k], w)
				break
			}
		}
	}

	wantMeta := map[string]string{checkpoint.MetadataFormatKey: checkpoint.MetadataFormat}
	for k, v := range net.Metadata {
		wantMeta[k] = v
	}
	layers, err := json.Marshal(net.Layers)
	if err != nil {
		t.Fatal(err)
	}
	wantMeta[checkpoint.MetadataLayersKey] = string(layers)
	if len(f.Metadata) != len(wantMeta) {
		t.Errorf("metadata has %d keys, want %d: %v", len(f.Metadata), len(wantMeta), f.Metadata)
	}
	for k, v := range wantMeta {
		if f.Metadata[k] != v {
			t.Errorf("metadata %q mismatch: got %q, want %q", k, f.Metadata[k], v)
		}
	}
}

// flagsBatchNorm returns a BatchNorm's stored γ and σ² and its ε from the
// layer list.
func flagsBatchNorm(t *testing.T, net *flagsnet.Net, name string) (gamma, variance []float64, eps float64) {
	t.Helper()
	for _, tensor := range net.Tensors {
		switch tensor.Name {
		case name + ".weight":
			gamma = storedValues(t, tensor)
		case name + ".running_var":
			variance = storedValues(t, tensor)
		}
	}
	for _, l := range net.Layers {
		if l.Name == name {
			eps = l.Eps
		}
	}
	if gamma == nil || variance == nil || eps == 0 {
		t.Fatalf("BatchNorm %s not found in the flags network", name)
	}
	return gamma, variance, eps
}

// medianAbsOmega returns the median of |γ/√(σ²+ε)| over channels with a
// finite, nonzero ω.
func medianAbsOmega(gamma, variance []float64, eps float64) float64 {
	var abs []float64
	for c := range gamma {
		if variance[c]+eps > 0 && gamma[c] != 0 {
			abs = append(abs, math.Abs(gamma[c]/math.Sqrt(variance[c]+eps)))
		}
	}
	slices.Sort(abs)
	if len(abs)%2 == 1 {
		return abs[len(abs)/2]
	}
	return (abs[len(abs)/2-1] + abs[len(abs)/2]) / 2
}

func TestFlagsShowsDocumentedCases(t *testing.T) {
	net := flagsnet.Build()

	gamma, variance, eps := flagsBatchNorm(t, net, "features.1")
	if gamma[flagsnet.DeadChannel] != 0 {
		t.Errorf("features.1 channel %d γ = %v, want 0 (dead)", flagsnet.DeadChannel, gamma[flagsnet.DeadChannel])
	}
	if gamma[flagsnet.NegativeGammaChannel] >= 0 {
		t.Errorf("features.1 channel %d γ = %v, want negative", flagsnet.NegativeGammaChannel, gamma[flagsnet.NegativeGammaChannel])
	}
	if med := medianAbsOmega(gamma, variance, eps); med < 0.7 || med > 1.3 {
		t.Errorf("features.1 median |ω| = %v, want near 1", med)
	}

	gamma, variance, eps = flagsBatchNorm(t, net, "features.4")
	if v := variance[flagsnet.TinyVarianceChannel]; v > 1e-11 || v <= 0 {
		t.Errorf("features.4 channel %d σ² = %v, want about 1e-12", flagsnet.TinyVarianceChannel, v)
	}
	if omega := gamma[flagsnet.TinyVarianceChannel] / math.Sqrt(variance[flagsnet.TinyVarianceChannel]+eps); omega < 100 {
		t.Errorf("features.4 channel %d ω = %v, want above 100", flagsnet.TinyVarianceChannel, omega)
	}
	if med := medianAbsOmega(gamma, variance, eps); med < 4 {
		t.Errorf("features.4 median |ω| = %v, want well above 1", med)
	}

	gamma, variance, eps = flagsBatchNorm(t, net, "features.7")
	if v := variance[flagsnet.NegativeVarianceChannel] + eps; v > 0 {
		t.Errorf("features.7 channel %d σ²+ε = %v, want ≤ 0", flagsnet.NegativeVarianceChannel, v)
	}
	if med := medianAbsOmega(gamma, variance, eps); med > 0.2 {
		t.Errorf("features.7 median |ω| = %v, want well below 1", med)
	}
	if eps != 1e-3 {
		t.Errorf("features.7 ε = %v, want 1e-3", eps)
	}

	// Conv→BN adjacency in the layer list: four pairs, and features.9 is
	// separated from features.11 by a ReLU.
	var pairs []string
	for i := 0; i+1 < len(net.Layers); i++ {
		l, next := net.Layers[i], net.Layers[i+1]
		if strings.HasPrefix(l.Type, "Conv") && next.Type == "BatchNorm2d" {
			pairs = append(pairs, l.Name+"→"+next.Name)
		}
	}
	wantPairs := []string{"features.0→features.1", "features.3→features.4", "features.6→features.7", "features.12→features.13"}
	if !slices.Equal(pairs, wantPairs) {
		t.Errorf("adjacent conv→BN pairs mismatch: got %v, want %v", pairs, wantPairs)
	}

	// The geometry that doc.go promises.
	shapes := map[string][]int{}
	for _, tensor := range net.Tensors {
		shapes[tensor.Name] = tensor.Shape
	}
	layer := map[string]checkpoint.LayerSpec{}
	for _, l := range net.Layers {
		layer[l.Name] = l
	}
	if l := layer["features.3"]; l.Groups != 16 || !slices.Equal(shapes["features.3.weight"], []int{16, 1, 3, 3}) {
		t.Errorf("features.3 is not depthwise: groups %d, weight %v", l.Groups, shapes["features.3.weight"])
	}
	if l := layer["features.6"]; l.Stride[0] != 2 || shapes["features.6.bias"] == nil {
		t.Errorf("features.6 should be strided with a bias: stride %v, bias shape %v", l.Stride, shapes["features.6.bias"])
	}
	if l := layer["features.12"]; l.Type != "ConvTranspose2d" || l.Groups != 2 || !slices.Equal(shapes["features.12.weight"], []int{32, 8, 4, 4}) {
		t.Errorf("features.12 mismatch: %s groups %d weight %v, want ConvTranspose2d groups 2 weight [32 8 4 4]", l.Type, l.Groups, shapes["features.12.weight"])
	}
	if layer["classifier"].Type != "Linear" || !slices.Equal(shapes["classifier.weight"], []int{10, 16}) {
		t.Errorf("classifier mismatch: %+v weight %v", layer["classifier"], shapes["classifier.weight"])
	}
}

func TestFlagsDocumentedMedians(t *testing.T) {
	// The medians that doc.go quotes, to the digits it quotes them.
	net := flagsnet.Build()
	for _, c := range []struct {
		name string
		want float64
	}{
		{"features.1", 1.11},
		{"features.4", 8.55},
		{"features.7", 0.0507},
		{"features.13", 1.05},
	} {
		gamma, variance, eps := flagsBatchNorm(t, net, c.name)
		got := medianAbsOmega(gamma, variance, eps)
		if math.Abs(got-c.want) > 0.006*c.want {
			t.Errorf("%s median |ω| = %.4g, doc.go says %v", c.name, got, c.want)
		}
	}
}
