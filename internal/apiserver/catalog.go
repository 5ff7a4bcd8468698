package apiserver

import (
	"net/http"
	"strings"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/catalog"
	"github.com/hal0ai/hal0/internal/ref"
)

// registerCatalog adds the read-only catalog routes. The catalog is a file
// `hal0 catalog index` writes (by hand or from hal0-catalog.timer); these
// routes read it on every request and mark what the registry has
// installed.
func (s *Server) registerCatalog(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/catalog", s.listCatalog)
	mux.HandleFunc("GET /api/catalog/{id...}", s.getCatalogEntry)
}

func (s *Server) loadCatalog() (*catalog.File, error) {
	f, err := catalog.Open(s.Cfg.Paths.CatalogFile()).Load()
	if err != nil {
		return nil, api.Errorf(api.CodeInternal, http.StatusInternalServerError, "%v", err)
	}
	return f, nil
}

// listCatalog is GET /api/catalog?q=&task=&format=&certified=&gated=&sort=&direction=&limit=.
func (s *Server) listCatalog(w http.ResponseWriter, r *http.Request) {
	q, err := catalog.ParseQuery(r.URL.Query())
	if err != nil {
		writeErr(w, err)
		return
	}
	f, err := s.loadCatalog()
	if err != nil {
		writeErr(w, err)
		return
	}
	entries := q.Apply(f.Entries)
	s.overlay(entries)
	out := api.CatalogList{Endpoint: f.Endpoint, Total: len(f.Entries), Count: len(entries), Entries: entries}
	if !f.IndexedAt.IsZero() {
		out.IndexedAt = &f.IndexedAt
	}
	writeJSON(w, http.StatusOK, out)
}

// getCatalogEntry is GET /api/catalog/{id}; the id is org/name (escaped
// or not) or its hf:// URI.
func (s *Server) getCatalogEntry(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	rf, err := ref.Parse(raw)
	if err != nil || rf.Kind != ref.KindHF || rf.Quant != "" || rf.File != "" || rf.Revision != "" {
		writeErr(w, api.Errorf(api.CodeInvalidRef, http.StatusBadRequest, "catalog entries are named org/name (or hf://org/name), not %q", raw))
		return
	}
	f, err := s.loadCatalog()
	if err != nil {
		writeErr(w, err)
		return
	}
	e, ok := f.Get(rf.Repo)
	if !ok {
		when := "it was never indexed"
		if !f.IndexedAt.IsZero() {
			when = "last indexed " + f.IndexedAt.UTC().Format("2006-01-02 15:04 UTC")
		}
		writeErr(w, api.Errorf(api.CodeCatalogMissing, http.StatusNotFound, "%s is not in the catalog (%d models, %s): run `hal0 catalog index`, or pull it directly with `hal0 model pull %s`", rf.Repo, len(f.Entries), when, rf.Repo))
		return
	}
	one := []api.CatalogEntry{*e}
	s.overlay(one)
	writeJSON(w, http.StatusOK, one[0])
}

// overlay marks installed entries. A registry that cannot be read leaves
// every entry metadata-only and is logged: the catalog is still useful.
func (s *Server) overlay(entries []api.CatalogEntry) {
	reg, err := s.Registry.Load()
	if err != nil {
		s.logf("catalog: %v", strings.TrimSpace(err.Error()))
		reg = nil
	}
	catalog.Overlay(entries, reg)
}
