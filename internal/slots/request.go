package slots

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hal0ai/hal0/internal/fsutil"
)

// Request is what hal0-apid asks of a slot. It is written durably to
// /var/lib/hal0/slots/<name>/request.json before hal0-slotd is told, so a
// crash of either daemon mid-swap loses nothing: hal0-slotd applies the
// request when it next starts, and records the ID it applied in the slot's
// status (extra.request_id) so that it applies each request once.
type Request struct {
	ID        string    `json:"id"`
	Kind      EventKind `json:"kind"` // EvLoad, EvSwap or EvUnload
	Model     string    `json:"model,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// RequestPath is where a slot's pending request lives.
func RequestPath(stateDir, name string) string {
	return filepath.Join(stateDir, "slots", name, "request.json")
}

// NewRequestID returns a fresh id.
func NewRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// WriteRequest stores r atomically, replacing any earlier request: the
// newest request wins, as a person pressing Swap twice expects.
func WriteRequest(path string, r *Request) error {
	switch r.Kind {
	case EvLoad, EvSwap, EvUnload:
	default:
		return fmt.Errorf("slot request kind %q: want load, swap or unload", r.Kind)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadRequest reads a pending request; (nil, nil) when there is none.
func ReadRequest(path string) (*Request, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Request
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("slot request %s is malformed: %v", path, err)
	}
	return &r, nil
}
