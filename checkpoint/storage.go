package checkpoint

import (
	"encoding/binary"
	"strings"
)

// storageDTypes maps PyTorch storage class names, without the "Storage"
// suffix, to element types.
var storageDTypes = map[string]DType{
	"Float":         Float32,
	"Double":        Float64,
	"Half":          Float16,
	"BFloat16":      BFloat16,
	"Long":          Int64,
	"Int":           Int32,
	"Short":         Int16,
	"Char":          Int8,
	"Byte":          Uint8,
	"Bool":          Bool,
	"ComplexFloat":  Complex64,
	"ComplexDouble": Complex128,
	"QInt8":         QInt8,
	"QUInt8":        QUInt8,
	"QInt32":        QInt32,
	// Sub-byte quantized types pack several values per byte; their storage
	// counts bytes.
	"QUInt4x2": Uint8,
	"QUInt2x4": Uint8,
	// An untyped storage counts bytes.
	"Untyped": Uint8,
}

// storageDType returns the element type of a storage class global such as
// torch.FloatStorage, torch.cuda.HalfStorage or torch.UntypedStorage.
func storageDType(v any) (DType, string, bool) {
	g, ok := v.(*pyGlobal)
	if !ok {
		return Invalid, typeName(v), false
	}
	name := g.FullName()
	if g.Module != "torch" && g.Module != "torch.cuda" && g.Module != "torch.storage" {
		return Invalid, name, false
	}
	d, ok := storageDTypes[strings.TrimSuffix(g.Name, "Storage")]
	return d, name, ok
}

// storageRef is the decoded persistent id of a storage:
// ('storage', storage_type, key, location, numel[, view_metadata]).
type storageRef struct {
	dtype    DType
	class    string
	key      string
	location string
	numel    int64
	// view is the legacy view metadata (view_key, offset, view_size), or
	// nil when the reference is to the whole storage.
	view pyTuple
}

// parseStorageRef validates a persistent id. It returns an error kind and
// message when the id is malformed.
func parseStorageRef(pid any, wantLen int) (*storageRef, string) {
	t, ok := pid.(pyTuple)
	if !ok {
		return nil, "persistent id is a " + typeName(pid) + ", not a tuple"
	}
	if len(t) == 0 {
		return nil, "persistent id is an empty tuple"
	}
	tag, _ := t[0].(string)
	if b, ok := t[0].([]byte); ok {
		tag = string(b)
	}
	if tag != "storage" {
		return nil, "persistent id of type " + truncateText(tag) + " is not a storage"
	}
	if len(t) < wantLen {
		return nil, "storage persistent id has too few fields"
	}
	d, class, ok := storageDType(t[1])
	if !ok {
		return nil, "unsupported storage type " + truncateText(class)
	}
	key, ok := keyString(t[2])
	if !ok {
		return nil, "storage key is a " + typeName(t[2]) + ", not a string"
	}
	loc, _ := t[3].(string)
	numel, ok := t[4].(int64)
	if !ok || numel < 0 {
		return nil, "element count of storage " + truncateText(key) + " is not a non-negative int"
	}
	ref := &storageRef{dtype: d, class: class, key: key, location: loc, numel: numel}
	if len(t) > 5 {
		if v, ok := t[5].(pyTuple); ok {
			ref.view = v
		}
	}
	return ref, ""
}

// byteOrder returns the binary.ByteOrder for a byteorder record.
func byteOrder(little bool) binary.ByteOrder {
	if little {
		return binary.LittleEndian
	}
	return binary.BigEndian
}
