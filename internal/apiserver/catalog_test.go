package apiserver

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/catalog"
	"github.com/hal0ai/hal0/internal/registry"
)

func TestCatalogRoutes(t *testing.T) {
	a := newAPI(t)
	// Before any index: an empty catalog, not an error.
	var empty api.CatalogList
	if code := a.do(t, "GET", "/api/catalog", "", &empty); code != http.StatusOK || empty.IndexedAt != nil || empty.Total != 0 || empty.Entries == nil {
		t.Fatalf("empty catalog: %d %+v", code, empty)
	}

	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	store := catalog.Open(a.cfg.Paths.CatalogFile())
	err := store.Save(&catalog.File{Endpoint: "https://huggingface.co", IndexedAt: at, Entries: []api.CatalogEntry{
		{ID: "Qwen/Qwen3-4B-GGUF", Task: "text-generation", Format: "gguf", Downloads: 900, Likes: 3, SizeBytes: 2 << 30, Certified: true, HasChatTemplate: true},
		{ID: "acme/embed", Task: "feature-extraction", Format: "safetensors", Downloads: 50, Likes: 40, SizeBytes: 1 << 20},
		{ID: "acme/chat-GGUF", Task: "text-generation", Format: "gguf", Downloads: 200, Likes: 1, Gated: true, SizeBytes: 5 << 30, HasChatTemplate: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// One of them is installed (as a disk image).
	a.srv.Registry.Update(t.Context(), func(r *registry.Registry) error {
		r.Put(&registry.Model{ID: "hf://acme/embed?format=qcow2", HFRepo: "acme/embed", Format: "qcow2"})
		return nil
	})

	ids := func(l api.CatalogList) string {
		var out []string
		for _, e := range l.Entries {
			out = append(out, e.ID)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct{ query, want string }{
		{"", "Qwen/Qwen3-4B-GGUF,acme/chat-GGUF,acme/embed"},
		{"?q=gguf", "Qwen/Qwen3-4B-GGUF,acme/chat-GGUF"},
		{"?task=text-generation&sort=size&direction=asc", "Qwen/Qwen3-4B-GGUF,acme/chat-GGUF"},
		{"?certified=true", "Qwen/Qwen3-4B-GGUF"},
		{"?chat_template=true&sort=likes", "Qwen/Qwen3-4B-GGUF,acme/chat-GGUF"},
		{"?chat_template=false", "acme/embed"},
		{"?chat_template=true&gated=false&q=qwen", "Qwen/Qwen3-4B-GGUF"},
		{"?certified=false&sort=likes", "acme/embed,acme/chat-GGUF"},
		{"?sort=id&limit=2", "acme/chat-GGUF,acme/embed"},
	} {
		var l api.CatalogList
		if code := a.do(t, "GET", "/api/catalog"+tc.query, "", &l); code != http.StatusOK {
			t.Fatalf("%s: %d", tc.query, code)
		}
		if got := ids(l); got != tc.want || l.Total != 3 || l.Count != len(l.Entries) || l.IndexedAt == nil || !l.IndexedAt.Equal(at) {
			t.Errorf("%s: %s (total %d, count %d, at %v), want %s", tc.query, got, l.Total, l.Count, l.IndexedAt, tc.want)
		}
		for _, e := range l.Entries {
			if installed := e.ID == "acme/embed"; e.MetadataOnly == installed || (installed && e.Installed[0] != "hf://acme/embed?format=qcow2") {
				t.Errorf("%s: metadata_only %v installed %v", e.ID, e.MetadataOnly, e.Installed)
			}
		}
	}
	for _, bad := range []string{"sort=stars", "chat_template=yes"} {
		if st, code := errCode(t, a, "GET", "/api/catalog?"+bad, ""); st != http.StatusBadRequest || code != api.CodeBadRequest {
			t.Errorf("%s: %d %s", bad, st, code)
		}
	}

	// One entry, by escaped id, plain slashes, case and hf:// URI.
	for _, p := range []string{"/api/catalog/acme%2Fembed", "/api/catalog/acme/embed", "/api/catalog/ACME/Embed", "/api/catalog/hf:%2F%2Facme%2Fembed"} {
		var e api.CatalogEntry
		if code := a.do(t, "GET", p, "", &e); code != http.StatusOK || e.ID != "acme/embed" || e.MetadataOnly {
			t.Errorf("%s: %d %+v", p, code, e)
		}
	}
	var env api.Envelope
	if code := a.do(t, "GET", "/api/catalog/acme%2Fnone", "", &env); code != http.StatusNotFound || env.Error.Code != api.CodeCatalogMissing ||
		!strings.Contains(env.Error.Message, "hal0 catalog index") {
		t.Errorf("missing entry: %d %+v", code, env.Error)
	}
	for _, p := range []string{"/api/catalog/acme%2Fembed:Q4_K_M", "/api/catalog/qwen3:4b"} {
		if st, code := errCode(t, a, "GET", p, ""); st != http.StatusBadRequest || code != api.CodeInvalidRef {
			t.Errorf("%s: %d %s", p, st, code)
		}
	}
	if st, code := errCode(t, a, "POST", "/api/catalog", ""); st != http.StatusNotFound || code != api.CodeNotFound {
		t.Errorf("POST: %d %s", st, code)
	}
}
