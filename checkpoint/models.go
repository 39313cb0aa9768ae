package checkpoint

import (
	"fmt"
	"strings"
)

// maxNesting bounds how deep the search for tensors descends into nested
// containers; deeper structures are reported as errors.
const maxNesting = 256

// dataParallelPrefix is the name prefix that torch.nn.DataParallel and
// DistributedDataParallel put on every tensor of the wrapped module.
const dataParallelPrefix = "module."

// optimizerKeys are the dict keys under which training checkpoints keep
// optimizer or scheduler state rather than a model.
var optimizerKeys = map[string]bool{
	"optimizer": true, "optimizer_state_dict": true, "optimizer_state": true,
	"optim": true, "opt": true, "scheduler": true, "lr_scheduler": true,
}

// collector finds the models in an unpickled object.
type collector struct {
	f *File
	// visited holds the containers already searched, so that shared or
	// cyclic references (possible through the pickle memo) are searched
	// once.
	visited map[any]bool
	// steps counts the values visited, up to maxSteps.
	steps, maxSteps int
}

// stepsPerValue bounds the search's visits per unpickled value. Each
// container is searched once, so only tensors and scalars shared through
// the pickle memo are visited more than once in a real checkpoint.
const stepsPerValue = 4

// collectModels fills f.Models and f.Metadata from the file's top-level
// object, which the unpickler built from the given number of values.
func collectModels(f *File, obj any, values int) error {
	c := &collector{f: f, visited: make(map[any]bool), maxSteps: stepsPerValue*values + 1024}
	if err := c.find(obj, "", 0); err != nil {
		return err
	}
	for _, m := range f.Models {
		stripPrefix(m)
	}
	return nil
}

func (c *collector) tooDeep(key string) error {
	return &FormatError{Path: c.f.Path, Format: c.f.Format, Offset: -1, Tensor: key, Err: ErrDeclaredSize,
		Reason: fmt.Sprintf("object nesting exceeds %d levels; the file is not a checkpoint", maxNesting)}
}

// seen marks a container as visited and reports whether it was. A tuple
// is identified by its first element's address, so a pickle that nests
// one tuple twice in another, level after level, cannot make the search
// exponential.
func (c *collector) seen(v any) bool {
	switch t := v.(type) {
	case *pyDict, *pyList, *pySet, *pyObject:
	case pyTuple:
		if len(t) == 0 {
			return false
		}
		v = &t[0]
	default:
		return false
	}
	if c.visited[v] {
		return true
	}
	c.visited[v] = true
	return false
}

// find searches v, found at dotted path key, for models: a pickled
// nn.Module, or a dict or list holding tensors directly. Other containers
// are searched entry by entry. A tensor found on its own, such as the
// whole content of torch.save(tensor), becomes a model of one tensor with
// an empty name.
func (c *collector) find(v any, key string, depth int) error {
	if err := c.step(key, depth); err != nil {
		return err
	}
	switch t := v.(type) {
	case *Tensor, *quantizedTensor:
		m := &Model{Key: key}
		c.gather(m, v, "", depth)
		c.addModel(m)
		return nil
	case *pyObject:
		if isModule(t) {
			if c.seen(t) {
				return nil
			}
			m := &Model{Key: key}
			root, err := c.module(m, t, "", depth)
			if err != nil {
				return err
			}
			m.Root = root
			c.addModel(m)
			return nil
		}
		if c.seen(t) {
			return nil
		}
		if d := t.StateDict(); d != nil {
			return c.findInDict(d, key, depth)
		}
		if t.Items != nil {
			return c.findInDict(t.Items, key, depth)
		}
	case *pyDict:
		if holdsTensor(t.Values) {
			if c.visited[t] {
				return nil
			}
			m := &Model{Key: key}
			if err := c.gather(m, t, "", depth); err != nil {
				return err
			}
			c.addModel(m)
			return nil
		}
		if c.seen(t) {
			return nil
		}
		return c.findInDict(t, key, depth)
	case *pyList:
		return c.findInList(t, t.Items, key, depth)
	case pyTuple:
		if c.seen(t) {
			return nil
		}
		return c.findInList(nil, t, key, depth)
	}
	return nil
}

// step counts one visited value and rejects object graphs that are too
// deep or too large to be a checkpoint.
func (c *collector) step(key string, depth int) error {
	if depth > maxNesting {
		return c.tooDeep(key)
	}
	c.steps++
	if c.steps > c.maxSteps {
		return &FormatError{Path: c.f.Path, Format: c.f.Format, Offset: -1, Tensor: key, Err: ErrDeclaredSize,
			Reason: fmt.Sprintf("searching the object visits more than %d values, because the pickle shares containers many times; the file is not a checkpoint", c.maxSteps)}
	}
	return nil
}

func (c *collector) findInList(list *pyList, items []any, key string, depth int) error {
	if list != nil && c.seen(list) {
		return nil
	}
	if holdsTensor(items) {
		m := &Model{Key: key}
		if err := c.gatherList(m, items, "", depth); err != nil {
			return err
		}
		c.addModel(m)
		return nil
	}
	for i, item := range items {
		if err := c.find(item, joinName(key, fmt.Sprint(i)), depth+1); err != nil {
			return err
		}
	}
	return nil
}

// findInDict searches each entry of a dict that holds no tensor directly,
// skipping None, optimizer state and convbn-diag's metadata.
func (c *collector) findInDict(d *pyDict, key string, depth int) error {
	for i, k := range d.Keys {
		name, ok := keyString(k)
		if !ok {
			continue
		}
		v := d.Values[i]
		path := joinName(key, name)
		switch {
		case v == nil:
			continue
		case key == "" && name == MetadataObjectKey:
			c.metadata(v)
			continue
		case optimizerKeys[name] || isOptimizerState(v):
			if n := c.countTensors(v, depth); n > 0 {
				c.f.Warnings = append(c.f.Warnings, fmt.Sprintf("skipped %s: it is optimizer or scheduler state (%d tensors), not model weights", path, n))
			}
			continue
		}
		if err := c.find(v, path, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// metadata stores convbn-diag's own metadata dict in File.Metadata.
func (c *collector) metadata(v any) {
	d, ok := v.(*pyDict)
	if !ok {
		c.f.Warnings = append(c.f.Warnings, fmt.Sprintf("ignored %s: it is a %s, not a dict of strings", MetadataObjectKey, typeName(v)))
		return
	}
	if c.f.Metadata == nil {
		c.f.Metadata = make(map[string]string, len(d.Keys))
	}
	for i, k := range d.Keys {
		ks, ok1 := k.(string)
		vs, ok2 := d.Values[i].(string)
		if !ok1 || !ok2 {
			c.f.Warnings = append(c.f.Warnings, fmt.Sprintf("ignored an entry of %s: key and value must both be strings, got %s and %s", MetadataObjectKey, typeName(k), typeName(d.Values[i])))
			continue
		}
		c.f.Metadata[ks] = vs
	}
}

func (c *collector) addModel(m *Model) {
	if len(m.Tensors) > 0 {
		c.f.Models = append(c.f.Models, m)
	}
}

// holdsTensor reports whether any of values is a tensor.
func holdsTensor(values []any) bool {
	for _, v := range values {
		switch v.(type) {
		case *Tensor, *quantizedTensor:
			return true
		}
	}
	return false
}

// isOptimizerState reports whether v looks like an optimizer's
// state_dict(): a dict with "state" and "param_groups".
func isOptimizerState(v any) bool {
	d, ok := v.(*pyDict)
	if !ok {
		return false
	}
	_, s := d.Get("state")
	_, p := d.Get("param_groups")
	return s && p
}

// countTensors counts the tensors anywhere inside v, without recording
// them, for the warning about skipped optimizer state.
func (c *collector) countTensors(v any, depth int) int {
	m := &Model{}
	saved := c.f.Warnings
	counter := &collector{f: c.f, visited: make(map[any]bool), maxSteps: c.maxSteps}
	counter.gather(m, v, "", depth)
	c.f.Warnings = saved
	return len(m.Tensors)
}

// gather appends every tensor inside v to m with its dotted name.
func (c *collector) gather(m *Model, v any, name string, depth int) error {
	if err := c.step(name, depth); err != nil {
		return err
	}
	switch t := v.(type) {
	case *Tensor:
		tc := *t
		tc.Name = name
		m.Tensors = append(m.Tensors, &tc)
	case *quantizedTensor:
		c.f.Warnings = append(c.f.Warnings, fmt.Sprintf("skipped quantized tensor %s (%s, %s): quantized weights are not analyzed", joinName(m.Key, name), t.Tensor.DType, t.Scheme))
		c.f.Unread = append(c.f.Unread, joinName(m.Key, name))
	case *pyDict:
		if c.seen(t) {
			return nil
		}
		for i, k := range t.Keys {
			ks, ok := keyString(k)
			if !ok {
				continue
			}
			if err := c.gather(m, t.Values[i], joinName(name, ks), depth+1); err != nil {
				return err
			}
		}
	case *pyList:
		if c.seen(t) {
			return nil
		}
		return c.gatherList(m, t.Items, name, depth)
	case pyTuple:
		if c.seen(t) {
			return nil
		}
		return c.gatherList(m, t, name, depth)
	case *pyObject:
		if isModule(t) {
			if c.seen(t) {
				return nil
			}
			_, err := c.module(m, t, name, depth)
			return err
		}
		if c.seen(t) {
			return nil
		}
		if d := t.StateDict(); d != nil {
			if err := c.gather(m, d, name, depth+1); err != nil {
				return err
			}
		}
		if t.Items != nil {
			return c.gather(m, t.Items, name, depth+1)
		}
	}
	return nil
}

func (c *collector) gatherList(m *Model, items []any, name string, depth int) error {
	for i, item := range items {
		if err := c.gather(m, item, joinName(name, fmt.Sprint(i)), depth+1); err != nil {
			return err
		}
	}
	return nil
}

// stripPrefix removes a DataParallel "module." prefix shared by every
// tensor name, and unwraps a pickled DataParallel module.
func stripPrefix(m *Model) {
	if len(m.Tensors) == 0 {
		return
	}
	for _, t := range m.Tensors {
		if !strings.HasPrefix(t.Name, dataParallelPrefix) {
			return
		}
	}
	for _, t := range m.Tensors {
		t.Name = strings.TrimPrefix(t.Name, dataParallelPrefix)
	}
	m.StrippedPrefix = dataParallelPrefix
	if m.Root != nil && len(m.Root.Children) == 1 && m.Root.Children[0].Name == "module" && len(m.Root.Params) == 0 {
		m.Root = m.Root.Children[0]
		renameModules(m.Root, "module")
	}
}

// renameModules removes the prefix component from the names in a module
// tree.
func renameModules(mod *Module, prefix string) {
	switch {
	case mod.Name == prefix:
		mod.Name = ""
	case strings.HasPrefix(mod.Name, prefix+"."):
		mod.Name = strings.TrimPrefix(mod.Name, prefix+".")
	}
	for i, p := range mod.Params {
		if p.Full != "" {
			mod.Params[i].Full = strings.TrimPrefix(p.Full, prefix+".")
		}
	}
	for _, ch := range mod.Children {
		renameModules(ch, prefix)
	}
}
