// Package worker is hal0-pull: it runs one pull job for one ref, as
// hal0-pull@<ref>.service under systemd, as a child process of hal0-apid,
// or by hand. The job record is its contract with everybody else: it reads
// the job's options from it, writes progress to it at most every 500 ms,
// and writes the outcome itself, because systemd forgets a unit that
// exited successfully.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/flm"
	"github.com/hal0ai/hal0/internal/fsutil"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/progress"
	"github.com/hal0ai/hal0/internal/pull"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/sd"
)

// Options configure one worker run.
type Options struct {
	Ref   string // as given on the command line (%I)
	JobID string // optional: run this job record
	// Progress, when set, also draws progress for a person (the CLI's
	// --local mode); TTY selects the bar.
	Progress io.Writer
	TTY      bool
	Width    int
	Runner   string // recorded in the job: systemd, process or local
}

// Run executes the pull. The error carries the stable code that becomes
// the job's error_code and, through api.ExitCode, the exit status.
func Run(ctx context.Context, cfg *config.Config, o Options) (*registry.Model, error) {
	m, err := run(ctx, cfg, o)
	if err != nil && !errors.Is(err, errLogged) {
		sd.NewLogger(nil).Errorf("hal0-pull %s: %v", o.Ref, err)
	}
	var le *loggedError
	if errors.As(err, &le) {
		return nil, le.err
	}
	return m, err
}

// errLogged marks errors the run already wrote to the log with the job's
// fields, so Run does not print them twice.
var errLogged = errors.New("logged")

type loggedError struct{ err error }

func (e *loggedError) Error() string   { return e.err.Error() }
func (e *loggedError) Unwrap() []error { return []error{e.err, errLogged} }

func run(ctx context.Context, cfg *config.Config, o Options) (*registry.Model, error) {
	rf, err := ref.Parse(o.Ref)
	if err != nil {
		return nil, &api.Error{Code: api.CodeInvalidRef, Message: err.Error(), Err: err}
	}
	store := jobs.Open(cfg.Paths.JobsDir())
	id := rf.String()

	lock, err := store.AcquireRef(ctx, id)
	if errors.Is(err, fsutil.ErrLocked) {
		return nil, api.Errorf(api.CodeBusy, 0, "a pull of %s is already running (see `hal0 pull status %s`)", id, id)
	}
	if err != nil {
		return nil, api.Errorf(api.CodeIO, 0, "lock job of %s: %v", id, err)
	}
	defer lock.Unlock()

	job, err := pickJob(ctx, store, rf, o)
	if err != nil {
		return nil, err
	}
	log := sd.NewLogger(map[string]string{"HAL0_JOB_ID": job.ID, "HAL0_REF": id})

	now := time.Now().UTC()
	job, err = store.Update(ctx, job.ID, func(j *jobs.Job) error {
		j.State, j.Phase = jobs.Running, pull.PhaseResolving
		j.Attempts++
		j.PID = os.Getpid()
		j.Runner = o.Runner
		j.ErrorCode, j.Error, j.ExitStatus, j.FinishedAt = "", "", nil, nil
		j.Pinned = nil // a new run pins (and opens its partials) again
		if j.StartedAt == nil {
			j.StartedAt = &now
		}
		return nil
	})
	if err != nil {
		return nil, api.Errorf(api.CodeIO, 0, "update job record: %v", err)
	}
	sd.Ready()
	sd.Status("resolving %s", id)
	log.Printf("pull %s started (job %s, attempt %d)", id, job.ID, job.Attempts)

	h := start(ctx, cfg, rf, job, store, log)

	type result struct {
		m   *registry.Model
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := h.Wait(ctx)
		done <- result{m, err}
	}()

	rep := &reporter{store: store, id: job.ID, log: log, label: id, started: job.StartedAt}
	rep.meter.Observe(0, time.Now())
	if o.Progress != nil {
		rep.render = &progress.Renderer{W: o.Progress, TTY: o.TTY, Width: o.Width}
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var res result
loop:
	for {
		select {
		case <-tick.C:
			rep.report(ctx, h.Progress(), false)
		case res = <-done:
			break loop
		}
	}
	final := h.Progress()
	rep.report(context.WithoutCancel(ctx), final, true)

	// The outcome is written with a fresh context: a cancelled pull must
	// still record that it was cancelled.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	fin := time.Now().UTC()
	_, werr := store.Update(wctx, job.ID, func(j *jobs.Job) error {
		j.FinishedAt = &fin
		j.PID = 0
		j.RateBPS = 0
		j.BytesDone = max(j.BytesDone, final.Done)
		if res.err == nil {
			j.State, j.Phase = jobs.Completed, pull.PhaseDone
			j.Path, j.Commit = res.m.Path, res.m.Commit
			j.BytesDone = j.BytesTotal
			return nil
		}
		j.ErrorCode = pull.ErrorCode(res.err)
		j.Error = res.err.Error()
		j.State = jobs.Failed
		if j.ErrorCode == api.CodeCancelled || ctx.Err() != nil {
			j.State, j.ErrorCode = jobs.Cancelled, api.CodeCancelled
		}
		code := api.ExitCode(res.err)
		j.ExitStatus = &code
		return nil
	})
	if werr != nil {
		log.Errorf("could not record the outcome of job %s: %v", job.ID, werr)
	}
	if res.err != nil {
		if ctx.Err() != nil && api.CodeOf(res.err) != api.CodeCancelled {
			res.err = api.Errorf(api.CodeCancelled, 0, "pull of %s cancelled; partial data is kept: pull again to resume", id)
		}
		sd.Status("failed: %s", res.err)
		log.Errorf("pull %s failed: %s [%s]", id, res.err, api.CodeOf(res.err))
		if rep.render != nil {
			rep.render.Done("")
		}
		return nil, &loggedError{res.err}
	}
	sd.Status("completed %s", id)
	fields := map[string]string{"HAL0_BYTES": strconv.FormatInt(final.Total, 10)}
	if res.m.Commit != "" { // FLM models have none
		fields["HAL0_COMMIT"] = res.m.Commit
	}
	log.With(fields, "pull %s completed: %s in %s", id, progress.Bytes(res.m.SizeBytes), res.m.Path)
	if rep.render != nil {
		rep.render.Done(fmt.Sprintf("%s: %s installed in %s", id, progress.Bytes(res.m.SizeBytes), res.m.Path))
	}
	return res.m, nil
}

func jobPinned(p *pull.Pinned) *jobs.Pinned {
	out := &jobs.Pinned{Repo: p.Repo, Revision: p.Revision, Commit: p.Commit, Endpoint: p.Endpoint, Gated: p.Gated, Stage: p.Stage}
	for _, f := range p.Files {
		out.Files = append(out.Files, jobs.PinnedFile{Path: f.Path, Size: f.Size, LFS: f.LFS, SHA256: f.SHA256, GitOID: f.GitOID})
	}
	return out
}

// handle is a pull in progress: the Hugging Face engine's, or FLM's.
type handle interface {
	Progress() pull.Progress
	Wait(ctx context.Context) (*registry.Model, error)
}

// start prepares the pull of rf: FLM tags go to flm (internal/flm),
// everything else to the download engine.
func start(ctx context.Context, cfg *config.Config, rf ref.Ref, job *jobs.Job, store *jobs.Store, log *sd.Logger) handle {
	if rf.Kind == ref.KindFLM {
		p := flm.NewPuller(cfg)
		p.Logf = log.Printf
		return p.Start(rf.Tag)
	}
	eng := pull.New(cfg)
	eng.Logf = log.Printf
	req := pull.Request{Ref: rf, Endpoint: job.Options.Endpoint, Include: job.Options.Include, Exclude: job.Options.Exclude, DiscardPartial: job.Options.DiscardPartial}
	if job.Options.Revision != "" && rf.Revision == "" {
		req.Ref.Revision = job.Options.Revision
	}
	if job.Options.Quant != "" && rf.Quant == "" && rf.File == "" {
		req.Ref.Quant = job.Options.Quant
	}
	req.OnPinned = func(p *pull.Pinned) {
		// Written at once, not with the next progress report: hal0-apid
		// waits for it to serve the files while they download.
		if _, err := store.Update(ctx, job.ID, func(j *jobs.Job) error {
			j.Pinned = jobPinned(p)
			j.Commit = p.Commit
			return nil
		}); err != nil && ctx.Err() == nil {
			log.Errorf("record the pinned files of job %s: %v", job.ID, err)
		}
	}
	return eng.Start(req)
}

// pickJob finds the job to run: the named one, the ref's queued or
// interrupted one (so a restart resumes it), or a new record for a pull
// started by hand.
func pickJob(ctx context.Context, store *jobs.Store, rf ref.Ref, o Options) (*jobs.Job, error) {
	id := rf.String()
	if o.JobID != "" {
		j, err := store.Get(o.JobID)
		if err != nil {
			return nil, api.Errorf(api.CodeJobMissing, 0, "job %s: %v", o.JobID, err)
		}
		if j.Ref != id {
			return nil, api.Errorf(api.CodeBadRequest, 0, "job %s is for %s, not %s", o.JobID, j.Ref, id)
		}
		return j, nil
	}
	j, _, err := store.Begin(ctx, jobs.Job{Ref: id, Kind: rf.Kind.String(), Unit: rf.Unit(), Runner: o.Runner})
	if err != nil {
		return nil, api.Errorf(api.CodeIO, 0, "create job record: %v", err)
	}
	return j, nil
}

// reporter fans progress out: the job record (every call, i.e. at most
// every 500 ms), sd_notify STATUS= (every second), the journal (every 10 s,
// with structured fields) and an optional terminal renderer.
type reporter struct {
	store      *jobs.Store
	id         string
	log        *sd.Logger
	label      string
	started    *time.Time
	meter      progress.Meter
	lastStatus time.Time
	lastLog    time.Time
	render     *progress.Renderer
}

func (r *reporter) report(ctx context.Context, p pull.Progress, final bool) {
	now := time.Now()
	// The rate is network throughput: bytes found on disk by a resume are
	// not speed.
	rate := r.meter.Observe(p.Received, now)
	_, err := r.store.Update(ctx, r.id, func(j *jobs.Job) error {
		j.Phase = p.Phase
		j.BytesTotal, j.BytesDone = p.Total, max(j.BytesDone, p.Done)
		j.FilesTotal, j.FilesDone = p.FilesTotal, p.FilesDone
		j.CurrentFile, j.RateBPS, j.Resumed = p.CurrentFile, rate, p.Resumed
		if p.Commit != "" {
			j.Commit = p.Commit
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		r.log.Errorf("update job record: %v", err)
	}
	st := progress.State{Label: r.label, Phase: p.Phase, Done: p.Done, Total: p.Total, Rate: rate, File: p.CurrentFile}
	if r.started != nil {
		st.Elapsed = now.Sub(*r.started)
	}
	if now.Sub(r.lastStatus) >= time.Second || final {
		r.lastStatus = now
		sd.Status("%s", progress.Line(st))
	}
	if r.render == nil && now.Sub(r.lastLog) >= 10*time.Second && p.Total > 0 && !final {
		r.lastLog = now
		r.log.With(map[string]string{"HAL0_BYTES": strconv.FormatInt(p.Done, 10), "HAL0_TOTAL": strconv.FormatInt(p.Total, 10)}, "%s", progress.Line(st))
	}
	if r.render != nil {
		r.render.Update(st, now)
	}
}

// SignalContext returns a context cancelled by SIGTERM or SIGINT, which is
// how systemd (StopUnit, `systemctl stop`) and Ctrl-C cancel a pull.
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, syscall.SIGTERM, syscall.SIGINT)
}
