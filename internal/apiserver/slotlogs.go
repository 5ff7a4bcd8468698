package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/journal"
	"github.com/hal0ai/hal0/internal/unitname"
)

// LogReader reads a unit's journal; internal/journal runs journalctl.
type LogReader interface {
	Tail(ctx context.Context, q journal.Query) ([]journal.Entry, error)
	Follow(ctx context.Context, q journal.Query, fn func(journal.Entry) error) error
}

func (s *Server) logReader() LogReader {
	if s.Journal != nil {
		return s.Journal
	}
	return &journal.Reader{Dir: s.Cfg.API.JournalDir}
}

// slotLogs answers GET /api/slots/{name}/logs: the newest lines of the
// slot's unit (?lines=, default 200), or those after a cursor (?after=).
// With ?follow=1 it is an event stream of "log" events that stays open.
func (s *Server) slotLogs(w http.ResponseWriter, r *http.Request) {
	c, err := s.slotConfig(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	q := journal.Query{Lines: 200, After: r.URL.Query().Get("after")}
	if v := r.URL.Query().Get("lines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeErr(w, api.Errorf(api.CodeBadRequest, http.StatusBadRequest, "lines=%q: give a number from 1 to 10000", v))
			return
		}
		q.Lines = n
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		// An EventSource that reconnects says where it stopped, which is
		// later than the ?after= it first connected with.
		q.After = id
	}
	q.Unit = unitname.Instance(SlotTemplate, c.Slot.Name)
	jr := s.logReader()
	if r.URL.Query().Get("follow") == "" {
		entries, err := jr.Tail(r.Context(), q)
		if err != nil {
			writeErr(w, logsError(q.Unit, err))
			return
		}
		if entries == nil {
			entries = []journal.Entry{}
		}
		writeJSON(w, http.StatusOK, api.SlotLogs{Unit: q.Unit, Entries: entries})
		return
	}
	s.followLogs(w, r, jr, q)
}

func (s *Server) followLogs(w http.ResponseWriter, r *http.Request, jr LogReader, q journal.Query) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	entries := make(chan journal.Entry, 64)
	done := make(chan error, 1)
	go func() {
		done <- jr.Follow(ctx, q, func(e journal.Entry) error {
			select {
			case entries <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	// The stream is committed (200 and headers) at the first entry, or
	// after a moment for a quiet unit: until then a journal that cannot be
	// read is still answered with the error envelope.
	open := time.NewTimer(300 * time.Millisecond)
	defer open.Stop()
	rc := http.NewResponseController(w)
	started := false
	start := func() {
		if !started {
			started = true
			startEventStream(w)
		}
	}
	for {
		select {
		case e := <-entries:
			start()
			b, err := json.Marshal(e)
			if err != nil {
				return
			}
			if err := writeEvent(w, rc, e.Cursor, "log", b); err != nil {
				return
			}
			if len(entries) == 0 {
				rc.Flush()
			}
		case <-open.C:
			start()
			rc.Flush()
		case err := <-done:
			if err != nil && !started {
				writeErr(w, logsError(q.Unit, err))
			} else if err != nil && ctx.Err() == nil {
				s.logf("slot logs of %s: %v", q.Unit, err)
			}
			return
		case <-s.closing:
			return // shutting down; the client reconnects with its last id
		case <-ctx.Done():
			return
		}
	}
}

func logsError(unit string, err error) error {
	if errors.Is(err, journal.ErrUnavailable) {
		return api.Errorf(api.CodeLogsUnavailable, http.StatusServiceUnavailable, "logs of %s: %v", unit, err)
	}
	return api.Errorf(api.CodeInternal, http.StatusInternalServerError, "logs of %s: %v", unit, err)
}
