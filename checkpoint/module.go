package checkpoint

import (
	"math/big"
	"strings"
)

// isModule reports whether o is a pickled nn.Module: an object whose state
// has the _modules or _parameters attribute every nn.Module has.
func isModule(o *pyObject) bool {
	d := o.StateDict()
	if d == nil {
		return false
	}
	_, mods := d.Get("_modules")
	_, params := d.Get("_parameters")
	return mods || params
}

// module builds the Module tree of the pickled nn.Module o found at dotted
// path name inside m, and appends its tensors to m. The order follows
// state_dict: the module's parameters and buffers come first, then tensors
// held in plain attributes, then each child's tensors in registration
// order.
func (c *collector) module(m *Model, o *pyObject, name string, depth int) (*Module, error) {
	if err := c.step(name, depth); err != nil {
		return nil, err
	}
	state := o.StateDict()
	mod := &Module{Name: name, Class: o.ClassName(), Attrs: make(map[string]any)}

	for _, slot := range []string{"_parameters", "_buffers"} {
		v, _ := state.Get(slot)
		d, ok := v.(*pyDict)
		if !ok {
			continue
		}
		for i, k := range d.Keys {
			short, ok := keyString(k)
			if !ok {
				continue
			}
			full := joinName(name, short)
			switch t := d.Values[i].(type) {
			case nil:
				mod.Params = append(mod.Params, Param{Short: short})
			case *Tensor, *quantizedTensor:
				before := len(m.Tensors)
				c.gather(m, t, full, depth+1)
				if len(m.Tensors) > before {
					mod.Params = append(mod.Params, Param{Short: short, Full: full})
				} else {
					mod.Params = append(mod.Params, Param{Short: short})
				}
			}
		}
	}

	var children *pyDict
	for i, k := range state.Keys {
		key, ok := k.(string)
		if !ok {
			continue
		}
		v := state.Values[i]
		switch {
		case key == "_modules":
			children, _ = v.(*pyDict)
			continue
		case strings.HasPrefix(key, "_"):
			// _parameters, _buffers, hooks and other nn.Module internals.
			continue
		}
		if a, ok := plainAttr(v, 0); ok {
			mod.Attrs[key] = a
			continue
		}
		if err := c.gather(m, v, joinName(name, key), depth+1); err != nil {
			return nil, err
		}
	}

	if children == nil {
		return mod, nil
	}
	for i, k := range children.Keys {
		short, ok := keyString(k)
		if !ok {
			continue
		}
		child, ok := children.Values[i].(*pyObject)
		if !ok || !isModule(child) || c.seen(child) {
			continue
		}
		ch, err := c.module(m, child, joinName(name, short), depth+1)
		if err != nil {
			return nil, err
		}
		mod.Children = append(mod.Children, ch)
	}
	return mod, nil
}

// plainAttr converts a module attribute to a Module.Attrs value: int64,
// float64, bool, string, nil, or []any of those for a tuple or list.
func plainAttr(v any, depth int) (any, bool) {
	switch t := v.(type) {
	case nil, bool, int64, float64, string:
		return t, true
	case *big.Int:
		if t.BitLen() > maxNameBits {
			return nil, false
		}
		return t.String(), true
	case pyTuple:
		return plainList(t, depth)
	case *pyList:
		return plainList(t.Items, depth)
	}
	return nil, false
}

func plainList(items []any, depth int) (any, bool) {
	if depth > 0 {
		return nil, false
	}
	out := make([]any, len(items))
	for i, item := range items {
		a, ok := plainAttr(item, depth+1)
		if !ok {
			return nil, false
		}
		out[i] = a
	}
	return out, true
}
