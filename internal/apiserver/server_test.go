package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/runner"
)

// fakeRunner stands in for systemd in these handler tests (the live tests
// in internal/apid drive the real one): it records calls and reports
// whatever state the test sets.
type fakeRunner struct {
	mu     sync.Mutex
	starts []string
	stops  []string
	state  map[string]runner.State // by job id
	onStop func(j *jobs.Job)
	// onState runs inside State, as a worker finishing while hal0-apid
	// looks at it would.
	onState func(j *jobs.Job)
}

func (f *fakeRunner) Name() string { return "systemd" }
func (f *fakeRunner) Start(ctx context.Context, j *jobs.Job) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts = append(f.starts, j.Unit)
	f.state[j.ID] = runner.State{Active: true, UnitState: "active"}
	return nil
}
func (f *fakeRunner) Stop(ctx context.Context, j *jobs.Job) error {
	f.mu.Lock()
	f.stops = append(f.stops, j.Unit)
	f.state[j.ID] = runner.State{UnitState: "inactive"}
	cb := f.onStop
	f.mu.Unlock()
	if cb != nil {
		cb(j)
	}
	return nil
}
func (f *fakeRunner) State(ctx context.Context, j *jobs.Job) (runner.State, error) {
	f.mu.Lock()
	cb := f.onState
	f.mu.Unlock()
	if cb != nil {
		cb(j)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state[j.ID], nil
}
func (f *fakeRunner) set(id string, st runner.State) {
	f.mu.Lock()
	f.state[id] = st
	f.mu.Unlock()
}
func (f *fakeRunner) Active() int  { return 0 }
func (f *fakeRunner) Close() error { return nil }

type testAPI struct {
	srv  *Server
	run  *fakeRunner
	unix *http.Client // over the unix socket
	tcp  string       // http://127.0.0.1:port
	cfg  *config.Config
}

const apiToken = "s3cret-token"

// noFLM points the configuration at an flm that does not exist, so that
// nothing here runs podman (the default runtime) or a host flm.
func noFLM(cfg *config.Config) {
	cfg.FLM.Runtime = "host"
	cfg.FLM.FLMPath = filepath.Join(cfg.Paths.StateDir, "no-flm")
}

func newAPI(t *testing.T) *testAPI {
	t.Helper()
	cfg := config.Default(t.TempDir())
	noFLM(cfg)
	fr := &fakeRunner{state: map[string]runner.State{}}
	s := &Server{Cfg: cfg, Jobs: jobs.Open(cfg.Paths.JobsDir()), Registry: registry.Open(cfg.Paths.RegistryFile()),
		Runner: fr, Token: config.NewSecret(apiToken), EventInterval: 10 * time.Millisecond}
	hs := &http.Server{Handler: s.Handler(), ConnContext: ConnContext}
	sock := filepath.Join(t.TempDir(), "api.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ul)
	go hs.Serve(tl)
	t.Cleanup(func() { hs.Close() })
	uc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	return &testAPI{srv: s, run: fr, unix: uc, tcp: "http://" + tl.Addr().String(), cfg: cfg}
}

// do sends a request over the unix socket and decodes the JSON reply.
func (a *testAPI) do(t *testing.T, method, path, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://hal0"+path, strings.NewReader(body))
	resp, err := a.unix.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func errCode(t *testing.T, a *testAPI, method, path, body string) (int, string) {
	var env api.Envelope
	st := a.do(t, method, path, body, &env)
	if env.Error == nil {
		return st, ""
	}
	return st, env.Error.Code
}

const model = "/api/models/demo%2Fm:Q4_K_M"

func TestPullLifecycle(t *testing.T) {
	a := newAPI(t)
	var st api.PullStatus
	if code := a.do(t, "POST", model+"/pull", `{"include":["*.gguf"]}`, &st); code != http.StatusAccepted {
		t.Fatalf("POST pull: %d", code)
	}
	if st.State != "queued" || st.ModelID != "demo/m:Q4_K_M" || st.Unit != `hal0-pull@demo-m:Q4_K_M.service` || st.Existing {
		t.Fatalf("status %+v", st)
	}
	// A second POST while it runs returns the same job.
	var again api.PullStatus
	a.do(t, "POST", model+"/pull", "", &again)
	if again.JobID != st.JobID || !again.Existing || len(a.run.starts) != 1 {
		t.Fatalf("second POST: %+v, starts %v", again, a.run.starts)
	}
	// Plain slashes in the id reach the same job.
	var viaSlash api.PullStatus
	if code := a.do(t, "GET", "/api/models/demo/m:Q4_K_M/pull/status", "", &viaSlash); code != 200 || viaSlash.JobID != st.JobID {
		t.Fatalf("unescaped id: %d %+v", code, viaSlash)
	}
	// The worker records progress; status merges it.
	now := time.Now().UTC()
	a.srv.Jobs.Update(context.Background(), st.JobID, func(j *jobs.Job) error {
		j.State, j.BytesTotal, j.BytesDone, j.RateBPS, j.StartedAt = jobs.Running, 1000, 250, 50, &now
		return nil
	})
	var run api.PullStatus
	a.do(t, "GET", model+"/pull/status", "", &run)
	if run.State != "running" || run.BytesDone != 250 || run.ETAS == nil || *run.ETAS != 15 || run.UnitState != "active" {
		t.Fatalf("running status %+v", run)
	}
	// Options travelled in the job record.
	j, _ := a.srv.Jobs.Get(st.JobID)
	if fmt.Sprint(j.Options.Include) != "[*.gguf]" {
		t.Errorf("options %+v", j.Options)
	}
}

// TestWorkerFinishingWhileLookedAt: the worker writes "completed" and
// exits between hal0-apid reading the record (running) and asking whether
// the worker lives (no longer): the answer is the outcome, never "died".
// The soak in internal/torture found this with pulls every half second.
func TestWorkerFinishingWhileLookedAt(t *testing.T) {
	a := newAPI(t)
	var st api.PullStatus
	a.do(t, "POST", model+"/pull", "", &st)
	a.srv.Jobs.Update(context.Background(), st.JobID, func(j *jobs.Job) error { j.State = jobs.Running; return nil })
	a.run.mu.Lock()
	a.run.onState = func(j *jobs.Job) {
		a.srv.Jobs.Update(context.Background(), j.ID, func(j *jobs.Job) error { j.State, j.Phase = jobs.Completed, "done"; return nil })
		a.run.state[j.ID] = runner.State{UnitState: "inactive"}
	}
	a.run.mu.Unlock()
	var got api.PullStatus
	a.do(t, "GET", model+"/pull/status", "", &got)
	if got.State != "completed" || got.ErrorCode != "" {
		t.Fatalf("a worker that finished during the status check is reported %+v", got)
	}
}

func TestDeadWorkerIsReportedAndResumed(t *testing.T) {
	a := newAPI(t)
	var st api.PullStatus
	a.do(t, "POST", model+"/pull", "", &st)
	a.srv.Jobs.Update(context.Background(), st.JobID, func(j *jobs.Job) error { j.State = jobs.Running; return nil })
	// kill -9: the unit failed, no worker holds the job's lock.
	a.run.set(st.JobID, runner.State{UnitState: "failed", Signal: 9})
	var dead api.PullStatus
	a.do(t, "GET", model+"/pull/status", "", &dead)
	if dead.State != "failed" || dead.ErrorCode != api.CodeWorkerDied || !strings.Contains(dead.Error, "signal 9") ||
		!strings.Contains(dead.Error, "journalctl -u hal0-pull@demo-m:Q4_K_M.service") {
		t.Fatalf("dead worker status %+v", dead)
	}
	// A new POST takes the same job up again.
	var resumed api.PullStatus
	a.do(t, "POST", model+"/pull", "", &resumed)
	if resumed.JobID != st.JobID || resumed.State != "queued" || len(a.run.starts) != 2 {
		t.Fatalf("resume: %+v starts %v", resumed, a.run.starts)
	}
	// An exit status is reported as such.
	a.run.set(st.JobID, runner.State{UnitState: "failed", ExitStatus: ptr(1)})
	a.srv.Jobs.Update(context.Background(), st.JobID, func(j *jobs.Job) error { j.State = jobs.Running; return nil })
	a.do(t, "GET", model+"/pull/status", "", &dead)
	if dead.ExitStatus == nil || *dead.ExitStatus != 1 || !strings.Contains(dead.Error, "status 1") {
		t.Fatalf("exit status: %+v", dead)
	}
}

func ptr[T any](v T) *T { return &v }

func TestCancelIsIdempotent(t *testing.T) {
	a := newAPI(t)
	var st api.PullStatus
	a.do(t, "POST", model+"/pull", "", &st)
	// The worker records its cancel when stopped.
	a.run.onStop = func(j *jobs.Job) {
		fin := time.Now()
		a.srv.Jobs.Update(context.Background(), j.ID, func(x *jobs.Job) error {
			x.State, x.ErrorCode, x.FinishedAt = jobs.Cancelled, api.CodeCancelled, &fin
			return nil
		})
	}
	var c1, c2 api.PullStatus
	if code := a.do(t, "POST", model+"/pull/cancel", "", &c1); code != 200 || c1.State != "cancelled" {
		t.Fatalf("cancel: %d %+v", code, c1)
	}
	if code := a.do(t, "POST", model+"/pull/cancel", "", &c2); code != 200 || c2.State != "cancelled" || len(a.run.stops) != 1 {
		t.Fatalf("second cancel: %d %+v stops %v", code, c2, a.run.stops)
	}
	// A worker that never got to record it: the API records the cancel.
	a2 := newAPI(t)
	a2.do(t, "POST", model+"/pull", "", &st)
	a2.do(t, "POST", model+"/pull/cancel", "", &c1)
	if c1.State != "cancelled" {
		t.Fatalf("cancel without a worker: %+v", c1)
	}
	j, _ := a2.srv.Jobs.Get(st.JobID)
	if j.State != jobs.Cancelled || j.FinishedAt == nil {
		t.Fatalf("record %+v", j)
	}
}

func TestErrors(t *testing.T) {
	a := newAPI(t)
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/api/models/..%2Fx/pull", "", 400, api.CodeInvalidRef},
		{"POST", "/api/models/qwen3:4b/pull", "", 503, api.CodeFLMUnavailable},
		{"POST", "/api/models/my-model/pull", "", 400, api.CodeUnsupported},
		{"POST", model + "/pull", `{"colour":"red"}`, 400, api.CodeBadRequest},
		{"POST", model + "/pull", `{"format":"iso"}`, 400, api.CodeBadRequest},
		{"POST", model + "/pull", `{"endpoint":"ftp://x"}`, 400, api.CodeBadRequest},
		{"POST", model + "/pull", `{"include":["` + strings.Repeat("a", MaxBody) + `"]}`, 413, api.CodeTooLarge},
		{"POST", model + "/pull", `{}{}`, 400, api.CodeBadRequest},
		{"GET", model + "/pull/status", "", 404, api.CodeJobMissing},
		{"POST", model + "/pull/cancel", "", 404, api.CodeJobMissing},
		{"GET", model, "", 404, api.CodeModelMissing},
		{"DELETE", model, "", 404, api.CodeModelMissing},
		{"PUT", model, "", 405, api.CodeBadRequest},
		{"GET", "/api/nothing", "", 404, api.CodeNotFound},
	} {
		t.Run(tc.method+" "+tc.path[:min(len(tc.path), 40)], func(t *testing.T) {
			st, code := errCode(t, a, tc.method, tc.path, tc.body)
			if st != tc.status || code != tc.code {
				t.Errorf("got %d %s, want %d %s", st, code, tc.status, tc.code)
			}
		})
	}
}

func TestModelsAndDelete(t *testing.T) {
	a := newAPI(t)
	pulled := filepath.Join(a.cfg.Paths.PullDir(), "demo", "m", "main-Q4_K_M")
	staged := filepath.Join(t.TempDir(), "staged")
	os.MkdirAll(pulled, 0o755)
	os.MkdirAll(staged, 0o755)
	a.srv.Registry.Update(context.Background(), func(r *registry.Registry) error {
		r.Put(&registry.Model{ID: "demo/m:Q4_K_M", Path: pulled, Dir: pulled, Source: "hf"})
		r.Put(&registry.Model{ID: "staged", Path: staged, Dir: staged, Source: "local"})
		return nil
	})
	var list []registry.Model
	a.do(t, "GET", "/api/models", "", &list)
	if len(list) != 2 || list[0].ID != "demo/m:Q4_K_M" {
		t.Fatalf("list %+v", list)
	}
	var m registry.Model
	if a.do(t, "GET", model, "", &m); m.Dir != pulled {
		t.Fatalf("get %+v", m)
	}
	// Refused while a pull of it runs.
	var st api.PullStatus
	a.do(t, "POST", model+"/pull", "", &st)
	if code, c := errCode(t, a, "DELETE", model, ""); code != 409 || c != api.CodeConflict {
		t.Fatalf("delete during pull: %d %s", code, c)
	}
	a.run.set(st.JobID, runner.State{})
	a.srv.Jobs.Update(context.Background(), st.JobID, func(j *jobs.Job) error { j.State = jobs.Completed; return nil })
	if code := a.do(t, "DELETE", model, "", &m); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if _, err := os.Stat(pulled); !os.IsNotExist(err) {
		t.Error("pulled files not removed")
	}
	// A pre-staged model loses its entry, never its files.
	a.do(t, "DELETE", "/api/models/staged", "", &m)
	if _, err := os.Stat(staged); err != nil {
		t.Error("pre-staged files were deleted")
	}
}

func TestTCPGuards(t *testing.T) {
	a := newAPI(t)
	for _, tc := range []struct {
		name, method, host, origin, auth string
		status                           int
	}{
		{"read needs no token", "GET", "", "", "", 200},
		{"foreign host", "GET", "evil.example:8080", "", "", 403},
		{"localhost name", "GET", "localhost:8080", "", "", 200},
		{"cross-site origin", "GET", "", "http://evil.example", "", 403},
		{"mutation without token", "POST", "", "", "", 401},
		{"mutation with wrong token", "POST", "", "", "Bearer nope", 401},
		{"mutation with token", "POST", "", "", "Bearer " + apiToken, 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/api/models"
			if tc.method == "POST" {
				path = model + "/pull"
			}
			req, _ := http.NewRequest(tc.method, a.tcp+path, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	// The unix socket needs no token: its file permissions are the guard.
	if code := a.do(t, "POST", "/api/models/other%2Fm/pull", "", nil); code != 202 {
		t.Errorf("unix POST: %d", code)
	}
}

// TestCompression: bodies of a kilobyte or more go out compressed with
// the encoding the client prefers; smaller ones (a pull status, the
// version) go out as they are, since compressing them costs more than it
// saves.
func TestCompression(t *testing.T) {
	a := newAPI(t)
	for i := range 20 {
		install(t, a, fmt.Sprintf("demo/model-%02d:Q4_K_M", i))
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	get := func(path, enc string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", a.tcp+path, nil)
		req.Header.Set("Accept-Encoding", enc)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for _, enc := range []string{"zstd", "gzip"} {
		resp := get("/api/models", enc)
		if resp.Header.Get("Content-Encoding") != enc {
			t.Fatalf("%s: Content-Encoding %q", enc, resp.Header.Get("Content-Encoding"))
		}
		var r io.Reader
		switch enc {
		case "zstd":
			d, _ := zstd.NewReader(resp.Body)
			defer d.Close()
			r = d
		case "gzip":
			r, _ = gzip.NewReader(resp.Body)
		}
		var models []registry.Model
		if err := json.NewDecoder(r).Decode(&models); err != nil || len(models) != 20 {
			t.Fatalf("%s body: %d models, %v", enc, len(models), err)
		}

		small := get("/api/version", enc)
		if ce := small.Header.Get("Content-Encoding"); ce != "" {
			t.Errorf("%s: a small body was compressed (%q)", enc, ce)
		}
		var v api.Version
		if err := json.NewDecoder(small.Body).Decode(&v); err != nil || v.API != api.APIVersion {
			t.Fatalf("%s small body: %+v %v", enc, v, err)
		}
		if small.ContentLength <= 0 {
			t.Errorf("%s: small body without Content-Length", enc)
		}
	}
}

func TestEventsStreamUntilFinal(t *testing.T) {
	a := newAPI(t)
	var st api.PullStatus
	a.do(t, "POST", model+"/pull", "", &st)
	resp, err := a.unix.Get("http://hal0" + model + "/pull/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var states []string
	step := 0
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev api.PullStatus
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		states = append(states, fmt.Sprintf("%s:%d", ev.State, ev.BytesDone))
		// Each event received moves the job on, like a worker would.
		step++
		a.srv.Jobs.Update(context.Background(), st.JobID, func(j *jobs.Job) error {
			switch step {
			case 1:
				j.State, j.BytesDone = jobs.Running, 10
			case 2:
				fin := time.Now()
				j.State, j.BytesDone, j.FinishedAt = jobs.Completed, 20, &fin
			}
			return nil
		})
	}
	if got := strings.Join(states, " "); got != "queued:0 running:10 completed:20" {
		t.Fatalf("events %s", got)
	}
}

func TestHealthAndPulls(t *testing.T) {
	a := newAPI(t)
	var st api.PullStatus
	a.do(t, "POST", model+"/pull", "", &st)
	var h api.Health
	a.do(t, "GET", "/api/health", "", &h)
	if h.Status != "ok" || h.Runner != "systemd" || h.Jobs != 1 {
		t.Fatalf("health %+v", h)
	}
	var all []api.PullStatus
	a.do(t, "GET", "/api/pulls", "", &all)
	if len(all) != 1 || all[0].JobID != st.JobID {
		t.Fatalf("pulls %+v", all)
	}
}

func TestCloseStreamsEndsEventStreams(t *testing.T) {
	a := newAPI(t)
	var st api.PullStatus
	a.do(t, "POST", model+"/pull", "", &st)
	resp, err := a.unix.Get("http://hal0" + model + "/pull/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil { // the first event arrived
		t.Fatal(err)
	}
	a.srv.CloseStreams()
	if _, err := io.ReadAll(br); err != nil {
		t.Fatalf("stream did not end cleanly: %v", err)
	}
}
