package checkpoint

import (
	"math/big"
	"strings"
)

// Bounds on a tensor's geometry. PyTorch allows at most 64 dimensions.
const (
	maxTensorDims = 64
	maxDimSize    = 1 << 40
	// maxRebuildDepth bounds _rebuild_from_type_v2 wrapping another rebuild.
	maxRebuildDepth = 8
)

// reduce returns the inert result of calling callable(*args). Only the
// torch rebuild functions and a few containers are interpreted, and every
// other callable yields a *pyObject that records the call.
func (u *unpickler) reduce(callable any, args pyTuple) (any, error) {
	return u.reduceDepth(callable, args, 0)
}

func (u *unpickler) reduceDepth(callable any, args pyTuple, depth int) (any, error) {
	g, ok := callable.(*pyGlobal)
	if !ok {
		return &pyObject{Class: callable, Args: args}, nil
	}
	switch g.FullName() {
	case "collections.OrderedDict", "collections.defaultdict", "builtins.dict", "__builtin__.dict":
		d := newDict(g)
		if len(args) == 1 && g.Name != "defaultdict" {
			fillDict(d, args[0])
		}
		return d, nil
	case "builtins.set", "__builtin__.set", "builtins.frozenset", "__builtin__.frozenset":
		s := &pySet{}
		if len(args) == 1 {
			if l, ok := args[0].(*pyList); ok {
				s.Items = append(s.Items, l.Items...)
			}
		}
		return s, nil
	case "builtins.bytes", "__builtin__.bytes":
		// Protocols 0 to 2 write an empty bytes object as bytes().
		if len(args) == 0 {
			return []byte{}, nil
		}
	case "builtins.bytearray", "__builtin__.bytearray":
		// bytearray(b) since protocol 3, bytearray(text, encoding) before.
		if len(args) == 1 {
			if b, ok := args[0].([]byte); ok {
				return b, nil
			}
		}
		if len(args) == 2 {
			s, ok1 := args[0].(string)
			enc, ok2 := args[1].(string)
			if ok1 && ok2 {
				return encodeText(s, enc), nil
			}
		}
	case "_codecs.encode":
		// Protocol 2 pickles written by Python 3 encode bytes this way.
		if len(args) == 2 {
			s, ok1 := args[0].(string)
			enc, ok2 := args[1].(string)
			if ok1 && ok2 {
				return encodeText(s, enc), nil
			}
		}
	case "copyreg._reconstructor", "copy_reg._reconstructor":
		if len(args) >= 1 {
			return u.newObject(args[0], nil, nil), nil
		}
	case "copyreg.__newobj__", "copy_reg.__newobj__":
		if len(args) >= 1 {
			return u.newObject(args[0], args[1:], nil), nil
		}
	case "torch.Size":
		if len(args) == 1 {
			switch s := args[0].(type) {
			case pyTuple:
				return s, nil
			case *pyList:
				return pyTuple(s.Items), nil
			}
		}
	case "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3":
		return u.rebuildTensor(g.Name, args)
	case "torch._utils._rebuild_qtensor":
		t, err := u.rebuildTensor(g.Name, args)
		if err != nil {
			return nil, err
		}
		q := &quantizedTensor{Tensor: t}
		if len(args) > 4 {
			if p, ok := args[4].(pyTuple); ok && len(p) > 0 {
				if scheme, ok := p[0].(*pyGlobal); ok {
					q.Scheme = scheme.Name
				}
			}
		}
		return q, nil
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		if len(args) >= 1 {
			switch args[0].(type) {
			case *Tensor, *quantizedTensor:
				return args[0], nil
			}
		}
	case "torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type":
		// (func, type, args, state): the tensor comes from func(*args); the
		// subclass type and its state are irrelevant to the weights.
		if len(args) >= 3 && depth < maxRebuildDepth {
			if inner, ok := args[2].(pyTuple); ok {
				return u.reduceDepth(args[0], inner, depth+1)
			}
		}
	}
	return &pyObject{Class: g, Args: args}, nil
}

// fillDict copies the items of a dict or a list of pairs into d.
func fillDict(d *pyDict, src any) {
	switch s := src.(type) {
	case *pyDict:
		for i, k := range s.Keys {
			d.Set(k, s.Values[i])
		}
	case *pyList:
		for _, item := range s.Items {
			if p, ok := item.(pyTuple); ok && len(p) == 2 {
				d.Set(p[0], p[1])
			}
		}
	}
}

// encodeText implements _codecs.encode for the encodings pickles use.
func encodeText(s, encoding string) []byte {
	switch strings.ToLower(strings.ReplaceAll(encoding, "_", "-")) {
	case "latin1", "latin-1", "iso-8859-1", "iso8859-1":
		out := make([]byte, 0, len(s))
		for _, r := range s {
			out = append(out, byte(r))
		}
		return out
	}
	return []byte(s)
}

// rebuildTensor interprets the arguments of torch._utils._rebuild_tensor
// (storage, storage_offset, size, stride) and of the later variants, which
// add requires_grad, backward hooks and metadata after those four.
func (u *unpickler) rebuildTensor(fn string, args pyTuple) (*Tensor, error) {
	if len(args) < 4 {
		return nil, u.errorf(ErrMalformed, "%s has %d arguments, want at least 4", fn, len(args))
	}
	st, ok := args[0].(*Storage)
	if !ok {
		return nil, u.errorf(ErrMalformed, "%s expects a storage as its first argument, got %s", fn, typeName(args[0]))
	}
	offset, ok := args[1].(int64)
	if !ok || offset < 0 {
		return nil, u.errorf(ErrMalformed, "%s: storage offset of storage %s is %s, not a non-negative int", fn, st.Key, typeName(args[1]))
	}
	shape, err := u.intList(fn, "size", st.Key, args[2])
	if err != nil {
		return nil, err
	}
	strides, err := u.intList(fn, "stride", st.Key, args[3])
	if err != nil {
		return nil, err
	}
	if len(shape) != len(strides) {
		return nil, u.errorf(ErrMalformed, "%s: tensor on storage %s has %d sizes but %d strides", fn, st.Key, len(shape), len(strides))
	}

	t := &Tensor{DType: st.DType, Shape: shape, Strides: strides, Offset: offset, Storage: st}
	if err := checkView(t); err != nil {
		fe := u.errorf(ErrMalformed, "%v", err)
		fe.Tensor = "on storage " + st.Key
		return nil, fe
	}
	return t, nil
}

// intList converts a size or stride tuple to ints within maxDimSize.
func (u *unpickler) intList(fn, what, key string, v any) ([]int, error) {
	var items []any
	switch s := v.(type) {
	case pyTuple:
		items = s
	case *pyList:
		items = s.Items
	default:
		return nil, u.errorf(ErrMalformed, "%s: %s of a tensor on storage %s is a %s, not a tuple", fn, what, key, typeName(v))
	}
	if len(items) > maxTensorDims {
		return nil, u.errorf(ErrDeclaredSize, "%s: tensor on storage %s has %d dimensions, more than PyTorch's %d", fn, key, len(items), maxTensorDims)
	}
	out := make([]int, len(items))
	for i, item := range items {
		n, ok := item.(int64)
		if !ok {
			if _, big := item.(*big.Int); big {
				return nil, u.errorf(ErrDeclaredSize, "%s: %s[%d] of a tensor on storage %s does not fit in 64 bits", fn, what, i, key)
			}
			return nil, u.errorf(ErrMalformed, "%s: %s[%d] of a tensor on storage %s is a %s, not an int", fn, what, i, key, typeName(item))
		}
		if n < -maxDimSize || n > maxDimSize || (what == "size" && n < 0) {
			return nil, u.errorf(ErrDeclaredSize, "%s: %s[%d] = %d of a tensor on storage %s is out of range", fn, what, i, n, key)
		}
		out[i] = int(n)
	}
	return out, nil
}
