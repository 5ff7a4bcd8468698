package unitwatch_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/unitwatch"
)

// These tests run the Watcher against a real systemd booted in a private
// namespace (livesystemd): they need root and skip with the reason
// otherwise, unless HAL0_LIVE_REQUIRED=1 makes that a failure.

// slotScript stands in for an inference slot (Type=notify): it reports
// STATUS=warming, waits at its gate while one exists (a FIFO the test
// writes a line to), then reports READY=1 and STATUS=ready.
const slotScript = `#!/bin/sh
dir=$(dirname "$0")
systemd-notify --status="warming $1"
if [ -p "$dir/gate-$1" ]; then read -r _ <"$dir/gate-$1"; fi
systemd-notify --ready --status="ready $1"
exec sleep infinity
`

// pullScript stands in for a pull (Type=oneshot): instances named *fail*
// exit 3, the others succeed, after which systemd garbage-collects them.
const pullScript = `#!/bin/sh
case "$1" in
*fail*) exit 3 ;;
esac
exit 0
`

var patterns = []string{"hal0-pull@*.service", "hal0-slot@*.service"}

// watched is the test's own reading of patterns.
func watched(name string) bool {
	return (strings.HasPrefix(name, "hal0-pull@") || strings.HasPrefix(name, "hal0-slot@")) && strings.HasSuffix(name, ".service")
}

// bootUnits boots a private systemd with the two stand-in templates and a
// unit outside the patterns (hal0-sleep@.service).
func bootUnits(t *testing.T) *livesystemd.System {
	t.Helper()
	s := livesystemd.Boot(t)
	for name, content := range map[string]string{"slot.sh": slotScript, "pull.sh": pullScript} {
		if err := os.WriteFile(filepath.Join(s.Dir, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// NotifyAccess=all: systemd-notify is a child of the main process.
	// It waits until systemd has processed each message (252's default
	// barrier), so systemd can still attribute it to the unit.
	s.InstallUnit(t, "hal0-slot@.service", fmt.Sprintf(`[Unit]
Description=hal0 test slot %%i

[Service]
Type=notify
NotifyAccess=all
ExecStart=/bin/sh %s %%i
`, filepath.Join(s.Dir, "slot.sh")))
	s.InstallUnit(t, "hal0-pull@.service", fmt.Sprintf(`[Unit]
Description=hal0 test pull %%i

[Service]
Type=oneshot
ExecStart=/bin/sh %s %%i
`, filepath.Join(s.Dir, "pull.sh")))
	s.InstallUnit(t, "hal0-sleep@.service", "[Service]\nType=exec\nExecStart=/bin/sleep infinity\n")
	return s
}

// stream reads a Watcher's events, checks that every one concerns a
// watched unit, and keeps them all for failure messages.
type stream struct {
	t    *testing.T
	ch   <-chan unitwatch.Event
	seen []unitwatch.Event

	mu   sync.Mutex
	logs []string // the Watcher's Logf lines
}

// startWatcher runs a Watcher on s's bus until the test ends, then checks
// that Run returned because its context ended.
func startWatcher(t *testing.T, s *livesystemd.System) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := unitwatch.New(s.BusAddress, patterns...)
	out := make(chan unitwatch.Event, 256)
	st := &stream{t: t, ch: out}
	w.Logf = func(format string, a ...any) {
		line := fmt.Sprintf(format, a...)
		st.mu.Lock()
		st.logs = append(st.logs, line)
		st.mu.Unlock()
		t.Log(line)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, out) }()
	// Registered after Boot's cleanup, so it runs before systemd powers off.
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v after its context was cancelled", err)
		}
	})
	return st
}

func (st *stream) loggedSince(n int, substr string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, l := range st.logs[min(n, len(st.logs)):] {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

func (st *stream) logCount() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.logs)
}

// until reads events until one satisfies pred and returns all it read,
// that one last. It fails the test when ctx ends first.
func (st *stream) until(ctx context.Context, what string, pred func(unitwatch.Event) bool) []unitwatch.Event {
	st.t.Helper()
	var got []unitwatch.Event
	for {
		select {
		case <-ctx.Done():
			st.t.Fatalf("waiting for %s: %v; events so far:\n%s", what, context.Cause(ctx), st.dump())
		case e := <-st.ch:
			st.seen = append(st.seen, e)
			got = append(got, e)
			if e.Unit.Name != "" && !watched(e.Unit.Name) {
				st.t.Errorf("event for a unit outside the patterns: %+v", e)
			}
			if pred(e) {
				return got
			}
		}
	}
}

// resync reads up to the next "resync done" marker and returns the
// resync's units by name. Events before the resync began are skipped, but
// a Gone among them for a unit the resync lists as still running the same
// invocation is an error: it was never gone.
func (st *stream) resync(ctx context.Context) map[string]unitwatch.Unit {
	st.t.Helper()
	evs := st.until(ctx, "a resync", unitwatch.Event.ResyncDone)
	units := map[string]unitwatch.Unit{}
	prev := ""
	for i := len(evs) - 2; i >= 0 && evs[i].Resync; i-- {
		u := evs[i].Unit
		if u.Name == "" {
			st.t.Errorf("a resync event without a unit before the marker: %+v", evs[i])
		}
		if prev != "" && u.Name >= prev {
			st.t.Errorf("resync not sorted by name: %s before %s", u.Name, prev)
		}
		prev = u.Name
		units[u.Name] = u
	}
	for _, e := range evs {
		if u := e.Unit; u.Gone && !e.Resync {
			if now, ok := units[u.Name]; ok && !now.Gone && now.InvocationID == u.InvocationID {
				st.t.Errorf("%s reported Gone, yet the resync after lists it %s:\n%s", u.Name, now.ActiveState, st.dump())
			}
		}
	}
	return units
}

func (st *stream) dump() string {
	var b strings.Builder
	for _, e := range st.seen {
		fmt.Fprintf(&b, "  resync=%v %+v\n", e.Resync, e.Unit)
	}
	return b.String()
}

func named(name string, cond func(unitwatch.Unit) bool) func(unitwatch.Event) bool {
	return func(e unitwatch.Event) bool { return e.Unit.Name == name && !e.Resync && cond(e.Unit) }
}

func systemctl(ctx context.Context, t *testing.T, s *livesystemd.System, args ...string) {
	t.Helper()
	if out, err := s.Systemctl(ctx, args...); err != nil {
		t.Fatalf("systemctl %s: %v (%s)", strings.Join(args, " "), err, out)
	}
}

func TestLiveFollowsUnits(t *testing.T) {
	t.Parallel()
	s := bootUnits(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// Before the watcher starts: a running slot, a failed pull (which
	// stays loaded), a succeeded pull (garbage-collected) and a running
	// unit outside the patterns.
	systemctl(ctx, t, s, "start", "hal0-slot@pre.service", "hal0-sleep@pre.service", "hal0-pull@ok-pre.service")
	if _, err := s.Systemctl(ctx, "start", "hal0-pull@fail-pre.service"); err == nil {
		t.Fatal("hal0-pull@fail-pre.service started successfully")
	}

	st := startWatcher(t, s)
	units := st.resync(ctx)
	if len(units) != 2 {
		t.Errorf("initial resync has %d units, want hal0-pull@fail-pre and hal0-slot@pre:\n%s", len(units), st.dump())
	}
	if u := units["hal0-slot@pre.service"]; u.ActiveState != "active" || u.SubState != "running" || u.StatusText != "ready pre" ||
		u.ExecMainPID == 0 || len(u.InvocationID) != 32 || u.Gone {
		t.Errorf("resync: hal0-slot@pre.service = %+v; want active/running, STATUS ready pre, a main pid and invocation id", u)
	}
	if u := units["hal0-pull@fail-pre.service"]; u.ActiveState != "failed" || u.Result != "exit-code" || u.ExecMainStatus != 3 || u.ExecMainCode != 1 {
		t.Errorf("resync: hal0-pull@fail-pre.service = %+v; want failed, exit-code, status 3", u)
	}

	t.Run("slot start", func(t *testing.T) {
		// The gate holds the slot in activating until the test has seen
		// its STATUS=warming. Opened read-write, a FIFO never blocks the
		// opener and keeps the line buffered until the script reads it.
		gate := filepath.Join(s.Dir, "gate-primary")
		if err := syscall.Mkfifo(gate, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(gate, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		const slot = "hal0-slot@primary.service"
		systemctl(ctx, t, s, "start", "--no-block", slot)
		evs := st.until(ctx, slot+" warming", named(slot, func(u unitwatch.Unit) bool {
			return u.ActiveState == "activating" && u.StatusText == "warming primary"
		}))
		// Loading the unit reports it inactive first; it must not be
		// active before the gate opens.
		for _, e := range evs {
			if e.Unit.Name == slot && e.Unit.ActiveState != "activating" && e.Unit.ActiveState != "inactive" {
				t.Errorf("%s was %s before it was seen warming", slot, e.Unit.ActiveState)
			}
		}
		if _, err := f.WriteString("go\n"); err != nil {
			t.Fatal(err)
		}
		// READY=1 and STATUS= travel in one message, but systemd reports
		// the job's end (active) before it applies the STATUS=, so
		// "ready primary" may come in an event of its own.
		evs = st.until(ctx, slot+" active and ready", named(slot, func(u unitwatch.Unit) bool {
			return u.ActiveState == "active" && u.StatusText == "ready primary"
		}))
		u := evs[len(evs)-1].Unit
		if u.SubState != "running" || u.Result != "success" || u.ExecMainPID == 0 || len(u.InvocationID) != 32 {
			t.Errorf("%s active: %+v; want running, a main pid and invocation id", slot, u)
		}
		for _, e := range evs {
			if e.Unit.Name == slot && e.Unit.ActiveState != "activating" && e.Unit.ActiveState != "active" {
				t.Errorf("%s went %s between warming and ready", slot, e.Unit.ActiveState)
			}
		}
	})

	t.Run("failing pull", func(t *testing.T) {
		const pull = "hal0-pull@fail-1.service"
		systemctl(ctx, t, s, "start", "--no-block", pull)
		evs := st.until(ctx, pull+" failed", named(pull, func(u unitwatch.Unit) bool { return u.ActiveState == "failed" }))
		u := evs[len(evs)-1].Unit
		if u.SubState != "failed" || u.Result != "exit-code" || u.ExecMainCode != 1 || u.ExecMainStatus != 3 || u.Gone {
			t.Errorf("%s failed: %+v; want failed/failed, exit-code, CLD_EXITED, status 3", pull, u)
		}
	})

	t.Run("successful pull is garbage-collected", func(t *testing.T) {
		// A unit outside the patterns changes first; systemd signals in
		// order, so its events would arrive before the pull's Gone.
		systemctl(ctx, t, s, "start", "hal0-sleep@during.service")
		systemctl(ctx, t, s, "stop", "hal0-sleep@during.service", "hal0-sleep@pre.service")
		const pull = "hal0-pull@ok-1.service"
		systemctl(ctx, t, s, "start", pull) // oneshot: returns once it exited 0
		evs := st.until(ctx, pull+" gone", named(pull, func(u unitwatch.Unit) bool { return u.Gone }))
		var mine []unitwatch.Unit
		for _, e := range evs {
			if e.Unit.Name == pull {
				mine = append(mine, e.Unit)
			}
		}
		if len(mine) < 2 {
			t.Fatalf("%s: only %+v", pull, mine)
		}
		final, gone := mine[len(mine)-2], mine[len(mine)-1]
		if final.ActiveState != "inactive" || final.SubState != "dead" || final.Result != "success" ||
			final.ExecMainCode != 1 || final.ExecMainStatus != 0 || final.Gone {
			t.Errorf("%s final state %+v; want inactive/dead, success, exited 0", pull, final)
		}
		if want := final; gone != func() unitwatch.Unit { want.Gone = true; return want }() {
			t.Errorf("%s Gone event %+v does not repeat its final state %+v", pull, gone, final)
		}
		if out, _ := s.Systemctl(ctx, "list-units", "--all", "--plain", "--no-legend", pull); out != "" {
			t.Errorf("%s still loaded: %s", pull, out)
		}
	})
}

func TestLiveResyncAfterReconnect(t *testing.T) {
	t.Parallel()
	s := bootUnits(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	systemctl(ctx, t, s, "start", "hal0-slot@a.service")

	st := startWatcher(t, s)
	if u, ok := st.resync(ctx)["hal0-slot@a.service"]; !ok || u.ActiveState != "active" {
		t.Fatalf("first resync: hal0-slot@a.service = %+v, %v", u, ok)
	}

	// Restarting dbus closes the watcher's connection; systemd, still
	// running, rejoins the new bus.
	logs := st.logCount()
	systemctl(ctx, t, s, "restart", "dbus.service")
	units := st.resync(ctx)
	if u, ok := units["hal0-slot@a.service"]; !ok || u.ActiveState != "active" || u.StatusText != "ready a" {
		t.Errorf("resync after the dbus restart: hal0-slot@a.service = %+v, %v", u, ok)
	}
	if !st.loggedSince(logs, "lost") {
		t.Error("no lost connection logged after the dbus restart")
	}

	// Changes after the reconnect still arrive. (A second resync may come
	// first, when systemd rejoined the bus after the watcher did.)
	systemctl(ctx, t, s, "start", "--no-block", "hal0-slot@b.service")
	st.until(ctx, "hal0-slot@b active", named("hal0-slot@b.service", func(u unitwatch.Unit) bool {
		return u.ActiveState == "active" && u.StatusText == "ready b"
	}))
	systemctl(ctx, t, s, "stop", "--no-block", "hal0-slot@a.service")
	evs := st.until(ctx, "hal0-slot@a gone", named("hal0-slot@a.service", func(u unitwatch.Unit) bool { return u.Gone }))
	if u := evs[len(evs)-1].Unit; u.ActiveState != "inactive" {
		t.Errorf("hal0-slot@a.service gone in state %+v, want inactive", u)
	}

	// daemon-reload announces every unit removed and new again; the
	// watcher reports a resync instead.
	logs = st.logCount()
	systemctl(ctx, t, s, "daemon-reload")
	units = st.resync(ctx)
	if u, ok := units["hal0-slot@b.service"]; !ok || u.ActiveState != "active" {
		t.Errorf("resync after daemon-reload: hal0-slot@b.service = %+v, %v", u, ok)
	}
	if !st.loggedSince(logs, "systemd reloaded") {
		t.Error("daemon-reload was not followed by a resync")
	}

	// daemon-reexec keeps the watcher's connection, but systemd leaves the
	// bus and comes back under a new name: the watcher resyncs on that.
	logs = st.logCount()
	systemctl(ctx, t, s, "daemon-reexec")
	units = st.resync(ctx)
	if u, ok := units["hal0-slot@b.service"]; !ok || u.ActiveState != "active" {
		t.Errorf("resync after daemon-reexec: hal0-slot@b.service = %+v, %v", u, ok)
	}
	if _, ok := units["hal0-slot@a.service"]; ok {
		t.Error("resync after daemon-reexec lists the stopped hal0-slot@a.service")
	}
	if !st.loggedSince(logs, "systemd is back on the bus") || st.loggedSince(logs, "reconnecting") {
		t.Error("daemon-reexec was not followed by a resync on the same connection")
	}
	const pull = "hal0-pull@fail-after-reexec.service"
	systemctl(ctx, t, s, "start", "--no-block", pull)
	evs = st.until(ctx, pull+" failed", named(pull, func(u unitwatch.Unit) bool { return u.ActiveState == "failed" }))
	if u := evs[len(evs)-1].Unit; u.ExecMainStatus != 3 || u.Result != "exit-code" {
		t.Errorf("%s after daemon-reexec: %+v", pull, u)
	}
}
