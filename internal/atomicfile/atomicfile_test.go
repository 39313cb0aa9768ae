package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteCreatesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.json")
	err := Write(path, func(w io.Writer) error {
		_, err := io.WriteString(w, "{}\n")
		return err
	})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "{}\n" {
		t.Errorf("content mismatch: got %q, want %q", got, "{}\n")
	}
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.json")
	want := errors.New("renderer failed")
	err := Write(path, func(w io.Writer) error {
		io.WriteString(w, "partial")
		return want
	})
	if !errors.Is(err, want) {
		t.Fatalf("Write error: got %v, want %v", err, want)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("folder holds %d entries after a failed write, want 0: %v", len(entries), entries)
	}
}

func TestWriteFailureKeepsOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.csv")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	Write(path, func(w io.Writer) error { return errors.New("boom") })
	got, _ := os.ReadFile(path)
	if string(got) != "old" {
		t.Errorf("existing file changed to %q after a failed write", got)
	}
}
