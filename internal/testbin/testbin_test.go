package testbin

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuild(t *testing.T) {
	for _, pkg := range []string{"github.com/hal0ai/hal0/internal/testbin/testdata/hello", "./testdata/hello"} {
		dir := t.TempDir()
		paths, err := Build(dir, pkg)
		if err != nil {
			t.Fatal(err)
		}
		if len(paths) != 1 || paths[0] != filepath.Join(dir, "hello") {
			t.Fatalf("%s: paths %v, want [%s]", pkg, paths, filepath.Join(dir, "hello"))
		}
		if out, err := exec.Command(paths[0]).Output(); err != nil || string(out) != "hello\n" {
			t.Errorf("%s: %q %v", pkg, out, err)
		}
	}
	// A package that does not build: the error names it and carries go's
	// own output.
	_, err := Build(t.TempDir(), "./testdata/nosuch")
	if err == nil || !strings.Contains(err.Error(), "go build ./testdata/nosuch") || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("missing package: %v", err)
	}
}
