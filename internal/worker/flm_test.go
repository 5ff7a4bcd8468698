package worker

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/flm/flmtest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
)

// FLM pulls run the real hal0-pull binary with flm being the stand-in of
// flmtest (built by go build): an NPU, the FLM toolbox image and
// huggingface.co cannot exist here. The stand-in reproduces flm's
// documented CLI (list -j with a warning before the JSON, \r progress,
// exit codes, files written straight into the cache directory).

var (
	standinOnce sync.Once
	standinFLM  string
	standinErr  error
)

const flmSize = 4 << 20

type flmEnv struct {
	*flmtest.Env
	home string
	vars map[string]string
}

// standin builds the stand-in flm once, next to hal0-pull.
func standin(t *testing.T) string {
	t.Helper()
	standinOnce.Do(func() { standinFLM, _, standinErr = flmtest.Build(filepath.Dir(pullBin)) })
	if standinErr != nil {
		t.Fatal(standinErr)
	}
	return standinFLM
}

func newFLMEnv(t *testing.T, root string, knobs ...string) *flmEnv {
	t.Helper()
	standin(t)
	if root == "" {
		root = t.TempDir()
	}
	fe, err := flmtest.NewEnv(root, standinFLM, "", flmtest.Catalog(flmSize))
	if err != nil {
		t.Fatal(err)
	}
	vars := fe.Vars("host", knobs...)
	vars["HAL0_HOME"] = root
	// The default cache (under the state dir) is what flmtest lays out.
	delete(vars, "HAL0_FLM_CACHE_DIR")
	return &flmEnv{Env: fe, home: root, vars: vars}
}

func (e *flmEnv) cfg(t *testing.T) *config.Config {
	t.Helper()
	c, err := config.LoadEnv(func(k string) (string, bool) { v, ok := e.vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if c.FLMCacheDir() != e.CacheDir {
		t.Fatalf("cache %s, stand-in cache %s", c.FLMCacheDir(), e.CacheDir)
	}
	return c
}

func (e *flmEnv) cmd(args ...string) *exec.Cmd {
	c := exec.Command(pullBin, args...)
	c.Env = append(flmtest.Environ(e.vars), "PATH="+os.Getenv("PATH"))
	return c
}

func TestFLMWorker(t *testing.T) {
	e := newFLMEnv(t, "")
	out, err := e.cmd("qwen3:4b").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	cfg := e.cfg(t)
	j, err := jobs.Open(cfg.Paths.JobsDir()).Current("qwen3:4b")
	if err != nil {
		t.Fatal(err)
	}
	dir := e.ModelDir("qwen3:4b")
	if j.State != jobs.Completed || j.Kind != "flm" || j.Unit != "hal0-pull@qwen3:4b.service" || j.Path != dir ||
		j.BytesDone != j.BytesTotal || j.BytesTotal < flmSize || j.Phase != "done" {
		t.Fatalf("job %+v", j)
	}
	// flm's own lines reach the log (the journal under systemd).
	if !bytes.Contains(out, []byte("flm: Model downloaded successfully!")) {
		t.Errorf("output:\n%s", out)
	}
	reg, _ := registry.Open(cfg.Paths.RegistryFile()).Load()
	m, ok := reg.Get("qwen3:4b")
	if !ok || !reflect.DeepEqual(m.Backends, []string{"npu"}) || m.Metadata["runtime"] != "flm" || m.Path != dir {
		t.Fatalf("registry %+v", m)
	}
}

func TestFLMWorkerFailure(t *testing.T) {
	e := newFLMEnv(t, "", "FLM_STANDIN_FAIL_AFTER=1")
	out, err := e.cmd("qwen3:4b").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != api.ExitFailed {
		t.Fatalf("exit %v\n%s", err, out)
	}
	j, _ := jobs.Open(e.cfg(t).Paths.JobsDir()).Current("qwen3:4b")
	if j.State != jobs.Failed || j.ErrorCode != api.CodeFLMFailed || !strings.Contains(j.Error, "Failed to pull model: qwen3:4b") {
		t.Fatalf("job %+v", j)
	}
	// Unknown tags exit 3.
	out, err = e.cmd("qwen3:99b").CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != api.ExitNotFound || !strings.Contains(string(out), "not in FLM's catalog") {
		t.Fatalf("unknown tag: %v\n%s", err, out)
	}
}

// standins lists the running stand-in processes of this test binary's
// build (by /proc/PID/exe).
func standins(t *testing.T) []int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", d.Name(), "exe")); err == nil && exe == standinFLM {
			out = append(out, pid)
		}
	}
	return out
}

// TestFLMWorkerSignals: SIGTERM cancels (flm is stopped, the partial
// directory removed, exit 5); kill -9 of the worker takes flm with it,
// and the next pull does not trust what the killed one left.
func TestFLMWorkerSignals(t *testing.T) {
	e := newFLMEnv(t, "", "FLM_STANDIN_HOLD="+filepath.Join(t.TempDir(), "never"))
	store := jobs.Open(e.cfg(t).Paths.JobsDir())
	dir := e.ModelDir("qwen3:4b")
	held := func(j *jobs.Job) bool { return j.State == jobs.Running && j.CurrentFile == "tokenizer.json" }

	cmd := e.cmd("qwen3:4b")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitJob(t, store, "qwen3:4b", held)
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != api.ExitCancelled {
		t.Fatalf("exit %v\n%s", err, out.String())
	}
	j, _ := store.Current("qwen3:4b")
	if j.State != jobs.Cancelled || !strings.Contains(j.Error, "partial model directory "+dir+" was removed") {
		t.Fatalf("job %+v", j)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("partial directory left: %v", err)
	}
	if pids := standins(t); len(pids) != 0 {
		t.Fatalf("flm still running: %v", pids)
	}

	cmd = e.cmd("qwen3:4b")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitJob(t, store, "qwen3:4b", held)
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for len(standins(t)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("flm outlived its killed worker")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Every file is there, the last one short: flm would call it
	// installed. The next pull discards it.
	if fi, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil || fi.Size() >= flmSize/2 {
		t.Fatalf("expected a short leftover: %v %v", fi, err)
	}
	e.vars["FLM_STANDIN_HOLD"] = ""
	if out, err := e.cmd("qwen3:4b").CombinedOutput(); err != nil {
		t.Fatalf("pull after kill -9: %v\n%s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil || fi.Size() != flmSize/2 {
		t.Fatalf("after the new pull: %v %v", fi, err)
	}
}

// TestLiveFLMPullUnit starts hal0-pull@qwen3:4b.service by hand in a real
// systemd, with the shipped unit (the substitutions of TestLivePullUnit)
// and the stand-in as the host flm.
func TestLiveFLMPullUnit(t *testing.T) {
	s := livesystemd.Boot(t)
	// The unit's PrivateTmp hides /tmp: binaries and state are in the
	// scratch tree (see TestMain).
	scratch, home := liveTree(t)
	e := newFLMEnv(t, home, "FLM_STANDIN_HOLD="+filepath.Join(scratch, "gate"))
	e.vars["HAL0_FLM_PATH"] = standin(t)

	var envLine []string
	for _, kv := range flmtest.Environ(e.vars) {
		envLine = append(envLine, strconv.Quote(kv))
	}
	installPullUnit(t, s, home, strings.Join(envLine, " "), nil)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cfg := e.cfg(t)
	store := jobs.Open(cfg.Paths.JobsDir())
	rf := ref.MustParse("qwen3:4b")
	if rf.Unit() != "hal0-pull@qwen3:4b.service" {
		t.Fatalf("unit %s", rf.Unit())
	}
	journal := func() string { out, _ := s.Journal(ctx, "-u", rf.Unit()); return out }

	// systemctl stop mid-pull: a cancel, not a unit failure.
	if out, err := s.Systemctl(ctx, "start", rf.Unit()); err != nil {
		t.Fatalf("systemctl start: %v\n%s\n%s", err, out, journal())
	}
	waitJob(t, store, rf.String(), func(j *jobs.Job) bool { return j.State == jobs.Running && j.CurrentFile == "tokenizer.json" })
	if out, err := s.Systemctl(ctx, "stop", rf.Unit()); err != nil {
		t.Fatalf("systemctl stop: %v\n%s", err, out)
	}
	j := waitJob(t, store, rf.String(), func(j *jobs.Job) bool { return j.State.Final() })
	if j.State != jobs.Cancelled {
		t.Fatalf("job after systemctl stop %+v\n%s", j, journal())
	}
	if _, err := os.Stat(e.ModelDir("qwen3:4b")); !os.IsNotExist(err) {
		t.Fatalf("partial directory after systemctl stop: %v", err)
	}
	if show, _ := s.Systemctl(ctx, "show", "-p", "Result", rf.Unit()); !strings.Contains(show, "Result=success") {
		t.Errorf("unit after a cancel: %s", show)
	}

	// systemctl start, to completion.
	if err := os.WriteFile(filepath.Join(scratch, "gate"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Systemctl(ctx, "start", rf.Unit()); err != nil {
		t.Fatalf("systemctl start: %v\n%s\n%s", err, out, journal())
	}
	j = waitJob(t, store, rf.String(), func(j *jobs.Job) bool { return j.State.Final() && j.Attempts > 0 && j.State != jobs.Cancelled })
	if j.State != jobs.Completed || j.Runner != "systemd" || j.Kind != "flm" {
		t.Fatalf("job %+v\n%s", j, journal())
	}
	if st, err := s.WaitUnit(ctx, rf.Unit(), "inactive"); err != nil {
		t.Fatalf("unit never went inactive (last state %s): %v", st, err)
	}
	reg, err := registry.Open(cfg.Paths.RegistryFile()).Load()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := reg.Get("qwen3:4b")
	if !ok || !reflect.DeepEqual(m.Backends, []string{"npu"}) || m.Metadata["runtime"] != "flm" || m.Path != e.ModelDir("qwen3:4b") || m.SizeBytes < flmSize {
		t.Fatalf("registry entry %+v", m)
	}
	out, err := s.Journal(ctx, "-o", "cat", "HAL0_JOB_ID="+j.ID)
	if err != nil || !strings.Contains(out, "flm: Model downloaded successfully!") || !strings.Contains(out, "pull qwen3:4b completed") {
		t.Fatalf("journal for job %s: %v\n%s", j.ID, err, out)
	}
}
