package slotd

import (
	"encoding/json"
	"maps"
	"time"

	"github.com/hal0ai/hal0/internal/slots"
)

// Keys hal0-slotd keeps in a slot's status.Extra (state.json "extra"),
// read by hal0-apid and the dashboard.
const (
	// ExtraRequestID is the id of the last request.json taken up, applied
	// or refused: each request is acted on once (slots.Request).
	ExtraRequestID = "request_id"
	// ExtraRequest is a RequestOutcome: what became of that request.
	ExtraRequest = "request"
	// ExtraPull is a PullProgress, present while the slot is pulling.
	ExtraPull = "pull"
	// ExtraInvocation is the systemd invocation id of the slot unit's run
	// the slot follows (warming and after), as in journalctl
	// _SYSTEMD_INVOCATION_ID=….
	ExtraInvocation = "invocation_id"
	// ExtraReplaces is, while starting, the invocation id of the unit's
	// previous run: its late or repeated reports are not the new run's.
	ExtraReplaces = "replaces_invocation"
)

// RequestOutcome records what hal0-slotd did with a request.
type RequestOutcome struct {
	ID    string          `json:"id"`
	Kind  slots.EventKind `json:"kind"`
	Model string          `json:"model,omitempty"`
	// Outcome is "applied" or "refused"; Error says why it was refused
	// (an illegal transition in the state the slot had by then, or a
	// model that cannot be served).
	Outcome string    `json:"outcome"`
	Error   string    `json:"error,omitempty"`
	At      time.Time `json:"at"`
}

// PullProgress is the pull a slot waits for, copied from its job record
// and its unit whenever the unit reports (hal0-pull sends STATUS= every
// second).
type PullProgress struct {
	JobID      string  `json:"job_id"`
	Unit       string  `json:"unit"`
	State      string  `json:"state,omitempty"` // the job's: queued, running, …
	Phase      string  `json:"phase,omitempty"` // resolving, downloading, verifying, installing
	BytesDone  int64   `json:"bytes_done"`
	BytesTotal int64   `json:"bytes_total"`
	FilesDone  int     `json:"files_done"`
	FilesTotal int     `json:"files_total"`
	RateBPS    float64 `json:"rate_bps"`
	Status     string  `json:"status,omitempty"` // the pull unit's STATUS= line
}

// withExtra returns st with a copy of its Extra map to change: the
// reducer's results share the map with their input.
func withExtra(st slots.Status) slots.Status {
	st.Extra = maps.Clone(st.Extra)
	if st.Extra == nil {
		st.Extra = map[string]any{}
	}
	return st
}

func extraString(st *slots.Status, key string) string {
	s, _ := st.Extra[key].(string)
	return s
}

// pullProgress reads ExtraPull, which is a PullProgress when set here and
// a decoded JSON object after a restart.
func pullProgress(st *slots.Status) (PullProgress, bool) {
	var p PullProgress
	v, ok := st.Extra[ExtraPull]
	if !ok {
		return p, false
	}
	if pp, ok := v.(PullProgress); ok {
		return pp, true
	}
	b, err := json.Marshal(v)
	if err != nil || json.Unmarshal(b, &p) != nil {
		return p, false
	}
	return p, p.JobID != ""
}
