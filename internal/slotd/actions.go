package slotd

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hal0ai/hal0/internal/sdbus"
)

// bus is hal0-slotd's connection for starting and stopping units. It is
// dialled on first use and again after systemd became unreachable (dbus
// restarted): a go-systemd connection does not survive that.
type bus struct {
	addr string // "" is the system bus

	mu sync.Mutex
	c  sdbus.Systemd
}

func (b *bus) get(ctx context.Context) (sdbus.Systemd, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		return b.c, nil
	}
	var (
		c   sdbus.Systemd
		err error
	)
	if b.addr == "" {
		c, err = sdbus.Dial(ctx)
	} else {
		c, err = sdbus.DialAddress(ctx, b.addr)
	}
	if err != nil {
		return nil, err
	}
	b.c = c
	return c, nil
}

// drop forgets c if it is still the current connection.
func (b *bus) drop(c sdbus.Systemd) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c == c {
		b.c.Close()
		b.c = nil
	}
}

func (b *bus) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		b.c.Close()
		b.c = nil
	}
}

// do runs f on a connection. While systemd cannot be reached it redials
// with capped, jittered backoff, as long as wanted() holds (the slot still
// needs this action) and ctx lasts: unit jobs are idempotent, so trying
// again is safe. Any other error is returned.
func (b *bus) do(ctx context.Context, wanted func() bool, f func(context.Context, sdbus.Systemd) error) error {
	for n := 0; ; n++ {
		c, err := b.get(ctx)
		if err == nil {
			err = f(ctx, c)
			if errors.Is(err, sdbus.ErrNoSystemd) {
				b.drop(c)
			}
		}
		if !errors.Is(err, sdbus.ErrNoSystemd) || !wanted() {
			return err
		}
		d := min(5*time.Second, 100*time.Millisecond<<min(n, 6))
		t := time.NewTimer(d/2 + rand.N(d/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// transient reports whether a failed unit job says nothing about the unit:
// systemd was unreachable, or our wait for the job's result ended first
// (systemd still runs the job, and the unit's own state changes tell the
// outcome). Only other errors (systemd refused or failed the job) are the
// slot's problem.
func transient(err error) bool {
	return errors.Is(err, sdbus.ErrNoSystemd) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// actor runs one slot's unit jobs one after the other, off the daemon's
// event loop: a StopUnit waits for the backend to exit (up to its
// TimeoutStopSec), which must delay neither other slots nor the watchdog,
// while jobs of one slot must keep their order (a stop queued behind a
// start).
type actor struct {
	mu    sync.Mutex
	queue []func(context.Context)
	wake  chan struct{}
}

func newActor() *actor { return &actor{wake: make(chan struct{}, 1)} }

// post queues f; it never blocks.
func (a *actor) post(f func(context.Context)) {
	a.mu.Lock()
	a.queue = append(a.queue, f)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// run executes queued functions until ctx ends.
func (a *actor) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		}
		for {
			a.mu.Lock()
			if len(a.queue) == 0 {
				a.mu.Unlock()
				break
			}
			f := a.queue[0]
			a.queue = a.queue[1:]
			a.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			f(ctx)
		}
	}
}
