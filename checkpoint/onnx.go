package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// maxONNXSize is the largest ONNX file the reader accepts: protobuf
// messages cannot exceed 2 GiB, so larger models keep their weights in
// external data files, which this reader does not read.
const maxONNXSize = 2 << 30

// Field numbers of the onnx.proto messages the reader decodes, checked
// against onnx 1.12's Python descriptors.
const (
	onnxModelIRVersion     = 1
	onnxModelGraph         = 7
	onnxModelOpsetImport   = 8
	onnxModelMetadataProps = 14

	onnxOpsetDomain  = 1
	onnxOpsetVersion = 2

	onnxEntryKey   = 1
	onnxEntryValue = 2

	onnxGraphNode              = 1
	onnxGraphName              = 2
	onnxGraphInitializer       = 5
	onnxGraphInput             = 11
	onnxGraphOutput            = 12
	onnxGraphSparseInitializer = 15
	onnxValueInfoName          = 1
	onnxNodeInput              = 1
	onnxNodeOutput             = 2
	onnxNodeName               = 3
	onnxNodeOpType             = 4
	onnxNodeAttribute          = 5
	onnxNodeDomain             = 7
	onnxAttrName               = 1
	onnxAttrFloat              = 2
	onnxAttrInt                = 3
	onnxAttrString             = 4
	onnxAttrTensor             = 5
	onnxAttrFloats             = 7
	onnxAttrInts               = 8
	onnxAttrType               = 20
	onnxTensorDims             = 1
	onnxTensorDataType         = 2
	onnxTensorSegment          = 3
	onnxTensorFloatData        = 4
	onnxTensorInt32Data        = 5
	onnxTensorStringData       = 6
	onnxTensorInt64Data        = 7
	onnxTensorName             = 8
	onnxTensorRawData          = 9
	onnxTensorDoubleData       = 10
	onnxTensorUint64Data       = 11
	onnxTensorExternalData     = 13
	onnxTensorDataLocation     = 14
	onnxDataLocationExternal   = 1
	onnxAttributeTypeFloat     = 1
	onnxAttributeTypeInt       = 2
	onnxAttributeTypeString    = 3
	onnxAttributeTypeTensor    = 4
	onnxAttributeTypeFloats    = 6
	onnxAttributeTypeInts      = 7
	onnxTensorTypeFloat        = 1
	onnxTensorTypeUint8        = 2
	onnxTensorTypeInt8         = 3
	onnxTensorTypeInt16        = 5
	onnxTensorTypeInt32        = 6
	onnxTensorTypeInt64        = 7
	onnxTensorTypeBool         = 9
	onnxTensorTypeFloat16      = 10
	onnxTensorTypeDouble       = 11
	onnxTensorTypeBFloat16     = 16
)

// onnxDTypes maps ONNX TensorProto.DataType values to the DTypes the
// reader decodes.
var onnxDTypes = map[uint64]DType{
	onnxTensorTypeFloat:    Float32,
	onnxTensorTypeUint8:    Uint8,
	onnxTensorTypeInt8:     Int8,
	onnxTensorTypeInt16:    Int16,
	onnxTensorTypeInt32:    Int32,
	onnxTensorTypeInt64:    Int64,
	onnxTensorTypeBool:     Bool,
	onnxTensorTypeFloat16:  Float16,
	onnxTensorTypeDouble:   Float64,
	onnxTensorTypeBFloat16: BFloat16,
}

// onnxDecoder decodes one ONNX file held in memory. Offsets in errors are
// byte offsets into the file.
type onnxDecoder struct {
	path     string
	data     []byte
	src      io.ReaderAt // the file, which raw_data storages read from
	warnings []string
}

// protoField is one decoded protobuf field. For a length-delimited field,
// bytes holds the content and offset is the file offset of its first byte.
type protoField struct {
	num    protowire.Number
	typ    protowire.Type
	varint uint64
	fixed  uint64 // a fixed32 or fixed64 value
	bytes  []byte
	offset int64
}

// openONNX reads an ONNX ModelProto. The file is read into memory to
// decode the protobuf, but tensors stored in raw_data (and float_data
// written as one packed run) are read lazily from the file afterwards.
func openONNX(path string, r io.ReaderAt, size int64) (*File, error) {
	if size > maxONNXSize {
		return nil, &FormatError{Path: path, Format: FormatONNX, Offset: -1, Err: ErrUnsupportedFormat,
			Reason: fmt.Sprintf("file has %d bytes, more than the 2 GiB a protobuf message can hold; such models keep weights in external data, which this reader does not support", size)}
	}
	data := make([]byte, size)
	if _, err := r.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	d := &onnxDecoder{path: path, data: data, src: r}
	f := &File{Path: path, Format: FormatONNX}
	m := &Model{Graph: &Graph{Opsets: map[string]int64{}}}

	var graph *protoField
	err := d.fields(data, 0, "ModelProto", "", func(fd protoField) error {
		switch fd.num {
		case onnxModelGraph:
			if err := d.want(fd, protowire.BytesType, "ModelProto.graph", ""); err != nil {
				return err
			}
			if graph != nil {
				return d.fail(ErrMalformed, fd.offset, "", "ModelProto holds two graphs; an exported model has one")
			}
			graph = &fd
		case onnxModelOpsetImport:
			if err := d.want(fd, protowire.BytesType, "ModelProto.opset_import", ""); err != nil {
				return err
			}
			return d.opset(fd, m.Graph.Opsets)
		case onnxModelMetadataProps:
			if err := d.want(fd, protowire.BytesType, "ModelProto.metadata_props", ""); err != nil {
				return err
			}
			return d.metadataEntry(fd, f)
		case onnxModelIRVersion:
			return d.want(fd, protowire.VarintType, "ModelProto.ir_version", "")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if graph == nil {
		return nil, d.fail(ErrMissingRecord, -1, "", "ModelProto has no graph; the file is not an exported model")
	}
	if err := d.graph(*graph, m); err != nil {
		return nil, err
	}
	f.Models = append(f.Models, m)
	f.Warnings = d.warnings
	return f, nil
}

func (d *onnxDecoder) fail(kind error, offset int64, tensor, format string, args ...any) error {
	return &FormatError{Path: d.path, Format: FormatONNX, Offset: offset, Tensor: tensor, Err: kind, Reason: fmt.Sprintf(format, args...)}
}

// fields calls fn for each field of the protobuf message b, which starts
// at file offset base. Errors name the message by the message argument,
// and the tensor it belongs to, if any, by tensor.
func (d *onnxDecoder) fields(b []byte, base int64, message, tensor string, fn func(protoField) error) error {
	pos := 0
	for pos < len(b) {
		num, typ, n := protowire.ConsumeTag(b[pos:])
		if n < 0 {
			return d.parseError(n, base+int64(pos), message, tensor, "field tag")
		}
		tagAt := pos
		pos += n
		fd := protoField{num: num, typ: typ, offset: base + int64(pos)}
		switch typ {
		case protowire.VarintType:
			fd.varint, n = protowire.ConsumeVarint(b[pos:])
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b[pos:])
			fd.fixed = uint64(v)
		case protowire.Fixed64Type:
			fd.fixed, n = protowire.ConsumeFixed64(b[pos:])
		case protowire.BytesType:
			var length uint64
			length, n = protowire.ConsumeVarint(b[pos:])
			if n >= 0 {
				// Check the declared length against the bytes left before
				// slicing, so a huge length is an error, not a panic.
				if length > uint64(len(b)-pos-n) {
					if tensor == "" {
						tensor = truncatedTensor(message, num, b[pos+n:])
					}
					return d.fail(ErrTruncated, base+int64(tagAt), tensor, "%s field %d declares %d bytes but only %d remain in the message; the file is truncated or damaged", message, num, length, len(b)-pos-n)
				}
				fd.offset = base + int64(pos+n)
				fd.bytes = b[pos+n : pos+n+int(length)]
				n += int(length)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b[pos:])
		}
		if n < 0 {
			return d.parseError(n, base+int64(tagAt), message, tensor, fmt.Sprintf("field %d", num))
		}
		pos += n
		if err := fn(fd); err != nil {
			return err
		}
	}
	return nil
}

// parseError converts a protowire error code into a *FormatError.
func (d *onnxDecoder) parseError(code int, offset int64, message, tensor, part string) error {
	err := protowire.ParseError(code)
	kind := ErrMalformed
	if errors.Is(err, io.ErrUnexpectedEOF) {
		kind = ErrTruncated
	}
	return d.fail(kind, offset, tensor, "invalid %s in %s: %v; the file is truncated or not an ONNX model", part, message, err)
}

// want checks a field's wire type.
func (d *onnxDecoder) want(fd protoField, typ protowire.Type, field, tensor string) error {
	if fd.typ != typ {
		return d.fail(ErrMalformed, fd.offset, tensor, "%s has wire type %d, want %d; the file is damaged or not an ONNX model", field, fd.typ, typ)
	}
	return nil
}

func (d *onnxDecoder) opset(fd protoField, opsets map[string]int64) error {
	var domain string
	var version int64
	err := d.fields(fd.bytes, fd.offset, "OperatorSetIdProto", "", func(f protoField) error {
		switch f.num {
		case onnxOpsetDomain:
			if err := d.want(f, protowire.BytesType, "OperatorSetIdProto.domain", ""); err != nil {
				return err
			}
			domain = string(f.bytes)
		case onnxOpsetVersion:
			if err := d.want(f, protowire.VarintType, "OperatorSetIdProto.version", ""); err != nil {
				return err
			}
			version = int64(f.varint)
		}
		return nil
	})
	if domain == "ai.onnx" {
		domain = ""
	}
	opsets[domain] = version
	return err
}

func (d *onnxDecoder) metadataEntry(fd protoField, f *File) error {
	var key, value string
	err := d.fields(fd.bytes, fd.offset, "StringStringEntryProto", "", func(e protoField) error {
		if e.num != onnxEntryKey && e.num != onnxEntryValue {
			return nil
		}
		if err := d.want(e, protowire.BytesType, "StringStringEntryProto field", ""); err != nil {
			return err
		}
		if e.num == onnxEntryKey {
			key = string(e.bytes)
		} else {
			value = string(e.bytes)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if f.Metadata == nil {
		f.Metadata = map[string]string{}
	}
	f.Metadata[key] = value
	return nil
}

// graph decodes the GraphProto into m.Graph and m.Tensors.
func (d *onnxDecoder) graph(fd protoField, m *Model) error {
	g := m.Graph
	seen := map[string]bool{}
	return d.fields(fd.bytes, fd.offset, "GraphProto", "", func(f protoField) error {
		switch f.num {
		case onnxGraphName:
			if err := d.want(f, protowire.BytesType, "GraphProto.name", ""); err != nil {
				return err
			}
			g.Name = string(f.bytes)
		case onnxGraphNode:
			if err := d.want(f, protowire.BytesType, "GraphProto.node", ""); err != nil {
				return err
			}
			n, err := d.node(f, len(g.Nodes))
			if err != nil {
				return err
			}
			g.Nodes = append(g.Nodes, n)
		case onnxGraphInitializer:
			if err := d.want(f, protowire.BytesType, "GraphProto.initializer", ""); err != nil {
				return err
			}
			t, err := d.tensor(f, fmt.Sprintf("initializer %d", len(m.Tensors)))
			if err != nil || t == nil {
				return err
			}
			if seen[t.Name] {
				return d.fail(ErrMalformed, f.offset, t.Name, "two initializers have this name")
			}
			seen[t.Name] = true
			m.Tensors = append(m.Tensors, t)
		case onnxGraphInput, onnxGraphOutput:
			if err := d.want(f, protowire.BytesType, "GraphProto input or output", ""); err != nil {
				return err
			}
			name, err := d.valueInfoName(f)
			if err != nil {
				return err
			}
			if f.num == onnxGraphInput {
				g.Inputs = append(g.Inputs, name)
			} else {
				g.Outputs = append(g.Outputs, name)
			}
		case onnxGraphSparseInitializer:
			d.warnings = append(d.warnings, "skipped a sparse initializer: sparse tensors are not read")
		}
		return nil
	})
}

func (d *onnxDecoder) valueInfoName(fd protoField) (string, error) {
	var name string
	err := d.fields(fd.bytes, fd.offset, "ValueInfoProto", "", func(f protoField) error {
		if f.num == onnxValueInfoName {
			if err := d.want(f, protowire.BytesType, "ValueInfoProto.name", ""); err != nil {
				return err
			}
			name = string(f.bytes)
		}
		return nil
	})
	return name, err
}

// node decodes the NodeProto at index i of the graph.
func (d *onnxDecoder) node(fd protoField, i int) (*Node, error) {
	n := &Node{Attrs: map[string]any{}}
	var attrs []protoField
	err := d.fields(fd.bytes, fd.offset, fmt.Sprintf("node %d", i), "", func(f protoField) error {
		switch f.num {
		case onnxNodeInput, onnxNodeOutput, onnxNodeName, onnxNodeOpType, onnxNodeDomain:
			if err := d.want(f, protowire.BytesType, fmt.Sprintf("node %d field %d", i, f.num), ""); err != nil {
				return err
			}
		case onnxNodeAttribute:
			if err := d.want(f, protowire.BytesType, fmt.Sprintf("node %d attribute", i), ""); err != nil {
				return err
			}
			attrs = append(attrs, f)
			return nil
		default:
			return nil
		}
		s := string(f.bytes)
		switch f.num {
		case onnxNodeInput:
			n.Inputs = append(n.Inputs, s)
		case onnxNodeOutput:
			n.Outputs = append(n.Outputs, s)
		case onnxNodeName:
			n.Name = s
		case onnxNodeOpType:
			n.OpType = s
		case onnxNodeDomain:
			n.Domain = s
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n.Domain == "ai.onnx" {
		n.Domain = ""
	}
	label := fmt.Sprintf("node %d (%s)", i, n.OpType)
	for _, a := range attrs {
		if err := d.attribute(a, n, label); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// attribute decodes one AttributeProto into n.Attrs.
func (d *onnxDecoder) attribute(fd protoField, n *Node, label string) error {
	var (
		name               string
		typ                uint64
		f                  *float64
		i                  *int64
		s                  *string
		t                  *Tensor
		floats             []float64
		ints               []int64
		hasFloats, hasInts bool
	)
	message := label + " attribute"
	err := d.fields(fd.bytes, fd.offset, message, "", func(a protoField) error {
		switch a.num {
		case onnxAttrName:
			if err := d.want(a, protowire.BytesType, message+" name", ""); err != nil {
				return err
			}
			name = string(a.bytes)
		case onnxAttrType:
			if err := d.want(a, protowire.VarintType, message+" type", ""); err != nil {
				return err
			}
			typ = a.varint
		case onnxAttrFloat:
			if err := d.want(a, protowire.Fixed32Type, message+" f", ""); err != nil {
				return err
			}
			v := float64(math.Float32frombits(uint32(a.fixed)))
			f = &v
		case onnxAttrInt:
			if err := d.want(a, protowire.VarintType, message+" i", ""); err != nil {
				return err
			}
			v := int64(a.varint)
			i = &v
		case onnxAttrString:
			if err := d.want(a, protowire.BytesType, message+" s", ""); err != nil {
				return err
			}
			v := string(a.bytes)
			s = &v
		case onnxAttrTensor:
			if err := d.want(a, protowire.BytesType, message+" t", ""); err != nil {
				return err
			}
			var err error
			if t, err = d.tensor(a, message+" "+name); err != nil {
				return err
			}
		case onnxAttrFloats:
			hasFloats = true
			vals, err := d.fixedList(a, 4, message+" floats", "")
			if err != nil {
				return err
			}
			for _, v := range vals {
				floats = append(floats, float64(math.Float32frombits(uint32(v))))
			}
		case onnxAttrInts:
			hasInts = true
			vals, err := d.varintList(a, message+" ints", "")
			if err != nil {
				return err
			}
			for _, v := range vals {
				ints = append(ints, int64(v))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if typ == 0 {
		// Files from before ONNX IR 3 omit the type; infer it from the
		// field that is set.
		switch {
		case hasFloats:
			typ = onnxAttributeTypeFloats
		case hasInts:
			typ = onnxAttributeTypeInts
		case t != nil:
			typ = onnxAttributeTypeTensor
		case s != nil:
			typ = onnxAttributeTypeString
		case i != nil:
			typ = onnxAttributeTypeInt
		case f != nil:
			typ = onnxAttributeTypeFloat
		}
	}
	switch typ {
	case onnxAttributeTypeFloat:
		n.Attrs[name] = 0.0
		if f != nil {
			n.Attrs[name] = *f
		}
	case onnxAttributeTypeInt:
		n.Attrs[name] = int64(0)
		if i != nil {
			n.Attrs[name] = *i
		}
	case onnxAttributeTypeString:
		n.Attrs[name] = ""
		if s != nil {
			n.Attrs[name] = *s
		}
	case onnxAttributeTypeTensor:
		if t != nil {
			if t.Name == "" && len(n.Outputs) > 0 {
				t.Name = n.Outputs[0]
			}
			n.Attrs[name] = t
		}
	case onnxAttributeTypeFloats:
		n.Attrs[name] = floats
	case onnxAttributeTypeInts:
		n.Attrs[name] = ints
	}
	return nil
}

// fixedList returns the fixed-size values of a repeated field stored packed
// or as one unpacked value. size is 4 or 8 bytes.
func (d *onnxDecoder) fixedList(fd protoField, size int, field, tensor string) ([]uint64, error) {
	switch {
	case fd.typ == protowire.Fixed32Type && size == 4, fd.typ == protowire.Fixed64Type && size == 8:
		return []uint64{fd.fixed}, nil
	case fd.typ != protowire.BytesType:
		return nil, d.fail(ErrMalformed, fd.offset, tensor, "%s has wire type %d, want packed or fixed%d values", field, fd.typ, size*8)
	case len(fd.bytes)%size != 0:
		return nil, d.fail(ErrMalformed, fd.offset, tensor, "packed %s holds %d bytes, not a multiple of %d", field, len(fd.bytes), size)
	}
	out := make([]uint64, len(fd.bytes)/size)
	for k := range out {
		if size == 4 {
			out[k] = uint64(binary.LittleEndian.Uint32(fd.bytes[4*k:]))
		} else {
			out[k] = binary.LittleEndian.Uint64(fd.bytes[8*k:])
		}
	}
	return out, nil
}

// varintList returns the values of a repeated varint field stored packed or
// as one unpacked value.
func (d *onnxDecoder) varintList(fd protoField, field, tensor string) ([]uint64, error) {
	switch fd.typ {
	case protowire.VarintType:
		return []uint64{fd.varint}, nil
	case protowire.BytesType:
	default:
		return nil, d.fail(ErrMalformed, fd.offset, tensor, "%s has wire type %d, want packed or single varints", field, fd.typ)
	}
	// Every varint ends in a byte below 0x80, so counting those bounds the
	// allocation by the field's size.
	count := 0
	for _, c := range fd.bytes {
		if c < 0x80 {
			count++
		}
	}
	out := make([]uint64, 0, count)
	for b, pos := fd.bytes, 0; pos < len(b); {
		v, n := protowire.ConsumeVarint(b[pos:])
		if n < 0 {
			return nil, d.parseError(n, fd.offset+int64(pos), field, tensor, "packed varint")
		}
		out = append(out, v)
		pos += n
	}
	return out, nil
}
