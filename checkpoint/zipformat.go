package checkpoint

import (
	"archive/zip"
	"fmt"
	"io"
	"strings"
)

// maxPickleSize bounds the uncompressed size of data.pkl. The unpickler
// streams it, so this only stops a zip entry that declares an absurd size.
const maxPickleSize = 1 << 30

// maxDeflateRatio is the largest ratio of uncompressed to compressed size
// that deflate can reach (about 1032:1), so a compressed storage entry
// declaring more is damaged or hostile.
// NOTE: a genuine zip bomb within this ratio still passes, and reading its
// tensors allocates up to about 1000 times the file's size.
const maxDeflateRatio = 1032

// zipReader reads a PyTorch zip checkpoint (torch.save since 1.6).
type zipReader struct {
	path    string
	r       io.ReaderAt
	size    int64
	root    string
	entries map[string]*zip.File
	little  bool

	storages map[string]*Storage // by key and dtype
}

// newZipReader reads the central directory of a zip archive. format
// labels the errors: FormatTorchZip or FormatTorchScript.
func newZipReader(path string, r io.ReaderAt, size int64, format Format) (*zipReader, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, &FormatError{Path: path, Format: format, Offset: -1, Err: ErrTruncated,
			Reason: fmt.Sprintf("truncated or damaged zip archive (%v); copy or download the file again", err)}
	}
	if len(zr.File) == 0 {
		return nil, &FormatError{Path: path, Format: format, Offset: -1, Err: ErrMissingRecord,
			Reason: "zip archive is empty; it is not a PyTorch checkpoint"}
	}
	z := &zipReader{path: path, r: r, size: size, entries: make(map[string]*zip.File), storages: make(map[string]*Storage), little: true}
	for _, f := range zr.File {
		z.entries[f.Name] = f
	}

	// torch's reader takes the archive's root folder from the first entry.
	first := zr.File[0].Name
	if i := strings.IndexByte(first, '/'); i >= 0 {
		z.root = first[:i+1]
	}
	return z, nil
}

// openZip returns the top-level object of a PyTorch zip checkpoint and the
// unpickler that decoded it.
func openZip(z *zipReader) (any, *unpickler, error) {
	pkl, ok := z.entries[z.root+"data.pkl"]
	if !ok {
		// torch takes the root from the first entry, but an archive
		// repacked by another tool may list its records in any order.
		pkl, ok = z.findDataPickle()
	}
	if !ok {
		return nil, nil, &FormatError{Path: z.path, Format: FormatTorchZip, Offset: -1, Err: ErrMissingRecord,
			Reason: fmt.Sprintf("zip archive has no %sdata.pkl record, so it is not a PyTorch checkpoint written by torch.save", z.root)}
	}
	return z.loadPickle(pkl, FormatTorchZip)
}

// loadPickle reads the byte order record, then decodes the data.pkl record
// pkl with storages resolved against the archive. format labels the errors.
func (z *zipReader) loadPickle(pkl *zip.File, format Format) (any, *unpickler, error) {
	relabel := func(err error) error {
		if fe, ok := err.(*FormatError); ok {
			fe.Format = format
		}
		return err
	}
	if err := z.readByteOrder(); err != nil {
		return nil, nil, relabel(err)
	}

	if pkl.UncompressedSize64 > maxPickleSize {
		return nil, nil, &FormatError{Path: z.path, Format: format, Record: pkl.Name, Offset: -1, Err: ErrDeclaredSize,
			Reason: fmt.Sprintf("data.pkl declares %d bytes, more than the limit of %d", pkl.UncompressedSize64, maxPickleSize)}
	}
	rc, err := pkl.Open()
	if err != nil {
		return nil, nil, &FormatError{Path: z.path, Format: format, Record: pkl.Name, Offset: -1, Err: ErrTruncated,
			Reason: fmt.Sprintf("cannot open the record: %v", err)}
	}
	defer rc.Close()
	u := newUnpickler(rc, int64(pkl.UncompressedSize64), z.path, pkl.Name, 0)
	u.persistentLoad = z.persistentLoad
	obj, err := u.load()
	if err != nil {
		return nil, nil, relabel(err)
	}
	return obj, u, nil
}

// findDataPickle returns the only "<root>/data.pkl" entry of the archive
// and sets z.root to its root, or reports false when there is none or more
// than one.
func (z *zipReader) findDataPickle() (*zip.File, bool) {
	var found *zip.File
	for name, f := range z.entries {
		i := strings.IndexByte(name, '/')
		if i < 0 || name[i+1:] != "data.pkl" {
			continue
		}
		if found != nil {
			return nil, false
		}
		found = f
	}
	if found == nil {
		return nil, false
	}
	z.root = found.Name[:len(found.Name)-len("data.pkl")]
	return found, true
}

// readByteOrder reads the optional byteorder record ("little" or "big").
func (z *zipReader) readByteOrder() error {
	f, ok := z.entries[z.root+"byteorder"]
	if !ok {
		return nil
	}
	rc, err := f.Open()
	if err != nil {
		return &FormatError{Path: z.path, Format: FormatTorchZip, Record: f.Name, Offset: -1, Err: ErrTruncated, Reason: fmt.Sprintf("cannot open the record: %v", err)}
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 16))
	if err != nil {
		return &FormatError{Path: z.path, Format: FormatTorchZip, Record: f.Name, Offset: -1, Err: ErrTruncated, Reason: fmt.Sprintf("cannot read the record: %v", err)}
	}
	switch strings.TrimSpace(string(b)) {
	case "little":
		z.little = true
	case "big":
		z.little = false
	default:
		return &FormatError{Path: z.path, Format: FormatTorchZip, Record: f.Name, Offset: -1, Err: ErrMalformed,
			Reason: fmt.Sprintf("byteorder record is %q, want \"little\" or \"big\"", truncateText(string(b)))}
	}
	return nil
}

// persistentLoad resolves ('storage', storage_type, key, location, numel)
// to a Storage over the entry data/<key>, after checking that the entry
// holds numel elements.
func (z *zipReader) persistentLoad(pid any) (any, error) {
	ref, msg := parseStorageRef(pid, 5)
	if ref == nil {
		return nil, &FormatError{Path: z.path, Format: FormatTorchZip, Offset: -1, Err: ErrMalformed, Reason: msg}
	}
	cacheKey := ref.key + "\x00" + ref.dtype.String()
	if st, ok := z.storages[cacheKey]; ok {
		if st.Len != ref.numel {
			return nil, &FormatError{Path: z.path, Format: FormatTorchZip, Offset: -1, Tensor: "storage " + ref.key, Err: ErrMalformed,
				Reason: fmt.Sprintf("storage is referenced with %d and with %d elements", st.Len, ref.numel)}
		}
		return st, nil
	}

	name := z.root + "data/" + ref.key
	f, ok := z.entries[name]
	if !ok {
		return nil, &FormatError{Path: z.path, Format: FormatTorchZip, Offset: -1, Tensor: "storage " + ref.key, Err: ErrMissingRecord,
			Reason: fmt.Sprintf("record %s is missing; the archive is incomplete", name)}
	}
	elem := int64(ref.dtype.Size())
	have := int64(f.UncompressedSize64)
	if f.Method != zip.Store && (f.CompressedSize64 > uint64(z.size) || f.UncompressedSize64 > f.CompressedSize64*maxDeflateRatio+1024) {
		return nil, &FormatError{Path: z.path, Format: FormatTorchZip, Record: name, Offset: -1, Tensor: "storage " + ref.key, Err: ErrDeclaredSize,
			Reason: fmt.Sprintf("compressed record of %d bytes declares %d uncompressed bytes, more than deflate can produce; the file is damaged", f.CompressedSize64, f.UncompressedSize64)}
	}
	if f.UncompressedSize64 > 1<<62 || ref.numel > have/elem {
		return nil, &FormatError{Path: z.path, Format: FormatTorchZip, Record: name, Offset: -1, Tensor: "storage " + ref.key, Err: ErrDeclaredSize,
			Reason: fmt.Sprintf("storage declares %d elements of %d bytes but the record holds only %d bytes; the file is damaged", ref.numel, elem, have)}
	}

	var src io.ReaderAt
	var base int64
	if f.Method == zip.Store {
		off, err := f.DataOffset()
		if err != nil {
			return nil, &FormatError{Path: z.path, Format: FormatTorchZip, Record: name, Offset: -1, Err: ErrTruncated, Reason: fmt.Sprintf("cannot locate the record's data: %v", err)}
		}
		if off < 0 || ref.numel*elem > z.size-off {
			return nil, &FormatError{Path: z.path, Format: FormatTorchZip, Record: name, Offset: off, Tensor: "storage " + ref.key, Err: ErrTruncated,
				Reason: fmt.Sprintf("storage needs %d bytes but the file ends %d bytes after the record starts", ref.numel*elem, z.size-off)}
		}
		src, base = z.r, off
	} else {
		src = &zipEntryReaderAt{f: f}
	}
	st := NewFileStorage(ref.key, ref.dtype, ref.numel, src, base, byteOrder(z.little), z.path)
	z.storages[cacheKey] = st
	return st, nil
}

// zipEntryReaderAt reads a compressed zip entry at an offset by
// decompressing it from the start, never past its declared size.
// NOTE: every ReadAt decompresses from the entry's first byte, so reading
// many tensors that share one large deflated storage takes quadratic time.
// torch.save stores entries uncompressed, so only re-zipped files pay this.
type zipEntryReaderAt struct {
	f *zip.File
}

// ReadAt implements io.ReaderAt.
func (z *zipEntryReaderAt) ReadAt(p []byte, off int64) (int, error) {
	size := int64(z.f.UncompressedSize64)
	if off < 0 || off >= size {
		return 0, io.EOF
	}
	rc, err := z.f.Open()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, off); err != nil {
		return 0, fmt.Errorf("decompress %s: %w", z.f.Name, err)
	}
	n, err := io.ReadFull(io.LimitReader(rc, size-off), p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
