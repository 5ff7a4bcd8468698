package hubtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Fault changes how the hub or the CDN answers requests for a file. Faults
// are checked in insertion order; the first one that matches a request and
// has budget left fires (one fault per request; combine fields in one Fault
// for combined effects).
//
// A fault only matches requests it can affect, so Times is not wasted:
//   - Status faults match any file request (hub resolve/raw, CDN; GET and HEAD),
//     and API requests when Where is "api".
//   - DeadCDN matches only hub resolve requests of LFS files (the 302).
//   - The body faults (DropAfter, CorruptAt, StallAt, IgnoreRange,
//     NoContentLength, WrongContentLength) match only GET requests whose
//     response carries file bytes: hub resolve of regular files, raw, and CDN.
type Fault struct {
	Repo   string // repo id to match; "" = any
	Path   string // repo file path to match; "" = any file
	Where  string // "hub", "cdn", "" (both) or "api" (the /api/ routes, Status faults only)
	Method string // "GET", "HEAD" or "" (both)
	Times  int    // how many requests it fires for; 0 = unlimited

	Status     int    // answer this status instead (429, 500, 503, ...)
	RetryAfter int    // Retry-After seconds sent with Status (and a RateLimit header on 429)
	ErrorCode  string // X-Error-Code sent with Status

	// The int64 fields below are disabled when 0; use Zero for a real 0.
	DropAfter int64 // send this many body bytes, then close the connection (the client sees an unexpected EOF)
	CorruptAt int64 // flip the byte at this absolute file offset if it is part of the response
	StallAt   int64 // after this many body bytes stop sending for StallFor (0: until the client or the hub gives up, or ReleaseStalls)
	StallFor  time.Duration
	// Hold, with StallAt, keeps the stall until Hold is closed (or the
	// client or the hub gives up) instead of StallFor: a test holds a
	// download at a known byte, checks what happens meanwhile, and lets
	// it go on. Held, if set, is closed when a response reaches the stall.
	Hold <-chan struct{}
	Held chan<- struct{}
	// Throttle sends the body at this many bytes per second (per
	// response), like a link slower than the client's disk.
	Throttle int64

	IgnoreRange        bool  // answer a Range request with 200 and the full body
	NoContentLength    bool  // chunked transfer encoding, no Content-Length
	WrongContentLength int64 // declare this Content-Length but send the real body, then close (a lying server)
	DeadCDN            bool  // the resolve 302 points at a closed port
}

func (f *Fault) bodyShaping() bool {
	return f.DropAfter != 0 || f.CorruptAt != 0 || f.StallAt != 0 || f.IgnoreRange || f.NoContentLength || f.WrongContentLength != 0 || f.Throttle > 0
}

// shapesBytes reports whether the bytes must go through the slow path.
func (f *Fault) shapesBytes() bool {
	return f != nil && (f.DropAfter != 0 || f.CorruptAt != 0 || f.StallAt != 0 || f.Throttle > 0)
}

func (f Fault) String() string {
	var parts []string
	add := func(name string, v any, on bool) {
		if on {
			parts = append(parts, fmt.Sprintf("%s=%v", name, v))
		}
	}
	add("repo", f.Repo, f.Repo != "")
	add("path", f.Path, f.Path != "")
	add("where", f.Where, f.Where != "")
	add("method", f.Method, f.Method != "")
	add("status", f.Status, f.Status != 0)
	add("retryAfter", f.RetryAfter, f.RetryAfter != 0)
	add("errorCode", f.ErrorCode, f.ErrorCode != "")
	add("dropAfter", f.DropAfter, f.DropAfter != 0)
	add("corruptAt", f.CorruptAt, f.CorruptAt != 0)
	add("stallAt", f.StallAt, f.StallAt != 0)
	add("stallFor", f.StallFor, f.StallFor != 0)
	add("hold", true, f.Hold != nil)
	add("throttle", f.Throttle, f.Throttle > 0)
	add("ignoreRange", true, f.IgnoreRange)
	add("noContentLength", true, f.NoContentLength)
	add("wrongContentLength", f.WrongContentLength, f.WrongContentLength != 0)
	add("deadCDN", true, f.DeadCDN)
	return strings.Join(parts, " ")
}

type faultState struct {
	f    Fault
	left int // remaining fires; -1 = unlimited
}

// request kinds, for fault matching
type reqKind int

const (
	kindContent  reqKind = iota // the response carries file bytes
	kindRedirect                // LFS resolve: 302 to the CDN
	kindAPI                     // /api/ routes
)

// AddFault appends a fault.
func (h *Hub) AddFault(f Fault) {
	left := f.Times
	if left <= 0 {
		left = -1
	}
	h.fmu.Lock()
	h.faults = append(h.faults, &faultState{f: f, left: left})
	h.fmu.Unlock()
}

// ClearFaults removes all faults.
func (h *Hub) ClearFaults() {
	h.fmu.Lock()
	h.faults = nil
	h.fmu.Unlock()
}

// takeFault returns the first matching fault with budget left, consuming
// one use of it, and records it on the request. Matching and the countdown
// happen under one lock, so concurrent requests never overspend Times.
func (h *Hub) takeFault(w *rec, where string, kind reqKind, method, repo, path string) *Fault {
	h.fmu.Lock()
	var hit *Fault
	for _, fs := range h.faults {
		f := &fs.f
		if fs.left == 0 ||
			f.Repo != "" && f.Repo != repo ||
			f.Method != "" && f.Method != method {
			continue
		}
		if kind == kindAPI {
			if f.Where != "api" || f.Status == 0 || f.Path != "" {
				continue
			}
		} else {
			if f.Where != "" && f.Where != where || f.Path != "" && f.Path != path {
				continue
			}
			switch {
			case f.Status != 0:
			case f.DeadCDN:
				if kind != kindRedirect {
					continue
				}
			case f.bodyShaping():
				if kind != kindContent || method != http.MethodGet {
					continue
				}
			default:
				continue // an empty fault does nothing
			}
		}
		if fs.left > 0 {
			fs.left--
		}
		c := *f
		hit = &c
		break
	}
	h.fmu.Unlock()
	if hit != nil {
		h.smu.Lock()
		h.stats.FaultsFired++
		w.req.Fault = hit.String()
		h.smu.Unlock()
	}
	return hit
}

// answerStatus answers an injected Status fault in the Hub's error format.
func (h *Hub) answerStatus(w *rec, f *Fault) {
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
	if f.Status == http.StatusTooManyRequests {
		// IETF draft rate limit headers, as the Hub sends them.
		w.Header().Set("RateLimit", fmt.Sprintf(`"resolvers";r=0;t=%d`, max(f.RetryAfter, 1)))
		w.Header().Set("RateLimit-Policy", `"fixed window";"resolvers";q=3000;w=300`)
	}
	msg := fmt.Sprintf("hubtest: injected %d %s", f.Status, http.StatusText(f.Status))
	h.hfError(w, f.Status, f.ErrorCode, msg)
}

// at decodes the "0 = off, Zero = 0" convention.
func at(v int64) (int64, bool) {
	switch {
	case v == 0:
		return 0, false
	case v == Zero:
		return 0, true
	default:
		return v, v > 0
	}
}

// writeShaped sends bytes [start, start+length) of src to dst in chunks,
// applying the fault's corruption, stall and drop. It reports dropped=true
// when the connection must now be closed.
func (h *Hub) writeShaped(ctx context.Context, dst io.Writer, flush func() error, src source, start, length int64, f *Fault) (dropped bool, err error) {
	var ff Fault
	if f != nil {
		ff = *f
	}
	drop, dropOn := at(ff.DropAfter)
	stall, stallOn := at(ff.StallAt)
	corrupt, corruptOn := at(ff.CorruptAt)

	var ra io.ReaderAt
	if src.disk != "" {
		fh, err := os.Open(src.disk)
		if err != nil {
			return false, err
		}
		defer fh.Close()
		ra = fh
	} else {
		ra = bytes.NewReader(src.data)
	}
	piece := int64(256 << 10)
	var began time.Time
	if ff.Throttle > 0 {
		// Pieces of about 10 ms each keep the pace even.
		piece, began = max(ff.Throttle/100, 1024), time.Now()
	}
	buf := make([]byte, min(piece, max(length, 1)))
	var sent int64
	for {
		if ff.Throttle > 0 && sent > 0 {
			due := began.Add(time.Duration(float64(sent) / float64(ff.Throttle) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				if err := flush(); err != nil {
					return false, err
				}
				if err := h.stall(ctx, d); err != nil {
					return false, err
				}
			}
		}
		if stallOn && sent == stall {
			stallOn = false
			if err := flush(); err != nil {
				return false, err
			}
			if ff.Held != nil {
				h.heldOnce(ff.Held)
			}
			if err := h.stallHold(ctx, ff.StallFor, ff.Hold); err != nil {
				return false, err
			}
		}
		if dropOn && sent == drop {
			return true, flush()
		}
		if sent >= length {
			return false, nil
		}
		n := min(int64(len(buf)), length-sent)
		if stallOn && stall > sent {
			n = min(n, stall-sent)
		}
		if dropOn && drop > sent {
			n = min(n, drop-sent)
		}
		pos := start + sent
		if m, err := ra.ReadAt(buf[:n], pos); int64(m) < n {
			return false, fmt.Errorf("reading content at %d: %w", pos, err)
		}
		if corruptOn && corrupt >= pos && corrupt < pos+n {
			buf[corrupt-pos] ^= 0xff
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return false, err
		}
		sent += n
	}
}

// stallHold is stall, or with hold != nil waits for hold to close.
func (h *Hub) stallHold(ctx context.Context, d time.Duration, hold <-chan struct{}) error {
	if hold == nil {
		return h.stall(ctx, d)
	}
	select {
	case <-hold:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-h.done:
		return errClosed
	}
}

// heldOnce closes a Held channel once, however many responses stall on it.
func (h *Hub) heldOnce(c chan<- struct{}) {
	h.fmu.Lock()
	defer h.fmu.Unlock()
	if h.held == nil {
		h.held = map[chan<- struct{}]bool{}
	}
	if !h.held[c] {
		h.held[c] = true
		close(c)
	}
}

// ReleaseStalls ends every stall in progress at once: the stalled
// responses go on sending their bytes. Later stalls still happen while
// their fault is in place (ClearFaults removes it first).
func (h *Hub) ReleaseStalls() {
	h.fmu.Lock()
	if h.release != nil {
		close(h.release)
	}
	h.release = make(chan struct{})
	h.fmu.Unlock()
}

// stall blocks for d (or, for d <= 0, until the request or the hub ends,
// or ReleaseStalls).
func (h *Hub) stall(ctx context.Context, d time.Duration) error {
	h.fmu.Lock()
	if h.release == nil {
		h.release = make(chan struct{})
	}
	release := h.release
	h.fmu.Unlock()
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return nil
	case <-release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-h.done:
		return errClosed
	}
}

// dropConn closes the connection under a response whose body is unfinished:
// everything written so far is flushed first, so the client receives exactly
// the counted bytes, then sees EOF before Content-Length (or the last chunk).
func dropConn(w *rec) {
	rc := http.NewResponseController(w.ResponseWriter)
	_ = rc.Flush()
	conn, _, err := rc.Hijack()
	if err != nil {
		// Not hijackable: make net/http abort the connection instead.
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

// serveLying takes over the connection to send a response whose declared
// Content-Length differs from the body (net/http refuses to), then closes.
func (h *Hub) serveLying(w *rec, r *http.Request, status int, src source, start, length int64, f *Fault) {
	declared, _ := at(f.WrongContentLength)
	conn, bw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		h.hfError(w, http.StatusInternalServerError, "", "hubtest: cannot hijack: "+err.Error())
		return
	}
	defer conn.Close()
	w.wrote = true
	h.setStatus(w.req, status)
	hdr := w.Header().Clone()
	hdr.Set("Content-Length", strconv.FormatInt(declared, 10))
	hdr.Del("Transfer-Encoding")
	hdr.Set("Connection", "close")
	hdr.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	_ = hdr.Write(bw)
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil || w.head {
		return
	}
	// The body goes straight to the socket so the byte count is exact.
	cw := &countingWriter{w: conn, rec: w}
	_, _ = h.writeShaped(r.Context(), cw, func() error { return nil }, src, start, length, f)
}

// countingWriter counts bytes written around rec (used after a hijack).
type countingWriter struct {
	w   io.Writer
	rec *rec
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.rec.count(int64(len(p)))
	n, err := c.w.Write(p)
	c.rec.count(int64(n - len(p)))
	return n, err
}
