package apid

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/testbin"
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
	p, err := testbin.Build(binDir, "github.com/hal0ai/hal0/hal0-apid", "github.com/hal0ai/hal0/hal0-pull", "github.com/hal0ai/hal0/internal/apiload")
	if err != nil {
		fmt.Fprintln(os.Stderr, "apid tests:", err)
		return 1
	}
	bins.apid, bins.pull, bins.load = p[0], p[1], p[2]
	return m.Run()
}
