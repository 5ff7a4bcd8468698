package cli

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/client/clienttest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/version"
)

const hint = "start it with `systemctl enable --now hal0-apid.socket`, or use `hal0 model pull --local`"

func TestExitCodes(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		args []string
		code int
		text string
	}{
		{[]string{"model", "show", "demo/none:Q4_K_M"}, api.ExitNotFound, "model demo/none:Q4_K_M is not installed"},
		{[]string{"model", "rm", "demo/none:Q4_K_M"}, api.ExitNotFound, "not installed"},
		{[]string{"pull", "status", "demo/none:Q4_K_M"}, api.ExitNotFound, "no pull job for demo/none:Q4_K_M"},
		{[]string{"pull", "cancel", "demo/none:Q4_K_M"}, api.ExitNotFound, "no pull job"},
		{[]string{"pull", "logs", "demo/none:Q4_K_M"}, api.ExitNotFound, "no pull job"},
		{[]string{"model", "show", "--local", "demo/none:Q4_K_M"}, api.ExitNotFound, "not installed"},
		{[]string{"model", "pull", "demo/../x"}, api.ExitUsage, "invalid model ref"},
		{[]string{"model", "pull", "demo/m", "--format", "zip"}, api.ExitUsage, "use dir or qcow2"},
		{[]string{"model", "pull"}, api.ExitUsage, "want exactly one REF"},
		{[]string{"model", "pull", "qwen3:4b"}, api.ExitFailed, "could not read FLM's catalog"},
		{[]string{"model", "list", "--api", "ftp://x"}, api.ExitUsage, "want http://host:port"},
		{[]string{"pull", "status", "--follow"}, api.ExitUsage, "--follow needs a REF"},
		{[]string{"model", "frobnicate"}, api.ExitUsage, "unknown command"},
	} {
		r := run(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.text) {
			t.Errorf("%q: want exit %d and %q\n%s", tc.args, tc.code, tc.text, r)
		}
	}
	if n := len(e.Requests()); n == 0 {
		t.Error("no request reached hal0-apid")
	}
}

// Without hal0-apid every command that needs it exits 8 and says what to
// run; the socket comes from the configuration.
func TestAPIUnreachable(t *testing.T) {
	e := clienttest.New(t, pullBin) // for its configuration only
	cfg := *e.Cfg
	cfg.Paths.RuntimeDir = t.TempDir()
	useConfig(t, &cfg)
	sock := filepath.Join(cfg.Paths.RuntimeDir, "api.sock")
	for _, args := range [][]string{
		{"model", "list"}, {"model", "show", clienttest.Model}, {"model", "rm", clienttest.Model},
		{"model", "pull", clienttest.Model}, {"model", "pull", clienttest.Model, "--detach"},
		{"pull", "status"}, {"pull", "cancel", clienttest.Model}, {"pull", "logs", clienttest.Model},
	} {
		r := run(t, args...)
		want := "cannot reach hal0-apid at " + sock + " (no such socket): " + hint
		if r.code != api.ExitNoAPI || !strings.Contains(r.stderr, want) {
			t.Errorf("%q: want exit %d and %q\n%s", args, api.ExitNoAPI, want, r)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	t.Setenv("HAL0_API", closed)
	if r := run(t, "pull", "status"); r.code != api.ExitNoAPI || !strings.Contains(r.stderr, "cannot reach hal0-apid at "+closed+" (connection refused): "+hint) {
		t.Errorf("HAL0_API to a closed port:\n%s", r)
	}
	// version still prints its own and says why the API's is missing.
	var v versionInfo
	decode(t, run(t, "version", "--json"), &v)
	if v.Version != version.Version || v.API != nil || !strings.Contains(v.APIError, "cannot reach hal0-apid") {
		t.Errorf("version without the API: %+v", v)
	}
}

func TestVersion(t *testing.T) {
	newEnv(t)
	var v versionInfo
	decode(t, run(t, "version", "--json"), &v)
	if v.Version != version.Version || v.API == nil || v.API.API != api.APIVersion || v.APIError != "" {
		t.Fatalf("version: %+v", v)
	}
	r := run(t, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "hal0 "+version.String()+"\nhal0-apid "+v.API.Version) || !strings.Contains(r.stdout, ", API 1\n") {
		t.Errorf("version:\n%s", r)
	}
}

// pull logs runs journalctl for jobs systemd ran. journalctl is replaced
// by a script that prints its arguments: these tests boot no systemd (the
// live tests in internal/livesystemd do).
func TestPullLogsJournal(t *testing.T) {
	e := newEnv(t)
	j, _, err := e.Server.Jobs.Begin(context.Background(), jobs.Job{Ref: "demo/other:Q4_K_M", Kind: "hf", Unit: "hal0-pull@demo-other:Q4_K_M.service", Runner: "systemd"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Server.Jobs.Update(context.Background(), j.ID, func(x *jobs.Job) error { x.State = jobs.Completed; return nil }); err != nil {
		t.Fatal(err)
	}
	stub := filepath.Join(t.TempDir(), "journalctl")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\necho \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := journalctl
	t.Cleanup(func() { journalctl = old })

	journalctl = stub
	if r := run(t, "pull", "logs", "demo/other:Q4_K_M"); r.code != 0 || r.stdout != "--no-pager -o cat HAL0_JOB_ID="+j.ID+"\n" {
		t.Errorf("pull logs:\n%s", r)
	}
	if r := run(t, "pull", "logs", "demo/other:Q4_K_M", "-f"); r.code != 0 || r.stdout != "--no-pager -o cat --follow HAL0_JOB_ID="+j.ID+"\n" {
		t.Errorf("pull logs -f:\n%s", r)
	}
	if r := run(t, "pull", "logs", "demo/other:Q4_K_M", "--json"); r.code != 0 || r.stdout != "--no-pager -o json HAL0_JOB_ID="+j.ID+"\n" {
		t.Errorf("pull logs --json:\n%s", r)
	}
	journalctl = filepath.Join(t.TempDir(), "no-journalctl")
	if r := run(t, "pull", "logs", "demo/other:Q4_K_M"); r.code != 1 || !strings.Contains(r.stderr, "journalctl is not installed") || !strings.Contains(r.stderr, "HAL0_JOB_ID="+j.ID) {
		t.Errorf("pull logs without journalctl:\n%s", r)
	}
}

// Every verb has --help with an example, and every read command --json.
func TestHelp(t *testing.T) {
	reads := map[string]bool{"model list": true, "model show": true, "pull status": true, "version": true}
	for g, cmds := range groups {
		for _, c := range cmds {
			args := []string{g}
			if c.name != "" {
				args = append(args, c.name)
			}
			r := run(t, append(args, "--help")...)
			name := strings.Join(args, " ")
			if r.code != 0 || !strings.Contains(r.stderr, "example:\n  hal0 "+g) {
				t.Errorf("%s --help:\n%s", name, r)
			}
			if reads[name] && !strings.Contains(r.stderr, "-json") {
				t.Errorf("%s has no --json", name)
			}
		}
	}
}

// A hal0-apid that accepts the connection but never answers must not make
// Ctrl-C useless: it abandons the request and exits 5.
func TestPullInterruptWhileAPIHangs(t *testing.T) {
	e := clienttest.New(t, pullBin)
	useConfig(t, e.Cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	})
	intr := make(chan os.Signal, 1)
	done := start(t, intr, "model", "pull", clienttest.Model, "--api", "http://"+l.Addr().String())
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(time.Minute):
		t.Fatal("the CLI never connected")
	}
	intr <- os.Interrupt
	r := wait(t, done)
	if r.code != api.ExitCancelled || !strings.Contains(r.stderr, "interrupted before hal0-apid answered") || !strings.Contains(r.stderr, "hal0 pull cancel demo/m:Q4_K_M") {
		t.Fatalf("interrupt during a hanging request:\n%s", r)
	}
}
