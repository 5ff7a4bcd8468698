package catalog

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/fsutil"
	"github.com/hal0ai/hal0/internal/hf"
	"github.com/hal0ai/hal0/internal/pull"
)

// Indexer builds a catalog from its sources. Create it with New.
type Indexer struct {
	Client  *hf.Client
	Sources []config.CatalogSource
	// FullDefault is [catalog] full, for sources that leave full unset.
	FullDefault bool
	// Limit bounds the entries across all sources.
	Limit int
	// Certified are the organisations whose models are marked certified.
	Certified []string
	// Concurrency bounds the repositories inspected at once.
	Concurrency  int
	DefaultQuant []string
	// Key fingerprints the sources (SourcesKey), stored with the catalog.
	Key string
	// PageSize is the search page size asked of the hub (default 100).
	PageSize    int
	MaxRetries  int
	BackoffBase time.Duration
	BackoffMax  time.Duration
	Logf        func(format string, a ...any)
	Now         func() time.Time
}

// New returns an indexer for the configured sources, or for sources when
// not nil (the command line's).
func New(cfg *config.Config, sources []config.CatalogSource) *Indexer {
	if sources == nil {
		sources = cfg.Catalog.Sources
	}
	endpoint := cfg.Endpoints()[0]
	ix := &Indexer{
		Sources: sources, FullDefault: cfg.Catalog.Full, Limit: cfg.Catalog.Limit,
		Certified: cfg.Catalog.CertifiedOrgs, Concurrency: cfg.Catalog.Concurrency,
		DefaultQuant: cfg.Pull.DefaultQuant,
		Key:          SourcesKey(&cfg.Catalog, sources, endpoint),
	}
	g := &gate{next: hf.NewTransport(max(cfg.Catalog.Concurrency, 2)), logf: ix.logf}
	ix.Client = &hf.Client{Endpoint: endpoint, Token: cfg.HF.Token, HTTP: hf.NewHTTPClient(g), UserAgent: "hal0-catalog/1"}
	return ix
}

func (ix *Indexer) logf(format string, a ...any) {
	if ix.Logf != nil {
		ix.Logf(format, a...)
	}
}

func (ix *Indexer) now() time.Time {
	if ix.Now != nil {
		return ix.Now()
	}
	return time.Now()
}

// Result says what an index changed.
type Result struct {
	Path    string   `json:"path"`
	Entries int      `json:"entries"`
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	Gated   int      `json:"gated"`
	// Failed lists models whose details could not be refreshed ("id:
	// reason"); their entries keep the previous index's details.
	Failed    []string  `json:"failed"`
	IndexedAt time.Time `json:"indexed_at"`
	Skipped   bool      `json:"skipped,omitempty"` // --if-due and not due
	Reason    string    `json:"reason,omitempty"`
}

// Run indexes and replaces the catalog in store, under its lock. A source
// that cannot be listed fails the run and leaves the catalog as it was;
// a model that cannot be inspected keeps its previous entry (or gets one
// from the listing alone) and is reported in Result.Failed.
func (ix *Indexer) Run(ctx context.Context, store *Store) (*Result, error) {
	if len(ix.Sources) == 0 {
		return nil, api.Errorf(api.CodeBadRequest, 0, "no catalog sources: add a [[catalog.source]] table to hal0.toml, or name one with --org, --collection, --search or --task")
	}
	lk, err := store.TryLock()
	if errors.Is(err, fsutil.ErrLocked) {
		return nil, api.Errorf(api.CodeBusy, 0, "another `hal0 catalog index` is running (lock %s)", store.lockPath())
	}
	if err != nil {
		return nil, api.Errorf(api.CodeIO, 0, "lock catalog: %v", err)
	}
	defer lk.Unlock()
	prev, err := store.Load()
	if err != nil {
		return nil, api.Errorf(api.CodeIO, 0, "%v", err)
	}
	f, res, err := ix.Index(ctx, prev)
	if err != nil {
		return nil, err
	}
	if err := store.Save(f); err != nil {
		return nil, api.Errorf(api.CodeIO, 0, "write catalog %s: %v", store.Path(), err)
	}
	res.Path = store.Path()
	return res, nil
}

// Index lists the sources and inspects every model. prev is the catalog
// before, whose entries stand in for models that cannot be inspected now.
func (ix *Indexer) Index(ctx context.Context, prev *File) (*File, *Result, error) {
	cands, err := ix.list(ctx)
	if err != nil {
		return nil, nil, err
	}
	now := ix.now().UTC()
	fullOf := map[string]bool{}
	for _, src := range ix.Sources {
		for _, l := range Label(src) {
			fullOf[l] = src.FullOr(ix.FullDefault)
		}
	}

	entries := make([]api.CatalogEntry, len(cands))
	errs := make([]error, len(cands))
	sem := make(chan struct{}, max(ix.Concurrency, 1))
	var wg sync.WaitGroup
	for i, c := range cands {
		full := false
		for _, l := range c.labels {
			full = full || fullOf[l]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			entries[i], errs[i] = ix.inspect(ctx, c, full, now)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, nil, api.Errorf(api.CodeCancelled, 0, "catalog index cancelled; the catalog is unchanged")
	}

	res := &Result{IndexedAt: now, Added: []string{}, Removed: []string{}, Failed: []string{}}
	old := map[string]api.CatalogEntry{}
	for _, e := range prev.Entries {
		old[strings.ToLower(e.ID)] = e
	}
	var labels []string
	for _, src := range ix.Sources {
		labels = append(labels, Label(src)...)
	}
	f := &File{Version: FileVersion, Endpoint: ix.Client.Endpoint, IndexedAt: now, SourcesKey: ix.Key, Sources: labels,
		Entries: make([]api.CatalogEntry, 0, len(entries))}
	for i, e := range entries {
		k := strings.ToLower(e.ID)
		if err := errs[i]; err != nil {
			res.Failed = append(res.Failed, fmt.Sprintf("%s: %v", e.ID, err))
			if o, ok := old[k]; ok {
				o.Sources = e.Sources
				o.Error = "refresh failed, details are from " + o.IndexedAt.Format(time.RFC3339) + ": " + err.Error()
				e = o
			} else {
				e.Error = err.Error()
			}
		}
		if _, ok := old[k]; !ok {
			res.Added = append(res.Added, e.ID)
		}
		delete(old, k)
		if e.Gated {
			res.Gated++
		}
		f.Entries = append(f.Entries, e)
	}
	for _, o := range prev.Entries {
		if _, ok := old[strings.ToLower(o.ID)]; ok {
			res.Removed = append(res.Removed, o.ID)
		}
	}
	res.Entries = len(f.Entries)
	return f, res, nil
}

// inspect turns a listed model into an entry: the listing's metadata,
// refreshed from the repository's info; the size, format and file count
// of the pull engine's default selection at the current commit; and, for
// a full index, where its chat template lives. On error the entry still
// carries what the listing said.
func (ix *Indexer) inspect(ctx context.Context, c *candidate, full bool, now time.Time) (api.CatalogEntry, error) {
	s := c.sum
	e := api.CatalogEntry{
		ID: s.ID, URI: "hf://" + s.ID, WebURL: ix.Client.Endpoint + "/" + s.ID,
		Sources: append([]string(nil), c.labels...), IndexedAt: now, MetadataOnly: true,
	}
	apply := func(m *hf.ModelSummary) {
		if m.ID != "" {
			e.ID, e.URI, e.WebURL = m.ID, "hf://"+m.ID, ix.Client.Endpoint+"/"+m.ID
		}
		if m.PipelineTag != "" {
			e.Task = m.PipelineTag
		}
		if l := m.License(); l != "" {
			e.License = l
		}
		e.Downloads = max(e.Downloads, m.Downloads)
		e.Likes = max(e.Likes, m.Likes)
		if t := normTime(m.LastModified); t != "" {
			e.LastModified = t
		}
		e.Gated, e.GatedMode = m.Gated != "", string(m.Gated)
		e.Private = e.Private || m.Private
		if m.HubChatTemplate() {
			e.HasChatTemplate, e.ChatTemplateSource = true, "hub"
		}
	}
	apply(&s)
	owner, _, _ := strings.Cut(e.ID, "/")
	for _, o := range ix.Certified {
		e.Certified = e.Certified || strings.EqualFold(o, owner)
	}

	info, err := retry(ctx, ix, "info "+s.ID, func() (*hf.ModelSummary, error) { return ix.Client.ModelInfo(ctx, s.ID, "main") })
	if err != nil {
		return e, err
	}
	apply(info)
	e.Commit = info.SHA
	tree, err := retry(ctx, ix, "list files of "+e.ID, func() ([]hf.Entry, error) { return ix.Client.Tree(ctx, e.ID, info.SHA) })
	if err != nil {
		return e, err
	}
	sel, err := pull.Select(tree, pull.Criteria{DefaultQuant: ix.DefaultQuant})
	if err != nil {
		// Not the index's failure: the entry says why an import would fail.
		e.Format = "files"
		e.Error = "an import would fail: " + err.Error()
	} else {
		for _, f := range sel.Files {
			e.SizeBytes += f.Size
		}
		e.Files, e.Quant, e.Format = len(sel.Files), sel.Quant, formatOf(sel)
	}
	if !full {
		return e, nil
	}
	where, err := ix.chatTemplate(ctx, e.ID, info.SHA, tree, sel)
	switch {
	case api.CodeOf(err) == api.CodeGated || api.CodeOf(err) == api.CodeAuth:
		// A gated repository's files are out of reach without an approved
		// token: the entry stays a summary (Full false), not a failure.
		ix.logf("%s: files not readable (%v); chat template from the hub's summary only", e.ID, err)
	case err != nil:
		return e, err
	default:
		e.Full = true
		if where != "" {
			e.HasChatTemplate, e.ChatTemplateSource = true, where
		} else if e.ChatTemplateSource != "hub" {
			e.HasChatTemplate = false
		}
	}
	return e, nil
}

// formatOf names the weights' format of a selection.
func formatOf(sel *pull.Selection) string {
	has := map[string]bool{}
	for _, f := range sel.Files {
		has[strings.ToLower(path.Ext(f.Path))] = true
	}
	switch {
	case has[".gguf"]:
		return "gguf"
	case has[".safetensors"]:
		return "safetensors"
	case has[".onnx"]:
		return "onnx"
	case has[".bin"] || has[".pt"] || has[".pth"]:
		return "pytorch"
	}
	return "files"
}

// normTime renders a hub timestamp as RFC 3339 UTC, or "".
func normTime(s string) string {
	if s == "" {
		return ""
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func itoa(n int) string { return strconv.Itoa(n) }
