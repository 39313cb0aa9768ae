package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// maxSafetensorsHeader bounds the JSON header of a safetensors file. The
// reference implementation (huggingface/safetensors) rejects headers over
// 100 MB with the same limit.
const maxSafetensorsHeader = 100_000_000

// safetensorsMetadataKey is the header entry that holds string metadata
// instead of a tensor.
const safetensorsMetadataKey = "__metadata__"

// safetensorsDTypes maps the safetensors dtype names this reader decodes to
// their DType.
var safetensorsDTypes = map[string]DType{
	"F64":  Float64,
	"F32":  Float32,
	"F16":  Float16,
	"BF16": BFloat16,
	"I64":  Int64,
	"I32":  Int32,
	"I16":  Int16,
	"I8":   Int8,
	"U8":   Uint8,
	"BOOL": Bool,
}

// safetensorsOtherSizes gives the element size in bytes of the safetensors
// dtypes that the reader skips, so that their offsets are still checked.
var safetensorsOtherSizes = map[string]int64{
	"U64": 8, "U32": 4, "U16": 2, "C64": 8,
	"F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1,
}

// safetensorsEntry is one tensor entry of the JSON header.
type safetensorsEntry struct {
	name    string
	DType   string   `json:"dtype"`
	Shape   []int64  `json:"shape"`
	Offsets []uint64 `json:"data_offsets"`
}

// openSafetensors reads a safetensors file: an 8-byte little-endian header
// length N, N bytes of JSON mapping each tensor name to its dtype, shape
// and [begin, end) byte offsets, then the tensor data. The offsets are
// relative to the first byte after the header, and the tensors must tile
// the data without gaps or overlaps, as the format requires.
func openSafetensors(path string, r io.ReaderAt, size int64) (*File, error) {
	fail := func(kind error, offset int64, tensor, format string, args ...any) error {
		return &FormatError{Path: path, Format: FormatSafetensors, Offset: offset, Tensor: tensor, Err: kind, Reason: fmt.Sprintf(format, args...)}
	}
	if size < 8 {
		return nil, fail(ErrTruncated, 0, "", "file has %d bytes, fewer than the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > maxSafetensorsHeader {
		return nil, fail(ErrDeclaredSize, 0, "", "header length %d exceeds the limit of %d bytes; the file is damaged or not a safetensors file", n, maxSafetensorsHeader)
	}
	if n > uint64(size-8) {
		return nil, fail(ErrTruncated, 0, "", "header length %d reaches beyond the end of the %d-byte file; copy or download the file again", n, size)
	}
	header := make([]byte, n)
	if _, err := r.ReadAt(header, 8); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}

	entries, metadata, err := parseSafetensorsHeader(header)
	if err != nil {
		var se *safetensorsError
		if errors.As(err, &se) {
			return nil, fail(ErrMalformed, 8+se.offset, se.tensor, "%s", se.msg)
		}
		return nil, fail(ErrMalformed, 8, "", "invalid JSON header: %v", err)
	}

	f := &File{Path: path, Format: FormatSafetensors, Metadata: metadata}
	dataStart := int64(8 + n)
	dataLen := uint64(size - dataStart)
	m := &Model{}
	var end uint64
	for _, e := range entries {
		begin, stop := e.Offsets[0], e.Offsets[1]
		switch {
		case stop < begin:
			return nil, fail(ErrMalformed, 8, e.name, "data_offsets [%d, %d] are reversed", begin, stop)
		case stop > dataLen:
			return nil, fail(ErrTruncated, 8, e.name, "data_offsets [%d, %d] reach beyond the %d data bytes of the file; copy or download the file again", begin, stop, dataLen)
		case begin < end:
			return nil, fail(ErrMalformed, 8, e.name, "data_offsets [%d, %d] overlap the previous tensor, which ends at %d", begin, stop, end)
		case begin > end:
			return nil, fail(ErrMalformed, 8, e.name, "data_offsets [%d, %d] leave a gap of %d bytes after the previous tensor, which the format forbids", begin, stop, begin-end)
		}
		end = stop

		numel, err := safetensorsNumel(e.Shape)
		if err != nil {
			return nil, fail(ErrMalformed, 8, e.name, "%v", err)
		}
		dtype, known := safetensorsDTypes[e.DType]
		elemSize := int64(dtype.Size())
		if !known {
			var sized bool
			elemSize, sized = safetensorsOtherSizes[e.DType]
			if !sized {
				f.Warnings = append(f.Warnings, fmt.Sprintf("skipped tensor %s: dtype %q is unknown to this reader, so its size was not checked", e.name, e.DType))
				f.Unread = append(f.Unread, e.name)
				continue
			}
		}
		if numel > math.MaxInt64/elemSize || uint64(numel*elemSize) != stop-begin {
			return nil, fail(ErrMalformed, 8, e.name, "data_offsets [%d, %d] span %d bytes, but %s of shape %v takes %d elements of %d bytes", begin, stop, stop-begin, e.DType, e.Shape, numel, elemSize)
		}
		if !known {
			f.Warnings = append(f.Warnings, fmt.Sprintf("skipped tensor %s: dtype %s cannot be decoded by this reader", e.name, e.DType))
			f.Unread = append(f.Unread, e.name)
			continue
		}

		shape := make([]int, len(e.Shape))
		for i, d := range e.Shape {
			shape[i] = int(d)
		}
		st := NewFileStorage(e.name, dtype, numel, r, dataStart+int64(begin), binary.LittleEndian, path)
		m.Tensors = append(m.Tensors, &Tensor{Name: e.name, DType: dtype, Shape: shape, Strides: ContiguousStrides(shape), Storage: st})
	}
	if end != dataLen {
		return nil, fail(ErrMalformed, dataStart+int64(end), "", "%d bytes after the last tensor are not indexed by the header, which the format forbids", dataLen-end)
	}
	if len(m.Tensors) > 0 {
		stripPrefix(m)
		f.Models = append(f.Models, m)
	}
	return f, nil
}

// safetensorsError is a header problem at a byte offset inside the header.
type safetensorsError struct {
	offset int64
	tensor string
	msg    string
}

func (e *safetensorsError) Error() string { return e.msg }

// parseSafetensorsHeader decodes the JSON header into tensor entries,
// sorted by their begin offset, and the __metadata__ strings.
func parseSafetensorsHeader(header []byte) ([]safetensorsEntry, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, &safetensorsError{msg: fmt.Sprintf("header is JSON %v, want an object", tok)}
	}

	var entries []safetensorsEntry
	var metadata map[string]string
	seen := map[string]bool{}
	for dec.More() {
		pos := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		name := tok.(string)
		if seen[name] {
			return nil, nil, &safetensorsError{offset: pos, tensor: name, msg: "name appears twice in the header"}
		}
		seen[name] = true

		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, err
		}
		if name == safetensorsMetadataKey {
			if err := json.Unmarshal(raw, &metadata); err != nil {
				return nil, nil, &safetensorsError{offset: pos, msg: fmt.Sprintf("%s must map strings to strings: %v", safetensorsMetadataKey, err)}
			}
			continue
		}
		e := safetensorsEntry{name: name}
		strict := json.NewDecoder(bytes.NewReader(raw))
		strict.DisallowUnknownFields()
		if err := strict.Decode(&e); err != nil {
			return nil, nil, &safetensorsError{offset: pos, tensor: name, msg: fmt.Sprintf("invalid entry %s: %v", truncateText(string(raw)), err)}
		}
		if e.DType == "" || e.Shape == nil || len(e.Offsets) != 2 {
			return nil, nil, &safetensorsError{offset: pos, tensor: name, msg: fmt.Sprintf("entry %s needs dtype, shape and two data_offsets", truncateText(string(raw)))}
		}
		entries = append(entries, e)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	// Writers pad the header with spaces, and JSON whitespace is all that
	// may follow the object.
	if rest := header[dec.InputOffset():]; len(strings.TrimRight(string(rest), " \t\r\n")) != 0 {
		return nil, nil, &safetensorsError{offset: dec.InputOffset(), msg: fmt.Sprintf("unexpected bytes %q after the JSON header", truncateText(string(rest)))}
	}

	sort.SliceStable(entries, func(i, j int) bool {
		a, b := entries[i].Offsets, entries[j].Offsets
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		return a[1] < b[1]
	})
	return entries, metadata, nil
}

// safetensorsNumel returns the element count of a header shape after
// checking its rank and dimensions.
func safetensorsNumel(shape []int64) (int64, error) {
	if len(shape) > maxTensorDims {
		return 0, fmt.Errorf("shape has %d dimensions, more than %d", len(shape), maxTensorDims)
	}
	n := int64(1)
	for _, d := range shape {
		if d < 0 || d > maxDimSize {
			return 0, fmt.Errorf("shape %v has a dimension outside [0, %d]", shape, int64(maxDimSize))
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("shape %v has more elements than fit in 64 bits", shape)
		}
		n *= d
	}
	return n, nil
}
