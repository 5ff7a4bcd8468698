package slots

import (
	"fmt"
	"time"
)

// EventKind names what happened to a slot.
type EventKind string

const (
	// Requests from the API.
	EvLoad   EventKind = "load"   // load Model (the slot's default if empty)
	EvSwap   EventKind = "swap"   // replace whatever runs with Model
	EvUnload EventKind = "unload" // stop serving

	// Observations.
	EvPullDone   EventKind = "pull-done"   // the pull of Model finished and every file verified
	EvPullFailed EventKind = "pull-failed" // the pull of Model failed (Message says why)
	EvUnitActive EventKind = "unit-active" // hal0-slot@<name>.service reached active
	EvUnitGone   EventKind = "unit-gone"   // the slot unit is inactive or failed (Message says why)
	EvHealthy    EventKind = "healthy"     // the backend answered its health check
	EvUnhealthy  EventKind = "unhealthy"   // warming gave up, or a ready backend failed its checks
	EvIdle       EventKind = "idle"        // no request for the idle timeout
)

// Event is one input to Reduce.
type Event struct {
	Kind    EventKind
	Model   string // for load, swap and the pull events
	Message string
	// Installed says whether the model to bring in (Model for load and
	// swap, the recorded target for unit-gone during a swap) is already in
	// the registry, so no pull is needed.
	Installed bool
}

// ActionKind names what hal0-slotd must do after a transition.
type ActionKind string

const (
	ActStartPull   ActionKind = "start-pull"   // start hal0-pull@<Model>
	ActStartUnit   ActionKind = "start-unit"   // start hal0-slot@<name> serving Model
	ActStopUnit    ActionKind = "stop-unit"    // stop hal0-slot@<name>
	ActCheckHealth ActionKind = "check-health" // poll the backend until healthy or timeout
	ActIdleTimer   ActionKind = "idle-timer"   // (re)arm the idle timer
)

// Action is one side effect; Reduce itself performs none.
type Action struct {
	Kind  ActionKind
	Model string
}

// Reduce applies ev to st and returns the new status and the actions to
// take. It is pure: the same inputs always give the same outputs, and
// hal0-slotd persists the result before acting on it. A request that the
// state machine does not allow returns an *IllegalTransitionError and
// leaves st unchanged; observations that do not apply to the current state
// (a late event from an earlier run) are ignored.
func Reduce(st Status, ev Event, now time.Time) (Status, []Action, error) {
	next := st
	var acts []Action
	to := func(s State, msg string) error { return next.Transition(s, msg, now) }
	refuse := func(want State) (Status, []Action, error) {
		return st, nil, &IllegalTransitionError{Slot: st.Name, From: st.State, To: want}
	}
	// bringIn starts what a load or swap needs from offline or error: a
	// pull when the model is missing, else the unit.
	bringIn := func(model string, installed bool) error {
		next.Target = model
		if !installed {
			acts = append(acts, Action{Kind: ActStartPull, Model: model})
			return to(Pulling, "pulling "+model)
		}
		next.ModelID = model
		acts = append(acts, Action{Kind: ActStartUnit, Model: model})
		return to(Starting, "starting "+model)
	}

	switch ev.Kind {
	case EvLoad, EvSwap:
		if ev.Model == "" {
			return st, nil, fmt.Errorf("slot %s: %s needs a model", st.Name, ev.Kind)
		}
		switch st.State {
		case Offline, Error:
			if err := bringIn(ev.Model, ev.Installed); err != nil {
				return st, nil, err
			}
		case Ready, Idle, Serving:
			if ev.Kind == EvLoad || ev.Model == st.ModelID {
				if ev.Model == st.ModelID {
					return st, nil, nil // already serving it
				}
				return refuse(Starting)
			}
			// Swap: unload first; the target is recorded, so the rest
			// follows from the unit going away, even across restarts.
			if st.State == Serving {
				if err := to(Idle, "swapping to "+ev.Model); err != nil {
					return st, nil, err
				}
			}
			next.Target = ev.Model
			acts = append(acts, Action{Kind: ActStopUnit})
			if err := to(Unloading, "unloading "+st.ModelID+" to swap to "+ev.Model); err != nil {
				return st, nil, err
			}
		case Pulling, Starting, Warming, Unloading:
			if ev.Model == st.Target {
				return st, nil, nil // the same request again: nothing new
			}
			return refuse(Starting)
		}
	case EvUnload:
		switch st.State {
		case Ready, Idle, Serving:
			if st.State == Serving {
				to(Idle, "unloading")
			}
			next.Target = ""
			acts = append(acts, Action{Kind: ActStopUnit})
			if err := to(Unloading, "unloading "+st.ModelID); err != nil {
				return st, nil, err
			}
		case Pulling, Starting, Warming, Error:
			// Abandon the load: Pulling/Starting/Warming/Error all allow
			// offline directly. A running pull finishes on its own.
			next.Target = ""
			if st.State != Pulling {
				acts = append(acts, Action{Kind: ActStopUnit})
			}
			if err := to(Offline, "unloaded"); err != nil {
				return st, nil, err
			}
		case Offline, Unloading:
			return st, nil, nil
		}
	case EvPullDone:
		if st.State != Pulling || ev.Model != st.Target {
			return st, nil, nil
		}
		next.ModelID = ev.Model
		acts = append(acts, Action{Kind: ActStartUnit, Model: ev.Model})
		to(Starting, "starting "+ev.Model)
	case EvPullFailed:
		if st.State != Pulling || ev.Model != st.Target {
			return st, nil, nil
		}
		to(Error, "pull of "+ev.Model+" failed: "+ev.Message)
	case EvUnitActive:
		if st.State != Starting {
			return st, nil, nil
		}
		acts = append(acts, Action{Kind: ActCheckHealth, Model: st.ModelID})
		to(Warming, "warming "+st.ModelID)
	case EvHealthy:
		if st.State != Warming {
			return st, nil, nil
		}
		next.Target = ""
		acts = append(acts, Action{Kind: ActIdleTimer})
		to(Ready, "serving "+st.ModelID)
	case EvUnhealthy:
		switch st.State {
		case Warming, Ready, Serving:
			acts = append(acts, Action{Kind: ActStopUnit})
			to(Error, ev.Message)
		}
	case EvIdle:
		if st.State == Ready {
			to(Idle, "idle")
		}
	case EvUnitGone:
		switch st.State {
		case Starting, Warming, Ready, Serving, Idle:
			// The backend went away without being asked to.
			to(Error, ev.Message)
		case Unloading:
			next.ModelID = ""
			to(Offline, "unloaded")
			if next.Target != "" {
				if err := bringIn(next.Target, ev.Installed); err != nil {
					return st, nil, err
				}
			}
		}
	default:
		return st, nil, fmt.Errorf("slot %s: unknown event %q", st.Name, ev.Kind)
	}
	return next, acts, nil
}
