package convbn

import (
	"fmt"
	"strings"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// channelMatch is the outcome of comparing a conv's weight shape with a
// BatchNorm's size.
type channelMatch struct {
	transposed bool
	// groups is the group count the shapes imply for a transposed conv
	// recognized by its shape alone, 0 when they imply none.
	groups int
	// note explains a transposition inferred from the weight shape.
	note string
	// mismatch, when non-empty, says why the two cannot form a pair.
	mismatch string
	// ambiguous, when non-empty, says why only the user can confirm the
	// pair: the sizes agree only for a grouped transposed conv.
	ambiguous string
}

// matchChannels checks that the BatchNorm's size equals the conv's output
// channels, using the file's transposed flag and groups where it stores
// them and the weight shape otherwise.
func (f *pairFinder) matchChannels(conv, bn *pairLayer) channelMatch {
	w := conv.params["weight"]
	c := bn.channels()

	if known, ok := conv.storedTransposed(); ok {
		out := w.Shape[0]
		if known {
			g, _ := conv.storedGroups()
			out = w.Shape[1] * g
		}
		if out != c {
			return channelMatch{transposed: known, mismatch: fmt.Sprintf("channel mismatch: %s has %d output channels, BatchNorm %s has %d", conv.name, out, bn.name, c)}
		}
		return channelMatch{transposed: known}
	}

	switch {
	case w.Shape[0] == c && w.Shape[1] == c:
		f.bothDims = append(f.bothDims, conv.name)
		return channelMatch{}
	case w.Shape[0] == c:
		return channelMatch{}
	case w.Shape[1] == c:
		return channelMatch{transposed: true, groups: 1, note: fmt.Sprintf(
			"transposed conv inferred from the weight shape %v: BatchNorm %s has %d channels, which matches dimension 1, not dimension 0", w.Shape, bn.name, c)}
	}

	// A transposed conv with G groups stores [C_in, C_out/G, k…], so its
	// BatchNorm has G times weight dimension 1 channels. A state dict does
	// not store G, so such a pair cannot be told from an unrelated module.
	if g := c / w.Shape[1]; c%w.Shape[1] == 0 && g > 1 && w.Shape[0]%g == 0 {
		return channelMatch{transposed: true, groups: g,
			note: fmt.Sprintf("transposed conv with %d groups inferred from the weight shape %v and BatchNorm %s's %d channels", g, w.Shape, bn.name, c),
			ambiguous: fmt.Sprintf(
				"BatchNorm %s has %d channels, which matches neither dimension of %s's weight %v; a transposed conv with %d groups would produce %d channels, but the file does not store groups; pass --pair %s=%s to pair them",
				bn.name, c, conv.name, w.Shape, g, c, conv.name, bn.name)}
	}
	return channelMatch{mismatch: fmt.Sprintf("channel mismatch: BatchNorm %s has %d channels, but %s's weight %v has %d in dimension 0 and %d in dimension 1", bn.name, c, conv.name, w.Shape, w.Shape[0], w.Shape[1])}
}

// storedTransposed returns whether the file marks the conv as transposed,
// and whether the file stores that at all.
func (l *pairLayer) storedTransposed() (transposed, ok bool) {
	if l.module != nil {
		if v, ok := l.module.Attrs["transposed"].(bool); ok {
			return v, true
		}
		base := classBase(l.module.Class)
		if convClassRE.MatchString(base) {
			return strings.Contains(base, "Transpose"), true
		}
	}
	if l.spec != nil && convClassRE.MatchString(l.spec.Type) {
		return strings.Contains(l.spec.Type, "Transpose"), true
	}
	return false, false
}

// storedGroups returns the groups the file stores for the conv, or 1 and
// false when it stores none.
func (l *pairLayer) storedGroups() (int, bool) {
	if l.module != nil {
		if g, ok := l.module.Attrs["groups"].(int64); ok && g >= 1 {
			return int(g), true
		}
	}
	if l.spec != nil && l.spec.Groups >= 1 {
		return l.spec.Groups, true
	}
	return 1, false
}

// tryPair pairs conv with the BatchNorm bn unless bn is taken or the
// channels disagree, in which case it records why for both.
func (f *pairFinder) tryPair(conv, bn *pairLayer, evidence Evidence) {
	if reason := f.blockedReason(bn); reason != "" {
		f.reject(conv, "%s", reason)
		return
	}
	match := f.matchChannels(conv, bn)
	if match.mismatch != "" {
		f.reject(conv, "%s", match.mismatch)
		f.reject(bn, "%s", match.mismatch)
		return
	}
	if match.ambiguous != "" {
		f.markAmbiguous(conv, []*pairLayer{bn}, match.ambiguous)
		f.markAmbiguous(bn, []*pairLayer{conv}, match.ambiguous)
		return
	}
	f.accept(newProtoPair(conv, bn, evidence, match))
}

// pairModuleTree pairs each conv module with the sibling module registered
// right after it, which must be a BatchNorm with running statistics.
// Parameter-free siblings (ReLU, Identity) count here, because the tree
// lists them.
func (f *pairFinder) pairModuleTree(root *checkpoint.Module, layers map[*checkpoint.Module]*pairLayer) {
	var walk func(parent *checkpoint.Module)
	walk = func(parent *checkpoint.Module) {
		for i, child := range parent.Children {
			if child == nil {
				continue
			}
			walk(child)
			conv := layers[child]
			if conv == nil || conv.kind != kindConv || f.decided(conv) {
				continue
			}
			if i+1 == len(parent.Children) || parent.Children[i+1] == nil {
				f.reject(conv, "last module in %s, and pairs never cross parents", describeParent(parent.Name))
				continue
			}
			next := parent.Children[i+1]
			bn := layers[next]
			if bn == nil || bn.kind != kindBatchNorm {
				what := "has no tensors"
				if bn != nil {
					what = "is " + bn.kind.describe()
				}
				f.reject(conv, "next module %s (%s) %s, not a BatchNorm with running statistics", moduleLabel(next, bn), classBase(next.Class), what)
				if bn != nil && bn.kind == kindNoStats {
					f.reject(bn, "no running statistics, so nothing can be folded")
				}
				continue
			}
			f.tryPair(conv, bn, EvidenceModule)
		}
		f.explainTreeBatchNorms(parent, layers)
	}
	walk(root)
}

// explainTreeBatchNorms gives each still-undecided BatchNorm child of
// parent the reason its previous sibling does not feed it.
func (f *pairFinder) explainTreeBatchNorms(parent *checkpoint.Module, layers map[*checkpoint.Module]*pairLayer) {
	for i, child := range parent.Children {
		bn := layers[child]
		if bn == nil || (bn.kind != kindBatchNorm && bn.kind != kindNoStats) || f.decided(bn) {
			continue
		}
		if bn.kind == kindNoStats {
			f.reject(bn, "no running statistics, so nothing can be folded")
			continue
		}
		if i == 0 || parent.Children[i-1] == nil {
			f.reject(bn, "first module in %s, so no conv registered before it in the same parent feeds it", describeParent(parent.Name))
			continue
		}
		prev := parent.Children[i-1]
		prevLayer := layers[prev]
		what := "is not a convolution"
		if prevLayer != nil {
			what = "is " + prevLayer.kind.describe()
		}
		f.reject(bn, "previous module %s (%s) %s", moduleLabel(prev, prevLayer), classBase(prev.Class), what)
	}
}

// moduleLabel names a module by its layer name when it has tensors.
func moduleLabel(m *checkpoint.Module, l *pairLayer) string {
	if l != nil {
		return l.name
	}
	return m.Name
}

// describeParent names a parent module for reasons.
func describeParent(name string) string {
	if name == "" {
		return "the top level"
	}
	return name
}

// pairLayerList pairs each conv entry of the stored layer list with the
// entry right after it, which must be a BatchNorm.
func (f *pairFinder) pairLayerList(specs []checkpoint.LayerSpec) {
	for i := range specs {
		conv := f.idx.lookup(specs[i].Name)
		if conv == nil || conv.kind != kindConv || conv.spec != &specs[i] || f.decided(conv) {
			continue
		}
		if i+1 == len(specs) {
			f.reject(conv, "last entry of the stored layer list")
			continue
		}
		next := specs[i+1]
		bn := f.idx.lookup(next.Name)
		if bn == nil || bn.kind != kindBatchNorm {
			what := "has no tensors"
			if bn != nil {
				what = "is " + bn.kind.describe()
			}
			f.reject(conv, "next layer in the stored layer list, %s (%s), %s, not a BatchNorm with running statistics", next.Name, next.Type, what)
			continue
		}
		f.tryPair(conv, bn, EvidenceMetadata)
	}
	for i := range specs {
		bn := f.idx.lookup(specs[i].Name)
		if bn == nil || bn.spec != &specs[i] || (bn.kind != kindBatchNorm && bn.kind != kindNoStats) || f.decided(bn) {
			continue
		}
		switch {
		case bn.kind == kindNoStats:
			f.reject(bn, "no running statistics, so nothing can be folded")
		case i == 0:
			f.reject(bn, "first entry of the stored layer list")
		default:
			f.reject(bn, "previous layer in the stored layer list, %s (%s), is not a convolution", specs[i-1].Name, specs[i-1].Type)
		}
	}
}

// pairStateDict pairs the convs that no stronger evidence decided, using
// tensor names: each conv with the next module that has tensors in the
// same parent.
func (f *pairFinder) pairStateDict() {
	for _, conv := range f.idx.layers {
		if conv.kind != kindConv || f.decided(conv) {
			continue
		}
		node := f.idx.nodes[conv.name]
		if node.parent == nil {
			f.reject(conv, "the model is this single conv, so no BatchNorm follows it")
			continue
		}
		next := nextSibling(node)
		if next == nil {
			f.reject(conv, "no module with tensors follows it in %s, and pairs never cross parents", describeParent(node.parent.name))
			continue
		}
		bn := next.layer
		if bn == nil || len(next.children) > 0 {
			f.reject(conv, "next module %s is a container, not a BatchNorm", next.name)
			continue
		}
		if bn.kind != kindBatchNorm {
			f.reject(conv, "next module %s is %s, not a BatchNorm with running statistics", bn.name, bn.kind.describe())
			continue
		}

		ci, convIndexed := siblingIndex(conv.child())
		bi, bnIndexed := siblingIndex(bn.child())
		if convIndexed && bnIndexed {
			if bi != ci+1 {
				gap := gapReason(conv, bn, ci, bi)
				f.reject(conv, "%s", gap)
				f.reject(bn, "%s", gap)
				continue
			}
			f.tryPair(conv, bn, EvidenceSeqIndex)
			continue
		}
		if other := f.rivalByName(node, conv, bn); other != nil {
			f.markAmbiguous(bn, []*pairLayer{conv, other}, fmt.Sprintf(
				"%s is registered right after %s, but its name matches the earlier %s; registration order and names disagree about which conv feeds it",
				bn.name, conv.name, other.name))
			f.markAmbiguous(conv, []*pairLayer{bn}, fmt.Sprintf("the next module %s is ambiguous", bn.name))
			continue
		}
		f.tryPair(conv, bn, EvidenceNameOrder)
	}
}

// gapReason describes the modules missing between Sequential indices ci
// and bi.
func gapReason(conv, bn *pairLayer, ci, bi int) string {
	parent := conv.parent()
	join := func(i int) string {
		if parent == "" {
			return fmt.Sprint(i)
		}
		return fmt.Sprintf("%s.%d", parent, i)
	}
	if bi < ci {
		return fmt.Sprintf("index order: %s comes after %s in the file but has a lower index", bn.name, conv.name)
	}
	between := join(ci+1) + " sits"
	if bi-ci > 2 {
		between = fmt.Sprintf("%s to %s sit", join(ci+1), join(bi-1))
	}
	return fmt.Sprintf("index gap: %s between %s and %s, so the BatchNorm does not take the conv's output directly", between, conv.name, bn.name)
}

// nextSibling returns the sibling registered right after n.
func nextSibling(n *pairNode) *pairNode {
	if n.parent == nil {
		return nil
	}
	siblings := n.parent.children
	for i, s := range siblings {
		if s == n && i+1 < len(siblings) {
			return siblings[i+1]
		}
	}
	return nil
}

// previousSibling returns the sibling registered right before n.
func previousSibling(n *pairNode) *pairNode {
	if n.parent == nil {
		return nil
	}
	siblings := n.parent.children
	for i, s := range siblings {
		if s == n && i > 0 {
			return siblings[i-1]
		}
	}
	return nil
}

// Name parts that give a module's type rather than its role, removed before
// comparing a conv's name with a BatchNorm's.
var typeWords = []string{"convtranspose", "deconv", "conv", "batchnorm", "batch_norm", "norm", "bn"}

// roleKey returns a module name without its type words: "conv2" and "bn2"
// both give "2", "conv" and "bn" give "".
func roleKey(child string) string {
	key := strings.ToLower(child)
	for _, w := range typeWords {
		key = strings.ReplaceAll(key, w, "")
	}
	return strings.Trim(key, "_")
}

// rivalByName returns an earlier conv sibling whose name matches bn's
// better than conv's does (bn1 after conv1, conv2), or nil. A conv
// registered after the BatchNorm is never a rival, since it cannot feed
// it.
func (f *pairFinder) rivalByName(node *pairNode, conv, bn *pairLayer) *pairLayer {
	key := roleKey(bn.child())
	if key == "" || roleKey(conv.child()) == key {
		return nil
	}
	for _, s := range node.parent.children {
		if s == node {
			break
		}
		l := s.layer
		if l == nil || l.kind != kindConv || roleKey(l.child()) != key {
			continue
		}
		if match := f.matchChannelsQuiet(l, bn); match.mismatch == "" && match.ambiguous == "" {
			return l
		}
	}
	return nil
}

// matchChannelsQuiet is matchChannels without recording notes.
func (f *pairFinder) matchChannelsQuiet(conv, bn *pairLayer) channelMatch {
	saved := f.bothDims
	match := f.matchChannels(conv, bn)
	f.bothDims = saved
	return match
}

// markAmbiguous records that the evidence cannot settle l's partner.
func (f *pairFinder) markAmbiguous(l *pairLayer, candidates []*pairLayer, reason string) {
	if f.decided(l) {
		return
	}
	names := make([]string, len(candidates))
	for i, c := range candidates {
		names[i] = c.name
	}
	f.ambiguous = append(f.ambiguous, Ambiguity{Name: l.name, Candidates: names, Reason: reason})
	f.ambigSet[l] = true
}

// explainBatchNorms gives every still-undecided BatchNorm the reason the
// module registered before it does not feed it.
func (f *pairFinder) explainBatchNorms() {
	for _, bn := range f.idx.layers {
		if (bn.kind != kindBatchNorm && bn.kind != kindNoStats) || f.decided(bn) {
			continue
		}
		if bn.kind == kindNoStats {
			f.reject(bn, "no running statistics, so nothing can be folded")
			continue
		}
		node := f.idx.nodes[bn.name]
		prev := previousSibling(node)
		switch {
		case node.parent == nil:
			f.reject(bn, "the model is this single BatchNorm, so no conv precedes it")
		case prev == nil:
			f.reject(bn, "first module with tensors in %s, so no conv registered before it in the same parent feeds it", describeParent(node.parent.name))
		case prev.layer == nil || len(prev.children) > 0:
			f.reject(bn, "previous module %s is a container, and pairs never cross parents", prev.name)
		default:
			f.reject(bn, "previous module %s is %s, not a convolution", prev.name, prev.layer.kind.describe())
		}
	}
}
