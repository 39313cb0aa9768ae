package checkpoint

import (
	"encoding/binary"
	"maps"
	"slices"
	"strconv"
)

// Pickle opcodes (CPython Lib/pickle.py) used by the writer. They are the
// protocol-2 subset that torch 1.13's weights_only unpickler accepts.
const (
	pickleOpProto      = 0x80
	pickleOpGlobal     = 'c'
	pickleOpBinPut     = 'q'
	pickleOpBinGet     = 'h'
	pickleOpEmptyTuple = ')'
	pickleOpEmptyDict  = '}'
	pickleOpReduce     = 'R'
	pickleOpMark       = '('
	pickleOpTuple      = 't'
	pickleOpTuple1     = 0x85
	pickleOpTuple2     = 0x86
	pickleOpTuple3     = 0x87
	pickleOpBinUnicode = 'X'
	pickleOpBinInt     = 'J'
	pickleOpBinInt1    = 'K'
	pickleOpBinInt2    = 'M'
	pickleOpLong1      = 0x8a
	pickleOpBinPersID  = 'Q'
	pickleOpNewFalse   = 0x89
	pickleOpSetItems   = 'u'
	pickleOpStop       = '.'
)

// pickleBatch is how many dict items go into one SETITEMS, as in CPython.
const pickleBatch = 1000

// pickler builds a protocol-2 pickle. Globals are memoized so that each
// one is named once, as Python's pickler does.
type pickler struct {
	buf     []byte
	globals map[string]int
}

func (p *pickler) op(b byte) { p.buf = append(p.buf, b) }

// global pushes module.name, fetching it from the memo after first use.
// The writer uses at most seven globals (OrderedDict, _rebuild_tensor_v2
// and five storage classes), so one-byte memo indices suffice.
func (p *pickler) global(module, name string) {
	key := module + "\n" + name
	if idx, ok := p.globals[key]; ok {
		p.buf = append(p.buf, pickleOpBinGet, byte(idx))
		return
	}
	idx := len(p.globals)
	if idx > 255 {
		panic("checkpoint: pickler memo holds more than 256 globals")
	}
	p.globals[key] = idx
	p.buf = append(p.buf, pickleOpGlobal)
	p.buf = append(p.buf, key...)
	p.buf = append(p.buf, '\n')
	p.buf = append(p.buf, pickleOpBinPut, byte(idx))
}

func (p *pickler) str(s string) {
	p.buf = append(p.buf, pickleOpBinUnicode)
	p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(len(s)))
	p.buf = append(p.buf, s...)
}

// int pushes v with the shortest opcode, as CPython's pickler chooses it.
func (p *pickler) int(v int64) {
	switch {
	case v >= 0 && v < 1<<8:
		p.buf = append(p.buf, pickleOpBinInt1, byte(v))
	case v >= 0 && v < 1<<16:
		p.buf = append(p.buf, pickleOpBinInt2)
		p.buf = binary.LittleEndian.AppendUint16(p.buf, uint16(v))
	case v >= -1<<31 && v < 1<<31:
		p.buf = append(p.buf, pickleOpBinInt)
		p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(int32(v)))
	default:
		b := longBytes(v)
		p.buf = append(p.buf, pickleOpLong1, byte(len(b)))
		p.buf = append(p.buf, b...)
	}
}

// longBytes returns v as the shortest little-endian two's-complement bytes,
// the encoding of pickle's LONG1.
func longBytes(v int64) []byte {
	var out []byte
	for {
		b := byte(v)
		out = append(out, b)
		v >>= 8
		if (v == 0 && b&0x80 == 0) || (v == -1 && b&0x80 != 0) {
			return out
		}
	}
}

// intTuple pushes a tuple of ints.
func (p *pickler) intTuple(vals []int) {
	switch len(vals) {
	case 0:
		p.op(pickleOpEmptyTuple)
		return
	case 1, 2, 3:
		for _, v := range vals {
			p.int(int64(v))
		}
		p.op([]byte{pickleOpTuple1, pickleOpTuple2, pickleOpTuple3}[len(vals)-1])
		return
	}
	p.op(pickleOpMark)
	for _, v := range vals {
		p.int(int64(v))
	}
	p.op(pickleOpTuple)
}

// tensor pushes torch._utils._rebuild_tensor_v2(storage, 0, shape, strides,
// False, OrderedDict()) for a contiguous tensor whose storage is the zip
// entry data/<key>.
func (p *pickler) tensor(t *TensorSource, key string) {
	p.global("torch._utils", "_rebuild_tensor_v2")
	p.op(pickleOpMark)

	// Persistent id ('storage', storage class, key, location, numel).
	p.op(pickleOpMark)
	p.str("storage")
	p.global("torch", torchStorageClass[t.DType])
	p.str(key)
	p.str("cpu")
	p.int(t.NumElements())
	p.op(pickleOpTuple)
	p.op(pickleOpBinPersID)

	p.int(0) // storage offset
	p.intTuple(t.Shape)
	p.intTuple(ContiguousStrides(t.Shape))
	p.op(pickleOpNewFalse) // requires_grad
	p.global("collections", "OrderedDict")
	p.op(pickleOpEmptyTuple)
	p.op(pickleOpReduce) // backward hooks: an empty OrderedDict
	p.op(pickleOpTuple)
	p.op(pickleOpReduce)
}

// torchPickle returns data.pkl for WriteTorch: the OrderedDict of tensors,
// wrapped in {"state_dict": ..., MetadataObjectKey: {...}} when metadata is
// non-nil. Metadata keys are written sorted, so the output is
// deterministic.
func torchPickle(tensors []TensorSource, metadata map[string]string) []byte {
	p := &pickler{globals: make(map[string]int)}
	p.buf = append(p.buf, pickleOpProto, 2)

	if metadata != nil {
		p.op(pickleOpEmptyDict)
		p.op(pickleOpMark)
		p.str("state_dict")
	}

	p.global("collections", "OrderedDict")
	p.op(pickleOpEmptyTuple)
	p.op(pickleOpReduce)
	for start := 0; start < len(tensors); start += pickleBatch {
		p.op(pickleOpMark)
		for i := start; i < min(start+pickleBatch, len(tensors)); i++ {
			p.str(tensors[i].Name)
			p.tensor(&tensors[i], strconv.Itoa(i))
		}
		p.op(pickleOpSetItems)
	}

	if metadata != nil {
		p.str(MetadataObjectKey)
		p.op(pickleOpEmptyDict)
		keys := slices.Sorted(maps.Keys(metadata))
		for start := 0; start < len(keys); start += pickleBatch {
			p.op(pickleOpMark)
			for _, k := range keys[start:min(start+pickleBatch, len(keys))] {
				p.str(k)
				p.str(metadata[k])
			}
			p.op(pickleOpSetItems)
		}
		p.op(pickleOpSetItems) // closes the top-level dict's MARK
	}

	p.op(pickleOpStop)
	return p.buf
}
