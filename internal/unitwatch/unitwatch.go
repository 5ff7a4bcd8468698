// Package unitwatch follows the state of systemd units for hal0-slotd (the
// hal0-pull@ and hal0-slot@ instances) through D-Bus signals.
//
// A Watcher keeps a system bus connection of its own. It adds match rules
// for PropertiesChanged of the org.freedesktop.systemd1.Unit and .Service
// interfaces under /org/freedesktop/systemd1/unit (path_namespace), for the
// Manager's UnitNew, UnitRemoved and Reloading, and for systemd's bus name
// changing owner; then it calls Manager.Subscribe (on the bus, systemd
// emits unit PropertiesChanged only while some client is subscribed),
// resynchronises (one ListUnitsByPatterns, one GetAll per listed unit) and
// streams the changes. It never polls: after a resync, the only reads are
// reactions to signals, and only for units that match.
//
// go-systemd's Set*Subscriber functions are not used on purpose: the
// properties subscriber forwards only the Unit interface, so Result,
// ExecMainStatus and StatusText never arrive (go-systemd#382), and the
// substate subscriber reads every unit on every signal and races
// (go-systemd#502, #519).
//
// # Events and their order
//
// Run sends Events on the caller's channel (it never closes it):
//
//  1. A resync after every (re)connect, after systemd rejoins the bus
//     (daemon-reexec) and after every daemon-reload: one Event with Resync
//     set for each loaded unit matching the patterns, and one with Resync
//     and Unit.Gone set for each unit reported before that is no longer
//     loaded, all sorted by name; then exactly one "resync done" marker,
//     Event{Resync: true} with an empty Unit (Event.ResyncDone). The units
//     of a resync are the complete set: a matching unit not among them is
//     not loaded.
//  2. After the marker, one Event per change, in the order systemd made
//     them, each with the unit's full current state. systemd reports a
//     change as two signals, Service then Unit; they are merged and the
//     Event follows the Unit half. Every such Event is newer than the
//     resync before it: signals sent before the resync's reads are dropped
//     by their position in the connection's message order (godbus's
//     Sequence), so a unit never appears to go backwards.
//  3. An Event is sent only when a field of Unit changed. systemd batches
//     changes, so short-lived states may be skipped, and it reports a
//     job's end before the rest of the message that ended it: READY=1
//     with STATUS=x yields "active" with the old StatusText, then x
//     (systemd 252).
//  4. A unit that systemd garbage-collects (a successful oneshot or simple
//     unit once it is inactive) gets its final Event (inactive, Result,
//     ExecMainStatus: systemd sends PropertiesChanged before UnitRemoved)
//     and then one with Gone set repeating that state. A later Event with
//     the same name is a new load of the unit. The UnitRemoved systemd
//     sends for every unit during daemon-reload and daemon-reexec, running
//     ones included, are not reported: the resync after them is.
//  5. Units whose names do not match the patterns never produce Events.
//  6. While the connection is down nothing is sent, and the next resync
//     only summarises what happened meanwhile: the final state of a unit
//     that ran and was garbage-collected in the gap is lost, and its Gone
//     Event repeats the last state seen. hal0 keeps outcomes in its job
//     records for that reason (architecture-anchors.md (b) 3).
//
// Run reconnects with capped, jittered exponential backoff whenever the
// connection is lost (dbus restarted: godbus closes the signal channel,
// dbus.ErrClosed) or setting it up fails, and returns only when ctx ends
// (or at once for a bad pattern).
package unitwatch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/hal0ai/hal0/internal/sdbus"
)

// Unit is a unit's state as systemd reports it. Service fields are zero for
// units that are no services.
type Unit struct {
	// Name is the unit's name as systemd reports it (its Id): unescaped,
	// e.g. "hal0-slot@primary.service" or
	// `hal0-pull@Qwen-Qwen3\x2d4B\x2dGGUF:Q4_K_M.service`.
	Name string
	// ActiveState: "active", "inactive", "failed", "activating",
	// "deactivating", "reloading", …; SubState is type specific
	// ("running", "start", "exited", "dead", "failed", …).
	ActiveState, SubState string
	// Result is the Service's last result: "success", "exit-code",
	// "signal", "timeout", "core-dump", "start-limit-hit", …
	Result string
	// ExecMainCode is the si_code of the main process's exit (1
	// CLD_EXITED, 2 CLD_KILLED, 3 CLD_DUMPED, 0 while it runs);
	// ExecMainStatus the exit status or signal number.
	ExecMainCode, ExecMainStatus int32
	ExecMainPID                  uint32
	StatusText                   string // STATUS= from sd_notify
	// InvocationID identifies this run of the unit in 32 lower-case hex
	// digits, like the journal's _SYSTEMD_INVOCATION_ID; empty before the
	// first run.
	InvocationID string
	// Gone means systemd unloaded the unit (garbage-collected it, or it was
	// not listed by a resync any more); the other fields are its last
	// known state.
	Gone bool
}

// Event is one report of a unit's state; see the package comment for their
// order.
type Event struct {
	Unit Unit
	// Resync marks the Events of a full resynchronisation (after a
	// (re)connect, daemon-reload or daemon-reexec); the last of them is
	// the marker (ResyncDone).
	Resync bool
}

// ResyncDone reports whether e is the "resync done" marker that ends every
// resync: Resync set and an empty Unit.
func (e Event) ResyncDone() bool { return e.Resync && e.Unit == Unit{} }

const (
	// signalBuffer is the capacity of the channel godbus delivers signals
	// to. A resync blocks reading it for a moment; the sequential signal
	// handler queues what does not fit, so godbus's dispatcher never waits
	// on us and never reorders.
	signalBuffer = 1024
	// callTimeout bounds dialing and each D-Bus call.
	callTimeout = 10 * time.Second
	// minBackoff and maxBackoff bound the wait between reconnects.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second

	defaultSystemBus = "unix:path=/run/dbus/system_bus_socket"

	errAlreadySubscribed = "org.freedesktop.systemd1.AlreadySubscribed"
	errNoSuchUnit        = "org.freedesktop.systemd1.NoSuchUnit"
	errUnknownObject     = "org.freedesktop.DBus.Error.UnknownObject"
)

// Watcher follows units; see the package comment. A Watcher holds no
// state between Runs.
type Watcher struct {
	// Logf, if set before Run, is told about lost connections, failed
	// reconnects and resyncs (hal0-slotd logs them to the journal).
	Logf func(format string, a ...any)

	addr     string
	patterns []string
}

// New returns a Watcher for units matching any of the glob patterns
// (systemd's own matching: fnmatch(3), as in `systemctl list-units
// 'hal0-pull@*.service'`; none means every unit) on the message bus at
// addr: "" is the system bus (DBUS_SYSTEM_BUS_ADDRESS, else
// unix:path=/run/dbus/system_bus_socket); tests pass livesystemd's
// System.BusAddress. systemd's private socket is no message bus (no
// match rules, no Hello) and is not supported.
func New(addr string, patterns ...string) *Watcher {
	return &Watcher{addr: addr, patterns: append([]string{}, patterns...)}
}

// Run follows the units and sends Events to out until ctx ends, then
// returns context.Cause(ctx). It returns an error at once only for a bad
// pattern; every bus problem is logged and retried. Run blocks while out
// is full (signals queue up meanwhile) and never closes out.
func (w *Watcher) Run(ctx context.Context, out chan<- Event) error {
	match, err := compilePatterns(w.patterns)
	if err != nil {
		return err
	}
	t := newTracker(match)
	failures := 0
	for {
		resynced, err := w.session(ctx, t, out)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if resynced {
			failures = 0 // the connection worked: start backing off afresh
		}
		d := backoff(failures)
		failures++
		w.logf("unitwatch: %v; reconnecting in %v", err, d.Round(time.Millisecond))
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return context.Cause(ctx)
		case <-timer.C:
		}
	}
}

// backoff returns the wait before reconnect attempt n (0-based): doubling
// from minBackoff up to maxBackoff, each a random point in its upper half,
// so clients thrown off together by a bus restart do not return in lock
// step.
func backoff(n int) time.Duration {
	d := maxBackoff
	if n < 16 {
		d = min(maxBackoff, minBackoff<<n)
	}
	return d/2 + rand.N(d/2+1)
}

func (w *Watcher) logf(format string, a ...any) {
	if w.Logf != nil {
		w.Logf(format, a...)
	}
}

func (w *Watcher) busAddress() string {
	if w.addr != "" {
		return w.addr
	}
	if a := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"); a != "" {
		return a
	}
	return defaultSystemBus
}

// session runs one connection: set up, resync, stream until the connection
// or ctx ends. resynced reports whether it got as far as streaming.
func (w *Watcher) session(ctx context.Context, t *tracker, out chan<- Event) (resynced bool, err error) {
	addr := w.busAddress()
	conn, err := dial(ctx, addr)
	if err != nil {
		return false, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	defer conn.Close()
	// Registered before the match rules exist, so no signal they let
	// through can be missed.
	sigs := make(chan *dbus.Signal, signalBuffer)
	conn.Signal(sigs)
	if err := addMatches(ctx, conn); err != nil {
		return false, fmt.Errorf("adding match rules on %s: %w", addr, err)
	}
	// The flag describes the previous connection. A reload still running
	// now ends before systemd answers the listing below (it handles no
	// calls meanwhile), so its UnitRemoved signals are older than the
	// resync and dropped as such.
	t.reloading = false
	subscribed, err := w.subscribeAndResync(ctx, conn, t, out)
	if err != nil {
		return false, err
	}
	for {
		select {
		case <-ctx.Done():
			return true, context.Cause(ctx)
		case sig, ok := <-sigs:
			if !ok {
				// godbus closes the channel when the connection ends
				// (read error, dbus-daemon gone): dbus.ErrClosed.
				// (Not wrapped: ErrClosed's text blames the user.)
				return true, fmt.Errorf("connection to %s lost", addr)
			}
			var (
				evs     []Event
				refresh dbus.ObjectPath
				resync  string // why a resync is due, if it is
			)
			switch sig.Name {
			case sigNameOwnerChanged:
				evs = t.flush()
				var name, oldOwner, newOwner string
				if dbus.Store(sig.Body, &name, &oldOwner, &newOwner) == nil && name == sd1Dest && newOwner != "" {
					// systemd (re)joined the bus: after daemon-reexec, or
					// after a dbus restart that spared our connection.
					// Signals may have been lost meanwhile, and a fresh
					// systemd connection may not know our subscription.
					// (Leaving the bus, newOwner "", needs nothing: no
					// signals come until it is back.)
					resync = "systemd is back on the bus as " + newOwner
				}
			case sigReloading:
				var active bool
				if dbus.Store(sig.Body, &active) != nil {
					evs = t.flush()
					break
				}
				evs = t.setReloading(active)
				if !active {
					resync = "systemd reloaded"
				}
			default:
				evs, refresh = t.handle(sig)
			}
			if err := send(ctx, out, evs); err != nil {
				return true, err
			}
			if resync != "" {
				if sig.Sequence < subscribed {
					// systemd answered our last Subscribe after this
					// signal (we connected while it was rejoining the bus
					// or reloading), so that resync is newer already.
					continue
				}
				w.logf("unitwatch: %s; resynchronising", resync)
				if subscribed, err = w.subscribeAndResync(ctx, conn, t, out); err != nil {
					return true, err
				}
				continue
			}
			if refresh == "" {
				continue
			}
			// Only for a unit that matches (the tracker filtered it), so
			// this read cannot start a feedback loop over unrelated units.
			s, err := readUnit(ctx, conn, refresh)
			if err != nil {
				if !conn.Connected() {
					return true, fmt.Errorf("connection to %s lost: %w", addr, err)
				}
				w.logf("unitwatch: re-reading %s: %v", refresh, err)
				continue
			}
			if err := send(ctx, out, t.refreshed(s)); err != nil {
				return true, err
			}
		}
	}
}

// dial connects to the bus at addr, the handshake bounded by ctx and
// callTimeout; signals arrive in order (see sdbus.DialBus): an "active"
// must not arrive after the "inactive" that followed it.
func dial(ctx context.Context, addr string) (*dbus.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return sdbus.DialBus(ctx, addr)
}

// addMatches asks the bus for the signals the tracker reads. The unit
// signals' object paths are escaped unit names, so the bus cannot filter
// by name pattern: the tracker does, by decoding the path.
func addMatches(ctx context.Context, conn *dbus.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	rules := [][]dbus.MatchOption{
		{dbus.WithMatchSender(sd1Dest), dbus.WithMatchInterface(ifaceProps), dbus.WithMatchMember(memberPropertiesChanged),
			dbus.WithMatchPathNamespace(unitNamespace), dbus.WithMatchArg(0, ifaceUnit)},
		{dbus.WithMatchSender(sd1Dest), dbus.WithMatchInterface(ifaceProps), dbus.WithMatchMember(memberPropertiesChanged),
			dbus.WithMatchPathNamespace(unitNamespace), dbus.WithMatchArg(0, ifaceService)},
		{dbus.WithMatchSender(sd1Dest), dbus.WithMatchObjectPath(sd1Path), dbus.WithMatchInterface(ifaceManager),
			dbus.WithMatchMember(memberUnitNew)},
		{dbus.WithMatchSender(sd1Dest), dbus.WithMatchObjectPath(sd1Path), dbus.WithMatchInterface(ifaceManager),
			dbus.WithMatchMember(memberUnitRemoved)},
		{dbus.WithMatchSender(sd1Dest), dbus.WithMatchObjectPath(sd1Path), dbus.WithMatchInterface(ifaceManager),
			dbus.WithMatchMember(memberReloading)},
		{dbus.WithMatchSender(busDest), dbus.WithMatchObjectPath(busPath), dbus.WithMatchInterface(busDest),
			dbus.WithMatchMember(memberNameOwnerChanged), dbus.WithMatchArg(0, sd1Dest)},
	}
	for _, r := range rules {
		if err := conn.AddMatchSignalContext(ctx, r...); err != nil {
			return err
		}
	}
	return nil
}

// listedUnit is one entry of ListUnitsByPatterns' a(ssssssouso).
type listedUnit struct {
	Name, Description, LoadState, ActiveState, SubState, Following string
	Path                                                           dbus.ObjectPath
	JobID                                                          uint32
	JobType                                                        string
	JobPath                                                        dbus.ObjectPath
}

// subscribeAndResync subscribes to systemd's signals and sends a resync.
// Subscribe comes first, so every change after the listing is signalled;
// the tracker drops the signals the reads already cover. It returns the
// receive sequence of systemd's answer to Subscribe.
func (w *Watcher) subscribeAndResync(ctx context.Context, conn *dbus.Conn, t *tracker, out chan<- Event) (dbus.Sequence, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	mgr := conn.Object(sd1Dest, sd1Path)
	// The subscription belongs to our unique bus name and ends with the
	// connection. systemd keeps it across daemon-reexec, hence
	// AlreadySubscribed is fine.
	sub := mgr.CallWithContext(cctx, ifaceManager+".Subscribe", 0)
	if err := sub.Err; err != nil && !isDBusError(err, errAlreadySubscribed) {
		return 0, fmt.Errorf("subscribing to systemd: %w", err)
	}
	patterns := w.patterns
	if patterns == nil {
		patterns = []string{} // D-Bus has no nil array; empty means "all"
	}
	var listed []listedUnit
	call := mgr.CallWithContext(cctx, ifaceManager+".ListUnitsByPatterns", 0, []string{}, patterns)
	if err := call.Store(&listed); err != nil {
		return 0, fmt.Errorf("listing units: %w", err)
	}
	snaps := make([]snapshot, 0, len(listed))
	seen := map[dbus.ObjectPath]bool{}
	for _, u := range listed {
		if seen[u.Path] {
			continue
		}
		seen[u.Path] = true
		s, err := readUnit(ctx, conn, u.Path)
		if isDBusError(err, errNoSuchUnit) || isDBusError(err, errUnknownObject) {
			continue // gone since the listing; reported Gone if known
		}
		if err != nil {
			return 0, fmt.Errorf("reading %s: %w", u.Name, err)
		}
		s.name = u.Name
		snaps = append(snaps, s)
	}
	evs := t.resync(call.ResponseSequence, snaps)
	w.logf("unitwatch: resynchronised %d units", len(evs)-1)
	return sub.ResponseSequence, send(ctx, out, evs)
}

// readUnit reads a unit's properties with one GetAll over all its
// interfaces, so its Unit and Service halves come from the same instant
// and one message position (Sequence) dates both.
//
// The read loads the unit if systemd had unloaded it in the meantime (it
// is then garbage-collected again, with UnitNew and UnitRemoved): that is
// why it happens only for listed units and on invalidation, never on
// UnitNew (systemd#570).
func readUnit(ctx context.Context, conn *dbus.Conn, path dbus.ObjectPath) (snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var props map[string]dbus.Variant
	call := conn.Object(sd1Dest, path).CallWithContext(ctx, ifaceProps+".GetAll", 0, "")
	if err := call.Store(&props); err != nil {
		return snapshot{}, err
	}
	name, _ := unitName(path)
	return snapshot{path: path, name: name, props: props, seq: call.ResponseSequence}, nil
}

// send delivers evs in order unless ctx ends first.
func send(ctx context.Context, out chan<- Event, evs []Event) error {
	for _, e := range evs {
		select {
		case out <- e:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// isDBusError reports whether err is the D-Bus error called name. godbus
// returns dbus.Error by value from calls, but be lenient about pointers.
func isDBusError(err error, name string) bool {
	if err == nil {
		return false
	}
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name == name
	}
	var dp *dbus.Error
	return errors.As(err, &dp) && dp.Name == name
}
