package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

func TestModuleRootHoldsGoMod(t *testing.T) {
	root := ModuleRoot(t)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Errorf("ModuleRoot returned %s, which has no go.mod: %v", root, err)
	}
}

func TestRequirePythonSkipsOrFailsOnMissingModule(t *testing.T) {
	if os.Getenv("CI") != "" {
		t.Skip("under CI a missing module fails the test by design")
	}
	var skipped bool
	t.Run("missing", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		RequirePython(t, "convbn_diag_no_such_module")
	})
	if !skipped {
		t.Error("RequirePython did not skip for a module that does not exist")
	}
}
