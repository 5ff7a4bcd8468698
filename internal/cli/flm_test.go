package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/client/clienttest"
	"github.com/hal0ai/hal0/internal/flm/flmtest"
	"github.com/hal0ai/hal0/internal/registry"
)

// FLM pulls through hal0-apid and real hal0-pull workers, with flm being
// the stand-in of flmtest (an NPU, the toolbox image and huggingface.co
// cannot exist here): as a host flm, and as podman running the toolbox
// with the cache bind-mounted (the stand-in interprets -v).

var (
	standinOnce           sync.Once
	standinFLM, standinPM string
	standinErr            error
)

func flmEnv(t *testing.T, runtime string, knobs ...string) (*clienttest.Env, *flmtest.Env) {
	t.Helper()
	standinOnce.Do(func() {
		standinFLM, standinPM, standinErr = flmtest.Build(filepath.Dir(pullBin))
	})
	if standinErr != nil {
		t.Fatal(standinErr)
	}
	e := newEnv(t)
	fe, err := flmtest.NewEnv(filepath.Join(e.Home, "flm"), standinFLM, standinPM, flmtest.Catalog(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	e.UseFLM(t, fe.Vars(runtime, knobs...))
	return e, fe
}

func TestFLMModelPull(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	e, fe := flmEnv(t, "host", "FLM_STANDIN_HOLD="+gate)
	done := start(t, nil, "model", "pull", "qwen3:4b")
	// Held half-way through the last file: the status has the catalog's
	// total, the bytes in the model directory and flm's current file.
	st := e.WaitPull(t, "qwen3:4b", func(s *api.PullStatus) bool {
		return s.State == "running" && s.CurrentFile == "tokenizer.json" && s.BytesDone > 0
	})
	if st.Kind != "flm" || st.BytesTotal != 4<<20 || st.Phase != "downloading" || st.Unit != "hal0-pull@qwen3:4b.service" || st.FilesTotal != 3 {
		t.Errorf("running status %+v", st)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := wait(t, done)
	dir := fe.ModelDir("qwen3:4b")
	if r.code != 0 || !strings.Contains(r.stderr, "qwen3:4b: ") || !strings.Contains(r.stderr, "installed in "+dir) {
		t.Fatalf("pull:\n%s", r)
	}
	var ms []registry.Model
	decode(t, run(t, "model", "list", "--json"), &ms)
	if len(ms) != 1 || ms[0].ID != "qwen3:4b" || ms[0].Path != dir || !reflect.DeepEqual(ms[0].Backends, []string{"npu"}) ||
		ms[0].Metadata["runtime"] != "flm" || !ms[0].Pullable {
		t.Fatalf("model list: %+v", ms)
	}
	final := e.WaitPull(t, "qwen3:4b", func(*api.PullStatus) bool { return true })
	if final.State != "completed" || final.BytesDone != final.BytesTotal || final.BytesTotal != ms[0].SizeBytes || final.Path != dir {
		t.Errorf("final status %+v", final)
	}
	// The recorded hashes are what verify checks.
	if r := run(t, "model", "verify", "qwen3:4b"); r.code != 0 || !strings.Contains(r.stdout, "all 3 files match") {
		t.Errorf("verify:\n%s", r)
	}
	// A tag flm does not have: exit 3 naming what it has.
	if r := run(t, "model", "pull", "qwen3:99b"); r.code != api.ExitNotFound || !strings.Contains(r.stderr, "qwen3:99b is not in FLM's catalog") {
		t.Errorf("unknown tag:\n%s", r)
	}
	// rm removes the directory from flm's cache.
	if r := run(t, "model", "rm", "qwen3:4b"); r.code != 0 {
		t.Fatalf("rm:\n%s", r)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s after rm: %v", dir, err)
	}
}

// Ctrl-C on `hal0 model pull qwen3:4b` through the toolbox: the worker
// stops the container, the partial directory goes, the command exits 5.
func TestFLMPullCtrlC(t *testing.T) {
	e, fe := flmEnv(t, "podman", "FLM_STANDIN_HOLD="+filepath.Join(t.TempDir(), "never"))
	intr := make(chan os.Signal, 2)
	done := start(t, intr, "model", "pull", "qwen3:4b")
	e.WaitPull(t, "qwen3:4b", func(s *api.PullStatus) bool { return s.State == "running" && s.CurrentFile == "tokenizer.json" })
	intr <- os.Interrupt
	r := wait(t, done)
	if r.code != api.ExitCancelled || !strings.Contains(r.stderr, "partial model directory "+fe.ModelDir("qwen3:4b")+" was removed") {
		t.Fatalf("want exit %d:\n%s", api.ExitCancelled, r)
	}
	if _, err := os.Stat(fe.ModelDir("qwen3:4b")); !os.IsNotExist(err) {
		t.Errorf("partial model directory left: %v", err)
	}
	if ents, _ := os.ReadDir(fe.State); len(ents) != 0 {
		t.Errorf("toolbox container left: %v", ents)
	}
}
