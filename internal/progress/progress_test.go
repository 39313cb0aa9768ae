package progress

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestDisabledSetWritesNothing(t *testing.T) {
	var out bytes.Buffer
	s := New(&out, false)
	if s.Enabled() || s.Wants(1<<40) {
		t.Error("a disabled set wants bars")
	}
	b := s.Add("model.pt", 100)
	b.Add(50)
	b.Done()
	b.Abort()
	s.Wait()
	if out.Len() != 0 {
		t.Errorf("disabled set wrote %q", out.String())
	}
	var nilSet *Set
	if nilSet.Enabled() || nilSet.Add("x", 1) != nil {
		t.Error("a nil set is not disabled")
	}
}

func TestReaderAtCountsBytes(t *testing.T) {
	var out bytes.Buffer
	s := New(&out, true)
	s.MinBytes = 10
	if !s.Wants(10) || s.Wants(9) {
		t.Errorf("Wants mismatch at MinBytes = 10: got %v for 10 and %v for 9", s.Wants(10), s.Wants(9))
	}
	r := NewReaderAt(strings.NewReader("0123456789abcdef"))
	buf := make([]byte, 4)
	if _, err := r.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	bar := s.Add("weights.pt", 12)
	r.Attach(bar)
	for _, off := range []int64{4, 8, 12} {
		if n, err := r.ReadAt(buf, off); n != 4 || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt(%d): %d bytes, %v", off, n, err)
		}
	}
	if got := bar.b.Current(); got != 12 {
		t.Errorf("bar count: got %d, want 12 (reads before Attach do not count)", got)
	}
	if string(buf) != "cdef" {
		t.Errorf("ReadAt passed %q, want cdef", buf)
	}
	bar.Done()
	s.Wait()
	if !strings.Contains(out.String(), "weights.pt") {
		t.Errorf("enabled set drew %q, want a bar naming weights.pt", out.String())
	}
}
