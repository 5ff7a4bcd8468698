// Package health tells whether an inference backend listening on loopback
// is ready to serve, the way each backend says so:
//
//   - llama-server answers GET /health with 503 while it loads the model
//     and 200 once it can serve;
//   - FLM (flm serve) needs a non-empty GET /v1/models and a one-token
//     POST /v1/chat/completions that returns choices (the Python hal0's
//     FLMProvider.health: the model list alone appears before the NPU is
//     usable).
//
// Wait polls a Checker the way llama-swap waits for its upstreams: a short
// delay after the process started, then once a second until a deadline,
// abandoning at once when its context ends (hal0-slotd cancels it as soon
// as the slot unit goes away). HTTP health has no event to wait for, so
// this is the one deliberate polling loop in hal0-slotd.
package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Backend names, as in slot configs ([slot] backend).
const (
	LlamaServer = "llama-server"
	FLM         = "flm"
)

// Defaults for Wait; the timeout matches the Python hal0's 180 s.
const (
	DefaultInitialDelay = 250 * time.Millisecond
	DefaultInterval     = time.Second
	DefaultTimeout      = 180 * time.Second

	// probeTimeout bounds one health request: a backend that does not
	// answer within it is not healthy yet.
	probeTimeout = 5 * time.Second
	// completionTimeout bounds FLM's sentinel completion, which runs the
	// model once (the Python hal0 allows 30 s of read time).
	completionTimeout = 30 * time.Second
)

// Checker probes a backend once.
type Checker interface {
	// Check returns nil when the backend is ready, else why not.
	Check(ctx context.Context) error
}

// New returns the checker for backend ("llama-server" or "flm") on
// baseURL (http://127.0.0.1:PORT). path overrides the backend's default
// health path (/health, or /v1/models for flm). client nil means a client
// of its own that never uses a proxy: the backend is on loopback, and an
// HTTP_PROXY in the environment must not reroute the probe.
func New(backend, baseURL, path string, client *http.Client) (Checker, error) {
	if client == nil {
		client = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	}
	baseURL = strings.TrimRight(baseURL, "/")
	switch backend {
	case LlamaServer:
		if path == "" {
			path = "/health"
		}
		return &llamaServer{url: baseURL + path, client: client}, nil
	case FLM:
		if path == "" {
			path = "/v1/models"
		}
		return &flm{base: baseURL, models: baseURL + path, client: client}, nil
	}
	return nil, fmt.Errorf("health: unknown backend %q (want llama-server or flm)", backend)
}

type llamaServer struct {
	url    string
	client *http.Client
}

func (c *llamaServer) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := do(ctx, c.client, http.MethodGet, c.url, nil)
	return err
}

type flm struct {
	base, models string
	client       *http.Client
}

func (c *flm) Check(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	body, err := do(pctx, c.client, http.MethodGet, c.models, nil)
	if err != nil {
		return err
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("GET %s: not a model list: %v", c.models, err)
	}
	if len(list.Data) == 0 || list.Data[0].ID == "" {
		return fmt.Errorf("GET %s: no model loaded yet", c.models)
	}
	req, _ := json.Marshal(map[string]any{
		"model":      list.Data[0].ID,
		"messages":   []map[string]string{{"role": "user", "content": "hi"}},
		"max_tokens": 1,
		"stream":     false,
	})
	cctx, cancel2 := context.WithTimeout(ctx, completionTimeout)
	defer cancel2()
	url := c.base + "/v1/chat/completions"
	body, err = do(cctx, c.client, http.MethodPost, url, req)
	if err != nil {
		return err
	}
	var out struct {
		Choices []json.RawMessage `json:"choices"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("POST %s: not a completion: %v", url, err)
	}
	if len(out.Choices) == 0 {
		return fmt.Errorf("POST %s: the completion has no choices", url)
	}
	return nil
}

// do sends one request and returns the body of a 200, or an error naming
// the request and, for other statuses, the start of the body (llama-server
// says "Loading model" there).
func do(ctx context.Context, client *http.Client, method, url string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, unwrapURLError(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.Join(strings.Fields(string(b)), " ")
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		if msg != "" {
			msg = ": " + msg
		}
		return nil, fmt.Errorf("%s %s: %s%s", method, url, resp.Status, msg)
	}
	return b, nil
}

// unwrapURLError drops *url.Error's repetition of the method and URL,
// which our message already names.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Options tune Wait; zero values take the defaults.
type Options struct {
	// InitialDelay is waited before the first probe: a process that has
	// just been started cannot answer yet.
	InitialDelay time.Duration
	// Interval is the pause between probes.
	Interval time.Duration
	// Timeout is how long the backend has to become healthy, counted from
	// the call.
	Timeout time.Duration
}

// TimeoutError is a backend that did not become healthy in time.
type TimeoutError struct {
	Timeout time.Duration
	Last    error // the last probe's failure
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("not healthy after %v (last probe: %v)", e.Timeout, e.Last)
}

func (e *TimeoutError) Unwrap() error { return e.Last }

// Wait probes c until it answers healthy (nil), the timeout passes
// (*TimeoutError), or ctx ends (context.Cause(ctx)).
func Wait(ctx context.Context, c Checker, o Options) error {
	if o.InitialDelay <= 0 {
		o.InitialDelay = DefaultInitialDelay
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	deadline := time.NewTimer(o.Timeout)
	defer deadline.Stop()
	// Probes stop at the deadline too, so a backend that hangs on a
	// request cannot stretch the timeout.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pause := time.NewTimer(o.InitialDelay)
	defer pause.Stop()
	last := errors.New("no probe finished")
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-deadline.C:
			return &TimeoutError{Timeout: o.Timeout, Last: last}
		case <-pause.C:
		}
		done := make(chan error, 1)
		go func() { done <- c.Check(pctx) }()
		select {
		case err := <-done:
			if err == nil {
				return nil
			}
			last = err
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-deadline.C:
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				last = err
			}
			return &TimeoutError{Timeout: o.Timeout, Last: last}
		}
		pause.Reset(o.Interval)
	}
}
