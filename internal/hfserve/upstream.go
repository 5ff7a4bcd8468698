package hfserve

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hf"
	"github.com/hal0ai/hal0/internal/registry"
)

// Lister lists repos on the upstream hub. With pull-through on, listings
// of repos are upstream's (installed files and the rest), so clients that
// choose files from the listing (hal0's quant selection, llama.cpp's
// :quant, snapshot downloads) see everything upstream has, a name that
// does not exist upstream gets the Hub's 404 at once, and nothing is
// pulled until a file is asked for.
type Lister interface {
	List(ctx context.Context, repo, rev string) (*UpstreamRepo, error)
}

// UpstreamRepo is a repo at a pinned commit as upstream lists it.
type UpstreamRepo struct {
	Commit  string
	License string
	// Gated is upstream's "gated" field ("", "auto", "manual").
	Gated string
	Files []UpstreamFile
}

// UpstreamFile is one file of an upstream listing. SHA256 is set for LFS
// files, BlobID (the git blob oid of the content) for the others.
type UpstreamFile struct {
	Path   string
	Size   int64
	LFS    bool
	SHA256 string
	BlobID string
}

// HubLister is a Lister over hal0's hub client: the endpoints in order, as
// the engine resolves a pull, with the hub token. It only fetches
// metadata (the revision and the tree), never file content.
type HubLister struct {
	Endpoints []string
	Token     config.Secret
	HTTP      *http.Client
}

// NewHubLister lists from the hub and mirrors cfg configures for pulls.
func NewHubLister(cfg *config.Config) *HubLister {
	return &HubLister{Endpoints: cfg.Endpoints(), Token: cfg.HF.Token, HTTP: hf.NewHTTPClient(hf.NewTransport(4))}
}

// List implements Lister.
func (l *HubLister) List(ctx context.Context, repo, rev string) (*UpstreamRepo, error) {
	if rev == "HEAD" {
		rev = "main"
	}
	var best error
	for _, ep := range l.Endpoints {
		c := &hf.Client{Endpoint: ep, Token: l.Token, HTTP: l.HTTP}
		info, err := c.Revision(ctx, repo, rev)
		if err == nil && info.Gated != "" && !l.Token.IsSet() {
			return nil, api.Errorf(api.CodeGated, 0, "%s is gated upstream and hal0 has no token for it: accept its license at %s/%s and set hal0's HF token", repo, ep, repo)
		}
		var tree []hf.Entry
		if err == nil {
			tree, err = c.Tree(ctx, repo, info.SHA)
		}
		if err == nil {
			up := &UpstreamRepo{Commit: info.SHA, License: info.License(), Gated: string(info.Gated)}
			for _, t := range tree {
				f := UpstreamFile{Path: t.Path, Size: t.Size}
				if t.LFS != nil {
					f.LFS, f.SHA256, f.Size = true, t.SHA256(), t.LFS.Size
				} else {
					f.BlobID = t.OID
				}
				up.Files = append(up.Files, f)
			}
			return up, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if best == nil || !definite(best) && definite(err) {
			best = err
		}
	}
	if best == nil {
		best = api.Errorf(api.CodeNetwork, 0, "no upstream endpoint configured")
	}
	return nil, best
}

// How long upstream listings are reused. A branch can move, so its
// listing is asked again after a minute; a commit never changes.
const (
	branchListTTL = time.Minute
	commitListTTL = time.Hour
	failedListTTL = 10 * time.Second
	maxListings   = 1024
)

// listings caches upstream listings, one fetch at a time per (repo, rev):
// a client downloading sixteen ranges at once asks for one listing.
type listings struct {
	mu    sync.Mutex
	calls map[[2]string]*listing
}

type listing struct {
	done chan struct{}
	up   *UpstreamRepo
	err  error
	at   time.Time

	// The listing merged with the installed files of its commit, and the
	// index version it was merged with.
	mu     sync.Mutex
	merged *snapshot
	idx    *index
}

func (l *listings) get(ctx context.Context, lister Lister, now func() time.Time, repo, rev string, deadline time.Time) (*listing, error) {
	key := [2]string{repo, rev}
	l.mu.Lock()
	if l.calls == nil {
		l.calls = map[[2]string]*listing{}
	}
	c := l.calls[key]
	if c != nil {
		select {
		case <-c.done:
			ttl := branchListTTL
			switch {
			case c.err != nil:
				ttl = failedListTTL
			case hex40.MatchString(rev):
				ttl = commitListTTL
			}
			if now().Sub(c.at) >= ttl {
				c = nil
			}
		default:
		}
	}
	if c == nil {
		if len(l.calls) >= maxListings {
			l.calls = map[[2]string]*listing{}
		}
		c = &listing{done: make(chan struct{})}
		l.calls[key] = c
		go func() {
			// Detached from the request: others wait for the same answer.
			lctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c.up, c.err = lister.List(lctx, repo, rev)
			if c.err == nil && (c.up == nil || !hex40.MatchString(c.up.Commit)) {
				c.up, c.err = nil, api.Errorf(api.CodeBadResponse, 0, "upstream gave no commit for %s@%s", repo, rev)
			}
			c.at = now()
			close(c.done)
		}()
	}
	l.mu.Unlock()
	t := time.NewTimer(max(time.Until(deadline), 0))
	defer t.Stop()
	select {
	case <-c.done:
		return c, c.err
	case <-t.C:
		return nil, errPulling // the listing goes on; a retry finds it
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// view merges an upstream listing with the installed files of its commit:
// files whose hashes match an installed copy are served from it, the rest
// are pulled when asked for.
func (c *listing) view(idx *index, repo string, logf func(string, ...any)) *snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.merged != nil && c.idx == idx {
		return c.merged
	}
	var local *snapshot
	if ri := idx.repos[repo]; ri != nil {
		local = ri.commits[c.up.Commit]
	}
	s := &snapshot{commit: c.up.Commit, files: map[string]*file{}, dirs: map[string]string{}, license: c.up.License, gated: c.up.Gated}
	if local != nil {
		s.installed, s.created = local.installed, local.created
		if s.gated == "" {
			s.gated = local.gated
		}
	}
	for _, uf := range c.up.Files {
		f, err := newFile(upstreamToRegistry(uf))
		if err != nil {
			logf("hfserve: upstream lists %s of %s, which hal0 will not serve: %v", uf.Path, repo, err)
			continue
		}
		if local != nil {
			if have := local.files[f.path]; have != nil {
				if sameContent(have, f) {
					f.copies = have.copies
				} else {
					logf("hfserve: installed %s of %s@%s differs from upstream's listing; pulling it again when asked", f.path, repo, c.up.Commit[:12])
				}
			}
		}
		s.files[f.path] = f
	}
	s.build()
	c.merged, c.idx = s, idx
	return s
}

// sameContent reports whether an installed file has the content that
// upstream lists as f.
func sameContent(have, f *file) bool {
	return have.size == f.size && have.blobID == f.blobID && (!f.lfs || have.sha256 == f.sha256)
}

// installedAs reports whether the store now holds path of repo at commit
// with the content f lists: a pull that ended after the request looked
// the file up may have installed it.
func (h *Handler) installedAs(repo, commit string, f *file) bool {
	idx, err := h.index()
	if err != nil {
		return false // the lookup that follows reports it
	}
	ri := idx.repos[repo]
	if ri == nil || ri.commits[commit] == nil {
		return false
	}
	have := ri.commits[commit].files[f.path]
	return have != nil && len(have.copies) > 0 && sameContent(have, f)
}

func upstreamToRegistry(uf UpstreamFile) registry.File {
	rf := registry.File{Path: uf.Path, Size: uf.Size, SHA256: uf.SHA256}
	if !uf.LFS {
		rf.GitOID = uf.BlobID
	}
	return rf
}

// lookupUpstream is lookup with pull-through: the listing comes from
// upstream, merged with what is installed at its commit, or from the
// store when upstream cannot answer and the store has the revision (a
// mirror keeps serving when the internet is down). Files in the listing
// that are not installed have no copies; serveFile pulls them.
func (h *Handler) lookupUpstream(ctx context.Context, w http.ResponseWriter, idx *index, repo, rev string) (*repoIndex, *snapshot, bool) {
	deadline := time.Now().Add(h.opts.PullWait)
	ri := idx.repos[repo]
	l, err := h.lists.get(ctx, h.opts.Upstream, h.opts.Now, repo, rev, deadline)
	var s *snapshot
	switch {
	case err == nil:
		s = l.view(idx, repo, h.logf)
	case ctx.Err() != nil:
		return nil, nil, false
	case errors.Is(err, errPulling) && (ri == nil || ri.resolve(rev) == nil):
		w.Header().Set("Retry-After", "5")
		hfError(w, http.StatusServiceUnavailable, "", "hal0 is asking its upstream hub about "+repo+"; retry in a few seconds")
		return nil, nil, false
	case ri != nil && ri.resolve(rev) != nil:
		s = ri.resolve(rev)
	default:
		answerPullError(w, repo, rev, "", err)
		return nil, nil, false
	}
	if ri == nil {
		ri = &repoIndex{id: repo, commits: map[string]*snapshot{s.commit: s}, names: map[string]string{}, newest: s.commit}
	}
	return ri, s, true
}
