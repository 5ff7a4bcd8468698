// Package sdbus is hal0's narrow seam to systemd over D-Bus.
//
// Only this package (plus the test harness internal/livesystemd and a
// future unit watcher) imports go-systemd and godbus; everything else talks
// to systemd through the Systemd interface, which tests can fake.
//
// # Pitfalls this package absorbs (see architecture-anchors.md, "Pitfall checklist")
//
//   - go-systemd delivers a job's result by writing to the caller's channel
//     while holding the lock every later job needs. An unbuffered channel
//     that nobody reads any more (we gave up at a deadline) wedges the
//     connection for good (go-systemd#429, runc#1781). Job channels here
//     always have capacity 1.
//   - Waiting for a job without a deadline can hang forever (runc#1754).
//     Every job wait is bounded by the caller's ctx and DefaultJobTimeout,
//     every other call by ctx and DefaultCallTimeout.
//   - A job result of "done" does not mean "work finished": for Type=simple
//     and Type=exec units it means the process was started, for Type=notify
//     that READY=1 arrived; only for Type=oneshot that the process exited
//     successfully. Long work belongs in a non-oneshot unit whose outcome the
//     worker itself records.
//   - systemd garbage-collects a unit as soon as it is inactive and
//     unreferenced: a successful instance vanishes at once, and Unit() then
//     reports a fresh, inactive unit with Result "success" and no exit
//     status. Outcomes must therefore live in hal0's job records, written by
//     the worker; only failed units stay (until ResetFailed).
//   - A stale failed unit can block a start: once a unit has been started
//     StartLimitBurst times within StartLimitIntervalSec (5 in 10 s by
//     default), systemd refuses further starts with job result "failed"
//     and without running anything, until ResetFailed. StartUnit resets and
//     retries once in exactly that case, recognised by an unchanged
//     invocation ID, so the retry can never run the work twice. (A start
//     job that ran and failed is never retried.)
package sdbus

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/hal0ai/hal0/internal/unitname"
)

const (
	// DefaultJobTimeout bounds StartUnit and StopUnit when ctx allows longer.
	DefaultJobTimeout = 30 * time.Second
	// DefaultCallTimeout bounds every other D-Bus call, including dialing.
	DefaultCallTimeout = 10 * time.Second

	defaultSystemBus = "unix:path=/run/dbus/system_bus_socket"
	privateSocket    = "/run/systemd/private"
	jobModeReplace   = "replace"
)

// ErrNoSystemd is wrapped by errors that mean systemd cannot be reached at
// all (no bus, no socket, no systemd on the bus, connection lost), so that
// callers can fall back to running child processes themselves.
var ErrNoSystemd = errors.New("no systemd reachable")

// UnitState is a snapshot of a unit's Unit and (for services) Service
// properties.
type UnitState struct {
	Name        string
	LoadState   string // "loaded", "not-found", "masked", "error", …
	ActiveState string // "active", "inactive", "failed", "activating", "deactivating", …
	SubState    string // type specific: "running", "exited", "dead", "failed", …
	// Result is the Service's last result: "success", "exit-code",
	// "signal", "timeout", "core-dump", "start-limit-hit", …
	Result string
	// ExecMainCode is the si_code of the main process's exit:
	// 1 CLD_EXITED, 2 CLD_KILLED, 3 CLD_DUMPED; 0 when it has not exited.
	ExecMainCode int32
	// ExecMainStatus is the exit status (CLD_EXITED) or signal number.
	ExecMainStatus int32
	ExecMainPID    uint32
	StatusText     string // STATUS= from sd_notify
	// InvocationID identifies this run of the unit in 32 lower-case hex
	// digits, as in the journal field _SYSTEMD_INVOCATION_ID.
	InvocationID string
}

// Systemd is the part of the systemd manager API hal0 uses.
type Systemd interface {
	// StartUnit starts the unit (job mode "replace") and waits for the job.
	// A result other than "done" is a *JobError. See the package comment for
	// what "done" means and for the start-limit retry.
	StartUnit(ctx context.Context, name string) error
	// StopUnit stops the unit and waits for the job. Stopping a unit
	// systemd has not loaded is a no-op.
	StopUnit(ctx context.Context, name string) error
	// KillUnit sends signal to all processes of the unit.
	KillUnit(ctx context.Context, name string, signal int) error
	// ResetFailed clears the unit's failed state and start-limit counter.
	// Resetting a unit systemd has not loaded is a no-op.
	ResetFailed(ctx context.Context, name string) error
	// Unit returns the unit's state. A unit systemd does not know is not an
	// error: it has LoadState "not-found" and ActiveState "inactive".
	Unit(ctx context.Context, name string) (UnitState, error)
	// ListUnits lists loaded units matching the glob patterns (all loaded
	// units without patterns), sorted by name. Only the Unit fields (Name,
	// LoadState, ActiveState, SubState) are filled in: use Unit for the rest.
	ListUnits(ctx context.Context, patterns ...string) ([]UnitState, error)
	Close() error
}

// JobError reports a job that ended with a result other than "done".
type JobError struct {
	Op     string // "start" or "stop"
	Unit   string
	Result string // "canceled", "timeout", "failed", "dependency", "skipped"…
	// State is the unit read right after the job, nil if that failed.
	State *UnitState
}

func (e *JobError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sdbus: %s %s: job %s", e.Op, e.Unit, e.Result)
	if st := e.State; st != nil && st.Result != "" {
		fmt.Fprintf(&b, " (unit %s/%s, result %s", st.ActiveState, st.SubState, st.Result)
		if st.ExecMainCode != 0 {
			fmt.Fprintf(&b, ", main process status %d", st.ExecMainStatus)
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, "; see journalctl -u %s", unitname.ShellQuote(e.Unit))
	return b.String()
}

// Dial connects to the systemd manager on the system bus, honouring
// DBUS_SYSTEM_BUS_ADDRESS. As root it falls back to systemd's private
// socket (/run/systemd/private), which works before and without dbus-daemon.
// When neither answers, the error wraps ErrNoSystemd and says what was tried,
// e.g. "sdbus: no systemd reachable: system bus unix:path=/run/dbus/system_bus_socket:
// dial unix /run/dbus/system_bus_socket: connect: no such file or directory;
// /run/systemd/private: …".
func Dial(ctx context.Context) (Systemd, error) {
	addr := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
	if addr == "" {
		addr = defaultSystemBus
	}
	s, err := dialAddress(ctx, addr)
	if err == nil {
		return s, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("sdbus: %w: system bus %s: %w (not root, so %s was not tried)", ErrNoSystemd, addr, err, privateSocket)
	}
	s, err2 := dialAddress(ctx, "unix:path="+privateSocket)
	if err2 == nil {
		return s, nil
	}
	return nil, fmt.Errorf("sdbus: %w: system bus %s: %w; %s: %w", ErrNoSystemd, addr, err, privateSocket, err2)
}

// DialAddress connects to systemd at a D-Bus address: a message bus (for
// tests, livesystemd's System.BusAddress), or systemd's private socket when
// the path ends in /systemd/private (a direct connection, no bus Hello).
// systemd accepts private connections only from root processes whose pid
// it can see, i.e. not from outside its pid namespace ("Incoming private
// connection from unprivileged client, refusing").
// Errors wrap ErrNoSystemd when nothing answers as systemd at addr.
func DialAddress(ctx context.Context, addr string) (Systemd, error) {
	s, err := dialAddress(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("sdbus: %w at %s: %w", ErrNoSystemd, addr, err)
	}
	return s, nil
}

func dialAddress(ctx context.Context, addr string) (Systemd, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout)
	defer cancel()
	c, err := newConn(ctx, addr, !strings.HasSuffix(addr, "/systemd/private"))
	if err != nil {
		return nil, err
	}
	// A bus can be up without systemd on it (a container's dbus-daemon):
	// ask systemd something cheap so Dial's success means "systemd answers".
	if _, err := c.SystemStateContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("systemd does not answer: %w", err)
	}
	return &conn{c: c}, nil
}

// DialBus connects to the message bus at addr and authenticates (EXTERNAL
// with the numeric uid: no user name lookup), ctx bounding the handshake
// only: dbus.WithContext would tie the connection's life to ctx. Signals
// are delivered in arrival order: godbus's default handler hands a signal
// that does not fit the channel to a new goroutine, which can overtake
// later signals (an "active" arriving after the "inactive" that followed
// it).
func DialBus(ctx context.Context, addr string) (*dbus.Conn, error) {
	conn, err := dbus.Dial(addr, dbus.WithSignalHandler(dbus.NewSequentialSignalHandler()))
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Geteuid()))})
		if err == nil {
			err = conn.Hello()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	case <-ctx.Done():
		conn.Close() // unblocks Auth or Hello
		<-done
		return nil, context.Cause(ctx)
	}
}

// newConn builds a go-systemd connection (two bus connections: calls and
// signals) bounded by ctx. go-systemd's own constructors pass their ctx to
// dbus.WithContext, which closes the connection when that ctx ends: fine
// for a dial timeout, wrong for a long-lived connection. Here ctx bounds
// only the handshake: when it ends first, the connections opened so far
// are closed, which unblocks the handshake, and the result is discarded.
func newConn(ctx context.Context, addr string, hello bool) (*sddbus.Conn, error) {
	var (
		mu        sync.Mutex
		opened    []*dbus.Conn
		abandoned bool
	)
	dialBus := func() (*dbus.Conn, error) {
		bc, err := dbus.Dial(addr)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		if abandoned {
			mu.Unlock()
			bc.Close()
			return nil, context.Canceled
		}
		opened = append(opened, bc)
		mu.Unlock()
		// EXTERNAL with the numeric uid: no user name lookup needed.
		if err := bc.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Geteuid()))}); err != nil {
			bc.Close()
			return nil, err
		}
		if hello {
			if err := bc.Hello(); err != nil {
				bc.Close()
				return nil, err
			}
		}
		return bc, nil
	}
	type result struct {
		c   *sddbus.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := sddbus.NewConnection(dialBus)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.c, r.err
	case <-ctx.Done():
		mu.Lock()
		abandoned = true
		for _, bc := range opened {
			bc.Close()
		}
		mu.Unlock()
		go func() { // reap without blocking the caller
			if r := <-done; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, context.Cause(ctx)
	}
}

type conn struct {
	c *sddbus.Conn
}

var _ Systemd = (*conn)(nil)

// callCtx bounds a single D-Bus call.
func callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, DefaultCallTimeout)
}

// wrap adds the operation and unit to err and marks a lost connection as
// ErrNoSystemd.
func wrap(op, name string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, dbus.ErrClosed) {
		return fmt.Errorf("sdbus: %s %s: %w: %w", op, name, ErrNoSystemd, err)
	}
	return fmt.Errorf("sdbus: %s %s: %w", op, name, err)
}

// isDBusError reports whether err is the D-Bus error called name, e.g.
// "org.freedesktop.systemd1.NoSuchUnit".
func isDBusError(err error, name string) bool {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name == name
	}
	var dp *dbus.Error
	return errors.As(err, &dp) && dp.Name == name
}

const errNoSuchUnit = "org.freedesktop.systemd1.NoSuchUnit"

func (s *conn) StartUnit(ctx context.Context, name string) error {
	// One budget for the whole operation, retry included.
	ctx, cancel := context.WithTimeout(ctx, DefaultJobTimeout)
	defer cancel()
	// The invocation ID before the start tells a refused start (no new
	// run, same ID) from a run that failed (new ID).
	before, err := s.Unit(ctx, name)
	if err != nil {
		return err
	}
	err = s.runJob(ctx, "start", name)
	var je *JobError
	if errors.As(err, &je) && refusedByStartLimit(before, je.State) {
		// Earlier runs, now stale, used up the start rate limit and
		// systemd refused this start without running anything. Clear the
		// stale failure and counter, and try once more.
		if rerr := s.ResetFailed(ctx, name); rerr != nil {
			return errors.Join(err, rerr)
		}
		return s.runJob(ctx, "start", name)
	}
	return err
}

// refusedByStartLimit reports whether a failed start job was the start rate
// limit refusing a unit that had run before, rather than a new run failing.
// systemd sets Result "start-limit-hit" only when the previous result was
// "success"; after a failure it keeps the old result (say "exit-code"), so
// the unchanged invocation ID of a unit that stays failed is the other tell.
func refusedByStartLimit(before UnitState, after *UnitState) bool {
	if after == nil {
		return false
	}
	if after.Result == "start-limit-hit" {
		return true
	}
	return before.InvocationID != "" && after.InvocationID == before.InvocationID && after.ActiveState == "failed"
}

func (s *conn) StopUnit(ctx context.Context, name string) error {
	err := s.runJob(ctx, "stop", name)
	if isDBusError(err, errNoSuchUnit) {
		return nil // not loaded, so not running
	}
	return err
}

// runJob enqueues a start or stop job and waits for its result, at most
// until ctx ends or DefaultJobTimeout passes.
func (s *conn) runJob(ctx context.Context, op, name string) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultJobTimeout)
	defer cancel()
	// Capacity 1: go-systemd's writer never blocks, even after we stop
	// listening at the deadline (see the package comment).
	ch := make(chan string, 1)
	var err error
	switch op {
	case "start":
		_, err = s.c.StartUnitContext(ctx, name, jobModeReplace, ch)
	case "stop":
		_, err = s.c.StopUnitContext(ctx, name, jobModeReplace, ch)
	default:
		panic("sdbus: unknown job " + op)
	}
	if err != nil {
		return wrap(op, name, err)
	}
	select {
	case result := <-ch:
		if result == "done" {
			return nil
		}
		je := &JobError{Op: op, Unit: name, Result: result}
		if st, err := s.Unit(ctx, name); err == nil {
			je.State = &st
		}
		return je
	case <-ctx.Done():
		// systemd keeps running the job; only our wait ends.
		return fmt.Errorf("sdbus: %s %s: job still running when giving up: %w; see journalctl -u %s",
			op, name, context.Cause(ctx), unitname.ShellQuote(name))
	}
}

func (s *conn) KillUnit(ctx context.Context, name string, signal int) error {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	return wrap("kill", name, s.c.KillUnitWithTarget(ctx, name, sddbus.All, int32(signal)))
}

func (s *conn) ResetFailed(ctx context.Context, name string) error {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	err := s.c.ResetFailedUnitContext(ctx, name)
	if isDBusError(err, errNoSuchUnit) {
		return nil
	}
	return wrap("reset-failed", name, err)
}

func (s *conn) Unit(ctx context.Context, name string) (UnitState, error) {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	// One GetAll over all interfaces of the unit object: Unit and Service
	// properties come from the same instant. Reading the unit's object
	// path makes systemd load the unit, so an unknown name yields a
	// "not-found" stub rather than an error.
	props, err := s.c.GetAllPropertiesContext(ctx, name)
	if err != nil {
		return UnitState{}, wrap("read unit", name, err)
	}
	st := UnitState{
		Name:           name,
		LoadState:      prop[string](props, "LoadState"),
		ActiveState:    prop[string](props, "ActiveState"),
		SubState:       prop[string](props, "SubState"),
		Result:         prop[string](props, "Result"),
		ExecMainCode:   prop[int32](props, "ExecMainCode"),
		ExecMainStatus: prop[int32](props, "ExecMainStatus"),
		ExecMainPID:    prop[uint32](props, "ExecMainPID"),
		StatusText:     prop[string](props, "StatusText"),
	}
	if id := prop[[]byte](props, "InvocationID"); len(id) > 0 {
		st.InvocationID = hex.EncodeToString(id)
	}
	return st, nil
}

// prop returns props[name] as T, or T's zero value when it is missing or
// of another type (for example Service properties of a target).
func prop[T any](props map[string]any, name string) T {
	v, _ := props[name].(T)
	return v
}

func (s *conn) ListUnits(ctx context.Context, patterns ...string) ([]UnitState, error) {
	ctx, cancel := callCtx(ctx)
	defer cancel()
	if patterns == nil {
		patterns = []string{} // D-Bus has no nil array; empty means "all"
	}
	units, err := s.c.ListUnitsByPatternsContext(ctx, []string{}, patterns)
	if err != nil {
		return nil, wrap("list units", strings.Join(patterns, " "), err)
	}
	out := make([]UnitState, 0, len(units))
	for _, u := range units {
		out = append(out, UnitState{Name: u.Name, LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState})
	}
	slices.SortFunc(out, func(a, b UnitState) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (s *conn) Close() error {
	s.c.Close()
	return nil
}
