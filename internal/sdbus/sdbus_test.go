package sdbus

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// TestDialNowhere needs no systemd: with the bus pointed at nothing, Dial
// fails with ErrNoSystemd and says what it tried.
func TestDialNowhere(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+t.TempDir()+"/no-bus")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := Dial(ctx)
	if err == nil {
		s.Close()
		t.Skip("the host's systemd answers on " + privateSocket)
	}
	if !errors.Is(err, ErrNoSystemd) || !strings.Contains(err.Error(), "no-bus") {
		t.Fatalf("Dial = %v; want ErrNoSystemd naming the address", err)
	}
	if os.Geteuid() == 0 && !strings.Contains(err.Error(), privateSocket) {
		t.Errorf("as root, Dial did not try %s: %v", privateSocket, err)
	}
}

func TestDialAddressHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := DialAddress(ctx, "unix:path=/nonexistent"); !errors.Is(err, ErrNoSystemd) {
		t.Fatalf("DialAddress = %v, want ErrNoSystemd", err)
	}
}

func TestJobErrorMessage(t *testing.T) {
	e := &JobError{Op: "start", Unit: "hal0-pull@x.service", Result: "failed",
		State: &UnitState{ActiveState: "failed", SubState: "failed", Result: "exit-code", ExecMainCode: 1, ExecMainStatus: 3}}
	want := "sdbus: start hal0-pull@x.service: job failed (unit failed/failed, result exit-code, main process status 3); see journalctl -u hal0-pull@x.service"
	if e.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", e.Error(), want)
	}
	e.State = nil
	if !strings.HasSuffix(e.Error(), "job failed; see journalctl -u hal0-pull@x.service") {
		t.Errorf("Error() without state = %q", e.Error())
	}
}

func TestWrapAndDBusErrors(t *testing.T) {
	if err := wrap("kill", "x.service", dbus.ErrClosed); !errors.Is(err, ErrNoSystemd) || !errors.Is(err, dbus.ErrClosed) {
		t.Errorf("wrap(ErrClosed) = %v", err)
	}
	nsu := dbus.Error{Name: errNoSuchUnit, Body: []any{"Unit x.service not loaded."}}
	if !isDBusError(wrap("stop", "x.service", nsu), errNoSuchUnit) {
		t.Error("isDBusError missed a wrapped dbus.Error")
	}
	if !isDBusError(&nsu, errNoSuchUnit) || isDBusError(errors.New(errNoSuchUnit), errNoSuchUnit) {
		t.Error("isDBusError mismatch")
	}
}

func TestRefusedByStartLimit(t *testing.T) {
	failed := UnitState{ActiveState: "failed", Result: "exit-code", InvocationID: "aa"}
	for _, tt := range []struct {
		name   string
		before UnitState
		after  *UnitState
		want   bool
	}{
		{"no state after", failed, nil, false},
		{"limit after success", UnitState{ActiveState: "inactive", Result: "success", InvocationID: "aa"},
			&UnitState{ActiveState: "failed", Result: "start-limit-hit", InvocationID: "aa"}, true},
		{"limit after failure", failed, &UnitState{ActiveState: "failed", Result: "exit-code", InvocationID: "aa"}, true},
		{"ran and failed", failed, &UnitState{ActiveState: "failed", Result: "exit-code", InvocationID: "bb"}, false},
		{"first run failed", UnitState{ActiveState: "inactive"}, &UnitState{ActiveState: "failed", Result: "exit-code", InvocationID: "bb"}, false},
		{"never ran, refused otherwise", UnitState{ActiveState: "inactive"}, &UnitState{ActiveState: "inactive"}, false},
	} {
		if got := refusedByStartLimit(tt.before, tt.after); got != tt.want {
			t.Errorf("%s: refusedByStartLimit = %v, want %v", tt.name, got, tt.want)
		}
	}
}
