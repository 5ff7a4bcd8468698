// Package testbin builds hal0's programs (and test stand-ins) for tests
// that run them as processes or systemd units.
package testbin

import (
	"fmt"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Build compiles pkgs (import paths, or paths relative to the calling
// test's package directory) into dir with one `go build`, which shares
// the work between them, and returns each program's path in the order
// given. A program is named after the last element of its package path.
func Build(dir string, pkgs ...string) ([]string, error) {
	if len(pkgs) == 0 {
		return nil, nil
	}
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %v\n%s", strings.Join(pkgs, " "), err, out)
	}
	paths := make([]string, len(pkgs))
	for i, p := range pkgs {
		paths[i] = filepath.Join(dir, path.Base(filepath.ToSlash(p)))
	}
	return paths, nil
}
