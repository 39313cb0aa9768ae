package checkpoint

import (
	"math/big"
	"strconv"
)

// The unpickler builds these inert values. Python None is nil, bool is bool,
// int is int64 (or *big.Int beyond 64 bits), float is float64, str is
// string, bytes and bytearray are []byte, and a tensor is *Tensor.

// pyGlobal is a class or function a pickle names. It is never resolved to
// code: it only carries the name.
type pyGlobal struct {
	Module, Name string
}

// FullName returns "module.name".
func (g *pyGlobal) FullName() string { return g.Module + "." + g.Name }

// pyTuple is a Python tuple. Tuples are immutable, so a slice suffices.
type pyTuple []any

// pyList is a Python list; it is a pointer type because APPEND mutates it
// after it may already sit in the memo.
type pyList struct {
	Items []any
}

// pySet is a Python set or frozenset.
type pySet struct {
	Items []any
}

// pyDict is a Python dict, OrderedDict or defaultdict, keeping insertion
// order. Keys of type string, int64, float64 and bool are indexed so that a
// repeated key replaces its value as in Python; other keys are appended.
type pyDict struct {
	Class  *pyGlobal // nil for a plain dict
	Keys   []any
	Values []any
	State  any // the BUILD state, such as a state dict's _metadata
	index  map[any]int
}

func newDict(class *pyGlobal) *pyDict {
	return &pyDict{Class: class}
}

// hashKey returns k when it can serve as a Go map key, or nil.
func hashKey(k any) any {
	switch k.(type) {
	case string, int64, float64, bool:
		return k
	}
	return nil
}

// Set stores value under key, replacing an earlier value for an equal
// string, int, float or bool key.
func (d *pyDict) Set(key, value any) {
	if h := hashKey(key); h != nil {
		if d.index == nil {
			d.index = make(map[any]int)
		}
		if i, ok := d.index[h]; ok {
			d.Values[i] = value
			return
		}
		d.index[h] = len(d.Keys)
	}
	d.Keys = append(d.Keys, key)
	d.Values = append(d.Values, value)
}

// Get returns the value stored under a string key.
func (d *pyDict) Get(key string) (any, bool) {
	if i, ok := d.index[key]; ok {
		return d.Values[i], true
	}
	return nil, false
}

// pyObject is an instance of a class the unpickler does not interpret: the
// result of REDUCE, NEWOBJ, NEWOBJ_EX, OBJ or INST on an unknown callable,
// holding its arguments and whatever BUILD, SETITEM and APPEND added.
type pyObject struct {
	Class  any // usually *pyGlobal
	Args   []any
	Kwargs any
	State  any
	Items  *pyDict // entries added by SETITEM(S), nil when none
	List   []any   // items added by APPEND(S)
}

// ClassName returns the class's "module.name", or "" when the class is not
// a named global.
func (o *pyObject) ClassName() string {
	if g, ok := o.Class.(*pyGlobal); ok {
		return g.FullName()
	}
	return ""
}

// StateDict returns the object's attribute dict: the BUILD state when it is
// a dict, or the first element of a (dict, slots) state tuple.
func (o *pyObject) StateDict() *pyDict {
	switch s := o.State.(type) {
	case *pyDict:
		return s
	case pyTuple:
		if len(s) == 2 {
			if d, ok := s[0].(*pyDict); ok {
				return d
			}
			if d, ok := s[1].(*pyDict); ok {
				return d
			}
		}
	}
	return nil
}

// quantizedTensor is a tensor rebuilt by torch._utils._rebuild_qtensor. The
// reader does not dequantize: it records the tensor and skips it.
type quantizedTensor struct {
	Tensor *Tensor
	Scheme string
}

// maxNameBits bounds the integers that keyString and plainAttr format.
const maxNameBits = 1024

// keyString formats a dict key or list index as one component of a dotted
// tensor name.
func keyString(k any) (string, bool) {
	switch v := k.(type) {
	case string:
		return v, true
	case int64:
		return strconv.FormatInt(v, 10), true
	case int:
		return strconv.Itoa(v), true
	case []byte:
		return string(v), true
	case bool:
		return strconv.FormatBool(v), true
	case *big.Int:
		// Formatting a huge integer is slow, and no real name needs one.
		if v.BitLen() > maxNameBits {
			return "", false
		}
		return v.String(), true
	}
	return "", false
}

// joinName joins a dotted prefix and a component.
func joinName(prefix, name string) string {
	if prefix == "" {
		return name
	}
	if name == "" {
		return prefix
	}
	return prefix + "." + name
}
