package sdbus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/sdbus"
	"github.com/hal0ai/hal0/internal/unitname"
)

// worker is what the test templates run: it records the unescaped
// instance (%I) under the escaped one (%i), counts its runs, and fails or
// sleeps when the instance asks for it.
const worker = `#!/bin/sh
ref=$1 esc=$2 dir=$(dirname "$0")
printf %s "$ref" >"$dir/out/$esc"
echo run >>"$dir/out/$esc.runs"
case "$ref" in
*fail*) exit 3 ;;
esac
exit 0
`

// bootPull boots a system with the test templates installed and dials it.
func bootPull(t *testing.T) (*livesystemd.System, sdbus.Systemd) {
	t.Helper()
	s := livesystemd.Boot(t)
	if err := os.MkdirAll(filepath.Join(s.Dir, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(s.Dir, "worker.sh")
	if err := os.WriteFile(script, []byte(worker), 0o755); err != nil {
		t.Fatal(err)
	}
	// "%I" is the unescaped instance: the ref exactly as hal0 escaped it.
	s.InstallUnit(t, "hal0-pull@.service", fmt.Sprintf(`[Unit]
Description=hal0 test pull %%I
StartLimitIntervalSec=10min
StartLimitBurst=2

[Service]
Type=oneshot
ExecStart=/bin/sh %s "%%I" "%%i"
`, script))
	s.InstallUnit(t, "hal0-sleep@.service", "[Service]\nType=exec\nExecStart=/bin/sleep infinity\n")

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sd, err := sdbus.DialAddress(ctx, s.BusAddress)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sd.Close() })
	return s, sd
}

func readOut(t *testing.T, s *livesystemd.System, unit string) string {
	t.Helper()
	_, inst, err := unitname.ParseInstance(unit)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(s.Dir, "out", unitname.Escape(inst)))
	if err != nil {
		t.Fatalf("output of %s: %v", unit, err)
	}
	return string(b)
}

func TestStartUnitEscapedInstance(t *testing.T) {
	t.Parallel()
	s, sd := bootPull(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	for _, ref := range []string{"meta-llama/Llama-3-8B:Q4_K_M", "Qwen/Qwen3-4B-GGUF:Q4_K_M", "org/with space+plus=eq?q@at.dot_u", "ünï/.códe"} {
		unit := unitname.Instance("hal0-pull@.service", ref)
		if err := sd.StartUnit(ctx, unit); err != nil {
			t.Fatalf("StartUnit(%s): %v", unit, err)
		}
		// oneshot: "done" means the process exited 0, so the file is there.
		if got := readOut(t, s, unit); got != ref {
			t.Errorf("%%I of %s = %q, want %q", unit, got, ref)
		}
		// A successful instance is inactive (and may already be
		// garbage-collected: then systemd reloads it to answer).
		st, err := sd.Unit(ctx, unit)
		if err != nil || st.LoadState != "loaded" || st.ActiveState != "inactive" {
			t.Errorf("Unit(%s) = %+v, %v", unit, st, err)
		}
	}

	// By hand, through systemctl inside the namespace.
	if _, err := s.Systemctl(ctx, "start", "hal0-pull@qwen3:4b.service"); err != nil {
		t.Fatal(err)
	}
	if got := readOut(t, s, "hal0-pull@qwen3:4b.service"); got != "qwen3:4b" {
		t.Errorf("%%I of hal0-pull@qwen3:4b.service = %q", got)
	}
}

func TestStartUnitFailure(t *testing.T) {
	t.Parallel()
	s, sd := bootPull(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	unit := unitname.Instance("hal0-pull@.service", "acme/fail-model:Q8_0")
	err := sd.StartUnit(ctx, unit)
	var je *sdbus.JobError
	if !errors.As(err, &je) || je.Result != "failed" || je.Unit != unit {
		t.Fatalf("StartUnit(%s) = %v; want a JobError with result failed", unit, err)
	}
	t.Logf("StartUnit error: %v", err)
	for _, want := range []string{unit, "failed", "exit-code", "status 3", "journalctl -u '" + unit + "'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	st, err := sd.Unit(ctx, unit)
	if err != nil {
		t.Fatal(err)
	}
	if st.ActiveState != "failed" || st.Result != "exit-code" || st.ExecMainStatus != 3 || st.ExecMainCode != 1 || len(st.InvocationID) != 32 {
		t.Errorf("Unit(%s) = %+v; want failed, exit-code, status 3, CLD_EXITED, an invocation id", unit, st)
	}
	// The journal has the failure too (what the error message points at).
	if out, err := s.Journal(ctx, "-u", unit, "-o", "cat"); err != nil || !strings.Contains(out, "status=3") {
		t.Errorf("journal of %s: %q, %v", unit, out, err)
	}

	// A failed unit stays loaded (unlike successful ones): ListUnits sees it.
	ok := unitname.Instance("hal0-pull@.service", "acme/ok")
	if err := sd.StartUnit(ctx, ok); err != nil {
		t.Fatal(err)
	}
	if _, err := sd.Unit(ctx, "hal0-sleep@x.service"); err != nil { // loaded, other template
		t.Fatal(err)
	}
	units, err := sd.ListUnits(ctx, "hal0-pull@*")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range units {
		names = append(names, u.Name)
		if !strings.HasPrefix(u.Name, "hal0-pull@") {
			t.Errorf("ListUnits(hal0-pull@*) returned %s", u.Name)
		}
		if u.Name == unit && (u.ActiveState != "failed" || u.LoadState != "loaded") {
			t.Errorf("listed %+v", u)
		}
	}
	if !strings.Contains(strings.Join(names, " "), unit) {
		t.Errorf("ListUnits(hal0-pull@*) = %v, missing %s", names, unit)
	}

	// ResetFailed clears it.
	if err := sd.ResetFailed(ctx, unit); err != nil {
		t.Fatal(err)
	}
	if st, err := sd.Unit(ctx, unit); err != nil || st.ActiveState != "inactive" || st.Result == "exit-code" {
		t.Errorf("after ResetFailed: %+v, %v", st, err)
	}
	// Resetting or stopping a unit systemd does not know is a no-op.
	if err := sd.ResetFailed(ctx, "hal0-never-loaded.service"); err != nil {
		t.Errorf("ResetFailed(unknown) = %v", err)
	}
	if err := sd.StopUnit(ctx, "hal0-never-loaded.service"); err != nil {
		t.Errorf("StopUnit(unknown) = %v", err)
	}
}

// TestStartLimitRetry: after StartLimitBurst failures systemd refuses the
// unit outright ("start-limit-hit"); StartUnit resets it and runs it again.
func TestStartLimitRetry(t *testing.T) {
	t.Parallel()
	s, sd := bootPull(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	unit := unitname.Instance("hal0-pull@.service", "fail/again")
	for i := 1; i <= 3; i++ {
		err := sd.StartUnit(ctx, unit)
		var je *sdbus.JobError
		if !errors.As(err, &je) || je.State == nil || je.State.Result != "exit-code" {
			t.Fatalf("start %d: %v; want the unit's own failure, not a start-limit refusal", i, err)
		}
	}
	runs, err := os.ReadFile(filepath.Join(s.Dir, "out", unitname.Escape("fail/again")+".runs"))
	if err != nil || strings.Count(string(runs), "run") != 3 {
		t.Fatalf("the worker ran %d times (%v), want 3", strings.Count(string(runs), "run"), err)
	}
}

func TestStopAndKillUnit(t *testing.T) {
	t.Parallel()
	s, sd := bootPull(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	unit := unitname.Instance("hal0-sleep@.service", "long/running")
	if err := sd.StartUnit(ctx, unit); err != nil {
		t.Fatal(err)
	}
	// Type=exec: "done" means the process started, and it is still running.
	st, err := sd.Unit(ctx, unit)
	if err != nil || st.ActiveState != "active" || st.SubState != "running" || st.ExecMainPID == 0 {
		t.Fatalf("Unit(%s) after start = %+v, %v", unit, st, err)
	}
	if err := sd.StopUnit(ctx, unit); err != nil {
		t.Fatal(err)
	}
	if st, err := sd.Unit(ctx, unit); err != nil || st.ActiveState != "inactive" {
		t.Fatalf("Unit(%s) after stop = %+v, %v", unit, st, err)
	}

	// KillUnit: SIGKILL makes the service fail with result "signal".
	if err := sd.StartUnit(ctx, unit); err != nil {
		t.Fatal(err)
	}
	if err := sd.KillUnit(ctx, unit, int(syscall.SIGKILL)); err != nil {
		t.Fatal(err)
	}
	if st, err := s.WaitUnit(ctx, unit, "failed", "inactive"); err != nil || st != "failed" {
		t.Fatalf("after SIGKILL: %q, %v", st, err)
	}
	if st, err := sd.Unit(ctx, unit); err != nil || st.Result != "signal" || st.ExecMainStatus != int32(syscall.SIGKILL) || st.ExecMainCode != 2 {
		t.Errorf("Unit(%s) after SIGKILL = %+v, %v", unit, st, err)
	}
}

func TestUnitNotFound(t *testing.T) {
	t.Parallel()
	_, sd := bootPull(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := sd.Unit(ctx, "hal0-does-not-exist.service")
	if err != nil || st.LoadState != "not-found" || st.ActiveState != "inactive" {
		t.Fatalf("Unit(unknown) = %+v, %v", st, err)
	}
	if _, err := sd.Unit(ctx, "not a unit name"); err == nil {
		t.Error("Unit(invalid name) succeeded")
	}
	if err := sd.StartUnit(ctx, "hal0-does-not-exist.service"); err == nil || !strings.Contains(err.Error(), "hal0-does-not-exist.service") {
		t.Errorf("StartUnit(unknown) = %v", err)
	}
}

func TestDialAddressNothingThere(t *testing.T) {
	t.Parallel()
	s, _ := bootPull(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := sdbus.DialAddress(ctx, "unix:path="+filepath.Join(s.Dir, "nothing-here")); !errors.Is(err, sdbus.ErrNoSystemd) {
		t.Errorf("DialAddress(no socket) = %v, want ErrNoSystemd", err)
	}
	// From outside its pid namespace, systemd refuses private connections.
	if _, err := sdbus.DialAddress(ctx, "unix:path="+s.HostPath("/run/systemd/private")); !errors.Is(err, sdbus.ErrNoSystemd) {
		t.Errorf("DialAddress(private socket from outside) = %v, want ErrNoSystemd", err)
	}
}

// TestDialFallsBackToPrivateSocket runs this test binary inside the
// namespace (systemd only accepts private connections from peers it can
// see), with the bus address pointing nowhere: Dial must fall back to
// /run/systemd/private. The binary is copied to Dir because /tmp, where go
// test builds it, is private inside.
func TestDialFallsBackToPrivateSocket(t *testing.T) {
	t.Parallel()
	s, _ := bootPull(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(s.Dir, "sdbus.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := s.Run(ctx, "env", insideEnv+"=1", "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/bus",
		bin, "-test.run=^TestInsideNamespace$", "-test.v", "-test.count=1")
	if err != nil || !strings.Contains(out, "--- PASS: TestInsideNamespace") {
		t.Fatalf("inside the namespace: %v\n%s", err, out)
	}
}

const insideEnv = "HAL0_SDBUS_INSIDE_NAMESPACE"

// TestInsideNamespace is TestDialFallsBackToPrivateSocket's half that runs
// inside the namespace.
func TestInsideNamespace(t *testing.T) {
	if os.Getenv(insideEnv) != "1" {
		t.Skip("helper of TestDialFallsBackToPrivateSocket; only runs inside a livesystemd namespace")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sd, err := sdbus.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	if err := sd.StartUnit(ctx, "hal0-sleep@private.service"); err != nil {
		t.Fatalf("StartUnit over the private socket: %v", err)
	}
	if st, err := sd.Unit(ctx, "hal0-sleep@private.service"); err != nil || st.ActiveState != "active" {
		t.Fatalf("Unit over the private socket = %+v, %v", st, err)
	}
	if err := sd.StopUnit(ctx, "hal0-sleep@private.service"); err != nil {
		t.Fatal(err)
	}
}

// TestDialEnv is not parallel: it sets DBUS_SYSTEM_BUS_ADDRESS.
func TestDialEnv(t *testing.T) {
	s := livesystemd.Boot(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", s.BusAddress)
	sd, err := sdbus.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	if st, err := sd.Unit(ctx, "dbus.service"); err != nil || st.ActiveState != "active" {
		t.Errorf("Unit(dbus.service) = %+v, %v", st, err)
	}
}

// TestStartUnitGivesUpAtDeadline: StartUnit stops waiting at ctx's deadline
// while systemd keeps the job; the abandoned job's result later lands in its
// buffered channel, so the connection keeps working (go-systemd#429).
func TestStartUnitGivesUpAtDeadline(t *testing.T) {
	t.Parallel()
	s, sd := bootPull(t)
	s.InstallUnit(t, "hal0-slow@.service", "[Service]\nType=oneshot\nExecStart=/bin/sleep infinity\n")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	unit := "hal0-slow@a.service"
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	err := sd.StartUnit(short, unit)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("StartUnit past deadline = %v; want DeadlineExceeded, job still running", err)
	}
	if st, err := sd.Unit(ctx, unit); err != nil || st.ActiveState != "activating" {
		t.Fatalf("Unit(%s) = %+v, %v; want activating", unit, st, err)
	}
	// Stopping cancels the start job: its "canceled" result goes to the
	// abandoned channel. Both this and the next job must still complete.
	if err := sd.StopUnit(ctx, unit); err != nil {
		t.Fatal(err)
	}
	if err := sd.StartUnit(ctx, unitname.Instance("hal0-pull@.service", "after/timeout")); err != nil {
		t.Fatalf("StartUnit after an abandoned job: %v", err)
	}
}
