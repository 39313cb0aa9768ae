package checkpoint

import (
	"fmt"
	"io"

	"github.com/convbn-diag/convbn-diag/internal/atomicfile"
)

// WriteTorchFile writes tensors to path with WriteTorch, atomically: the
// archive goes to a temporary file in path's folder, which is synced to
// disk and then renamed over path. On any error the temporary file is
// removed, and an existing file at path is left as it was. A file that it
// replaces keeps its permission; an existing device or named pipe at path
// is written into rather than replaced.
func WriteTorchFile(path string, tensors []TensorSource, opts *TorchWriteOptions) error {
	return atomicfile.Write(path, func(w io.Writer) error {
		if err := WriteTorch(w, tensors, opts); err != nil {
			return fmt.Errorf("write checkpoint %s: %w", path, err)
		}
		return nil
	})
}
