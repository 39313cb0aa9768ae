package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/convbn-diag/convbn-diag/internal/atomicfile"
)

// safetensorsHeaderAlignment is the multiple that the header length is
// padded to with spaces, as huggingface/safetensors' writer does, so that
// the data of 8-byte dtypes start aligned.
const safetensorsHeaderAlignment = 8

// safetensorsDTypeName maps the dtypes WriteSafetensors can store to their
// safetensors names.
var safetensorsDTypeName = map[DType]string{}

func init() {
	for name, d := range safetensorsDTypes {
		safetensorsDTypeName[d] = name
	}
}

// WriteSafetensors writes tensors to w in the safetensors format: the
// 8-byte little-endian header length, a JSON header listing each tensor's
// dtype, shape and data_offsets in the order given, with metadata (when
// non-empty) under "__metadata__", then the tensors' bytes back to back.
// Tensor data stream from WriteData straight into w, so no tensor is held
// in memory. Supported dtypes are float64, float32, float16, bfloat16,
// int64, int32, int16, int8, uint8 and bool.
//
// Arguments are checked before anything is written. On a later error w
// holds a partial file, which WriteSafetensorsFile removes.
func WriteSafetensors(w io.Writer, tensors []TensorSource, metadata map[string]string) error {
	header, err := safetensorsHeader(tensors, metadata)
	if err != nil {
		return err
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(header)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return fmt.Errorf("write safetensors header: %w", err)
	}
	if _, err := w.Write(header); err != nil {
		return fmt.Errorf("write safetensors header: %w", err)
	}
	for i := range tensors {
		t := &tensors[i]
		want := t.NumElements() * int64(t.DType.Size())
		if err := copyTensorData(w, t, want); err != nil {
			return fmt.Errorf("write tensor %s: %w", t.Name, err)
		}
	}
	return nil
}

// safetensorsHeader validates the arguments and returns the padded JSON
// header.
func safetensorsHeader(tensors []TensorSource, metadata map[string]string) ([]byte, error) {
	seen := make(map[string]bool, len(tensors))
	for i := range tensors {
		t := &tensors[i]
		switch {
		case t.Name == "":
			return nil, fmt.Errorf("tensor %d has an empty name", i)
		case t.Name == safetensorsMetadataKey:
			return nil, fmt.Errorf("tensor %d: the name %s is reserved for metadata, so rename the tensor", i, safetensorsMetadataKey)
		case !utf8.ValidString(t.Name):
			return nil, fmt.Errorf("tensor %d: name %q is not valid UTF-8", i, t.Name)
		case seen[t.Name]:
			return nil, fmt.Errorf("tensor %s is listed twice", t.Name)
		case t.WriteData == nil:
			return nil, fmt.Errorf("tensor %s has no WriteData function", t.Name)
		}
		seen[t.Name] = true
		if _, ok := safetensorsDTypeName[t.DType]; !ok {
			return nil, fmt.Errorf("tensor %s: dtype %s cannot be written to safetensors, so convert it to a real or integer dtype", t.Name, t.DType)
		}
		if _, err := checkedNumel(t.Name, t.Shape); err != nil {
			return nil, err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(metadata)) {
		if !utf8.ValidString(k) || !utf8.ValidString(metadata[k]) {
			return nil, fmt.Errorf("metadata key %q or its value is not valid UTF-8", k)
		}
	}

	var b bytes.Buffer
	b.WriteByte('{')
	if len(metadata) > 0 {
		writeJSON(&b, safetensorsMetadataKey)
		b.WriteByte(':')
		writeJSON(&b, metadata) // encoding/json sorts the keys
	}
	var offset int64
	for i := range tensors {
		t := &tensors[i]
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		size := t.NumElements() * int64(t.DType.Size())
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		writeJSON(&b, t.Name)
		b.WriteString(`:{"dtype":`)
		writeJSON(&b, safetensorsDTypeName[t.DType])
		b.WriteString(`,"shape":`)
		writeJSON(&b, shape)
		fmt.Fprintf(&b, `,"data_offsets":[%d,%d]}`, offset, offset+size)
		offset += size
	}
	b.WriteByte('}')
	for b.Len()%safetensorsHeaderAlignment != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > maxSafetensorsHeader {
		return nil, fmt.Errorf("safetensors header of %d bytes exceeds the format's limit of %d; store fewer tensors or less metadata per file", b.Len(), maxSafetensorsHeader)
	}
	return b.Bytes(), nil
}

// checkedNumel returns the element count of shape, rejecting negative
// dimensions and counts that do not fit in 62 bits.
func checkedNumel(name string, shape []int) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("tensor %s: shape %v has a negative dimension", name, shape)
		}
		if d > 0 && n > (1<<62)/int64(d) {
			return 0, fmt.Errorf("tensor %s: shape %v has too many elements", name, shape)
		}
		n *= int64(d)
	}
	return n, nil
}

// writeJSON appends v encoded as JSON without HTML escaping. The values
// passed here (strings, string maps, int slices) always encode.
func writeJSON(b *bytes.Buffer, v any) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("checkpoint: encode %T as JSON: %v", v, err))
	}
	b.Truncate(b.Len() - 1) // Encode ends with a newline
}

// WriteSafetensorsFile writes tensors to path with WriteSafetensors,
// atomically: the file goes to a temporary file in path's folder, which is
// synced to disk and then renamed over path. On any error the temporary
// file is removed, and an existing file at path is left as it was.
func WriteSafetensorsFile(path string, tensors []TensorSource, metadata map[string]string) error {
	return atomicfile.Write(path, func(w io.Writer) error {
		if err := WriteSafetensors(w, tensors, metadata); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	})
}
