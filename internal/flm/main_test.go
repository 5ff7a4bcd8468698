package flm

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/flm/flmtest"
	"github.com/hal0ai/hal0/internal/registry"
)

// The tests below run flm as the stand-in of flmtest (built here with go
// build): the NPU, the FLM toolbox image and huggingface.co cannot exist
// in a test. The stand-in reproduces flm's documented CLI: list -j with a
// warning line before its JSON, pull with \r progress and ANSI escapes,
// files written straight into the cache directory, exit codes. As
// "podman" it runs the toolbox's command lines, interpreting the -v bind
// mount (the cache is reachable inside the "container" only through it),
// so the missing-mount detection is exercised for real.

var (
	standinOnce               sync.Once
	standinDir                string
	standinFLM, standinPodman string
	standinErr                error
)

// TestMain removes the stand-in built by the tests that needed it. It is
// built on first use, not here: fuzzing starts this binary once per
// worker.
func TestMain(m *testing.M) {
	code := m.Run()
	if standinDir != "" {
		os.RemoveAll(standinDir)
	}
	os.Exit(code)
}

func buildStandin(t *testing.T) {
	t.Helper()
	standinOnce.Do(func() {
		standinDir, standinErr = os.MkdirTemp("", "hal0-flm-test")
		if standinErr == nil {
			standinFLM, standinPodman, standinErr = flmtest.Build(standinDir)
		}
	})
	if standinErr != nil {
		t.Fatal(standinErr)
	}
}

const modelSize = 6 << 20

// testEnv is one HAL0_HOME with the stand-in configured.
type testEnv struct {
	*flmtest.Env
	home string
	cfg  *config.Config
	vars map[string]string
}

func newTestEnv(t *testing.T, runtime string, knobs ...string) *testEnv {
	t.Helper()
	buildStandin(t)
	home := t.TempDir()
	fe, err := flmtest.NewEnv(home, standinFLM, standinPodman, flmtest.Catalog(modelSize))
	if err != nil {
		t.Fatal(err)
	}
	vars := fe.Vars(runtime, knobs...)
	vars["HAL0_HOME"] = home
	cfg, err := config.LoadEnv(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{Env: fe, home: home, cfg: cfg, vars: vars}
}

// environ is the stand-in's environment: only what the test sets.
func (e *testEnv) environ() []string {
	return append(flmtest.Environ(e.vars), "PATH="+os.Getenv("PATH"), "HOME="+filepath.Join(e.home, "root-home"))
}

func (e *testEnv) puller(t *testing.T) *Puller {
	p := NewPuller(e.cfg)
	p.Env = e.environ()
	p.Prober.Env = p.Env
	p.Poll = 10 * time.Millisecond
	p.Logf = t.Logf
	return p
}

func (e *testEnv) registry(t *testing.T) *registry.Registry {
	t.Helper()
	r, err := registry.Open(e.cfg.Paths.RegistryFile()).Load()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// invocations counts how often the stand-in ran a command (as flm, or as
// podman).
func (e *testEnv) invocations(t *testing.T, prog, cmd string) int {
	t.Helper()
	log, err := flmtest.ReadLog(e.Log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := 0
	for _, inv := range log {
		if inv.Prog != prog {
			continue
		}
		for _, a := range inv.Args {
			if a == cmd {
				n++
				break
			}
		}
	}
	return n
}

// waitFor polls cond every 10 ms for at most 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *Prober) withEnv(env []string) *Prober { p.Env = env; return p }
