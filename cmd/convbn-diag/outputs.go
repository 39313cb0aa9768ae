package main

import (
	"os"
	"path/filepath"
)

// checkOutputs rejects, before any work starts, output paths that could
// only fail or do harm at the end of a long run. These are a folder that
// does not exist, a path that is a directory, two outputs with the same
// path, and an output that is one of the inputs. flags[i] names the option of
// outputs[i] in the message; empty outputs are ignored. The running
// program counts as an input.
func checkOutputs(inputs []string, flags, outputs []string) error {
	// The running program is an input too: writing JSON over it is an
	// easy slip with a relative path.
	if exe, err := os.Executable(); err == nil {
		inputs = append(inputs, exe)
	}
	seen := map[string]string{}
	for i, out := range outputs {
		if out == "" || out == "-" {
			continue
		}
		flag := flags[i]
		dir := filepath.Dir(out)
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			return usageErrorf("%s %s: folder %s does not exist; create it first", flag, out, dir)
		}
		info, err := os.Stat(out)
		if err == nil && info.IsDir() {
			return usageErrorf("%s %s is a directory; give a file name", flag, out)
		}
		clean := filepath.Clean(out)
		if other, dup := seen[clean]; dup {
			return usageErrorf("%s and %s both write %s; give each its own file", other, flag, out)
		}
		seen[clean] = flag
		if err != nil {
			continue
		}
		for _, in := range inputs {
			if in == "" {
				continue
			}
			if inInfo, err := os.Stat(in); err == nil && os.SameFile(inInfo, info) {
				return usageErrorf("%s %s would overwrite the input %s; choose another file", flag, out, in)
			}
		}
	}
	return nil
}
