package apid

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hal0ai/hal0/internal/livesystemd"
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
	dir, err := livesystemd.ScratchRoot(scratchPrefix)
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
