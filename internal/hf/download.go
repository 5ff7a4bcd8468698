package hf

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/hal0ai/hal0/internal/api"
)

// ResolveURL is the download URL of path at commit.
func (c *Client) ResolveURL(repo, commit, path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return fmt.Sprintf("%s/%s/resolve/%s/%s", c.Endpoint, repo, url.PathEscape(commit), strings.Join(segs, "/"))
}

// HeaderPullThrough marks a response that a hal0 box streams from a pull
// of its own (pull-through): bytes arrive as the box downloads them from
// its upstream, the last byte only once the whole file verified, and the
// box cuts the connection if its pull fails. Silence on such a response
// is the box's upstream being slow, not the connection being dead, so a
// downloader should not restart it after its usual stall timeout.
const HeaderPullThrough = "X-Hal0-Pull-Through"

// Range asks for bytes [Start, End] of a file; End < 0 means to the end.
type Range struct{ Start, End int64 }

// Body is an open download. Exactly one of Partial (a 206 for the range
// asked) or Full (a 200 with the whole file from byte 0, because the server
// ignored Range) is true. Length is -1 when the server sent no length.
type Body struct {
	Resp    *http.Response
	Partial bool
	Full    bool
	Start   int64 // offset of the first body byte in the file
	Length  int64
	Total   int64 // file size from Content-Range, or -1
	// URL is where the bytes came from after redirects. Reusing it for
	// further ranges skips the hub hop; it expires, and then Open is called
	// with the resolve URL again.
	URL string
}

// Open requests r of the file at rawURL (a resolve URL or a CDN URL
// returned by an earlier Open) and validates the answer. A 403/404/410
// from a CDN URL means the presigned URL expired: the caller goes back to
// the resolve URL.
func (c *Client) Open(ctx context.Context, rawURL, repo string, r Range) (*Body, error) {
	hdr := http.Header{}
	if r.Start > 0 || r.End >= 0 {
		if r.End >= 0 {
			hdr.Set("Range", fmt.Sprintf("bytes=%d-%d", r.Start, r.End))
		} else {
			hdr.Set("Range", fmt.Sprintf("bytes=%d-", r.Start))
		}
	}
	resp, err := c.do(ctx, http.MethodGet, rawURL, hdr, nil)
	if err != nil {
		return nil, err
	}
	b := &Body{Resp: resp, Length: resp.ContentLength, Total: -1, URL: resp.Request.URL.String()}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, end, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || start != r.Start || (r.End >= 0 && end != r.End) {
			resp.Body.Close()
			return nil, &TransientError{Err: api.Errorf(api.CodeBadResponse, 0, "server answered range %d-%d with Content-Range %q", r.Start, r.End, resp.Header.Get("Content-Range"))}
		}
		if b.Length >= 0 && b.Length != end-start+1 {
			resp.Body.Close()
			return nil, &TransientError{Err: api.Errorf(api.CodeBadResponse, 0, "Content-Length %d disagrees with Content-Range %q", b.Length, resp.Header.Get("Content-Range"))}
		}
		b.Partial, b.Start, b.Total, b.Length = true, start, total, end-start+1
		return b, nil
	case http.StatusOK:
		b.Full = true
		return b, nil
	case http.StatusRequestedRangeNotSatisfiable:
		resp.Body.Close()
		return nil, api.Errorf(api.CodeBadResponse, 0, "server refused range %d-%d (416): the file is shorter than the hub's listing says", r.Start, r.End)
	}
	defer resp.Body.Close()
	if ep, err := url.Parse(c.Endpoint); err == nil && !sameOrigin(resp.Request.URL, ep) {
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusGone:
			// A storage host refusing a presigned URL means the URL
			// expired or was revoked; the hub hands out a fresh one.
			return nil, fmt.Errorf("%w: %s answered %d", ErrURLExpired, resp.Request.URL.Host, resp.StatusCode)
		}
	}
	return nil, StatusError(resp, repo, c.Token.IsSet(), c.Endpoint)
}

// ErrURLExpired reports that a CDN refused a presigned download URL.
var ErrURLExpired = errors.New("download URL expired or revoked")

func parseContentRange(v string) (start, end, total int64, err error) {
	bad := fmt.Errorf("bad Content-Range %q", v)
	rest, ok := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, bad
	}
	s, e, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	if start, err = strconv.ParseInt(s, 10, 64); err != nil {
		return 0, 0, 0, bad
	}
	if end, err = strconv.ParseInt(e, 10, 64); err != nil || end < start {
		return 0, 0, 0, bad
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= end {
			return 0, 0, 0, bad
		}
	}
	return start, end, total, nil
}
