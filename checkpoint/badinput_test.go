package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// oneTensorPickle returns a data.pkl holding {"w": tensor} on storage "0".
func oneTensorPickle(storageClass string, numel, offset int64, shape ...int64) []byte {
	return newPickle().stateDict([]string{"w"}, []func(*pickleBuilder){
		func(p *pickleBuilder) { p.tensor(storageClass, "0", numel, offset, shape...) },
	}).op(".").Bytes()
}

// hugeFramePickle is an 11-byte pickle whose FRAME declares 2^62 bytes.
func hugeFramePickle() []byte {
	b := []byte("\x80\x04\x95")
	return binary.LittleEndian.AppendUint64(b, 1<<62)
}

type badCase struct {
	name    string
	data    []byte
	kind    error
	message string // a phrase the error must contain
}

func badCases(t *testing.T) []badCase {
	good := oneTensorPickle("FloatStorage", 4, 0, 4)
	data0 := float32Bytes(1, 2, 3, 4)
	tar := make([]byte, 1024)
	copy(tar, "archive/data.pkl")
	copy(tar[257:], "ustar\x0000")
	huge := torchZip(t, zipEntry{name: "data.pkl", data: oneTensorPickle("FloatStorage", 1<<40, 0, 4)}, zipEntry{name: "data/0", data: data0})

	cases := []badCase{
		{"empty", nil, ErrEmpty, "empty"},
		{"lfs pointer", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:4f18\nsize 4062133\n"), ErrLFSPointer, "git lfs pull"},
		{"html page", []byte("\n<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>"), ErrHTMLPage, "web page"},
		{"html lower case", []byte("<html><body>404</body></html>"), ErrHTMLPage, "web page"},
		{"unknown", []byte("GIF89a not a checkpoint at all"), ErrUnknownFormat, "unknown file format"},
		{"plain pickle", newPickle().op("}.").Bytes(), ErrUnknownFormat, "not a PyTorch checkpoint"},
		{"legacy tar", tar, ErrUnsupportedFormat, "tar archive"},
		{"huge frame pickle", hugeFramePickle(), ErrDeclaredSize, "FRAME declares"},
		{"huge frame in zip", torchZip(t, zipEntry{name: "data.pkl", data: hugeFramePickle()}), ErrDeclaredSize, "FRAME declares"},
		{"storage of 2^40 elements", huge, ErrDeclaredSize, "1099511627776 elements"},
		{"truncated zip", torchZip(t, zipEntry{name: "data.pkl", data: good}, zipEntry{name: "data/0", data: data0})[:200], ErrTruncated, "zip archive"},
		{"zip without data.pkl", torchZip(t, zipEntry{name: "data/0", data: data0}), ErrMissingRecord, "data.pkl"},
		{"missing storage record", torchZip(t, zipEntry{name: "data.pkl", data: good}), ErrMissingRecord, "archive/data/0"},
		{"storage larger than record", torchZip(t, zipEntry{name: "data.pkl", data: good}, zipEntry{name: "data/0", data: data0[:12]}), ErrDeclaredSize, "holds only 12 bytes"},
		{"view outside storage", torchZip(t, zipEntry{name: "data.pkl", data: oneTensorPickle("FloatStorage", 4, 2, 3)}, zipEntry{name: "data/0", data: data0}), ErrMalformed, "storage of 4"},
		{"bad byteorder", torchZip(t, zipEntry{name: "data.pkl", data: good}, zipEntry{name: "byteorder", data: []byte("middle")}, zipEntry{name: "data/0", data: data0}), ErrMalformed, "byteorder"},
		{"unknown storage type", torchZip(t, zipEntry{name: "data.pkl", data: oneTensorPickle("Float8Storage", 4, 0, 4)}, zipEntry{name: "data/0", data: data0}), ErrMalformed, "unsupported storage type"},
		{"pickle without STOP", torchZip(t, zipEntry{name: "data.pkl", data: good[:len(good)-1]}, zipEntry{name: "data/0", data: data0}), ErrTruncated, "STOP"},
		{"invalid opcode", torchZip(t, zipEntry{name: "data.pkl", data: []byte("\x80\x02\xff.")}), ErrMalformed, "invalid pickle opcode 0xff"},
		{"binunicode8 too long", torchZip(t, zipEntry{name: "data.pkl", data: binary.LittleEndian.AppendUint64([]byte("\x80\x04\x8d"), 1<<50)}), ErrDeclaredSize, "BINUNICODE8 declares"},
		{"long4 too long", torchZip(t, zipEntry{name: "data.pkl", data: []byte("\x80\x02\x8b\xff\xff\xff\x7f")}), ErrDeclaredSize, "LONG declares"},
		{"memo index never stored", torchZip(t, zipEntry{name: "data.pkl", data: []byte("\x80\x02j\xff\xff\xff\xff.")}), ErrMalformed, "memo index"},
		{"stack underflow", torchZip(t, zipEntry{name: "data.pkl", data: []byte("\x80\x02R.")}), ErrMalformed, "stack is empty"},
	}

	obj := newPickle().stateDict([]string{"w"}, []func(*pickleBuilder){func(p *pickleBuilder) { p.tensor("FloatStorage", "k", 4, 0, 4) }}).op(".")
	legacy := legacyFile(obj, []string{"k"}, []int64{4}, [][]byte{data0})
	cases = append(cases,
		badCase{"legacy truncated data", legacy[:len(legacy)-3], ErrTruncated, "truncated"},
		badCase{"legacy wrong count", legacyFile(obj, []string{"k"}, []int64{3}, [][]byte{data0}), ErrMalformed, "declares 4"},
		badCase{"legacy unknown key", legacyFile(obj, []string{"other"}, []int64{4}, [][]byte{data0}), ErrMalformed, "not used by any tensor"},
	)
	hugeObj := newPickle().stateDict([]string{"w"}, []func(*pickleBuilder){func(p *pickleBuilder) { p.tensor("FloatStorage", "k", 1<<40, 0, 4) }}).op(".")
	cases = append(cases, badCase{"legacy storage of 2^40 elements", legacyFile(hugeObj, []string{"k"}, []int64{1 << 40}, [][]byte{data0}), ErrDeclaredSize, "1099511627776 elements"})
	return cases
}

func TestOpenBadInputs(t *testing.T) {
	dir := t.TempDir()
	for _, c := range badCases(t) {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
			if err := os.WriteFile(path, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			f, err := Open(path)
			elapsed := time.Since(start)
			if err == nil {
				f.Close()
				t.Fatalf("Open succeeded, want %v", c.kind)
			}
			if !errors.Is(err, c.kind) {
				t.Errorf("error kind mismatch: got %v, want %v", err, c.kind)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Errorf("error is %T, want *FormatError", err)
			} else if fe.Path != path {
				t.Errorf("FormatError.Path mismatch: got %q, want %q", fe.Path, path)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if !strings.Contains(err.Error(), c.message) {
				t.Errorf("error %q does not contain %q", err, c.message)
			}
			if elapsed > time.Second {
				t.Errorf("Open took %v, want under 1s", elapsed)
			}
		})
	}
}

func TestOpenDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir)
	if !errors.Is(err, ErrIsDirectory) {
		t.Fatalf("error mismatch: got %v, want ErrIsDirectory", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the directory", err)
	}
}

func TestOpenMissingFile(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "absent.pt"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error mismatch: got %v, want os.ErrNotExist", err)
	}
}

// TestHostileInputsUseLittleMemory checks that the huge-FRAME pickle and the
// storage claiming 2^40 elements are rejected without a large allocation.
func TestHostileInputsUseLittleMemory(t *testing.T) {
	data0 := float32Bytes(1, 2, 3, 4)
	inputs := map[string][]byte{
		"huge frame":       hugeFramePickle(),
		"2^40 storage":     torchZip(t, zipEntry{name: "data.pkl", data: oneTensorPickle("FloatStorage", 1<<40, 0, 4)}, zipEntry{name: "data/0", data: data0}),
		"2^40 tensor":      torchZip(t, zipEntry{name: "data.pkl", data: oneTensorPickle("FloatStorage", 4, 0, 1<<20, 1<<20)}, zipEntry{name: "data/0", data: data0}),
		"huge binbytes8":   binary.LittleEndian.AppendUint64([]byte("\x80\x04\x8e"), 1<<40),
		"huge long_binput": []byte("\x80\x02Nr\xff\xff\xff\x7f."),
	}
	const limit = 4 << 20
	for name, data := range inputs {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := OpenReaderAt(name, bytes.NewReader(data), int64(len(data)))
		runtime.ReadMemStats(&after)
		if err == nil && name != "huge long_binput" {
			t.Errorf("%s: Open succeeded, want an error", name)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > limit {
			t.Errorf("%s: Open allocated %d bytes, want at most %d", name, grew, limit)
		}
	}
}

func TestOpenRejectsHugeStrides(t *testing.T) {
	// A view of shape (3, 2^20) with strides of 2^40 on a storage of 4
	// elements must be rejected when the file is opened, not when read.
	pk := newPickle().stateDict([]string{"w"}, []func(*pickleBuilder){func(p *pickleBuilder) {
		p.global("torch._utils", "_rebuild_tensor_v2")
		p.op("((").str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(4).op("tQ")
		p.int(0).op("(").int(3).int(1 << 20).op("t(").int(1 << 40).int(1 << 40).op("t\x89")
		p.global("collections", "OrderedDict").op(")RtR")
	}}).op(".")
	data := torchZip(t, zipEntry{name: "data.pkl", data: pk.Bytes()}, zipEntry{name: "data/0", data: float32Bytes(1, 2, 3, 4)})
	_, err := OpenReaderAt("strides.pt", bytes.NewReader(data), int64(len(data)))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("error mismatch: got %v, want ErrMalformed", err)
	}
}

func TestOpenZipWithDataPickleNotFirst(t *testing.T) {
	var buf bytes.Buffer
	w := zipWriterFor(&buf)
	for _, e := range []zipEntry{
		{name: "other/readme.txt", data: []byte("x")},
		{name: "archive/data/0", data: float32Bytes(1, 2, 3, 4)},
		{name: "archive/data.pkl", data: oneTensorPickle("FloatStorage", 4, 0, 4)},
	} {
		fw, _ := w.Create(e.name)
		fw.Write(e.data)
	}
	w.Close()
	f, err := OpenReaderAt("reordered.pt", bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	values, err := f.Models[0].Tensors[0].Float64s()
	if err != nil {
		t.Fatal(err)
	}
	if len(values) != 4 || values[3] != 4 {
		t.Errorf("values mismatch: got %v, want [1 2 3 4]", values)
	}
}

func TestOpenRejectsInflatedDeclaredSize(t *testing.T) {
	data := torchZip(t,
		zipEntry{name: "data.pkl", data: oneTensorPickle("FloatStorage", 1<<29, 0, 1<<29)},
		zipEntry{name: "data/0", data: make([]byte, 64), deflate: true})

	// Make the central directory claim about 4 GiB uncompressed for data/0.
	dir := bytes.LastIndex(data, []byte("PK\x01\x02"))
	if dir < 0 || !bytes.Equal(data[dir+46:dir+46+len("archive/data/0")], []byte("archive/data/0")) {
		t.Fatal("central directory entry of archive/data/0 not found")
	}
	binary.LittleEndian.PutUint32(data[dir+24:], 0xfffffff0)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := OpenReaderAt("inflated.pt", bytes.NewReader(data), int64(len(data)))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrDeclaredSize) {
		t.Fatalf("error mismatch: got %v, want ErrDeclaredSize", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Errorf("Open allocated %d bytes, want at most %d", grew, 4<<20)
	}
}

func TestLegacyGlobalsFromEveryPickle(t *testing.T) {
	// torch.load unpickles sys_info without restrictions, so a global
	// hidden there must be listed and flagged too.
	obj := newPickle().stateDict([]string{"w"}, []func(*pickleBuilder){func(p *pickleBuilder) { p.tensor("FloatStorage", "k", 4, 0, 4) }}).op(".")
	data := legacyFile(obj, []string{"k"}, []int64{4}, [][]byte{float32Bytes(1, 2, 3, 4)})
	info := newPickle().op("}(").str("little_endian").op("\x88u.").Bytes()
	evil := newPickle().op("}(").str("little_endian").op("\x88").str("x").global("posix", "system").str("id").op("\x85Ru.").Bytes()
	i := bytes.Index(data, info)
	if i < 0 {
		t.Fatal("sys_info pickle not found in the legacy file")
	}
	data = append(append(append([]byte{}, data[:i]...), evil...), data[i+len(info):]...)

	f, err := OpenReaderAt("legacy.pt", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range f.Globals {
		found = found || g == "posix.system"
	}
	if !found {
		t.Errorf("posix.system missing from Globals %v", f.Globals)
	}
	if len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0], "posix.system") {
		t.Errorf("warnings mismatch: got %q, want one naming posix.system", f.Warnings)
	}
}

func TestOpenLegacyBigEndian(t *testing.T) {
	// sys_info's little_endian=False makes both the element counts and the
	// data big-endian.
	obj := newPickle().stateDict([]string{"w"}, []func(*pickleBuilder){func(p *pickleBuilder) { p.tensor("DoubleStorage", "k", 3, 1, 2) }}).op(".")
	little := legacyFile(obj, []string{"k"}, []int64{3}, [][]byte{make([]byte, 24)})
	info := newPickle().op("}(").str("little_endian").op("\x88u.").Bytes()
	i := bytes.Index(little, info)
	if i < 0 {
		t.Fatal("sys_info pickle not found in the legacy file")
	}
	var data []byte
	data = append(data, little[:i]...)
	data = append(data, newPickle().op("}(").str("little_endian").op("\x89u.").Bytes()...)
	data = append(data, little[i+len(info):len(little)-8-24]...)
	data = binary.BigEndian.AppendUint64(data, 3)
	for _, v := range []float64{1.5, -2.25, 1e300} {
		data = binary.BigEndian.AppendUint64(data, math.Float64bits(v))
	}

	f, err := OpenReaderAt("big.pt", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	values, err := f.Models[0].Tensors[0].Float64s()
	if err != nil {
		t.Fatal(err)
	}
	if len(values) != 2 || values[0] != -2.25 || values[1] != 1e300 {
		t.Errorf("values mismatch: got %v, want [-2.25 1e+300]", values)
	}
}
