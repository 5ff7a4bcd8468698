package hf

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
)

// FuzzHubReplies feeds arbitrary bodies to the revision and tree decoders
// through a real HTTP server: whatever a hub or a broken mirror answers,
// the client returns either data or an *api.Error, never a panic, and a
// commit it accepts is always 40 hex digits.
func FuzzHubReplies(f *testing.F) {
	f.Add([]byte(`{"id":"o/n","sha":"0123456789abcdef0123456789abcdef01234567","gated":false,"siblings":[]}`), []byte(`[{"type":"file","path":"a.gguf","size":3,"oid":"x","lfs":{"oid":"ab","size":3}}]`))
	f.Add([]byte(`{"sha":"nope","gated":"manual"}`), []byte(`[{"type":"directory","path":"d"}]`))
	f.Add([]byte(`{"gated":true}`), []byte(`{}`))
	f.Add([]byte(`not json`), []byte(`[`))
	f.Fuzz(func(t *testing.T, info, tree []byte) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/tree/") {
				w.Write(tree)
				return
			}
			w.Write(info)
		}))
		defer srv.Close()
		c := &Client{Endpoint: srv.URL, Token: config.NewSecret(""), HTTP: NewHTTPClient(NewTransport(1))}
		ri, err := c.Revision(context.Background(), "o/n", "main")
		if err != nil {
			var ae *api.Error
			if !errors.As(err, &ae) {
				t.Fatalf("revision error is not an api.Error: %v", err)
			}
			return
		}
		if !commitRe.MatchString(ri.SHA) {
			t.Fatalf("accepted commit %q", ri.SHA)
		}
		if _, err := c.Tree(context.Background(), "o/n", ri.SHA); err != nil {
			var ae *api.Error
			if !errors.As(err, &ae) {
				t.Fatalf("tree error is not an api.Error: %v", err)
			}
		}
	})
}
