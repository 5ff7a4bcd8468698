package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/client/clienttest"
	"github.com/hal0ai/hal0/internal/config"
)

// The CLI tests run Run in-process against a real hal0-apid server
// (internal/apiserver) listening on a unix socket in a temporary HAL0_HOME
// and on 127.0.0.1, with pulls run as real hal0-pull child processes
// (runner.Process) against the in-repo hub. See clienttest.

var pullBin string

func TestMain(m *testing.M) {
	bin, err := clienttest.BuildWorker()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pullBin = bin
	code := m.Run()
	os.RemoveAll(filepath.Dir(bin))
	os.Exit(code)
}

// newEnv starts hal0-apid and points the CLI's configuration at it.
func newEnv(t *testing.T) *clienttest.Env {
	t.Helper()
	e := clienttest.New(t, pullBin)
	useConfig(t, e.Cfg)
	return e
}

func useConfig(t *testing.T, cfg *config.Config) {
	t.Helper()
	old := LoadConfig
	LoadConfig = func() (*config.Config, error) { c := *cfg; return &c, nil }
	t.Cleanup(func() { LoadConfig = old })
	t.Setenv("HAL0_API", "")
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs the CLI to completion with captured output.
func run(t *testing.T, args ...string) result {
	t.Helper()
	return <-start(t, nil, args...)
}

// start runs the CLI in the background; intr, when not nil, is where its
// Ctrl-C comes from. The result arrives on the returned channel.
func start(t *testing.T, intr chan os.Signal, args ...string) <-chan result {
	t.Helper()
	var out, errb bytes.Buffer
	oldOut, oldErr, oldIntr := Stdout, Stderr, interrupts
	Stdout, Stderr = &out, &errb
	if intr != nil {
		interrupts = func() (<-chan os.Signal, func()) { return intr, func() {} }
	}
	done := make(chan result, 1)
	go func() {
		code := Run(context.Background(), args)
		Stdout, Stderr, interrupts = oldOut, oldErr, oldIntr
		done <- result{code, out.String(), errb.String()}
	}()
	return done
}

// wait returns the result of a background run, failing after a minute.
func wait(t *testing.T, done <-chan result) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(time.Minute):
		t.Fatal("the command did not return within a minute")
		return result{}
	}
}
