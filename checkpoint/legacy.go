package checkpoint

import (
	"fmt"
	"io"
	"math/big"
)

// legacyMagic is the number torch.save wrote first in the pre-zip format.
var legacyMagic, _ = new(big.Int).SetString("1950a86a20f9469cfc6c", 16)

// legacyProtocol is the only legacy protocol version torch ever wrote.
const legacyProtocol = 1001

// legacyReader reads a legacy PyTorch checkpoint (torch.save before 1.6):
// five pickles (magic number, protocol, sys_info, the object, the storage
// keys) followed by each storage as an int64 element count and raw data.
type legacyReader struct {
	path   string
	r      io.ReaderAt
	size   int64
	little bool

	// roots are the storages by key; views are legacy storage views whose
	// base is known only once their root storage is located.
	roots map[string]*Storage
	views []legacyView
	// globals collects the globals of all five pickles, because torch.load
	// unpickles each of them without restrictions, and the module classes
	// that 'module' persistent ids name.
	globals map[string]bool
}

type legacyView struct {
	view, root *Storage
	offset     int64 // in elements of root
}

// openLegacy returns the top-level object of a legacy checkpoint and the
// unpickler that decoded it.
func openLegacy(path string, r io.ReaderAt, size int64) (any, *unpickler, error) {
	l := &legacyReader{path: path, r: r, size: size, little: true, roots: make(map[string]*Storage), globals: make(map[string]bool)}
	var off int64

	magic, _, n, err := l.pickle(off, "magic number pickle", nil)
	if err != nil {
		return nil, nil, err
	}
	if !isLegacyMagic(magic) {
		return nil, nil, &FormatError{Path: path, Format: FormatTorchLegacy, Offset: -1, Err: ErrUnknownFormat,
			Reason: "file is a pickle but not a PyTorch checkpoint (it lacks torch.save's magic number)"}
	}
	off += n

	proto, _, n, err := l.pickle(off, "protocol pickle", nil)
	if err != nil {
		return nil, nil, err
	}
	if p, ok := proto.(int64); !ok || p != legacyProtocol {
		return nil, nil, &FormatError{Path: path, Format: FormatTorchLegacy, Record: "protocol pickle", Offset: off, Err: ErrMalformed,
			Reason: fmt.Sprintf("legacy protocol version is a %s, want %d", typeName(proto), legacyProtocol)}
	}
	off += n

	info, _, n, err := l.pickle(off, "sys_info pickle", nil)
	if err != nil {
		return nil, nil, err
	}
	if d, ok := info.(*pyDict); ok {
		if v, ok := d.Get("little_endian"); ok {
			if b, ok := v.(bool); ok {
				l.little = b
			}
		}
	}
	off += n

	obj, u, n, err := l.pickle(off, "object pickle", l.persistentLoad)
	if err != nil {
		return nil, nil, err
	}
	off += n

	keys, _, n, err := l.pickle(off, "storage key pickle", nil)
	if err != nil {
		return nil, nil, err
	}
	off += n
	if err := l.locateStorages(keys, off); err != nil {
		return nil, nil, err
	}
	for g := range l.globals {
		u.globals[g] = true
	}
	return obj, u, nil
}

func isLegacyMagic(v any) bool {
	switch m := v.(type) {
	case *big.Int:
		return m.Cmp(legacyMagic) == 0
	}
	return false
}

// pickle decodes the pickle that starts at byte off and returns its value,
// its unpickler and its length in bytes.
func (l *legacyReader) pickle(off int64, record string, load func(any) (any, error)) (any, *unpickler, int64, error) {
	if off >= l.size {
		return nil, nil, 0, &FormatError{Path: l.path, Format: FormatTorchLegacy, Record: record, Offset: off, Err: ErrTruncated,
			Reason: "file ends before this pickle; it is truncated"}
	}
	u := newUnpickler(io.NewSectionReader(l.r, off, l.size-off), l.size-off, l.path, record, off)
	u.persistentLoad = load
	v, err := u.load()
	if err != nil {
		if fe, ok := err.(*FormatError); ok {
			fe.Format = FormatTorchLegacy
		}
		return nil, nil, 0, err
	}
	for g := range u.globals {
		l.globals[g] = true
	}
	return v, u, u.pos, nil
}

// persistentLoad resolves the legacy persistent ids:
// ('storage', storage_type, root_key, location, numel, view_metadata) and
// ('module', class, source_file, source), which names a module class.
func (l *legacyReader) persistentLoad(pid any) (any, error) {
	if t, ok := pid.(pyTuple); ok && len(t) >= 2 {
		if tag, _ := t[0].(string); tag == "module" {
			if g, ok := t[1].(*pyGlobal); ok {
				l.globals[g.FullName()] = true
			}
			return t[1], nil
		}
	}
	ref, msg := parseStorageRef(pid, 5)
	if ref == nil {
		return nil, &FormatError{Path: l.path, Format: FormatTorchLegacy, Offset: -1, Err: ErrMalformed, Reason: msg}
	}
	elem := int64(ref.dtype.Size())
	if ref.numel > l.size/elem {
		return nil, &FormatError{Path: l.path, Format: FormatTorchLegacy, Offset: -1, Tensor: "storage " + ref.key, Err: ErrDeclaredSize,
			Reason: fmt.Sprintf("storage declares %d elements of %d bytes but the whole file has only %d bytes; the file is damaged", ref.numel, elem, l.size)}
	}
	root, ok := l.roots[ref.key]
	if !ok {
		root = NewFileStorage(ref.key, ref.dtype, ref.numel, nil, 0, byteOrder(l.little), l.path)
		l.roots[ref.key] = root
	} else if root.DType != ref.dtype || root.Len != ref.numel {
		return nil, &FormatError{Path: l.path, Format: FormatTorchLegacy, Offset: -1, Tensor: "storage " + ref.key, Err: ErrMalformed,
			Reason: fmt.Sprintf("storage is referenced as %d %s elements and as %d %s elements", root.Len, root.DType, ref.numel, ref.dtype)}
	}
	if ref.view == nil {
		return root, nil
	}

	// A view of part of the root storage: (view_key, offset, view_size).
	if len(ref.view) != 3 {
		return nil, &FormatError{Path: l.path, Format: FormatTorchLegacy, Offset: -1, Tensor: "storage " + ref.key, Err: ErrMalformed,
			Reason: "storage view metadata is not (view_key, offset, size)"}
	}
	viewKey, ok1 := keyString(ref.view[0])
	offset, ok2 := ref.view[1].(int64)
	viewSize, ok3 := ref.view[2].(int64)
	if !ok1 || !ok2 || !ok3 || offset < 0 || viewSize < 0 || offset > root.Len || viewSize > root.Len-offset {
		return nil, &FormatError{Path: l.path, Format: FormatTorchLegacy, Offset: -1, Tensor: "storage " + ref.key, Err: ErrMalformed,
			Reason: fmt.Sprintf("storage view does not fit inside its root storage of %d elements", root.Len)}
	}
	view := NewFileStorage(viewKey, ref.dtype, viewSize, nil, 0, byteOrder(l.little), l.path)
	l.views = append(l.views, legacyView{view: view, root: root, offset: offset})
	return view, nil
}

// locateStorages records where each storage's data starts, reading only the
// element count that precedes it.
func (l *legacyReader) locateStorages(keys any, off int64) error {
	list, ok := keys.(*pyList)
	if !ok {
		return &FormatError{Path: l.path, Format: FormatTorchLegacy, Record: "storage key pickle", Offset: -1, Err: ErrMalformed,
			Reason: fmt.Sprintf("storage key pickle holds a %s, not a list", typeName(keys))}
	}
	order := byteOrder(l.little)
	located := make(map[string]bool, len(list.Items))
	for i, item := range list.Items {
		key, ok := keyString(item)
		st := l.roots[key]
		if !ok || st == nil {
			return &FormatError{Path: l.path, Format: FormatTorchLegacy, Record: "storage key pickle", Offset: -1, Err: ErrMalformed,
				Reason: fmt.Sprintf("storage key %d is not used by any tensor in the object pickle", i)}
		}
		record := fmt.Sprintf("storage %s", key)
		var hdr [8]byte
		if _, err := l.r.ReadAt(hdr[:], off); err != nil {
			return &FormatError{Path: l.path, Format: FormatTorchLegacy, Record: record, Offset: off, Tensor: "storage " + key, Err: ErrTruncated,
				Reason: "file ends before this storage's element count; it is truncated"}
		}
		count := int64(order.Uint64(hdr[:]))
		if count != st.Len {
			return &FormatError{Path: l.path, Format: FormatTorchLegacy, Record: record, Offset: off, Tensor: "storage " + key, Err: ErrMalformed,
				Reason: fmt.Sprintf("storage holds %d elements but the pickle declares %d", count, st.Len)}
		}
		elem := int64(st.DType.Size())
		if count > (l.size-off-8)/elem {
			return &FormatError{Path: l.path, Format: FormatTorchLegacy, Record: record, Offset: off, Tensor: "storage " + key, Err: ErrTruncated,
				Reason: fmt.Sprintf("storage needs %d bytes but the file ends %d bytes later; it is truncated", count*elem, l.size-off-8)}
		}
		st.src, st.base = l.r, off+8
		located[key] = true
		off += 8 + count*elem
	}
	for key := range l.roots {
		if !located[key] {
			return &FormatError{Path: l.path, Format: FormatTorchLegacy, Record: "storage key pickle", Offset: -1, Tensor: "storage " + key, Err: ErrMissingRecord,
				Reason: "storage is used by a tensor but its data is missing from the file"}
		}
	}
	for _, v := range l.views {
		v.view.src = l.r
		v.view.base = v.root.base + v.offset*int64(v.root.DType.Size())
	}
	return nil
}
