package api

import "time"

// PullRequest is the optional body of POST /api/models/{id}/pull.
type PullRequest struct {
	Endpoint string   `json:"endpoint,omitempty"`
	Revision string   `json:"revision,omitempty"`
	Include  []string `json:"include,omitempty"`
	Exclude  []string `json:"exclude,omitempty"`
	Quant    string   `json:"quant,omitempty"`
	Format   string   `json:"format,omitempty"` // dir or qcow2
}

// PullStatus is a pull job as the API reports it: the job record merged
// with what systemd (or the child process) says about its worker.
type PullStatus struct {
	JobID      string `json:"job_id"`
	ModelID    string `json:"model_id"`
	Kind       string `json:"kind"` // hf or flm
	State      string `json:"state"`
	Phase      string `json:"phase,omitempty"`
	BytesTotal int64  `json:"bytes_total"`
	BytesDone  int64  `json:"bytes_done"`
	// RateBPS is the recent network throughput in bytes per second.
	RateBPS float64 `json:"rate_bps"`
	// ElapsedS is seconds since the job started (or until it ended).
	ElapsedS float64 `json:"elapsed_s"`
	// ETAS is the estimated seconds left; null when unknown.
	ETAS        *float64 `json:"eta_s"`
	FilesTotal  int      `json:"files_total"`
	FilesDone   int      `json:"files_done"`
	CurrentFile string   `json:"current_file,omitempty"`
	Commit      string   `json:"commit,omitempty"`
	Path        string   `json:"path,omitempty"`
	ErrorCode   string   `json:"error_code,omitempty"`
	Error       string   `json:"error,omitempty"`
	Unit        string   `json:"unit"`
	UnitState   string   `json:"unit_state,omitempty"` // systemd ActiveState, or "running"/"exited" for a child process
	ExitStatus  *int     `json:"exit_status,omitempty"`
	Runner      string   `json:"runner,omitempty"` // systemd, process, local or manual
	Attempts    int      `json:"attempts"`
	// Existing is true when a POST found this job already running instead
	// of starting a new one.
	Existing   bool       `json:"existing,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// Final reports whether the job has ended.
func (s *PullStatus) Final() bool {
	return s.State == "completed" || s.State == "failed" || s.State == "cancelled"
}

// Health is GET /api/health.
type Health struct {
	Status string `json:"status"` // "ok"
	Runner string `json:"runner"` // systemd or process
	Jobs   int    `json:"running_jobs"`
}

// Version is GET /api/version.
type Version struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	API     int    `json:"api"`
}

// APIVersion is bumped on incompatible wire changes.
const APIVersion = 1
