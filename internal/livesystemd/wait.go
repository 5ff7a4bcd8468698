package livesystemd

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/godbus/dbus/v5"

	"github.com/hal0ai/hal0/internal/sdbus"
)

const (
	sd1Dest       = "org.freedesktop.systemd1"
	sd1Path       = dbus.ObjectPath("/org/freedesktop/systemd1")
	sd1Manager    = "org.freedesktop.systemd1.Manager"
	sd1Unit       = "org.freedesktop.systemd1.Unit"
	propsIface    = "org.freedesktop.DBus.Properties"
	propsChanged  = "PropertiesChanged"
	signalBufSize = 256
)

// WaitUnit waits until unit's ActiveState is one of states and returns it.
//
// It is event-driven: it subscribes to the unit's PropertiesChanged signals
// on the namespace's system bus (systemd only emits them while some client
// has called Manager.Subscribe), and reads the state once after subscribing,
// so a change cannot slip between the read and the subscription. At ctx's
// deadline (DefaultWaitTimeout when ctx has none) it gives up with an error
// naming the last state seen.
//
// A unit that is garbage-collected after going inactive is reloaded by the
// LoadUnit call and reads "inactive", so waiting for "inactive" or "failed"
// after the fact works too.
func (s *System) WaitUnit(ctx context.Context, unit string, states ...string) (string, error) {
	if len(states) == 0 {
		return "", errors.New("livesystemd: WaitUnit needs at least one state")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWaitTimeout)
		defer cancel()
	}
	fail := func(state string, err error) (string, error) {
		return state, fmt.Errorf("livesystemd: waiting for %s to become %v (last state %q): %w", unit, states, state, err)
	}

	conn, err := sdbus.DialBus(ctx, s.BusAddress)
	if err != nil {
		return fail("", err)
	}
	defer conn.Close()
	// Signals arrive in order (sdbus.DialBus); the buffer keeps the bus
	// reader from waiting on this loop.
	sigs := make(chan *dbus.Signal, signalBufSize)
	conn.Signal(sigs)

	mgr := conn.Object(sd1Dest, sd1Path)
	var path dbus.ObjectPath
	if err := mgr.CallWithContext(ctx, sd1Manager+".LoadUnit", 0, unit).Store(&path); err != nil {
		return fail("", err)
	}
	if err := conn.AddMatchSignalContext(ctx,
		dbus.WithMatchObjectPath(path),
		dbus.WithMatchInterface(propsIface),
		dbus.WithMatchMember(propsChanged),
		dbus.WithMatchArg(0, sd1Unit),
	); err != nil {
		return fail("", err)
	}
	if err := mgr.CallWithContext(ctx, sd1Manager+".Subscribe", 0).Store(); err != nil {
		return fail("", err)
	}
	state, err := activeState(ctx, conn, path)
	if err != nil {
		return fail("", err)
	}
	for !slices.Contains(states, state) {
		select {
		case <-ctx.Done():
			return fail(state, context.Cause(ctx))
		case sig, ok := <-sigs:
			if !ok {
				return fail(state, errors.New("bus connection closed"))
			}
			if sig.Path != path || sig.Name != propsIface+"."+propsChanged {
				continue
			}
			var iface string
			var changed map[string]dbus.Variant
			var invalidated []string
			if err := dbus.Store(sig.Body, &iface, &changed, &invalidated); err != nil || iface != sd1Unit {
				continue
			}
			if v, ok := changed["ActiveState"]; ok {
				if st, ok := v.Value().(string); ok {
					state = st
				}
			} else if slices.Contains(invalidated, "ActiveState") {
				if state, err = activeState(ctx, conn, path); err != nil {
					return fail(state, err)
				}
			}
		}
	}
	return state, nil
}

func activeState(ctx context.Context, conn *dbus.Conn, path dbus.ObjectPath) (string, error) {
	var v dbus.Variant
	err := conn.Object(sd1Dest, path).CallWithContext(ctx, propsIface+".Get", 0, sd1Unit, "ActiveState").Store(&v)
	if err != nil {
		return "", err
	}
	st, ok := v.Value().(string)
	if !ok {
		return "", fmt.Errorf("ActiveState is %s, not a string", v.Signature())
	}
	return st, nil
}
