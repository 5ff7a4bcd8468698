// Package apitest is the client tests use to speak to a running hal0-apid
// over its REST API, on the unix socket or on TCP, the way the CLI and the
// dashboard do. It is shared by the tests of internal/apid (the daemon
// under systemd and as a plain process) and internal/torture, so that both
// send the same requests, escape paths the same way and read the event
// stream with the same parser.
//
// The methods fail the test (t.Fatal) on anything unexpected; Send is the
// one that returns errors instead, for goroutines other than the test's.
package apitest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
)

// Client speaks to hal0-apid over one transport. Every request uses a new
// connection: hal0-apid may exit when idle between two requests, and a
// kept-alive connection would die with it (the CLI makes one request per
// connection too).
type Client struct {
	t    testing.TB
	base string
	dial func(context.Context) (net.Conn, error)
	hc   *http.Client
	// stream reads event streams: it has no Timeout, which in an
	// http.Client also covers reading the body; WaitPull's limit bounds
	// the stream instead.
	stream *http.Client
}

// requestTimeout bounds one ordinary request, body included.
const requestTimeout = 60 * time.Second

// New returns a client for the API at base (such as "http://hal0" or
// "http://127.0.0.1:8080"). dial, when not nil, makes every connection
// (a unix socket, say), whatever host base names; when nil, connections
// go over TCP to base's host.
func New(t testing.TB, base string, dial func(context.Context) (net.Conn, error)) *Client {
	t.Helper()
	if dial == nil {
		u, err := url.Parse(base)
		if err != nil || u.Host == "" {
			t.Fatalf("apitest: base URL %q: want http://HOST:PORT (%v)", base, err)
		}
		dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", u.Host)
		}
	}
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &Client{
		t:      t,
		base:   base,
		dial:   dial,
		hc:     &http.Client{Transport: tr, Timeout: requestTimeout},
		stream: &http.Client{Transport: tr},
	}
}

// Unix returns a client for hal0-apid's unix socket at sock.
func Unix(t testing.TB, sock string) *Client {
	return New(t, "http://hal0", func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	})
}

// TCP returns a client for hal0-apid's TCP listener at addr (HOST:PORT),
// as the dashboard reaches it.
func TCP(t testing.TB, addr string) *Client {
	return New(t, "http://"+addr, nil)
}

// ModelPath is the API path of a model id plus suffix ("", "/pull",
// "/pull/status", ...), the id escaped as one path segment the way the
// CLI escapes it: demo/m:Q4_K_M is demo%2Fm:Q4_K_M.
func ModelPath(id, suffix string) string {
	return "/api/models/" + url.PathEscape(id) + suffix
}

// WaitListening waits until the client's listener accepts a connection:
// hal0-apid run as a plain process binds before it answers, and nothing
// announces that to another process. It fails the test when exited is
// closed first (with log(), the daemon's output) or after limit.
func (c *Client) WaitListening(exited <-chan struct{}, limit time.Duration, log func() string) {
	c.t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(5 * time.Millisecond) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		conn, err := c.dial(ctx)
		cancel()
		if err == nil {
			conn.Close()
			return
		}
		select {
		case <-exited:
			c.t.Fatalf("hal0-apid exited:\n%s", log())
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("hal0-apid not listening after %v (%v):\n%s", limit, err, log())
		}
	}
}

// Send sends a request with an optional body and headers ("Host" sets the
// Host of the request, not a header) and returns the status and body. It
// returns errors rather than failing the test: use it off the test's
// goroutine and in cleanups that must go on.
func (c *Client) Send(ctx context.Context, method, path string, body io.Reader, hdr map[string]string) (int, []byte, error) {
	r, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		if k == "Host" {
			r.Host = v
		} else {
			r.Header.Set(k, v)
		}
	}
	resp, err := c.hc.Do(r)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, b, fmt.Errorf("%s %s: reading body: %w", method, path, err)
	}
	return resp.StatusCode, b, nil
}

// Request is Send for the test's goroutine: it fails the test when the
// request gets no complete answer.
func (c *Client) Request(method, path string, body io.Reader, hdr map[string]string) (int, []byte) {
	c.t.Helper()
	code, b, err := c.Send(context.Background(), method, path, body, hdr)
	if err != nil {
		c.t.Fatal(err)
	}
	return code, b
}

// Do sends a request without a body and returns the status and body.
func (c *Client) Do(method, path string) (int, []byte) {
	c.t.Helper()
	return c.Request(method, path, nil, nil)
}

// DoAuth is Do with a bearer token, when not empty.
func (c *Client) DoAuth(method, path, token string) (int, []byte) {
	c.t.Helper()
	var hdr map[string]string
	if token != "" {
		hdr = map[string]string{"Authorization": "Bearer " + token}
	}
	return c.Request(method, path, nil, hdr)
}

// Call sends a request without a body, checks the status and decodes the
// JSON answer into v, unless v is nil.
func (c *Client) Call(method, path string, want int, v any) {
	c.t.Helper()
	code, b := c.Do(method, path)
	if code != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// Pull asks for a pull of id; hal0-apid answers 202 Accepted.
func (c *Client) Pull(id string) *api.PullStatus {
	c.t.Helper()
	var st api.PullStatus
	c.Call(http.MethodPost, ModelPath(id, "/pull"), http.StatusAccepted, &st)
	return &st
}

// Status returns the state of id's current pull.
func (c *Client) Status(id string) *api.PullStatus {
	c.t.Helper()
	var st api.PullStatus
	c.Call(http.MethodGet, ModelPath(id, "/pull/status"), http.StatusOK, &st)
	return &st
}

// Cancel cancels id's pull and returns its final state.
func (c *Client) Cancel(id string) *api.PullStatus {
	c.t.Helper()
	var st api.PullStatus
	c.Call(http.MethodPost, ModelPath(id, "/pull/cancel"), http.StatusOK, &st)
	return &st
}

// Pulls lists every pull hal0-apid knows (GET /api/pulls).
func (c *Client) Pulls() []api.PullStatus {
	c.t.Helper()
	var out []api.PullStatus
	c.Call(http.MethodGet, "/api/pulls", http.StatusOK, &out)
	return out
}

// WaitPull follows the event stream of id's pull until cond holds, for at
// most limit, and returns the status that met it and the raw stream up to
// it. The stream ends by itself with the final state, so a pull that ends
// otherwise fails the test at once instead of at a timeout; what names the
// awaited state in that message. The open stream also counts as a request
// in flight: hal0-apid cannot exit on idle meanwhile.
func (c *Client) WaitPull(id, what string, limit time.Duration, cond func(*api.PullStatus) bool) (*api.PullStatus, string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+ModelPath(id, "/pull/events"), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		c.t.Fatalf("events of %s: %v", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		c.t.Fatalf("events of %s: status %d: %s", id, resp.StatusCode, b)
	}
	var raw strings.Builder
	var last api.PullStatus
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		raw.WriteString(line)
		if err != nil {
			c.t.Fatalf("waiting for %s to be %s: stream ended (%v); last status %+v", id, what, err, last)
		}
		data, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "data: ")
		if !ok {
			continue
		}
		var st api.PullStatus
		if err := json.Unmarshal([]byte(data), &st); err != nil {
			c.t.Fatalf("event %q: %v", data, err)
		}
		if cond(&st) {
			return &st, raw.String()
		}
		last = st
	}
}
