package checkpoint

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// torchScriptClassPrefix starts the class names of every module and object
// that torch.jit.save pickles into data.pkl.
const torchScriptClassPrefix = "__torch__."

// isTorchScript reports whether the archive is a TorchScript archive
// (torch.jit.save): it has code/ entries or constants.pkl in its root
// folder, or in the first folder of an entry outside that root.
func (z *zipReader) isTorchScript() bool {
	for name := range z.entries {
		rest, ok := strings.CutPrefix(name, z.root)
		if !ok {
			if i := strings.IndexByte(name, '/'); i >= 0 {
				rest = name[i+1:]
			}
		}
		if strings.HasPrefix(rest, "code/") || rest == "constants.pkl" {
			return true
		}
	}
	return false
}

// openTorchScript reads a TorchScript archive. Its data.pkl pickles the
// scripted module tree: each module is a __torch__.* object whose state is
// an attribute dict holding submodules, tensors and plain values. Settings
// declared as Final constants (BatchNorm eps, conv groups and stride) live
// only in the class code under code/, which is parsed as text for them.
//
// NOTE: the forward code is not parsed, so Model.Root lists submodules in
// registration order only. A module whose forward calls them in another
// order, or applies a function such as F.relu between them, looks like a
// plain Sequential to pair discovery.
func openTorchScript(z *zipReader) (*File, *unpickler, error) {
	path := z.path
	pkl, ok := z.findDataPickle()
	if !ok {
		return nil, nil, &FormatError{Path: path, Format: FormatTorchScript, Offset: -1, Err: ErrMissingRecord,
			Reason: "TorchScript archive has no single <root>/data.pkl record; the file is incomplete or was repacked"}
	}
	obj, u, err := z.loadPickle(pkl, FormatTorchScript)
	if err != nil {
		return nil, nil, err
	}

	f := &File{Path: path, Format: FormatTorchScript}
	classes, err := readTorchScriptCode(z, f)
	if err != nil {
		return nil, nil, err
	}
	root, ok := obj.(*pyObject)
	if !ok || !isTorchScriptModule(root) {
		return nil, nil, &FormatError{Path: path, Format: FormatTorchScript, Record: pkl.Name, Offset: -1, Err: ErrMalformed,
			Reason: fmt.Sprintf("data.pkl holds %s, not a scripted module (a %s* object with an attribute dict)", typeName(obj), torchScriptClassPrefix)}
	}
	b := &torchScriptBuilder{f: f, classes: classes, visited: map[*pyObject]bool{}, maxSteps: stepsPerValue*u.values + 1024}
	m := &Model{}
	mod, err := b.module(m, root, "", 0)
	if err != nil {
		return nil, nil, err
	}
	m.Root = mod
	if len(m.Tensors) > 0 {
		f.Models = append(f.Models, m)
	}
	for _, class := range slices.Sorted(maps.Keys(b.missingCode)) {
		f.Warnings = append(f.Warnings, fmt.Sprintf("class %s has no code record, so its Final constants (eps, groups, stride) are unknown and defaults apply", class))
	}
	return f, u, nil
}

// isTorchScriptModule reports whether o is a scripted object with an
// attribute dict.
func isTorchScriptModule(o *pyObject) bool {
	return strings.HasPrefix(o.ClassName(), torchScriptClassPrefix) && o.StateDict() != nil
}

// torchScriptBuilder turns the unpickled objects into a Module tree.
type torchScriptBuilder struct {
	f           *File
	classes     map[string]*torchScriptClass
	visited     map[*pyObject]bool
	missingCode map[string]bool
	steps       int
	maxSteps    int
}

// module builds the Module for the scripted object o at dotted path name
// and appends its tensors to m: its own parameters and buffers first, then
// each submodule's, as state_dict orders them.
func (b *torchScriptBuilder) module(m *Model, o *pyObject, name string, depth int) (*Module, error) {
	b.steps++
	if depth > maxNesting || b.steps > b.maxSteps {
		return nil, &FormatError{Path: b.f.Path, Format: FormatTorchScript, Offset: -1, Tensor: name, Err: ErrDeclaredSize,
			Reason: fmt.Sprintf("module tree is deeper than %d levels or larger than the pickle allows; the file is not a scripted model", maxNesting)}
	}
	b.visited[o] = true
	class := o.ClassName()
	mod := &Module{Name: name, Class: class, Attrs: map[string]any{}}
	info := b.classes[class]
	if info == nil {
		if b.missingCode == nil {
			b.missingCode = map[string]bool{}
		}
		b.missingCode[class] = true
	}

	state := o.StateDict()
	type child struct {
		name string
		obj  *pyObject
	}
	var children []child
	for i, k := range state.Keys {
		key, ok := k.(string)
		if !ok {
			continue
		}
		full := joinName(name, key)
		switch v := state.Values[i].(type) {
		case *Tensor:
			tc := *v
			tc.Name = full
			m.Tensors = append(m.Tensors, &tc)
			mod.Params = append(mod.Params, Param{Short: key, Full: full})
		case *quantizedTensor:
			b.f.Warnings = append(b.f.Warnings, fmt.Sprintf("skipped quantized tensor %s (%s, %s): quantized weights are not analyzed", full, v.Tensor.DType, v.Scheme))
			b.f.Unread = append(b.f.Unread, full)
			mod.Params = append(mod.Params, Param{Short: key})
		case *pyObject:
			switch {
			case b.visited[v]:
				// A module shared under two names is listed once, as
				// state_dict does.
			case isTorchScriptModule(v):
				children = append(children, child{key, v})
			default:
				b.skipObject(v, full)
			}
		case nil:
			if info != nil && info.declares(key) {
				mod.Params = append(mod.Params, Param{Short: key})
			} else {
				mod.Attrs[key] = nil
			}
		default:
			if a, ok := plainAttr(v, 0); ok {
				mod.Attrs[key] = a
			}
		}
	}
	if info != nil {
		for k, v := range info.constants {
			if _, ok := mod.Attrs[k]; !ok {
				mod.Attrs[k] = v
			}
		}
	}
	for _, c := range children {
		ch, err := b.module(m, c.obj, joinName(name, c.name), depth+1)
		if err != nil {
			return nil, err
		}
		mod.Children = append(mod.Children, ch)
	}
	return mod, nil
}

// skipObject records a warning for a scripted object that is not a module
// with an attribute dict, such as quantized LinearPackedParams, whose
// state is a tuple holding the packed weight.
func (b *torchScriptBuilder) skipObject(o *pyObject, name string) {
	quantized := 0
	var count func(v any, depth int)
	count = func(v any, depth int) {
		if depth > 4 {
			return
		}
		switch t := v.(type) {
		case *quantizedTensor:
			quantized++
		case pyTuple:
			for _, item := range t {
				count(item, depth+1)
			}
		}
	}
	count(o.State, 0)
	for _, a := range o.Args {
		count(a, 1)
	}
	if quantized > 0 {
		b.f.Warnings = append(b.f.Warnings, fmt.Sprintf("skipped %s (%s): quantized packed parameters (%d quantized tensors) are not analyzed", name, o.ClassName(), quantized))
		b.f.Unread = append(b.f.Unread, name)
	}
}
