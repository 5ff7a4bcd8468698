// Package hf talks to a Hugging Face hub (or a mirror of one): repo info at
// a revision, the recursive file tree, and ranged file downloads through
// the resolve endpoint and its CDN redirect.
//
// Two rules shape this package. First, redirects are followed by hand so
// that the Authorization header is only ever sent to the host the token was
// meant for: Go's client compares host names without ports and would hand a
// token to another server on the same address. Second, every error that
// comes from the hub is turned into an *api.Error whose code and message
// say what happened and what to do.
package hf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
)

// Client is a hub client for one endpoint.
type Client struct {
	Endpoint  string // e.g. https://huggingface.co, no trailing slash
	Token     config.Secret
	HTTP      *http.Client
	UserAgent string
}

// NewTransport returns the HTTP transport hal0 uses for hub traffic:
// identity encoding (a gzipped body would break sizes and ranges), HTTP/1.1
// so parallel ranges get parallel TCP connections, and bounded timeouts on
// everything except the body, which the stall watchdog guards instead.
func NewTransport(conns int) *http.Transport {
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          4 * conns,
		MaxIdleConnsPerHost:   2 * conns,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ReadBufferSize:        256 << 10,
		WriteBufferSize:       64 << 10,
	}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP1(true)
	return t
}

// NewHTTPClient returns a client that does not follow redirects by itself.
func NewHTTPClient(t http.RoundTripper) *http.Client {
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (c *Client) userAgent() string {
	if c.UserAgent != "" {
		return c.UserAgent
	}
	return "hal0-pull/1"
}

// sameOrigin reports whether two URLs share scheme, host and port: the
// only case in which the token may follow a redirect.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host)
}

// do sends a request, following up to 10 redirects by hand. The token is
// attached only while the URL's origin is the endpoint's.
func (c *Client) do(ctx context.Context, method, rawURL string, hdr http.Header, body func() io.Reader) (*http.Response, error) {
	ep, err := url.Parse(c.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("bad endpoint %q: %w", c.Endpoint, err)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	for hop := 0; hop < 10; hop++ {
		var rd io.Reader
		if body != nil {
			rd = body()
		}
		req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
		if err != nil {
			return nil, err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", c.userAgent())
		req.Header.Set("Accept-Encoding", "identity")
		if c.Token.IsSet() && sameOrigin(u, ep) {
			req.Header.Set("Authorization", "Bearer "+c.Token.Reveal())
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			return nil, err
		}
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		default:
			return resp, nil
		}
		loc := resp.Header.Get("Location")
		drain(resp)
		if loc == "" {
			return nil, api.Errorf(api.CodeBadResponse, 0, "%s %s: redirect %d without a Location header", method, redact(u), resp.StatusCode)
		}
		next, err := u.Parse(loc) // relative redirects (renamed repos, lenient mirrors) resolve against u
		if err != nil {
			return nil, api.Errorf(api.CodeBadResponse, 0, "%s %s: bad redirect Location: %v", method, redact(u), err)
		}
		if resp.StatusCode == http.StatusSeeOther {
			method, body = http.MethodGet, nil
		}
		u = next
	}
	return nil, api.Errorf(api.CodeBadResponse, 0, "%s %s: too many redirects", method, redact(u))
}

// redact drops the query string, where presigned CDN URLs carry their
// signatures; such URLs must not end up in logs either.
func redact(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	c.User = nil
	return c.String()
}

func drain(resp *http.Response) {
	io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
}

// getJSON fetches rawURL and decodes a JSON body into v, turning non-2xx
// answers into hub errors. It returns the response headers.
func (c *Client) getJSON(ctx context.Context, rawURL, repo string, v any) (http.Header, error) {
	resp, err := c.do(ctx, http.MethodGet, rawURL, http.Header{"Accept": {"application/json"}}, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, StatusError(resp, repo, c.Token.IsSet(), c.Endpoint)
	}
	// Metadata is small; a hub answering with gigabytes is broken.
	dec := json.NewDecoder(io.LimitReader(resp.Body, 256<<20))
	if err := dec.Decode(v); err != nil {
		return nil, api.Errorf(api.CodeBadResponse, 0, "%s answered %s with invalid JSON: %v", c.Endpoint, redactStr(rawURL), err)
	}
	return resp.Header, nil
}

func redactStr(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return redact(u)
}

// RetryAfter returns the server's Retry-After delay, or 0.
func RetryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// TransientError is a failure worth retrying: network trouble, 408, 429 and
// 5xx. After says how long the server asked us to wait, if it did.
type TransientError struct {
	Err   error
	After time.Duration
}

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// IsTransient reports whether err should be retried.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var te *TransientError
	if errors.As(err, &te) {
		return true
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	// Network errors, resets, unexpected EOFs and timeouts below the HTTP
	// layer are all worth another try.
	return true
}
