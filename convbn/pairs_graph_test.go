package convbn

import (
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// graphBuilder assembles a small ONNX-like model in memory.
type graphBuilder struct {
	m *checkpoint.Model
}

func newGraphBuilder() *graphBuilder {
	return &graphBuilder{m: &checkpoint.Model{Graph: &checkpoint.Graph{Inputs: []string{"input"}}}}
}

func (b *graphBuilder) tensor(name string, shape ...int) string {
	n := 1
	for _, s := range shape {
		n *= s
	}
	data := make([]float64, n)
	for i := range data {
		data[i] = 1 + float64(i%7)/8
	}
	b.m.Tensors = append(b.m.Tensors, checkpoint.NewTensor(name, shape, data))
	return name
}

func (b *graphBuilder) node(op, name string, inputs, outputs []string, attrs map[string]any) {
	if attrs == nil {
		attrs = map[string]any{}
	}
	b.m.Graph.Nodes = append(b.m.Graph.Nodes, &checkpoint.Node{OpType: op, Name: name, Inputs: inputs, Outputs: outputs, Attrs: attrs})
}

// convBN adds a conv named prefix+"conv" with out channels and a
// BatchNormalization named prefix+"bn" reading x and writing y.
func (b *graphBuilder) convBN(prefix, x, y string, out int, attrs map[string]any) {
	w := b.tensor(prefix+"conv.weight", out, 2, 3, 3)
	b.node("Conv", "", []string{x, w}, []string{prefix + "c"}, attrs)
	b.node("BatchNormalization", "", []string{prefix + "c", b.tensor(prefix+"bn.weight", out), b.tensor(prefix+"bn.bias", out), b.tensor(prefix+"bn.running_mean", out), b.tensor(prefix+"bn.running_var", out)}, []string{y}, nil)
}

func TestGraphPairsEdgeCases(t *testing.T) {
	b := newGraphBuilder()
	// a: a plain pair with asymmetric pads.
	b.convBN("a.", "input", "a.y", 4, map[string]any{"pads": []int64{0, 1, 1, 1}, "strides": []int64{2, 2}})
	// b: a conv whose output is also a graph output.
	b.convBN("b.", "a.y", "b.y", 4, nil)
	b.m.Graph.Outputs = append(b.m.Graph.Outputs, "b.c")
	// c: weight from a Constant node, no name suffix, and auto_pad VALID.
	constW := checkpoint.NewTensor("", []int{4, 2, 1, 1}, []float64{1, 2, 3, 4, 5, 6, 7, 8})
	b.node("Constant", "", nil, []string{"cw"}, map[string]any{"value": constW})
	b.node("Conv", "conv_c", []string{"b.y", "cw", ""}, []string{"c.c"}, map[string]any{"auto_pad": "VALID"})
	b.node("BatchNormalization", "", []string{"c.c", b.tensor("c.bn.weight", 4), b.tensor("c.bn.bias", 4), b.tensor("c.bn.running_mean", 4), b.tensor("c.bn.running_var", 4)}, []string{"c.y"}, map[string]any{"epsilon": 0.5, "momentum": 0.75})
	// d: a weight computed in the graph.
	b.node("Identity", "", []string{"a.conv.weight"}, []string{"dw"}, nil)
	b.node("Conv", "", []string{"c.y", "dw"}, []string{"d.c"}, nil)
	b.node("BatchNormalization", "", []string{"d.c", b.tensor("d.bn.weight", 4), b.tensor("d.bn.bias", 4), b.tensor("d.bn.running_mean", 4), b.tensor("d.bn.running_var", 4)}, []string{"d.y"}, nil)
	// e: channel mismatch.
	b.convBN("e.", "d.y", "e.y", 4, nil)
	b.m.Tensors[len(b.m.Tensors)-2] = checkpoint.NewTensor("e.bn.running_mean", []int{3}, []float64{0, 0, 0})

	res, err := FindPairs(b.m, nil, Options{})
	if err != nil {
		t.Fatalf("FindPairs: %v", err)
	}
	got := map[string]string{}
	for _, p := range res.Pairs {
		got[p.Conv.Name] = p.BN.Name
	}
	comparePairSets(t, "edge cases", got, map[string]string{"a.conv": "a.bn", "conv_c": "c.bn"})

	pairs := pairsByConv(res.Pairs)
	a := pairs["a.conv"]
	if a.Conv.Padding != nil || !equalInts(a.Conv.Stride, []int{2, 2}) || !equalInts(a.Conv.Dilation, []int{1, 1}) {
		t.Errorf("a.conv geometry mismatch: got padding %v stride %v dilation %v, want unknown, [2 2], [1 1]", a.Conv.Padding, a.Conv.Stride, a.Conv.Dilation)
	}
	if len(a.Notes) != 1 || !strings.Contains(a.Notes[0], "asymmetric") {
		t.Errorf("a.conv notes mismatch: got %q, want one about asymmetric padding", a.Notes)
	}
	if a.BN.Eps != onnxDefaultEpsilon || a.BN.Momentum == nil || *a.BN.Momentum != 0.1 {
		t.Errorf("a.bn defaults mismatch: got eps %v momentum %v, want 1e-5 and 0.1", a.BN.Eps, a.BN.Momentum)
	}
	c := pairs["conv_c"]
	if c.Conv.Weight != constW || c.Conv.Bias != nil || !equalInts(c.Conv.Padding, []int{0, 0}) {
		t.Errorf("conv_c mismatch: got weight %p bias %v padding %v, want the Constant's tensor, no bias, [0 0]", c.Conv.Weight, c.Conv.Bias, c.Conv.Padding)
	}
	if c.BN.Eps != 0.5 || *c.BN.Momentum != 0.25 {
		t.Errorf("c.bn settings mismatch: got eps %v momentum %v, want 0.5 and 0.25", c.BN.Eps, *c.BN.Momentum)
	}

	reasons := map[string]string{
		"b.conv": "graph output",
		"b.bn":   "which is unpaired",
		"node8":  "computed in the graph",
		"d.bn":   "computed in the graph",
		"e.conv": "channel mismatch",
		"e.bn":   "channel mismatch",
	}
	for name, fragment := range reasons {
		if r := unpairedReason(res, name); !strings.Contains(r, fragment) {
			t.Errorf("%s reason mismatch: got %q, want one containing %q", name, r, fragment)
		}
	}
}

func TestGraphPairsOverrides(t *testing.T) {
	build := func() *checkpoint.Model {
		b := newGraphBuilder()
		b.convBN("a.", "input", "a.y", 4, nil)
		b.convBN("b.", "a.y", "b.y", 4, nil)
		b.node("Relu", "", []string{"b.c"}, []string{"r"}, nil) // b.conv now has two consumers
		return b.m
	}

	res, err := FindPairs(build(), nil, Options{NoPair: []string{"a.bn"}})
	if err != nil {
		t.Fatalf("FindPairs: %v", err)
	}
	if len(res.Pairs) != 0 {
		t.Errorf("pair count mismatch: got %d, want 0", len(res.Pairs))
	}
	if r := unpairedReason(res, "a.conv"); !strings.Contains(r, "excluded by --no-pair") {
		t.Errorf("a.conv reason mismatch: got %q", r)
	}
	if r := unpairedReason(res, "b.conv"); !strings.Contains(r, "not fusible") {
		t.Errorf("b.conv reason mismatch: got %q", r)
	}

	res, err = FindPairs(build(), nil, Options{Pairs: map[string]string{"b.conv": "b.bn"}})
	if err != nil {
		t.Fatalf("FindPairs with --pair: %v", err)
	}
	got := map[string]string{}
	for _, p := range res.Pairs {
		got[p.Conv.Name] = p.BN.Name
		if p.Conv.Name == "b.conv" && p.Evidence != EvidenceOverride {
			t.Errorf("b.conv evidence mismatch: got %s, want %s", p.Evidence, EvidenceOverride)
		}
	}
	comparePairSets(t, "overrides", got, map[string]string{"a.conv": "a.bn", "b.conv": "b.bn"})

	for _, opts := range []Options{
		{NoPair: []string{"missing"}},
		{Pairs: map[string]string{"a.bn": "a.conv"}},
		{Pairs: map[string]string{"a.conv": "b.bn", "b.conv": "b.bn"}},
	} {
		if _, err := FindPairs(build(), nil, opts); err == nil {
			t.Errorf("FindPairs(%+v) succeeded, want an error", opts)
		}
	}
}

func TestGraphPairsTransposedGroups(t *testing.T) {
	b := newGraphBuilder()
	w := b.tensor("up.weight", 8, 3, 2, 2) // [C_in, C_out/G, k, k] with G = 2
	b.node("ConvTranspose", "", []string{"input", w, b.tensor("up.bias", 6)}, []string{"u"}, map[string]any{"group": int64(2), "strides": []int64{2, 2}})
	b.node("BatchNormalization", "", []string{"u", b.tensor("bn.weight", 6), b.tensor("bn.bias", 6), b.tensor("bn.running_mean", 6), b.tensor("bn.running_var", 6)}, []string{"y"}, map[string]any{"training_mode": int64(1)})
	res, err := FindPairs(b.m, nil, Options{})
	if err != nil {
		t.Fatalf("FindPairs: %v", err)
	}
	if len(res.Pairs) != 1 {
		t.Fatalf("pair count mismatch: got %d, want 1 (unpaired %+v)", len(res.Pairs), res.Unpaired)
	}
	p := res.Pairs[0]
	if !p.Conv.Transposed || p.Conv.Groups != 2 || p.Conv.OutChannels() != 6 || p.Conv.Bias == nil {
		t.Errorf("conv mismatch: got transposed %v groups %d out %d bias %v, want true 2 6 set", p.Conv.Transposed, p.Conv.Groups, p.Conv.OutChannels(), p.Conv.Bias != nil)
	}
	if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "training mode") {
		t.Errorf("notes mismatch: got %q, want one about training mode", p.Notes)
	}
}

func TestTorchMomentum(t *testing.T) {
	cases := []struct{ onnx, want float64 }{
		{float64(float32(0.9)), 0.1},
		{float64(float32(0.99)), 0.01},
		{float64(float32(0.97)), 0.03},
		{1, 0},
		{0, 1},
	}
	for _, c := range cases {
		if got := torchMomentum(c.onnx); got != c.want {
			t.Errorf("torchMomentum(%v) mismatch: got %v, want %v", c.onnx, got, c.want)
		}
	}
}
