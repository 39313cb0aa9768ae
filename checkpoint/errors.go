package checkpoint

import (
	"errors"
	"fmt"
	"strings"
)

// Kinds of failure that Open reports. Every error Open returns wraps one of
// them inside a *FormatError, so a caller tests the kind with errors.Is and
// reads the details with errors.As.
var (
	// ErrEmpty means the file has zero bytes.
	ErrEmpty = errors.New("file is empty")
	// ErrIsDirectory means the path names a directory.
	ErrIsDirectory = errors.New("path is a directory")
	// ErrLFSPointer means the file is a Git LFS pointer, not the content.
	ErrLFSPointer = errors.New("file is a Git LFS pointer")
	// ErrHTMLPage means the file is a web page, usually a failed download.
	ErrHTMLPage = errors.New("file is a web page")
	// ErrUnknownFormat means the content matches no format Open recognises.
	ErrUnknownFormat = errors.New("unknown file format")
	// ErrUnsupportedFormat means the format was recognised but this reader
	// cannot load it: the legacy tar format, ONNX external data, or ONNX
	// files over 2 GiB.
	ErrUnsupportedFormat = errors.New("format recognised but not supported by this reader")
	// ErrTruncated means the file ends before a structure it declares.
	ErrTruncated = errors.New("file is truncated or damaged")
	// ErrMissingRecord means a PyTorch zip archive lacks a required record
	// such as data.pkl or a data/<key> storage entry.
	ErrMissingRecord = errors.New("required record missing")
	// ErrDeclaredSize means a length, count or element number declared in
	// the file exceeds the bytes the file holds or a fixed safety limit.
	ErrDeclaredSize = errors.New("declared size exceeds the data present")
	// ErrMalformed means the content is structurally invalid: a bad pickle
	// opcode, a tensor whose view leaves its storage, a wrong argument type.
	ErrMalformed = errors.New("malformed content")
)

// FormatError describes why a checkpoint could not be read. Fields that do
// not apply are empty or -1 (Offset).
type FormatError struct {
	// Path is the file's path or the name given to OpenReaderAt.
	Path string
	// Format is the container format, when it was recognised.
	Format Format
	// Record is the entry inside a zip archive, or the part of a legacy
	// file ("object pickle", "storage 12"), that failed.
	Record string
	// Offset is the byte offset of the failure inside Record (or inside the
	// file when Record is empty), or -1 when unknown.
	Offset int64
	// Tensor is the tensor or storage that failed, when known.
	Tensor string
	// Reason describes what is wrong and what to do about it.
	Reason string
	// Err is one of the Err* kinds above.
	Err error
}

// Error formats the failure as "PATH: RECORD at offset N: tensor T: REASON".
func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Record != "" {
		b.WriteString(": ")
		b.WriteString(e.Record)
	}
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " at offset %d", e.Offset)
	}
	if e.Tensor != "" {
		fmt.Fprintf(&b, ": tensor %s", e.Tensor)
	}
	b.WriteString(": ")
	if e.Reason != "" {
		b.WriteString(e.Reason)
	} else if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the kind of failure, so errors.Is(err, ErrTruncated) works.
func (e *FormatError) Unwrap() error { return e.Err }

// newError returns a *FormatError without a position.
func newError(path string, kind error, format string, args ...any) *FormatError {
	return &FormatError{Path: path, Offset: -1, Reason: fmt.Sprintf(format, args...), Err: kind}
}
