package catalog

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/testbin"
)

// TestLiveTimerReindexes runs the shipped hal0-catalog.service and
// hal0-catalog.timer in a real systemd (booted privately by livesystemd).
// The units are the real files with test substitutions: the binary path,
// the writable tree (a scratch HAL0_HOME instead of /var/lib/hal0), the hub
// address, no hal0 user (only the package creates it), and a timer drop-in
// that fires every two seconds instead of hourly. The timer's first run
// indexes; later runs skip while the catalog is fresh (catalog.interval);
// changing the sources makes the next run re-index, which drops a model
// that vanished from the hub.
func TestLiveTimerReindexes(t *testing.T) {
	s := livesystemd.Boot(t)
	f := newFixture(t)

	// PrivateTmp hides /tmp from the unit: binary and state go under
	// /var/lib, which it sees (read-only but for ReadWritePaths).
	scratch, err := os.MkdirTemp("/var/lib", "hal0-livetest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(scratch) })
	home := filepath.Join(scratch, "home")
	p, err := testbin.Build(scratch, "github.com/hal0ai/hal0/hal0")
	if err != nil {
		t.Fatal(err)
	}
	bin := p[0]
	writeConf := func(body string) {
		t.Helper()
		dir := filepath.Join(home, "etc", "hal0")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hal0.toml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConf("[catalog]\ninterval = \"1h\"\n\n[[catalog.source]]\norgs = [\"other\"]\n")

	unit, err := os.ReadFile("../../units/hal0-catalog.service")
	if err != nil {
		t.Fatal(err)
	}
	text := string(unit)
	for old, repl := range map[string]string{
		"/usr/lib/hal0/current/bin/hal0 ": bin + " ",
		"ReadWritePaths=/var/lib/hal0":    "ReadWritePaths=" + home,
		"LogExtraFields=HAL0_UNIT=%n":     "LogExtraFields=HAL0_UNIT=%n\nEnvironment=HAL0_HOME=" + home + " HF_ENDPOINT=" + f.hub.URL,
		"User=hal0\n":                     "",
		"Group=hal0\n":                    "",
	} {
		if !strings.Contains(text, old) {
			t.Fatalf("unit file no longer contains %q", old)
		}
		text = strings.ReplaceAll(text, old, repl)
	}
	timer, err := os.ReadFile("../../units/hal0-catalog.timer")
	if err != nil {
		t.Fatal(err)
	}
	s.InstallUnit(t, "hal0-catalog.service", text)
	s.InstallUnit(t, "hal0-catalog.timer", string(timer))
	s.InstallUnit(t, "hal0-catalog.timer.d/test.conf", "[Timer]\nOnActiveSec=1s\nOnUnitActiveSec=2s\nAccuracySec=100ms\nRandomizedDelaySec=0\n")

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	store := Open(config.Default(home).Paths.CatalogFile())
	journal := func() string {
		out, _ := s.Journal(ctx, "-u", "hal0-catalog.service", "-o", "cat")
		return out
	}
	// poll waits for cond on the catalog file (rewritten atomically by the
	// service) or, with a nil file, on the journal.
	poll := func(what string, cond func(*File, string) bool) *File {
		t.Helper()
		for {
			cat, err := store.Load()
			if err == nil && cond(cat, journal()) {
				return cat
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: not within the deadline (load error %v)\njournal:\n%s", what, err, journal())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}

	if out, err := s.Systemctl(ctx, "start", "hal0-catalog.timer"); err != nil {
		t.Fatalf("start timer: %v\n%s", err, out)
	}
	first := poll("first index", func(c *File, _ string) bool { return !c.IndexedAt.IsZero() })
	if got := ids(first.Entries); got != "other/zeta,other/eta" {
		t.Fatalf("first index: %s", got)
	}
	// The next runs find the catalog fresh and skip.
	poll("a skipped run", func(_ *File, j string) bool {
		return strings.Contains(j, "catalog index skipped") && strings.Contains(j, "next index due")
	})
	if again, _ := store.Load(); !again.IndexedAt.Equal(first.IndexedAt) {
		t.Fatalf("a run that should have skipped re-indexed at %v", again.IndexedAt)
	}

	// New sources, and a model gone from the hub: the timer's next run
	// re-indexes.
	f.hub.RemoveRepo("other/eta")
	writeConf("[catalog]\ninterval = \"1h\"\n\n[[catalog.source]]\norgs = [\"other\"]\n\n[[catalog.source]]\norgs = [\"acme\"]\nlimit = 1\n")
	second := poll("re-index", func(c *File, _ string) bool { return c.IndexedAt.After(first.IndexedAt) })
	if got := ids(second.Entries); got != "other/zeta,acme/alpha-GGUF" {
		t.Errorf("re-index: %s", got)
	}
	if !strings.Contains(journal(), "the catalog sources changed") {
		t.Errorf("journal does not say why it re-indexed:\n%s", journal())
	}
	show, _ := s.Systemctl(ctx, "show", "-p", "Result", "hal0-catalog.service")
	if !strings.Contains(show, "Result=success") {
		t.Errorf("service %s\njournal:\n%s", show, journal())
	}
	s.Systemctl(ctx, "stop", "hal0-catalog.timer")
}
