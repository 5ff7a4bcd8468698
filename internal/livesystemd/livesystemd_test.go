package livesystemd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBootIsolatesHost(t *testing.T) {
	// A marker in the host's /tmp must survive the boot: systemd-tmpfiles
	// inside would empty /tmp were it not a private tmpfs.
	marker, err := os.CreateTemp("/tmp", "hal0-live-marker-")
	if err != nil {
		t.Fatal(err)
	}
	marker.Close()
	t.Cleanup(func() { os.Remove(marker.Name()) })

	var s *System
	t.Run("boot", func(t *testing.T) {
		s = Boot(t)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()

		if out, err := s.Systemctl(ctx, "is-system-running"); out != "running" {
			t.Fatalf("is-system-running = %q, %v", out, err)
		}
		if _, err := os.Stat(marker.Name()); err != nil {
			t.Fatalf("host /tmp marker gone after boot: %v", err)
		}
		if out, err := s.Run(ctx, "ls", "-A", "/tmp"); err != nil || strings.Contains(out, filepath.Base(marker.Name())) {
			t.Errorf("namespace /tmp shows the host's (%q, %v)", out, err)
		}
		// /var/tmp inside holds nothing but Dir, and PrivateTmp= units
		// keep their directories there, not in the host's /var/tmp.
		if out, err := s.Run(ctx, "ls", "-A", "/var/tmp"); err != nil || out != filepath.Base(s.Dir) {
			t.Errorf("namespace /var/tmp = %q, %v; want just %s", out, err, filepath.Base(s.Dir))
		}
		s.InstallUnit(t, "ptmp.service", "[Service]\nType=exec\nPrivateTmp=yes\nExecStart=/bin/sleep infinity\n")
		if _, err := s.Systemctl(ctx, "start", "ptmp.service"); err != nil {
			t.Fatal(err)
		}
		if leaked, _ := filepath.Glob("/var/tmp/systemd-private-*-ptmp.service-*"); len(leaked) > 0 {
			t.Errorf("PrivateTmp directories on the host: %v", leaked)
		}
		// Dir is shared both ways.
		if _, err := s.Run(ctx, "sh", "-c", `echo inside >"$0/from-ns"`, s.Dir); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(s.Dir, "from-ns")); err != nil || string(b) != "inside\n" {
			t.Errorf("file written inside, read on host: %q, %v", b, err)
		}
		// The host's enabled units and generators are hidden: only what
		// hal0-live.target pulls in runs.
		if out, _ := s.Systemctl(ctx, "list-units", "--state=active", "--type=service", "--plain", "--no-legend"); strings.Contains(out, "postgresql") ||
			strings.Contains(out, "getty") || strings.Contains(out, "sysctl") {
			t.Errorf("host services started inside:\n%s", out)
		}
		// Our own cgroup namespace: systemd sees itself at the root.
		if out, err := s.Run(ctx, "cat", "/proc/1/cgroup"); err != nil || !strings.HasSuffix(out, "\n0::/init.scope") {
			t.Errorf("/proc/1/cgroup inside = %q, %v; want 0::/init.scope", out, err)
		}
		if out, err := s.Journal(ctx, "-b", "-u", "dbus.service", "-o", "cat"); err != nil || out == "" {
			t.Errorf("journal of dbus.service = %q, %v", out, err)
		}
	})
	if s == nil && !t.Failed() {
		t.Skip("the boot subtest was skipped")
	}
	if t.Failed() {
		return
	}
	// The subtest's cleanup has powered the namespace off.
	if err := syscall.Kill(s.PID, 0); err == nil {
		t.Errorf("systemd pid %d still alive after cleanup", s.PID)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("scratch dir %s not removed: %v", s.Dir, err)
	}
	if _, err := os.Stat(marker.Name()); err != nil {
		t.Errorf("host /tmp marker gone after shutdown: %v", err)
	}
}

func TestWaitUnit(t *testing.T) {
	t.Parallel()
	s := Boot(t, WithUnit("sleeper.service", "[Service]\nType=exec\nExecStart=/bin/sleep infinity\n"),
		WithEnv("HAL0_GREETING=hello world", `HAL0_QUOTE=a"b\c`))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	if _, err := s.Systemctl(ctx, "start", "--no-block", "sleeper.service"); err != nil {
		t.Fatal(err)
	}
	if st, err := s.WaitUnit(ctx, "sleeper.service", "active", "failed"); err != nil || st != "active" {
		t.Fatalf("WaitUnit(active) = %q, %v", st, err)
	}
	// WithEnv reaches the units, quotes and all. (Type=exec: with
	// Type=simple, "active" comes right after fork, and MainPID's environ
	// could still be systemd's own.)
	pid, err := s.Systemctl(ctx, "show", "-P", "MainPID", "sleeper.service")
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.Run(ctx, "cat", "/proc/"+pid+"/environ")
	if err != nil || !strings.Contains(env, "HAL0_GREETING=hello world\x00") || !strings.Contains(env, "HAL0_QUOTE=a\"b\\c") {
		t.Errorf("environment of sleeper = %q, %v", env, err)
	}
	if _, err := s.Systemctl(ctx, "stop", "--no-block", "sleeper.service"); err != nil {
		t.Fatal(err)
	}
	if st, err := s.WaitUnit(ctx, "sleeper.service", "inactive"); err != nil || st != "inactive" {
		t.Fatalf("WaitUnit(inactive) = %q, %v", st, err)
	}

	// A unit installed after boot, failing on start.
	s.InstallUnit(t, "fails.service", "[Service]\nType=oneshot\nExecStart=/bin/false\n")
	if _, err := s.Systemctl(ctx, "start", "--no-block", "fails.service"); err != nil {
		t.Fatal(err)
	}
	if st, err := s.WaitUnit(ctx, "fails.service", "failed"); err != nil || st != "failed" {
		t.Fatalf("WaitUnit(failed) = %q, %v", st, err)
	}
	// Already in the state: returns at once.
	if st, err := s.WaitUnit(ctx, "fails.service", "failed"); err != nil || st != "failed" {
		t.Fatalf("second WaitUnit(failed) = %q, %v", st, err)
	}

	// Giving up at the deadline names the last state.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	st, err := s.WaitUnit(short, "sleeper.service", "active")
	if err == nil || st != "inactive" || !strings.Contains(err.Error(), `last state "inactive"`) {
		t.Fatalf("WaitUnit past deadline = %q, %v; want an error naming inactive", st, err)
	}
}

func TestBootUnitsAndDropIns(t *testing.T) {
	t.Parallel()
	s := Boot(t,
		WithUnit("early.service", "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n"),
		WithUnit("early.service.d/10-desc.conf", "[Unit]\nDescription=early from drop-in\n"),
		WithBootUnits("early.service"))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// Boot returned only after hal0-live.target, which wants early.service.
	if out, err := s.Systemctl(ctx, "show", "-P", "ActiveState", "early.service"); err != nil || out != "active" {
		t.Errorf("early.service ActiveState = %q, %v", out, err)
	}
	if out, err := s.Systemctl(ctx, "show", "-P", "Description", "early.service"); err != nil || out != "early from drop-in" {
		t.Errorf("early.service Description = %q, %v", out, err)
	}
}

// TestParallelSystems boots two Systems side by side: their cgroups,
// buses and /run are separate.
func TestParallelSystems(t *testing.T) {
	t.Parallel()
	a, b := Boot(t), Boot(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	a.InstallUnit(t, "only-a.service", "[Service]\nExecStart=/bin/sleep infinity\n")
	if _, err := a.Systemctl(ctx, "start", "only-a.service"); err != nil {
		t.Fatal(err)
	}
	if out, _ := b.Systemctl(ctx, "show", "-P", "LoadState", "only-a.service"); out != "not-found" {
		t.Errorf("b sees a's unit: LoadState %q", out)
	}
	if a.BusAddress == b.BusAddress || a.PID == b.PID || a.Dir == b.Dir {
		t.Errorf("systems share identity: %+v %+v", a, b)
	}
}

type recordingTB struct {
	testing.TB
	skipped, fatal string
}

func (r *recordingTB) Helper()                           {}
func (r *recordingTB) Skipf(format string, args ...any)  { r.skipped = fmt.Sprintf(format, args...) }
func (r *recordingTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

// A unit the test supplies that fails at boot is the test's bug: Boot fails
// the test (it does not skip), whatever HAL0_LIVE_REQUIRED says.
func TestBootFailsOnBrokenTestUnit(t *testing.T) {
	t.Parallel()
	if ok, why := Available(); !ok {
		t.Skip(why)
	}
	r := &recordingTB{TB: t}
	s := Boot(r, WithUnit("broken.service", "[Service]\nType=oneshot\nExecStart=/bin/false\n"), WithBootUnits("broken.service"))
	if s != nil || r.skipped != "" || !strings.Contains(r.fatal, "broken.service") {
		t.Errorf("Boot with a failing boot unit: system %v, skipped %q, fatal %q", s, r.skipped, r.fatal)
	}
}

func TestUnavailableSkipsOrFails(t *testing.T) {
	t.Setenv(EnvRequired, "")
	r := &recordingTB{TB: t}
	unavailable(r, "no root")
	if r.fatal != "" || !strings.Contains(r.skipped, "no root") {
		t.Errorf("without %s: skipped %q, fatal %q", EnvRequired, r.skipped, r.fatal)
	}
	t.Setenv(EnvRequired, "1")
	r = &recordingTB{TB: t}
	unavailable(r, "no root")
	if r.skipped != "" || !strings.Contains(r.fatal, "no root") {
		t.Errorf("with %s=1: skipped %q, fatal %q", EnvRequired, r.skipped, r.fatal)
	}
}

func TestAvailableExplainsItself(t *testing.T) {
	ok, why := Available()
	t.Logf("Available() = %v, %q", ok, why)
	if !ok && why == "" {
		t.Error("Available() = false without a reason")
	}
	if os.Geteuid() != 0 && ok {
		t.Error("Available() = true as non-root")
	}
}

func TestCheckUnitPath(t *testing.T) {
	for name, ok := range map[string]bool{
		"a.service": true, "a.service.d/10-x.conf": true,
		"": false, "../a.service": false, "/a.service": false, "a.service.d/x": false,
		"a/b/c.conf": false, ".hidden": false, "a.service.d/": false,
	} {
		if err := checkUnitPath(name); (err == nil) != ok {
			t.Errorf("checkUnitPath(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}
