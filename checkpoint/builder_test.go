package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"testing"
)

// pickleBuilder assembles protocol 2 pickles opcode by opcode, so tests can
// craft hostile or unusual files that torch.save would never write.
type pickleBuilder struct {
	bytes.Buffer
}

func newPickle() *pickleBuilder {
	p := &pickleBuilder{}
	p.WriteString("\x80\x02")
	return p
}

func (p *pickleBuilder) op(s string) *pickleBuilder { p.WriteString(s); return p }

func (p *pickleBuilder) str(s string) *pickleBuilder {
	p.WriteByte('X')
	binary.Write(p, binary.LittleEndian, uint32(len(s)))
	p.WriteString(s)
	return p
}

// int writes n with BININT when it fits in 32 bits, else with LONG1.
func (p *pickleBuilder) int(n int64) *pickleBuilder {
	if n >= -1<<31 && n < 1<<31 {
		p.WriteByte('J')
		binary.Write(p, binary.LittleEndian, int32(n))
		return p
	}
	p.WriteString("\x8a\x08")
	binary.Write(p, binary.LittleEndian, n)
	return p
}

func (p *pickleBuilder) global(module, name string) *pickleBuilder {
	p.WriteString("c" + module + "\n" + name + "\n")
	return p
}

// tensor writes _rebuild_tensor_v2 on storage key with the given shape,
// contiguous strides and storage offset; the storage holds numel elements
// of storageClass.
func (p *pickleBuilder) tensor(storageClass, key string, numel, offset int64, shape ...int64) *pickleBuilder {
	p.global("torch._utils", "_rebuild_tensor_v2")
	p.op("((").str("storage").global("torch", storageClass).str(key).str("cpu").int(numel).op("tQ")
	p.int(offset)
	p.op("(")
	for _, s := range shape {
		p.int(s)
	}
	p.op("t(")
	stride := int64(1)
	strides := make([]int64, len(shape))
	for i := len(shape) - 1; i >= 0; i-- {
		strides[i] = stride
		stride *= shape[i]
	}
	for _, s := range strides {
		p.int(s)
	}
	p.op("t\x89").global("collections", "OrderedDict").op(")RtR")
	return p
}

// stateDict writes an OrderedDict holding the tensors written by each
// function, under the given names.
func (p *pickleBuilder) stateDict(names []string, tensors []func(*pickleBuilder)) *pickleBuilder {
	p.global("collections", "OrderedDict").op(")R(")
	for i, n := range names {
		p.str(n)
		tensors[i](p)
	}
	return p.op("u")
}

// torchZip returns a zip archive with the given entries under root "archive/",
// stored without compression in the given order.
func torchZip(t testing.TB, entries ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, e := range entries {
		method := zip.Store
		if e.deflate {
			method = zip.Deflate
		}
		fw, err := w.CreateHeader(&zip.FileHeader{Name: "archive/" + e.name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(e.data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type zipEntry struct {
	name    string
	data    []byte
	deflate bool
}

// float32Bytes encodes values little-endian.
func float32Bytes(values ...float32) []byte {
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, values)
	return buf.Bytes()
}

// legacyFile assembles a legacy checkpoint from an object pickle body (the
// part after the protocol header), storage keys and raw storage data.
func legacyFile(object *pickleBuilder, keys []string, counts []int64, data [][]byte) []byte {
	var buf bytes.Buffer
	buf.WriteString("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.")
	buf.WriteString("\x80\x02M\xe9\x03.")
	info := newPickle().op("}(").str("little_endian").op("\x88u.")
	buf.Write(info.Bytes())
	buf.Write(object.Bytes())
	kp := newPickle().op("(")
	for _, k := range keys {
		kp.str(k)
	}
	kp.op("l.")
	buf.Write(kp.Bytes())
	for i := range keys {
		binary.Write(&buf, binary.LittleEndian, counts[i])
		buf.Write(data[i])
	}
	return buf.Bytes()
}

// zipWriterFor returns a zip writer on buf, for tests that order entries
// themselves.
func zipWriterFor(buf *bytes.Buffer) *zip.Writer { return zip.NewWriter(buf) }
