package examples

import (
	"bytes"
	_ "embed"
	"fmt"
	"slices"
	"strings"

	"github.com/convbn-diag/convbn-diag/checkpoint"
)

//go:embed flags.pt
var flagsCheckpoint []byte

// example is one embedded checkpoint.
type example struct {
	fileName string
	summary  string
	data     []byte
}

var catalog = map[string]example{
	"flags": {
		fileName: "flags.pt",
		summary:  "small CNN whose ConvBN blocks set off every flag of the analysis (dead, tiny-variance and negative-variance channels, negative γ, layers with median |ω| far below and far above 1, depthwise, strided, biased and transposed convs, a conv→ReLU→BN non-pair)",
		data:     flagsCheckpoint,
	},
}

// Names returns the names of the embedded examples, sorted.
func Names() []string {
	names := make([]string, 0, len(catalog))
	for name := range catalog {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// lookup returns the named example or an error that lists the valid names.
func lookup(name string) (example, error) {
	ex, ok := catalog[name]
	if !ok {
		return example{}, fmt.Errorf("example %q not found; the embedded examples are: %s", name, strings.Join(Names(), ", "))
	}
	return ex, nil
}

// FileName returns the file name of the named example, such as "flags.pt".
func FileName(name string) (string, error) {
	ex, err := lookup(name)
	return ex.fileName, err
}

// Summary returns a one-line description of the named example.
func Summary(name string) (string, error) {
	ex, err := lookup(name)
	return ex.summary, err
}

// Bytes returns a copy of the named example's checkpoint file, for writing
// it to disk or handing it to a tool that wants a path.
func Bytes(name string) ([]byte, error) {
	ex, err := lookup(name)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(ex.data), nil
}

// Open opens the named example with checkpoint.OpenReaderAt, reading the
// embedded bytes in place. File.Path is the example's file name.
func Open(name string) (*checkpoint.File, error) {
	ex, err := lookup(name)
	if err != nil {
		return nil, err
	}
	return checkpoint.OpenReaderAt(ex.fileName, bytes.NewReader(ex.data), int64(len(ex.data)))
}
