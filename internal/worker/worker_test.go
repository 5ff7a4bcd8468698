package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/testbin"
)

// These tests run the real hal0-pull binary as a separate process, so that
// kill -9 and SIGTERM hit a real worker, against the in-repo hub on
// 127.0.0.1 (standing in for huggingface.co).

var pullBin string

// scratchRoot holds the binaries and the live tests' state trees: under
// /var/lib when root, where units with PrivateTmp= still see them.
var scratchRoot string

func TestMain(m *testing.M) {
	dir, err := livesystemd.ScratchRoot("hal0-workertest-")
	if err != nil {
		panic(err)
	}
	scratchRoot = dir
	p, err := testbin.Build(filepath.Join(dir, "bin"), "github.com/hal0ai/hal0/hal0-pull")
	if err != nil {
		panic(err)
	}
	pullBin = p[0]
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// liveTree makes one live test's scratch directory (seen by the units it
// runs) with an empty HAL0_HOME in it.
func liveTree(t *testing.T) (scratch, home string) {
	t.Helper()
	scratch, err := os.MkdirTemp(scratchRoot, "live-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(scratch) })
	if err := os.Chmod(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	home = filepath.Join(scratch, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	return scratch, home
}

// installPullUnit installs the shipped hal0-pull@.service in s with the
// test's substitutions: the binary built for the tests, home as the
// writable tree (instead of /var/lib/hal0 and /mnt/ai-models), env as its
// Environment= (instead of /etc/hal0/pull.env), and no hal0 user, which
// only the package creates; extra replaces more whole lines.
func installPullUnit(t *testing.T, s *livesystemd.System, home, env string, extra map[string]string) {
	t.Helper()
	repl := map[string]string{
		"ExecStart=/usr/lib/hal0/current/bin/hal0-pull --runner=systemd -- %I": "ExecStart=" + pullBin + " --runner=systemd -- %I",
		"ReadWritePaths=/var/lib/hal0 /mnt/ai-models":                          "ReadWritePaths=" + home,
		"EnvironmentFile=-/etc/hal0/pull.env":                                  "Environment=" + env,
		"User=hal0":                                                            "",
		"Group=hal0":                                                           "",
	}
	for k, v := range extra {
		repl[k] = v
	}
	s.InstallUnit(t, "hal0-pull@.service", livesystemd.Substitute(t, "../../units/hal0-pull@.service", repl))
}

const token = "hf_workertokenBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"

type env struct {
	hub   *hubtest.Hub
	home  string
	files []hubtest.File
	total int64
}

func newEnv(t *testing.T) *env {
	hub, err := hubtest.New(hubtest.Options{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	files := hubtest.GenerateGGUFShards("", "w", "Q4_K_M", 3, 8<<20, 3)
	hub.AddRepo(hubtest.Repo{ID: "demo/w", Files: files})
	e := &env{hub: hub, home: t.TempDir(), files: files}
	for _, f := range files {
		e.total += int64(len(f.Data))
	}
	return e
}

func (e *env) cmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, pullBin, args...)
	c.Env = append(os.Environ(),
		"HAL0_HOME="+e.home, "HF_ENDPOINT="+e.hub.URL, "HF_TOKEN="+token,
		"HAL0_PULL_CHUNK_SIZE=1MiB", "HAL0_PULL_CONNECTIONS=4", "HAL0_DISK_RESERVE=0")
	return c
}

func (e *env) cfg(t *testing.T) *config.Config {
	c, err := config.LoadEnv(func(k string) (string, bool) {
		if k == "HAL0_HOME" {
			return e.home, true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitJob polls the job record (the worker rewrites it every 500 ms) until
// cond holds, for at most 30 s.
func waitJob(t *testing.T, store *jobs.Store, refID string, cond func(*jobs.Job) bool) *jobs.Job {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if j, err := store.Current(refID); err == nil && cond(j) {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("job never reached the awaited state")
	return nil
}

func TestKillNineThenResume(t *testing.T) {
	e := newEnv(t)
	// Hold the last shard so the worker cannot finish before the kill,
	// however slow the machine, and slow the rest so the kill lands
	// mid-file.
	e.hub.AddFault(hubtest.Fault{Path: "w-Q4_K_M-00003-of-00003.gguf", Where: "cdn", StallAt: 1, StallFor: time.Minute})
	e.hub.AddFault(hubtest.Fault{Where: "cdn", StallAt: 512 << 10, StallFor: 150 * time.Millisecond})
	const refID = "demo/w:Q4_K_M"
	cmd := e.cmd(context.Background(), refID)
	// The held shard's requests keep connection slots until the stall
	// watchdog restarts them: keep that short so the other shards move.
	cmd.Env = append(cmd.Env, "HAL0_STALL_TIMEOUT=1s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	store := jobs.Open(e.cfg(t).Paths.JobsDir())
	j := waitJob(t, store, refID, func(j *jobs.Job) bool { return j.BytesDone >= e.total/3 })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if j.State != jobs.Running {
		t.Fatalf("state before kill %s", j.State)
	}
	// The record still says running: nobody wrote an outcome. A resume
	// must take it over.
	e.hub.ClearFaults()
	e.hub.ResetStats()
	out, err := e.cmd(context.Background(), refID).CombinedOutput()
	if err != nil {
		t.Fatalf("resume failed: %v\n%s\nfirst run:\n%s", err, out, stderr.String())
	}
	j2, err := store.Current(refID)
	if err != nil {
		t.Fatal(err)
	}
	if j2.ID != j.ID || j2.State != jobs.Completed || j2.Attempts != 2 {
		t.Fatalf("resumed job %+v", j2)
	}
	if j2.Resumed <= 0 {
		t.Fatal("resume reported nothing already on disk")
	}
	sent := e.hub.Stats().Bytes
	missing := e.total - j2.Resumed
	if sent < missing || sent > missing+4*(1<<20) {
		t.Errorf("resume transferred %d bytes; %d were missing (+ at most one 1 MiB range per connection)", sent, missing)
	}
	t.Logf("killed at %d of %d bytes; resume found %d on disk and transferred %d", j.BytesDone, e.total, j2.Resumed, sent)

	reg, err := registry.Open(e.cfg(t).Paths.RegistryFile()).Load()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := reg.Get(refID)
	if !ok || len(reg.Models) != 1 {
		t.Fatalf("registry %v", reg.Models)
	}
	for i, f := range e.files {
		data, err := os.ReadFile(filepath.Join(m.Dir, f.Path))
		if err != nil || !bytes.Equal(data, f.Data) {
			t.Fatalf("file %d wrong after resume: %v", i, err)
		}
	}
}

func TestSigtermCancelsAndKeepsPartials(t *testing.T) {
	e := newEnv(t)
	e.hub.AddFault(hubtest.Fault{Where: "cdn", StallAt: 256 << 10, StallFor: time.Minute})
	const refID = "demo/w:Q4_K_M"
	cmd := e.cmd(context.Background(), refID)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	store := jobs.Open(e.cfg(t).Paths.JobsDir())
	waitJob(t, store, refID, func(j *jobs.Job) bool { return j.State == jobs.Running && j.BytesDone > 0 })
	t0 := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	took := time.Since(t0)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != api.ExitCancelled {
		t.Fatalf("exit %v, want %d\n%s", err, api.ExitCancelled, out.String())
	}
	t.Logf("SIGTERM to exit: %v", took)
	if took > 10*time.Second {
		t.Errorf("took %v to stop", took)
	}
	j, _ := store.Current(refID)
	if j.State != jobs.Cancelled || j.ErrorCode != api.CodeCancelled || j.FinishedAt == nil {
		t.Fatalf("job after SIGTERM: %+v", j)
	}
	// Partial data stays for a resume; nothing is registered or installed.
	stage := e.cfg(t).Paths.StagingDir()
	if ents, _ := os.ReadDir(stage); len(ents) == 0 {
		t.Error("partials were discarded")
	}
	reg, _ := registry.Open(e.cfg(t).Paths.RegistryFile()).Load()
	if len(reg.Models) != 0 {
		t.Error("cancelled pull registered a model")
	}
}

func TestSecondWorkerIsRefused(t *testing.T) {
	e := newEnv(t)
	e.hub.AddFault(hubtest.Fault{Where: "cdn", StallAt: 1, StallFor: time.Minute})
	const refID = "demo/w:Q4_K_M"
	first := e.cmd(context.Background(), refID)
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { first.Process.Kill(); first.Wait() }()
	store := jobs.Open(e.cfg(t).Paths.JobsDir())
	waitJob(t, store, refID, func(j *jobs.Job) bool { return j.State == jobs.Running })
	out, err := e.cmd(context.Background(), refID).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != api.ExitConflict || !strings.Contains(string(out), "already running") {
		t.Fatalf("second worker: %v\n%s", err, out)
	}
}

func TestTokenNeverWritten(t *testing.T) {
	e := newEnv(t)
	const refID = "demo/w:Q4_K_M"
	out, err := e.cmd(context.Background(), refID).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if bytes.Contains(out, []byte(token)) {
		t.Fatal("token in worker output")
	}
	cfg := e.cfg(t)
	filepath.Walk(cfg.Paths.StateDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(token)) {
				t.Errorf("token written to %s", p)
			}
		}
		return nil
	})
	for _, r := range e.hub.Requests() {
		if r.Server == "cdn" && r.Auth {
			t.Fatal("token sent to the CDN")
		}
	}
	// The job record holds the outcome for status readers.
	j, err := jobs.Open(cfg.Paths.JobsDir()).Current(refID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(j)
	if j.State != jobs.Completed || j.BytesDone != e.total || j.Commit == "" || j.Path == "" {
		t.Fatalf("job %s", b)
	}
}

func TestBadRefExitsWithUsage(t *testing.T) {
	e := newEnv(t)
	out, err := e.cmd(context.Background(), "../etc").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != api.ExitUsage || !strings.Contains(string(out), "invalid model ref") {
		t.Fatalf("%v\n%s", err, out)
	}
}
