package cli

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/client/clienttest"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/progress"
	"github.com/hal0ai/hal0/internal/registry"
)

// decode parses a command's --json output into v, strictly: a field the
// wire type lacks is a failure.
func decode(t *testing.T, r result, v any) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("command failed:\n%s", r)
	}
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, r.stdout)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value:\n%s", r.stdout)
	}
}

// A whole pull through hal0-apid, drawn as plain lines (the output is not
// a terminal), then the model seen through every read command.
func TestModelPullThroughAPI(t *testing.T) {
	e := newEnv(t)
	// A pause in every CDN response keeps the pull in its download phase
	// long enough for the stream to report it.
	e.Hub.AddFault(hubtest.Fault{Where: "cdn", StallAt: 512 << 10, StallFor: 200 * time.Millisecond})
	r := run(t, "model", "pull", clienttest.Model, "--json")
	if r.code != 0 {
		t.Fatalf("pull failed:\n%s", r)
	}
	var final api.PullStatus
	decode(t, r, &final)
	if final.State != "completed" || final.ModelID != clienttest.Model || final.BytesDone != e.Total {
		t.Fatalf("final status %+v", final)
	}

	// Rates and ETAs vary from run to run: the lines are checked for their
	// shape, the exact rendering by the golden tests.
	total := regexp.QuoteMeta(progress.Bytes(e.Total))
	size := `\d+(\.\d)? (B|KiB|MiB)`
	progressLine := regexp.MustCompile(`^demo/m:Q4_K_M (downloading|verifying|installing) +\d+\.\d% ` + size + `/` + total + ` ` + size + `/s eta (--|\d+s)( m-Q4_K_M-0000[123]-of-00003\.gguf)?$`)
	startLine := regexp.MustCompile(`^demo/m:Q4_K_M (queued|resolving)$`)
	doneLine := regexp.MustCompile(`^demo/m:Q4_K_M: ` + total + ` installed in /.+/m-Q4_K_M-00001-of-00003\.gguf$`)
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	downloading := false
	for i, l := range lines {
		switch {
		case i == len(lines)-1:
			if !doneLine.MatchString(l) {
				t.Errorf("last line %q", l)
			}
		case startLine.MatchString(l):
		case progressLine.MatchString(l):
			downloading = downloading || strings.Contains(l, " downloading ")
		default:
			t.Errorf("unexpected line %q", l)
		}
	}
	if !downloading || !strings.HasPrefix(r.stderr, "demo/m:Q4_K_M queued\n") {
		t.Errorf("no queued or downloading line:\n%s", r.stderr)
	}
	if strings.ContainsAny(r.stderr, "\r\x1b") {
		t.Errorf("terminal control characters off a terminal: %q", r.stderr)
	}
	// Every request named the model with its "/" escaped.
	reqs := e.Requests()
	for _, want := range []string{"POST /api/models/demo%2Fm:Q4_K_M/pull", "GET /api/models/demo%2Fm:Q4_K_M/pull/events"} {
		if !slices.Contains(reqs, want) {
			t.Errorf("no request %q in %q", want, reqs)
		}
	}

	var ms []registry.Model
	decode(t, run(t, "model", "list", "--json"), &ms)
	if len(ms) != 1 || ms[0].ID != clienttest.Model || ms[0].SizeBytes != e.Total {
		t.Fatalf("model list: %+v", ms)
	}
	var local []registry.Model
	decode(t, run(t, "model", "list", "--json", "--local"), &local)
	if len(local) != 1 || local[0].Commit != ms[0].Commit {
		t.Fatalf("model list --local: %+v", local)
	}
	if r := run(t, "model", "list"); r.code != 0 || !regexp.MustCompile(`(?m)^demo/m:Q4_K_M +12\.0 MiB +hf `).MatchString(r.stdout) {
		t.Errorf("model list table:\n%s", r)
	}
	var m registry.Model
	decode(t, run(t, "model", "show", "demo/m:q4_k_m", "--json"), &m)
	if m.ID != clienttest.Model || len(m.Files) != clienttest.Shards || m.Files[0].SHA256 == "" {
		t.Fatalf("model show: %+v", m)
	}
	if r := run(t, "model", "show", clienttest.Model); r.code != 0 || !strings.Contains(r.stdout, "commit:   "+m.Commit) || strings.Count(r.stdout, "sha256:") != 3 {
		t.Errorf("model show:\n%s", r)
	}

	var one api.PullStatus
	decode(t, run(t, "pull", "status", clienttest.Model, "--json"), &one)
	if one.JobID != final.JobID || one.State != "completed" || one.Runner != "process" {
		t.Fatalf("pull status: %+v", one)
	}
	var all []api.PullStatus
	decode(t, run(t, "pull", "status", "--json"), &all)
	if len(all) != 1 || all[0].JobID != final.JobID {
		t.Fatalf("pull status of all: %+v", all)
	}
	if r := run(t, "pull", "status"); r.code != 0 || !regexp.MustCompile(`(?m)^MODEL +STATE +PROGRESS +SIZE +RATE +JOB\ndemo/m:Q4_K_M +completed +100\.0% +12\.0 MiB +- +`+final.JobID+`$`).MatchString(r.stdout) {
		t.Errorf("pull status table:\n%s", r)
	}
	if r := run(t, "pull", "status", clienttest.Model); r.code != 0 || !strings.Contains(r.stdout, "state:    completed\n") || !strings.Contains(r.stdout, "job:      "+final.JobID+"\n") {
		t.Errorf("pull status:\n%s", r)
	}

	// The job ran as a child of hal0-apid: its log is apid's, and the
	// command says so rather than printing nothing.
	if r := run(t, "pull", "logs", clienttest.Model); r.code != 1 || !strings.Contains(r.stderr, "child process of hal0-apid") || !strings.Contains(r.stderr, "hal0-apid's own") {
		t.Errorf("pull logs of a process-runner job:\n%s", r)
	}

	var removed registry.Model
	decode(t, run(t, "model", "rm", clienttest.Model, "--json"), &removed)
	if removed.ID != clienttest.Model || removed.Commit != m.Commit {
		t.Fatalf("model rm: %+v", removed)
	}
	if r := run(t, "model", "list", "--json"); r.stdout != "[]\n" {
		t.Errorf("model list after rm: %s", r)
	}
}

// Over TCP the CLI sends the bearer token for changes; the API is chosen
// with --api or HAL0_API.
func TestPullOverTCP(t *testing.T) {
	e := newEnv(t)
	r := run(t, "model", "pull", clienttest.Model, "--api", e.URL)
	if r.code != 0 {
		t.Fatalf("pull over TCP:\n%s", r)
	}
	t.Setenv("HAL0_API", e.URL)
	var ms []registry.Model
	decode(t, run(t, "model", "list", "--json"), &ms)
	if len(ms) != 1 {
		t.Fatalf("models over TCP: %+v", ms)
	}
	// Without the token a change is refused: exit 7.
	cfg := *e.Cfg
	cfg.API.Token = config.Secret{}
	useConfig(t, &cfg)
	if r := run(t, "model", "rm", clienttest.Model, "--api", e.URL); r.code != api.ExitAuth || !strings.Contains(r.stderr, "bearer token") {
		t.Errorf("rm over TCP without a token:\n%s", r)
	}
	if r := run(t, "pull", "logs", clienttest.Model, "--api", strings.Replace(e.URL, "127.0.0.1", "localhost", 1)); r.code != 1 || !strings.Contains(r.stderr, "hal0-apid's own") {
		t.Errorf("pull logs over loopback TCP:\n%s", r)
	}
	// With it (and the API from HAL0_API), the change goes through.
	useConfig(t, e.Cfg)
	t.Setenv("HAL0_API", e.URL)
	if r := run(t, "model", "rm", clienttest.Model); r.code != 0 || !strings.HasPrefix(r.stdout, "removed demo/m:Q4_K_M (12.0 MiB in "+e.Cfg.Paths.PullDir()) {
		t.Errorf("rm over TCP with the token:\n%s", r)
	}
}

// Ctrl-C once: the pull is cancelled in hal0-apid, the command follows it
// to its end and exits 5.
func TestPullCtrlCCancels(t *testing.T) {
	e := newEnv(t)
	e.Stall()
	intr := make(chan os.Signal, 2)
	done := start(t, intr, "model", "pull", clienttest.Model)
	e.WaitPull(t, clienttest.Model, func(s *api.PullStatus) bool { return s.State == "running" && s.BytesDone > 0 })
	intr <- os.Interrupt
	r := wait(t, done)
	if r.code != api.ExitCancelled {
		t.Fatalf("want exit %d:\n%s", api.ExitCancelled, r)
	}
	if !strings.Contains(r.stderr, "cancelling…") || !strings.Contains(r.stderr, "pull of demo/m:Q4_K_M cancelled") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	st := e.WaitPull(t, clienttest.Model, func(*api.PullStatus) bool { return true })
	if st.State != "cancelled" || st.ErrorCode != api.CodeCancelled {
		t.Fatalf("job after Ctrl-C: %+v", st)
	}
}

// Ctrl-C twice: the second one stops waiting while hal0-apid is still
// stopping the worker (held here, as a slow systemd stop job would), and
// the job is still running when the command has returned.
func TestPullCtrlCTwiceDetaches(t *testing.T) {
	e := newEnv(t)
	e.Stall()
	entered, release := e.Runner.HoldStop()
	defer release()
	intr := make(chan os.Signal, 2)
	done := start(t, intr, "model", "pull", clienttest.Model)
	e.WaitPull(t, clienttest.Model, func(s *api.PullStatus) bool { return s.State == "running" && s.BytesDone > 0 })
	intr <- os.Interrupt
	select {
	case <-entered:
	case <-time.After(time.Minute):
		t.Fatal("the cancel never reached the runner")
	}
	intr <- os.Interrupt
	r := wait(t, done)
	if r.code != 0 {
		t.Fatalf("detach should exit 0:\n%s", r)
	}
	if !strings.Contains(r.stderr, "cancelling…") || !strings.Contains(r.stderr, "stopped waiting") || !strings.Contains(r.stderr, "`hal0 pull status demo/m:Q4_K_M --follow`") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	st, err := e.Client(t).PullStatus(context.Background(), clienttest.Model)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "running" {
		t.Fatalf("job after detaching: %+v", st)
	}
	release()
	e.WaitPull(t, clienttest.Model, func(s *api.PullStatus) bool { return s.State == "cancelled" })
}

// --detach prints the job at once; while it runs, rm is refused (4), a
// second pull joins it, and pull cancel ends it.
func TestPullDetachAndConflicts(t *testing.T) {
	e := newEnv(t)
	e.Stall()
	var st api.PullStatus
	decode(t, run(t, "model", "pull", "demo/m", "--quant", "q4_k_m", "--detach", "--json"), &st)
	if st.ModelID != clienttest.Model || st.Final() || st.JobID == "" || st.Existing {
		t.Fatalf("detached pull: %+v", st)
	}
	e.WaitPull(t, clienttest.Model, func(s *api.PullStatus) bool { return s.State == "running" && s.BytesDone > 0 })

	r := run(t, "model", "pull", clienttest.Model, "--detach")
	if r.code != 0 || !strings.Contains(r.stdout, "pull of demo/m:Q4_K_M was already running: job "+st.JobID) || !strings.Contains(r.stdout, "hal0 pull status demo/m:Q4_K_M") {
		t.Errorf("second detached pull:\n%s", r)
	}
	r = run(t, "model", "rm", clienttest.Model)
	if r.code != api.ExitConflict || !strings.Contains(r.stderr, "cancel it first") {
		t.Errorf("rm during a pull:\n%s", r)
	}
	var running api.PullStatus
	decode(t, run(t, "pull", "status", clienttest.Model, "--json"), &running)
	if running.State != "running" || running.BytesDone == 0 || running.BytesTotal != e.Total {
		t.Errorf("status of a running pull: %+v", running)
	}
	r = run(t, "pull", "status")
	if !regexp.MustCompile(`(?m)^demo/m:Q4_K_M +running \(downloading\) +\d+\.\d% +12\.0 MiB `).MatchString(r.stdout) {
		t.Errorf("table of a running pull:\n%s", r)
	}

	var cancelled api.PullStatus
	decode(t, run(t, "pull", "cancel", clienttest.Model, "--json"), &cancelled)
	if cancelled.State != "cancelled" || cancelled.JobID != st.JobID {
		t.Fatalf("pull cancel: %+v", cancelled)
	}
	if r := run(t, "pull", "cancel", clienttest.Model); r.code != 0 || !strings.Contains(r.stdout, "the pull of demo/m:Q4_K_M is cancelled (job "+st.JobID+")") {
		t.Errorf("second cancel:\n%s", r)
	}
	// Following a finished job returns its outcome at once.
	if r := run(t, "pull", "status", clienttest.Model, "--follow"); r.code != api.ExitCancelled {
		t.Errorf("follow of a cancelled job:\n%s", r)
	}
}

// pull status --follow draws a running pull; Ctrl-C only stops watching.
func TestPullStatusFollow(t *testing.T) {
	e := newEnv(t)
	e.Stall()
	if r := run(t, "model", "pull", clienttest.Model, "--detach"); r.code != 0 {
		t.Fatal(r)
	}
	e.WaitPull(t, clienttest.Model, func(s *api.PullStatus) bool { return s.State == "running" && s.BytesDone > 0 })
	intr := make(chan os.Signal, 1)
	done := start(t, intr, "pull", "status", clienttest.Model, "--follow")
	intr <- os.Interrupt
	r := wait(t, done)
	if r.code != 0 || !strings.Contains(r.stderr, "stopped watching") {
		t.Fatalf("watch:\n%s", r)
	}
	if st := e.WaitPull(t, clienttest.Model, func(*api.PullStatus) bool { return true }); st.State != "running" {
		t.Fatalf("watching stopped the pull: %+v", st)
	}
}

// A pull that fails in the worker exits with the code of its error.
func TestPullFailureExitCode(t *testing.T) {
	newEnv(t)
	r := run(t, "model", "pull", "demo/none:Q4_K_M")
	if r.code != api.ExitNotFound || !strings.Contains(r.stderr, "pull of demo/none:Q4_K_M failed: ") {
		t.Fatalf("pull of a missing repo:\n%s", r)
	}
}

// --local keeps running the engine in this process, without hal0-apid.
func TestPullLocal(t *testing.T) {
	e := clienttest.New(t, pullBin)
	// No API at all: --local must not need one.
	cfg := *e.Cfg
	cfg.Paths.RuntimeDir = t.TempDir()
	useConfig(t, &cfg)
	r := run(t, "model", "pull", clienttest.Model, "--local")
	if r.code != 0 || !strings.Contains(r.stderr, "demo/m:Q4_K_M: 12.0 MiB installed in ") {
		t.Fatalf("local pull:\n%s", r)
	}
	var ms []registry.Model
	decode(t, run(t, "model", "list", "--local", "--json"), &ms)
	if len(ms) != 1 || ms[0].ID != clienttest.Model {
		t.Fatalf("registry after a local pull: %+v", ms)
	}
	var m registry.Model
	decode(t, run(t, "model", "show", clienttest.Model, "--local", "--json"), &m)
	if m.ID != clienttest.Model {
		t.Fatalf("show --local: %+v", m)
	}
	if r := run(t, "model", "pull", clienttest.Model, "--local", "--detach"); r.code != api.ExitUsage {
		t.Errorf("--local --detach:\n%s", r)
	}
}
