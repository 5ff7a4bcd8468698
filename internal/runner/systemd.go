package runner

import (
	"context"
	"sync"
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
	// StateTTL is how long a unit's state, once read, answers State
	// without asking systemd again; default 250 ms, negative turns the
	// cache off. Status polls arrive by the thousand a second under load
	// and each would otherwise be a D-Bus round trip to PID 1; the worker
	// writes its progress every 500 ms, so a quarter second of staleness
	// costs nothing. Start and Stop forget the unit's entry.
	StateTTL time.Duration

	mu    sync.Mutex
	cache map[string]cachedState
}

type cachedState struct {
	at    time.Time
	state State
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
	defer s.forget(j.Unit)
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	s.SD.ResetFailed(ctx, j.Unit)
	return s.SD.StartUnit(ctx, j.Unit)
}

// Stop stops the instance: systemd sends SIGTERM, the worker records
// "cancelled" and exits.
func (s *Systemd) Stop(ctx context.Context, j *jobs.Job) error {
	defer s.forget(j.Unit)
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.SD.StopUnit(ctx, j.Unit)
}

// State reads the unit. A successful instance is garbage-collected as soon
// as it exits, so "unknown" means "not running", and the record tells the
// rest.
func (s *Systemd) State(ctx context.Context, j *jobs.Job) (State, error) {
	ttl := s.StateTTL
	if ttl == 0 {
		ttl = 250 * time.Millisecond
	}
	now := time.Now()
	s.mu.Lock()
	c, ok := s.cache[j.Unit]
	s.mu.Unlock()
	if ok && ttl > 0 && now.Sub(c.at) < ttl {
		return c.state, nil
	}
	st, err := s.state(ctx, j)
	if err != nil || ttl < 0 {
		return st, err
	}
	s.mu.Lock()
	if s.cache == nil || len(s.cache) >= 256 {
		s.cache = make(map[string]cachedState)
	}
	s.cache[j.Unit] = cachedState{at: now, state: st}
	s.mu.Unlock()
	return st, nil
}

// FreshState reads the unit from systemd and caches the answer.
func (s *Systemd) FreshState(ctx context.Context, j *jobs.Job) (State, error) {
	s.forget(j.Unit)
	return s.State(ctx, j)
}

func (s *Systemd) forget(unit string) {
	s.mu.Lock()
	delete(s.cache, unit)
	s.mu.Unlock()
}

func (s *Systemd) state(ctx context.Context, j *jobs.Job) (State, error) {
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
