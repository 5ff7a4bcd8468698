// Package client talks to hal0-apid, the way the hal0 CLI and scripts
// written in Go do: over the unix socket by default (its file permissions
// are the access control, so no token is sent), or over TCP with the bearer
// token for a remote or containerised caller.
//
// Every method returns the API's own error as an *api.Error, with the
// stable code, the message and the HTTP status, so callers map it to an
// exit code without parsing text. When hal0-apid cannot be reached at all,
// the error is an *UnreachableError that says what to run.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/registry"
)

// unixHost is the Host of requests sent over the unix socket. The server
// does not look at it (the socket is trusted); it only has to be a valid
// name that cannot be confused with a real one.
const unixHost = "hal0"

// Client is a connection to hal0-apid. It is safe for concurrent use.
type Client struct {
	base   string // "http://hal0" for the socket, else the URL given
	where  string // the socket path or the URL, for messages
	socket string // "" for TCP
	token  config.Secret
	hc     *http.Client
}

// New returns a client for addr:
//
//   - "" — the unix socket from the configuration (paths.runtime_dir,
//     /run/hal0/api.sock by default, remapped by HAL0_HOME);
//   - "unix:/path" or "/path" — that unix socket;
//   - "http://host:port" or "https://host:port" — TCP, sending token as
//     a bearer token.
//
// The token is only ever sent over TCP: on the socket it would add nothing
// and could end up somewhere it should not if the socket were a proxy.
func New(addr string, token config.Secret) (*Client, error) {
	switch {
	case addr == "":
		cfg, err := config.Load()
		if err != nil {
			return nil, err
		}
		return newUnix(cfg.Paths.APISocket()), nil
	case strings.HasPrefix(addr, "unix:"):
		p := strings.TrimPrefix(addr, "unix:")
		if p == "" {
			return nil, fmt.Errorf("API address %q: the unix: form needs a socket path", addr)
		}
		return newUnix(p), nil
	case strings.HasPrefix(addr, "/"):
		return newUnix(addr), nil
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API address %q: want http://host:port, https://host:port, unix:/path or a socket path", addr)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("API address %q: a query, fragment or user name has no meaning here", addr)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	base := strings.TrimRight(u.String(), "/")
	return &Client{base: base, where: base, token: token, hc: &http.Client{Transport: tr}}, nil
}

func newUnix(path string) *Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:    4,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{base: "http://" + unixHost, where: path, socket: path, hc: &http.Client{Transport: tr}}
}

// Addr returns where the client connects: the socket path or the URL.
func (c *Client) Addr() string { return c.where }

// Unix reports whether the client uses the unix socket.
func (c *Client) Unix() bool { return c.socket != "" }

// Loopback reports whether hal0-apid runs on this machine: over the unix
// socket, or over TCP to a loopback address. Things that live beside the
// API, such as the journal, are only local to the caller then.
func (c *Client) Loopback() bool {
	if c.socket != "" {
		return true
	}
	u, err := url.Parse(c.base)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// UnreachableError means no connection to hal0-apid could be made: nothing
// listens on the socket or port, or the caller may not open it. Errors that
// happen after a connection was made are not this type.
type UnreachableError struct {
	Addr   string // socket path or URL
	Reason string // short, e.g. "no such socket"
	Err    error
}

func (e *UnreachableError) Error() string {
	if errors.Is(e.Err, syscall.EACCES) || errors.Is(e.Err, syscall.EPERM) {
		return fmt.Sprintf("cannot reach hal0-apid at %s (%s): run hal0 as root or as a member of the socket's group, or use `hal0 model pull --local`", e.Addr, e.Reason)
	}
	return fmt.Sprintf("cannot reach hal0-apid at %s (%s): start it with `systemctl enable --now hal0-apid.socket`, or use `hal0 model pull --local`", e.Addr, e.Reason)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// unreachable recognises a failed dial in err.
func (c *Client) unreachable(err error) error {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return err
	}
	reason := op.Err.Error()
	switch {
	case errors.Is(err, syscall.ENOENT):
		reason = "no such socket"
	case errors.Is(err, syscall.ECONNREFUSED):
		reason = "connection refused"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		reason = "permission denied"
	case errors.Is(err, context.DeadlineExceeded):
		reason = "timed out"
	}
	return &UnreachableError{Addr: c.where, Reason: reason, Err: err}
}

// modelPath is /api/models/{id}{suffix}. Ids contain "/" (org/name), which
// is escaped as %2F so that an id can never be mistaken for a route suffix.
func modelPath(id, suffix string) string {
	return "/api/models/" + url.PathEscape(id) + suffix
}

// do sends one request and returns the response when its status is 2xx;
// any other status becomes the *api.Error the server sent.
func (c *Client) do(ctx context.Context, method, path string, body any, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	if c.socket == "" && c.token.IsSet() {
		req.Header.Set("Authorization", "Bearer "+c.token.Reveal())
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.unreachable(err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// decodeError turns a non-2xx reply into an *api.Error. A reply without
// the envelope (a proxy's HTML page, a truncated body) still gets a code
// that matches its status, so exit codes stay meaningful.
func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var env api.Envelope
	if err := json.Unmarshal(b, &env); err == nil && env.Error != nil && env.Error.Code != "" {
		env.Error.Status = resp.StatusCode
		return env.Error
	}
	code := api.CodeInternal
	switch resp.StatusCode {
	case http.StatusBadRequest:
		code = api.CodeBadRequest
	case http.StatusUnauthorized:
		code = api.CodeUnauthorized
	case http.StatusForbidden:
		code = api.CodeForbidden
	case http.StatusNotFound:
		code = api.CodeNotFound
	case http.StatusConflict:
		code = api.CodeConflict
	}
	text := strings.TrimSpace(string(b))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	msg := "hal0-apid answered " + resp.Status
	if text != "" {
		msg += ": " + text
	}
	return &api.Error{Code: code, Status: resp.StatusCode, Message: msg}
}

// call sends a request and decodes the JSON reply into out.
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: bad reply from hal0-apid: %w", method, path, err)
	}
	return nil
}

// Health is GET /api/health.
func (c *Client) Health(ctx context.Context) (*api.Health, error) {
	var h api.Health
	return &h, c.call(ctx, http.MethodGet, "/api/health", nil, &h)
}

// Version is GET /api/version.
func (c *Client) Version(ctx context.Context) (*api.Version, error) {
	var v api.Version
	return &v, c.call(ctx, http.MethodGet, "/api/version", nil, &v)
}

// Models lists installed models.
func (c *Client) Models(ctx context.Context) ([]*registry.Model, error) {
	var ms []*registry.Model
	return ms, c.call(ctx, http.MethodGet, "/api/models", nil, &ms)
}

// Model returns one installed model; its id may be any spelling of the ref.
func (c *Client) Model(ctx context.Context, id string) (*registry.Model, error) {
	var m registry.Model
	if err := c.call(ctx, http.MethodGet, modelPath(id, ""), nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// DeleteModel removes a model and returns the entry it had. The API refuses
// (api.CodeConflict) while a pull of it runs.
func (c *Client) DeleteModel(ctx context.Context, id string) (*registry.Model, error) {
	var m registry.Model
	if err := c.call(ctx, http.MethodDelete, modelPath(id, ""), nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Pull starts a pull of id, or returns the one already running
// (PullStatus.Existing). The status's ModelID is the canonical id, with
// req.Quant and req.Revision folded in: follow that one.
func (c *Client) Pull(ctx context.Context, id string, req api.PullRequest) (*api.PullStatus, error) {
	var st api.PullStatus
	if err := c.call(ctx, http.MethodPost, modelPath(id, "/pull"), req, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// PullStatus returns the newest pull job of id.
func (c *Client) PullStatus(ctx context.Context, id string) (*api.PullStatus, error) {
	var st api.PullStatus
	if err := c.call(ctx, http.MethodGet, modelPath(id, "/pull/status"), nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// CancelPull asks the pull of id to stop and returns its status once the
// runner has acted. Cancelling a finished job returns it unchanged.
func (c *Client) CancelPull(ctx context.Context, id string) (*api.PullStatus, error) {
	var st api.PullStatus
	if err := c.call(ctx, http.MethodPost, modelPath(id, "/pull/cancel"), nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Pulls lists pull jobs, newest first.
func (c *Client) Pulls(ctx context.Context) ([]*api.PullStatus, error) {
	var out []*api.PullStatus
	return out, c.call(ctx, http.MethodGet, "/api/pulls", nil, &out)
}

// ErrStreamEnded is returned by Events when the stream closed before the
// job reached a final state (hal0-apid restarted, a proxy cut it). The
// pull itself goes on: call Events again to keep following it.
var ErrStreamEnded = errors.New("the event stream of hal0-apid ended before the pull finished")

// maxEvent bounds one event's data; a status is well under 4 KiB.
const maxEvent = 1 << 20

// Events follows the pull of id: fn receives the current status at once
// and then every change, and Events returns nil after fn has seen the
// final state. It returns fn's error if fn fails, ctx's error when ctx
// ends, and ErrStreamEnded (wrapped) when the stream stops early.
func (c *Client) Events(ctx context.Context, id string, fn func(*api.PullStatus) error) error {
	return c.follow(ctx, modelPath(id, "/pull/events"), "event stream", "status", ErrStreamEnded, func(data []byte) error {
		var st api.PullStatus
		if err := json.Unmarshal(data, &st); err != nil {
			return fmt.Errorf("bad status event from hal0-apid: %w", err)
		}
		if err := fn(&st); err != nil {
			return err
		}
		if st.Final() {
			return errFollowDone
		}
		return nil
	})
}

// errFollowDone, from follow's fn, ends the stream without an error.
var errFollowDone = errors.New("done following")

// follow reads the server-sent event stream at path (what names it in
// errors) and calls fn with the data of each event called name. It
// returns nil once fn returns errFollowDone, fn's other errors as they
// are, ctx's error when ctx ends, and ended (wrapped) when the stream
// stops first.
func (c *Client) follow(ctx context.Context, path, what, name string, ended error, fn func(data []byte) error) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, "text/event-stream")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return fmt.Errorf("hal0-apid answered the %s with %q, not text/event-stream", what, ct)
	}
	// Closing the body is what unblocks a read when ctx ends; the request
	// context does that too, but only once the transport notices.
	stop := context.AfterFunc(ctx, func() { resp.Body.Close() })
	defer stop()

	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 16<<10), maxEvent)
	var event string
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			// A blank line dispatches the event gathered so far.
			if event == name && len(data) > 0 {
				if err := fn(data); err != nil {
					if errors.Is(err, errFollowDone) {
						return nil
					}
					return err
				}
			}
			event, data = "", data[:0]
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // comment: the server's keep-alive
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			event = value
		case "data":
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, value...)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: %v", ended, err)
	}
	return ended
}
