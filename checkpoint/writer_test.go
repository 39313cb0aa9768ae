package checkpoint

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// rawSource returns a TensorSource whose data are raw.
func rawSource(name string, d DType, shape []int, raw []byte) TensorSource {
	return TensorSource{Name: name, DType: d, Shape: shape, WriteData: ReaderData(bytes.NewReader(raw))}
}

// smallSources returns three float32 tensors with distinct contents and
// their raw bytes.
func smallSources(t *testing.T) ([]TensorSource, [][]byte) {
	t.Helper()
	shapes := [][]int{{8, 3, 3, 3}, {8}, {}}
	var sources []TensorSource
	var raws [][]byte
	for i, shape := range shapes {
		n := 1
		for _, s := range shape {
			n *= s
		}
		vals := make([]float64, n)
		for k := range vals {
			vals[k] = float64(i*1000+k) / 7
		}
		raw, err := AppendElements(nil, Float32, vals)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, rawSource("layer."+strconv.Itoa(i), Float32, shape, raw))
		raws = append(raws, raw)
	}
	return sources, raws
}

func TestWriteTorchZipLayout(t *testing.T) {
	sources, raws := smallSources(t)
	var buf bytes.Buffer
	if err := WriteTorch(&buf, sources, &TorchWriteOptions{Root: "net"}); err != nil {
		t.Fatalf("WriteTorch: %v", err)
	}

	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatalf("zip.NewReader: %v", err)
	}
	wantNames := []string{"net/data.pkl", "net/byteorder", "net/data/0", "net/data/1", "net/data/2", "net/version"}
	if len(zr.File) != len(wantNames) {
		t.Fatalf("archive has %d entries, want %d", len(zr.File), len(wantNames))
	}
	for i, f := range zr.File {
		if f.Name != wantNames[i] {
			t.Errorf("entry %d name mismatch: got %q, want %q", i, f.Name, wantNames[i])
		}
		if f.Method != zip.Store {
			t.Errorf("entry %s method mismatch: got %d, want %d (stored)", f.Name, f.Method, zip.Store)
		}
		off, err := f.DataOffset()
		if err != nil {
			t.Fatalf("entry %s: %v", f.Name, err)
		}
		if strings.Contains(f.Name, "/data/") && off%64 != 0 {
			t.Errorf("entry %s data offset %d is not a multiple of 64", f.Name, off)
		}

		// Reading through archive/zip also checks the CRC-32.
		rc, err := f.Open()
		if err != nil {
			t.Fatalf("open entry %s: %v", f.Name, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("read entry %s: %v", f.Name, err)
		}
		if !bytes.Equal(buf.Bytes()[off:off+int64(len(got))], got) {
			t.Errorf("entry %s: bytes at the data offset differ from the entry content", f.Name)
		}
		var want []byte
		switch {
		case f.Name == "net/version":
			want = []byte("3\n")
		case f.Name == "net/byteorder":
			want = []byte("little")
		case strings.HasPrefix(f.Name, "net/data/"):
			k, _ := strconv.Atoi(strings.TrimPrefix(f.Name, "net/data/"))
			want = raws[k]
		default:
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("entry %s content mismatch: got %d bytes %q..., want %d bytes", f.Name, len(got), got[:min(len(got), 8)], len(want))
		}
	}
}

func TestWriteTorchDeterministic(t *testing.T) {
	var outs [2]bytes.Buffer
	for i := range outs {
		sources, _ := smallSources(t)
		opts := &TorchWriteOptions{Metadata: map[string]string{"b": "2", "a": "1", "c": "3"}, Layers: []LayerSpec{{Name: "conv", Type: "Conv2d"}}}
		if err := WriteTorch(&outs[i], sources, opts); err != nil {
			t.Fatalf("WriteTorch: %v", err)
		}
	}
	if !bytes.Equal(outs[0].Bytes(), outs[1].Bytes()) {
		t.Errorf("two writes of the same tensors differ (%d and %d bytes)", outs[0].Len(), outs[1].Len())
	}
}

func TestWriteTorchByteCount(t *testing.T) {
	readErr := errors.New("disk on fire")
	cases := []struct {
		name    string
		write   func(io.Writer) error
		wantErr string
	}{
		{"too few", ReaderData(bytes.NewReader(make([]byte, 4*5))), "wrote 20 bytes, but 6 float32 elements of shape [2 3] take 24"},
		{"too many", ReaderData(bytes.NewReader(make([]byte, 4*7))), "wrote more than the 24 bytes"},
		{"too many ignored error", func(w io.Writer) error {
			for range 7 {
				w.Write(make([]byte, 4))
			}
			return nil
		}, "wrote more than the 24 bytes"},
		{"callback error", func(w io.Writer) error { return readErr }, "disk on fire"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sources := []TensorSource{{Name: "conv.weight", DType: Float32, Shape: []int{2, 3}, WriteData: c.write}}
			err := WriteTorch(io.Discard, sources, nil)
			if err == nil {
				t.Fatalf("WriteTorch succeeded, want an error containing %q", c.wantErr)
			}
			if !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "conv.weight") {
				t.Errorf("error mismatch: got %q, want it to name conv.weight and contain %q", err, c.wantErr)
			}
		})
	}
}

func TestWriteTorchRejectsInvalid(t *testing.T) {
	data := ReaderData(bytes.NewReader(make([]byte, 8)))
	ok := TensorSource{Name: "a", DType: Float32, Shape: []int{2}, WriteData: data}
	cases := []struct {
		name    string
		sources []TensorSource
		opts    *TorchWriteOptions
		wantErr string
	}{
		{"empty name", []TensorSource{{DType: Float32, Shape: []int{2}, WriteData: data}}, nil, "empty name"},
		{"duplicate name", []TensorSource{ok, ok}, nil, "listed twice"},
		{"unsupported dtype", []TensorSource{{Name: "q", DType: QInt8, Shape: []int{2}, WriteData: data}}, nil, "dtype qint8 cannot be written"},
		{"negative dimension", []TensorSource{{Name: "n", DType: Float32, Shape: []int{2, -1}, WriteData: data}}, nil, "negative dimension"},
		{"overflowing shape", []TensorSource{{Name: "big", DType: Float32, Shape: []int{1 << 31, 1 << 31, 4}, WriteData: data}}, nil, "too many elements"},
		{"nil data", []TensorSource{{Name: "d", DType: Float32, Shape: []int{2}}}, nil, "no WriteData"},
		{"invalid UTF-8 name", []TensorSource{{Name: "a\xff", DType: Float32, Shape: []int{2}, WriteData: data}}, nil, "not valid UTF-8"},
		{"root with slash", []TensorSource{ok}, &TorchWriteOptions{Root: "a/b"}, "invalid archive root"},
		{"layers key set twice", []TensorSource{ok}, &TorchWriteOptions{Metadata: map[string]string{MetadataLayersKey: "[]"}, Layers: []LayerSpec{}}, "set both in Metadata and by Layers"},
		{"invalid UTF-8 metadata", []TensorSource{ok}, &TorchWriteOptions{Metadata: map[string]string{"k": "\xfe"}}, "not valid UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteTorch(&buf, c.sources, c.opts)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("WriteTorch error mismatch: got %v, want one containing %q", err, c.wantErr)
			}
			if buf.Len() != 0 {
				t.Errorf("WriteTorch wrote %d bytes before rejecting its arguments", buf.Len())
			}
		})
	}
}

func TestWriteTorchFileShortDataLeavesNoFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "short.pt")
	sources, _ := smallSources(t)
	sources[1].WriteData = ReaderData(bytes.NewReader(make([]byte, 3)))

	err := WriteTorchFile(path, sources, nil)
	if err == nil {
		t.Fatal("WriteTorchFile succeeded with 3 of 32 bytes of data")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "layer.1") {
		t.Errorf("error %q does not name the file and the tensor", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("file %s left behind after a failed write", e.Name())
	}
}

func TestWriteTorchFileKeepsOldFileOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.pt")
	old := []byte("previous checkpoint")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	sources, _ := smallSources(t)
	sources[0].WriteData = func(io.Writer) error { return errors.New("generator failed") }

	if err := WriteTorchFile(path, sources, nil); err == nil {
		t.Fatal("WriteTorchFile succeeded although WriteData failed")
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, old) {
		t.Errorf("existing file changed after a failed write: got %q (%v), want %q", got, err, old)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d files after a failed write, want only the old one", len(entries))
	}

	// A successful write replaces the file and keeps its permission.
	sources, raws := smallSources(t)
	if err := WriteTorchFile(path, sources, nil); err != nil {
		t.Fatalf("WriteTorchFile: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("permission mismatch: got %v, want %v", info.Mode().Perm(), os.FileMode(0o600))
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(content, raws[0]) {
		t.Error("replaced file does not contain the new tensor data")
	}
}

// countingDiscard counts and drops everything written to it.
type countingDiscard struct{ n int64 }

func (c *countingDiscard) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func TestWriteTorchStreams(t *testing.T) {
	const chunk = 1 << 16
	const chunks = 4096 // 256 MiB of float32
	block := make([]byte, chunk)
	for i := range block {
		block[i] = byte(i * 7)
	}
	sources := []TensorSource{{
		Name:  "huge.weight",
		DType: Float32,
		Shape: []int{chunks, chunk / 4},
		WriteData: func(w io.Writer) error {
			for range chunks {
				if _, err := w.Write(block); err != nil {
					return err
				}
			}
			return nil
		},
	}}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	out := &countingDiscard{}
	if err := WriteTorch(out, sources, nil); err != nil {
		t.Fatalf("WriteTorch: %v", err)
	}
	runtime.ReadMemStats(&after)

	if out.n < chunk*chunks {
		t.Errorf("archive has %d bytes, less than the %d bytes of data", out.n, chunk*chunks)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("writing a 256 MiB tensor allocated %d bytes; the data should stream", alloc)
	}
}

func TestWriteTorchZip64Entry(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 4 GiB entry; skipped with -short")
	}
	// A tensor of 4 GiB needs a zip64 data descriptor, which is 8 bytes
	// longer than the usual one; the entry after it must still be aligned,
	// which writeEntry checks.
	const chunk = 1 << 20
	block := make([]byte, chunk)
	big := TensorSource{Name: "big", DType: Int64, Shape: []int{4096, chunk / 8}, WriteData: func(w io.Writer) error {
		for range 4096 {
			if _, err := w.Write(block); err != nil {
				return err
			}
		}
		return nil
	}}
	next := rawSource("next", Float32, []int{2}, make([]byte, 8))
	out := &countingDiscard{}
	if err := WriteTorch(out, []TensorSource{big, next}, nil); err != nil {
		t.Fatalf("WriteTorch with a 4 GiB tensor: %v", err)
	}
	if out.n <= 4<<30 {
		t.Errorf("archive has %d bytes, want more than 4 GiB", out.n)
	}
}

func TestFloat32ToFloat16RoundTrip(t *testing.T) {
	// Every finite half value converts back to itself.
	for h := range 1 << 16 {
		bits := uint16(h)
		v := Float16ToFloat64(bits)
		if math.IsNaN(v) {
			if got := Float32ToFloat16(float32(v)); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Errorf("Float32ToFloat16(NaN from %#04x) = %#04x, want a NaN", bits, got)
			}
			continue
		}
		if got := Float32ToFloat16(float32(v)); got != bits {
			t.Errorf("Float32ToFloat16(%v) = %#04x, want %#04x", v, got, bits)
		}
	}
}

func TestFloat32ToFloat16Nearest(t *testing.T) {
	// The result is the nearest half value, ties to even mantissa, checked
	// against both neighbours with exact float64 arithmetic.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		f := math.Float32frombits(rng.Uint32())
		if f != f || math.Abs(float64(f)) > 65504 {
			continue
		}
		h := Float32ToFloat16(f)
		got := Float16ToFloat64(h)
		x := float64(f)
		for _, nb := range []uint16{h - 1, h + 1} {
			if nb&0x7fff >= 0x7c00 || (h&0x7fff == 0 && nb&0x7fff != 1) {
				continue
			}
			other := Float16ToFloat64(nb)
			dGot, dOther := math.Abs(x-got), math.Abs(x-other)
			if dOther < dGot || (dOther == dGot && h&1 == 1) {
				t.Fatalf("Float32ToFloat16(%v) = %v (%#04x), but %v (%#04x) is nearer or an even tie", f, got, h, other, nb)
			}
		}
	}
}

func TestFloat32ToBFloat16Nearest(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	decode := func(b uint16) float64 { return float64(math.Float32frombits(uint32(b) << 16)) }
	for range 200000 {
		f := math.Float32frombits(rng.Uint32())
		if f != f || math.IsInf(float64(f), 0) || math.Abs(float64(f)) > 3.38e38 {
			continue
		}
		b := Float32ToBFloat16(f)
		got := decode(b)
		x := float64(f)
		for _, nb := range []uint16{b - 1, b + 1} {
			if nb&0x7fff >= 0x7f80 {
				continue
			}
			if (b&0x8000 != nb&0x8000) && b&0x7fff != 0 {
				continue // crossing zero is covered by the ±0 neighbour
			}
			other := decode(nb)
			dGot, dOther := math.Abs(x-got), math.Abs(x-other)
			if dOther < dGot || (dOther == dGot && b&1 == 1) {
				t.Fatalf("Float32ToBFloat16(%v) = %v (%#04x), but %v (%#04x) is nearer or an even tie", f, got, b, other, nb)
			}
		}
	}
}

func TestAppendElementsInt64(t *testing.T) {
	for _, bad := range []float64{0.5, math.NaN(), math.Inf(1), 1 << 63, -1e19} {
		if _, err := AppendElements(nil, Int64, []float64{1, bad}); err == nil || !strings.Contains(err.Error(), "element 1") {
			t.Errorf("AppendElements(Int64, %v) error mismatch: got %v, want one naming element 1", bad, err)
		}
	}
	raw, err := AppendElements(nil, Int64, []float64{-(1 << 63), -1, 1 << 53})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{strconv.FormatInt(math.MinInt64, 10), "-1", strconv.FormatInt(1<<53, 10)}
	got := elementBits(raw, Int64)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("int64 element %d mismatch: got %s, want %s", i, got[i], want[i])
		}
	}
	if _, err := AppendElements(nil, Int32, []float64{1}); err == nil {
		t.Error("AppendElements(Int32) succeeded, want an unsupported-dtype error")
	}
}

func BenchmarkWriteTorch1MiB(b *testing.B)   { benchmarkWriteTorch(b, 1<<20) }
func BenchmarkWriteTorch100MiB(b *testing.B) { benchmarkWriteTorch(b, 100<<20) }

// benchmarkWriteTorch streams one float32 tensor of size bytes, generated
// in 64 KiB blocks, into an archive that is counted and dropped.
func benchmarkWriteTorch(b *testing.B, size int) {
	const chunk = 1 << 16
	block := make([]byte, chunk)
	sources := []TensorSource{{
		Name:  "weight",
		DType: Float32,
		Shape: []int{size / 4},
		WriteData: func(w io.Writer) error {
			for left := size; left > 0; left -= chunk {
				if _, err := w.Write(block[:min(left, chunk)]); err != nil {
					return err
				}
			}
			return nil
		},
	}}
	b.SetBytes(int64(size))
	for b.Loop() {
		if err := WriteTorch(&countingDiscard{}, sources, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestGeneratedData(t *testing.T) {
	const n = 40000 // more than two blocks, and not a multiple of one
	fill := func(first int64, values []float64) error {
		for i := range values {
			values[i] = float64(first+int64(i)) * 0.5
		}
		return nil
	}
	var buf bytes.Buffer
	sources := []TensorSource{{Name: "ramp", DType: Float64, Shape: []int{n}, WriteData: GeneratedData(Float64, n, fill)}}
	if err := WriteTorch(&buf, sources, nil); err != nil {
		t.Fatalf("WriteTorch: %v", err)
	}

	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := zr.Open("archive/data/0")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	got := decodeExpected(t, raw, Float64)
	if len(got) != n {
		t.Fatalf("entry holds %d elements, want %d", len(got), n)
	}
	for i, v := range got {
		if v != float64(i)*0.5 {
			t.Fatalf("element %d mismatch: got %v, want %v", i, v, float64(i)*0.5)
		}
	}

	failing := GeneratedData(Float32, n, func(first int64, values []float64) error {
		if first > 0 {
			return errors.New("source exhausted")
		}
		return nil
	})
	sources = []TensorSource{{Name: "broken", DType: Float32, Shape: []int{n}, WriteData: failing}}
	err = WriteTorch(io.Discard, sources, nil)
	if err == nil || !strings.Contains(err.Error(), "source exhausted") || !strings.Contains(err.Error(), "broken") {
		t.Errorf("error mismatch: got %v, want one naming the tensor and the fill error", err)
	}
}
