package catalog

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/hf"
)

// maxPause caps how long one rate-limit answer can hold the indexer.
const maxPause = 10 * time.Minute

// gate is the indexer's HTTP transport. Every answer is read for the
// hub's rate-limit signals (a 429, Retry-After, and the IETF draft
// RateLimit header `"api";r=0;t=55`); while the hub asked for a pause, no
// request of any worker goes out. Retrying alone would not do: with
// several workers, each would spend the hub's patience on its own.
type gate struct {
	next http.RoundTripper
	logf func(format string, a ...any)

	mu    sync.Mutex
	until time.Time
}

func (g *gate) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := g.wait(req.Context()); err != nil {
		return nil, err
	}
	resp, err := g.next.RoundTrip(req)
	if err == nil {
		g.observe(resp)
	}
	return resp, err
}

func (g *gate) wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		d := time.Until(g.until)
		g.mu.Unlock()
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func (g *gate) observe(resp *http.Response) {
	d := pauseFor(resp.StatusCode, resp.Header)
	if d <= 0 {
		return
	}
	until := time.Now().Add(min(d, maxPause))
	g.mu.Lock()
	longer := until.After(g.until)
	if longer {
		g.until = until
	}
	g.mu.Unlock()
	if longer && g.logf != nil {
		g.logf("%s asks to slow down (%d): pausing requests for %v", resp.Request.URL.Host, resp.StatusCode, d.Round(time.Millisecond))
	}
}

// pauseFor is how long the hub asked to wait after an answer: for a 429,
// the longer of Retry-After and the RateLimit reset (at least a second);
// for any answer that spent the window's last request (r=0), the reset.
func pauseFor(status int, h http.Header) time.Duration {
	remaining, reset, ok := rateLimit(h)
	if status == http.StatusTooManyRequests {
		d := hf.RetryAfter(h)
		if ok && reset > d {
			d = reset
		}
		return max(d, time.Second)
	}
	if ok && remaining == 0 {
		return reset
	}
	return 0
}

// rateLimit parses `RateLimit: "api";r=0;t=55` (r remaining requests, t
// seconds until the window resets). Several comma-separated policies may
// appear; the most restrictive one counts.
func rateLimit(h http.Header) (remaining int, reset time.Duration, ok bool) {
	remaining = -1
	for _, v := range h.Values("RateLimit") {
		for _, item := range strings.Split(v, ",") {
			r, t := -1, -1
			for _, p := range strings.Split(item, ";") {
				k, val, found := strings.Cut(strings.TrimSpace(p), "=")
				if !found {
					continue
				}
				n, err := strconv.Atoi(strings.TrimSpace(val))
				if err != nil || n < 0 {
					continue
				}
				switch k {
				case "r":
					r = n
				case "t":
					t = n
				}
			}
			if r < 0 || t < 0 {
				continue
			}
			if !ok || r < remaining || (r == remaining && time.Duration(t)*time.Second > reset) {
				remaining, reset, ok = r, time.Duration(t)*time.Second, true
			}
		}
	}
	return remaining, reset, ok
}

// retry runs fn until it succeeds, fails definitely, or has failed
// MaxRetries times in a row with transient errors (network, 408, 429,
// 5xx). Waits grow exponentially with jitter; the gate adds whatever the
// hub asked for on top.
func retry[T any](ctx context.Context, ix *Indexer, what string, fn func() (T, error)) (T, error) {
	var zero T
	for n := 1; ; n++ {
		v, err := fn()
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		if !hf.IsTransient(err) || n >= ix.maxRetries() {
			var te *hf.TransientError
			var ae *api.Error
			if errors.As(err, &te) && errors.As(te.Err, &ae) {
				return zero, ae
			}
			if hf.IsTransient(err) && !errors.As(err, &ae) {
				return zero, api.Errorf(api.CodeNetwork, 0, "%s: %v (gave up after %d attempts)", what, err, n)
			}
			return zero, err
		}
		wait := ix.backoff(n)
		var te *hf.TransientError
		if errors.As(err, &te) && te.After > wait {
			wait = min(te.After, maxPause)
		}
		ix.logf("%s: %v; retrying in %v", what, err, wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return zero, ctx.Err()
		}
	}
}

func (ix *Indexer) maxRetries() int {
	if ix.MaxRetries > 0 {
		return ix.MaxRetries
	}
	return 8
}

func (ix *Indexer) backoff(n int) time.Duration {
	base, ceil := ix.BackoffBase, ix.BackoffMax
	if base <= 0 {
		base = 500 * time.Millisecond
	}
	if ceil <= 0 {
		ceil = 30 * time.Second
	}
	d := base << min(n-1, 16)
	if d > ceil || d <= 0 {
		d = ceil
	}
	return d/2 + time.Duration(rand.Int64N(int64(d)/2+1))
}
