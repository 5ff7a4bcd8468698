package unitwatch

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
)

// These tests drive the tracker with synthetic signals shaped like the
// ones godbus decodes from systemd (bodies of Go types as godbus produces
// them: map[string]dbus.Variant, []string, int32 for "i", []byte for
// "ay"). The live tests in unitwatch_test.go check the same against a
// real systemd.

// encodePath is sd_bus_path_encode, written independently of unitName.
func encodePath(name string) dbus.ObjectPath {
	var b strings.Builder
	b.WriteString(unitPathPrefix)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return dbus.ObjectPath(b.String())
}

// changed builds a PropertiesChanged signal for unit name.
func changed(seq dbus.Sequence, name, iface string, props map[string]any, invalidated ...string) *dbus.Signal {
	m := make(map[string]dbus.Variant, len(props))
	for k, v := range props {
		m[k] = dbus.MakeVariant(v)
	}
	if invalidated == nil {
		invalidated = []string{}
	}
	return &dbus.Signal{Sender: ":1.1", Path: encodePath(name), Name: sigPropertiesChanged,
		Body: []any{iface, m, invalidated}, Sequence: seq}
}

func removed(seq dbus.Sequence, name string) *dbus.Signal {
	return &dbus.Signal{Sender: ":1.1", Path: sd1Path, Name: sigUnitRemoved,
		Body: []any{name, encodePath(name)}, Sequence: seq}
}

func unitNew(seq dbus.Sequence, name string) *dbus.Signal {
	return &dbus.Signal{Sender: ":1.1", Path: sd1Path, Name: sigUnitNew,
		Body: []any{name, encodePath(name)}, Sequence: seq}
}

func snap(seq dbus.Sequence, name string, props map[string]any) snapshot {
	m := make(map[string]dbus.Variant, len(props)+1)
	for k, v := range props {
		m[k] = dbus.MakeVariant(v)
	}
	m["Id"] = dbus.MakeVariant(name)
	// GetAll over all interfaces also returns plenty the tracker ignores.
	m["Description"] = dbus.MakeVariant("test unit")
	m["LoadState"] = dbus.MakeVariant("loaded")
	return snapshot{path: encodePath(name), name: name, props: m, seq: seq}
}

var invocation = []byte{0x5e, 0x1f, 0x0a, 0x9b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xa, 0xb}

const invocationHex = "5e1f0a9b000102030405060708090a0b"

func testTracker(t *testing.T) *tracker {
	t.Helper()
	match, err := compilePatterns([]string{"hal0-pull@*.service", "hal0-slot@*.service"})
	if err != nil {
		t.Fatal(err)
	}
	return newTracker(match)
}

// feed applies signals in order and collects the events.
func feed(tr *tracker, sigs ...*dbus.Signal) []Event {
	var evs []Event
	for _, s := range sigs {
		e, _ := tr.handle(s)
		evs = append(evs, e...)
	}
	return evs
}

func checkEvents(t *testing.T, what string, got, want []Event) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: events\n got %+v\nwant %+v", what, got, want)
	}
}

func TestUnitName(t *testing.T) {
	for path, want := range map[dbus.ObjectPath]string{
		"/org/freedesktop/systemd1/unit/hal0_2dslot_40primary_2eservice":                                     "hal0-slot@primary.service",
		"/org/freedesktop/systemd1/unit/hal0_2dpull_40Qwen_2dQwen3_5cx2d4B_5cx2dGGUF_3aQ4_5fK_5fM_2eservice": `hal0-pull@Qwen-Qwen3\x2d4B\x2dGGUF:Q4_K_M.service`,
		"/org/freedesktop/systemd1/unit/_2d_2eslice":                                                         "-.slice",
		"/org/freedesktop/systemd1/unit/init_2escope":                                                        "init.scope",
		"/org/freedesktop/systemd1/unit/A_2Eb":                                                               "A.b", // upper-case hex is still hex
	} {
		if got, ok := unitName(path); !ok || got != want {
			t.Errorf("unitName(%s) = %q, %v; want %q", path, got, ok, want)
		}
	}
	for _, bad := range []dbus.ObjectPath{
		"/org/freedesktop/systemd1/unit",   // the namespace itself (path_namespace includes it)
		"/org/freedesktop/systemd1/unit/",  // empty label
		"/org/freedesktop/systemd1/unit/_", // sd-bus's encoding of ""
		"/org/freedesktop/systemd1/unit/a_2", "/org/freedesktop/systemd1/unit/a_zz",
		"/org/freedesktop/systemd1/unit/a/b", "/org/freedesktop/systemd1/job/42", "/org/freedesktop/systemd1",
	} {
		if got, ok := unitName(bad); ok {
			t.Errorf("unitName(%s) = %q, want no name", bad, got)
		}
	}
	// Round trip through the independent encoder, every byte value.
	var all []byte
	for c := 0; c < 256; c++ {
		all = append(all, byte(c))
	}
	for _, name := range []string{"hal0-pull@ünï\\x2fcode.service", string(all), "x"} {
		if got, ok := unitName(encodePath(name)); !ok || got != name {
			t.Errorf("unitName(encode(%q)) = %q, %v", name, got, ok)
		}
	}
}

func TestPatterns(t *testing.T) {
	match, err := compilePatterns([]string{"hal0-pull@*.service", "hal0-slot@?.service", `lit\x2d[!b]*.service`})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		`hal0-pull@Qwen-Qwen3\x2d4B\x2dGGUF:Q4_K_M.service`: true, // backslashes are plain characters
		"hal0-pull@.service":        true,
		"hal0-pull@x.socket":        false,
		"hal0-slot@a.service":       true,
		"hal0-slot@ab.service":      false,
		"hal0-apid.service":         false,
		`lit\x2da.service`:          true, // FNM_NOESCAPE: the pattern's backslash is literal
		`lit\x2db.service`:          false,
		"litx2da.service":           false,
		"other-hal0-pull@x.service": false,
	} {
		if got := match(name); got != want {
			t.Errorf("match(%q) = %v, want %v", name, got, want)
		}
	}
	all, err := compilePatterns(nil)
	if err != nil || !all("anything.service") {
		t.Errorf("no patterns: match = %v, %v; want everything", all("anything.service"), err)
	}
	if _, err := compilePatterns([]string{"hal0-pull@[.service"}); err == nil {
		t.Error("bad pattern accepted")
	}
}

// TestMergeServiceThenUnit: systemd sends the Service half of a change,
// then the Unit half; one event follows the pair with both merged.
func TestMergeServiceThenUnit(t *testing.T) {
	tr := testTracker(t)
	const slot = "hal0-slot@primary.service"
	evs, _ := tr.handle(changed(1, slot, ifaceService, map[string]any{
		"Result": "success", "ExecMainCode": int32(0), "ExecMainStatus": int32(0), "ExecMainPID": uint32(42),
		"StatusText": "warming", "MainPID": uint32(42), "NRestarts": uint32(0)}))
	checkEvents(t, "after the Service half", evs, nil)
	evs, _ = tr.handle(changed(2, slot, ifaceUnit, map[string]any{
		"ActiveState": "activating", "SubState": "start", "InvocationID": invocation, "Job": "ignored"}))
	activating := Unit{Name: slot, ActiveState: "activating", SubState: "start", Result: "success",
		ExecMainPID: 42, StatusText: "warming", InvocationID: invocationHex}
	checkEvents(t, "after the Unit half", evs, []Event{{Unit: activating}})

	// A pair in which nothing Unit carries changed (a job finished, say).
	evs = feed(tr,
		changed(3, slot, ifaceService, map[string]any{"Result": "success", "StatusText": "warming"}),
		changed(4, slot, ifaceUnit, map[string]any{"ActiveState": "activating", "SubState": "start", "Job": "x"}))
	checkEvents(t, "no-op pair", evs, nil)

	evs = feed(tr,
		changed(5, slot, ifaceService, map[string]any{"StatusText": "ready"}),
		changed(6, slot, ifaceUnit, map[string]any{"ActiveState": "active", "SubState": "running"}))
	active := activating
	active.ActiveState, active.SubState, active.StatusText = "active", "running", "ready"
	checkEvents(t, "ready", evs, []Event{{Unit: active}})
}

// TestFailureAndGarbageCollection: a failing pull ends failed with its exit
// status; a successful one reports its final inactive state, then Gone.
func TestFailureAndGarbageCollection(t *testing.T) {
	tr := testTracker(t)
	const bad, good = "hal0-pull@bad.service", "hal0-pull@good.service"
	evs := feed(tr,
		unitNew(1, bad),
		changed(2, bad, ifaceService, map[string]any{"Result": "success", "ExecMainPID": uint32(7)}),
		changed(3, bad, ifaceUnit, map[string]any{"ActiveState": "activating", "SubState": "start"}),
		changed(4, bad, ifaceService, map[string]any{"Result": "exit-code", "ExecMainCode": int32(1), "ExecMainStatus": int32(3), "ExecMainPID": uint32(0)}),
		changed(5, bad, ifaceUnit, map[string]any{"ActiveState": "failed", "SubState": "failed"}),
	)
	checkEvents(t, "failing pull", evs, []Event{
		{Unit: Unit{Name: bad, ActiveState: "activating", SubState: "start", Result: "success", ExecMainPID: 7}},
		{Unit: Unit{Name: bad, ActiveState: "failed", SubState: "failed", Result: "exit-code", ExecMainCode: 1, ExecMainStatus: 3}},
	})

	final := Unit{Name: good, ActiveState: "inactive", SubState: "dead", Result: "success", ExecMainCode: 1}
	evs = feed(tr,
		unitNew(6, good),
		changed(7, good, ifaceService, map[string]any{"Result": "success", "ExecMainCode": int32(1), "ExecMainStatus": int32(0)}),
		changed(8, good, ifaceUnit, map[string]any{"ActiveState": "inactive", "SubState": "dead"}),
		removed(9, good),
	)
	gone := final
	gone.Gone = true
	checkEvents(t, "garbage-collected pull", evs, []Event{{Unit: final}, {Unit: gone}})

	// Loaded again later: a fresh unit, not the old state.
	evs = feed(tr,
		changed(10, good, ifaceService, map[string]any{"Result": "success", "ExecMainPID": uint32(9)}),
		changed(11, good, ifaceUnit, map[string]any{"ActiveState": "activating", "SubState": "start"}))
	checkEvents(t, "reloaded pull", evs, []Event{{Unit: Unit{Name: good, ActiveState: "activating", SubState: "start", Result: "success", ExecMainPID: 9}}})
}

// TestPendingFlushed: a Service half never waits for a Unit half that does
// not come next; UnitRemoved right after a Service half emits it first.
func TestPendingFlushed(t *testing.T) {
	tr := testTracker(t)
	const a, b = "hal0-slot@a.service", "hal0-slot@b.service"
	evs := feed(tr,
		changed(1, a, ifaceService, map[string]any{"StatusText": "a1"}),
		changed(2, b, ifaceUnit, map[string]any{"ActiveState": "active"}),
	)
	checkEvents(t, "other unit's Unit half", evs, []Event{
		{Unit: Unit{Name: a, StatusText: "a1"}},
		{Unit: Unit{Name: b, ActiveState: "active"}},
	})
	evs = feed(tr,
		changed(3, a, ifaceService, map[string]any{"StatusText": "a2"}),
		changed(4, a, ifaceService, map[string]any{"StatusText": "a3"}),
	)
	checkEvents(t, "two Service halves", evs, []Event{{Unit: Unit{Name: a, StatusText: "a2"}}})
	evs = feed(tr, unitNew(5, "unrelated.service"))
	checkEvents(t, "UnitNew after a Service half", evs, []Event{{Unit: Unit{Name: a, StatusText: "a3"}}})
	evs = feed(tr,
		changed(6, a, ifaceService, map[string]any{"Result": "success"}),
		removed(7, a),
	)
	checkEvents(t, "UnitRemoved after a Service half", evs, []Event{
		{Unit: Unit{Name: a, StatusText: "a3", Result: "success"}},
		{Unit: Unit{Name: a, StatusText: "a3", Result: "success", Gone: true}},
	})
	if f := tr.flush(); f != nil {
		t.Errorf("flush with nothing pending = %+v", f)
	}
}

// TestNonMatchingIgnored: units outside the patterns, other interfaces and
// malformed bodies produce nothing.
func TestNonMatchingIgnored(t *testing.T) {
	tr := testTracker(t)
	evs := feed(tr,
		unitNew(1, "other.service"),
		changed(2, "other.service", ifaceService, map[string]any{"Result": "exit-code"}),
		changed(3, "other.service", ifaceUnit, map[string]any{"ActiveState": "failed"}),
		changed(4, "hal0-pull@x.socket", ifaceUnit, map[string]any{"ActiveState": "active"}),
		changed(5, "hal0-pull@x.service", "org.freedesktop.systemd1.Socket", map[string]any{"Result": "x"}),
		&dbus.Signal{Path: encodePath("hal0-pull@x.service"), Name: sigPropertiesChanged, Body: []any{ifaceUnit, "not a map"}, Sequence: 6},
		&dbus.Signal{Path: sd1Path, Name: sigUnitRemoved, Body: []any{"hal0-pull@x.service"}, Sequence: 7},
		&dbus.Signal{Path: "/org/freedesktop/systemd1/unit", Name: sigPropertiesChanged, Body: []any{ifaceUnit, map[string]dbus.Variant{}, []string{}}, Sequence: 8},
		&dbus.Signal{Path: sd1Path, Name: ifaceManager + ".JobRemoved", Body: []any{uint32(1), dbus.ObjectPath("/j"), "x", "done"}, Sequence: 9},
		removed(10, "other.service"),
	)
	checkEvents(t, "unrelated signals", evs, nil)
	if len(tr.units) != 0 {
		t.Errorf("tracker holds %d records for unrelated units", len(tr.units))
	}
	// Values of the wrong type are skipped, the rest applied.
	evs = feed(tr, changed(11, "hal0-pull@x.service", ifaceUnit, map[string]any{"ActiveState": int32(1), "SubState": "dead"}))
	checkEvents(t, "wrong type", evs, []Event{{Unit: Unit{Name: "hal0-pull@x.service", SubState: "dead"}}})
}

// TestResync: a resync lists units sorted by name, reports vanished units
// Gone, ends with the marker, and the signals it already covers (those
// received before its reads) are dropped.
func TestResync(t *testing.T) {
	tr := testTracker(t)
	const old, slot, pull, late = "hal0-pull@old.service", "hal0-slot@s.service", "hal0-pull@p.service", "hal0-slot@late.service"
	// Known from before (a previous connection).
	feed(tr, changed(1, old, ifaceUnit, map[string]any{"ActiveState": "active", "SubState": "running"}))

	evs := tr.resync(10, []snapshot{
		snap(12, slot, map[string]any{"ActiveState": "active", "SubState": "running", "StatusText": "ready", "ExecMainPID": uint32(5), "InvocationID": invocation}),
		snap(11, pull, map[string]any{"ActiveState": "failed", "SubState": "failed", "Result": "exit-code", "ExecMainCode": int32(1), "ExecMainStatus": int32(3)}),
		snap(13, "unrelated.service", map[string]any{"ActiveState": "active"}),
	})
	slotU := Unit{Name: slot, ActiveState: "active", SubState: "running", StatusText: "ready", ExecMainPID: 5, InvocationID: invocationHex}
	pullU := Unit{Name: pull, ActiveState: "failed", SubState: "failed", Result: "exit-code", ExecMainCode: 1, ExecMainStatus: 3}
	checkEvents(t, "resync", evs, []Event{
		{Unit: Unit{Name: old, ActiveState: "active", SubState: "running", Gone: true}, Resync: true},
		{Unit: pullU, Resync: true},
		{Unit: slotU, Resync: true},
		{Resync: true},
	})
	if !evs[len(evs)-1].ResyncDone() || evs[0].ResyncDone() {
		t.Error("ResyncDone does not single out the marker")
	}

	evs = feed(tr,
		// Sent before the slot's read (12): already in the snapshot.
		changed(11, slot, ifaceService, map[string]any{"StatusText": "warming"}),
		changed(11, slot, ifaceUnit, map[string]any{"ActiveState": "activating", "SubState": "start"}),
		removed(11, slot),
		// A unit that came and went before the listing (10).
		changed(9, late, ifaceUnit, map[string]any{"ActiveState": "active"}),
		// Newer than everything read.
		changed(14, pull, ifaceService, map[string]any{"Result": "success", "ExecMainCode": int32(0), "ExecMainStatus": int32(0)}),
		changed(15, pull, ifaceUnit, map[string]any{"ActiveState": "activating", "SubState": "start"}),
		changed(16, late, ifaceUnit, map[string]any{"ActiveState": "activating"}),
	)
	checkEvents(t, "after the resync", evs, []Event{
		{Unit: Unit{Name: pull, ActiveState: "activating", SubState: "start", Result: "success"}},
		{Unit: Unit{Name: late, ActiveState: "activating"}},
	})

	// A second resync with nothing loaded: everything known is Gone.
	gone := func(u Unit) Unit { u.Gone = true; return u }
	checkEvents(t, "empty resync", tr.resync(1, nil), []Event{
		{Unit: gone(Unit{Name: pull, ActiveState: "activating", SubState: "start", Result: "success"}), Resync: true},
		{Unit: gone(Unit{Name: late, ActiveState: "activating"}), Resync: true},
		{Unit: gone(slotU), Resync: true},
		{Resync: true},
	})
}

// TestInvalidationRefresh: a tracked property sent as invalidated (name
// without value) asks for a read, and the read's result is emitted once.
func TestInvalidationRefresh(t *testing.T) {
	tr := testTracker(t)
	const slot = "hal0-slot@s.service"
	tr.resync(1, []snapshot{snap(2, slot, map[string]any{"ActiveState": "active", "SubState": "running", "StatusText": "old"})})
	evs, refresh := tr.handle(changed(3, slot, ifaceService, map[string]any{}, "StatusText"))
	if len(evs) != 0 || refresh != encodePath(slot) {
		t.Fatalf("invalidated StatusText: events %+v, refresh %q; want a refresh of %s", evs, refresh, slot)
	}
	if _, refresh := tr.handle(changed(4, slot, ifaceUnit, map[string]any{}, "Conditions")); refresh != "" {
		t.Errorf("untracked invalidation asked for a refresh of %s", refresh)
	}
	// The pending Service half was flushed by the Unit half (nothing
	// changed); now the read arrives.
	evs = tr.refreshed(snap(5, slot, map[string]any{"ActiveState": "active", "SubState": "running", "StatusText": "new"}))
	checkEvents(t, "refreshed", evs, []Event{{Unit: Unit{Name: slot, ActiveState: "active", SubState: "running", StatusText: "new"}}})
	// Signals older than the read are dropped; a read of a removed unit too.
	checkEvents(t, "older than the read", feed(tr, changed(4, slot, ifaceUnit, map[string]any{"ActiveState": "inactive"})), nil)
	feed(tr, removed(6, slot))
	checkEvents(t, "read of a removed unit", tr.refreshed(snap(7, slot, map[string]any{"ActiveState": "active"})), nil)

	// A read while the unit's own Service half is pending replaces it.
	tr.resync(10, []snapshot{snap(11, slot, map[string]any{"ActiveState": "active"})})
	evs, refresh = tr.handle(changed(12, slot, ifaceService, map[string]any{"Result": "half"}, "StatusText"))
	if len(evs) != 0 || refresh == "" {
		t.Fatalf("events %+v, refresh %q", evs, refresh)
	}
	evs = tr.refreshed(snap(13, slot, map[string]any{"ActiveState": "active", "Result": "whole", "StatusText": "s"}))
	checkEvents(t, "read replacing a pending half", evs, []Event{{Unit: Unit{Name: slot, ActiveState: "active", Result: "whole", StatusText: "s"}}})
	if tr.pending != "" {
		t.Errorf("pending = %q after the read", tr.pending)
	}
}

// TestRunBadPattern: a pattern error is the only one Run returns at once.
func TestRunBadPattern(t *testing.T) {
	err := New("unix:path=/nonexistent", "hal0-pull@[").Run(t.Context(), make(chan Event))
	if err == nil || !strings.Contains(err.Error(), "hal0-pull@[") {
		t.Fatalf("Run = %v; want a bad pattern error", err)
	}
}

// TestRunRetriesUntilCancelled: with no bus at the address (the system
// bus from DBUS_SYSTEM_BUS_ADDRESS here), Run keeps retrying, logging each
// failure, and returns when ctx ends.
func TestRunRetriesUntilCancelled(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+t.TempDir()+"/no-bus")
	ctx, cancel := context.WithCancelCause(t.Context())
	w := New("", "hal0-pull@*.service")
	failures := make(chan string, 16)
	w.Logf = func(format string, a ...any) {
		select {
		case failures <- fmt.Sprintf(format, a...):
		default:
		}
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, make(chan Event)) }()
	for i := 0; i < 2; i++ { // two attempts: the first failure was retried
		if msg := <-failures; !strings.Contains(msg, "no-bus") || !strings.Contains(msg, "reconnecting in") {
			t.Errorf("log line %q does not name the address and the retry", msg)
		}
	}
	stop := errors.New("test over")
	cancel(stop)
	if err := <-done; !errors.Is(err, stop) {
		t.Errorf("Run = %v after cancel, want the cancel cause", err)
	}
}

func TestBackoff(t *testing.T) {
	for n := 0; n < 70; n++ {
		want := min(maxBackoff, minBackoff<<min(n, 16))
		if d := backoff(n); d < want/2 || d > want {
			t.Errorf("backoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
		}
	}
}

// TestReloadWindow: daemon-reload and daemon-reexec announce every unit
// removed and new again between Reloading(true) and Reloading(false);
// no Gone is reported for those, and the unit is still tracked after.
func TestReloadWindow(t *testing.T) {
	tr := testTracker(t)
	const slot = "hal0-slot@b.service"
	running := Unit{Name: slot, ActiveState: "active", SubState: "running", InvocationID: invocationHex}
	tr.resync(1, []snapshot{snap(2, slot, map[string]any{"ActiveState": "active", "SubState": "running", "InvocationID": invocation})})
	evs := tr.setReloading(true)
	evs = append(evs, feed(tr, removed(3, slot), unitNew(4, slot))...)
	evs = append(evs, tr.setReloading(false)...)
	checkEvents(t, "reload", evs, nil)
	// After the reload, a real change and a real removal are reported.
	evs = feed(tr,
		changed(5, slot, ifaceService, map[string]any{"Result": "success"}),
		changed(6, slot, ifaceUnit, map[string]any{"ActiveState": "inactive", "SubState": "dead"}),
		removed(7, slot))
	stopped := running
	stopped.ActiveState, stopped.SubState, stopped.Result = "inactive", "dead", "success"
	gone := stopped
	gone.Gone = true
	checkEvents(t, "after the reload", evs, []Event{{Unit: stopped}, {Unit: gone}})
}
