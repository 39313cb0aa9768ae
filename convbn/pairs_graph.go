package convbn

import (
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// ONNX defaults of the attributes that pairing reads, from the operator
// specifications of Conv and BatchNormalization.
const (
	onnxDefaultEpsilon  = 1e-5
	onnxDefaultMomentum = 0.9
)

// graphLayer is one Conv, ConvTranspose or BatchNormalization node.
type graphLayer struct {
	name  string
	index int // node index in the graph
	node  *checkpoint.Node
	conv  bool // Conv or ConvTranspose; otherwise BatchNormalization
}

// graphPairFinder pairs the nodes of an ONNX graph by its edges.
type graphPairFinder struct {
	label  string
	graph  *checkpoint.Graph
	opts   Options
	values map[string]*checkpoint.Tensor // initializers and Constant outputs

	layers    []*graphLayer
	byName    map[string]*graphLayer
	byNode    map[int]*graphLayer
	producers map[string]int
	consumers map[string][]int
	outputs   map[string]bool

	pairedTo map[*graphLayer]*graphLayer
	reasons  map[*graphLayer]string
	evidence map[*graphLayer]Evidence // by conv
}

// findGraphPairs finds the pairs of an ONNX model from its graph: a Conv or
// ConvTranspose whose output is not a graph output and feeds exactly one
// node, a BatchNormalization taking it as its input X, is a pair. The
// weights, statistics and biases must be initializers (or Constant nodes),
// since values computed in the graph cannot be folded.
//
// Names are the conv's weight initializer name without ".weight"
// (BatchNorm: its scale initializer's), else the node name, else
// "node<i>" for node index i. ε comes from the BatchNormalization's
// epsilon attribute, stored as float32 and used widened to float64, and
// the momentum is converted to PyTorch's convention, 1 − ONNX momentum.
// Where the attributes are absent the ONNX defaults (1e-5, 0.9) apply,
// which are part of the file's meaning, so both have SourceFile.
func findGraphPairs(m *checkpoint.Model, opts Options, label string) (*Result, error) {
	g := m.Graph
	f := &graphPairFinder{
		label:     label,
		graph:     g,
		opts:      opts,
		values:    map[string]*checkpoint.Tensor{},
		byName:    map[string]*graphLayer{},
		byNode:    map[int]*graphLayer{},
		producers: g.Producers(),
		consumers: g.Consumers(),
		outputs:   map[string]bool{},
		pairedTo:  map[*graphLayer]*graphLayer{},
		reasons:   map[*graphLayer]string{},
		evidence:  map[*graphLayer]Evidence{},
	}
	for _, t := range m.Tensors {
		f.values[t.Name] = t
	}
	for _, n := range g.Nodes {
		if n.OpType == "Constant" && n.Domain == "" && len(n.Outputs) == 1 {
			if t, ok := n.Attrs["value"].(*checkpoint.Tensor); ok {
				f.values[n.Outputs[0]] = t
			}
		}
	}
	for _, o := range g.Outputs {
		f.outputs[o] = true
	}
	f.indexNodes()

	if err := f.applyOverrides(); err != nil {
		return nil, err
	}
	for _, l := range f.layers {
		if l.conv && !f.decided(l) {
			f.pairConv(l)
		}
	}
	for _, l := range f.layers {
		if !l.conv && !f.decided(l) {
			f.explainBatchNorm(l)
		}
	}
	return f.result()
}

// indexNodes names every Conv, ConvTranspose and BatchNormalization node.
func (f *graphPairFinder) indexNodes() {
	for i, n := range f.graph.Nodes {
		if n.Domain != "" {
			continue
		}
		var l *graphLayer
		switch n.OpType {
		case "Conv", "ConvTranspose":
			l = &graphLayer{index: i, node: n, conv: true}
		case "BatchNormalization":
			l = &graphLayer{index: i, node: n}
		default:
			continue
		}
		l.name = f.layerName(l)
		f.layers = append(f.layers, l)
		f.byName[l.name] = l
		f.byNode[i] = l
	}
}

// layerName returns the weight (or scale) initializer's name without
// ".weight", else the node name, else "node<i>", keeping names unique.
func (f *graphPairFinder) layerName(l *graphLayer) string {
	n := l.node
	candidates := []string{}
	if len(n.Inputs) > 1 && f.values[n.Inputs[1]] != nil && strings.HasSuffix(n.Inputs[1], ".weight") {
		candidates = append(candidates, strings.TrimSuffix(n.Inputs[1], ".weight"))
	}
	if n.Name != "" {
		candidates = append(candidates, n.Name)
	}
	for _, c := range candidates {
		if f.byName[c] == nil {
			return c
		}
	}
	return fmt.Sprintf("node%d", l.index)
}

func (f *graphPairFinder) decided(l *graphLayer) bool {
	return f.pairedTo[l] != nil || f.reasons[l] != ""
}

func (f *graphPairFinder) reject(l *graphLayer, format string, args ...any) {
	if l != nil && !f.decided(l) {
		f.reasons[l] = fmt.Sprintf(format, args...)
	}
}

func (f *graphPairFinder) accept(conv, bn *graphLayer, evidence Evidence) {
	f.pairedTo[conv] = bn
	f.pairedTo[bn] = conv
	f.evidence[conv] = evidence
}

// applyOverrides applies --no-pair and --pair by layer name.
func (f *graphPairFinder) applyOverrides() error {
	for _, name := range f.opts.NoPair {
		l := f.byName[name]
		if l == nil {
			return fmt.Errorf("--no-pair %s: no Conv or BatchNormalization node named %q in the ONNX graph; names are weight initializer names without \".weight\", node names or node<i>", name, name)
		}
		f.reasons[l] = "excluded by --no-pair"
	}
	convNames := make([]string, 0, len(f.opts.Pairs))
	for c := range f.opts.Pairs {
		convNames = append(convNames, c)
	}
	sort.Strings(convNames)
	for _, convName := range convNames {
		bnName := f.opts.Pairs[convName]
		flag := fmt.Sprintf("--pair %s=%s", convName, bnName)
		conv, bn := f.byName[convName], f.byName[bnName]
		switch {
		case conv == nil || !conv.conv:
			return fmt.Errorf("%s: no Conv or ConvTranspose node named %q in the ONNX graph", flag, convName)
		case bn == nil || bn.conv:
			return fmt.Errorf("%s: no BatchNormalization node named %q in the ONNX graph", flag, bnName)
		case f.reasons[conv] != "" || f.reasons[bn] != "":
			return fmt.Errorf("%s: a node of this pair is also given to --no-pair", flag)
		case f.pairedTo[bn] != nil:
			return fmt.Errorf("%s: %s is already paired with %s by another --pair", flag, bn.name, f.pairedTo[bn].name)
		}
		if reason := f.foldable(conv, bn); reason != "" {
			return fmt.Errorf("%s: %s", flag, reason)
		}
		f.accept(conv, bn, EvidenceOverride)
	}
	return nil
}

// pairConv pairs a conv with the BatchNormalization that alone consumes its
// output, or records why it stays unpaired.
func (f *graphPairFinder) pairConv(conv *graphLayer) {
	n := conv.node
	if len(n.Outputs) == 0 || n.Outputs[0] == "" {
		f.reject(conv, "the node has no output")
		return
	}
	out := n.Outputs[0]
	if f.outputs[out] {
		f.reject(conv, "its output %s is a graph output, so folding a BatchNorm into it would change the model's result", out)
		return
	}
	consumers := f.consumers[out]
	switch len(consumers) {
	case 0:
		f.reject(conv, "its output %s is not used by any node", out)
		return
	case 1:
	default:
		f.reject(conv, "not fusible: its output %s feeds %d nodes (%s), so folding a BatchNorm would change the others' input", out, len(consumers), f.describeNodes(consumers))
		return
	}
	next := f.graph.Nodes[consumers[0]]
	bn := f.byNode[consumers[0]]
	if bn == nil || bn.conv {
		f.reject(conv, "its output %s feeds a %s node (%s), not a BatchNormalization", out, next.OpType, f.describeNodes(consumers))
		return
	}
	if len(next.Inputs) == 0 || next.Inputs[0] != out {
		f.reject(conv, "its output %s is not the input X of BatchNormalization %s", out, bn.name)
		f.reject(bn, "its input X does not come from a convolution")
		return
	}
	if f.decided(bn) {
		if reason := f.reasons[bn]; reason != "" {
			f.reject(conv, "next node %s is unpaired: %s", bn.name, reason)
		} else {
			f.reject(conv, "next node %s is already paired with %s", bn.name, f.pairedTo[bn].name)
		}
		return
	}
	if reason := f.foldable(conv, bn); reason != "" {
		f.reject(conv, "%s", reason)
		f.reject(bn, "%s", reason)
		return
	}
	f.accept(conv, bn, EvidenceGraph)
}

// foldable checks that the pair's parameters are constants of matching
// sizes, returning why not or "".
func (f *graphPairFinder) foldable(conv, bn *graphLayer) string {
	cn, bnNode := conv.node, bn.node
	if len(cn.Inputs) < 2 || f.values[cn.Inputs[1]] == nil {
		return fmt.Sprintf("weight of %s is computed in the graph, not an initializer, so it cannot be folded", conv.name)
	}
	if len(cn.Inputs) > 2 && cn.Inputs[2] != "" && f.values[cn.Inputs[2]] == nil {
		return fmt.Sprintf("bias of %s is computed in the graph, not an initializer, so it cannot be folded", conv.name)
	}
	if len(bnNode.Inputs) < 5 {
		return fmt.Sprintf("BatchNormalization %s has %d inputs, want 5 (X, scale, B, mean, var)", bn.name, len(bnNode.Inputs))
	}
	for i, role := range []string{"scale", "B", "mean", "var"} {
		if f.values[bnNode.Inputs[1+i]] == nil {
			return fmt.Sprintf("BatchNormalization %s takes its %s (%q) from the graph, not an initializer, so it cannot be folded", bn.name, role, bnNode.Inputs[1+i])
		}
	}
	w := f.values[cn.Inputs[1]]
	mean := f.values[bnNode.Inputs[3]]
	if len(w.Shape) < 3 || len(mean.Shape) != 1 {
		return fmt.Sprintf("weight %s has shape %v and mean %s has shape %v; want a 3- to 5-D weight and a 1-D mean", w.Name, w.Shape, mean.Name, mean.Shape)
	}
	out := w.Shape[0]
	if cn.OpType == "ConvTranspose" {
		out = w.Shape[1] * int(attrInt(cn, "group", 1))
	}
	if out != mean.Shape[0] {
		return fmt.Sprintf("channel mismatch: %s has %d output channels, BatchNormalization %s has %d", conv.name, out, bn.name, mean.Shape[0])
	}
	return ""
}

// explainBatchNorm gives an unpaired BatchNormalization the reason its
// input is not a foldable conv output.
func (f *graphPairFinder) explainBatchNorm(bn *graphLayer) {
	if len(bn.node.Inputs) == 0 || bn.node.Inputs[0] == "" {
		f.reject(bn, "the node has no input X")
		return
	}
	x := bn.node.Inputs[0]
	p, ok := f.producers[x]
	switch {
	case !ok && f.values[x] != nil:
		f.reject(bn, "its input X (%s) is an initializer, not a convolution output", x)
	case !ok:
		f.reject(bn, "its input X (%s) is a graph input, not a convolution output", x)
	case f.byNode[p] != nil && f.byNode[p].conv:
		conv := f.byNode[p]
		f.reject(bn, "its input comes from %s, which is unpaired: %s", conv.name, f.reasons[conv])
	default:
		f.reject(bn, "its input X (%s) comes from a %s node, not a convolution", x, f.graph.Nodes[p].OpType)
	}
}

// describeNodes lists nodes by op type and name or index.
func (f *graphPairFinder) describeNodes(indices []int) string {
	parts := make([]string, 0, len(indices))
	for _, i := range indices {
		n := f.graph.Nodes[i]
		name := n.Name
		if l := f.byNode[i]; l != nil {
			name = l.name
		}
		if name == "" {
			name = fmt.Sprintf("node%d", i)
		}
		parts = append(parts, fmt.Sprintf("%s %s", n.OpType, name))
	}
	return listNames(parts, 5)
}

// result builds the Result in node order.
func (f *graphPairFinder) result() (*Result, error) {
	res := &Result{}
	tally := newSettingsTally(f.opts)
	bnNodes, convs, convsWithBias := 0, 0, 0
	for _, l := range f.layers {
		if !l.conv {
			bnNodes++
			continue
		}
		convs++
		if len(l.node.Inputs) > 2 && l.node.Inputs[2] != "" {
			convsWithBias++
		}
		bnLayer := f.pairedTo[l]
		if bnLayer == nil {
			continue
		}
		conv, notes, err := f.buildConv(l)
		if err != nil {
			return nil, err
		}
		bn, bnNotes, err := f.buildBatchNorm(bnLayer, tally)
		if err != nil {
			return nil, err
		}
		res.Pairs = append(res.Pairs, Pair{Conv: conv, BN: bn, Evidence: f.evidence[l], Notes: append(notes, bnNotes...)})
	}
	for _, l := range f.layers {
		if f.pairedTo[l] != nil {
			continue
		}
		kind := "batchnorm"
		if l.conv {
			kind = "conv"
		}
		res.Unpaired = append(res.Unpaired, Unpaired{Name: l.name, Kind: kind, Reason: f.reasons[l]})
	}

	switch {
	case bnNodes == 0 && convsWithBias > 0:
		res.Notes = append(res.Notes, fmt.Sprintf("no BatchNormalization nodes: this graph is already fused (%d of its %d Conv nodes have a bias)", convsWithBias, convs))
	case bnNodes == 0:
		res.Notes = append(res.Notes, "no BatchNormalization nodes in the graph")
	}
	res.Notes = append(res.Notes, tally.notes()...)
	if len(res.Pairs) > 0 {
		res.Notes = append(res.Notes, "momentum is given in PyTorch's convention, 1 − the ONNX attribute (ONNX updates running = momentum·running + (1 − momentum)·batch)")
	}
	return res, nil
}

// buildConv fills in a pair's Conv from the node's inputs and attributes.
func (f *graphPairFinder) buildConv(l *graphLayer) (Conv, []string, error) {
	n := l.node
	c := Conv{
		Name:           l.name,
		Weight:         f.values[n.Inputs[1]],
		Transposed:     n.OpType == "ConvTranspose",
		Groups:         int(attrInt(n, "group", 1)),
		GroupsSource:   SourceFile,
		GeometrySource: SourceFile,
	}
	if len(n.Inputs) > 2 && n.Inputs[2] != "" {
		c.Bias = f.values[n.Inputs[2]]
		if len(c.Bias.Shape) != 1 {
			return Conv{}, nil, fmt.Errorf("%s: convolution %s: bias %s has shape %v, want 1 dimension", f.label, c.Name, c.Bias.Name, c.Bias.Shape)
		}
	}
	if err := checkGroups(c); err != nil {
		return Conv{}, nil, fmt.Errorf("%s: %w", f.label, err)
	}

	spatial := len(c.Weight.Shape) - 2
	var err error
	if c.Stride, err = f.attrInts(n, l.name, "strides", spatial, 1); err != nil {
		return Conv{}, nil, err
	}
	if c.Dilation, err = f.attrInts(n, l.name, "dilations", spatial, 1); err != nil {
		return Conv{}, nil, err
	}
	var notes []string
	autoPad, _ := n.Attrs["auto_pad"].(string)
	switch autoPad {
	case "", "NOTSET":
		pads, err := f.attrInts(n, l.name, "pads", 2*spatial, 0)
		if err != nil {
			return Conv{}, nil, err
		}
		c.Padding = pads[:spatial]
		for i := range spatial {
			if pads[i] != pads[spatial+i] {
				c.Padding = nil
				notes = append(notes, fmt.Sprintf("padding is asymmetric (ONNX pads %v), which one value per side cannot express, so it is left unknown", pads))
				break
			}
		}
	case "VALID":
		c.Padding = make([]int, spatial)
	default:
		notes = append(notes, fmt.Sprintf("padding is auto_pad=%s, which depends on the input size, so it is left unknown", autoPad))
	}
	return c, notes, nil
}

// buildBatchNorm fills in a pair's BatchNorm from the node's inputs and
// attributes.
func (f *graphPairFinder) buildBatchNorm(l *graphLayer, tally *settingsTally) (BatchNorm, []string, error) {
	n := l.node
	bn := BatchNorm{
		Name:           l.name,
		Weight:         f.values[n.Inputs[1]],
		Bias:           f.values[n.Inputs[2]],
		RunningMean:    f.values[n.Inputs[3]],
		RunningVar:     f.values[n.Inputs[4]],
		Affine:         true,
		EpsSource:      SourceFile,
		MomentumSource: SourceFile,
	}
	c := bn.RunningMean.Shape[0]
	for _, t := range []*checkpoint.Tensor{bn.Weight, bn.Bias, bn.RunningVar} {
		if len(t.Shape) != 1 || t.Shape[0] != c {
			return BatchNorm{}, nil, fmt.Errorf("%s: BatchNormalization %s: tensor %s has shape %v, want [%d] like %s", f.label, l.name, t.Name, t.Shape, c, bn.RunningMean.Name)
		}
	}
	if strings.HasSuffix(n.Inputs[1], ".weight") {
		bn.NumBatchesTracked = f.values[strings.TrimSuffix(n.Inputs[1], ".weight")+".num_batches_tracked"]
	}

	bn.Eps = attrFloat(n, "epsilon", onnxDefaultEpsilon)
	if math.IsNaN(bn.Eps) || math.IsInf(bn.Eps, 0) || bn.Eps < 0 {
		return BatchNorm{}, nil, fmt.Errorf("%s: BatchNormalization %s: epsilon %g is not a finite non-negative number; pass --no-pair %s to skip it", f.label, l.name, bn.Eps, l.name)
	}
	if f.opts.EpsSet && f.opts.Eps != bn.Eps {
		tally.epsIgnored[fmt.Sprintf("%g", bn.Eps)]++
	}
	tally.eps[fmt.Sprintf("%g from %s", bn.Eps, bn.EpsSource)]++

	mom := torchMomentum(attrFloat(n, "momentum", onnxDefaultMomentum))
	bn.Momentum = &mom
	if f.opts.MomentumSet && formatMomentum(f.opts.Momentum) != formatMomentum(bn.Momentum) {
		tally.momIgnored[formatMomentum(bn.Momentum)]++
	}
	tally.momentum[fmt.Sprintf("%s from %s", formatMomentum(bn.Momentum), bn.MomentumSource)]++

	var notes []string
	if attrInt(n, "training_mode", 0) != 0 || len(n.Outputs) > 1 {
		notes = append(notes, fmt.Sprintf("BatchNormalization %s is exported in training mode (it outputs batch statistics), so ω uses its running-statistics inputs", l.name))
	}
	return bn, notes, nil
}

// torchMomentum converts an ONNX momentum, a float32 widened to float64, to
// PyTorch's convention 1 − m. The subtraction is done in exact decimal
// arithmetic on the shortest decimal that rounds to the same float32, so
// that an exported 0.9 gives 0.1 and not 0.10000000238.
func torchMomentum(m float64) float64 {
	s := strconv.FormatFloat(float64(float32(m)), 'g', -1, 32)
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 1 - m
	}
	r.Sub(big.NewRat(1, 1), r)
	v, _ := r.Float64()
	return v
}

// attrInt returns an int attribute, or def when the node has none.
func attrInt(n *checkpoint.Node, name string, def int64) int64 {
	if v, ok := n.Attrs[name].(int64); ok {
		return v
	}
	return def
}

// attrFloat returns a float attribute, or def when the node has none.
func attrFloat(n *checkpoint.Node, name string, def float64) float64 {
	if v, ok := n.Attrs[name].(float64); ok {
		return v
	}
	return def
}

// attrInts returns an ints attribute of want values, each def when the
// node has none.
func (f *graphPairFinder) attrInts(n *checkpoint.Node, layer, name string, want int, def int) ([]int, error) {
	out := make([]int, want)
	v, ok := n.Attrs[name]
	if !ok {
		for i := range out {
			out[i] = def
		}
		return out, nil
	}
	ints, ok := v.([]int64)
	if !ok || len(ints) != want {
		return nil, fmt.Errorf("%s: convolution %s: attribute %s is %v, want %d ints", f.label, layer, name, v, want)
	}
	for i, x := range ints {
		if x < 0 || x > math.MaxInt32 {
			return nil, fmt.Errorf("%s: convolution %s: attribute %s is %v, want non-negative ints", f.label, layer, name, v)
		}
		out[i] = int(x)
	}
	return out, nil
}
