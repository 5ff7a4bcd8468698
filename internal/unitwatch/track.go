package unitwatch

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/godbus/dbus/v5"
)

// D-Bus names this package speaks.
const (
	sd1Dest        = "org.freedesktop.systemd1"
	sd1Path        = dbus.ObjectPath("/org/freedesktop/systemd1")
	unitNamespace  = dbus.ObjectPath("/org/freedesktop/systemd1/unit")
	unitPathPrefix = string(unitNamespace) + "/"
	ifaceManager   = "org.freedesktop.systemd1.Manager"
	ifaceUnit      = "org.freedesktop.systemd1.Unit"
	ifaceService   = "org.freedesktop.systemd1.Service"
	ifaceProps     = "org.freedesktop.DBus.Properties"
	busDest        = "org.freedesktop.DBus"
	busPath        = dbus.ObjectPath("/org/freedesktop/DBus")

	memberPropertiesChanged = "PropertiesChanged"
	memberUnitNew           = "UnitNew"
	memberUnitRemoved       = "UnitRemoved"
	memberNameOwnerChanged  = "NameOwnerChanged"
	memberReloading         = "Reloading"

	sigPropertiesChanged = ifaceProps + "." + memberPropertiesChanged
	sigUnitNew           = ifaceManager + "." + memberUnitNew
	sigUnitRemoved       = ifaceManager + "." + memberUnitRemoved
	sigNameOwnerChanged  = busDest + "." + memberNameOwnerChanged
	sigReloading         = ifaceManager + "." + memberReloading
)

// trackedProps are the properties Unit carries. A PropertiesChanged that
// lists one of them as invalidated (name only, no value) needs a read.
var trackedProps = []string{
	"ActiveState", "SubState", "InvocationID", // Unit interface
	"Result", "ExecMainCode", "ExecMainStatus", "ExecMainPID", "StatusText", // Service interface
}

// record is what the tracker knows about one matching unit.
type record struct {
	cur  Unit // merged from snapshots and both interfaces' signals
	last Unit // as last emitted; cur == last means nothing to report
	// floor is the receive sequence of the last snapshot (GetAll reply)
	// applied. godbus numbers every incoming message of a connection, and
	// systemd's replies and signals reach us in the order it sent them, so
	// a signal numbered below floor was sent before the snapshot was taken
	// and describes an older state: applying it would move the unit
	// backwards.
	floor dbus.Sequence
}

// tracker merges systemd's signals into per-unit state and decides which
// Events to emit. It does no I/O, so tests can drive it with synthetic
// signals; the Watcher feeds it and performs the reads it asks for.
type tracker struct {
	match func(name string) bool
	units map[dbus.ObjectPath]*record
	// floor plays record.floor's role for units with no record: the
	// sequence of the last resync's ListUnitsByPatterns reply. A signal
	// below it concerns a unit that was gone by the time of the listing,
	// so the resync already accounted for it.
	floor dbus.Sequence
	// pending is the unit whose Service-interface signal was applied but
	// not yet emitted. systemd sends every change as two signals, first
	// the type-specific interface, then Unit, back to back (dbus-unit.c
	// send_changed_signal: "clients may rely on this order to get atomic
	// behavior"). Emitting after the Unit half gives one event per change,
	// never a mix of a new Result with an old ActiveState.
	pending dbus.ObjectPath
	// reloading is set between Manager.Reloading(true) and (false).
	// daemon-reload and daemon-reexec free and recreate every unit, and
	// systemd announces that with UnitRemoved and UnitNew for all of
	// them, running ones included (seen on 252). Those are no news about
	// the units, so no Gone is reported for them; the resync after the
	// reload settles what really changed.
	reloading bool
}

func newTracker(match func(string) bool) *tracker {
	return &tracker{match: match, units: map[dbus.ObjectPath]*record{}}
}

// snapshot is one unit's state read with GetAll.
type snapshot struct {
	path  dbus.ObjectPath
	name  string
	props map[string]dbus.Variant
	seq   dbus.Sequence // the reply's receive sequence
}

// handle applies one signal. It returns the events to emit, in order, and
// the object path of a unit whose state must be read again because
// systemd invalidated a tracked property instead of sending its value
// (refresh; "" if none).
func (t *tracker) handle(sig *dbus.Signal) (evs []Event, refresh dbus.ObjectPath) {
	switch sig.Name {
	case sigPropertiesChanged:
		return t.propertiesChanged(sig)
	case sigUnitRemoved:
		return t.unitRemoved(sig), ""
	default:
		// UnitNew needs nothing: the PropertiesChanged pair systemd sends
		// right after it carries the state. Reading the unit here instead
		// is the feedback loop of systemd#570 (a read loads the unit,
		// which announces it again).
		return t.flush(), ""
	}
}

func (t *tracker) propertiesChanged(sig *dbus.Signal) ([]Event, dbus.ObjectPath) {
	var (
		iface       string
		changed     map[string]dbus.Variant
		invalidated []string
	)
	if err := dbus.Store(sig.Body, &iface, &changed, &invalidated); err != nil || (iface != ifaceUnit && iface != ifaceService) {
		return t.flush(), ""
	}
	var evs []Event
	if t.pending != "" && (iface != ifaceUnit || t.pending != sig.Path) {
		// Not the second half of the pending pair: never hold a change
		// back on the assumption that its other half is still coming.
		evs = t.flush()
	}
	rec := t.units[sig.Path]
	if rec == nil {
		if sig.Sequence <= t.floor {
			return evs, ""
		}
		name, ok := unitName(sig.Path)
		if !ok || !t.match(name) {
			return evs, ""
		}
		rec = &record{cur: Unit{Name: name}}
		t.units[sig.Path] = rec
	} else if sig.Sequence <= rec.floor {
		return evs, ""
	}
	applyProps(&rec.cur, changed)
	var refresh dbus.ObjectPath
	if slices.ContainsFunc(invalidated, func(p string) bool { return slices.Contains(trackedProps, p) }) {
		refresh = sig.Path
	}
	if iface == ifaceService {
		t.pending = sig.Path
		return evs, refresh
	}
	t.pending = ""
	return append(evs, t.emit(rec)...), refresh
}

func (t *tracker) unitRemoved(sig *dbus.Signal) []Event {
	var (
		id   string
		path dbus.ObjectPath
	)
	if err := dbus.Store(sig.Body, &id, &path); err != nil {
		return t.flush()
	}
	// systemd sends a unit's last PropertiesChanged pair before UnitRemoved,
	// so flushing first emits the final state (of a successful unit that
	// was garbage-collected, say) ahead of Gone.
	evs := t.flush()
	rec := t.units[path]
	if rec == nil || sig.Sequence <= rec.floor || t.reloading {
		return evs
	}
	delete(t.units, path)
	gone := rec.cur
	gone.Gone = true
	return append(evs, Event{Unit: gone})
}

// refreshed applies a GetAll reply for a unit handle asked to re-read.
func (t *tracker) refreshed(s snapshot) []Event {
	rec := t.units[s.path]
	if rec == nil || s.seq <= rec.floor {
		return nil // removed in the meantime, or an older read
	}
	var evs []Event
	if t.pending == s.path {
		t.pending = "" // the read covers both halves of the pair
	} else {
		evs = t.flush()
	}
	rec.cur = fromProps(rec.cur.Name, s.props)
	rec.floor = s.seq
	return append(evs, t.emit(rec)...)
}

// setReloading records a Manager.Reloading signal.
func (t *tracker) setReloading(active bool) []Event {
	t.reloading = active
	return t.flush()
}

// flush emits the pending unit, if any.
func (t *tracker) flush() []Event {
	if t.pending == "" {
		return nil
	}
	rec := t.units[t.pending]
	t.pending = ""
	if rec == nil {
		return nil
	}
	return t.emit(rec)
}

// emit reports rec if it changed since its last event. systemd also sends
// the pair when only properties Unit lacks change (a job is queued, a
// timestamp moves); those are not news to a consumer.
func (t *tracker) emit(rec *record) []Event {
	if rec.cur == rec.last {
		return nil
	}
	rec.last = rec.cur
	return []Event{{Unit: rec.cur}}
}

// resync replaces all state by a fresh listing: listSeq is the receive
// sequence of the ListUnitsByPatterns reply and snaps the units read after
// it. It returns one Resync event per unit, sorted by name, including a
// Gone one for every unit reported before that is no longer loaded, and
// then the "resync done" marker.
func (t *tracker) resync(listSeq dbus.Sequence, snaps []snapshot) []Event {
	t.pending = ""
	t.floor = listSeq
	units := make(map[dbus.ObjectPath]*record, len(snaps))
	var evs []Event
	for _, s := range snaps {
		if !t.match(s.name) {
			continue
		}
		u := fromProps(s.name, s.props)
		units[s.path] = &record{cur: u, last: u, floor: s.seq}
		evs = append(evs, Event{Unit: u, Resync: true})
	}
	for p, rec := range t.units {
		if units[p] == nil {
			gone := rec.cur
			gone.Gone = true
			evs = append(evs, Event{Unit: gone, Resync: true})
		}
	}
	t.units = units
	slices.SortFunc(evs, func(a, b Event) int { return cmp.Compare(a.Unit.Name, b.Unit.Name) })
	return append(evs, Event{Resync: true})
}

// fromProps builds a unit's state from a GetAll reply. The reply covers
// every interface at once, so a missing property (Service ones for a unit
// that is no service) means its zero value, not "unchanged".
func fromProps(name string, props map[string]dbus.Variant) Unit {
	u := Unit{Name: name}
	applyProps(&u, props)
	// The Id property is systemd's canonical name; the listing's name could
	// be an alias in principle.
	if id, ok := props["Id"].Value().(string); ok && id != "" {
		u.Name = id
	}
	return u
}

// applyProps copies the properties Unit tracks from a property map,
// skipping values of unexpected type rather than guessing.
func applyProps(u *Unit, props map[string]dbus.Variant) {
	for k, v := range props {
		switch k {
		case "ActiveState":
			set(&u.ActiveState, v)
		case "SubState":
			set(&u.SubState, v)
		case "Result":
			set(&u.Result, v)
		case "StatusText":
			set(&u.StatusText, v)
		case "ExecMainCode":
			set(&u.ExecMainCode, v)
		case "ExecMainStatus":
			set(&u.ExecMainStatus, v)
		case "ExecMainPID":
			set(&u.ExecMainPID, v)
		case "InvocationID":
			// "ay", 16 bytes; empty while the unit has never run.
			if b, ok := v.Value().([]byte); ok {
				u.InvocationID = hex.EncodeToString(b)
			}
		}
	}
}

func set[T any](dst *T, v dbus.Variant) {
	if x, ok := v.Value().(T); ok {
		*dst = x
	}
}

// unitName maps a unit's object path back to its name. systemd builds the
// path with sd_bus_path_encode: every byte other than [A-Za-z0-9] becomes
// "_xx" (two hex digits), so the mapping is exact and needs no D-Bus call;
// in particular none that could load the unit (systemd#570).
//
//	/org/freedesktop/systemd1/unit/hal0_2dslot_40primary_2eservice → hal0-slot@primary.service
func unitName(p dbus.ObjectPath) (string, bool) {
	label, ok := strings.CutPrefix(string(p), unitPathPrefix)
	if !ok || label == "" || label == "_" || strings.Contains(label, "/") {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(label))
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c != '_' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(label) {
			return "", false
		}
		v, err := strconv.ParseUint(label[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), true
}

// compilePatterns returns a matcher agreeing with systemd's own filter in
// ListUnitsByPatterns, which is fnmatch(3) with FNM_NOESCAPE: a backslash
// is an ordinary character (escaped unit names are full of them, as in
// "\x2d"), and "[!...]" negates a class. path.Match reads a backslash as
// an escape and negates with "[^...]", so patterns are translated. A unit
// name never contains "/", where path.Match's "*" would stop. No patterns
// match every unit, as in systemd.
func compilePatterns(patterns []string) (func(string) bool, error) {
	globs := make([]string, 0, len(patterns))
	for _, p := range patterns {
		g := strings.ReplaceAll(p, `\`, `\\`)
		g = strings.ReplaceAll(g, "[!", "[^")
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("unitwatch: bad unit pattern %q: %w", p, err)
		}
		globs = append(globs, g)
	}
	return func(name string) bool {
		if len(globs) == 0 {
			return true
		}
		for _, g := range globs {
			if ok, _ := path.Match(g, name); ok {
				return true
			}
		}
		return false
	}, nil
}
