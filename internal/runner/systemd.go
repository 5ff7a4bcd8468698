package runner

import (
	"context"
	"time"

	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/sdbus"
)

// Systemd runs workers as hal0-pull@<ref>.service template instances. A
// transient unit cannot be used: systemd refuses a transient name that an
// installed template covers, and `systemctl start hal0-pull@qwen3:4b`
// must work by hand.
type Systemd struct {
	SD sdbus.Systemd
	// Timeout bounds every D-Bus call; default 30 s.
	Timeout time.Duration
}

func (s *Systemd) Name() string { return "systemd" }

func (s *Systemd) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	t := s.Timeout
	if t == 0 {
		t = 30 * time.Second
	}
	return context.WithTimeout(ctx, t)
}

// Start resets a failed instance left by an earlier attempt, then starts
// it. The template is Type=notify, so the job completes once the worker
// has taken its job record (READY=1).
func (s *Systemd) Start(ctx context.Context, j *jobs.Job) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	s.SD.ResetFailed(ctx, j.Unit)
	return s.SD.StartUnit(ctx, j.Unit)
}

// Stop stops the instance: systemd sends SIGTERM, the worker records
// "cancelled" and exits.
func (s *Systemd) Stop(ctx context.Context, j *jobs.Job) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.SD.StopUnit(ctx, j.Unit)
}

// State reads the unit. A successful instance is garbage-collected as soon
// as it exits, so "unknown" means "not running", and the record tells the
// rest.
func (s *Systemd) State(ctx context.Context, j *jobs.Job) (State, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	u, err := s.SD.Unit(ctx, j.Unit)
	if err != nil {
		return State{}, err
	}
	st := State{UnitState: u.ActiveState}
	switch u.ActiveState {
	case "active", "activating", "reloading", "deactivating":
		st.Active = true
	}
	if u.LoadState == "not-found" {
		st.UnitState = ""
	}
	switch u.ExecMainCode {
	case 1: // CLD_EXITED
		v := int(u.ExecMainStatus)
		st.ExitStatus = &v
	case 2, 3: // CLD_KILLED, CLD_DUMPED
		st.Signal = int(u.ExecMainStatus)
	}
	if u.Result == "signal" && st.Signal == 0 && u.ExecMainStatus != 0 {
		st.Signal = int(u.ExecMainStatus)
	}
	return st, nil
}

// Active is 0: units outlive hal0-apid, which may exit when idle.
func (s *Systemd) Active() int { return 0 }

func (s *Systemd) Close() error { return s.SD.Close() }
