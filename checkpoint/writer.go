package checkpoint

import (
	"archive/zip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultTorchRoot is the archive folder WriteTorch uses when
// TorchWriteOptions.Root is empty. torch.save 1.13 uses the same name when
// it writes to a file object.
const DefaultTorchRoot = "archive"

// torchDataAlignment is the byte alignment of every storage entry's data in
// the archive. torch.save 1.13 pads its storage entries the same way.
const torchDataAlignment = 64

// torchFormatVersion is the content of the archive's version entry, as
// torch.save 1.13 writes it.
const torchFormatVersion = "3\n"

// TensorSource is one tensor for WriteTorch: its name, element type and
// shape, and a function that streams its elements.
type TensorSource struct {
	// Name is the state-dict key, such as "features.1.running_var".
	Name  string
	DType DType
	// Shape lists the size of each dimension. An empty shape is a scalar.
	Shape []int
	// WriteData writes the elements in row-major order as little-endian
	// values of DType, exactly NumElements()·DType.Size() bytes in total.
	// WriteTorch calls it once and rejects any other byte count.
	WriteData func(w io.Writer) error
}

// NumElements returns the product of the shape (1 for a scalar).
func (s *TensorSource) NumElements() int64 {
	n := int64(1)
	for _, d := range s.Shape {
		n *= int64(d)
	}
	return n
}

// TorchWriteOptions are the optional settings of WriteTorch.
type TorchWriteOptions struct {
	// Root is the folder that contains every entry of the zip archive,
	// DefaultTorchRoot when empty.
	Root string
	// Metadata holds strings stored beside the weights. When it or Layers
	// is non-empty, the pickled top-level object is the dict
	// {"state_dict": OrderedDict, MetadataObjectKey: {str: str}} instead
	// of the bare OrderedDict.
	Metadata map[string]string
	// Layers, when non-nil, is stored in the metadata as a JSON array under
	// MetadataLayersKey, together with MetadataFormatKey = MetadataFormat.
	// Metadata must then not set either key itself.
	Layers []LayerSpec
}

// torchStorageClass maps the dtypes WriteTorch can store to the storage
// class names that torch.load(weights_only=True) accepts.
var torchStorageClass = map[DType]string{
	Float32:  "FloatStorage",
	Float64:  "DoubleStorage",
	Float16:  "HalfStorage",
	BFloat16: "BFloat16Storage",
	Int64:    "LongStorage",
}

// WriteTorch writes tensors to w as a PyTorch zip checkpoint that
// torch.load(path, weights_only=True) reads (checked against torch 1.13):
// the state dict is a collections.OrderedDict in the order given, and each
// tensor is contiguous and has its own storage. Supported dtypes are
// float32, float64, float16, bfloat16 and int64.
//
// The archive holds <root>/data.pkl (pickle protocol 2), <root>/byteorder
// ("little"), one stored (uncompressed) entry <root>/data/<i> per tensor
// whose data starts at a multiple of 64 bytes from the start of w, and
// <root>/version. Tensor data are streamed from WriteData straight into w,
// so no tensor is held in memory.
//
// On error, w holds a partial archive, which WriteTorchFile removes.
func WriteTorch(w io.Writer, tensors []TensorSource, opts *TorchWriteOptions) error {
	if opts == nil {
		opts = &TorchWriteOptions{}
	}
	root := opts.Root
	if root == "" {
		root = DefaultTorchRoot
	}
	if err := checkTorchRoot(root); err != nil {
		return err
	}
	if err := checkTensorSources(tensors); err != nil {
		return err
	}
	metadata, err := torchMetadata(opts)
	if err != nil {
		return err
	}
	pkl := torchPickle(tensors, metadata)

	counter := &countingWriter{w: w}
	zw := zip.NewWriter(counter)
	aw := &alignedZipWriter{zw: zw, counter: counter, lastSize: -1}

	if err := aw.writeEntry(root+"/data.pkl", false, func(ew io.Writer) error {
		_, err := ew.Write(pkl)
		return err
	}); err != nil {
		return fmt.Errorf("write data.pkl: %w", err)
	}
	if err := aw.writeEntry(root+"/byteorder", false, func(ew io.Writer) error {
		_, err := io.WriteString(ew, "little")
		return err
	}); err != nil {
		return fmt.Errorf("write byteorder: %w", err)
	}
	for i := range tensors {
		t := &tensors[i]
		want := t.NumElements() * int64(t.DType.Size())
		err := aw.writeEntry(root+"/data/"+strconv.Itoa(i), true, func(ew io.Writer) error {
			return copyTensorData(ew, t, want)
		})
		if err != nil {
			return fmt.Errorf("write tensor %s: %w", t.Name, err)
		}
	}
	if err := aw.writeEntry(root+"/version", false, func(ew io.Writer) error {
		_, err := io.WriteString(ew, torchFormatVersion)
		return err
	}); err != nil {
		return fmt.Errorf("write version: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write zip central directory: %w", err)
	}
	return nil
}

// checkTorchRoot rejects archive folder names that torch's reader would
// split or misread.
func checkTorchRoot(root string) error {
	if root == "." || root == ".." || strings.ContainsAny(root, "/\\") || !utf8.ValidString(root) {
		return fmt.Errorf("invalid archive root %q: use a plain folder name such as %q", root, DefaultTorchRoot)
	}
	return nil
}

// checkTensorSources validates names, dtypes, shapes and data functions
// before anything is written, so that a bad argument never leaves half an
// archive behind.
func checkTensorSources(tensors []TensorSource) error {
	seen := make(map[string]bool, len(tensors))
	for i := range tensors {
		t := &tensors[i]
		if t.Name == "" {
			return fmt.Errorf("tensor %d has an empty name", i)
		}
		if !utf8.ValidString(t.Name) {
			return fmt.Errorf("tensor %d: name %q is not valid UTF-8", i, t.Name)
		}
		if seen[t.Name] {
			return fmt.Errorf("tensor %s is listed twice", t.Name)
		}
		seen[t.Name] = true
		if _, ok := torchStorageClass[t.DType]; !ok {
			return fmt.Errorf("tensor %s: dtype %s cannot be written, so convert it to float32, float64, float16, bfloat16 or int64", t.Name, t.DType)
		}
		n := int64(1)
		for _, d := range t.Shape {
			if d < 0 {
				return fmt.Errorf("tensor %s: shape %v has a negative dimension", t.Name, t.Shape)
			}
			if d > 0 && n > (1<<62)/int64(d) {
				return fmt.Errorf("tensor %s: shape %v has too many elements", t.Name, t.Shape)
			}
			n *= int64(d)
		}
		if t.WriteData == nil {
			return fmt.Errorf("tensor %s has no WriteData function", t.Name)
		}
	}
	return nil
}

// torchMetadata merges opts.Metadata and opts.Layers into the string map
// stored beside the state dict, or returns nil when there is none.
func torchMetadata(opts *TorchWriteOptions) (map[string]string, error) {
	if len(opts.Metadata) == 0 && opts.Layers == nil {
		return nil, nil
	}
	out := maps.Clone(opts.Metadata)
	if out == nil {
		out = make(map[string]string)
	}
	for _, k := range slices.Sorted(maps.Keys(out)) {
		if !utf8.ValidString(k) || !utf8.ValidString(out[k]) {
			return nil, fmt.Errorf("metadata key %q or its value is not valid UTF-8", k)
		}
	}
	if opts.Layers != nil {
		for _, k := range []string{MetadataLayersKey, MetadataFormatKey} {
			if _, ok := out[k]; ok {
				return nil, fmt.Errorf("metadata key %q is set both in Metadata and by Layers, so remove it from Metadata", k)
			}
		}
		layers, err := json.Marshal(opts.Layers)
		if err != nil {
			return nil, fmt.Errorf("encode layer list as JSON: %w", err)
		}
		out[MetadataLayersKey] = string(layers)
		out[MetadataFormatKey] = MetadataFormat
	}
	return out, nil
}

// copyTensorData runs t.WriteData into w and checks that it wrote exactly
// want bytes.
func copyTensorData(w io.Writer, t *TensorSource, want int64) error {
	lw := &exactWriter{w: w, limit: want}
	err := t.WriteData(lw)
	if lw.overflow {
		return fmt.Errorf("WriteData wrote more than the %d bytes that %d %s elements of shape %v take", want, t.NumElements(), t.DType, t.Shape)
	}
	if err != nil {
		return err
	}
	if lw.n != want {
		return fmt.Errorf("WriteData wrote %d bytes, but %d %s elements of shape %v take %d", lw.n, t.NumElements(), t.DType, t.Shape, want)
	}
	return nil
}

var errTooManyBytes = errors.New("more bytes than the tensor's shape and dtype take")

// exactWriter passes at most limit bytes to w and records any attempt to
// write more.
type exactWriter struct {
	w        io.Writer
	n, limit int64
	overflow bool
}

func (e *exactWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > e.limit-e.n {
		e.overflow = true
		return 0, errTooManyBytes
	}
	n, err := e.w.Write(p)
	e.n += int64(n)
	return n, err
}

// countingWriter counts the bytes that reach w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// alignedZipWriter adds stored zip entries and pads the local header of
// aligned entries so that their data start at a multiple of
// torchDataAlignment.
type alignedZipWriter struct {
	zw      *zip.Writer
	counter *countingWriter
	// lastSize is the byte count of the entry written last, or -1 before
	// the first entry.
	lastSize int64
}

// Zip layout constants (APPNOTE.TXT 4.3.7 and 4.3.9): the fixed part of a
// local file header, the header of an extra field, and the data descriptor
// that follows each streamed entry (with 8-byte sizes from 4 GiB on).
const (
	zipLocalHeaderLen      = 30
	zipExtraHeaderLen      = 4
	zipDataDescriptorLen   = 16
	zipDataDescriptor64Len = 24
	zipMaxUint32           = 1<<32 - 1
	// paddingExtraID is the extra-field id torch.save uses for its padding
	// ("FB" read as a little-endian uint16). Readers skip unknown ids.
	paddingExtraID = 'F' | 'B'<<8
)

// writeEntry adds one stored entry called name whose content write
// produces. The zip package computes the CRC-32 and sizes while the data
// streams and puts them in a data descriptor after the data, as torch.save
// does.
func (a *alignedZipWriter) writeEntry(name string, aligned bool, write func(io.Writer) error) error {
	fh := &zip.FileHeader{
		Name:   name,
		Method: zip.Store,
		// Set the UTF-8 flag as torch does. The date is 1980-01-01, so
		// that the output does not depend on the clock.
		Flags:        0x800,
		ModifiedDate: 1<<5 | 1,
	}
	var dataStart int64
	if aligned {
		if err := a.zw.Flush(); err != nil {
			return err
		}
		// CreateHeader first finishes the previous entry by writing its
		// data descriptor, so the header starts after that descriptor.
		headerStart := a.counter.n
		if a.lastSize >= zipMaxUint32 {
			headerStart += zipDataDescriptor64Len
		} else if a.lastSize >= 0 {
			headerStart += zipDataDescriptorLen
		}
		start := headerStart + zipLocalHeaderLen + int64(len(name)) + zipExtraHeaderLen
		pad := (torchDataAlignment - start%torchDataAlignment) % torchDataAlignment
		dataStart = start + pad
		extra := make([]byte, zipExtraHeaderLen+pad)
		binary.LittleEndian.PutUint16(extra[0:], paddingExtraID)
		binary.LittleEndian.PutUint16(extra[2:], uint16(pad))
		for i := zipExtraHeaderLen; i < len(extra); i++ {
			extra[i] = 'Z'
		}
		fh.Extra = extra
	}
	ew, err := a.zw.CreateHeader(fh)
	if err != nil {
		return err
	}
	if aligned {
		if err := a.zw.Flush(); err != nil {
			return err
		}
		if a.counter.n != dataStart {
			// The zip package laid out the header differently than
			// computed above, so reject the misaligned archive.
			return fmt.Errorf("data of zip entry %s starts at byte %d instead of the aligned byte %d: archive/zip laid out the header differently than this writer assumes", name, a.counter.n, dataStart)
		}
	}
	cw := &countingWriter{w: ew}
	err = write(cw)
	a.lastSize = cw.n
	return err
}
