package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/flm"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
)

// flmProber returns the catalog prober, built from the configuration on
// first use when the Server was made without one.
func (s *Server) flmProber() *flm.Prober {
	s.flmOnce.Do(func() {
		if s.FLM == nil {
			s.FLM = flm.NewProber(s.Cfg)
		}
	})
	return s.FLM
}

// flmCatalog reads FLM's catalog, as an API error when flm cannot be
// run.
func (s *Server) flmCatalog(ctx context.Context) (*flm.Catalog, *flm.Prober, error) {
	cat, _, p, err := s.flmCatalogAt(ctx)
	return cat, p, err
}

func (s *Server) flmCatalogAt(ctx context.Context) (*flm.Catalog, time.Time, *flm.Prober, error) {
	p := s.flmProber()
	cat, at, err := p.Catalog(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, at, p, api.Errorf(api.CodeFLMUnavailable, http.StatusServiceUnavailable, "%v", ctx.Err())
		}
		s.logf("flm catalog: %v", err)
		return nil, at, p, api.Errorf(api.CodeFLMUnavailable, http.StatusServiceUnavailable,
			"could not read FLM's catalog: %v; check [flm] in %s (runtime, toolbox_image or flm_path)", err, s.Cfg.Paths.File())
	}
	return cat, at, p, nil
}

// checkFLMPull refuses what an FLM pull cannot do: options meant for
// Hugging Face, and tags flm does not know (is_flm_tag: a ":" and an
// entry in the catalog).
func (s *Server) checkFLMPull(ctx context.Context, rf ref.Ref, body api.PullRequest) error {
	var set []string
	for name, v := range map[string]bool{
		"endpoint": body.Endpoint != "", "revision": body.Revision != "", "include": len(body.Include) > 0,
		"exclude": len(body.Exclude) > 0, "quant": body.Quant != "", "format": body.Format != "" && body.Format != "dir",
	} {
		if v {
			set = append(set, name)
		}
	}
	if len(set) > 0 {
		return api.Errorf(api.CodeBadRequest, http.StatusBadRequest, "%s is an FLM tag: flm decides what to download for it, so %s cannot be set", rf, strings.Join(set, ", "))
	}
	cat, _, err := s.flmCatalog(ctx)
	if err != nil {
		return err
	}
	if !cat.IsTag(rf.Tag) {
		e := flm.UnknownTagError(rf.Tag, cat)
		e.Status = http.StatusNotFound
		return e
	}
	return nil
}

// flmModels is GET /api/flm/models[?refresh=1].
func (s *Server) flmModels(w http.ResponseWriter, r *http.Request) {
	if v := r.URL.Query().Get("refresh"); v == "1" || v == "true" {
		s.flmProber().Forget()
	}
	cat, at, p, err := s.flmCatalogAt(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	reg, err := s.Registry.Load()
	if err != nil {
		writeErr(w, api.Errorf(api.CodeInternal, http.StatusInternalServerError, "%v", err))
		return
	}
	out := api.FLMCatalog{Runtime: p.Toolbox.Runtime, CacheDir: p.Toolbox.CacheDir, ProbedAt: at, Models: []api.FLMModel{}}
	if p.Toolbox.Containerised() {
		out.Image = p.Toolbox.Image
	}
	if unseen, blind := cat.MountCheck(p.Toolbox.CacheDir); blind {
		out.Warning = fmt.Sprintf("flm reports no model installed, yet %s holds complete models (%s): the toolbox does not see the FLM cache (it must be bind-mounted at %s), so pulls would vanish",
			p.Toolbox.CacheDir, strings.Join(unseen, ", "), flm.ContainerModels)
	}
	for _, e := range cat.Entries {
		m := api.FLMModel{
			ID: e.Tag, SizeBytes: e.Size, FootprintGB: e.Footprint, ContextLength: e.Context,
			Capabilities: e.Capabilities(), Labels: e.Labels, Backends: []string{"npu"}, Repo: e.RepoDir(),
			FLMInstalled: e.Installed, Pullable: true,
		}
		if rm, ok := reg.Get(e.Tag); ok && rm.Source == "flm" {
			m.Installed = true
			m.SizeBytes = rm.SizeBytes
		}
		out.Models = append(out.Models, m)
	}
	writeJSON(w, http.StatusOK, out)
}

// flmSlotModel refuses, for an flm slot, a tag that flm's catalog does
// not have. When flm cannot be asked, the request goes on: the pull
// hal0-slotd starts reports why.
func (s *Server) flmSlotModel(ctx context.Context, slot, model string) error {
	rf, err := ref.Parse(model)
	if err != nil || rf.Kind != ref.KindFLM {
		return nil
	}
	cat, _, err := s.flmCatalog(ctx)
	if err != nil || cat.IsTag(rf.Tag) {
		return nil
	}
	e := flm.UnknownTagError(rf.Tag, cat)
	e.Status = http.StatusNotFound
	e.Message = fmt.Sprintf("slot %s: %s", slot, e.Message)
	return e
}

// removeFLMFiles deletes a removed FLM model's directory from flm's
// cache (and only from there) and tells every catalog reader.
func (s *Server) removeFLMFiles(m *registry.Model) {
	if m.Source != "flm" || m.Dir == "" || !within(s.Cfg.FLMCacheDir(), m.Dir) {
		return
	}
	if err := os.RemoveAll(m.Dir); err != nil {
		s.logf("remove %s: %v", m.Dir, err)
	}
	if err := s.flmProber().Invalidate(); err != nil {
		s.logf("mark FLM's catalog stale: %v", err)
	}
}
