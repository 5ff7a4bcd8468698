// Package clienttest runs a real hal0-apid for tests of its clients: the
// API server on a unix socket and on 127.0.0.1, real job and registry
// stores under a temporary HAL0_HOME, pulls run by runner.Process as
// hal0-pull child processes built from this tree, and the in-repo hub
// (internal/hubtest) standing in for huggingface.co. Nothing leaves
// loopback.
//
// Only runner.Process is used: booting systemd is the business of the
// live tests in internal/livesystemd, and the process runner starts the
// same hal0-pull and reads the same job records.
package clienttest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/apiserver"
	"github.com/hal0ai/hal0/internal/client"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/flm"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/runner"
	"github.com/hal0ai/hal0/internal/testbin"
)

// Model is the ref every Env's hub serves: three 4 MiB GGUF shards.
const (
	Repo      = "demo/m"
	Model     = "demo/m:Q4_K_M"
	ShardSize = 4 << 20
	Shards    = 3
)

// Token is the API bearer token of every Env.
const Token = "clienttest-token"

// BuildWorker builds hal0-pull into a new temporary directory. Call it from
// TestMain and remove the directory (filepath.Dir of the result) after the
// tests.
func BuildWorker() (string, error) {
	dir, err := os.MkdirTemp("", "hal0-clienttest")
	if err != nil {
		return "", err
	}
	p, err := testbin.Build(dir, "github.com/hal0ai/hal0/hal0-pull")
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return p[0], nil
}

// Env is one running hal0-apid with its hub.
type Env struct {
	Hub    *hubtest.Hub
	Home   string // HAL0_HOME
	Cfg    *config.Config
	Server *apiserver.Server
	Runner *Runner
	Socket string // the unix socket (Cfg.Paths.APISocket())
	URL    string // http://127.0.0.1:PORT
	Total  int64  // bytes of Model

	mu   sync.Mutex
	reqs []string // "METHOD RequestURI" as received
	vars map[string]string
}

// UseFLM points hal0-apid and the workers it starts at an flm: vars are
// HAL0_FLM_* settings and the knobs of flmtest's stand-in
// (flmtest.Env.Vars). Call it before the first request that needs flm.
func (e *Env) UseFLM(t testing.TB, vars map[string]string) {
	t.Helper()
	for k, v := range vars {
		e.vars[k] = v
		e.Runner.Process.Env = append(e.Runner.Process.Env, k+"="+v)
	}
	cfg, err := config.LoadEnv(func(k string) (string, bool) { v, ok := e.vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	e.Cfg.FLM = cfg.FLM
	p := flm.NewProber(e.Cfg)
	p.Env = e.Runner.Process.Env
	e.Server.FLM = p
}

// New starts an Env; everything stops when t ends. pullBin comes from
// BuildWorker.
func New(t testing.TB, pullBin string) *Env {
	t.Helper()
	hub, err := hubtest.New(hubtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close) // last: workers must stop first
	files := hubtest.GenerateGGUFShards("", "m", "Q4_K_M", Shards, ShardSize, 1)
	hub.AddRepo(hubtest.Repo{ID: Repo, Files: files})
	e := &Env{Hub: hub, Home: t.TempDir()}
	for _, f := range files {
		e.Total += int64(len(f.Data))
	}

	vars := map[string]string{
		"HAL0_HOME": e.Home, "HF_ENDPOINT": hub.URL, "HAL0_DISK_RESERVE": "0",
		"HAL0_PULL_CHUNK_SIZE": "1MiB", "HAL0_PULL_CONNECTIONS": "4", "HAL0_API_TOKEN": Token,
		// No flm unless a test asks for the stand-in (UseFLM): the default
		// runtime would run podman.
		"HAL0_FLM_RUNTIME": "host", "HAL0_FLM_PATH": filepath.Join(e.Home, "no-flm"),
	}
	e.vars = vars
	// A unix socket path must fit in 108 bytes; long test names can push
	// the temporary HAL0_HOME past that.
	if len(filepath.Join(e.Home, config.DefaultRuntimeDir, "api.sock")) > 100 {
		short, err := os.MkdirTemp("", "h0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(short) })
		vars["HAL0_RUNTIME_DIR"] = short
	}
	cfg, err := config.LoadEnv(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	e.Cfg = cfg
	e.Socket = cfg.Paths.APISocket()

	// The worker gets a clean environment: an HF_TOKEN of the machine
	// running the tests would make the hub answer 401.
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.Home}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	logPath := filepath.Join(e.Home, "apid.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	e.Runner = &Runner{Process: &runner.Process{Bin: pullBin, Env: env, Stderr: logf, StopGrace: 10 * time.Second}}
	e.Server = &apiserver.Server{
		Cfg: cfg, Jobs: jobs.Open(cfg.Paths.JobsDir()), Registry: registry.Open(cfg.Paths.RegistryFile()),
		Runner: e.Runner, Token: cfg.API.Token, EventInterval: 20 * time.Millisecond,
		Logf: func(format string, a ...any) {
			logMu.Lock()
			defer logMu.Unlock()
			fmt.Fprintf(logf, "apid: "+format+"\n", a...)
		},
	}
	h := e.Server.Handler()
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.mu.Lock()
			e.reqs = append(e.reqs, r.Method+" "+r.RequestURI)
			e.mu.Unlock()
			h.ServeHTTP(w, r)
		}),
		ConnContext: apiserver.ConnContext,
	}
	if err := os.MkdirAll(filepath.Dir(e.Socket), 0o755); err != nil {
		t.Fatal(err)
	}
	ul, err := net.Listen("unix", e.Socket)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.URL = "http://" + tl.Addr().String()
	go hs.Serve(ul)
	go hs.Serve(tl)
	t.Cleanup(func() {
		hs.Close()
		if t.Failed() {
			logMu.Lock()
			b, _ := os.ReadFile(logPath)
			logMu.Unlock()
			t.Logf("hal0-apid and worker log:\n%s", b)
		}
	})
	t.Cleanup(e.Runner.stopAll) // first: stop workers still running
	return e
}

// Client returns a client of the unix socket.
func (e *Env) Client(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.New("unix:"+e.Socket, config.Secret{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Requests returns "METHOD RequestURI" of every request so far, as the
// server received them (escaping intact).
func (e *Env) Requests() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.reqs...)
}

// Stall makes every CDN response stop after 512 KiB for a minute, so a
// pull stays mid-way until it is cancelled (the worker's stall timeout of
// 30 s is longer than any test waits).
func (e *Env) Stall() {
	e.Hub.AddFault(hubtest.Fault{Where: "cdn", StallAt: 512 << 10, StallFor: time.Minute})
}

// WaitPull polls the pull status of id through the API until cond holds,
// for at most 30 s.
func (e *Env) WaitPull(t testing.TB, id string, cond func(*api.PullStatus) bool) *api.PullStatus {
	t.Helper()
	c := e.Client(t)
	deadline := time.Now().Add(30 * time.Second)
	var last *api.PullStatus
	var lastErr error
	for time.Now().Before(deadline) {
		st, err := c.PullStatus(context.Background(), id)
		if err == nil && cond(st) {
			return st
		}
		last, lastErr = st, err
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pull of %s never reached the awaited state; last %+v, %v", id, last, lastErr)
	return nil
}

// Runner is runner.Process with a switch that holds Stop, standing in for
// a systemd stop job that waits out TimeoutStopSec: tests use it to catch a
// job between "cancel requested" and "cancelled".
type Runner struct {
	*runner.Process

	mu      sync.Mutex
	hold    chan struct{} // while non-nil, Stop waits for it to close
	release func()        // closes hold once
	entered chan string   // job ids, as held Stops begin
	jobs    map[string]*jobs.Job
}

// Start records the job, so stopAll can end its worker after the test.
func (r *Runner) Start(ctx context.Context, j *jobs.Job) error {
	r.mu.Lock()
	if r.jobs == nil {
		r.jobs = map[string]*jobs.Job{}
	}
	r.jobs[j.ID] = j
	r.mu.Unlock()
	return r.Process.Start(ctx, j)
}

// HoldStop makes Stop wait until release is called. entered receives the
// job id when a Stop begins waiting.
func (r *Runner) HoldStop() (entered <-chan string, release func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := make(chan struct{})
	var once sync.Once
	rel := func() {
		once.Do(func() {
			r.mu.Lock()
			if r.hold == h {
				r.hold, r.release = nil, nil
			}
			r.mu.Unlock()
			close(h)
		})
	}
	r.hold, r.release, r.entered = h, rel, make(chan string, 8)
	return r.entered, rel
}

// Stop waits while held, then stops the worker.
func (r *Runner) Stop(ctx context.Context, j *jobs.Job) error {
	r.mu.Lock()
	h, entered := r.hold, r.entered
	r.mu.Unlock()
	if h != nil {
		entered <- j.ID
		select {
		case <-h:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return r.Process.Stop(ctx, j)
}

func (r *Runner) stopAll() {
	r.mu.Lock()
	rel := r.release
	r.mu.Unlock()
	if rel != nil {
		rel()
	}
	r.mu.Lock()
	all := make([]*jobs.Job, 0, len(r.jobs))
	for _, j := range r.jobs {
		all = append(all, j)
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, j := range all {
		if st, _ := r.Process.State(ctx, j); st.Active {
			r.Process.Stop(ctx, j)
		}
	}
}
