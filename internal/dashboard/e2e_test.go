package dashboard

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/livesystemd"
)

// TestBrowser runs the dashboard's browser suite, e2e/run.mjs: a real
// hal0-apid, the test hub and Debian's Chromium driven by playwright-core
// (see e2e/dashboard.test.mjs). It needs Node.js and Chromium; without
// them it skips, unless HAL0_LIVE_REQUIRED=1 (make test), where a missing
// browser is installed by run.mjs and anything else missing fails.
func TestBrowser(t *testing.T) {
	required := os.Getenv("HAL0_LIVE_REQUIRED") == "1"
	if testing.Short() && !required {
		t.Skip("-short: the browser suite builds binaries and starts Chromium")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		if required {
			t.Fatal("node is not installed, and HAL0_LIVE_REQUIRED=1: the browser tests run on Node.js (apt-get install nodejs npm)")
		}
		t.Skip("node is not installed: the browser tests run on Node.js")
	}
	chromium := os.Getenv("HAL0_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil && !required {
		// run.mjs would install it with apt; a plain go test does not
		// install system packages behind the developer's back.
		t.Skipf("%s is missing: run `node internal/dashboard/e2e/run.mjs` as root once (it installs Debian's chromium), or set HAL0_LIVE_REQUIRED=1", chromium)
	}

	timeout := 10 * time.Minute
	if d, ok := t.Deadline(); ok {
		timeout = time.Until(d) - 30*time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "run.mjs")
	cmd.Dir = "e2e"
	cmd.Env = append(os.Environ(), "HAL0_CHROMIUM="+chromium)
	if ok, why := livesystemd.Available(); ok {
		// The Logs panel reads a real journal: the slot the suite swaps
		// runs as hal0-slot@main.service in a private systemd, here a
		// shell that logs a numbered line every 200 ms (a stand-in
		// backend: the journal, not the backend, is under test).
		s := livesystemd.Boot(t, livesystemd.WithUnit("hal0-slot@.service",
			"[Service]\nExecStart=/bin/sh -c 'i=0; while :; do i=$$((i+1)); echo \"tick $$i of %i\"; sleep 0.2; done'\n"))
		if out, err := s.Systemctl(ctx, "start", "hal0-slot@main.service"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		cmd.Env = append(cmd.Env, "HAL0_E2E_JOURNAL_DIR="+s.HostPath("/run/log/journal"))
	} else {
		t.Logf("slot logs are tested without a journal: %s", why)
	}
	// The suite starts hal0-apid, the hub and Chromium; on a timeout the
	// whole process group goes, not only run.mjs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out := &testLog{t: t}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	out.flush()
	if err != nil {
		t.Fatalf("browser suite: %v (screenshots and logs: test-artifacts/dashboard/)", err)
	}
}

// testLog passes the suite's output to t.Log line by line, so it shows
// with -v or when the test fails.
type testLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.WriteString(line) // no newline yet: keep it for later
			return len(p), nil
		}
		l.t.Log(line[:len(line)-1])
	}
}

func (l *testLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 0 {
		l.t.Log(l.buf.String())
		l.buf.Reset()
	}
}
