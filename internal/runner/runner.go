// Package runner starts and stops pull workers for hal0-apid: as
// hal0-pull@<ref>.service instances through systemd, or, where no systemd
// is reachable (a container, a laptop, the demo), as child processes. The
// job record is the contract either way; the runner only answers whether a
// worker is alive and how it ended.
package runner

import (
	"context"

	"github.com/hal0ai/hal0/internal/jobs"
)

// State is what a runner knows about a job's worker.
type State struct {
	// Active is true while the worker is starting or running.
	Active bool
	// UnitState is systemd's ActiveState, or "running"/"exited" for a
	// child process, or "" when the runner knows nothing of it.
	UnitState string
	// ExitStatus is the worker's exit status once it has exited with one.
	ExitStatus *int
	// Signal is the signal that killed the worker, or 0.
	Signal int
}

// Runner runs workers.
type Runner interface {
	// Name is "systemd" or "process"; it is recorded in jobs.
	Name() string
	// Start starts the worker for j (whose record exists already).
	Start(ctx context.Context, j *jobs.Job) error
	// Stop asks the worker to stop (SIGTERM): it records "cancelled".
	Stop(ctx context.Context, j *jobs.Job) error
	// State reports on j's worker.
	State(ctx context.Context, j *jobs.Job) (State, error)
	// Active counts workers this runner started that are still running;
	// hal0-apid does not exit on idle while child processes run.
	Active() int
	Close() error
}

// FreshState asks r about j's worker bypassing any cache r keeps (the
// systemd runner caches unit states for status polls). Callers use it
// when the cached answer contradicts what they see themselves, such as a
// unit said to be active whose worker holds no lock.
func FreshState(ctx context.Context, r Runner, j *jobs.Job) (State, error) {
	if f, ok := r.(interface {
		FreshState(context.Context, *jobs.Job) (State, error)
	}); ok {
		return f.FreshState(ctx, j)
	}
	return r.State(ctx, j)
}
