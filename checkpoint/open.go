package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Open reads the checkpoint at path. It recognises the format from the
// content, decodes the pickled object without executing anything, and
// locates every tensor's storage without reading the elements. The returned
// File keeps the file open until Close. Errors about the content are
// *FormatError values wrapping one of the Err* kinds. A missing or
// unreadable file yields the *fs.PathError from package os.
func Open(path string) (*File, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.IsDir() {
		return nil, newError(path, ErrIsDirectory, "path is a directory; give the checkpoint file inside it")
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	f, err := OpenReaderAt(path, fh, info.Size())
	if err != nil {
		fh.Close()
		return nil, err
	}
	f.closer = fh
	return f, nil
}

// OpenReaderAt reads a checkpoint of size bytes from r, using name in
// errors and as File.Path. The caller keeps r open while tensors are read;
// Close does not close r.
func OpenReaderAt(name string, r io.ReaderAt, size int64) (*File, error) {
	if size <= 0 {
		return nil, newError(name, ErrEmpty, "file is empty (0 bytes); the download or copy failed, so fetch it again")
	}
	head := make([]byte, min(size, 1024))
	if _, err := r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}

	format, err := sniff(name, head, size)
	if err != nil {
		return nil, err
	}
	var obj any
	var u *unpickler
	switch format {
	case FormatSafetensors:
		return openSafetensors(name, r, size)
	case FormatONNX:
		return openONNX(name, r, size)
	case FormatTorchZip:
		z, zipErr := newZipReader(name, r, size, FormatTorchZip)
		if zipErr != nil {
			return nil, zipErr
		}
		if z.isTorchScript() {
			f, u, err := openTorchScript(z)
			if err != nil {
				return nil, err
			}
			warnings := f.Warnings
			f.Warnings = nil
			recordGlobals(f, u)
			f.Warnings = append(f.Warnings, warnings...)
			return f, nil
		}
		obj, u, err = openZip(z)
	case FormatTorchLegacy:
		obj, u, err = openLegacy(name, r, size)
	}
	if err != nil {
		return nil, err
	}

	f := &File{Path: name, Format: format}
	recordGlobals(f, u)
	if err := collectModels(f, obj, u.values); err != nil {
		return nil, err
	}
	return f, nil
}

// recordGlobals lists the globals the pickle referenced in f.Globals and
// warns about those that can run code under torch.load.
func recordGlobals(f *File, u *unpickler) {
	for g := range u.globals {
		f.Globals = append(f.Globals, g)
	}
	sort.Strings(f.Globals)
	for _, g := range f.Globals {
		if ClassifyGlobal(g) == GlobalDangerous {
			f.Warnings = append(f.Warnings, fmt.Sprintf("file references %s, which can run code when loaded with torch.load; convbn-diag read it without executing anything", g))
		}
	}
}

// Close closes the file that Open opened. It is a no-op for a File from
// OpenReaderAt.
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	return err
}

// sniff recognises the container format from the first bytes of the file.
func sniff(name string, head []byte, size int64) (Format, error) {
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return FormatTorchZip, nil
	case len(head) >= 2 && head[0] == 0x80 && head[1] <= 5:
		return FormatTorchLegacy, nil
	case len(head) >= 262 && bytes.Equal(head[257:262], []byte("ustar")):
		return "", &FormatError{Path: name, Format: FormatTorchLegacy, Offset: -1, Err: ErrUnsupportedFormat,
			Reason: "file is a tar archive, the oldest torch.save format (torch 0.1.x), which this reader does not support; load it with torch and save it again with torch.save"}
	case bytes.HasPrefix(head, []byte("version https://git-lfs.github.com/spec/")):
		return "", newError(name, ErrLFSPointer, "file is a Git LFS pointer, not the checkpoint itself; run `git lfs pull` in its repository to fetch the content")
	case isHTML(head):
		return "", newError(name, ErrHTMLPage, "file is a web page (HTML), probably a failed download or a login page; download the checkpoint again from its direct link")
	case isSafetensors(head, size):
		return FormatSafetensors, nil
	case isONNX(head):
		return FormatONNX, nil
	}
	return "", newError(name, ErrUnknownFormat, "unknown file format (first bytes %q); convbn-diag reads PyTorch (torch.save, torch.jit.save), safetensors and ONNX files", truncateText(string(head[:min(len(head), 16)])))
}

// isHTML reports whether head starts like an HTML document.
func isHTML(head []byte) bool {
	s := bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	s = bytes.TrimLeft(s, " \t\r\n")
	lower := strings.ToLower(string(s[:min(len(s), 64)]))
	for _, p := range []string{"<!doctype html", "<html", "<head", "<body", "<!--", "<?xml"} {
		if strings.HasPrefix(lower, p) {
			return true
		}
	}
	return false
}

// isSafetensors reports whether head starts with a safetensors header: a
// little-endian uint64 length followed by a JSON object. The length is not
// checked against size here, so that openSafetensors can report a header
// that reaches beyond the file instead of an unknown format.
func isSafetensors(head []byte, _ int64) bool {
	if len(head) < 9 {
		return false
	}
	n := binary.LittleEndian.Uint64(head)
	return n >= 2 && head[8] == '{'
}

// isONNX reports whether head starts like an ONNX ModelProto: field 1
// (ir_version) as a small varint, then a length-delimited field.
func isONNX(head []byte) bool {
	if len(head) < 3 || head[0] != 0x08 || head[1] == 0 || head[1] >= 0x80 {
		return false
	}
	switch head[2] {
	case 0x12, 0x1a, 0x22, 0x2a, 0x32, 0x3a, 0x42, 0x52, 0x72:
		return true
	}
	return false
}
