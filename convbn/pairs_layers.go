package convbn

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// layerKind is the role of a module with tensors in pair discovery.
type layerKind int

const (
	kindOther     layerKind = iota
	kindConv                // 3- to 5-D weight, or a Conv/ConvTranspose class
	kindBatchNorm           // running_mean and running_var present
	kindNoStats             // a BatchNorm class or spec without running statistics
	kindLinear              // 2-D weight, or a Linear class
)

// describe returns the phrase used in reasons, such as "a Linear layer".
func (k layerKind) describe() string {
	switch k {
	case kindConv:
		return "a convolution"
	case kindBatchNorm:
		return "a BatchNorm"
	case kindNoStats:
		return "a BatchNorm without running statistics"
	case kindLinear:
		return "a Linear layer (2-D weight)"
	}
	return "not a convolution or BatchNorm"
}

// pairLayer is one module that owns tensors directly, with what the file
// stores about it beyond the tensors.
type pairLayer struct {
	name  string   // module path, such as "layer1.0.conv1"
	path  []string // name split at dots; empty for the top level
	order int      // index of the layer's first tensor in Model.Tensors
	kind  layerKind

	params map[string]*checkpoint.Tensor // short name → tensor
	module *checkpoint.Module            // nil unless the file pickles a module tree
	spec   *checkpoint.LayerSpec         // nil unless the stored layer list names it
}

// parent returns the module path of the layer's parent ("" at the top).
func (l *pairLayer) parent() string {
	if len(l.path) <= 1 {
		return ""
	}
	return strings.Join(l.path[:len(l.path)-1], ".")
}

// child returns the last element of the layer's path.
func (l *pairLayer) child() string {
	if len(l.path) == 0 {
		return ""
	}
	return l.path[len(l.path)-1]
}

// pairNode is one module path in the tree implied by tensor names. Its
// children are ordered by the first tensor beneath each of them, which is
// registration order for state dicts written by PyTorch.
type pairNode struct {
	name     string
	children []*pairNode
	layer    *pairLayer // the module's own tensors; nil for a pure container
	parent   *pairNode
}

// layerIndex holds every layer of a model and the tree of their names.
type layerIndex struct {
	layers []*pairLayer // in file order
	byName map[string]*pairLayer
	nodes  map[string]*pairNode
	root   *pairNode
	prefix string // Model.StrippedPrefix, accepted in front of user-given names
}

// indexLayers groups the model's tensors into layers by module path.
func indexLayers(m *checkpoint.Model) *layerIndex {
	idx := &layerIndex{
		byName: map[string]*pairLayer{},
		nodes:  map[string]*pairNode{},
		root:   &pairNode{},
		prefix: m.StrippedPrefix,
	}
	idx.nodes[""] = idx.root
	for i, t := range m.Tensors {
		module, short := splitTensorName(t.Name)
		l := idx.byName[module]
		if l == nil {
			l = &pairLayer{name: module, order: i, params: map[string]*checkpoint.Tensor{}}
			if module != "" {
				l.path = strings.Split(module, ".")
			}
			idx.byName[module] = l
			idx.layers = append(idx.layers, l)
			idx.node(module).layer = l
		}
		l.params[short] = t
	}
	return idx
}

// splitTensorName splits "a.b.weight" into the module "a.b" and "weight".
func splitTensorName(name string) (module, short string) {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

// node returns the tree node for a module path, creating it and its
// ancestors on first use.
func (idx *layerIndex) node(name string) *pairNode {
	if n := idx.nodes[name]; n != nil {
		return n
	}
	parentName, _ := splitTensorName(name)
	parent := idx.node(parentName)
	n := &pairNode{name: name, parent: parent}
	parent.children = append(parent.children, n)
	idx.nodes[name] = n
	return n
}

// lookup finds a layer by a user-given name, with or without the stripped
// DataParallel prefix.
func (idx *layerIndex) lookup(name string) *pairLayer {
	if l := idx.byName[name]; l != nil {
		return l
	}
	if idx.prefix != "" && strings.HasPrefix(name, idx.prefix) {
		return idx.byName[strings.TrimPrefix(name, idx.prefix)]
	}
	return nil
}

// attachModules links each module of a pickled tree to the layer holding
// its tensors. The layer name comes from the tensors' full names, so it
// agrees with Model.Tensors even where the module path does not.
func (idx *layerIndex) attachModules(root *checkpoint.Module) (map[*checkpoint.Module]*pairLayer, error) {
	byModule := map[*checkpoint.Module]*pairLayer{}
	var walk func(mod *checkpoint.Module) error
	walk = func(mod *checkpoint.Module) error {
		for _, p := range mod.Params {
			if p.Full == "" {
				continue
			}
			name, short := splitTensorName(p.Full)
			l := idx.byName[name]
			if l == nil || l.params[short] == nil {
				return fmt.Errorf("module %q (%s) lists tensor %q, which the model's tensor list does not contain", mod.Name, mod.Class, p.Full)
			}
			l.module = mod
			byModule[mod] = l
			break
		}
		for _, c := range mod.Children {
			if c == nil {
				continue
			}
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	return byModule, walk(root)
}

// Class base names of the PyTorch modules that pairing recognizes. Other
// classes are judged by their tensors.
var (
	convClassRE   = regexp.MustCompile(`^(Lazy)?Conv(Transpose)?[123]d$`)
	bnClassRE     = regexp.MustCompile(`^((Lazy)?BatchNorm[123]d|SyncBatchNorm)$`)
	linearClassRE = regexp.MustCompile(`^(Lazy)?Linear$|Linear$`)
	// Norm layers that may keep running statistics but normalize with
	// per-sample statistics in training, so they are not BatchNorms.
	otherNormClassRE = regexp.MustCompile(`^(Lazy)?InstanceNorm[123]d$`)
)

// classBase returns the class name after the last dot.
func classBase(class string) string {
	return class[strings.LastIndexByte(class, '.')+1:]
}

// classify sets each layer's kind from its module class, its stored layer
// spec or, failing both, its tensor shapes, and checks the tensors a conv
// or BatchNorm needs.
func (idx *layerIndex) classify(file string) error {
	for _, l := range idx.layers {
		l.kind = l.kindByTensors()
		typ := ""
		switch {
		case l.module != nil:
			typ = classBase(l.module.Class)
		case l.spec != nil:
			typ = l.spec.Type
		}
		switch {
		case convClassRE.MatchString(typ):
			l.kind = kindConv
		case bnClassRE.MatchString(typ):
			l.kind = kindNoStats
			if l.params["running_mean"] != nil && l.params["running_var"] != nil {
				l.kind = kindBatchNorm
			}
			if l.spec != nil && l.spec.TrackRunningStats != nil && !*l.spec.TrackRunningStats {
				l.kind = kindNoStats
			}
		case otherNormClassRE.MatchString(typ):
			l.kind = kindOther
		case linearClassRE.MatchString(typ):
			l.kind = kindLinear
		}
		if err := l.checkTensors(); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
	return nil
}

// kindByTensors judges a layer by its tensors alone, as a state dict
// requires.
//
// NOTE: an InstanceNorm with track_running_stats=True stores the same
// tensors as a BatchNorm, so in a state dict without a module tree or
// layer list it is taken for a BatchNorm.
func (l *pairLayer) kindByTensors() layerKind {
	if l.params["running_mean"] != nil && l.params["running_var"] != nil {
		return kindBatchNorm
	}
	w := l.params["weight"]
	if w == nil {
		return kindOther
	}
	switch len(w.Shape) {
	case 3, 4, 5:
		return kindConv
	case 2:
		return kindLinear
	}
	return kindOther
}

// checkTensors verifies the shapes pairing relies on, so that a malformed
// file is reported instead of folded.
func (l *pairLayer) checkTensors() error {
	switch l.kind {
	case kindConv:
		w := l.params["weight"]
		if w == nil {
			return fmt.Errorf("convolution %q has no weight tensor; pass --no-pair %s to skip it", l.name, l.name)
		}
		if len(w.Shape) < 3 || len(w.Shape) > 5 {
			return fmt.Errorf("convolution weight %q has shape %v; a 1-D to 3-D convolution needs 3 to 5 dimensions", w.Name, w.Shape)
		}
		for _, d := range w.Shape {
			if d <= 0 {
				return fmt.Errorf("convolution weight %q has shape %v with an empty dimension", w.Name, w.Shape)
			}
		}
		if b := l.params["bias"]; b != nil && len(b.Shape) != 1 {
			return fmt.Errorf("convolution bias %q has shape %v, want 1 dimension", b.Name, b.Shape)
		}
	case kindBatchNorm:
		mean := l.params["running_mean"]
		if len(mean.Shape) != 1 || mean.Shape[0] <= 0 {
			return fmt.Errorf("BatchNorm running mean %q has shape %v, want [C] with C > 0", mean.Name, mean.Shape)
		}
		for _, short := range []string{"running_var", "weight", "bias"} {
			t := l.params[short]
			if t == nil {
				continue
			}
			if len(t.Shape) != 1 || t.Shape[0] != mean.Shape[0] {
				return fmt.Errorf("BatchNorm tensor %q has shape %v, want [%d] like %s", t.Name, t.Shape, mean.Shape[0], mean.Name)
			}
		}
	}
	return nil
}

// channels returns a BatchNorm layer's number of features.
func (l *pairLayer) channels() int {
	return l.params["running_mean"].Shape[0]
}

// siblingIndex returns the child's integer name (a Sequential or
// ModuleList index) and whether it is one.
func siblingIndex(child string) (int, bool) {
	if child == "" || (len(child) > 1 && child[0] == '0') {
		return 0, false
	}
	n, err := strconv.Atoi(child)
	return n, err == nil && n >= 0
}

// previousLayers maps each layer to the layer just before it in file order.
func (idx *layerIndex) previousLayers() map[*pairLayer]*pairLayer {
	sorted := append([]*pairLayer(nil), idx.layers...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].order < sorted[j].order })
	prev := map[*pairLayer]*pairLayer{}
	for i := 1; i < len(sorted); i++ {
		prev[sorted[i]] = sorted[i-1]
	}
	return prev
}
