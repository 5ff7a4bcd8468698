package slotd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hal0ai/hal0/internal/flm/flmtest"
)

// bins are what the live tests run in the private systemd: hal0-slotd
// (daemon and run-slot), hal0-pull, and the stand-in backend. They are
// built once into a scratch directory under /var/lib, which units with
// PrivateTmp= still see (livesystemd's own scratch is under /var/tmp).
var bins struct {
	scratch string
	slotd   string
	pull    string
	standin string
	flm     string // flmtest's stand-in flm
}

// scratchPrefix names scratch roots; the test binary's pid follows, so a
// later run removes what a killed run left behind.
const scratchPrefix = "hal0-slotdtest-"

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := scratchRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "slotd tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins.scratch = dir
	binDir := filepath.Join(dir, "bin")
	for _, b := range []struct {
		dst *string
		pkg string
	}{
		{&bins.slotd, "github.com/hal0ai/hal0/hal0-slotd"},
		{&bins.pull, "github.com/hal0ai/hal0/hal0-pull"},
		{&bins.standin, "./testdata/standin"},
	} {
		*b.dst = filepath.Join(binDir, filepath.Base(b.pkg))
		if out, err := exec.Command("go", "build", "-o", *b.dst, b.pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "slotd tests: go build %s: %v\n%s", b.pkg, err, out)
			return 1
		}
	}
	if bins.flm, _, err = flmtest.Build(binDir); err != nil {
		fmt.Fprintln(os.Stderr, "slotd tests:", err)
		return 1
	}
	return m.Run()
}

// scratchRoot is under /var/lib when we may write there (root, i.e. when
// the live tests can run), else a temporary directory: then the live
// tests skip anyway.
func scratchRoot() (string, error) {
	if os.Geteuid() != 0 {
		return os.MkdirTemp("", scratchPrefix)
	}
	sweepStale()
	dir, err := os.MkdirTemp("/var/lib", scratchPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}

// sweepStale removes scratch roots of test binaries that are gone.
func sweepStale() {
	matches, _ := filepath.Glob(filepath.Join("/var/lib", scratchPrefix+"*"))
	for _, dir := range matches {
		pidStr, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(dir), scratchPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue
		}
		os.RemoveAll(dir)
	}
}
