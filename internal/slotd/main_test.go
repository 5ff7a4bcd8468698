package slotd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hal0ai/hal0/internal/flm/flmtest"
	"github.com/hal0ai/hal0/internal/livesystemd"
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
