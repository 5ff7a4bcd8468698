package catalog

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/registry"
)

func ids(es []api.CatalogEntry) string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return strings.Join(out, ",")
}

func byID(t *testing.T, f *File, id string) api.CatalogEntry {
	t.Helper()
	e, ok := f.Get(id)
	if !ok {
		t.Fatalf("%s not in the catalog (%s)", id, ids(f.Entries))
	}
	return *e
}

func sizeOf(files []hubtest.File, keep func(string) bool) (n int64, count int) {
	for _, f := range files {
		if keep(f.Path) {
			n += f.Size
			count++
		}
	}
	return n, count
}

func TestIndexSourcesDedupAndEveryField(t *testing.T) {
	f := newFixture(t)
	ix, store := f.indexer(t, config.Catalog{Full: true, CertifiedOrgs: []string{"ACME"}, Sources: []config.CatalogSource{
		{Orgs: []string{"acme"}},
		{Collections: []string{picks, more}},
	}})
	res, err := ix.Run(t.Context(), store)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	// The org by downloads, then the collections in their order: acme/beta
	// (already listed), the dataset and the vanished repo are not added
	// again, other/zeta only once.
	want := "acme/alpha-GGUF,acme/beta,acme/gamma,acme/delta-GGUF,acme/epsilon-GGUF,acme/gated-GGUF,other/zeta,other/eta"
	if got := ids(cat.Entries); got != want {
		t.Fatalf("entries\n got %s\nwant %s", got, want)
	}
	if res.Entries != 8 || len(res.Added) != 8 || len(res.Removed) != 0 || res.Gated != 1 || len(res.Failed) != 0 {
		t.Errorf("result %+v", res)
	}
	if cat.IndexedAt.IsZero() || cat.SourcesKey != ix.Key || cat.Endpoint != f.hub.URL {
		t.Errorf("catalog header %+v", cat)
	}
	// Pagination: acme's six models came in pages of two, each next page
	// asked with the hub's cursor.
	var cursors int
	for _, r := range f.searches() {
		if strings.Contains(r.URI, "author=acme") && strings.Contains(r.URI, "cursor=") {
			cursors++
		}
	}
	if cursors != 2 {
		t.Errorf("%d follow-up pages for acme, want 2: %v", cursors, f.searches())
	}

	// Every field of one entry.
	a := byID(t, cat, "acme/alpha-GGUF")
	repo := f.repos["acme/alpha-GGUF"]
	size, n := sizeOf(repo.Files, func(p string) bool { return strings.Contains(p, "Q4_K_M") })
	if size == 0 || n != 2 {
		t.Fatal("fixture has no Q4_K_M shards")
	}
	wantA := api.CatalogEntry{
		ID: "acme/alpha-GGUF", URI: "hf://acme/alpha-GGUF", WebURL: f.hub.URL + "/acme/alpha-GGUF",
		Format: "gguf", Quant: "Q4_K_M", SizeBytes: size, Files: 2, Task: "text-generation", License: "apache-2.0",
		Downloads: 900, Likes: 90, LastModified: "2025-06-09T12:00:00Z", HasChatTemplate: true,
		ChatTemplateSource: "alpha-Q4_K_M-00001-of-00002.gguf", Full: true, MetadataOnly: true, Certified: true,
		Commit: repo.Commit, Sources: []string{"org:acme"}, IndexedAt: cat.IndexedAt,
	}
	if !sameEntry(a, wantA) {
		t.Errorf("alpha\n got %+v\nwant %+v", a, wantA)
	}

	for _, tc := range []struct {
		id, format, source string
		chat, full, cert   bool
	}{
		{"acme/beta", "safetensors", "tokenizer_config.json", true, true, true},
		{"acme/gamma", "safetensors", "chat_template.jinja", true, true, true},
		{"acme/delta-GGUF", "gguf", f.big, true, true, true},
		{"acme/epsilon-GGUF", "gguf", "", false, true, true},
		{"acme/gated-GGUF", "gguf", "", false, false, true}, // files unreadable without a token
		{"other/zeta", "onnx", "hub", true, true, false},    // the hub's tokenizer_config summary
		{"other/eta", "pytorch", "", false, true, false},
	} {
		e := byID(t, cat, tc.id)
		if e.Format != tc.format || e.ChatTemplateSource != tc.source || e.HasChatTemplate != tc.chat || e.Full != tc.full ||
			e.Certified != tc.cert || !e.MetadataOnly || e.Commit != f.repos[tc.id].Commit {
			t.Errorf("%s: %+v", tc.id, e)
		}
	}
	// Sizes are the default selection, not the repository: all of beta's
	// files (no GGUF), one quant of alpha.
	if b := byID(t, cat, "acme/beta"); b.SizeBytes != must(sizeOf(f.repos["acme/beta"].Files, func(string) bool { return true })) {
		t.Errorf("beta size %d", b.SizeBytes)
	}
	g := byID(t, cat, "acme/gated-GGUF")
	if !g.Gated || g.GatedMode != "manual" || g.SizeBytes == 0 || g.Error != "" {
		t.Errorf("gated entry %+v", g)
	}
	if b := byID(t, cat, "acme/beta"); strings.Join(b.Sources, " ") != "org:acme collection:"+picks {
		t.Errorf("beta sources %v", b.Sources)
	}
	if z := byID(t, cat, "other/zeta"); strings.Join(z.Sources, " ") != "collection:"+picks+" collection:"+more {
		t.Errorf("zeta sources %v", z.Sources)
	}

	// The GGUF header behind a 3 MiB vocabulary was read with growing
	// ranges that stopped at the template: a fraction of the 24 MiB file.
	st := f.hub.Stats().File("acme/delta-GGUF", f.big)
	if st.Bytes < 3<<20 || st.Bytes > 8<<20 {
		t.Errorf("read %d bytes of the 24 MiB GGUF", st.Bytes)
	}
	t.Logf("GGUF header behind a 3 MiB vocabulary: %d bytes in %d requests, of a %d-byte file", st.Bytes, st.Requests, len(f.repos["acme/delta-GGUF"].Files[0].Data))
	for _, r := range f.hub.Requests() {
		if r.Path == f.big && r.Server == "cdn" && !strings.HasPrefix(r.Range, "bytes=") {
			t.Errorf("GGUF read without a Range: %+v", r)
		}
	}
	// The gated repository's files were never served.
	if st := f.hub.Stats().File("acme/gated-GGUF", "gated-Q4_K_M.gguf"); st.Bytes != 0 {
		t.Errorf("gated file served: %+v", st)
	}
}

func must(n int64, _ int) int64 { return n }

// sameEntry compares entries field by field.
func sameEntry(a, b api.CatalogEntry) bool {
	return a.IndexedAt.Equal(b.IndexedAt) && reflect.DeepEqual(normEntry(a), normEntry(b))
}

func normEntry(e api.CatalogEntry) api.CatalogEntry {
	e.IndexedAt = time.Time{}
	return e
}

func TestIndexLimits(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name     string
		limit    int
		sources  []config.CatalogSource
		want     string
		searches int // /api/models requests
	}{
		// The global limit holds across sources: the org fills it and the
		// collection adds nothing; the listing stops after two pages.
		{"global limit", 4, []config.CatalogSource{{Orgs: []string{"acme"}}, {Collections: []string{picks}}},
			"acme/alpha-GGUF,acme/beta,acme/gamma,acme/delta-GGUF", 2},
		{"source limit", 0, []config.CatalogSource{{Orgs: []string{"acme"}, Limit: 2}, {Collections: []string{picks}}},
			"acme/alpha-GGUF,acme/beta,other/zeta", 1},
		// Several orgs are one ranking, here by likes.
		{"orgs ranked together", 3, []config.CatalogSource{{Orgs: []string{"other", "acme"}, Sort: "likes"}},
			"other/zeta,acme/alpha-GGUF,acme/gamma", 3},
		{"ascending", 2, []config.CatalogSource{{Orgs: []string{"acme"}, Sort: "lastModified", Direction: "asc"}},
			"acme/gated-GGUF,acme/epsilon-GGUF", 1},
		{"task and search on the hub", 0, []config.CatalogSource{{Orgs: []string{"acme"}, Task: "text-generation", Search: "GGUF"}},
			"acme/alpha-GGUF,acme/delta-GGUF,acme/gated-GGUF", 2},
		{"task in collections", 0, []config.CatalogSource{{Collections: []string{picks, more}, Task: "text-to-speech"}},
			"other/eta", 0},
		{"global search", 2, []config.CatalogSource{{Search: "eta"}}, "acme/beta,other/zeta", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.hub.ResetStats()
			ix, store := f.indexer(t, config.Catalog{Limit: tc.limit, Sources: tc.sources})
			if _, err := ix.Run(t.Context(), store); err != nil {
				t.Fatal(err)
			}
			cat, _ := store.Load()
			if got := ids(cat.Entries); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if n := len(f.searches()); n != tc.searches {
				t.Errorf("%d search requests, want %d", n, tc.searches)
			}
		})
	}
}

func TestReindexUpdatesDropsAndKeeps(t *testing.T) {
	f := newFixture(t)
	ix, store := f.indexer(t, config.Catalog{Sources: []config.CatalogSource{
		{Orgs: []string{"acme"}}, {Collections: []string{picks, more}},
	}})
	ctx := t.Context()
	if _, err := ix.Run(ctx, store); err != nil {
		t.Fatal(err)
	}
	first, _ := store.Load()

	// Upstream changes: alpha gets downloads and a new commit, epsilon is
	// deleted, eta leaves its collection; beta's info fails every time.
	alpha := *f.repos["acme/alpha-GGUF"]
	alpha.Commit, alpha.Downloads, alpha.Branches = "", 5000, nil
	alpha.Files = append(alpha.Files, hubtest.File{Path: "NOTES.md", Data: []byte("new")})
	newAlpha := f.hub.AddRepo(alpha)
	f.hub.RemoveRepo("acme/epsilon-GGUF")
	f.hub.AddCollection(hubtest.Collection{Slug: more, Items: []hubtest.CollectionItem{{ID: "other/zeta"}}})
	f.hub.AddFault(hubtest.Fault{Where: "api", Repo: "acme/beta", Status: http.StatusInternalServerError})

	res, err := ix.Run(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := store.Load()
	if strings.Join(res.Removed, ",") != "acme/epsilon-GGUF,other/eta" || len(res.Added) != 0 {
		t.Errorf("added %v removed %v", res.Added, res.Removed)
	}
	if got := ids(cat.Entries); got != "acme/alpha-GGUF,acme/beta,acme/gamma,acme/delta-GGUF,acme/gated-GGUF,other/zeta" {
		t.Errorf("entries %s", got)
	}
	a := byID(t, cat, "acme/alpha-GGUF")
	if a.Downloads != 5000 || a.Commit != newAlpha.Commit || a.Commit == f.repos["acme/alpha-GGUF"].Commit || !a.IndexedAt.Equal(cat.IndexedAt) {
		t.Errorf("alpha not refreshed: %+v", a)
	}
	// beta could not be refreshed: it keeps the first index's details and
	// says so; the run reports it.
	b, b0 := byID(t, cat, "acme/beta"), byID(t, first, "acme/beta")
	if len(res.Failed) != 1 || !strings.HasPrefix(res.Failed[0], "acme/beta:") ||
		b.SizeBytes != b0.SizeBytes || b.Commit != b0.Commit || !b.IndexedAt.Equal(b0.IndexedAt) || !strings.Contains(b.Error, "refresh failed") {
		t.Errorf("failed %v; beta %+v", res.Failed, b)
	}

	// A source that cannot be listed fails the index and changes nothing.
	f.hub.ClearFaults()
	before, _ := os.ReadFile(store.Path())
	f.hub.RemoveCollection(picks)
	_, err = ix.Run(ctx, store)
	if api.CodeOf(err) != api.CodeCatalogSource || !strings.Contains(err.Error(), picks) {
		t.Fatalf("err %v", err)
	}
	after, _ := os.ReadFile(store.Path())
	if !bytes.Equal(before, after) {
		t.Error("a failed index rewrote the catalog")
	}
}

func TestRateLimitedHub(t *testing.T) {
	f := newFixture(t)
	ix, store := f.indexer(t, config.Catalog{Sources: []config.CatalogSource{{Orgs: []string{"other"}}}})
	// A burst of 429s carrying only the RateLimit header (t=1, no
	// Retry-After): every request waits for the window, not just the one
	// that was refused. The backoff alone is a few milliseconds here.
	f.hub.AddFault(hubtest.Fault{Where: "api", Status: http.StatusTooManyRequests, Times: 2})
	start := time.Now()
	res, err := ix.Run(t.Context(), store)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < time.Second {
		t.Errorf("indexed in %v despite RateLimit t=1", el)
	}
	var limited int
	for _, r := range f.hub.Requests() {
		if r.Status == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 2 || res.Entries != 2 || len(res.Failed) != 0 {
		t.Errorf("%d 429s, result %+v", limited, res)
	}
}

func TestConcurrencyIsBounded(t *testing.T) {
	f := newFixture(t)
	ix, store := f.indexer(t, config.Catalog{Concurrency: 3, Sources: []config.CatalogSource{
		{Orgs: []string{"acme", "other"}},
	}})
	pt := &peakTransport{next: ix.Client.HTTP.Transport, bound: 3, hold: 200 * time.Millisecond}
	pt.cond = newCond(&pt.mu)
	ix.Client.HTTP.Transport = pt
	res, err := ix.Run(t.Context(), store)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != 8 || pt.peak != 3 {
		t.Errorf("%d entries, peak %d repositories inspected at once (bound 3)", res.Entries, pt.peak)
	}
}

func TestDue(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		f    File
		due  bool
		why  string
	}{
		{"never", File{}, true, "never indexed"},
		{"fresh", File{IndexedAt: now.Add(-time.Hour), SourcesKey: "k"}, false, "next index due at 2026-01-03T02:04:05Z"},
		{"old", File{IndexedAt: now.Add(-25 * time.Hour), SourcesKey: "k"}, true, "last indexed 25h0m0s ago"},
		{"changed", File{IndexedAt: now.Add(-time.Minute), SourcesKey: "other"}, true, "sources changed"},
	} {
		due, why := Due(&tc.f, "k", 24*time.Hour, now)
		if due != tc.due || !strings.Contains(why, tc.why) {
			t.Errorf("%s: due %v (%s)", tc.name, due, why)
		}
	}
}

func TestQueryAndOverlay(t *testing.T) {
	es := []api.CatalogEntry{
		{ID: "a/one-GGUF", Task: "text-generation", Format: "gguf", Downloads: 5, Likes: 9, SizeBytes: 30, Certified: true, HasChatTemplate: true, LastModified: "2025-01-02T00:00:00Z"},
		{ID: "b/two", Task: "text-generation", Format: "safetensors", Downloads: 50, Likes: 1, SizeBytes: 10, LastModified: "2025-01-03T00:00:00Z"},
		{ID: "c/three-GGUF", Task: "feature-extraction", Format: "gguf", Downloads: 20, Likes: 5, SizeBytes: 20, Gated: true, LastModified: "2025-01-01T00:00:00Z"},
	}
	for _, tc := range []struct {
		query, want string
	}{
		{"", "b/two,c/three-GGUF,a/one-GGUF"},
		{"q=gguf", "c/three-GGUF,a/one-GGUF"},
		{"q=GGUF+three", "c/three-GGUF"},
		{"task=text-generation&sort=likes", "a/one-GGUF,b/two"},
		{"certified=true", "a/one-GGUF"},
		{"certified=false&sort=size&direction=asc", "b/two,c/three-GGUF"},
		{"gated=true", "c/three-GGUF"},
		{"chat_template=true", "a/one-GGUF"},
		{"chat_template=false&sort=id", "b/two,c/three-GGUF"},
		{"format=gguf&sort=lastModified", "a/one-GGUF,c/three-GGUF"},
		{"sort=id", "a/one-GGUF,b/two,c/three-GGUF"},
		{"sort=downloads&limit=1", "b/two"},
	} {
		v, _ := urlValues(tc.query)
		q, err := ParseQuery(v)
		if err != nil {
			t.Fatalf("%s: %v", tc.query, err)
		}
		if got := ids(q.Apply(es)); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.query, got, tc.want)
		}
		// The CLI sends its flags to hal0-apid as Values: they must read
		// back as the same query.
		if back, err := ParseQuery(q.Values()); err != nil || !reflect.DeepEqual(back, q) {
			t.Errorf("%s: Values %q reads back as %+v (%v)", tc.query, q.Values().Encode(), back, err)
		}
	}
	for _, bad := range []string{"sort=stars", "direction=up", "certified=maybe", "chat_template=yes", "limit=-1"} {
		v, _ := urlValues(bad)
		if _, err := ParseQuery(v); api.CodeOf(err) != api.CodeBadRequest {
			t.Errorf("%s: %v", bad, err)
		}
	}

	reg := &registry.Registry{}
	reg.Put(&registry.Model{ID: "hf://b/two?format=qcow2", HFRepo: "b/two"})
	reg.Put(&registry.Model{ID: "b/two", HFRepo: "B/Two"})
	Overlay(es, reg)
	if es[0].MetadataOnly != true || es[1].MetadataOnly || strings.Join(es[1].Installed, " ") != "b/two hf://b/two?format=qcow2" {
		t.Errorf("overlay %+v", es)
	}
}

func TestIndexWithoutSources(t *testing.T) {
	f := newFixture(t)
	ix, store := f.indexer(t, config.Catalog{})
	_, err := ix.Run(context.Background(), store)
	if api.CodeOf(err) != api.CodeBadRequest || !strings.Contains(err.Error(), "[[catalog.source]]") {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(store.Path()); !os.IsNotExist(err) {
		t.Error("catalog written without sources")
	}
}

// A catalog written by root (an index run by hand with sudo) belongs to
// the owner of the state directory, so the hal0 service can replace it.
func TestRootWritesAsStateOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	state := filepath.Join(t.TempDir(), "state")
	os.MkdirAll(state, 0o755)
	if err := os.Chown(state, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	store := Open(filepath.Join(state, "catalog", "catalog.json"))
	lk, err := store.TryLock()
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Unlock()
	if err := store.Save(&File{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Dir(store.Path()), store.Path(), store.lockPath()} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 {
			t.Errorf("%s owned by %d:%d", p, st.Uid, st.Gid)
		}
	}
}
