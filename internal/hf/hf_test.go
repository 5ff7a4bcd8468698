package hf

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
)

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in              string
		start, end, tot int64
		ok              bool
	}{
		{"bytes 0-99/100", 0, 99, 100, true},
		{"bytes 1000000-1000099/77691713", 1000000, 1000099, 77691713, true},
		{"bytes 5-9/*", 5, 9, -1, true},
		{"bytes 9-5/100", 0, 0, 0, false},
		{"bytes 0-99/99", 0, 0, 0, false},
		{"items 0-1/2", 0, 0, 0, false},
		{"bytes x-1/2", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	} {
		s, e, tot, err := parseContentRange(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (s != tc.start || e != tc.end || tot != tc.tot)) {
			t.Errorf("%q: %d %d %d %v", tc.in, s, e, tot, err)
		}
	}
}

func TestNextLink(t *testing.T) {
	h := http.Header{}
	h.Add("Link", `<https://hub/api/models/a/b/tree/main?cursor=xyz>; rel="next"`)
	if got, _ := nextLink(h, "https://hub/api/models/a/b/tree/main"); got != "https://hub/api/models/a/b/tree/main?cursor=xyz" {
		t.Errorf("got %q", got)
	}
	rel := http.Header{"Link": {`</api/x?cursor=2>; rel="next", </api/x?cursor=0>; rel="prev"`}}
	if got, _ := nextLink(rel, "http://m:1/api/x?cursor=1"); got != "http://m:1/api/x?cursor=2" {
		t.Errorf("relative: %q", got)
	}
	if got, _ := nextLink(http.Header{}, "x"); got != "" {
		t.Errorf("no link: %q", got)
	}
	if _, err := nextLink(http.Header{"Link": {`broken; rel="next"`}}, "x"); err == nil {
		t.Error("malformed link accepted")
	}
}

func TestStatusErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		status    int
		code, msg string
		token     bool
		want      string
		transient bool
	}{
		{401, "GatedRepo", "", false, api.CodeGated, false},
		{403, "GatedRepo", "not in the authorized list", true, api.CodeGated, false},
		{404, "RepoNotFound", "", true, api.CodeRepoNotFound, false},
		{401, "", "", false, api.CodeRepoNotFound, false},
		{401, "", "Invalid credentials in Authorization header", true, api.CodeAuth, false},
		{404, "RevisionNotFound", "Invalid rev id: x", false, api.CodeRevisionNotFound, false},
		{404, "EntryNotFound", "", false, api.CodeEntryNotFound, false},
		{403, "", "Access to this resource is disabled.", true, api.CodeHubForbidden, false},
		{429, "", "", false, api.CodeRateLimited, true},
		{503, "", "", false, "", true},
		{408, "", "", false, "", true},
		{418, "", "", false, api.CodeBadResponse, false},
	} {
		resp := &http.Response{StatusCode: tc.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"error":"from body"}`))}
		if tc.code != "" {
			resp.Header.Set("X-Error-Code", tc.code)
		}
		if tc.msg != "" {
			resp.Header.Set("X-Error-Message", tc.msg)
		}
		err := StatusError(resp, "org/name", tc.token, "https://hub")
		if IsTransient(err) != tc.transient {
			t.Errorf("%d %s: transient = %v", tc.status, tc.code, !tc.transient)
		}
		if tc.want != "" && api.CodeOf(err) != tc.want {
			t.Errorf("%d %s: code %s, want %s (%v)", tc.status, tc.code, api.CodeOf(err), tc.want, err)
		}
	}
}

// TestTokenStaysWithItsHost follows a redirect to another port of the same
// address: Go's client would forward Authorization there (it compares host
// names without ports); hal0 must not.
func TestTokenStaysWithItsHost(t *testing.T) {
	var cdnAuth, hubAuth string
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cdnAuth = r.Header.Get("Authorization")
		io.WriteString(w, "data")
	}))
	defer cdn.Close()
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hubAuth = r.Header.Get("Authorization")
		if r.URL.Path == "/renamed" {
			http.Redirect(w, r, "/o/n/resolve/c/f", http.StatusTemporaryRedirect) // same host: keep the token
			return
		}
		http.Redirect(w, r, cdn.URL+"/blob", http.StatusFound)
	}))
	defer hub.Close()
	c := &Client{Endpoint: hub.URL, Token: config.NewSecret("hf_secret"), HTTP: NewHTTPClient(NewTransport(2))}
	b, err := c.Open(context.Background(), hub.URL+"/renamed", "o/n", Range{0, -1})
	if err != nil {
		t.Fatal(err)
	}
	b.Resp.Body.Close()
	if hubAuth != "Bearer hf_secret" {
		t.Errorf("hub got %q after a same-host redirect", hubAuth)
	}
	if cdnAuth != "" {
		t.Fatalf("CDN on another port got Authorization %q", cdnAuth)
	}
	if !strings.HasPrefix(b.URL, cdn.URL) {
		t.Errorf("final URL %s", b.URL)
	}
}
