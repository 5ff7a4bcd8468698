package api

import "time"

// Slot states as they appear on the wire (the Python hal0's names; the
// state machine itself lives in internal/slots, which this package must
// not import).
const (
	SlotOffline   = "offline"
	SlotPulling   = "pulling"
	SlotStarting  = "starting"
	SlotWarming   = "warming"
	SlotReady     = "ready"
	SlotServing   = "serving"
	SlotIdle      = "idle"
	SlotUnloading = "unloading"
	SlotError     = "error"
)

// Slot is a slot as GET /api/slots and its event stream report it: the
// summary of /etc/hal0/slots/<name>.toml merged with the state hal0-slotd
// records in /var/lib/hal0/slots/<name>/state.json.
type Slot struct {
	// From the configuration.
	Name         string `json:"name"`
	Port         int    `json:"port"`
	Backend      string `json:"backend"` // llama-server or flm
	DefaultModel string `json:"default_model,omitempty"`
	Enabled      bool   `json:"enabled"`
	Role         string `json:"role,omitempty"`
	Unit         string `json:"unit"` // hal0-slot@<name>.service

	// From state.json; a slot that never ran is offline.
	State   string `json:"state"`
	ModelID string `json:"model_id,omitempty"`
	// Target is the model a load or swap is bringing in.
	Target    string         `json:"target,omitempty"`
	Message   string         `json:"message,omitempty"`
	UpdatedAt float64        `json:"updated_at"` // epoch seconds, as the Python hal0 writes it
	Extra     map[string]any `json:"extra,omitempty"`
	// StateError says why state.json could not be read; State is
	// "unknown" then. Only a hand-edited or foreign file gets here, since
	// hal0-slotd writes it atomically.
	StateError string `json:"state_error,omitempty"`

	// Pending is the request hal0-apid recorded that hal0-slotd has not
	// taken up yet (its id is not the one state.json says was taken).
	Pending *SlotRequest `json:"pending,omitempty"`
	// LastRequest is what hal0-slotd did with the last request it took up
	// (extra.request in state.json).
	LastRequest *SlotRequestOutcome `json:"last_request,omitempty"`
	// Pull is the progress of the pull a pulling slot waits for: from the
	// job record of its target, else as hal0-slotd last copied it.
	Pull *SlotPull `json:"pull,omitempty"`
}

// Loaded reports whether the slot has a model up (ready, serving or idle).
func (s *Slot) Loaded() bool {
	return s.State == SlotReady || s.State == SlotServing || s.State == SlotIdle
}

// Settled reports whether the slot rests: no request waits for hal0-slotd
// and the state is one that only a new request or a failure changes.
func (s *Slot) Settled() bool {
	return s.Pending == nil && (s.Loaded() || s.State == SlotOffline || s.State == SlotError)
}

// SlotRequest is a load, swap or unload waiting in
// /var/lib/hal0/slots/<name>/request.json.
type SlotRequest struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"` // load, swap or unload
	Model     string    `json:"model,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// SlotRequestOutcome is hal0-slotd's record of a request it took up.
type SlotRequestOutcome struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Model   string `json:"model,omitempty"`
	Outcome string `json:"outcome"` // applied or refused
	// Error says why a request was refused: the slot's state had changed
	// since hal0-apid checked it, or the model cannot be served.
	Error string    `json:"error,omitempty"`
	At    time.Time `json:"at"`
}

// Refused reports whether hal0-slotd refused the request with id.
func (s *Slot) Refused(id string) bool {
	return s.LastRequest != nil && s.LastRequest.ID == id && s.LastRequest.Outcome == "refused"
}

// SlotPull is the part of a pull job a slot view carries.
type SlotPull struct {
	JobID      string   `json:"job_id"`
	State      string   `json:"state"`
	BytesTotal int64    `json:"bytes_total"`
	BytesDone  int64    `json:"bytes_done"`
	RateBPS    float64  `json:"rate_bps"`
	ETAS       *float64 `json:"eta_s"`
	Error      string   `json:"error,omitempty"`
}

// SlotActionRequest is the body of POST /api/slots/{name}/swap and /load
// (model optional for load: the slot's default).
type SlotActionRequest struct {
	Model string `json:"model,omitempty"`
	// ModelID is the Python hal0's name for Model; it is accepted so
	// that callers written for it keep working.
	ModelID string `json:"model_id,omitempty"`
}

// SlotAccepted is the 202 reply to a load, swap or unload: the slot as it
// is now, plus the request recorded for hal0-slotd.
type SlotAccepted struct {
	Slot
	RequestID string `json:"request_id"`
	Kind      string `json:"kind"`
	// Model is the canonical spelling of the model asked for.
	Model string `json:"model,omitempty"`
	// Next is the state the request leads to from the current one, as the
	// state machine predicts it; equal to State when there is nothing to
	// do (the model is already served). hal0-slotd has the last word.
	Next string `json:"next"`
}

// LogEntry is one line of a slot unit's journal.
type LogEntry struct {
	Time     time.Time `json:"time"`
	Priority int       `json:"priority"` // syslog level: 3 error, 4 warning, 6 info, 7 debug
	PID      int       `json:"pid,omitempty"`
	Message  string    `json:"message"`
	// Cursor continues after this entry (?after=).
	Cursor string `json:"cursor"`
}

// SlotLogs answers GET /api/slots/{name}/logs.
type SlotLogs struct {
	Unit    string     `json:"unit"`
	Entries []LogEntry `json:"entries"`
}
