package slotd

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/progress"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/sd"
	"github.com/hal0ai/hal0/internal/slots"
	"github.com/hal0ai/hal0/internal/unitname"
	"github.com/hal0ai/hal0/internal/unitwatch"
)

// onUnit takes one report from unitwatch.
func (d *daemon) onUnit(ev unitwatch.Event) {
	u := ev.Unit
	switch {
	case ev.ResyncDone():
		d.finishResync()
	case ev.Resync:
		if d.resync == nil {
			d.resync = map[string]unitwatch.Unit{}
		}
		if !u.Gone {
			d.resync[u.Name] = u
		}
	default:
		if u.Gone {
			delete(d.units, u.Name)
		} else {
			d.units[u.Name] = u
		}
		if d.synced {
			d.observe(u)
		}
	}
}

// finishResync replaces what we knew of the units with the complete set
// just listed and reconciles every slot with it. The first one also
// applies the requests waiting on disk and tells systemd we are ready.
func (d *daemon) finishResync() {
	d.units, d.resync = d.resync, nil
	if d.units == nil {
		d.units = map[string]unitwatch.Unit{}
	}
	first := !d.synced
	d.synced = true
	for _, name := range d.order {
		sl := d.slots[name]
		wasPulling := sl.st.State == slots.Pulling
		u, loaded := d.units[sl.unit]
		d.slotUnit(sl, u, loaded, true)
		if wasPulling && sl.st.State == slots.Pulling {
			pu := pullUnit(sl.st.Target)
			u, loaded := d.units[pu]
			d.pullUnit(sl, u, loaded, true)
		}
	}
	if first {
		for _, name := range d.order {
			d.onRequest(name)
		}
		d.updateStatus()
		sd.Ready()
		d.log.Printf("hal0-slotd: driving %d slots (%s)", len(d.order), strings.Join(d.order, ", "))
	}
}

// observe routes a unit change to the slots it concerns.
func (d *daemon) observe(u unitwatch.Unit) {
	tmpl, inst, err := unitname.ParseInstance(u.Name)
	if err != nil {
		return
	}
	switch tmpl {
	case SlotTemplate:
		if sl := d.slots[inst]; sl != nil && sl.unit == u.Name {
			d.slotUnit(sl, u, true, false)
		}
	case ref.PullTemplate:
		for _, name := range d.order {
			sl := d.slots[name]
			if sl.st.State == slots.Pulling && pullUnit(sl.st.Target) == u.Name {
				d.pullUnit(sl, u, true, false)
			}
		}
	}
}

func pullUnit(model string) string { return unitname.Instance(ref.PullTemplate, model) }

// isDown reports a unit that is not running and not about to: inactive,
// failed, or unloaded by systemd.
func isDown(u unitwatch.Unit) bool {
	return u.Gone || u.ActiveState == "inactive" || u.ActiveState == "failed"
}

// isUp reports a unit whose process runs (or is starting).
func isUp(u unitwatch.Unit) bool {
	return !u.Gone && (u.ActiveState == "active" || u.ActiveState == "reloading" || u.ActiveState == "activating")
}

// slotUnit reconciles the slot with its unit's state u (loaded false: not
// loaded, i.e. not running). resync says u comes from a resynchronisation:
// then work that may never have been done (we were down or cut off from
// the bus) is done again; live reports only move the slot on.
func (d *daemon) slotUnit(sl *slot, u unitwatch.Unit, loaded, resync bool) {
	inv := ""
	if loaded {
		inv = u.InvocationID
	}
	running := loaded && !u.Gone && (u.ActiveState == "active" || u.ActiveState == "reloading")
	down := !loaded || isDown(u)
	if loaded && !down {
		sl.upInv = inv
	}
	bound := extraString(&sl.st, ExtraInvocation)
	switch sl.st.State {
	case slots.Starting:
		if inv == "" || inv == extraString(&sl.st, ExtraReplaces) {
			// Not (yet) the run our start makes: the previous run, or a
			// unit that never ran. After a resync the start may never
			// have happened (or been refused while the bus was away):
			// issue it again; starting is idempotent.
			if resync {
				d.startUnit(sl)
			}
			return
		}
		switch {
		case running:
			d.applyLog(sl, slots.Event{Kind: slots.EvUnitActive}, func(st *slots.Status) {
				st.Extra[ExtraInvocation] = inv
				delete(st.Extra, ExtraReplaces)
			})
		case down && (sl.upInv == inv || loaded && u.Result != "" && u.Result != "success"):
			// Over: a run seen up that went down, or one that failed
			// (systemd resets Result when a run starts, so a failure
			// next to the new run's id is the new run's).
			d.applyLog(sl, slots.Event{Kind: slots.EvUnitGone, Message: unitGone(sl.unit, u, loaded, "starting "+sl.st.ModelID)}, nil)
		case down && resync:
			// systemd names the new run just before it starts it, so a
			// down unit with a new id and no failure may be about to
			// start, or have run and exited cleanly while we were away:
			// start it (again).
			d.startUnit(sl)
		}
	case slots.Warming, slots.Ready, slots.Idle, slots.Serving:
		if bound == "" && running {
			// A status from before invocations were recorded.
			d.update(sl, func(st *slots.Status) { st.Extra[ExtraInvocation] = inv })
			bound = inv
		}
		if bound != "" && inv != "" && inv != bound {
			// A run we did not start (systemctl restart): the backend
			// this slot was warming or serving is gone.
			d.applyLog(sl, slots.Event{Kind: slots.EvUnitGone, Message: fmt.Sprintf("%s was restarted outside hal0 (run %s replaced run %s) while %s %s; load the slot again",
				sl.unit, short(inv), short(bound), sl.st.State, sl.st.ModelID)}, nil)
			return
		}
		if down {
			d.applyLog(sl, slots.Event{Kind: slots.EvUnitGone, Message: unitGone(sl.unit, u, loaded, string(sl.st.State)+" "+sl.st.ModelID)}, nil)
			return
		}
		if resync && running {
			switch {
			case sl.st.State == slots.Warming && !d.healthRunning(sl):
				d.startHealth(sl)
			case sl.st.State == slots.Ready && sl.idle == nil:
				d.armIdle(sl)
			}
		}
	case slots.Unloading:
		if down {
			installed, err := d.installed(sl.st.Target)
			if err != nil {
				d.log.Errorf("slot %s: %v", sl.name, err)
			}
			d.applyLog(sl, slots.Event{Kind: slots.EvUnitGone, Installed: installed}, nil)
		} else if resync {
			d.stopUnit(sl)
		}
	case slots.Offline, slots.Error, slots.Pulling:
		// Nothing of this slot may run now. A run here was started by
		// hand or outlived a stop that was cut short: stop it, since
		// the slot cannot serve it.
		if loaded && isUp(u) {
			d.stopUnit(sl)
		}
	}
}

// pullUnit follows the pull a pulling slot waits for: its progress while
// the unit runs, its outcome from the job record once the unit is down.
func (d *daemon) pullUnit(sl *slot, u unitwatch.Unit, loaded, resync bool) {
	model := sl.st.Target
	p, ok := pullProgress(&sl.st)
	var j *jobs.Job
	var err error
	if ok {
		j, err = d.jobs.Get(p.JobID)
	} else {
		j, err = d.jobs.Current(model)
	}
	if err != nil && !errors.Is(err, jobs.ErrNotFound) {
		d.log.Errorf("slot %s: reading the pull job of %s: %v", sl.name, model, err)
		return
	}
	if loaded && !isDown(u) {
		if j != nil {
			d.showProgress(sl, j, u.StatusText)
		}
		return
	}
	if j == nil {
		// No record: we stopped between deciding to pull and recording
		// the job (or it was pruned). Start over; the engine resumes
		// from whatever partial data exists.
		if resync {
			d.restartPull(sl)
		}
		return
	}
	switch j.State {
	case jobs.Completed:
		d.applyLog(sl, slots.Event{Kind: slots.EvPullDone, Model: model}, nil)
	case jobs.Failed, jobs.Cancelled:
		msg := j.Error
		if msg == "" {
			msg = string(j.State)
		}
		if j.ErrorCode != "" {
			msg += " [" + j.ErrorCode + "]"
		}
		d.applyLog(sl, slots.Event{Kind: slots.EvPullFailed, Model: model, Message: msg}, nil)
	case jobs.Queued:
		// Our start has not happened yet (a report from before it), or
		// never will (we stopped first): only a resync can tell.
		if resync {
			if !ok {
				d.restartPull(sl)
			} else {
				d.startPull(sl)
			}
		}
	case jobs.Running:
		if d.jobs.WorkerAlive(model) {
			return // a report older than the worker's start
		}
		how := unitGone(pullUnit(model), u, loaded, "pulling "+model)
		d.applyLog(sl, slots.Event{Kind: slots.EvPullFailed, Model: model, Message: "the worker died: " + how}, nil)
	}
}

// restartPull records a new (or the running) job for the slot's target
// and starts its unit.
func (d *daemon) restartPull(sl *slot) {
	p, err := d.beginPull(sl.st.Target)
	if err != nil {
		d.applyLog(sl, slots.Event{Kind: slots.EvPullFailed, Model: sl.st.Target, Message: err.Error()}, nil)
		return
	}
	d.update(sl, func(st *slots.Status) {
		st.Extra[ExtraPull] = p
		st.Message = pullMessage(st.Target, p)
	})
	d.startPull(sl)
}

// showProgress copies a running pull's progress into the slot's status.
func (d *daemon) showProgress(sl *slot, j *jobs.Job, status string) {
	p := progressOf(j, status)
	old, _ := pullProgress(&sl.st)
	msg := pullMessage(sl.st.Target, p)
	if old == p && sl.st.Message == msg {
		return
	}
	d.update(sl, func(st *slots.Status) {
		st.Extra[ExtraPull] = p
		st.Message = msg
	})
}

// pullMessage is the status message of a pulling slot.
func pullMessage(model string, p PullProgress) string {
	switch {
	case p.BytesTotal > 0:
		return fmt.Sprintf("pulling %s: %s of %s (%d%%)", model, progress.Bytes(p.BytesDone), progress.Bytes(p.BytesTotal), p.BytesDone*100/p.BytesTotal)
	case p.Phase != "":
		return fmt.Sprintf("pulling %s: %s", model, p.Phase)
	}
	return "pulling " + model
}

// applyLog is apply for observations, which are never refused: an error
// can only be a failed save.
func (d *daemon) applyLog(sl *slot, ev slots.Event, edit func(*slots.Status)) {
	if err := d.apply(sl, ev, edit); err != nil {
		d.log.Errorf("slot %s: %s: %v", sl.name, ev.Kind, err)
	}
}

// unitGone says how a unit ended, for a slot's error message: the unit,
// what happened to its main process, systemd's result, what the slot was
// doing, and where to read more.
func unitGone(unit string, u unitwatch.Unit, loaded bool, doing string) string {
	var how string
	switch {
	case !loaded:
		how = "is not running (systemd has no record of it: it ended cleanly, or the machine restarted)"
	case u.Result == "oom-kill":
		how = "was killed by the kernel's OOM killer"
	case u.ExecMainCode == 1: // CLD_EXITED
		how = fmt.Sprintf("exited with status %d", u.ExecMainStatus)
	case u.ExecMainCode == 2: // CLD_KILLED
		how = "was killed by signal " + signalName(u.ExecMainStatus)
	case u.ExecMainCode == 3: // CLD_DUMPED
		how = "dumped core on signal " + signalName(u.ExecMainStatus)
	default:
		how = "stopped"
	}
	if loaded && u.Result != "" {
		how += fmt.Sprintf(" (%s, result %s)", u.ActiveState, u.Result)
	}
	return fmt.Sprintf("%s %s while %s; see journalctl -u %s", unit, how, doing, unitname.ShellQuote(unit))
}

func signalName(n int32) string {
	if name := unix.SignalName(syscall.Signal(n)); name != "" {
		return fmt.Sprintf("%d (%s)", n, name)
	}
	return fmt.Sprint(n)
}

// short abbreviates an invocation id for messages.
func short(inv string) string {
	if len(inv) > 8 {
		return inv[:8]
	}
	if inv == "" {
		return "(none)"
	}
	return inv
}
