// Package progress draws byte-count progress bars on a terminal for the
// large files convbn-diag reads, and nothing at all elsewhere.
//
// A Set is disabled (every method a no-op, nothing written) unless it was
// created for a terminal. Bars count the bytes that a ReaderAt passes on,
// so the reading code needs no change to report its progress.
package progress

import (
	"io"
	"sync/atomic"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// DefaultMinBytes is the file size from which a file gets a bar: 50 MB.
// Smaller files are read in well under a second.
const DefaultMinBytes = 50_000_000

// Set is a group of bars drawn together on one output. The zero value and
// a nil *Set are disabled.
type Set struct {
	p *mpb.Progress
	// MinBytes is the size from which Wants reports true.
	MinBytes int64
}

// New returns a Set drawing on w when enabled is true, and a disabled Set
// otherwise. Pass enabled = false unless w is a terminal: the bars are
// redrawn with cursor movements that only a terminal understands.
func New(w io.Writer, enabled bool) *Set {
	s := &Set{MinBytes: DefaultMinBytes}
	if enabled {
		s.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithAutoRefresh())
	}
	return s
}

// Enabled reports whether the Set draws anything.
func (s *Set) Enabled() bool { return s != nil && s.p != nil }

// Wants reports whether a file of size bytes gets a bar.
func (s *Set) Wants(size int64) bool { return s.Enabled() && size >= s.MinBytes }

// Add starts a bar labeled name that is complete after total bytes. It
// returns nil, which every Bar method accepts, when the Set is disabled.
func (s *Set) Add(name string, total int64) *Bar {
	if !s.Enabled() {
		return nil
	}
	b := s.p.AddBar(total,
		mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(
			decor.CountersKiloByte("% .1f / % .1f", decor.WCSyncSpace),
			decor.Percentage(decor.WCSyncSpace),
		),
	)
	return &Bar{b: b}
}

// Wait finishes drawing once every bar is complete or aborted.
func (s *Set) Wait() {
	if s.Enabled() {
		s.p.Wait()
	}
}

// Bar is one file's progress bar. A nil *Bar draws nothing.
type Bar struct {
	b *mpb.Bar
}

// Add advances the bar by n bytes.
func (b *Bar) Add(n int64) {
	if b != nil {
		b.b.IncrInt64(n)
	}
}

// Done completes the bar, whatever its count, so that it is removed.
func (b *Bar) Done() {
	if b != nil {
		b.b.SetTotal(-1, true)
	}
}

// Abort removes the bar after a failure.
func (b *Bar) Abort() {
	if b != nil {
		b.b.Abort(true)
	}
}

// ReaderAt passes reads to an io.ReaderAt and adds the bytes read to the
// bar attached with Attach, if any. It is safe for concurrent use.
type ReaderAt struct {
	r   io.ReaderAt
	bar atomic.Pointer[Bar]
}

// NewReaderAt returns a ReaderAt reading from r with no bar attached.
func NewReaderAt(r io.ReaderAt) *ReaderAt { return &ReaderAt{r: r} }

// Attach makes later reads count on b; nil detaches.
func (r *ReaderAt) Attach(b *Bar) { r.bar.Store(b) }

// ReadAt implements io.ReaderAt.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.r.ReadAt(p, off)
	if b := r.bar.Load(); b != nil && n > 0 {
		b.Add(int64(n))
	}
	return n, err
}
