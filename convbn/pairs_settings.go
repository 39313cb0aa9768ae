package convbn

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// settingsTally counts where the settings of the paired layers came from,
// for Result.Notes.
type settingsTally struct {
	opts Options

	eps        map[string]int // "source value" → BatchNorms
	epsIgnored map[string]int // file value that overrode --eps → BatchNorms
	momentum   map[string]int
	momIgnored map[string]int

	groupsInferred, groupsUnknown int
}

func newSettingsTally(opts Options) *settingsTally {
	return &settingsTally{
		opts:       opts,
		eps:        map[string]int{},
		epsIgnored: map[string]int{},
		momentum:   map[string]int{},
		momIgnored: map[string]int{},
	}
}

// notes summarizes the tally, one sentence per fact, in a fixed order.
func (s *settingsTally) notes() []string {
	var out []string
	for _, key := range sortedKeys(s.eps) {
		out = append(out, fmt.Sprintf("eps %s for %d paired BatchNorms", key, s.eps[key]))
	}
	for _, key := range sortedKeys(s.epsIgnored) {
		out = append(out, fmt.Sprintf("--eps %g ignored for %d BatchNorms because the file stores eps %s", s.opts.Eps, s.epsIgnored[key], key))
	}
	for _, key := range sortedKeys(s.momentum) {
		out = append(out, fmt.Sprintf("momentum %s for %d paired BatchNorms", key, s.momentum[key]))
	}
	for _, key := range sortedKeys(s.momIgnored) {
		out = append(out, fmt.Sprintf("--momentum %s ignored for %d BatchNorms because the file stores momentum %s", formatMomentum(s.opts.Momentum), s.momIgnored[key], key))
	}
	if s.groupsInferred+s.groupsUnknown > 0 {
		out = append(out, fmt.Sprintf(
			"groups are not stored for %d paired convs: inferred for %d from tensor shapes, unknown for %d (Groups 1 assumed)",
			s.groupsInferred+s.groupsUnknown, s.groupsInferred, s.groupsUnknown))
	}
	return out
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// formatMomentum writes a momentum, with nil as a cumulative average.
func formatMomentum(m *float64) string {
	if m == nil {
		return "None (cumulative average)"
	}
	return fmt.Sprintf("%g", *m)
}

// buildConv fills in a pair's Conv from the layer's tensors and whatever
// the file stores about it. prev is the layer before the conv in file
// order, used to infer groups where the file stores none.
func buildConv(p protoPair, prev *pairLayer, tally *settingsTally) (Conv, error) {
	l := p.conv
	c := Conv{
		Name:       l.name,
		Weight:     l.params["weight"],
		Bias:       l.params["bias"],
		Transposed: p.transposed,
		Groups:     1,
	}
	if g, ok := l.storedGroups(); ok {
		c.Groups, c.GroupsSource = g, SourceFile
	} else if p.groups > 1 {
		c.Groups, c.GroupsSource = p.groups, SourceInferred
		tally.groupsInferred++
	} else if g, ok := inferGroups(l, prev, p.transposed); ok {
		c.Groups, c.GroupsSource = g, SourceInferred
		tally.groupsInferred++
	} else {
		tally.groupsUnknown++
	}
	if err := checkGroups(c); err != nil {
		return Conv{}, err
	}

	var err error
	switch {
	case l.module != nil:
		err = c.geometryFromAttrs(l.module.Attrs)
	case l.spec != nil:
		c.Stride, c.Padding, c.Dilation = l.spec.Stride, l.spec.Padding, l.spec.Dilation
		if c.Stride != nil || c.Padding != nil || c.Dilation != nil {
			c.GeometrySource = SourceFile
		}
	}
	return c, err
}

// checkGroups verifies that the stored or inferred groups divide the
// channel counts of the weight.
func checkGroups(c Conv) error {
	w := c.Weight.Shape
	in, outPerGroup := w[1], w[0]
	if c.Transposed {
		in, outPerGroup = w[0], w[1]
	}
	if c.Groups < 1 || (!c.Transposed && w[0]%c.Groups != 0) || (c.Transposed && in%c.Groups != 0) {
		return fmt.Errorf("convolution %s: groups %d do not divide the weight shape %v (input %d, output per group %d)", c.Name, c.Groups, w, in, outPerGroup)
	}
	return nil
}

// inferGroups derives the groups of a state-dict conv from the channel
// count of its input. That count is known only when the layer before the
// conv in file order is a BatchNorm that feeds it. This holds for a sibling
// registered before it (ResNet's bn1 before conv2, DenseNet's norm1 before
// conv1) and for the last layer under the previous index of the same
// Sequential (features.2.conv.0.1 before features.2.conv.1.0). The groups
// are then C_in / weight dimension 1, and they must divide the output
// channels.
//
// NOTE: a sibling BatchNorm of a parallel branch (Inception-style modules
// registered as siblings) also passes this test, and a ModuleList of
// parallel heads looks like a Sequential, so the inferred groups can be
// wrong there; the result marks them SourceInferred.
func inferGroups(conv, prev *pairLayer, transposed bool) (int, bool) {
	if transposed || prev == nil || prev.kind != kindBatchNorm {
		return 0, false
	}
	if !feedsByPosition(prev, conv) {
		return 0, false
	}
	in := prev.channels()
	w := conv.params["weight"].Shape
	if in%w[1] != 0 {
		return 0, false
	}
	g := in / w[1]
	if g < 1 || w[0]%g != 0 {
		return 0, false
	}
	return g, true
}

// feedsByPosition reports whether the names of prev and next (adjacent in
// file order) put them one after the other in the forward pass: siblings
// of one parent, or under consecutive indices of one Sequential.
func feedsByPosition(prev, next *pairLayer) bool {
	p, n := prev.path, next.path
	k := 0
	for k < len(p) && k < len(n) && p[k] == n[k] {
		k++
	}
	if k == len(p) || k == len(n) {
		return false
	}
	if k == len(p)-1 && k == len(n)-1 {
		return true
	}
	pi, ok1 := siblingIndex(p[k])
	ni, ok2 := siblingIndex(n[k])
	return ok1 && ok2 && ni == pi+1
}

// geometryFromAttrs copies stride, padding and dilation from a pickled
// conv module's attributes.
func (c *Conv) geometryFromAttrs(attrs map[string]any) error {
	spatial := len(c.Weight.Shape) - 2
	var err error
	if c.Stride, err = intTuple(attrs, "stride", spatial, c.Name); err != nil {
		return err
	}
	if c.Dilation, err = intTuple(attrs, "dilation", spatial, c.Name); err != nil {
		return err
	}
	switch v := attrs["padding"].(type) {
	case string:
		c.Padding, err = stringPadding(v, c, spatial)
	default:
		c.Padding, err = intTuple(attrs, "padding", spatial, c.Name)
	}
	if err != nil {
		return err
	}
	if c.Stride != nil || c.Padding != nil || c.Dilation != nil {
		c.GeometrySource = SourceFile
	}
	return nil
}

// intTuple reads an attribute stored as a tuple of ints (or one int), or
// returns nil when it is absent.
func intTuple(attrs map[string]any, key string, n int, conv string) ([]int, error) {
	v, ok := attrs[key]
	if !ok || v == nil {
		return nil, nil
	}
	var items []any
	switch t := v.(type) {
	case []any:
		items = t
	case int64:
		items = make([]any, n)
		for i := range items {
			items[i] = t
		}
	default:
		return nil, fmt.Errorf("convolution %s: attribute %s is %v (%T), want a tuple of %d ints", conv, key, v, v, n)
	}
	if len(items) != n {
		return nil, fmt.Errorf("convolution %s: attribute %s is %v, want %d values for a %d-D convolution", conv, key, v, n, n)
	}
	out := make([]int, n)
	for i, it := range items {
		x, ok := it.(int64)
		if !ok || x < 0 || x > math.MaxInt32 {
			return nil, fmt.Errorf("convolution %s: attribute %s is %v, want non-negative ints", conv, key, v)
		}
		out[i] = int(x)
	}
	return out, nil
}

// stringPadding converts padding="valid" or "same" to explicit padding.
// "same" (stride 1 only in PyTorch) pads dilation·(k−1)/2 per side. When
// that total is odd, PyTorch pads one more on the right, which one number
// per side cannot express, so that case is left unknown (nil).
func stringPadding(mode string, c *Conv, spatial int) ([]int, error) {
	pad := make([]int, spatial)
	switch mode {
	case "valid":
		return pad, nil
	case "same":
		for i := range pad {
			d := 1
			if c.Dilation != nil {
				d = c.Dilation[i]
			}
			total := d * (c.Weight.Shape[2+i] - 1)
			if total%2 != 0 {
				return nil, nil
			}
			pad[i] = total / 2
		}
		return pad, nil
	}
	return nil, fmt.Errorf("convolution %s: padding %q is neither \"valid\" nor \"same\"", c.Name, mode)
}

// buildBatchNorm fills in a pair's BatchNorm, taking ε and momentum from
// the file, else from the options, else PyTorch's defaults.
func buildBatchNorm(l *pairLayer, opts Options, tally *settingsTally) (BatchNorm, error) {
	bn := BatchNorm{
		Name:              l.name,
		Weight:            l.params["weight"],
		Bias:              l.params["bias"],
		RunningMean:       l.params["running_mean"],
		RunningVar:        l.params["running_var"],
		NumBatchesTracked: l.params["num_batches_tracked"],
		Affine:            l.params["weight"] != nil,
	}

	eps, epsStored, err := l.storedEps()
	if err != nil {
		return BatchNorm{}, err
	}
	switch {
	case epsStored:
		bn.Eps, bn.EpsSource = eps, SourceFile
		if opts.EpsSet && opts.Eps != eps {
			tally.epsIgnored[fmt.Sprintf("%g", eps)]++
		}
	case opts.EpsSet:
		bn.Eps, bn.EpsSource = opts.Eps, SourceFlag
	default:
		bn.Eps, bn.EpsSource = DefaultEps, SourceDefault
	}
	tally.eps[fmt.Sprintf("%g from %s", bn.Eps, bn.EpsSource)]++

	mom, momStored, err := l.storedMomentum()
	if err != nil {
		return BatchNorm{}, err
	}
	switch {
	case momStored:
		bn.Momentum, bn.MomentumSource = mom, SourceFile
		if opts.MomentumSet && formatMomentum(opts.Momentum) != formatMomentum(mom) {
			tally.momIgnored[formatMomentum(mom)]++
		}
	case opts.MomentumSet:
		bn.Momentum, bn.MomentumSource = opts.Momentum, SourceFlag
	default:
		m := DefaultMomentum
		bn.Momentum, bn.MomentumSource = &m, SourceDefault
	}
	tally.momentum[fmt.Sprintf("%s from %s", formatMomentum(bn.Momentum), bn.MomentumSource)]++

	if affine, ok := l.storedAffine(); ok {
		bn.Affine = affine
	}
	if bn.Affine && (bn.Weight == nil || bn.Bias == nil) {
		return BatchNorm{}, fmt.Errorf("BatchNorm %s is affine but lacks its weight or bias tensor", l.name)
	}
	return bn, nil
}

// storedEps returns the ε the file stores for a BatchNorm.
func (l *pairLayer) storedEps() (float64, bool, error) {
	var eps float64
	switch {
	case l.module != nil && l.module.Attrs["eps"] != nil:
		switch v := l.module.Attrs["eps"].(type) {
		case float64:
			eps = v
		case int64:
			eps = float64(v)
		default:
			return 0, false, fmt.Errorf("BatchNorm %s: attribute eps is %v (%T), want a number", l.name, v, v)
		}
	case l.spec != nil && l.spec.Eps != 0:
		eps = l.spec.Eps
	default:
		return 0, false, nil
	}
	if math.IsNaN(eps) || math.IsInf(eps, 0) || eps < 0 {
		return 0, false, fmt.Errorf("BatchNorm %s: stored eps %g is not a finite non-negative number; pass --no-pair %s to skip it", l.name, eps, l.name)
	}
	return eps, true, nil
}

// storedMomentum returns the momentum the file stores for a BatchNorm; a
// nil momentum with ok true means a cumulative average.
func (l *pairLayer) storedMomentum() (*float64, bool, error) {
	if l.module != nil {
		v, ok := l.module.Attrs["momentum"]
		if !ok {
			return nil, false, nil
		}
		switch m := v.(type) {
		case nil:
			return nil, true, nil
		case float64:
			return &m, true, nil
		case int64:
			f := float64(m)
			return &f, true, nil
		}
		return nil, false, fmt.Errorf("BatchNorm %s: attribute momentum is %v (%T), want a number or None", l.name, v, v)
	}
	if l.spec != nil && strings.Contains(l.spec.Type, "BatchNorm") {
		return l.spec.Momentum, true, nil
	}
	return nil, false, nil
}

// storedAffine returns the affine flag the file stores, if any.
func (l *pairLayer) storedAffine() (bool, bool) {
	if l.module != nil {
		if v, ok := l.module.Attrs["affine"].(bool); ok {
			return v, true
		}
	}
	if l.spec != nil && l.spec.Affine != nil {
		return *l.spec.Affine, true
	}
	return false, false
}
