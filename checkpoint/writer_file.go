package checkpoint

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// newFileMode is the permission of a checkpoint that WriteTorchFile
// creates. A file that it replaces keeps its own permission.
const newFileMode fs.FileMode = 0o644

// WriteTorchFile writes tensors to path with WriteTorch, atomically: the
// archive goes to a temporary file in path's folder, which is synced to
// disk and then renamed over path. On any error the temporary file is
// removed, and an existing file at path is left as it was.
func WriteTorchFile(path string, tensors []TensorSource, opts *TorchWriteOptions) (err error) {
	mode := newFileMode
	if info, statErr := os.Stat(path); statErr == nil {
		if !info.Mode().IsRegular() {
			return fmt.Errorf("write checkpoint %s: the path exists and is not a regular file, so remove it or choose another path", path)
		}
		mode = info.Mode().Perm()
	}

	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			// The first error is the one to report, and a failed cleanup
			// of the temporary file is joined to it.
			if closeErr := tmp.Close(); closeErr != nil && !errors.Is(closeErr, os.ErrClosed) {
				err = errors.Join(err, closeErr)
			}
			if rmErr := os.Remove(tmp.Name()); rmErr != nil {
				err = errors.Join(err, fmt.Errorf("remove temporary file: %w", rmErr))
			}
		}
	}()

	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := WriteTorch(bw, tensors, opts); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write checkpoint %s: sync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}

	// Sync the folder so that the rename itself survives a crash. Errors
	// are ignored because some systems cannot sync a directory, and the
	// file is in place either way.
	if d, openErr := os.Open(dir); openErr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
