package apid

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
)

// bins are the binaries the tests run: hal0-apid and hal0-pull (inside the
// private systemd, or as processes for the load benchmark) and the apiload
// tool. They are built once, into a scratch directory that units with
// PrivateTmp= can still see.
var bins struct {
	scratch string // root of everything the tests write
	apid    string
	pull    string
	load    string
}

// scratchPrefix names scratch roots under /var/lib; the test binary's pid
// follows, so a later run can remove what a killed run left.
const scratchPrefix = "hal0-apidtest-"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := scratchRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "apid tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins.scratch = dir
	binDir := filepath.Join(dir, "bin")
	cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator),
		"github.com/hal0ai/hal0/hal0-apid", "github.com/hal0ai/hal0/hal0-pull", "github.com/hal0ai/hal0/internal/apiload")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "apid tests: go build: %v\n%s", err, out)
		return 1
	}
	bins.apid = filepath.Join(binDir, "hal0-apid")
	bins.pull = filepath.Join(binDir, "hal0-pull")
	bins.load = filepath.Join(binDir, "apiload")
	return m.Run()
}

// scratchRoot is under /var/lib when we may write there (root, i.e. when
// the live tests can run): the units under test have PrivateTmp=, which
// hides /tmp and /var/tmp, and the namespace mounts a tmpfs on /tmp and
// /run. Elsewhere the live tests skip, and the temp dir does.
func scratchRoot() (string, error) {
	if os.Geteuid() != 0 {
		return os.MkdirTemp("", scratchPrefix)
	}
	sweepStale()
	dir, err := os.MkdirTemp("/var/lib", scratchPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", err
	}
	// The units run as root in the tests, but keep the tree traversable
	// for whoever runs them otherwise.
	return dir, os.Chmod(dir, 0o755)
}

// sweepStale removes scratch roots of test binaries that died without
// cleaning up (SIGKILL, a timeout panic). A root whose owner still runs is
// left alone.
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
