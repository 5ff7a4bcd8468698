package hfserve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/pull"
	"github.com/hal0ai/hal0/internal/ref"
)

// PullThrough fetches what a client asked for from an upstream hub into
// the store that the handler serves (and records it in the registry).
// The handler waits for Pull to return before it serves anything: a
// client gets its first byte only after the whole pull was verified and
// installed (up to Options.PullWait; after that it gets 503 and retries).
// Errors should be *api.Error with hal0's pull codes, as the pull engine
// returns them: not-found and gated codes are passed on to the client as
// the Hub's X-Error-Code, anything else becomes a 502.
type PullThrough interface {
	Pull(ctx context.Context, req PullRequest) error
}

// PullRequest is what a request missed.
type PullRequest struct {
	Repo     string // "org/name"
	Revision string // as the client spelt it: main, HEAD, a tag, a commit, refs/pr/N
	// Path is the file the client asked for, or "" for repo-level
	// requests (info, tree, paths-info, refs).
	Path string
}

// EnginePuller pulls with hal0's engine in this process. A request for a
// file pulls that file (a GGUF shard brings its whole set, and the quant's
// mmproj); a repo-level request pulls what `hal0 model pull org/name`
// would (the default quant of a GGUF repo, else every file). It also
// implements Lister, so listings come from upstream.
type EnginePuller struct {
	newEngine func() *pull.Engine
	lister    *pull.Engine
}

// NewEnginePuller returns a puller that builds an engine with newEngine
// for each pull: a pull.Engine holds the state of the pull it runs, and
// pulls of different repos run at once. The engine must install into the
// registry that the Handler serves.
func NewEnginePuller(newEngine func() *pull.Engine) *EnginePuller {
	return &EnginePuller{newEngine: newEngine, lister: newEngine()}
}

// Pull implements PullThrough.
func (p *EnginePuller) Pull(ctx context.Context, req PullRequest) error {
	s := req.Repo
	if rev := req.Revision; rev != "" && rev != "main" && rev != "HEAD" {
		s += "@" + rev
	}
	if req.Path != "" {
		s += "/" + req.Path
	}
	rf, err := ref.Parse(s)
	if err != nil {
		// Names hal0 cannot even spell cannot be upstream either.
		code := api.CodeEntryNotFound
		switch {
		case req.Path == "" && req.Revision != "":
			code = api.CodeRevisionNotFound
		case req.Path == "":
			code = api.CodeRepoNotFound
		}
		return api.Errorf(code, 0, "%v", err)
	}
	_, err = p.newEngine().Pull(ctx, pull.Request{Ref: rf})
	return err
}

// Negative results are remembered so that clients probing for optional
// files (transformers asks for a dozen that most repos lack) do not turn
// every probe into an upstream round trip.
const (
	definiteTTL  = 5 * time.Minute  // not found, gated: the answer will not change soon
	transientTTL = 15 * time.Second // network trouble: let the next retry try again
)

// puller runs at most one pull per repo, in the background: the pull
// outlives the request that started it, so a client that gives up (or
// gets a 503) does not waste the download, and the next request finds
// the files installed.
type puller struct {
	up   PullThrough
	now  func() time.Time
	logf func(string, ...any)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	running map[string]*pullRun // by repo
	recent  map[PullRequest]result
}

type pullRun struct {
	req  PullRequest
	done chan struct{}
	err  error
}

type result struct {
	err error
	at  time.Time
}

func newPuller(up PullThrough, now func() time.Time, logf func(string, ...any)) *puller {
	ctx, cancel := context.WithCancel(context.Background())
	return &puller{up: up, now: now, logf: logf, ctx: ctx, cancel: cancel,
		running: map[string]*pullRun{}, recent: map[PullRequest]result{}}
}

func (p *puller) close() {
	p.cancel()
	p.wg.Wait()
}

// errPulling means the pull is still running after the wait.
var errPulling = errors.New("pull in progress")

// await makes sure a pull for req has finished (its own, or one of the
// same repo that was already running, which may well have brought what req
// needs; own says which), waiting at most wait. A recent result for the
// same request is returned without pulling again, as if it were its own.
func (p *puller) await(ctx context.Context, req PullRequest, wait time.Duration) (own bool, err error) {
	p.mu.Lock()
	if res, ok := p.recent[req]; ok {
		ttl := definiteTTL
		if res.err != nil && !definite(res.err) {
			ttl = transientTTL
		}
		if p.now().Sub(res.at) < ttl {
			p.mu.Unlock()
			return true, res.err
		}
		delete(p.recent, req)
	}
	run := p.running[req.Repo]
	own = run == nil
	if own {
		run = &pullRun{req: req, done: make(chan struct{})}
		p.running[req.Repo] = run
		p.wg.Add(1)
		go p.run(run)
	}
	p.mu.Unlock()

	t := time.NewTimer(max(wait, 0))
	defer t.Stop()
	select {
	case <-run.done:
	case <-t.C:
		return own, errPulling
	case <-ctx.Done():
		return own, ctx.Err()
	}
	if own {
		return true, run.err
	}
	// Someone else's pull finished: the caller looks again, and comes
	// back here to pull its own request if that was not enough.
	return false, nil
}

func (p *puller) run(r *pullRun) {
	defer p.wg.Done()
	start := p.now()
	err := p.up.Pull(p.ctx, r.req)
	if err != nil {
		p.logf("hfserve: pull-through of %s@%s %s failed after %v: %v", r.req.Repo, r.req.Revision, r.req.Path, p.now().Sub(start).Round(time.Millisecond), err)
	}
	p.mu.Lock()
	r.err = err
	delete(p.running, r.req.Repo)
	// Success is remembered too: if the pull did not bring the file the
	// request wanted, asking upstream again at once would not either.
	p.recent[r.req] = result{err: err, at: p.now()}
	if len(p.recent) > 4096 {
		p.recent = map[PullRequest]result{} // bound memory against path probing
	}
	p.mu.Unlock()
	close(r.done)
}

func definite(err error) bool {
	switch api.CodeOf(err) {
	case api.CodeRepoNotFound, api.CodeRevisionNotFound, api.CodeEntryNotFound, api.CodeNoMatch,
		api.CodeGated, api.CodeInvalidRef, api.CodeUnsafePath:
		return true
	}
	return false
}

// pullThrough pulls what a request missed and reports whether the caller
// should look again (own: after a pull of its own, rather than after
// another request's pull of the same repo); when it returns again=false it
// has answered the request. All rounds of one request share one deadline,
// PullWait after the request arrived.
func (h *Handler) pullThrough(ctx context.Context, w http.ResponseWriter, req PullRequest, deadline time.Time) (again, own bool) {
	own, err := h.pulls.await(ctx, req, time.Until(deadline))
	switch {
	case err == nil:
		return true, own
	case errors.Is(err, errPulling):
		// huggingface_hub and hal0 both retry a 503 and honour
		// Retry-After; the pull carries on meanwhile.
		w.Header().Set("Retry-After", "5")
		hfError(w, http.StatusServiceUnavailable, "", fmt.Sprintf("hal0 is pulling %s from its upstream hub; retry in a few seconds", req.Repo))
		return false, own
	case ctx.Err() != nil:
		return false, own // the client left
	}
	h.answerPullError(w, req, err)
	return false, own
}

// Bounds on one request's pull-through loop: own pulls (a second one only
// after waiting on another request's pull that did not help), and rounds
// overall (each waits for some pull of the repo to finish).
const (
	maxOwnPulls = 2
	maxRounds   = 16
)

// answerPullError passes an upstream failure on in the Hub's terms.
func (h *Handler) answerPullError(w http.ResponseWriter, req PullRequest, err error) {
	msg := err.Error()
	switch api.CodeOf(err) {
	case api.CodeRepoNotFound:
		hfError(w, http.StatusNotFound, codeRepoNotFound, "Repository not found (upstream: "+msg+")")
	case api.CodeRevisionNotFound:
		hfError(w, http.StatusNotFound, codeRevisionNotFound, "Invalid rev id: "+req.Revision+" (upstream: "+msg+")")
	case api.CodeEntryNotFound, api.CodeNoMatch:
		if req.Path == "" {
			// Nothing matched a repo-level pull; the repo exists but hal0
			// has nothing of it to list.
			hfError(w, http.StatusNotFound, codeRepoNotFound, "Repository not found (upstream: "+msg+")")
		} else {
			hfError(w, http.StatusNotFound, codeEntryNotFound, "Entry not found (upstream: "+msg+")")
		}
	case api.CodeGated:
		hfError(w, http.StatusForbidden, codeGatedRepo, msg)
	default:
		w.Header().Set("Retry-After", strconv.Itoa(int(transientTTL/time.Second)))
		hfError(w, http.StatusBadGateway, "", "hal0 could not get "+strings.TrimSpace(req.Repo+" "+req.Path)+" from its upstream hub: "+msg)
	}
}
