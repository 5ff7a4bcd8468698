package hfserve

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/jobs"
)

// Puller starts pull jobs and reports on them. hal0-apid's is
// apiserver.PullJobs: the job records and the runner that
// POST /api/models/{id}/pull uses, so a pull-through pull is an ordinary
// pull (hal0-pull@<ref>.service, `hal0 pull status`, cancel), and one
// already running for a ref is joined, not started twice.
type Puller interface {
	// Pull starts a pull of ref, or returns the job running for it.
	Pull(ctx context.Context, ref string) (*jobs.Job, error)
	// Job returns a job's record with its state as the API reports it (a
	// worker that died makes the job failed).
	Job(ctx context.Context, id string) (*jobs.Job, error)
	// Active returns the records of the jobs that are queued or running.
	Active(ctx context.Context) ([]*jobs.Job, error)
	// Current returns the newest job of ref (as Job does), or
	// jobs.ErrNotFound.
	Current(ctx context.Context, ref string) (*jobs.Job, error)
}

// A failed pull is answered from its job record for a while, so that a
// client retrying a file whose pull failed does not start a pull per
// retry.
const (
	definiteTTL  = 5 * time.Minute  // not found, gated: the answer will not change soon
	transientTTL = 15 * time.Second // network trouble: let the next retry try again
)

// How often a request waiting for a job to pin its files looks at it.
const pinPoll = 50 * time.Millisecond

// pullThrough is the handler's state for pull-through: the followers of
// files being streamed.
type pullThrough struct {
	jobs Puller
	now  func() time.Time
	logf func(string, ...any)

	ctx    context.Context // ends followers on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	trackers map[trackerKey]*tracker

	// starting serialises, per repo (striped), looking for a job that has
	// a file and starting one: requests for two shards of one set that
	// arrive together must not start two pulls of the set.
	starting [64]sync.Mutex
}

func (p *pullThrough) startLock(repo string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(repo))
	return &p.starting[h.Sum32()%uint32(len(p.starting))]
}

func newPullThrough(p Puller, now func() time.Time, logf func(string, ...any)) *pullThrough {
	ctx, cancel := context.WithCancel(context.Background())
	return &pullThrough{jobs: p, now: now, logf: logf, ctx: ctx, cancel: cancel, trackers: map[trackerKey]*tracker{}}
}

func (p *pullThrough) close() {
	p.cancel()
	p.wg.Wait()
}

// errPulling means the wait for upstream (a listing, a job to pin its
// files) ran out; the work goes on.
var errPulling = errors.New("pull in progress")

// errLookAgain means the job that had the file ended (installed it, or
// failed after someone else's pull brought it): the store has the answer.
var errLookAgain = errors.New("look again")

// pullRef is the ref of a pull-through pull of one file: pinned to the
// commit the listing named, so that a branch moving meanwhile cannot mix
// two commits' files. A GGUF shard brings its whole set.
func pullRef(repo, commit, path string) string { return repo + "@" + commit + "/" + path }

// jobForFile returns a running job that has pinned path of repo at
// commit, starting a pull of that file when none has. It waits (until
// deadline) for jobs of the repo that are still resolving, which may well
// bring the file, before it starts one of its own. installed reports
// whether the store has the file now.
func (p *pullThrough) jobForFile(ctx context.Context, repo, commit, path string, deadline time.Time, installed func() bool) (*jobs.Job, *jobs.PinnedFile, error) {
	want := pullRef(repo, commit, path)
	dead := map[string]bool{} // jobs found ended this call
	started := ""
	for round := 0; round < 8; round++ {
		j, pf, resolving, err := p.findOrStart(ctx, repo, commit, path, want, dead, &started, installed)
		if j != nil || err != nil {
			return j, pf, err
		}
		j, err = p.waitPinned(ctx, resolving.ID, deadline)
		if err != nil {
			return nil, nil, err
		}
		if j.State.Final() {
			dead[j.ID] = true
			if j.Ref == want || j.ID == started {
				return nil, nil, p.ended(want, j)
			}
			if j.State == jobs.Completed {
				return nil, nil, errLookAgain // it may have installed the file
			}
		}
	}
	return nil, nil, errPulling
}

// findOrStart is one round of jobForFile: the running job that pinned the
// file, or else the job to wait for (one of the repo that is resolving,
// or a new one started for the file).
func (p *pullThrough) findOrStart(ctx context.Context, repo, commit, path, want string, dead map[string]bool, started *string, installed func() bool) (*jobs.Job, *jobs.PinnedFile, *jobs.Job, error) {
	mu := p.startLock(repo)
	mu.Lock()
	defer mu.Unlock()
	active, err := p.jobs.Active(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	var resolving *jobs.Job
	for _, j := range active {
		if dead[j.ID] {
			continue
		}
		if j.Pinned == nil {
			if refRepo(j.Ref) == repo && (resolving == nil || j.Ref == want) {
				resolving = j
			}
			continue
		}
		if pinnedFile(j.Pinned, repo, commit, path) == nil {
			continue
		}
		cur, err := p.jobs.Job(ctx, j.ID)
		if err != nil {
			return nil, nil, nil, err
		}
		switch {
		case cur.State == jobs.Completed:
			return nil, nil, nil, errLookAgain
		case cur.State.Final():
			dead[j.ID] = true
			continue
		case cur.Pinned == nil:
			resolving = cur // a new run of the job; it pins again
			continue
		}
		return cur, pinnedFile(cur.Pinned, repo, commit, path), nil, nil
	}
	if resolving != nil {
		return nil, nil, resolving, nil
	}
	if *started != "" {
		// Our own job pinned files without this one, or ended
		// without a trace in the listing of active jobs.
		j, err := p.jobs.Job(ctx, *started)
		if err != nil {
			return nil, nil, nil, err
		}
		return nil, nil, nil, p.ended(want, j)
	}
	// The request looked the file up before it came here; a job that
	// ended since then may have installed it. Jobs install before their
	// record says they ended, and no job of the repo is active now, so
	// the store is the answer: another pull would fetch the file twice.
	if installed() {
		return nil, nil, nil, errLookAgain
	}
	if err := p.recentFailure(ctx, want); err != nil {
		return nil, nil, nil, err
	}
	j, err := p.jobs.Pull(ctx, want)
	if err != nil {
		return nil, nil, nil, err
	}
	*started = j.ID
	p.logf("hfserve: pulling %s through from upstream (job %s, %s)", want, j.ID, j.Unit)
	return nil, nil, j, nil
}

// ended turns the end of the job pulling want into an answer.
func (p *pullThrough) ended(want string, j *jobs.Job) error {
	switch j.State {
	case jobs.Completed:
		return errLookAgain
	case jobs.Queued, jobs.Running:
		// Pinned, but not this file: the listing and the pull disagree.
		return api.Errorf(api.CodeBadResponse, 0, "the pull of %s did not select the file", want)
	}
	return jobError(j)
}

func jobError(j *jobs.Job) error {
	code := j.ErrorCode
	if code == "" {
		code = api.CodeInternal
	}
	return api.Errorf(code, 0, "%s", strings.TrimSpace(j.Error))
}

// recentFailure returns the error of ref's last pull if it failed
// recently: not found and gated for definiteTTL, anything else for
// transientTTL.
func (p *pullThrough) recentFailure(ctx context.Context, ref string) error {
	j, err := p.jobs.Current(ctx, ref)
	if err != nil || j.State != jobs.Failed || j.FinishedAt == nil {
		return nil
	}
	err = jobError(j)
	ttl := transientTTL
	if definite(err) {
		ttl = definiteTTL
	}
	if p.now().Sub(*j.FinishedAt) < ttl {
		return err
	}
	return nil
}

// waitPinned waits until job id has pinned its files or ended.
func (p *pullThrough) waitPinned(ctx context.Context, id string, deadline time.Time) (*jobs.Job, error) {
	t := time.NewTicker(pinPoll)
	defer t.Stop()
	for {
		j, err := p.jobs.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		if j.Pinned != nil || j.State.Final() {
			return j, nil
		}
		if !time.Now().Before(deadline) {
			return nil, errPulling
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// waitEnded waits (until deadline) for a job to end: its stage is gone
// because it is installing.
func (p *pullThrough) waitEnded(ctx context.Context, id string, deadline time.Time) error {
	t := time.NewTicker(pinPoll)
	defer t.Stop()
	for {
		j, err := p.jobs.Job(ctx, id)
		if err != nil {
			return err
		}
		if j.State.Final() {
			return nil
		}
		if !time.Now().Before(deadline) {
			return errPulling
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func pinnedFile(pin *jobs.Pinned, repo, commit, path string) *jobs.PinnedFile {
	if pin == nil || pin.Repo != repo || !strings.EqualFold(pin.Commit, commit) {
		return nil
	}
	for i := range pin.Files {
		if pin.Files[i].Path == path {
			return &pin.Files[i]
		}
	}
	return nil
}

// refRepo is the "org/name" of a canonical HF ref.
func refRepo(ref string) string {
	org, rest, ok := strings.Cut(ref, "/")
	if !ok {
		return ""
	}
	end := strings.IndexAny(rest, "@:/")
	if end < 0 {
		end = len(rest)
	}
	return org + "/" + rest[:end]
}

func definite(err error) bool {
	switch api.CodeOf(err) {
	case api.CodeRepoNotFound, api.CodeRevisionNotFound, api.CodeEntryNotFound, api.CodeNoMatch,
		api.CodeGated, api.CodeInvalidRef, api.CodeUnsafePath:
		return true
	}
	return false
}

// serveFromPull answers a request for file f of repo at commit, which is
// listed upstream and not installed, from the pull job that has it (or a
// new one). It reports whether the caller should look the file up again
// (the job installed it meanwhile); otherwise it has answered.
func (h *Handler) serveFromPull(w http.ResponseWriter, r *http.Request, repo, commit string, f *file, raw bool) (again bool) {
	ctx := r.Context()
	deadline := time.Now().Add(h.opts.PullWait)
	j, pf, err := h.pt.jobForFile(ctx, repo, commit, f.path, deadline, func() bool { return h.installedAs(repo, commit, f) })
	switch {
	case errors.Is(err, errLookAgain):
		return true
	case errors.Is(err, errPulling):
		// huggingface_hub and hal0 both retry a 503 and honour
		// Retry-After; the pull carries on meanwhile.
		w.Header().Set("Retry-After", "5")
		hfError(w, http.StatusServiceUnavailable, "", fmt.Sprintf("hal0 is pulling %s from its upstream hub; retry in a few seconds", repo))
		return false
	case ctx.Err() != nil:
		return false // the client left
	case err != nil:
		answerPullError(w, repo, commit, f.path, err)
		return false
	}
	pin := pinnedAsFile(pf)
	if pin.size != f.size || pin.sha256 != f.sha256 || pin.blobID != f.blobID {
		// The job pinned the same commit, so this cannot differ from the
		// listing unless one of them is wrong.
		h.logf("hfserve: job %s pinned %s of %s@%s as %d bytes %s%s; the listing says %d bytes %s%s", j.ID, f.path, repo, commit, pin.size, pin.sha256, pin.blobID, f.size, f.sha256, f.blobID)
		hfError(w, http.StatusBadGateway, "", "hal0's pull of "+f.path+" and upstream's listing disagree about it; see the server log")
		return false
	}
	return h.streamFromJob(w, r, j, pf, f, raw, deadline)
}

// pinnedAsFile describes a pinned file the way the index does.
func pinnedAsFile(pf *jobs.PinnedFile) *file {
	rf := upstreamToRegistry(UpstreamFile{Path: pf.Path, Size: pf.Size, LFS: pf.LFS, SHA256: pf.SHA256, BlobID: pf.GitOID})
	f, err := newFile(rf)
	if err != nil {
		return &file{path: pf.Path, size: -1}
	}
	return f
}

// answerPullError passes an upstream failure on in the Hub's terms.
func answerPullError(w http.ResponseWriter, repo, rev, path string, err error) {
	msg := err.Error()
	switch api.CodeOf(err) {
	case api.CodeRepoNotFound:
		hfError(w, http.StatusNotFound, codeRepoNotFound, "Repository not found (upstream: "+msg+")")
	case api.CodeRevisionNotFound:
		hfError(w, http.StatusNotFound, codeRevisionNotFound, "Invalid rev id: "+rev+" (upstream: "+msg+")")
	case api.CodeEntryNotFound, api.CodeNoMatch:
		if path == "" {
			// Nothing matched a repo-level request; the repo exists but
			// hal0 has nothing of it to list.
			hfError(w, http.StatusNotFound, codeRepoNotFound, "Repository not found (upstream: "+msg+")")
		} else {
			hfError(w, http.StatusNotFound, codeEntryNotFound, "Entry not found (upstream: "+msg+")")
		}
	case api.CodeGated:
		hfError(w, http.StatusForbidden, codeGatedRepo, msg)
	default:
		w.Header().Set("Retry-After", strconv.Itoa(int(transientTTL/time.Second)))
		hfError(w, http.StatusBadGateway, "", "hal0 could not get "+strings.TrimSpace(repo+" "+path)+" from its upstream hub: "+msg)
	}
}
