package apiserver

import (
	"context"
	"net/http"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/ref"
)

// Privileged reports whether r comes from the box's owner: over the unix
// socket (trusted through its permissions) or with the admin token. The
// /hf/ endpoint lets such requests read without its read token, and
// download gated models.
func (s *Server) Privileged(r *http.Request) bool { return viaUnix(r) || s.authorized(r) }

// PullJobs starts and follows pulls for other parts of hal0-apid (the
// /hf/ pull-through) exactly as POST /api/models/{id}/pull does: the same
// job records, the same runner (hal0-pull@<ref>.service under systemd, a
// child process in embedded mode), one job per ref.
type PullJobs struct{ s *Server }

// PullJobs returns the server's pull starter.
func (s *Server) PullJobs() PullJobs { return PullJobs{s} }

// Pull starts a pull of ref, or returns the job already running for it.
func (p PullJobs) Pull(ctx context.Context, refStr string) (*jobs.Job, error) {
	rf, err := ref.Parse(refStr)
	if err != nil {
		return nil, &api.Error{Code: api.CodeInvalidRef, Status: http.StatusBadRequest, Message: err.Error(), Err: err}
	}
	if rf.Kind != ref.KindHF {
		return nil, api.Errorf(api.CodeUnsupported, http.StatusBadRequest, "%s is not a Hugging Face ref", rf)
	}
	j, _, err := p.s.beginPull(ctx, rf, jobs.Options{})
	if err != nil {
		return nil, err
	}
	return p.corrected(ctx, j), nil
}

// Job returns a job with its state as the API reports it: a worker that
// died without recording an outcome makes the job failed.
func (p PullJobs) Job(ctx context.Context, id string) (*jobs.Job, error) {
	j, err := p.s.Jobs.Get(id)
	if err != nil {
		return nil, err
	}
	return p.corrected(ctx, j), nil
}

// Active returns the records of jobs that are queued or running. They are
// not checked against the runner; Job is, for the one a caller picks.
func (p PullJobs) Active(ctx context.Context) ([]*jobs.Job, error) {
	all, errs := p.s.Jobs.List()
	for _, e := range errs {
		p.s.logf("jobs: %v", e)
	}
	var out []*jobs.Job
	for _, j := range all {
		if !j.State.Final() {
			out = append(out, j)
		}
	}
	return out, nil
}

// Current returns the newest job of ref, corrected as Job does.
func (p PullJobs) Current(ctx context.Context, refStr string) (*jobs.Job, error) {
	rf, err := ref.Parse(refStr)
	if err != nil {
		return nil, err
	}
	j, err := p.s.Jobs.Current(rf.String())
	if err != nil {
		return nil, err
	}
	return p.corrected(ctx, j), nil
}

func (p PullJobs) corrected(ctx context.Context, j *jobs.Job) *jobs.Job {
	if j.State.Final() {
		return j
	}
	st := p.s.merge(ctx, j)
	if st.State != string(j.State) {
		c := *j
		c.State, c.ErrorCode, c.Error = jobs.State(st.State), st.ErrorCode, st.Error
		return &c
	}
	return j
}
