package checkpoint

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// onnxTensorParts collects the fields of one TensorProto.
type onnxTensorParts struct {
	name      string
	dims      []int64
	dataType  uint64
	raw       *protoField
	floatRuns []protoField // float_data fields, packed or single
	int32Runs []protoField // int32_data fields, packed or single
	int64Runs []protoField // int64_data fields, packed or single
	doubles   []protoField
	hasOther  bool // string_data or uint64_data
	external  bool
}

// tensor decodes a TensorProto. label names it in errors until its name is
// known. It returns nil, without an error, for a tensor of a type the
// reader skips, after adding a warning.
func (d *onnxDecoder) tensor(fd protoField, label string) (*Tensor, error) {
	p := &onnxTensorParts{}
	if name := scanTensorName(fd.bytes); name != "" {
		label = name
	}
	err := d.fields(fd.bytes, fd.offset, "TensorProto", label, func(f protoField) error {
		switch f.num {
		case onnxTensorName:
			if err := d.want(f, protowire.BytesType, "TensorProto.name", label); err != nil {
				return err
			}
			p.name = string(f.bytes)
			label = p.name
		case onnxTensorDims:
			vals, err := d.varintList(f, "TensorProto.dims", label)
			if err != nil {
				return err
			}
			for _, v := range vals {
				p.dims = append(p.dims, int64(v))
			}
		case onnxTensorDataType:
			if err := d.want(f, protowire.VarintType, "TensorProto.data_type", label); err != nil {
				return err
			}
			p.dataType = f.varint
		case onnxTensorRawData:
			if err := d.want(f, protowire.BytesType, "TensorProto.raw_data", label); err != nil {
				return err
			}
			p.raw = &f
		case onnxTensorFloatData:
			if f.typ != protowire.BytesType && f.typ != protowire.Fixed32Type {
				return d.fail(ErrMalformed, f.offset, label, "TensorProto.float_data has wire type %d, want packed or fixed32 values", f.typ)
			}
			p.floatRuns = append(p.floatRuns, f)
		case onnxTensorDoubleData:
			if f.typ != protowire.BytesType && f.typ != protowire.Fixed64Type {
				return d.fail(ErrMalformed, f.offset, label, "TensorProto.double_data has wire type %d, want packed or fixed64 values", f.typ)
			}
			p.doubles = append(p.doubles, f)
		case onnxTensorInt32Data, onnxTensorInt64Data:
			if f.typ != protowire.BytesType && f.typ != protowire.VarintType {
				return d.fail(ErrMalformed, f.offset, label, "TensorProto field %d has wire type %d, want packed or single varints", f.num, f.typ)
			}
			if f.num == onnxTensorInt32Data {
				p.int32Runs = append(p.int32Runs, f)
			} else {
				p.int64Runs = append(p.int64Runs, f)
			}
		case onnxTensorStringData, onnxTensorUint64Data:
			p.hasOther = true
		case onnxTensorExternalData:
			p.external = true
		case onnxTensorDataLocation:
			if err := d.want(f, protowire.VarintType, "TensorProto.data_location", label); err != nil {
				return err
			}
			if f.varint == onnxDataLocationExternal {
				p.external = true
			}
		case onnxTensorSegment:
			return d.fail(ErrUnsupportedFormat, f.offset, label, "tensor is split into segments, which this reader does not support")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if p.external {
		return nil, d.fail(ErrUnsupportedFormat, fd.offset, label,
			"tensor data are stored in an external file, which this reader does not support; save the model with onnx.save_model(model, path, save_as_external_data=False)")
	}

	dtype, ok := onnxDTypes[p.dataType]
	if !ok {
		d.warnings = append(d.warnings, fmt.Sprintf("skipped tensor %s: ONNX data type %d is not a numeric type this reader decodes", label, p.dataType))
		return nil, nil
	}
	shape := make([]int, len(p.dims))
	numel := int64(1)
	for i, v := range p.dims {
		if v < 0 || v > maxDimSize || len(p.dims) > maxTensorDims {
			return nil, d.fail(ErrMalformed, fd.offset, label, "dims %v are invalid: each must lie in [0, %d] and there may be at most %d", p.dims, int64(maxDimSize), maxTensorDims)
		}
		if v != 0 && numel > math.MaxInt64/int64(dtype.Size())/v {
			return nil, d.fail(ErrMalformed, fd.offset, label, "dims %v have more elements than fit in 64 bits", p.dims)
		}
		numel *= v
		shape[i] = int(v)
	}
	t := &Tensor{Name: p.name, DType: dtype, Shape: shape, Strides: ContiguousStrides(shape)}
	st, err := d.tensorStorage(p, dtype, numel, label, fd.offset)
	if err != nil {
		return nil, err
	}
	t.Storage = st
	return t, nil
}

// tensorStorage builds the storage of a tensor from whichever data field
// holds its elements, checking the element count against dims.
func (d *onnxDecoder) tensorStorage(p *onnxTensorParts, dtype DType, numel int64, label string, offset int64) (*Storage, error) {
	size := int64(dtype.Size())
	count := func(field string, have int64) error {
		if have != numel {
			return d.fail(ErrMalformed, offset, label, "%s holds %d elements, but dims %v need %d", field, have, p.dims, numel)
		}
		return nil
	}
	mem := func(values []float64) *Storage {
		return &Storage{Key: label, DType: dtype, Len: numel, mem: values, file: d.path}
	}

	switch {
	case p.raw != nil && len(p.raw.bytes) > 0:
		if int64(len(p.raw.bytes)) != numel*size {
			return nil, d.fail(ErrMalformed, p.raw.offset, label, "raw_data holds %d bytes, but %d %s elements of dims %v take %d", len(p.raw.bytes), numel, dtype, p.dims, numel*size)
		}
		return NewFileStorage(label, dtype, numel, d.src, p.raw.offset, binary.LittleEndian, d.path), nil

	case len(p.floatRuns) > 0:
		if dtype != Float32 {
			return nil, d.fail(ErrMalformed, offset, label, "float_data is set for a tensor of type %s", dtype)
		}
		if len(p.floatRuns) == 1 && p.floatRuns[0].typ == protowire.BytesType {
			// One packed run is already little-endian float32, so read it
			// lazily from the file like raw_data.
			run := p.floatRuns[0]
			if len(run.bytes)%4 != 0 {
				return nil, d.fail(ErrMalformed, run.offset, label, "packed float_data holds %d bytes, not a multiple of 4", len(run.bytes))
			}
			if err := count("float_data", int64(len(run.bytes)/4)); err != nil {
				return nil, err
			}
			return NewFileStorage(label, dtype, numel, d.src, run.offset, binary.LittleEndian, d.path), nil
		}
		var values []float64
		for _, run := range p.floatRuns {
			bits, err := d.fixedList(run, 4, "TensorProto.float_data", label)
			if err != nil {
				return nil, err
			}
			for _, b := range bits {
				values = append(values, float64(math.Float32frombits(uint32(b))))
			}
		}
		if err := count("float_data", int64(len(values))); err != nil {
			return nil, err
		}
		return mem(values), nil

	case len(p.doubles) > 0:
		if dtype != Float64 {
			return nil, d.fail(ErrMalformed, offset, label, "double_data is set for a tensor of type %s", dtype)
		}
		var values []float64
		for _, run := range p.doubles {
			bits, err := d.fixedList(run, 8, "TensorProto.double_data", label)
			if err != nil {
				return nil, err
			}
			for _, b := range bits {
				values = append(values, math.Float64frombits(b))
			}
		}
		if err := count("double_data", int64(len(values))); err != nil {
			return nil, err
		}
		return mem(values), nil

	case len(p.int64Runs) > 0:
		if dtype != Int64 {
			return nil, d.fail(ErrMalformed, offset, label, "int64_data is set for a tensor of type %s", dtype)
		}
		values, err := d.varintValues(p.int64Runs, "int64_data", label, numel, p.dims, func(v uint64) float64 {
			return float64(int64(v))
		})
		if err != nil {
			return nil, err
		}
		return mem(values), nil

	case len(p.int32Runs) > 0:
		// int32_data holds float16 and bfloat16 as their bit patterns in
		// the low 16 bits, and the narrower integer types as sign-extended
		// values.
		var convert func(uint64) float64
		switch dtype {
		case Float16:
			convert = func(v uint64) float64 { return Float16ToFloat64(uint16(v)) }
		case BFloat16:
			convert = func(v uint64) float64 {
				return float64(math.Float32frombits(uint32(uint16(v)) << 16))
			}
		case Int32, Int16, Int8:
			convert = func(v uint64) float64 { return float64(int32(v)) }
		case Uint8:
			convert = func(v uint64) float64 { return float64(uint8(v)) }
		case Bool:
			convert = func(v uint64) float64 {
				if v != 0 {
					return 1
				}
				return 0
			}
		default:
			return nil, d.fail(ErrMalformed, offset, label, "int32_data is set for a tensor of type %s", dtype)
		}
		values, err := d.varintValues(p.int32Runs, "int32_data", label, numel, p.dims, convert)
		if err != nil {
			return nil, err
		}
		return mem(values), nil

	case p.hasOther:
		return nil, d.fail(ErrMalformed, offset, label, "tensor of type %s stores its data in string_data or uint64_data", dtype)
	}
	if numel != 0 {
		return nil, d.fail(ErrMalformed, offset, label, "tensor of dims %v has no data", p.dims)
	}
	return mem([]float64{}), nil
}

// scanTensorName returns the name field of a TensorProto, reading as much
// of b as decodes, so that an error found later in the message (or a
// message cut short) can name the tensor. It returns "" when no name is
// found.
func scanTensorName(b []byte) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if typ == protowire.BytesType {
			length, n := protowire.ConsumeVarint(b)
			if n < 0 || length > uint64(len(b)-n) {
				return ""
			}
			if num == onnxTensorName {
				return string(b[n : n+int(length)])
			}
			b = b[n+int(length):]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}

// truncatedTensor returns the name of the initializer that a message cut
// short ends inside, given the partial content of field num of message, or
// "" when the cut is elsewhere. Protobuf writes TensorProto.name (field 8)
// before raw_data (field 9), so a cut inside the data still finds it.
func truncatedTensor(message string, num protowire.Number, partial []byte) string {
	switch {
	case message == "GraphProto" && num == onnxGraphInitializer:
		return scanTensorName(partial)
	case message != "ModelProto" || num != onnxModelGraph:
		return ""
	}
	b := partial
	for len(b) > 0 {
		fieldNum, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(fieldNum, typ, b)
			if n < 0 {
				return ""
			}
			b = b[n:]
			continue
		}
		length, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return ""
		}
		if length > uint64(len(b)-n) {
			if fieldNum == onnxGraphInitializer {
				return scanTensorName(b[n:])
			}
			return ""
		}
		b = b[n+int(length):]
	}
	return ""
}

// varintValues decodes the varints of a repeated field, stored in one or
// more packed or single fields, after checking that they number numel.
// Counting first bounds the allocation by the field's bytes.
//
// NOTE: the values are decoded at Open into float64, so a tensor stored
// as one-byte varints takes up to 8 times its size in the file in memory.
func (d *onnxDecoder) varintValues(runs []protoField, field, label string, numel int64, dims []int64, convert func(uint64) float64) ([]float64, error) {
	var count int64
	for _, run := range runs {
		if run.typ == protowire.VarintType {
			count++
			continue
		}
		for _, c := range run.bytes {
			if c < 0x80 {
				count++
			}
		}
	}
	if count != numel {
		return nil, d.fail(ErrMalformed, runs[0].offset, label, "%s holds %d elements, but dims %v need %d", field, count, dims, numel)
	}
	values := make([]float64, 0, count)
	for _, run := range runs {
		if run.typ == protowire.VarintType {
			values = append(values, convert(run.varint))
			continue
		}
		for pos := 0; pos < len(run.bytes); {
			x, n := protowire.ConsumeVarint(run.bytes[pos:])
			if n < 0 {
				return nil, d.parseError(n, run.offset+int64(pos), field, label, "packed varint")
			}
			values = append(values, convert(x))
			pos += n
		}
	}
	return values, nil
}
