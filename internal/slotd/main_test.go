package slotd

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hal0ai/hal0/internal/flm/flmtest"
	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/testbin"
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
	dir, err := livesystemd.ScratchRoot(scratchPrefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "slotd tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins.scratch = dir
	binDir := filepath.Join(dir, "bin")
	p, err := testbin.Build(binDir, "github.com/hal0ai/hal0/hal0-slotd", "github.com/hal0ai/hal0/hal0-pull", "./testdata/standin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "slotd tests:", err)
		return 1
	}
	bins.slotd, bins.pull, bins.standin = p[0], p[1], p[2]
	if bins.flm, _, err = flmtest.Build(binDir); err != nil {
		fmt.Fprintln(os.Stderr, "slotd tests:", err)
		return 1
	}
	return m.Run()
}
