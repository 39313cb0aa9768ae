package convbn

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// sdTensor returns a zero tensor of the given shape.
func sdTensor(name string, shape ...int) *checkpoint.Tensor {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return checkpoint.NewTensor(name, shape, make([]float64, n))
}

// sdConv returns a conv's tensors; bias adds a bias of weight dimension 0.
func sdConv(name string, bias bool, shape ...int) []*checkpoint.Tensor {
	ts := []*checkpoint.Tensor{sdTensor(name+".weight", shape...)}
	if bias {
		ts = append(ts, sdTensor(name+".bias", shape[0]))
	}
	return ts
}

// sdBN returns an affine BatchNorm's tensors in PyTorch's state-dict order.
func sdBN(name string, c int) []*checkpoint.Tensor {
	return []*checkpoint.Tensor{
		sdTensor(name+".weight", c), sdTensor(name+".bias", c),
		sdTensor(name+".running_mean", c), sdTensor(name+".running_var", c),
		sdTensor(name + ".num_batches_tracked"),
	}
}

// sdLinear returns a Linear layer's tensors.
func sdLinear(name string, out, in int) []*checkpoint.Tensor {
	return []*checkpoint.Tensor{sdTensor(name+".weight", out, in), sdTensor(name+".bias", out)}
}

// sdModel builds a state-dict model from groups of tensors, in order.
func sdModel(groups ...[]*checkpoint.Tensor) *checkpoint.Model {
	m := &checkpoint.Model{}
	for _, g := range groups {
		m.Tensors = append(m.Tensors, g...)
	}
	return m
}

// pairMap returns the result's pairs as conv name → BatchNorm name.
func pairMap(r *Result) map[string]string {
	out := map[string]string{}
	for _, p := range r.Pairs {
		out[p.Conv.Name] = p.BN.Name
	}
	return out
}

// unpairedReason returns the reason a module is unpaired, or "".
func unpairedReason(r *Result, name string) string {
	for _, u := range r.Unpaired {
		if u.Name == name {
			return u.Reason
		}
	}
	return ""
}

func mustFindPairs(t *testing.T, m *checkpoint.Model, metadata map[string]string, opts Options) *Result {
	t.Helper()
	r, err := FindPairs(m, metadata, opts)
	if err != nil {
		t.Fatalf("FindPairs: %v", err)
	}
	return r
}

func checkPairSet(t *testing.T, r *Result, want map[string]string) {
	t.Helper()
	if got := pairMap(r); !reflect.DeepEqual(got, want) {
		t.Errorf("pairs mismatch:\n got  %v\n want %v", got, want)
	}
}

func checkUnpairedReason(t *testing.T, r *Result, name, substr string) {
	t.Helper()
	reason := unpairedReason(r, name)
	if !strings.Contains(reason, substr) {
		t.Errorf("unpaired reason for %s: got %q, want it to contain %q", name, reason, substr)
	}
}

func TestSequentialIndexGap(t *testing.T) {
	// Conv1d → ReLU → BatchNorm1d: indices 0 and 2, so ReLU sits between.
	m := sdModel(sdConv("net.0", true, 64, 1, 7), sdBN("net.2", 64), sdConv("net.3", true, 128, 64, 5), sdBN("net.4", 128))
	r := mustFindPairs(t, m, nil, Options{})

	checkPairSet(t, r, map[string]string{"net.3": "net.4"})
	checkUnpairedReason(t, r, "net.0", "index gap: net.1 sits between net.0 and net.2")
	checkUnpairedReason(t, r, "net.2", "index gap: net.1 sits between")
	if r.Pairs[0].Evidence != EvidenceSeqIndex {
		t.Errorf("evidence: got %s, want %s", r.Pairs[0].Evidence, EvidenceSeqIndex)
	}
}

func TestSequentialWideGap(t *testing.T) {
	m := sdModel(sdConv("f.3", false, 8, 3, 3, 3), sdBN("f.6", 8))
	r := mustFindPairs(t, m, nil, Options{})
	checkPairSet(t, r, map[string]string{})
	checkUnpairedReason(t, r, "f.3", "index gap: f.4 to f.5 sit between")
}

func TestResNetNames(t *testing.T) {
	m := sdModel(
		sdConv("conv1", false, 16, 3, 3, 3), sdBN("bn1", 16),
		sdConv("layer1.0.conv1", false, 32, 16, 3, 3), sdBN("layer1.0.bn1", 32),
		sdConv("layer1.0.conv2", false, 32, 32, 3, 3), sdBN("layer1.0.bn2", 32),
		sdConv("layer1.0.downsample.0", false, 32, 16, 1, 1), sdBN("layer1.0.downsample.1", 32),
		sdLinear("fc", 10, 32),
	)
	r := mustFindPairs(t, m, nil, Options{})
	checkPairSet(t, r, map[string]string{
		"conv1":                 "bn1",
		"layer1.0.conv1":        "layer1.0.bn1",
		"layer1.0.conv2":        "layer1.0.bn2",
		"layer1.0.downsample.0": "layer1.0.downsample.1",
	})

	wantOrder := []string{"conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.downsample.0"}
	for i, p := range r.Pairs {
		if p.Conv.Name != wantOrder[i] {
			t.Errorf("pair %d: got conv %s, want %s (network order)", i, p.Conv.Name, wantOrder[i])
		}
	}
	if r.Pairs[0].Evidence != EvidenceNameOrder {
		t.Errorf("conv1 evidence: got %s, want %s", r.Pairs[0].Evidence, EvidenceNameOrder)
	}
	if r.Pairs[3].Evidence != EvidenceSeqIndex {
		t.Errorf("downsample evidence: got %s, want %s", r.Pairs[3].Evidence, EvidenceSeqIndex)
	}
	if len(r.Unpaired) != 0 || len(r.Ambiguous) != 0 {
		t.Errorf("unpaired %v, ambiguous %v: want none", r.Unpaired, r.Ambiguous)
	}
}

func TestPreActivationBlock(t *testing.T) {
	// DenseNet layer: norm1 → relu → conv1 → norm2 → relu → conv2. Only
	// conv1 → norm2 folds; norm1 feeds conv1, not the reverse.
	m := sdModel(
		sdBN("block.layer1.norm1", 64), sdConv("block.layer1.conv1", false, 128, 64, 1, 1),
		sdBN("block.layer1.norm2", 128), sdConv("block.layer1.conv2", false, 32, 128, 3, 3),
		sdBN("block.layer2.norm1", 96), sdConv("block.layer2.conv1", false, 128, 96, 1, 1),
	)
	r := mustFindPairs(t, m, nil, Options{})
	checkPairSet(t, r, map[string]string{"block.layer1.conv1": "block.layer1.norm2"})
	checkUnpairedReason(t, r, "block.layer1.norm1", "first module with tensors in block.layer1")
	checkUnpairedReason(t, r, "block.layer1.conv2", "no module with tensors follows it in block.layer1")
	checkUnpairedReason(t, r, "block.layer2.norm1", "first module")
	checkUnpairedReason(t, r, "block.layer2.conv1", "no module with tensors follows it")
}

func TestNoPairAcrossParents(t *testing.T) {
	m := sdModel(sdConv("a.conv", false, 8, 3, 3, 3), sdBN("b.bn", 8))
	r := mustFindPairs(t, m, nil, Options{})
	checkPairSet(t, r, map[string]string{})
	checkUnpairedReason(t, r, "a.conv", "pairs never cross parents")
	checkUnpairedReason(t, r, "b.bn", "first module with tensors in b")
}

func TestLinearBeforeBatchNorm(t *testing.T) {
	m := sdModel(sdLinear("layers.0.0", 32, 50), sdBN("layers.0.1", 32))
	r := mustFindPairs(t, m, nil, Options{})
	checkPairSet(t, r, map[string]string{})
	checkUnpairedReason(t, r, "layers.0.1", "previous module layers.0.0 is a Linear layer (2-D weight)")
	if reason := unpairedReason(r, "layers.0.0"); reason != "" {
		t.Errorf("Linear layer listed as unpaired (%q); only convs and BatchNorms are listed", reason)
	}
}

func TestTransposedFromShape(t *testing.T) {
	m := sdModel(
		sdConv("gen.0.0", true, 64, 256, 3, 3), sdBN("gen.0.1", 256),
		sdConv("gen.1.0", true, 256, 128, 4, 4), sdBN("gen.1.1", 128),
		sdConv("gen.2.0", true, 128, 1, 4, 4),
	)
	r := mustFindPairs(t, m, nil, Options{})
	checkPairSet(t, r, map[string]string{"gen.0.0": "gen.0.1", "gen.1.0": "gen.1.1"})
	for _, p := range r.Pairs {
		if !p.Conv.Transposed {
			t.Errorf("%s: Transposed false, want true", p.Conv.Name)
		}
		if p.Conv.OutChannels() != p.BN.RunningMean.Shape[0] {
			t.Errorf("%s: OutChannels %d, want %d", p.Conv.Name, p.Conv.OutChannels(), p.BN.RunningMean.Shape[0])
		}
		if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "dimension 1") {
			t.Errorf("%s: notes %q, want one note on dimension 1", p.Conv.Name, p.Notes)
		}
		if p.Conv.Bias == nil {
			t.Errorf("%s: bias missing", p.Conv.Name)
		}
	}
	checkUnpairedReason(t, r, "gen.2.0", "no module with tensors follows it in gen.2")
}

func TestGroupedTransposedAmbiguous(t *testing.T) {
	// ConvTranspose2d(16, 8, 4, groups=2) stores [16, 4, 4, 4]: its BatchNorm
	// of 8 matches neither dimension, only dimension 1 times the groups.
	m := sdModel(sdConv("up.0", false, 16, 4, 4, 4), sdBN("up.1", 8))
	r := mustFindPairs(t, m, nil, Options{})
	checkPairSet(t, r, map[string]string{})
	if len(r.Ambiguous) != 2 {
		t.Fatalf("ambiguous: got %v, want up.0 and up.1", r.Ambiguous)
	}
	if a := r.Ambiguous[0]; a.Name != "up.0" || !strings.Contains(a.Reason, "2 groups") || !strings.Contains(a.Reason, "--pair up.0=up.1") {
		t.Errorf("ambiguity: got %+v, want up.0 naming 2 groups and --pair up.0=up.1", a)
	}

	r = mustFindPairs(t, m, nil, Options{Pairs: map[string]string{"up.0": "up.1"}})
	checkPairSet(t, r, map[string]string{"up.0": "up.1"})
	c := r.Pairs[0].Conv
	if !c.Transposed || c.Groups != 2 || c.GroupsSource != SourceInferred || c.OutChannels() != 8 {
		t.Errorf("conv: transposed %v, groups %d (%q), out %d; want true, 2 (inferred), 8", c.Transposed, c.Groups, c.GroupsSource, c.OutChannels())
	}
}

func TestSquareConvNote(t *testing.T) {
	m := sdModel(sdConv("c", false, 16, 16, 3, 3), sdBN("b", 16))
	r := mustFindPairs(t, m, nil, Options{})
	checkPairSet(t, r, map[string]string{"c": "b"})
	if r.Pairs[0].Conv.Transposed {
		t.Errorf("square conv taken as transposed")
	}
	found := false
	for _, n := range r.Notes {
		if strings.Contains(n, "ordinary convs: c") {
			found = true
		}
	}
	if !found {
		t.Errorf("notes %q: want one saying c was taken as an ordinary conv", r.Notes)
	}
}

func TestChannelMismatch(t *testing.T) {
	m := sdModel(sdConv("f.0", false, 64, 3, 3, 3), sdBN("f.1", 128))
	r := mustFindPairs(t, m, nil, Options{})
	checkPairSet(t, r, map[string]string{})
	checkUnpairedReason(t, r, "f.0", "channel mismatch: BatchNorm f.1 has 128 channels")
	checkUnpairedReason(t, r, "f.1", "channel mismatch")
}

func TestNormWithoutRunningStats(t *testing.T) {
	// GroupNorm and LayerNorm have a 1-D weight and no running statistics.
	m := sdModel(sdConv("f.0", false, 8, 3, 3, 3), []*checkpoint.Tensor{sdTensor("f.1.weight", 8), sdTensor("f.1.bias", 8)})
	r := mustFindPairs(t, m, nil, Options{})
	checkPairSet(t, r, map[string]string{})
	checkUnpairedReason(t, r, "f.0", "next module f.1 is not a convolution or BatchNorm")
}

func TestConvsRegisteredBeforeBatchNorms(t *testing.T) {
	// conv1, conv2, bn1, bn2: order pairs conv2 with bn1, names point to conv1.
	m := sdModel(sdConv("blk.conv1", false, 8, 8, 3, 3), sdConv("blk.conv2", false, 8, 8, 3, 3), sdBN("blk.bn1", 8), sdBN("blk.bn2", 8))
	r := mustFindPairs(t, m, nil, Options{})
	checkPairSet(t, r, map[string]string{})
	var names []string
	for _, a := range r.Ambiguous {
		names = append(names, a.Name)
	}
	sort.Strings(names)
	if want := []string{"blk.bn1", "blk.conv2"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("ambiguous: got %v, want %v", names, want)
	}
	for _, a := range r.Ambiguous {
		if a.Name == "blk.bn1" && !reflect.DeepEqual(a.Candidates, []string{"blk.conv2", "blk.conv1"}) {
			t.Errorf("bn1 candidates: got %v, want [blk.conv2 blk.conv1]", a.Candidates)
		}
	}
	checkUnpairedReason(t, r, "blk.conv1", "next module blk.conv2 is a convolution")
}

func TestGroupsInference(t *testing.T) {
	m := sdModel(
		sdConv("layer.0.conv1", false, 128, 64, 1, 1), sdBN("layer.0.bn1", 128),
		sdConv("layer.0.conv2", false, 128, 4, 3, 3), sdBN("layer.0.bn2", 128),
		// Depthwise conv under the next Sequential index.
		sdConv("layer.1.0", false, 128, 1, 3, 3), sdBN("layer.1.1", 128),
	)
	r := mustFindPairs(t, m, nil, Options{})
	want := map[string]struct {
		groups int
		source Source
	}{
		"layer.0.conv1": {1, ""},
		"layer.0.conv2": {32, SourceInferred},
		"layer.1.0":     {128, SourceInferred},
	}
	if len(r.Pairs) != 3 {
		t.Fatalf("got %d pairs, want 3", len(r.Pairs))
	}
	for _, p := range r.Pairs {
		w := want[p.Conv.Name]
		if p.Conv.Groups != w.groups || p.Conv.GroupsSource != w.source {
			t.Errorf("%s groups: got %d (%q), want %d (%q)", p.Conv.Name, p.Conv.Groups, p.Conv.GroupsSource, w.groups, w.source)
		}
	}
}

func TestEpsSources(t *testing.T) {
	m := sdModel(sdConv("c", false, 4, 3, 3, 3), sdBN("b", 4))

	r := mustFindPairs(t, m, nil, Options{})
	if got := r.Pairs[0].BN; got.Eps != 1e-5 || got.EpsSource != SourceDefault {
		t.Errorf("default eps: got %g from %s, want 1e-05 from default", got.Eps, got.EpsSource)
	}
	if got := r.Pairs[0].BN; *got.Momentum != 0.1 || got.MomentumSource != SourceDefault {
		t.Errorf("default momentum: got %g from %s, want 0.1 from default", *got.Momentum, got.MomentumSource)
	}

	r = mustFindPairs(t, m, nil, Options{Eps: 1e-3, EpsSet: true, MomentumSet: true})
	bnr := r.Pairs[0].BN
	if bnr.Eps != 1e-3 || bnr.EpsSource != SourceFlag {
		t.Errorf("flag eps: got %g from %s, want 0.001 from flag", bnr.Eps, bnr.EpsSource)
	}
	if bnr.Momentum != nil || bnr.MomentumSource != SourceFlag {
		t.Errorf("flag momentum: got %v from %s, want nil (cumulative) from flag", bnr.Momentum, bnr.MomentumSource)
	}
	if !bnr.Affine {
		t.Errorf("BatchNorm with weight and bias: Affine false")
	}
}

// moduleTree builds a pickled-module model: a Sequential whose children
// are given as (class, attrs, tensors) in order.
type treeChild struct {
	class   string
	attrs   map[string]any
	tensors []*checkpoint.Tensor
}

func moduleTree(parent string, children ...treeChild) *checkpoint.Model {
	root := &checkpoint.Module{Name: "", Class: "torch.nn.modules.container.Sequential"}
	seq := &checkpoint.Module{Name: parent, Class: "torch.nn.modules.container.Sequential"}
	root.Children = []*checkpoint.Module{seq}
	m := &checkpoint.Model{Root: root}
	for i, c := range children {
		name := parent + "." + string(rune('0'+i))
		mod := &checkpoint.Module{Name: name, Class: c.class, Attrs: c.attrs}
		for _, t := range c.tensors {
			t.Name = name + "." + t.Name
			_, short := splitTensorName(t.Name)
			mod.Params = append(mod.Params, checkpoint.Param{Short: short, Full: t.Name})
			m.Tensors = append(m.Tensors, t)
		}
		seq.Children = append(seq.Children, mod)
	}
	return m
}

func convModule(out, in, k int, groups int64) treeChild {
	return treeChild{
		class: "torch.nn.modules.conv.Conv2d",
		attrs: map[string]any{
			"groups": groups, "transposed": false,
			"stride": []any{int64(2), int64(2)}, "padding": []any{int64(1), int64(1)}, "dilation": []any{int64(1), int64(1)},
		},
		tensors: []*checkpoint.Tensor{sdTensor("weight", out, in, k, k)},
	}
}

func bnModule(c int, eps float64, momentum any) treeChild {
	return treeChild{
		class:   "torch.nn.modules.batchnorm.BatchNorm2d",
		attrs:   map[string]any{"eps": eps, "momentum": momentum, "affine": true, "track_running_stats": true},
		tensors: sdBN("", c)[:4],
	}
}

func TestModuleTree(t *testing.T) {
	relu := treeChild{class: "torch.nn.modules.activation.ReLU"}
	m := moduleTree("f",
		convModule(8, 8, 3, 8), bnModule(8, 1e-3, 0.03), // f.0 → f.1
		convModule(8, 8, 1, 1), relu, bnModule(8, 1e-3, nil), // f.2, ReLU, f.4
	)
	fixDots(m)

	r := mustFindPairs(t, m, nil, Options{Eps: 1e-5, EpsSet: true})
	checkPairSet(t, r, map[string]string{"f.0": "f.1"})
	checkUnpairedReason(t, r, "f.2", "next module f.3 (ReLU) has no tensors")
	checkUnpairedReason(t, r, "f.4", "previous module f.3 (ReLU)")

	p := r.Pairs[0]
	if p.Evidence != EvidenceModule {
		t.Errorf("evidence: got %s, want %s", p.Evidence, EvidenceModule)
	}
	if p.Conv.Groups != 8 || p.Conv.GroupsSource != SourceFile {
		t.Errorf("groups: got %d (%q), want 8 (file)", p.Conv.Groups, p.Conv.GroupsSource)
	}
	if !reflect.DeepEqual(p.Conv.Stride, []int{2, 2}) || !reflect.DeepEqual(p.Conv.Padding, []int{1, 1}) || p.Conv.GeometrySource != SourceFile {
		t.Errorf("geometry: stride %v padding %v (%q), want [2 2] [1 1] (file)", p.Conv.Stride, p.Conv.Padding, p.Conv.GeometrySource)
	}
	if p.BN.Eps != 1e-3 || p.BN.EpsSource != SourceFile {
		t.Errorf("eps: got %g from %s, want 0.001 from file", p.BN.Eps, p.BN.EpsSource)
	}
	if p.BN.Momentum == nil || *p.BN.Momentum != 0.03 || p.BN.MomentumSource != SourceFile {
		t.Errorf("momentum: got %v from %s, want 0.03 from file", p.BN.Momentum, p.BN.MomentumSource)
	}
	found := false
	for _, n := range r.Notes {
		if strings.Contains(n, "--eps 1e-05 ignored for 1 BatchNorms because the file stores eps 0.001") {
			found = true
		}
	}
	if !found {
		t.Errorf("notes %q: want one saying --eps was ignored", r.Notes)
	}
}

func TestModuleTreeTransposedClass(t *testing.T) {
	convT := treeChild{
		class:   "torch.nn.modules.conv.ConvTranspose2d",
		attrs:   map[string]any{"groups": int64(2), "transposed": true},
		tensors: []*checkpoint.Tensor{sdTensor("weight", 16, 8, 4, 4)},
	}
	m := moduleTree("g", convT, bnModule(16, 1e-5, 0.1))
	fixDots(m)
	r := mustFindPairs(t, m, nil, Options{})
	checkPairSet(t, r, map[string]string{"g.0": "g.1"})
	if c := r.Pairs[0].Conv; !c.Transposed || c.OutChannels() != 16 || len(r.Pairs[0].Notes) != 0 {
		t.Errorf("conv: transposed %v, out %d, notes %q; want true, 16, none", c.Transposed, c.OutChannels(), r.Pairs[0].Notes)
	}
}

// fixDots removes the empty name element that sdBN("") leaves in names.
func fixDots(m *checkpoint.Model) {
	for _, ts := range m.Tensors {
		ts.Name = strings.Replace(ts.Name, "..", ".", 1)
	}
	var walk func(mod *checkpoint.Module)
	walk = func(mod *checkpoint.Module) {
		for i := range mod.Params {
			mod.Params[i].Full = strings.Replace(mod.Params[i].Full, "..", ".", 1)
		}
		for _, c := range mod.Children {
			walk(c)
		}
	}
	walk(m.Root)
}

func TestLayerListMetadata(t *testing.T) {
	m := sdModel(sdConv("a", false, 8, 3, 3, 3), sdBN("b", 8), sdConv("c", false, 8, 8, 3, 3), sdBN("d", 8))
	mom := 0.01
	specs := []checkpoint.LayerSpec{
		{Name: "a", Type: "Conv2d", Stride: []int{1, 1}, Padding: []int{1, 1}, Dilation: []int{1, 1}, Groups: 1},
		{Name: "b", Type: "BatchNorm2d", Eps: 1e-3, Momentum: &mom},
		{Name: "c", Type: "Conv2d", Groups: 8},
		{Name: "relu", Type: "ReLU"},
		{Name: "d", Type: "BatchNorm2d", Eps: 1e-3},
	}
	raw, err := json.Marshal(specs)
	if err != nil {
		t.Fatal(err)
	}
	r := mustFindPairs(t, m, map[string]string{checkpoint.MetadataLayersKey: string(raw)}, Options{})
	checkPairSet(t, r, map[string]string{"a": "b"})
	checkUnpairedReason(t, r, "c", "next layer in the stored layer list, relu (ReLU)")
	checkUnpairedReason(t, r, "d", "previous layer in the stored layer list, relu (ReLU), is not a convolution")

	p := r.Pairs[0]
	if p.Evidence != EvidenceMetadata || p.BN.Eps != 1e-3 || p.BN.EpsSource != SourceFile || *p.BN.Momentum != 0.01 {
		t.Errorf("pair a→b: evidence %s, eps %g from %s, momentum %v; want %s, 0.001 from file, 0.01",
			p.Evidence, p.BN.Eps, p.BN.EpsSource, *p.BN.Momentum, EvidenceMetadata)
	}
	if p.Conv.GroupsSource != SourceFile || !reflect.DeepEqual(p.Conv.Padding, []int{1, 1}) {
		t.Errorf("conv a: groups source %q padding %v, want file and [1 1]", p.Conv.GroupsSource, p.Conv.Padding)
	}
}

func TestOverrides(t *testing.T) {
	m := sdModel(sdConv("net.0", false, 8, 3, 3, 3), sdBN("net.2", 8), sdConv("net.3", false, 8, 8, 3, 3), sdBN("net.4", 8))
	m.StrippedPrefix = "module."

	r := mustFindPairs(t, m, nil, Options{Pairs: map[string]string{"module.net.0": "net.2"}, NoPair: []string{"net.4"}})
	checkPairSet(t, r, map[string]string{"net.0": "net.2"})
	if r.Pairs[0].Evidence != EvidenceOverride {
		t.Errorf("evidence: got %s, want %s", r.Pairs[0].Evidence, EvidenceOverride)
	}
	checkUnpairedReason(t, r, "net.4", "excluded by --no-pair")
	checkUnpairedReason(t, r, "net.3", "next module net.4 is excluded by --no-pair")
}

func TestOverrideErrors(t *testing.T) {
	m := sdModel(sdConv("f.0", false, 8, 3, 3, 3), sdBN("f.1", 8), sdLinear("fc", 2, 8), sdBN("f.3", 16))
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"missing conv", Options{Pairs: map[string]string{"f.9": "f.1"}}, `no module named "f.9"`},
		{"missing bn", Options{Pairs: map[string]string{"f.0": "nope"}}, `no module named "nope"`},
		{"linear as conv", Options{Pairs: map[string]string{"fc": "f.1"}}, "fc is a Linear layer (2-D weight), not a convolution"},
		{"conv as bn", Options{Pairs: map[string]string{"f.0": "f.0"}}, "not a BatchNorm with running statistics"},
		{"size mismatch", Options{Pairs: map[string]string{"f.0": "f.3"}}, "channel mismatch"},
		{"missing no-pair", Options{NoPair: []string{"f.7"}}, `--no-pair f.7: no module named "f.7"`},
		{"no-pair linear", Options{NoPair: []string{"fc"}}, "not a convolution or BatchNorm"},
		{"both", Options{Pairs: map[string]string{"f.0": "f.1"}, NoPair: []string{"f.1"}}, "also given to --no-pair"},
	}
	for _, tc := range cases {
		_, err := FindPairs(m, nil, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestMalformedInput(t *testing.T) {
	bad := sdBN("f.1", 8)
	bad[3] = sdTensor("f.1.running_var", 9)
	cases := []struct {
		name     string
		model    *checkpoint.Model
		metadata map[string]string
		want     string
	}{
		{"running_var size", sdModel(sdConv("f.0", false, 8, 3, 3, 3), bad), nil, `"f.1.running_var" has shape [9], want [8]`},
		{"layer list JSON", sdModel(sdConv("f.0", false, 8, 3, 3, 3)), map[string]string{checkpoint.MetadataLayersKey: "[{"}, "invalid layer list"},
		{"layer list name", sdModel(sdConv("f.0", false, 8, 3, 3, 3)), map[string]string{checkpoint.MetadataLayersKey: `[{"name":"x","type":"Conv2d"}]`}, `"x" (Conv2d) has no tensors`},
		{"empty dimension", sdModel(sdConv("f.0", false, 0, 3, 3, 3), sdBN("f.1", 8)), nil, "empty dimension"},
	}
	for _, tc := range cases {
		_, err := FindPairs(tc.model, tc.metadata, Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := FindPairs(nil, nil, Options{}); err == nil {
		t.Errorf("nil model: got no error")
	}
}

func TestLayerListWrittenFile(t *testing.T) {
	// A file from convbn-diag's own writer, read back by checkpoint.Open:
	// its stored layer list must decide the pairs, including a ReLU that
	// breaks the second conv's pair despite adjacent names.
	shapes := []struct {
		name  string
		shape []int
	}{
		{"stem.weight", []int{8, 3, 3, 3}},
		{"stem_bn.weight", []int{8}}, {"stem_bn.bias", []int{8}},
		{"stem_bn.running_mean", []int{8}}, {"stem_bn.running_var", []int{8}},
		{"body.weight", []int{8, 8, 3, 3}},
		{"body_bn.weight", []int{8}}, {"body_bn.bias", []int{8}},
		{"body_bn.running_mean", []int{8}}, {"body_bn.running_var", []int{8}},
	}
	var sources []checkpoint.TensorSource
	for _, s := range shapes {
		n := 1
		for _, d := range s.shape {
			n *= d
		}
		sources = append(sources, checkpoint.TensorSource{
			Name: s.name, DType: checkpoint.Float32, Shape: s.shape,
			WriteData: checkpoint.Float64Data(checkpoint.Float32, make([]float64, n)),
		})
	}
	mom := 0.05
	layers := []checkpoint.LayerSpec{
		{Name: "stem", Type: "Conv2d", Stride: []int{2, 2}, Padding: []int{1, 1}, Dilation: []int{1, 1}, Groups: 1},
		{Name: "stem_bn", Type: "BatchNorm2d", Eps: 1e-3, Momentum: &mom},
		{Name: "body", Type: "Conv2d", Groups: 1},
		{Name: "act", Type: "ReLU"},
		{Name: "body_bn", Type: "BatchNorm2d", Eps: 1e-3, Momentum: &mom},
	}
	path := t.TempDir() + "/layers.pth"
	if err := checkpoint.WriteTorchFile(path, sources, &checkpoint.TorchWriteOptions{Layers: layers}); err != nil {
		t.Fatalf("WriteTorchFile: %v", err)
	}
	f, err := checkpoint.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer f.Close()
	if len(f.Models) != 1 {
		t.Fatalf("got %d models, want 1", len(f.Models))
	}

	r := mustFindPairs(t, f.Models[0], f.Metadata, Options{Eps: 1e-5, EpsSet: true})
	checkPairSet(t, r, map[string]string{"stem": "stem_bn"})
	checkUnpairedReason(t, r, "body", "next layer in the stored layer list, act (ReLU)")
	p := r.Pairs[0]
	if p.Evidence != EvidenceMetadata {
		t.Errorf("evidence: got %s, want %s", p.Evidence, EvidenceMetadata)
	}
	if p.BN.Eps != 1e-3 || p.BN.EpsSource != SourceFile {
		t.Errorf("eps: got %g from %s, want 0.001 from file", p.BN.Eps, p.BN.EpsSource)
	}
	if p.BN.Momentum == nil || *p.BN.Momentum != 0.05 {
		t.Errorf("momentum: got %v, want 0.05", p.BN.Momentum)
	}
	if !reflect.DeepEqual(p.Conv.Stride, []int{2, 2}) || p.Conv.GeometrySource != SourceFile {
		t.Errorf("stride: got %v (%q), want [2 2] from file", p.Conv.Stride, p.Conv.GeometrySource)
	}
}

func TestModuleTreeNonFoldable(t *testing.T) {
	identity := treeChild{class: "torch.nn.modules.linear.Identity"}
	noStats := treeChild{
		class:   "torch.nn.modules.batchnorm.BatchNorm2d",
		attrs:   map[string]any{"eps": 1e-5, "momentum": 0.1, "affine": true, "track_running_stats": false},
		tensors: sdBN("", 8)[:2],
	}
	instance := treeChild{
		class:   "torch.nn.modules.instancenorm.InstanceNorm2d",
		attrs:   map[string]any{"eps": 1e-5, "affine": false, "track_running_stats": true},
		tensors: sdBN("", 8)[2:4],
	}
	m := moduleTree("s",
		convModule(8, 8, 3, 1), identity, bnModule(8, 1e-5, 0.1), // s.0, Identity, s.2
		convModule(8, 8, 3, 1), noStats, // s.3 → BatchNorm without running statistics
		convModule(8, 8, 3, 1), instance, // s.5 → InstanceNorm with running statistics
	)
	fixDots(m)
	r := mustFindPairs(t, m, nil, Options{})
	checkPairSet(t, r, map[string]string{})
	checkUnpairedReason(t, r, "s.0", "next module s.1 (Identity) has no tensors")
	checkUnpairedReason(t, r, "s.2", "previous module s.1 (Identity)")
	checkUnpairedReason(t, r, "s.3", "is a BatchNorm without running statistics")
	checkUnpairedReason(t, r, "s.4", "no running statistics")
	checkUnpairedReason(t, r, "s.5", "next module s.6 (InstanceNorm2d) is not a convolution or BatchNorm")
}

func TestSingleModuleStateDict(t *testing.T) {
	// nn.Conv2d(3, 8, 3).state_dict() has top-level keys "weight", "bias".
	single := sdModel([]*checkpoint.Tensor{sdTensor("weight", 8, 3, 3, 3), sdTensor("bias", 8)})
	r := mustFindPairs(t, single, nil, Options{})
	checkPairSet(t, r, map[string]string{})
	checkUnpairedReason(t, r, "", "the model is this single conv")

	r = mustFindPairs(t, sdModel(sdBN("", 8)), nil, Options{})
	checkUnpairedReason(t, r, "", "the model is this single BatchNorm")
}
