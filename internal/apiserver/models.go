package apiserver

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/slots"
	"github.com/hal0ai/hal0/internal/version"
)

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	n := 0
	all, _ := s.Jobs.List()
	for _, j := range all {
		if !j.State.Final() {
			n++
		}
	}
	name := "pending" // still connecting to systemd; health must not wait for it
	if p, ok := s.Runner.(interface{ Pending() bool }); !ok || !p.Pending() {
		name = s.Runner.Name()
	}
	writeJSON(w, http.StatusOK, api.Health{Status: "ok", Runner: name, Jobs: n})
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.Version{Version: version.Version, Commit: version.Commit, API: api.APIVersion})
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	reg, err := s.Registry.Load()
	if err != nil {
		writeErr(w, api.Errorf(api.CodeInternal, http.StatusInternalServerError, "%v", err))
		return
	}
	ms := reg.List()
	if ms == nil {
		ms = []*registry.Model{}
	}
	writeJSON(w, http.StatusOK, ms)
}

// route suffixes under /api/models/{id}
var suffixes = []string{"/pull/status", "/pull/cancel", "/pull/events", "/pull"}

// modelRoutes dispatches /api/models/{id}[/pull[/status|/cancel|/events]].
// Ids contain "/" (org/name); clients should escape it as %2F, and plain
// slashes work too wherever the route is unambiguous.
func (s *Server) modelRoutes(w http.ResponseWriter, r *http.Request) {
	raw := strings.TrimPrefix(r.URL.EscapedPath(), "/api/models/")
	rest := ""
	for _, suf := range suffixes {
		if strings.HasSuffix(raw, suf) && len(raw) > len(suf) {
			// GET .../pull on its own is not a route: such an id is a model
			// whose last path segment is "pull".
			if suf == "/pull" && r.Method != http.MethodPost {
				continue
			}
			raw, rest = strings.TrimSuffix(raw, suf), suf
			break
		}
	}
	id, err := url.PathUnescape(raw)
	if err != nil || id == "" {
		writeErr(w, api.Errorf(api.CodeInvalidRef, http.StatusBadRequest, "bad model id in path %q", r.URL.EscapedPath()))
		return
	}
	rf, err := ref.Parse(id)
	if err != nil {
		writeErr(w, &api.Error{Code: api.CodeInvalidRef, Status: http.StatusBadRequest, Message: err.Error()})
		return
	}
	type route struct{ method, rest string }
	switch (route{r.Method, rest}) {
	case route{http.MethodGet, ""}, route{http.MethodHead, ""}:
		s.getModel(w, r, rf)
	case route{http.MethodDelete, ""}:
		s.deleteModel(w, r, rf)
	case route{http.MethodPost, "/pull"}:
		s.startPull(w, r, rf)
	case route{http.MethodGet, "/pull/status"}:
		s.pullStatus(w, r, rf)
	case route{http.MethodPost, "/pull/cancel"}:
		s.cancelPull(w, r, rf)
	case route{http.MethodGet, "/pull/events"}:
		s.pullEvents(w, r, rf)
	default:
		w.Header().Set("Allow", allowed(rest))
		writeErr(w, api.Errorf(api.CodeBadRequest, http.StatusMethodNotAllowed, "%s is not allowed on /api/models/{id}%s", r.Method, rest))
	}
}

func allowed(rest string) string {
	switch rest {
	case "":
		return "GET, HEAD, DELETE"
	case "/pull", "/pull/cancel":
		return "POST"
	}
	return "GET"
}

func (s *Server) getModel(w http.ResponseWriter, r *http.Request, rf ref.Ref) {
	reg, err := s.Registry.Load()
	if err != nil {
		writeErr(w, api.Errorf(api.CodeInternal, http.StatusInternalServerError, "%v", err))
		return
	}
	m, ok := reg.Get(rf.String())
	if !ok {
		writeErr(w, api.Errorf(api.CodeModelMissing, http.StatusNotFound, "model %s is not installed", rf))
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// deleteModel removes a model's registry entry and, for models hal0
// pulled, its files. It refuses while a pull of it runs. Files outside the
// pull directory (pre-staged models) are never deleted: only the entry
// goes.
func (s *Server) deleteModel(w http.ResponseWriter, r *http.Request, rf ref.Ref) {
	id := rf.String()
	if j, err := s.Jobs.Current(id); err == nil && !j.State.Final() {
		st := s.merge(r.Context(), j)
		if !st.Final() {
			writeErr(w, api.Errorf(api.CodeConflict, http.StatusConflict, "a pull of %s is %s (job %s): cancel it first", id, st.State, j.ID))
			return
		}
	}
	if names, uses := s.slotsUsing(id); len(uses) > 0 {
		writeErr(w, api.Errorf(api.CodeConflict, http.StatusConflict, "model %s is in use by %s: unload the slot or swap it to another model first (hal0 slot unload %s)", id, strings.Join(uses, ", "), names[0]))
		return
	}
	var removed *registry.Model
	err := s.Registry.Update(r.Context(), func(reg *registry.Registry) error {
		m, ok := reg.Get(id)
		if !ok {
			return api.Errorf(api.CodeModelMissing, http.StatusNotFound, "model %s is not installed", id)
		}
		removed = m
		reg.Delete(id)
		return nil
	})
	if err != nil {
		var ae *api.Error
		if !errors.As(err, &ae) {
			err = api.Errorf(api.CodeInternal, http.StatusInternalServerError, "%v", err)
		}
		writeErr(w, err)
		return
	}
	for _, p := range []string{removed.Dir, removed.Image} {
		if p != "" && within(s.Cfg.Paths.PullDir(), p) {
			if err := os.RemoveAll(p); err != nil {
				s.logf("remove %s: %v", p, err)
			}
		}
	}
	s.removeFLMFiles(removed)
	writeJSON(w, http.StatusOK, removed)
}

// slotsUsing names the slots that serve id, are bringing it in, or have a
// request for it that hal0-slotd has not taken up yet: deleting the files
// under a running backend (or one about to start) would break it.
func (s *Server) slotsUsing(id string) (names, users []string) {
	cs, err := slots.LoadConfigs(s.Cfg.Paths.SlotConfigDir())
	if err != nil {
		return nil, nil // a broken slot file is reported by the slot routes
	}
	for _, c := range cs {
		name := c.Slot.Name
		st, err := slots.LoadStatus(s.statePath(name), name)
		switch {
		case err != nil:
		case st.Target == id:
			names, users = append(names, name), append(users, fmt.Sprintf("slot %s (bringing it in: %s)", name, st.State))
			continue
		case st.ModelID == id && st.State != slots.Offline && st.State != slots.Error:
			names, users = append(names, name), append(users, fmt.Sprintf("slot %s (%s)", name, st.State))
			continue
		}
		if req, _ := slots.ReadRequest(s.requestPath(name)); req != nil && req.Model == id && (st == nil || appliedRequest(st) != req.ID) {
			names, users = append(names, name), append(users, fmt.Sprintf("slot %s (a pending %s request)", name, req.Kind))
		}
	}
	return names, users
}

// within reports whether p is strictly inside dir.
func within(dir, p string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(p))
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..") && !filepath.IsAbs(rel)
}
