// Package atomicfile writes output files so that a reader never sees a
// partial file: the content goes to a temporary file in the destination's
// folder, which is synced and renamed over the destination only when every
// byte was written.
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// newFileMode is the permission of a file that Write creates. A file that
// it replaces keeps its own permission.
const newFileMode fs.FileMode = 0o644

// Write creates path with the bytes that write produces, through a
// buffered writer. When write or any file operation fails, the temporary
// file is removed, path is left as it was, and the error is returned.
//
// When path exists and is not a regular file (a device such as /dev/null,
// a named pipe, a terminal), the bytes are written straight into it, since
// renaming a file over it would replace the device or pipe.
func Write(path string, write func(w io.Writer) error) (err error) {
	mode := newFileMode
	if info, statErr := os.Stat(path); statErr == nil {
		if info.IsDir() {
			return fmt.Errorf("write %s: it is a directory; give a file name", path)
		}
		if !info.Mode().IsRegular() {
			return writeInPlace(path, write)
		}
		mode = info.Mode().Perm()
	}

	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write %s: folder %s does not exist; create it first", path, dir)
		}
		return fmt.Errorf("write %s: cannot create a file in %s: %w", path, dir, errors.Unwrap(err))
	}
	defer func() {
		if err != nil {
			// The first error is the one to report; a failed cleanup of
			// the temporary file is joined to it.
			if closeErr := tmp.Close(); closeErr != nil && !errors.Is(closeErr, os.ErrClosed) {
				err = errors.Join(err, closeErr)
			}
			if rmErr := os.Remove(tmp.Name()); rmErr != nil {
				err = errors.Join(err, fmt.Errorf("remove temporary file: %w", rmErr))
			}
		}
	}()

	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}

	// Sync the folder so that the rename itself survives a crash. Errors
	// are ignored because some file systems cannot sync a directory, and
	// the file is in place either way.
	if d, openErr := os.Open(dir); openErr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// writeInPlace writes into an existing non-regular file such as a device or
// a named pipe.
func writeInPlace(path string, write func(w io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
