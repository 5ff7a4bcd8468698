package runner

import (
	"context"

	"github.com/hal0ai/hal0/internal/jobs"
)

// Lazy is a Runner built in the background. hal0-apid listens and reports
// ready first and connects to systemd behind it, so that the first answer
// after socket activation does not wait for D-Bus; requests that need the
// runner wait for it.
type Lazy struct {
	ready chan struct{}
	r     Runner
	err   error
}

// NewLazy starts build in a goroutine.
func NewLazy(build func() (Runner, error)) *Lazy {
	l := &Lazy{ready: make(chan struct{})}
	go func() {
		l.r, l.err = build()
		close(l.ready)
	}()
	return l
}

// Wait returns the runner once built, or the error that stopped it.
func (l *Lazy) Wait(ctx context.Context) (Runner, error) {
	select {
	case <-l.ready:
		return l.r, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Done is closed once the runner is built (or failed).
func (l *Lazy) Done() <-chan struct{} { return l.ready }

// Pending reports whether the runner is still being built.
func (l *Lazy) Pending() bool {
	select {
	case <-l.ready:
		return false
	default:
		return true
	}
}

// Name waits for the runner.
func (l *Lazy) Name() string {
	r, err := l.Wait(context.Background())
	if err != nil {
		return "unavailable"
	}
	return r.Name()
}

func (l *Lazy) Start(ctx context.Context, j *jobs.Job) error {
	r, err := l.Wait(ctx)
	if err != nil {
		return err
	}
	return r.Start(ctx, j)
}

func (l *Lazy) Stop(ctx context.Context, j *jobs.Job) error {
	r, err := l.Wait(ctx)
	if err != nil {
		return err
	}
	return r.Stop(ctx, j)
}

func (l *Lazy) State(ctx context.Context, j *jobs.Job) (State, error) {
	r, err := l.Wait(ctx)
	if err != nil {
		return State{}, err
	}
	return r.State(ctx, j)
}

// FreshState is State without any cache, when the runner has one.
func (l *Lazy) FreshState(ctx context.Context, j *jobs.Job) (State, error) {
	r, err := l.Wait(ctx)
	if err != nil {
		return State{}, err
	}
	return FreshState(ctx, r, j)
}

// Active counts running child workers; 0 while pending.
func (l *Lazy) Active() int {
	if l.Pending() || l.err != nil {
		return 0
	}
	return l.r.Active()
}

func (l *Lazy) Close() error {
	r, err := l.Wait(context.Background())
	if err != nil {
		return nil
	}
	return r.Close()
}
