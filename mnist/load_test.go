package mnist

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeIDX writes a gzipped IDX file with the given header words and data.
func writeIDX(t *testing.T, path string, header []uint32, data []byte) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	binary.Write(zw, binary.BigEndian, header)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeSet writes a four-file MNIST folder with n images per split.
func writeSet(t *testing.T, dir string, n int, labels []byte) {
	t.Helper()
	for _, split := range [][2]string{{TrainImagesFile, TrainLabelsFile}, {TestImagesFile, TestLabelsFile}} {
		pixels := make([]byte, n*Side*Side)
		for i := range pixels {
			pixels[i] = byte(i)
		}
		writeIDX(t, filepath.Join(dir, split[0]), []uint32{imageMagic, uint32(n), Side, Side}, pixels)
		writeIDX(t, filepath.Join(dir, split[1]), []uint32{labelMagic, uint32(len(labels))}, labels)
	}
}

func TestLoadSmallSet(t *testing.T) {
	dir := t.TempDir()
	writeSet(t, dir, 3, []byte{7, 0, 5})
	s, err := Load(dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 3 || len(s.Pixels) != 3*Side*Side {
		t.Fatalf("got %d images and %d pixels, want 3 and %d", s.Len(), len(s.Pixels), 3*Side*Side)
	}
	sub, err := s.Subset([]int{5, 6, 7}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := sub.Labels; len(got) != 2 || got[0] != 2 || got[1] != 0 {
		t.Errorf("subset labels %v, want [2 0] (digit 7 is class 2, digit 5 class 0)", got)
	}
	dst := make([]float64, 2*Side*Side)
	Batch(sub, []int{1}, dst)
	// Image 2 of the file starts at pixel 2·784, whose byte is 2·784 mod 256.
	if want := (float64((2*Side*Side)%256)/255 - Mean) / Std; dst[0] != want {
		t.Errorf("first normalized pixel %v, want %v", dst[0], want)
	}
}

func TestLoadRejectsMalformed(t *testing.T) {
	cases := []struct {
		name   string
		header []uint32
		data   []byte
		want   string
	}{
		{"wrong magic", []uint32{0x0801, 1, Side, Side}, make([]byte, Side*Side), "magic"},
		{"huge count", []uint32{imageMagic, 1 << 30, Side, Side}, nil, "more than"},
		{"wrong size", []uint32{imageMagic, 1, 32, 32}, make([]byte, 1024), "32×32"},
		{"truncated", []uint32{imageMagic, 2, Side, Side}, make([]byte, Side*Side), "promises"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeSet(t, dir, 1, []byte{1})
			writeIDX(t, filepath.Join(dir, TrainImagesFile), c.header, c.data)
			_, err := Load(dir, "train")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), TrainImagesFile) {
				t.Errorf("error %v, want one naming %s and containing %q", err, TrainImagesFile, c.want)
			}
		})
	}
}

func TestLoadRejectsBadLabel(t *testing.T) {
	dir := t.TempDir()
	writeSet(t, dir, 1, []byte{10})
	if _, err := Load(dir, "test"); err == nil || !strings.Contains(err.Error(), "not a digit") {
		t.Errorf("error %v, want one about a label that is not a digit", err)
	}
}

func TestLoadRejectsNotGzip(t *testing.T) {
	dir := t.TempDir()
	writeSet(t, dir, 1, []byte{1})
	os.WriteFile(filepath.Join(dir, TrainLabelsFile), []byte("not gzip"), 0o644)
	if _, err := Load(dir, "train"); err == nil || !strings.Contains(err.Error(), "not a gzip file") {
		t.Errorf("error %v, want one saying the file is not gzip", err)
	}
}

func TestLocateModuleCache(t *testing.T) {
	dir, err := Locate("")
	if err != nil {
		t.Skipf("MNIST files missing: %v", err)
	}
	s, err := Load(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 10000 {
		t.Errorf("test set has %d images, want 10000", s.Len())
	}
}

func TestLocateMissing(t *testing.T) {
	_, err := Locate(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--mnist") {
		t.Errorf("error %v, want one naming --mnist", err)
	}
}

func TestEscapeModulePath(t *testing.T) {
	if got, want := escapeModulePath(ModulePath), "github.com/petar/!go!m!n!i!s!t"; got != want {
		t.Errorf("escaped path %q, want %q", got, want)
	}
}
