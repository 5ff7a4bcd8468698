package slotd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/health"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/sdbus"
	"github.com/hal0ai/hal0/internal/slots"
	"github.com/hal0ai/hal0/internal/unitname"
)

// apply feeds ev to the slot's reducer, persists the outcome and only
// then acts on it, so that a crash between the two leaves a state that
// the next resync completes. edit, if set, adds to the new status before
// it is saved. An illegal request comes back as the reducer's
// *slots.IllegalTransitionError with nothing changed.
func (d *daemon) apply(sl *slot, ev slots.Event, edit func(*slots.Status)) error {
	now := d.now()
	next, acts, err := slots.Reduce(sl.st, ev, now)
	if err != nil {
		return err
	}
	next = withExtra(next)
	if edit != nil {
		edit(&next)
	}
	next, acts = d.prepare(sl, next, acts, now)
	if err := d.save(sl, &next); err != nil {
		return err
	}
	d.perform(sl, acts)
	return nil
}

// prepare does the part of an action that must be on record before the
// status is saved: the pull's job record (its id goes into the status, so
// a restart follows the same job) and the run spec of a start. When that
// fails, the reducer is told, so the slot goes to error with the reason
// instead of waiting for something that will never happen.
func (d *daemon) prepare(sl *slot, next slots.Status, acts []slots.Action, now time.Time) (slots.Status, []slots.Action) {
	for i, a := range acts {
		var fail *slots.Event
		switch a.Kind {
		case slots.ActStartPull:
			p, err := d.beginPull(a.Model)
			if err != nil {
				fail = &slots.Event{Kind: slots.EvPullFailed, Model: a.Model, Message: err.Error()}
				break
			}
			next.Extra[ExtraPull] = p
			next.Message = pullMessage(a.Model, p)
		case slots.ActStartUnit:
			spec, err := d.runSpec(sl, a.Model, now)
			if err == nil {
				err = WriteRunSpec(RunSpecPath(d.cfg.Paths.StateDir, sl.name), spec)
			}
			if err != nil {
				fail = &slots.Event{Kind: slots.EvUnitGone, Message: fmt.Sprintf("%s cannot be started for %s: %v", sl.unit, a.Model, err)}
				break
			}
			// Reports about the unit's current run, which may still
			// trickle in, are not about the run this start makes.
			next.Extra[ExtraReplaces] = d.units[sl.unit].InvocationID
			delete(next.Extra, ExtraInvocation)
		}
		if fail != nil {
			failed, more, err := slots.Reduce(next, *fail, now)
			if err != nil {
				d.log.Errorf("slot %s: %v", sl.name, err)
				return next, acts[:i]
			}
			return failed, append(acts[:i:i], more...)
		}
	}
	return next, acts
}

// save writes next as the slot's status and makes it current. A change of
// state bumps the generation, which ends the health check and idle timer
// of the state left.
func (d *daemon) save(sl *slot, next *slots.Status) error {
	if next.State != slots.Pulling {
		delete(next.Extra, ExtraPull)
	}
	if len(next.Extra) == 0 {
		next.Extra = nil
	}
	if err := slots.SaveStatus(sl.path, next); err != nil {
		return fmt.Errorf("slot %s: saving its state: %w", sl.name, err)
	}
	prev := sl.st.State
	sl.st = *next
	if prev != next.State {
		sl.gen.Add(1)
		d.stopHealth(sl)
		d.stopIdle(sl)
		model := next.Target
		if model == "" {
			model = next.ModelID
		}
		d.log.With(map[string]string{"HAL0_SLOT": sl.name, "HAL0_SLOT_STATE": string(next.State), "HAL0_MODEL": model},
			"slot %s: %s → %s: %s", sl.name, prev, next.State, next.Message)
		d.updateStatus()
	}
	return nil
}

// update changes the slot's status without a transition (pull progress, a
// refused request) and saves it.
func (d *daemon) update(sl *slot, edit func(*slots.Status)) {
	next := withExtra(sl.st)
	edit(&next)
	next.UpdatedAt = float64(d.now().UnixNano()) / 1e9
	if err := d.save(sl, &next); err != nil {
		d.log.Errorf("%v", err)
	}
}

func (d *daemon) perform(sl *slot, acts []slots.Action) {
	for _, a := range acts {
		switch a.Kind {
		case slots.ActStartPull:
			d.startPull(sl)
		case slots.ActStartUnit:
			d.startUnit(sl)
		case slots.ActStopUnit:
			d.stopUnit(sl)
		case slots.ActCheckHealth:
			d.startHealth(sl)
		case slots.ActIdleTimer:
			d.armIdle(sl)
		}
	}
}

// beginPull creates (or joins: hal0-apid may be pulling the same model
// already) the job record of a pull, as hal0-apid does.
func (d *daemon) beginPull(model string) (PullProgress, error) {
	rf, err := ref.Parse(model)
	if err != nil {
		return PullProgress{}, err
	}
	j, _, err := d.jobs.Begin(d.ctx, jobs.Job{Ref: rf.String(), Kind: rf.Kind.String(), Unit: rf.Unit(), Runner: "systemd"})
	if err != nil {
		return PullProgress{}, fmt.Errorf("could not create the job record: %w", err)
	}
	return progressOf(j, ""), nil
}

func progressOf(j *jobs.Job, status string) PullProgress {
	return PullProgress{JobID: j.ID, Unit: j.Unit, State: string(j.State), Phase: j.Phase,
		BytesDone: j.BytesDone, BytesTotal: j.BytesTotal, FilesDone: j.FilesDone, FilesTotal: j.FilesTotal,
		RateBPS: j.RateBPS, Status: status}
}

// runSpec resolves what the slot unit will run for model.
func (d *daemon) runSpec(sl *slot, model string, now time.Time) (*RunSpec, error) {
	reg, err := d.reg.Load()
	if err != nil {
		return nil, err
	}
	m, ok := reg.Get(model)
	if !ok {
		return nil, fmt.Errorf("model %s is not in the registry (%s)", model, d.reg.Path())
	}
	c := sl.cfg
	path := m.Path
	if path == "" || c.Slot.Backend == "flm" {
		// flm serves tags, not paths: its cache is its own.
		path = model
	}
	return &RunSpec{Slot: sl.name, ModelID: model, Model: path, Port: c.Slot.Port, Context: c.Model.ContextSize,
		Backend: c.Slot.Backend, Written: now.UTC()}, nil
}

// installed reports whether model is in the registry.
func (d *daemon) installed(model string) (bool, error) {
	reg, err := d.reg.Load()
	if err != nil {
		return false, err
	}
	_, ok := reg.Get(model)
	return ok, nil
}

// wanted reports whether work begun at generation gen still matters.
func wanted(sl *slot, gen uint64) func() bool {
	return func() bool { return sl.gen.Load() == gen }
}

// startPull starts the pull unit of the slot's job unless a worker has
// taken the job (the unit's reports tell the rest) or it is over. A start that systemd refuses fails the job, as hal0-apid would,
// so that it does not hang as queued, and the slot.
func (d *daemon) startPull(sl *slot) {
	p, ok := pullProgress(&sl.st)
	if !ok {
		return
	}
	gen, model := sl.gen.Load(), sl.st.Target
	sl.act.post(func(ctx context.Context) {
		j, err := d.jobs.Get(p.JobID)
		if err != nil || !wanted(sl, gen)() {
			return
		}
		switch {
		case j.State == jobs.Queued:
		case j.State == jobs.Running && !d.jobs.WorkerAlive(j.Ref):
			// An earlier worker died without recording it (killed, or
			// the machine went down): take the same job up again, as
			// hal0-apid does; the engine resumes from its partial data.
			_, err = d.jobs.Update(ctx, j.ID, func(x *jobs.Job) error {
				if x.State == jobs.Running {
					x.State, x.PID = jobs.Queued, 0
				}
				return nil
			})
			if err != nil {
				d.log.Errorf("slot %s: requeue pull job %s: %v", sl.name, j.ID, err)
			}
		default:
			return // its worker runs, or it is over: the unit's reports tell
		}
		err = d.bus.do(ctx, wanted(sl, gen), func(ctx context.Context, c sdbus.Systemd) error {
			// A failed run of an earlier attempt would count against the
			// start limit.
			if err := c.ResetFailed(ctx, p.Unit); errors.Is(err, sdbus.ErrNoSystemd) {
				return err
			}
			return c.StartUnit(ctx, p.Unit)
		})
		if err == nil || transient(err) {
			if err != nil && ctx.Err() == nil {
				d.log.Printf("slot %s: start %s: %v (the unit's own reports will tell)", sl.name, p.Unit, err)
			}
			return
		}
		msg := fmt.Sprintf("could not start %s: %v", p.Unit, err)
		fin := time.Now().UTC()
		d.jobs.Update(ctx, p.JobID, func(j *jobs.Job) error {
			if !j.State.Final() {
				j.State, j.ErrorCode, j.Error, j.FinishedAt = jobs.Failed, api.CodeWorkerDied, msg, &fin
			}
			return nil
		})
		d.post(result{slot: sl.name, gen: gen, ev: slots.Event{Kind: slots.EvPullFailed, Model: model, Message: msg}})
	})
}

// startUnit starts the slot unit. If the run it replaces is still up
// (started by hand, or a stop that has not finished), that run is stopped
// first, so the start makes a new run that reads the run spec just
// written. This is decided when the job runs, from the unit as it is
// then: a start issued twice (again after a resync) must not stop the
// run the first one made.
func (d *daemon) startUnit(sl *slot) {
	gen, unit := sl.gen.Load(), sl.unit
	replaces := extraString(&sl.st, ExtraReplaces)
	model := sl.st.ModelID
	sl.act.post(func(ctx context.Context) {
		if !wanted(sl, gen)() {
			return
		}
		err := d.bus.do(ctx, wanted(sl, gen), func(ctx context.Context, c sdbus.Systemd) error {
			cur, err := c.Unit(ctx, unit)
			if err != nil {
				return err
			}
			switch cur.ActiveState {
			case "active", "activating", "reloading", "deactivating":
				if cur.InvocationID == replaces {
					if err := c.StopUnit(ctx, unit); err != nil {
						return err
					}
				}
			}
			if err := c.StartUnit(ctx, unit); err != nil {
				return err
			}
			// The start job is done once the backend was exec'd. A backend
			// that exits at once can be gone before its "active" ever
			// reaches us as a signal (systemd merges property changes),
			// which would leave the slot starting forever: look once more.
			after, err := c.Unit(ctx, unit)
			if err == nil && (after.ActiveState == "inactive" || after.ActiveState == "failed") && after.InvocationID != replaces {
				d.post(result{slot: sl.name, gen: gen, ev: slots.Event{Kind: slots.EvUnitGone, Message: exitedEarly(unit, model, after)}})
			}
			return nil
		})
		if err == nil || transient(err) {
			if err != nil && ctx.Err() == nil {
				d.log.Printf("slot %s: start %s: %v (the unit's own reports will tell)", sl.name, unit, err)
			}
			return
		}
		d.post(result{slot: sl.name, gen: gen, ev: slots.Event{Kind: slots.EvUnitGone,
			Message: fmt.Sprintf("%s could not be started for %s: %v", unit, model, err)}})
	})
}

// stopUnit stops the slot unit; the unit's reports move the slot on.
func (d *daemon) stopUnit(sl *slot) {
	gen, unit := sl.gen.Load(), sl.unit
	sl.act.post(func(ctx context.Context) {
		err := d.bus.do(ctx, wanted(sl, gen), func(ctx context.Context, c sdbus.Systemd) error { return c.StopUnit(ctx, unit) })
		if err != nil && ctx.Err() == nil {
			d.log.Errorf("slot %s: stop %s: %v", sl.name, unit, err)
		}
	})
}

// startHealth polls the backend until it is healthy or the slot's
// [health] timeout passes. It is cancelled as soon as the slot leaves
// warming (the unit went away, an unload).
func (d *daemon) startHealth(sl *slot) {
	d.stopHealth(sl)
	gen := sl.gen.Load()
	c := sl.cfg
	model := sl.st.ModelID
	unhealthy := func(err error) result {
		return result{slot: sl.name, gen: gen, ev: slots.Event{Kind: slots.EvUnhealthy,
			Message: fmt.Sprintf("%s did not become healthy while warming %s: %v; see journalctl -u %s", sl.unit, model, err, unitname.ShellQuote(sl.unit))}}
	}
	checker, err := health.New(c.Slot.Backend, fmt.Sprintf("http://127.0.0.1:%d", c.Slot.Port), c.Health.Path, nil)
	if err != nil {
		go d.post(unhealthy(err))
		return
	}
	ctx, cancel := context.WithCancelCause(d.ctx)
	sl.healthCancel, sl.healthGen = cancel, gen
	go func() {
		err := health.Wait(ctx, checker, health.Options{Timeout: c.Health.Timeout.D()})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.post(unhealthy(err))
			return
		}
		d.post(result{slot: sl.name, gen: gen, ev: slots.Event{Kind: slots.EvHealthy}})
	}()
}

// healthRunning reports whether a health check for the current state runs.
func (d *daemon) healthRunning(sl *slot) bool {
	return sl.healthCancel != nil && sl.healthGen == sl.gen.Load()
}

func (d *daemon) stopHealth(sl *slot) {
	if sl.healthCancel != nil {
		sl.healthCancel(errors.New("the slot left warming"))
		sl.healthCancel = nil
	}
}

// armIdle moves a ready slot to idle after [slot] idle_timeout (0: never).
func (d *daemon) armIdle(sl *slot) {
	d.stopIdle(sl)
	t := sl.cfg.Slot.IdleTimeout.D()
	if t <= 0 {
		return
	}
	gen := sl.gen.Load()
	sl.idle = time.AfterFunc(t, func() { d.post(result{slot: sl.name, gen: gen, ev: slots.Event{Kind: slots.EvIdle}}) })
}

func (d *daemon) stopIdle(sl *slot) {
	if sl.idle != nil {
		sl.idle.Stop()
		sl.idle = nil
	}
}

// exitedEarly describes a backend that exited right after it started.
func exitedEarly(unit, model string, u sdbus.UnitState) string {
	how := fmt.Sprintf("exited with status %d", u.ExecMainStatus)
	if u.ExecMainCode == 2 || u.ExecMainCode == 3 { // CLD_KILLED, CLD_DUMPED
		how = fmt.Sprintf("was killed by signal %d", u.ExecMainStatus)
	}
	return fmt.Sprintf("%s %s right after starting %s (%s, result %s); see journalctl -u %s", unit, how, model, u.ActiveState, u.Result, unitname.ShellQuote(unit))
}
