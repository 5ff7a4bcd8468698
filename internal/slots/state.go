// Package slots holds what a hal0 slot is: its configuration
// (/etc/hal0/slots/<name>.toml), its state machine, and its persisted state
// (/var/lib/hal0/slots/<name>/state.json). It is pure apart from file I/O:
// hal0-slotd drives it from systemd unit states.
package slots

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hal0ai/hal0/internal/fsutil"
)

// State is a slot's lifecycle state; the wire value is the lower-case
// name, as in the Python hal0.
type State string

const (
	Offline   State = "offline"
	Pulling   State = "pulling"
	Starting  State = "starting"
	Warming   State = "warming"
	Ready     State = "ready"
	Serving   State = "serving"
	Idle      State = "idle"
	Unloading State = "unloading"
	Error     State = "error"
)

// States lists every state in lifecycle order.
var States = []State{Offline, Pulling, Starting, Warming, Ready, Serving, Idle, Unloading, Error}

// legal is the transition table of the Python hal0 (slots/state.py);
// anything else is refused with 409.
var legal = map[State][]State{
	Offline:   {Pulling, Starting},
	Pulling:   {Starting, Error, Offline},
	Starting:  {Warming, Error, Offline},
	Warming:   {Ready, Idle, Error, Offline},
	Ready:     {Serving, Idle, Unloading, Error},
	Serving:   {Ready, Idle, Error},
	Idle:      {Serving, Unloading, Ready},
	Unloading: {Offline, Error},
	Error:     {Offline, Pulling, Starting},
}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	_, ok := legal[s]
	return ok
}

// CanTransition reports whether from → to is legal. Staying in the same
// state is always allowed (it only updates the message).
func CanTransition(from, to State) bool {
	if from == to {
		return from.Valid()
	}
	for _, t := range legal[from] {
		if t == to {
			return true
		}
	}
	return false
}

// IllegalTransitionError is a refused transition; the API answers 409 with
// the current state.
type IllegalTransitionError struct {
	Slot     string
	From, To State
}

func (e *IllegalTransitionError) Error() string {
	return fmt.Sprintf("slot %s is %s and cannot go to %s (allowed from %s: %v)", e.Slot, e.From, e.To, e.From, legal[e.From])
}

// Status is the persisted state of a slot, the Python hal0's state.json
// fields plus the pull job a pulling slot waits for.
type Status struct {
	Name    string `json:"name"`
	State   State  `json:"state"`
	ModelID string `json:"model_id,omitempty"`
	// Target is the model a swap or load is bringing in; it is recorded
	// before anything happens so that a crash of any daemon mid-swap
	// resumes it.
	Target    string         `json:"target,omitempty"`
	Port      int            `json:"port,omitempty"`
	UpdatedAt float64        `json:"updated_at"` // epoch seconds, as the Python hal0 writes it
	Message   string         `json:"message,omitempty"`
	Extra     map[string]any `json:"extra,omitempty"`
}

// Transition moves st to `to` with a message, or refuses.
func (st *Status) Transition(to State, msg string, now time.Time) error {
	if !CanTransition(st.State, to) {
		return &IllegalTransitionError{Slot: st.Name, From: st.State, To: to}
	}
	st.State, st.Message = to, msg
	st.UpdatedAt = float64(now.UnixNano()) / 1e9
	return nil
}

// StatePath is where a slot's state lives under the state dir.
func StatePath(stateDir, name string) string {
	return filepath.Join(stateDir, "slots", name, "state.json")
}

// LoadStatus reads a slot's state. A missing file is an offline slot; a
// malformed one is an error naming the file, never silently reset.
func LoadStatus(path, name string) (*Status, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Status{Name: name, State: Offline}, nil
	}
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("slot state %s is malformed: %v; fix or remove it", path, err)
	}
	if !st.State.Valid() {
		return nil, fmt.Errorf("slot state %s has unknown state %q", path, st.State)
	}
	if st.Name == "" {
		st.Name = name
	}
	return &st, nil
}

// SaveStatus writes a slot's state atomically.
func SaveStatus(path string, st *Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFile(path, append(b, '\n'), 0o644)
}
