package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/runner"
	"github.com/hal0ai/hal0/internal/unitname"
)

// queuedGrace is how long a queued job may wait for its worker before a
// missing worker counts as dead.
const queuedGrace = 2 * time.Minute

// merge builds the API view of a job: the record, corrected by what the
// runner knows. A record that says queued or running while no worker holds
// the job's lock and the runner reports nothing alive belongs to a worker
// that died (kill -9, OOM, a failed unit): it is reported failed, with the
// exit status and where to look.
func (s *Server) merge(ctx context.Context, j *jobs.Job) *api.PullStatus {
	st := status(j, s.now())
	if j.State.Final() {
		return st
	}
	rs, err := s.Runner.State(ctx, j)
	if err != nil {
		s.logf("state of %s: %v", j.Unit, err)
	}
	if rs.Active && !s.Jobs.WorkerAlive(j.Ref) {
		// The runner may answer from a cache a few hundred milliseconds
		// old; a unit it calls active whose worker holds no lock has just
		// started or just died, and only a fresh look tells which.
		if fresh, err := runner.FreshState(ctx, s.Runner, j); err == nil {
			rs = fresh
		}
	}
	st.UnitState = rs.UnitState
	alive := rs.Active || s.Jobs.WorkerAlive(j.Ref)
	if alive {
		return st
	}
	// The record was read before the liveness checks, and a worker that
	// finished meanwhile wrote its outcome before it let go of the job:
	// read it again before calling the worker dead, or a pull completing
	// right now would be reported as died.
	if cur, err := s.Jobs.Get(j.ID); err == nil && cur.State.Final() {
		return status(cur, s.now())
	}
	if j.State == jobs.Queued && s.now().Sub(j.CreatedAt) < queuedGrace && rs.ExitStatus == nil && rs.Signal == 0 && !j.CancelRequested {
		return st // the worker may not have started yet
	}
	if j.CancelRequested {
		st.State, st.ErrorCode, st.Error = string(jobs.Cancelled), api.CodeCancelled, "pull cancelled"
		return st
	}
	st.State = string(jobs.Failed)
	st.ErrorCode = api.CodeWorkerDied
	how := "the worker stopped without recording an outcome"
	switch {
	case rs.Signal != 0:
		how = fmt.Sprintf("the worker was killed by signal %d", rs.Signal)
	case rs.ExitStatus != nil:
		how = fmt.Sprintf("the worker exited with status %d", *rs.ExitStatus)
		st.ExitStatus = rs.ExitStatus
	}
	hint := "journalctl -u " + unitname.ShellQuote(j.Unit)
	if s.Runner.Name() != "systemd" {
		hint = "the hal0-apid log"
	}
	st.Error = fmt.Sprintf("%s; see %s. Pull again to resume from the partial data.", how, hint)
	return st
}

func status(j *jobs.Job, now time.Time) *api.PullStatus {
	st := &api.PullStatus{
		JobID: j.ID, ModelID: j.Ref, Kind: j.Kind, State: string(j.State), Phase: j.Phase,
		BytesTotal: j.BytesTotal, BytesDone: j.BytesDone, RateBPS: j.RateBPS,
		ElapsedS: j.Elapsed(now).Seconds(), FilesTotal: j.FilesTotal, FilesDone: j.FilesDone,
		CurrentFile: j.CurrentFile, Commit: j.Commit, Path: j.Path, ErrorCode: j.ErrorCode, Error: j.Error,
		Unit: j.Unit, ExitStatus: j.ExitStatus, Runner: j.Runner, Attempts: j.Attempts,
		CreatedAt: j.CreatedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt,
	}
	if eta := j.ETA(); eta >= 0 {
		v := eta.Seconds()
		st.ETAS = &v
	}
	if j.State.Final() {
		st.RateBPS = 0
	}
	return st
}

func (s *Server) startPull(w http.ResponseWriter, r *http.Request, rf ref.Ref) {
	var body api.PullRequest
	if err := decodeBody(r, &body); err != nil {
		writeErr(w, err)
		return
	}
	switch rf.Kind {
	case ref.KindFLM:
		if err := s.checkFLMPull(r.Context(), rf, body); err != nil {
			writeErr(w, err)
			return
		}
		s.respondPull(w, r, rf, jobs.Options{})
		return
	case ref.KindLocal:
		writeErr(w, api.Errorf(api.CodeUnsupported, http.StatusBadRequest, "%s is a local model id, not something to pull; use a Hugging Face ref such as org/name:Q4_K_M", rf))
		return
	}
	switch body.Format {
	case "", "dir":
	case "qcow2":
		rf.Format = ref.FormatQCOW2
	default:
		writeErr(w, api.Errorf(api.CodeBadRequest, http.StatusBadRequest, "format %q: use dir or qcow2", body.Format))
		return
	}
	if body.Endpoint != "" && !strings.HasPrefix(body.Endpoint, "http://") && !strings.HasPrefix(body.Endpoint, "https://") {
		writeErr(w, api.Errorf(api.CodeBadRequest, http.StatusBadRequest, "endpoint %q is not an http(s) URL", body.Endpoint))
		return
	}
	if body.Quant != "" && rf.Quant == "" && rf.File == "" {
		// Fold the quant into the ref so that the job, the unit and the
		// registry id all name the same thing.
		rf.Quant = strings.ToUpper(body.Quant)
		if _, err := ref.Parse(rf.String()); err != nil {
			writeErr(w, &api.Error{Code: api.CodeInvalidRef, Status: http.StatusBadRequest, Message: fmt.Sprintf("quant %q: %v", body.Quant, err)})
			return
		}
	}
	if body.Revision != "" && rf.Revision == "" {
		rf.Revision = body.Revision
		if _, err := ref.Parse(rf.String()); err != nil {
			writeErr(w, &api.Error{Code: api.CodeInvalidRef, Status: http.StatusBadRequest, Message: err.Error()})
			return
		}
	}
	s.respondPull(w, r, rf, jobs.Options{Endpoint: body.Endpoint, Include: body.Include, Exclude: body.Exclude, Format: body.Format})
}

// respondPull starts (or joins) the pull of rf and answers 202 with its
// status.
func (s *Server) respondPull(w http.ResponseWriter, r *http.Request, rf ref.Ref, opts jobs.Options) {
	ctx := r.Context()
	j, existing, err := s.beginPull(ctx, rf, opts)
	if err != nil {
		writeErr(w, err)
		return
	}
	st := s.merge(ctx, j)
	st.Existing = existing
	writeJSON(w, http.StatusAccepted, st)
}

// beginPull starts a pull of rf as a job run by the runner, or returns the
// job already running for rf (existing). A job whose worker died is taken
// up again: the engine resumes from the partial data it left. A runner
// that cannot start the worker leaves the job failed, with the reason.
func (s *Server) beginPull(ctx context.Context, rf ref.Ref, opts jobs.Options) (*jobs.Job, bool, error) {
	tmpl := jobs.Job{Ref: rf.String(), Kind: rf.Kind.String(), Unit: rf.Unit(), Runner: s.Runner.Name(), Options: opts}
	j, created, err := s.Jobs.Begin(ctx, tmpl)
	if err != nil {
		return nil, false, api.Errorf(api.CodeInternal, http.StatusInternalServerError, "create job: %v", err)
	}
	if !created {
		if st := s.merge(ctx, j); !st.Final() {
			return j, true, nil
		}
		// The worker died: take the same job up again. The engine
		// resumes from the partial data it left.
		j, err = s.Jobs.Update(ctx, j.ID, func(x *jobs.Job) error {
			x.State, x.ErrorCode, x.Error, x.CancelRequested = jobs.Queued, "", "", false
			x.ExitStatus, x.FinishedAt, x.PID = nil, nil, 0
			x.Runner = s.Runner.Name()
			x.CreatedAt = s.now().UTC()
			return nil
		})
		if err != nil {
			return nil, false, api.Errorf(api.CodeInternal, http.StatusInternalServerError, "update job: %v", err)
		}
	}
	if err := s.Runner.Start(ctx, j); err != nil {
		s.logf("start %s: %v", j.Unit, err)
		// The worker may have run and recorded why it failed; otherwise
		// record the start failure so the job does not hang as queued.
		fin := s.now().UTC()
		j2, _ := s.Jobs.Update(context.WithoutCancel(ctx), j.ID, func(x *jobs.Job) error {
			if !x.State.Final() {
				x.State, x.ErrorCode, x.FinishedAt = jobs.Failed, api.CodeWorkerDied, &fin
				x.Error = fmt.Sprintf("could not start %s: %v", x.Unit, err)
			}
			return nil
		})
		if j2 != nil {
			j = j2
		}
	}
	return j, false, nil
}

func (s *Server) currentJob(w http.ResponseWriter, rf ref.Ref) *jobs.Job {
	j, err := s.Jobs.Current(rf.String())
	if errors.Is(err, jobs.ErrNotFound) {
		writeErr(w, api.Errorf(api.CodeJobMissing, http.StatusNotFound, "no pull job for %s; start one with POST /api/models/{id}/pull", rf))
		return nil
	}
	if err != nil {
		writeErr(w, api.Errorf(api.CodeInternal, http.StatusInternalServerError, "%v", err))
		return nil
	}
	return j
}

func (s *Server) pullStatus(w http.ResponseWriter, r *http.Request, rf ref.Ref) {
	if j := s.currentJob(w, rf); j != nil {
		writeJSON(w, http.StatusOK, s.merge(r.Context(), j))
	}
}

// cancelPull is idempotent: cancelling a finished job returns it as it
// is.
func (s *Server) cancelPull(w http.ResponseWriter, r *http.Request, rf ref.Ref) {
	j := s.currentJob(w, rf)
	if j == nil {
		return
	}
	ctx := r.Context()
	if j.State.Final() {
		writeJSON(w, http.StatusOK, s.merge(ctx, j))
		return
	}
	j, err := s.Jobs.Update(ctx, j.ID, func(x *jobs.Job) error { x.CancelRequested = true; return nil })
	if err != nil {
		writeErr(w, api.Errorf(api.CodeInternal, http.StatusInternalServerError, "%v", err))
		return
	}
	if err := s.Runner.Stop(ctx, j); err != nil {
		s.logf("stop %s: %v", j.Unit, err)
	}
	// If no worker was left to record the cancel, record it here.
	st := s.merge(ctx, j)
	if st.State == string(jobs.Cancelled) && !j.State.Final() {
		fin := s.now().UTC()
		if j2, err := s.Jobs.Update(ctx, j.ID, func(x *jobs.Job) error {
			if !x.State.Final() {
				x.State, x.ErrorCode, x.Error, x.FinishedAt = jobs.Cancelled, api.CodeCancelled, "pull cancelled", &fin
			}
			return nil
		}); err == nil {
			st = s.merge(ctx, j2)
		}
	} else if j2, err := s.Jobs.Get(j.ID); err == nil {
		st = s.merge(ctx, j2)
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) listPulls(w http.ResponseWriter, r *http.Request) {
	all, errs := s.Jobs.List()
	for _, e := range errs {
		s.logf("jobs: %v", e)
	}
	out := make([]*api.PullStatus, 0, len(all))
	for i, j := range all {
		if i >= 200 {
			break
		}
		out = append(out, s.merge(r.Context(), j))
	}
	writeJSON(w, http.StatusOK, out)
}

// pullEvents streams the job's status as server-sent events: one event at
// once, one whenever the status changes, a comment every 15 s to keep
// proxies from closing the stream, and a last event with the final state.
func (s *Server) pullEvents(w http.ResponseWriter, r *http.Request, rf ref.Ref) {
	j := s.currentJob(w, rf)
	if j == nil {
		return
	}
	id := j.ID
	s.pollEvents(w, r, "status", func(ctx context.Context) (key, data []byte, final, ok bool) {
		cur, err := s.Jobs.Get(id)
		if err != nil {
			return nil, nil, false, false
		}
		st := s.merge(ctx, cur)
		st.ElapsedS = 0 // keep unchanged states from looking new every tick
		key, _ = json.Marshal(st)
		st.ElapsedS = cur.Elapsed(s.now()).Seconds()
		data, _ = json.Marshal(st)
		return key, data, st.Final(), true
	})
}
