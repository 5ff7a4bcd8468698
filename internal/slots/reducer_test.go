package slots

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func acts(as []Action) string {
	var out []string
	for _, a := range as {
		s := string(a.Kind)
		if a.Model != "" {
			s += "(" + a.Model + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

// step is one event and what must follow from it.
type step struct {
	ev      Event
	state   State
	actions string
	illegal bool
}

func run(t *testing.T, start Status, steps []step) Status {
	t.Helper()
	st := start
	now := time.Unix(1700000000, 0)
	for i, s := range steps {
		next, as, err := Reduce(st, s.ev, now)
		var ie *IllegalTransitionError
		if s.illegal {
			if !errors.As(err, &ie) || next.State != st.State || len(as) != 0 {
				t.Fatalf("step %d %s: want an illegal-transition refusal leaving %s, got %v %s %q", i, s.ev.Kind, st.State, err, next.State, acts(as))
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d %s from %s: %v", i, s.ev.Kind, st.State, err)
		}
		if next.State != s.state || acts(as) != s.actions {
			t.Fatalf("step %d %s from %s: got %s [%s], want %s [%s]", i, s.ev.Kind, st.State, next.State, acts(as), s.state, s.actions)
		}
		st = next
	}
	return st
}

func TestReduceScenarios(t *testing.T) {
	const m, n = "org/m:Q4_K_M", "qwen3:4b"
	off := Status{Name: "primary", State: Offline}
	ready := Status{Name: "primary", State: Ready, ModelID: m}
	for _, tc := range []struct {
		name  string
		start Status
		steps []step
	}{
		{"swap that pulls, then warms", off, []step{
			{ev: Event{Kind: EvSwap, Model: m}, state: Pulling, actions: "start-pull(" + m + ")"},
			{ev: Event{Kind: EvUnitActive}, state: Pulling},               // a stray unit event changes nothing
			{ev: Event{Kind: EvPullDone, Model: "other"}, state: Pulling}, // another model's pull
			{ev: Event{Kind: EvPullDone, Model: m}, state: Starting, actions: "start-unit(" + m + ")"},
			{ev: Event{Kind: EvUnitActive}, state: Warming, actions: "check-health(" + m + ")"},
			{ev: Event{Kind: EvHealthy}, state: Ready, actions: "idle-timer"},
			{ev: Event{Kind: EvIdle}, state: Idle},
		}},
		{"load an installed model", off, []step{
			{ev: Event{Kind: EvLoad, Model: m, Installed: true}, state: Starting, actions: "start-unit(" + m + ")"},
			{ev: Event{Kind: EvLoad, Model: m, Installed: true}, state: Starting}, // the same request again
		}},
		{"swap a ready slot to an installed model", ready, []step{
			{ev: Event{Kind: EvSwap, Model: n, Installed: true}, state: Unloading, actions: "stop-unit"},
			{ev: Event{Kind: EvSwap, Model: "third"}, illegal: true},
			{ev: Event{Kind: EvUnitGone, Installed: true}, state: Starting, actions: "start-unit(" + n + ")"},
			{ev: Event{Kind: EvUnitActive}, state: Warming, actions: "check-health(" + n + ")"},
			{ev: Event{Kind: EvHealthy}, state: Ready, actions: "idle-timer"},
		}},
		{"swap from idle to a model that must be pulled", Status{Name: "primary", State: Idle, ModelID: m}, []step{
			{ev: Event{Kind: EvSwap, Model: n}, state: Unloading, actions: "stop-unit"},
			{ev: Event{Kind: EvUnitGone}, state: Pulling, actions: "start-pull(" + n + ")"},
		}},
		{"backend crashes while warming", off, []step{
			{ev: Event{Kind: EvLoad, Model: m, Installed: true}, state: Starting, actions: "start-unit(" + m + ")"},
			{ev: Event{Kind: EvUnitActive}, state: Warming, actions: "check-health(" + m + ")"},
			{ev: Event{Kind: EvUnitGone, Message: "hal0-slot@primary.service exited with status 1"}, state: Error},
			{ev: Event{Kind: EvLoad, Model: m, Installed: true}, state: Starting, actions: "start-unit(" + m + ")"},
		}},
		{"backend never gets healthy", off, []step{
			{ev: Event{Kind: EvLoad, Model: m, Installed: true}, state: Starting, actions: "start-unit(" + m + ")"},
			{ev: Event{Kind: EvUnitActive}, state: Warming, actions: "check-health(" + m + ")"},
			{ev: Event{Kind: EvUnhealthy, Message: "no /health 200 within 3m0s"}, state: Error, actions: "stop-unit"},
		}},
		{"pull fails", off, []step{
			{ev: Event{Kind: EvSwap, Model: m}, state: Pulling, actions: "start-pull(" + m + ")"},
			{ev: Event{Kind: EvPullFailed, Model: m, Message: "gated"}, state: Error},
			{ev: Event{Kind: EvUnload}, state: Offline, actions: "stop-unit"},
		}},
		{"unload a ready slot", ready, []step{
			{ev: Event{Kind: EvUnload}, state: Unloading, actions: "stop-unit"},
			{ev: Event{Kind: EvUnload}, state: Unloading},
			{ev: Event{Kind: EvUnitGone}, state: Offline},
			{ev: Event{Kind: EvUnload}, state: Offline},
		}},
		{"unload while pulling", off, []step{
			{ev: Event{Kind: EvSwap, Model: m}, state: Pulling, actions: "start-pull(" + m + ")"},
			{ev: Event{Kind: EvUnload}, state: Offline},
			{ev: Event{Kind: EvPullDone, Model: m}, state: Offline}, // the abandoned pull ends later
		}},
		{"illegal requests", ready, []step{
			{ev: Event{Kind: EvLoad, Model: n}, illegal: true}, // load over another model: use swap
			{ev: Event{Kind: EvLoad, Model: m}, state: Ready},  // already serving it
			{ev: Event{Kind: EvSwap, Model: m}, state: Ready},  // swap to the same model: nothing to do
			{ev: Event{Kind: EvSwap, Model: n}, state: Unloading, actions: "stop-unit"},
			{ev: Event{Kind: EvLoad, Model: "third"}, illegal: true}, // busy unloading
		}},
		{"late events are ignored", off, []step{
			{ev: Event{Kind: EvHealthy}, state: Offline},
			{ev: Event{Kind: EvUnitGone}, state: Offline},
			{ev: Event{Kind: EvIdle}, state: Offline},
			{ev: Event{Kind: EvUnhealthy}, state: Offline},
		}},
		{"a ready backend that dies", ready, []step{
			{ev: Event{Kind: EvUnitGone, Message: "killed by signal 9"}, state: Error},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { run(t, tc.start, tc.steps) })
	}
}

// TestReduceNeverBreaksTheTable drives every event from every state: any
// state change Reduce makes must be a legal transition (or a chain of
// them), and requests it refuses must leave the status untouched.
func TestReduceNeverBreaksTheTable(t *testing.T) {
	kinds := []EventKind{EvLoad, EvSwap, EvUnload, EvPullDone, EvPullFailed, EvUnitActive, EvUnitGone, EvHealthy, EvUnhealthy, EvIdle}
	for _, from := range States {
		for _, k := range kinds {
			for _, inst := range []bool{false, true} {
				st := Status{Name: "s", State: from, ModelID: "a", Target: "b"}
				next, _, err := Reduce(st, Event{Kind: k, Model: "b", Installed: inst}, time.Unix(0, 0))
				if err != nil {
					var ie *IllegalTransitionError
					if !errors.As(err, &ie) || fmt.Sprint(next) != fmt.Sprint(st) {
						t.Errorf("%s + %s: %v, status changed to %+v", from, k, err, next)
					}
					continue
				}
				if !next.State.Valid() {
					t.Errorf("%s + %s: invalid state %q", from, k, next.State)
				}
			}
		}
	}
	if _, _, err := Reduce(Status{State: Offline}, Event{Kind: "bogus"}, time.Unix(0, 0)); err == nil {
		t.Error("unknown event accepted")
	}
	if _, _, err := Reduce(Status{State: Offline}, Event{Kind: EvSwap}, time.Unix(0, 0)); err == nil {
		t.Error("swap without a model accepted")
	}
}
