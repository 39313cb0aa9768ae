package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

func TestWriteIntoNamedPipe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pipe")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	got := make(chan string, 1)
	go func() {
		b, _ := os.ReadFile(path)
		got <- string(b)
	}()
	err := Write(path, func(w io.Writer) error {
		_, err := io.WriteString(w, "report\n")
		return err
	})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if s := <-got; s != "report\n" {
		t.Errorf("pipe reader got %q, want %q", s, "report\n")
	}
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("%s is no longer a named pipe: mode %v", path, info.Mode())
	}
}

func TestWriteIntoDevNull(t *testing.T) {
	err := Write(os.DevNull, func(w io.Writer) error {
		_, err := io.WriteString(w, "discarded")
		return err
	})
	if err != nil {
		t.Fatalf("Write to %s: %v", os.DevNull, err)
	}
	info, err := os.Stat(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode()&os.ModeDevice == 0 {
		t.Fatalf("%s is no longer a device: mode %v", os.DevNull, info.Mode())
	}
}

func TestWriteMissingFolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "out.json")
	err := Write(path, func(w io.Writer) error { return nil })
	if err == nil {
		t.Fatal("Write into a missing folder succeeded")
	}
	if !strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), ".tmp-") {
		t.Errorf("error %q should say the folder does not exist without naming the temporary file", err)
	}
}

func TestWriteKeepsPermission(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.pt")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, func(w io.Writer) error {
		_, err := io.WriteString(w, "new")
		return err
	}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("permission after replacing: got %v, want %v", got, os.FileMode(0o600))
	}
}
