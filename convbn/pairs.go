package convbn

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

// FindPairs finds the foldable Conv→BatchNorm pairs of one model.
//
// For an ONNX model (m.Graph set), pairs follow the graph's edges alone,
// after opts.Pairs and opts.NoPair; see findGraphPairs. Otherwise evidence
// is used strongest first, and a module decided by stronger evidence is not
// reconsidered by weaker evidence:
//
//  1. opts.Pairs and opts.NoPair (--pair, --no-pair);
//  2. the module tree of a pickled nn.Module (m.Root), where class names
//     identify convs and BatchNorms and a conv pairs with the sibling module
//     registered right after it;
//  3. the layer list that convbn-diag's writer stores in metadata under
//     checkpoint.MetadataLayersKey, where a conv pairs with the entry right
//     after it;
//  4. the tensor names of a state dict: a conv pairs with the next module
//     that has tensors in the same parent when that module is a BatchNorm of
//     matching size. For integer (Sequential) names, the BatchNorm's index
//     must also be the conv's plus one. A gap in the indices is a
//     parameter-free module such as ReLU, so the BatchNorm consumes
//     something else.
//
// A BatchNorm is never paired with a conv registered after it, because in
// pre-activation and DenseNet-style blocks that BatchNorm feeds the conv,
// and a pair never crosses parents. Cases the evidence cannot settle are
// returned in Result.Ambiguous. FindPairs reads tensor shapes only, never
// elements. It returns an error for a malformed file and for an override
// that names a module the model lacks or one of the wrong kind.
func FindPairs(m *checkpoint.Model, metadata map[string]string, opts Options) (*Result, error) {
	if m == nil {
		return nil, errors.New("find pairs: no model")
	}
	label := "model"
	if m.Key != "" {
		label = fmt.Sprintf("model %q", m.Key)
	}
	if m.Graph != nil {
		// An ONNX graph states which node consumes which output, which
		// settles every pair, so the weaker rules below never run.
		return findGraphPairs(m, opts, label)
	}

	idx := indexLayers(m)
	var moduleLayers map[*checkpoint.Module]*pairLayer
	if m.Root != nil {
		var err error
		if moduleLayers, err = idx.attachModules(m.Root); err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
	}
	specs, err := parseLayerSpecs(metadata)
	if err != nil {
		return nil, err
	}
	if err := idx.attachSpecs(specs); err != nil {
		return nil, err
	}
	if err := idx.classify(label); err != nil {
		return nil, err
	}

	f := newPairFinder(idx, opts)
	if err := f.applyOverrides(); err != nil {
		return nil, err
	}
	if m.Root != nil {
		f.pairModuleTree(m.Root, moduleLayers)
	}
	if len(specs) > 0 {
		f.pairLayerList(specs)
	}
	f.pairStateDict()
	f.explainBatchNorms()
	return f.result()
}

// parseLayerSpecs decodes the stored layer list, or returns nil when the
// metadata has none.
func parseLayerSpecs(metadata map[string]string) ([]checkpoint.LayerSpec, error) {
	raw, ok := metadata[checkpoint.MetadataLayersKey]
	if !ok {
		return nil, nil
	}
	var specs []checkpoint.LayerSpec
	if err := json.Unmarshal([]byte(raw), &specs); err != nil {
		return nil, fmt.Errorf("metadata %s: invalid layer list: %w; remove the key to pair by tensor names", checkpoint.MetadataLayersKey, err)
	}
	return specs, nil
}

// attachSpecs links each layer-list entry that names tensors to its layer.
func (idx *layerIndex) attachSpecs(specs []checkpoint.LayerSpec) error {
	for i := range specs {
		s := &specs[i]
		l := idx.lookup(s.Name)
		if l == nil {
			if convClassRE.MatchString(s.Type) || bnClassRE.MatchString(s.Type) {
				return fmt.Errorf("metadata %s: layer %d %q (%s) has no tensors in the checkpoint", checkpoint.MetadataLayersKey, i, s.Name, s.Type)
			}
			continue
		}
		if l.spec != nil {
			return fmt.Errorf("metadata %s: layer %q is listed twice", checkpoint.MetadataLayersKey, s.Name)
		}
		l.spec = s
	}
	return nil
}

// protoPair is a decided pair before its Conv and BatchNorm are built.
type protoPair struct {
	conv, bn   *pairLayer
	evidence   Evidence
	transposed bool
	groups     int // implied by the shapes of a transposed conv; 0 if not
	notes      []string
}

func newProtoPair(conv, bn *pairLayer, evidence Evidence, match channelMatch) protoPair {
	p := protoPair{conv: conv, bn: bn, evidence: evidence, transposed: match.transposed}
	if match.groups > 1 {
		p.groups = match.groups
	}
	if match.note != "" {
		p.notes = append(p.notes, match.note)
	}
	return p
}

// pairFinder accumulates decisions. A layer is decided once it is paired,
// unpaired with a reason, or ambiguous; weaker evidence skips it.
type pairFinder struct {
	idx  *layerIndex
	opts Options

	pairs     []protoPair
	pairedTo  map[*pairLayer]*pairLayer // both directions
	reasons   map[*pairLayer]string
	excluded  map[*pairLayer]bool
	ambiguous []Ambiguity
	ambigSet  map[*pairLayer]bool

	// bothDims lists convs whose weight dimensions 0 and 1 both equal their
	// BatchNorm's size and that were taken as ordinary convs.
	bothDims []string
}

func newPairFinder(idx *layerIndex, opts Options) *pairFinder {
	return &pairFinder{
		idx:      idx,
		opts:     opts,
		pairedTo: map[*pairLayer]*pairLayer{},
		reasons:  map[*pairLayer]string{},
		excluded: map[*pairLayer]bool{},
		ambigSet: map[*pairLayer]bool{},
	}
}

// decided reports whether stronger evidence already settled the layer.
func (f *pairFinder) decided(l *pairLayer) bool {
	return f.pairedTo[l] != nil || f.reasons[l] != "" || f.ambigSet[l]
}

// reject records why a layer stays unpaired, keeping the first reason.
func (f *pairFinder) reject(l *pairLayer, format string, args ...any) {
	if l == nil || f.decided(l) {
		return
	}
	f.reasons[l] = fmt.Sprintf(format, args...)
}

// accept records a pair.
func (f *pairFinder) accept(p protoPair) {
	f.pairs = append(f.pairs, p)
	f.pairedTo[p.conv] = p.bn
	f.pairedTo[p.bn] = p.conv
}

// blockedReason explains why a decided BatchNorm cannot take a conv, or
// returns "" when it is free.
func (f *pairFinder) blockedReason(bn *pairLayer) string {
	switch {
	case f.excluded[bn]:
		return fmt.Sprintf("next module %s is excluded by --no-pair", bn.name)
	case f.pairedTo[bn] != nil:
		return fmt.Sprintf("next module %s is already paired with %s", bn.name, f.pairedTo[bn].name)
	case f.ambigSet[bn]:
		return fmt.Sprintf("next module %s is ambiguous", bn.name)
	case f.reasons[bn] != "":
		return fmt.Sprintf("next module %s is unpaired: %s", bn.name, f.reasons[bn])
	}
	return ""
}

// applyOverrides applies --pair and --no-pair.
func (f *pairFinder) applyOverrides() error {
	for _, name := range f.opts.NoPair {
		l := f.idx.lookup(name)
		if l == nil {
			return fmt.Errorf("--no-pair %s: no module named %q in the checkpoint; check the name against the tensor names", name, name)
		}
		if l.kind != kindConv && l.kind != kindBatchNorm && l.kind != kindNoStats {
			return fmt.Errorf("--no-pair %s: %s is %s, not a convolution or BatchNorm", name, l.name, l.kind.describe())
		}
		f.excluded[l] = true
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
		conv, bn := f.idx.lookup(convName), f.idx.lookup(bnName)
		switch {
		case conv == nil:
			return fmt.Errorf("%s: no module named %q in the checkpoint; check the name against the tensor names", flag, convName)
		case bn == nil:
			return fmt.Errorf("%s: no module named %q in the checkpoint; check the name against the tensor names", flag, bnName)
		case conv.kind != kindConv:
			return fmt.Errorf("%s: %s is %s, not a convolution", flag, conv.name, conv.kind.describe())
		case bn.kind != kindBatchNorm:
			return fmt.Errorf("%s: %s is %s, not a BatchNorm with running statistics", flag, bn.name, bn.kind.describe())
		case f.excluded[conv] || f.excluded[bn]:
			return fmt.Errorf("%s: a module of this pair is also given to --no-pair", flag)
		case f.pairedTo[bn] != nil:
			return fmt.Errorf("%s: %s is already paired with %s by another --pair", flag, bn.name, f.pairedTo[bn].name)
		}
		match := f.matchChannels(conv, bn)
		if match.mismatch != "" {
			return fmt.Errorf("%s: %s", flag, match.mismatch)
		}
		f.accept(newProtoPair(conv, bn, EvidenceOverride, match))
	}
	return nil
}

// result builds the Result from the decisions.
func (f *pairFinder) result() (*Result, error) {
	res := &Result{Ambiguous: f.ambiguous}
	sort.SliceStable(f.pairs, func(i, j int) bool { return f.pairs[i].conv.order < f.pairs[j].conv.order })

	settings := newSettingsTally(f.opts)
	previous := f.idx.previousLayers()
	for _, p := range f.pairs {
		conv, err := buildConv(p, previous[p.conv], settings)
		if err != nil {
			return nil, err
		}
		bn, err := buildBatchNorm(p.bn, f.opts, settings)
		if err != nil {
			return nil, err
		}
		res.Pairs = append(res.Pairs, Pair{Conv: conv, BN: bn, Evidence: p.evidence, Notes: p.notes})
	}

	for _, l := range f.idx.layers {
		if f.pairedTo[l] != nil || f.ambigSet[l] {
			continue
		}
		kind := ""
		switch l.kind {
		case kindConv:
			kind = "conv"
		case kindBatchNorm, kindNoStats:
			kind = "batchnorm"
		default:
			continue
		}
		reason := f.reasons[l]
		if reason == "" {
			// Every conv and BatchNorm gets a reason from some rule; this
			// is a fallback that keeps the list complete if one does not.
			reason = "no rule paired it"
		}
		res.Unpaired = append(res.Unpaired, Unpaired{Name: l.name, Kind: kind, Reason: reason})
	}

	if len(f.bothDims) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf(
			"%d convs have weight dimensions 0 and 1 both equal to their BatchNorm's size, so the file cannot tell an ordinary conv from a transposed one; they were taken as ordinary convs: %s",
			len(f.bothDims), listNames(f.bothDims, 5)))
	}
	res.Notes = append(res.Notes, settings.notes()...)
	return res, nil
}

// listNames joins up to limit names and counts the rest.
func listNames(names []string, limit int) string {
	if len(names) <= limit {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:limit], ", "), len(names)-limit)
}
