package packagetest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hal0ai/hal0/internal/livesystemd"
)

// The two releases every test installs: v1 first, then v2 as an upgrade
// and as a `hal0 update` tarball. v2 is shaped like the version build.sh
// derives for a commit after a tag, the longest kind, which lintian sees.
const (
	v1 = "1.0.0"
	v2 = "1.0.0+git12.0123456789ab"
)

// built holds the artifacts of packaging/build.sh for v1 and v2, made once
// per test binary in a scratch directory removed by TestMain.
var built struct {
	once sync.Once
	dir  string
	arch string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// artifacts builds both releases with packaging/build.sh (the script
// `make deb` runs) and returns the directory holding them.
func artifacts(t *testing.T) string {
	t.Helper()
	need(t, "dpkg-deb")
	built.once.Do(func() {
		out, err := exec.Command("dpkg", "--print-architecture").Output()
		if err != nil {
			built.err = fmt.Errorf("dpkg --print-architecture: %w", err)
			return
		}
		built.arch = strings.TrimSpace(string(out))
		if built.dir, built.err = os.MkdirTemp("", "hal0-packagetest-"); built.err != nil {
			return
		}
		// Both at once: most of a build is one single-threaded compressor.
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, v := range []string{v1, v2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// xz at level 1: the shipped format at an eighth of the time.
				cmd := exec.Command("bash", "../../packaging/build.sh")
				cmd.Env = append(os.Environ(), "VERSION="+v, "OUT="+built.dir, "XZ_LEVEL=1")
				if out, err := cmd.CombinedOutput(); err != nil {
					errs[i] = fmt.Errorf("packaging/build.sh VERSION=%s: %v\n%s", v, err, out)
				}
			}()
		}
		wg.Wait()
		built.err = errors.Join(errs...)
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.dir
}

func debName(v string) string     { return fmt.Sprintf("hal0_%s_%s.deb", v, built.arch) }
func tarballName(v string) string { return fmt.Sprintf("hal0_%s_linux_%s.tar.gz", v, built.arch) }

// need finds a tool the test cannot do without: a missing one skips the
// test, or fails it under HAL0_LIVE_REQUIRED=1 (CI), naming the script
// that installs it.
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s is not installed; packaging/test-deps.sh installs what these tests need", tool)
	if os.Getenv(livesystemd.EnvRequired) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestLintian checks the .deb with lintian: no error and no warning may
// remain. The overrides the package ships are printed with their reasons
// (with --show-overrides, --fail-on would count them, so the verdict
// comes from the tags printed).
func TestLintian(t *testing.T) {
	lintian := need(t, "lintian")
	deb := filepath.Join(artifacts(t), debName(v2))
	cmd := exec.Command(lintian, "--pedantic", "--display-info", "--show-overrides", deb)
	out, err := cmd.CombinedOutput()
	t.Logf("lintian %s:\n%s", filepath.Base(deb), out)
	if err != nil {
		t.Fatalf("lintian failed: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			t.Errorf("lintian: %s", line)
		}
	}
}
