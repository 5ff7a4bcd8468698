package apiserver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// Server-sent event streams: pull status, slot state and followed slot
// logs. Every write has a deadline, so a client that stopped reading is
// dropped instead of holding a handler (and its file reads) forever.
const eventWriteTimeout = 30 * time.Second

// eventKeepAlive, when set (nanoseconds), replaces the 15 s an event
// stream stays silent before a comment goes out to keep proxies from
// closing it. Tests set it so as not to wait; it is atomic because the
// handlers of an earlier test's server may still be reading it.
var eventKeepAlive atomic.Int64

func keepAliveEvery() time.Duration {
	if d := time.Duration(eventKeepAlive.Load()); d > 0 {
		return d
	}
	return 15 * time.Second
}

// startEventStream sends the 200 and headers of a server-sent event
// stream: not cached, and not buffered by a proxy in front of hal0-apid.
func startEventStream(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

// writeEvent writes one event (id may be empty) without flushing.
func writeEvent(w http.ResponseWriter, rc *http.ResponseController, id, event string, data []byte) error {
	rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
	if id != "" {
		_, err := fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", id, event, data)
		return err
	}
	_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
	return err
}

// A poller reports the current state of what a stream follows: key is
// what counts as a change (the event goes out when it differs from the
// last one sent), data is the event's payload. final sends the event (if
// changed) and ends the stream; ok=false ends it without sending.
type poller func(ctx context.Context) (key, data []byte, final, ok bool)

// pollEvents streams poll's answers as events named event: at once, then
// whenever the answer changes (polled every EventInterval), a comment
// after a silence of keepAliveEvery, until poll says so, the client
// leaves, or the server shuts down (clients reconnect to the next
// hal0-apid).
func (s *Server) pollEvents(w http.ResponseWriter, r *http.Request, event string, poll poller) {
	rc := http.NewResponseController(w)
	startEventStream(w)
	interval := s.EventInterval
	if interval == 0 {
		interval = 250 * time.Millisecond
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	keepAlive := keepAliveEvery()
	ctx := r.Context()
	var last []byte
	lastWrite := time.Now()
	for {
		key, data, final, ok := poll(ctx)
		if !ok {
			return
		}
		switch {
		case last == nil || !bytes.Equal(key, last):
			if err := writeEvent(w, rc, "", event, data); err != nil {
				return
			}
			rc.Flush()
			last, lastWrite = key, time.Now()
		case time.Since(lastWrite) >= keepAlive:
			rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			rc.Flush()
			lastWrite = time.Now()
		}
		if final {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		}
	}
}
