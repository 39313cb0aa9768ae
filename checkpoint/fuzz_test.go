package checkpoint

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzSeeds returns the bytes of the real PyTorch checkpoints no larger
// than maxSize, or nothing when the folder is absent.
func fuzzSeeds(f *testing.F, maxSize int64) map[string][]byte {
	dir := filepath.Join(moduleRoot(f), "..", "shared", "checkpoints")
	paths, _ := filepath.Glob(filepath.Join(dir, "*.p*"))
	paths = append(paths, filepath.Join(dir, "akamaster_resnet20-12fca82f.th"))
	seeds := map[string][]byte{}
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil || info.Size() > maxSize {
			continue
		}
		if b, err := os.ReadFile(p); err == nil {
			seeds[filepath.Base(p)] = b
		}
	}
	return seeds
}

// dataPickles extracts data.pkl from every zip seed.
func dataPickles(seeds map[string][]byte) [][]byte {
	var out [][]byte
	for _, b := range seeds {
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			continue
		}
		for _, zf := range zr.File {
			if !strings.HasSuffix(zf.Name, "/data.pkl") {
				continue
			}
			rc, err := zf.Open()
			if err != nil {
				continue
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err == nil {
				out = append(out, data)
			}
		}
	}
	return out
}

// readAllTensors reads the tensors of f as a caller would, up to a total
// of 1<<22 elements so that one input cannot stall the fuzzer.
func readAllTensors(f *File) {
	budget := 1 << 22
	for _, m := range f.Models {
		for _, t := range m.Tensors {
			n := t.NumElements()
			if n < 0 || n > budget {
				return
			}
			budget -= n
			t.Float64s()
		}
	}
}

// FuzzUnpickle feeds raw pickle bytes to the unpickler, with a persistent
// loader that backs each storage by the input itself, then searches the
// result for models and reads every tensor.
func FuzzUnpickle(f *testing.F) {
	for _, p := range dataPickles(fuzzSeeds(f, 8<<20)) {
		f.Add(p)
	}
	f.Add(oneTensorPickle("FloatStorage", 4, 0, 4))
	f.Add(oneTensorPickle("HalfStorage", 6, 2, 2, 2))
	f.Add(hugeFramePickle())
	f.Add([]byte("(c__main__\nFoo\nK\x01o."))
	f.Add([]byte("\x80\x02}q\x00X\x01\x00\x00\x00l]q\x01h\x01as."))
	f.Add([]byte("\x80\x02cposix\nsystem\nX\x02\x00\x00\x00idq\x00\x85R."))

	f.Fuzz(func(t *testing.T, data []byte) {
		src := bytes.NewReader(data)
		u := newUnpickler(bytes.NewReader(data), int64(len(data)), "fuzz.pkl", "", 0)
		u.persistentLoad = func(pid any) (any, error) {
			ref, msg := parseStorageRef(pid, 5)
			if ref == nil {
				return nil, newError("fuzz.pkl", ErrMalformed, "%s", msg)
			}
			if ref.numel > int64(len(data))/int64(ref.dtype.Size()) {
				return nil, newError("fuzz.pkl", ErrDeclaredSize, "storage too large")
			}
			return NewFileStorage(ref.key, ref.dtype, ref.numel, src, 0, byteOrder(true), "fuzz.pkl"), nil
		}
		v, err := u.load()
		if err != nil {
			if _, ok := err.(*FormatError); !ok {
				t.Fatalf("error is %T, want *FormatError: %v", err, err)
			}
			return
		}
		file := &File{Path: "fuzz.pkl"}
		if err := collectModels(file, v, u.values); err != nil {
			return
		}
		readAllTensors(file)
	})
}

// FuzzOpenZip feeds zip archives to OpenReaderAt and reads every tensor of
// what it accepts.
func FuzzOpenZip(f *testing.F) {
	for name, b := range fuzzSeeds(f, 1<<20) {
		if bytes.HasPrefix(b, []byte("PK")) {
			f.Add(b)
		} else if strings.HasSuffix(name, ".th") || strings.HasSuffix(name, ".pth") {
			f.Add(b)
		}
	}
	f.Add(torchZip(f, zipEntry{name: "data.pkl", data: oneTensorPickle("FloatStorage", 4, 0, 4)}, zipEntry{name: "data/0", data: float32Bytes(1, 2, 3, 4)}))
	f.Add(torchZip(f, zipEntry{name: "data.pkl", data: oneTensorPickle("FloatStorage", 4, 1, 3), deflate: true}, zipEntry{name: "byteorder", data: []byte("big")}, zipEntry{name: "data/0", data: float32Bytes(1, 2, 3, 4), deflate: true}))
	f.Add(torchZip(f, zipEntry{name: "data.pkl", data: oneTensorPickle("FloatStorage", 1<<40, 0, 4)}, zipEntry{name: "data/0", data: float32Bytes(1, 2, 3, 4)}))

	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := OpenReaderAt("fuzz.zip", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if _, ok := err.(*FormatError); !ok {
				t.Fatalf("error is %T, want *FormatError: %v", err, err)
			}
			return
		}
		readAllTensors(file)
	})
}
