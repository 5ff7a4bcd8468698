package worker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/ref"
)

// TestLivePullUnit runs the shipped hal0-pull@.service template in a real
// systemd (booted privately by livesystemd) and starts instances by hand
// with systemctl, as an operator would. The unit is the real file with
// four test substitutions: the binary path, the writable tree (a scratch
// HAL0_HOME instead of /var/lib/hal0 and /mnt/ai-models), the token
// credential's source file, and no hal0 user, which only the package
// creates.
func TestLivePullUnit(t *testing.T) {
	s := livesystemd.Boot(t)
	e := newEnv(t)
	// The unit has PrivateTmp=yes, which hides /tmp and /var/tmp (where
	// livesystemd keeps its scratch), and the checkout itself may live in
	// either: the binary and state go to a scratch directory under /var/lib,
	// which the unit sees (read-only but for ReadWritePaths).
	scratch, home := liveTree(t)
	// The token reaches the worker the way the unit passes it, as the
	// systemd credential hf-token; only its source file moves to the
	// scratch tree. The repo is gated, so a pull without it would fail.
	tokenFile := filepath.Join(scratch, "hf-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.hub.AddRepo(hubtest.Repo{ID: "demo/w", Files: e.files, Gated: "manual", Approved: true})
	installPullUnit(t, s, home, "HAL0_HOME="+home+" HF_ENDPOINT="+e.hub.URL+" HAL0_DISK_RESERVE=0 HAL0_PULL_CHUNK_SIZE=1MiB",
		map[string]string{"LoadCredential=hf-token:/etc/hal0/hf-token": "LoadCredential=hf-token:" + tokenFile})

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cfg := config.Default(home)
	store := jobs.Open(cfg.Paths.JobsDir())

	rf := ref.MustParse("demo/w:Q4_K_M")
	if out, err := s.Systemctl(ctx, "start", rf.Unit()); err != nil {
		jr, _ := s.Journal(ctx, "-u", rf.Unit())
		t.Fatalf("systemctl start %s: %v\n%s\njournal:\n%s", rf.Unit(), err, out, jr)
	}
	j := waitJob(t, store, rf.String(), func(j *jobs.Job) bool { return j.State.Final() })
	if j.State != jobs.Completed || j.Runner != "systemd" || j.Unit != rf.Unit() {
		jr, _ := s.Journal(ctx, "-u", rf.Unit())
		t.Fatalf("job %+v\njournal:\n%s", j, jr)
	}
	// The worker logs its last line after writing the record: wait for the
	// unit to finish before reading the journal.
	if st, err := s.WaitUnit(ctx, rf.Unit(), "inactive"); err != nil {
		t.Fatalf("unit never went inactive (last state %s): %v", st, err)
	}
	// The journal has structured progress and outcome lines for the job.
	out, err := s.Journal(ctx, "-o", "cat", "HAL0_JOB_ID="+j.ID)
	if err != nil || !strings.Contains(out, "completed") {
		t.Fatalf("journal for job %s: %v\n%s", j.ID, err, out)
	}
	if strings.Contains(out, token) {
		t.Fatal("token in the journal")
	}
	// A credential, not an environment variable: nothing the unit's
	// properties show (or a child inherits) holds it.
	if env, _ := s.Systemctl(ctx, "show", "-p", "Environment", rf.Unit()); strings.Contains(env, token) || strings.Contains(env, "HF_TOKEN") {
		t.Fatalf("the token is in the unit's environment: %s", env)
	}

	// A failing pull leaves a failed unit whose exit status is the
	// documented code, and a job record that says why.
	bad := ref.MustParse("nobody/missing")
	s.Systemctl(ctx, "start", bad.Unit())
	j = waitJob(t, store, bad.String(), func(j *jobs.Job) bool { return j.State.Final() })
	if j.State != jobs.Failed || j.ErrorCode != api.CodeRepoNotFound {
		t.Fatalf("job %+v", j)
	}
	// The record is written before the worker exits: wait for systemd to
	// see the exit too.
	if st, err := s.WaitUnit(ctx, bad.Unit(), "failed"); err != nil {
		t.Fatalf("unit never failed (last state %s): %v", st, err)
	}
	show, _ := s.Systemctl(ctx, "show", "-p", "Result", "-p", "ExecMainStatus", bad.Unit())
	if !strings.Contains(show, "Result=exit-code") || !strings.Contains(show, "ExecMainStatus=3") {
		t.Fatalf("unit state:\n%s", show)
	}
}
