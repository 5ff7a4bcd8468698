package torture

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/testbin"
)

// bins are the real binaries under test, built once by TestMain into a
// scratch directory under /var/lib (when root), which units with
// PrivateTmp= still see.
var bins struct {
	scratch string
	pull    string
	apid    string
	cli     string
	slotd   string
	standin string
}

// full is HAL0_TORTURE=full (make torture): every case at full size.
var full = os.Getenv("HAL0_TORTURE") == "full"

// soakFor is HAL0_SOAK (make soak): how long the soak runs; 0 skips it.
var soakFor time.Duration

const scratchPrefix = "hal0-torture-"

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if v := os.Getenv("HAL0_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fmt.Fprintf(os.Stderr, "torture: HAL0_SOAK=%q: want a duration such as 1h or 3m\n", v)
			return 2
		}
		soakFor = d
	}
	dir, err := livesystemd.ScratchRoot(scratchPrefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "torture:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins.scratch = dir
	binDir := filepath.Join(dir, "bin")
	p, err := testbin.Build(binDir, "github.com/hal0ai/hal0/hal0-pull", "github.com/hal0ai/hal0/hal0-apid",
		"github.com/hal0ai/hal0/hal0", "github.com/hal0ai/hal0/hal0-slotd", "../slotd/testdata/standin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "torture:", err)
		return 1
	}
	bins.pull, bins.apid, bins.cli, bins.slotd, bins.standin = p[0], p[1], p[2], p[3], p[4]
	// Most of these tests wait on timeouts (stalls, retries, a server's
	// header timeout), not on the CPU: run more of them at once than
	// go test's default of one per CPU, unless -parallel says otherwise.
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "8")
	}
	return m.Run()
}

// pick returns the full-mode value under HAL0_TORTURE=full, else short.
func pick[T any](short, long T) T {
	if full {
		return long
	}
	return short
}

// report logs a table and writes it to test-artifacts/torture/NAME.txt in
// the checkout, so that make torture leaves its figures behind.
func report(t testing.TB, name string, tb *Table) {
	t.Helper()
	t.Logf("\n%s", tb)
	dir := filepath.Join("..", "..", "test-artifacts", "torture")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("figures not saved: %v", err)
		return
	}
	mode := pick("short", "full")
	if name == "soak" {
		mode = soakFor.String()
	}
	text := fmt.Sprintf("# %s, %s mode, %s\n%s", name, mode, time.Now().UTC().Format(time.RFC3339), tb)
	if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(text), 0o644); err != nil {
		t.Logf("figures not saved: %v", err)
	}
}
