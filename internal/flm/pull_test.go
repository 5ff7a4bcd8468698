package flm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/pull"
	"github.com/hal0ai/hal0/internal/registry"
)

func codeOf(err error) string { return api.CodeOf(err) }

// TestPullToCompletion pulls qwen3:4b through both runtimes. The last
// file is held half-way (the stand-in's gate) until the test has seen
// the progress it expects, so nothing depends on timing.
func TestPullToCompletion(t *testing.T) {
	for _, runtime := range []string{"host", "podman"} {
		t.Run(runtime, func(t *testing.T) {
			gate := filepath.Join(t.TempDir(), "gate")
			e := newTestEnv(t, runtime, "FLM_STANDIN_HOLD="+gate)
			p := e.puller(t)
			h := p.Start("qwen3:4b")
			done := make(chan error, 1)
			var m *registry.Model
			go func() {
				var err error
				m, err = h.Wait(context.Background())
				done <- err
			}()
			// Held half-way through tokenizer.json (the last of 3 files):
			// bytes come from the directory, the total from the catalog,
			// the file from flm's output.
			per := int64(modelSize / 2)
			waitFor(t, "the last file half-way", func() bool {
				pr := h.Progress()
				return pr.CurrentFile == "tokenizer.json" && pr.Done >= per+per/2
			})
			pr := h.Progress()
			if pr.Phase != pull.PhaseDownloading || pr.Total != modelSize || pr.Done >= modelSize+64 ||
				pr.FilesTotal != 3 || pr.FilesDone != 2 || pr.Received != pr.Done || pr.Resumed != 0 {
				t.Fatalf("mid-pull progress %+v", pr)
			}
			if err := os.WriteFile(gate, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			dir := e.ModelDir("qwen3:4b")
			final := h.Progress()
			if final.Phase != pull.PhaseDone || final.Done != final.Total || final.Total != m.SizeBytes || final.FilesDone != final.FilesTotal {
				t.Errorf("final progress %+v", final)
			}
			reg := e.registry(t)
			got, ok := reg.Get("qwen3:4b")
			if !ok {
				t.Fatal("no registry entry")
			}
			if got.Path != dir || got.Dir != dir || !reflect.DeepEqual(got.Backends, []string{"npu"}) || got.Metadata["runtime"] != "flm" ||
				got.Source != "flm" || !got.Pullable || got.SizeBytes < modelSize || len(got.Files) != 3 ||
				!reflect.DeepEqual(got.Capabilities, []string{"chat"}) {
				t.Errorf("registry entry %+v", got)
			}
			var sum int64
			for _, f := range got.Files {
				fi, err := os.Stat(filepath.Join(dir, f.Path))
				if err != nil || fi.Size() != f.Size || len(f.SHA256) != 64 {
					t.Errorf("file %+v: %v", f, err)
				}
				sum += f.Size
			}
			if sum != got.SizeBytes {
				t.Errorf("size %d, files sum to %d", got.SizeBytes, sum)
			}
			// Re-probed after the pull: the catalog now says installed,
			// and a prober in another process learns it from the stamp.
			other := NewProber(e.cfg)
			other.Env = e.environ()
			cat, _, err := other.Catalog(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if q, _ := cat.Get("qwen3:4b"); !q.Installed {
				t.Error("flm list does not count the pulled model as installed")
			}
			if runtime == "podman" {
				// The container is gone with its scratch root; the model
				// stays in the bind-mounted cache.
				if ents, _ := os.ReadDir(e.State); len(ents) != 0 {
					t.Errorf("podman state left: %v", ents)
				}
			}

			// Pulling again: flm says it has the model; nothing is
			// removed or downloaded again, the entry is rewritten.
			before, _ := os.Stat(filepath.Join(dir, "tokenizer.json"))
			m2, err := e.puller(t).Start("qwen3:4b").Wait(context.Background())
			if err != nil || m2.SizeBytes != got.SizeBytes {
				t.Fatalf("second pull: %+v %v", m2, err)
			}
			if after, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
				t.Error("the second pull replaced an installed file")
			}
		})
	}
}

// TestCancelMidPull cancels while the last file is half-written, through
// both runtimes: flm is stopped (podman stop for the toolbox), and the
// model directory, which flm would take for complete next time, is gone.
func TestCancelMidPull(t *testing.T) {
	for _, runtime := range []string{"host", "podman"} {
		t.Run(runtime, func(t *testing.T) {
			gate := filepath.Join(t.TempDir(), "never")
			e := newTestEnv(t, runtime, "FLM_STANDIN_HOLD="+gate)
			p := e.puller(t)
			h := p.Start("qwen3:4b")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { _, err := h.Wait(ctx); done <- err }()
			dir := e.ModelDir("qwen3:4b")
			waitFor(t, "a partial file", func() bool {
				fi, err := os.Stat(filepath.Join(dir, "tokenizer.json"))
				return err == nil && fi.Size() > 0
			})
			cancel()
			err := <-done
			if codeOf(err) != api.CodeCancelled || !strings.Contains(err.Error(), "partial model directory "+dir+" was removed") {
				t.Fatalf("err %v", err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("model directory left behind: %v", err)
			}
			if _, ok := e.registry(t).Get("qwen3:4b"); ok {
				t.Error("registry entry after a cancel")
			}
			if runtime == "podman" {
				if e.invocations(t, "podman", "stop") != 1 {
					t.Error("the container was not stopped with podman stop")
				}
				if ents, _ := os.ReadDir(e.State); len(ents) != 0 {
					t.Errorf("container left: %v", ents)
				}
			}
			// A pull after the cancel downloads everything again
			// instead of trusting the partial file.
			if err := os.WriteFile(gate, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := e.puller(t).Start("qwen3:4b").Wait(context.Background())
			if err != nil || m.SizeBytes < modelSize {
				t.Fatalf("pull after cancel: %+v %v", m, err)
			}
		})
	}
}

// TestPartialLeftoverIsNotTrusted: a worker killed mid-pull (kill -9
// cannot clean up) leaves every file present and the last one short;
// flm, which checks presence only, calls that installed. hal0 did not
// record the model, so the directory is discarded and pulled again.
func TestPartialLeftoverIsNotTrusted(t *testing.T) {
	e := newTestEnv(t, "host")
	dir := e.ModelDir("qwen3:4b")
	os.MkdirAll(dir, 0o755)
	for name, size := range map[string]int{"config.json": 10, "model.q4nx": modelSize / 2, "tokenizer.json": 1000} {
		os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o644)
	}
	cat, _, err := NewProber(e.cfg).withEnv(e.environ()).Catalog(context.Background())
	if q, _ := cat.Get("qwen3:4b"); err != nil || !q.Installed {
		t.Fatalf("the stand-in should count the leftover as installed, as flm does: %v", err)
	}
	m, err := e.puller(t).Start("qwen3:4b").Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		if f.Path == "tokenizer.json" && f.Size != modelSize/2 {
			t.Fatalf("the short leftover was kept: %+v", f)
		}
	}
}

// TestFailingPull: flm breaks off on the second file like a network
// error and exits 1; the job fails with flm's own [ERROR] line, and
// nothing is left that flm would trust.
func TestFailingPull(t *testing.T) {
	for _, runtime := range []string{"host", "podman"} {
		t.Run(runtime, func(t *testing.T) {
			e := newTestEnv(t, runtime, "FLM_STANDIN_FAIL_AFTER=1")
			_, err := e.puller(t).Start("qwen3:4b").Wait(context.Background())
			if codeOf(err) != api.CodeFLMFailed || !strings.Contains(err.Error(), "exited with status 1: Failed to pull model: qwen3:4b") {
				t.Fatalf("err %v", err)
			}
			if _, err := os.Stat(e.ModelDir("qwen3:4b")); !os.IsNotExist(err) {
				t.Errorf("model directory left behind: %v", err)
			}
			if _, ok := e.registry(t).Get("qwen3:4b"); ok {
				t.Error("registry entry after a failure")
			}
		})
	}
}

// TestMissingCacheMount runs the toolbox with an image whose flm user
// has another HOME (/root), so the bind mount at
// /var/lib/hal0/.config/flm/models is not where flm looks: flm downloads
// into the container, which goes away. The pull must fail saying so, not
// record a model that is not there.
func TestMissingCacheMount(t *testing.T) {
	e := newTestEnv(t, "podman", "PODMAN_STANDIN_HOME=/root")
	_, err := e.puller(t).Start("qwen3:4b").Wait(context.Background())
	if codeOf(err) != api.CodeFLMCacheMount || !strings.Contains(err.Error(), "-v "+e.CacheDir+":"+ContainerModels) ||
		!strings.Contains(err.Error(), "lacks the model's files (config.json, model.q4nx, tokenizer.json)") {
		t.Fatalf("err %v", err)
	}
	if e.invocations(t, "flm", "pull") != 1 {
		t.Fatal("flm pull did not run")
	}
	if _, ok := e.registry(t).Get("qwen3:4b"); ok {
		t.Error("registry entry for a model that vanished")
	}

	// With a model already in the cache, the blind flm is caught before
	// anything is downloaded: flm list reports nothing installed while
	// the cache holds a complete model.
	e2 := newTestEnv(t, "podman")
	if _, err := e2.puller(t).Start("llama3.2:1b").Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	e2.vars["PODMAN_STANDIN_HOME"] = "/root"
	_, err = e2.puller(t).Start("qwen3:4b").Wait(context.Background())
	if codeOf(err) != api.CodeFLMCacheMount || !strings.Contains(err.Error(), "flm reports no model installed, yet "+e2.CacheDir+" holds complete models (llama3.2:1b)") {
		t.Fatalf("err %v", err)
	}
	if n := e2.invocations(t, "flm", "pull"); n != 1 {
		t.Errorf("%d flm pulls, want only the first one", n)
	}

	// A host flm that ignores FLM_MODEL_PATH is the same failure.
	e3 := newTestEnv(t, "host", "FLM_STANDIN_IGNORE_MODEL_PATH=1")
	_, err = e3.puller(t).Start("qwen3:4b").Wait(context.Background())
	if codeOf(err) != api.CodeFLMCacheMount || !strings.Contains(err.Error(), "FLM_MODEL_PATH="+filepath.Dir(e3.CacheDir)) {
		t.Fatalf("host: err %v", err)
	}
}

func TestPullRefusals(t *testing.T) {
	e := newTestEnv(t, "host")
	_, err := e.puller(t).Start("qwen3:99b").Wait(context.Background())
	if codeOf(err) != api.CodeFLMUnknownTag || !strings.Contains(err.Error(), "it has 3: embed-gemma:300m, llama3.2:1b, qwen3:4b") {
		t.Fatalf("unknown tag: %v", err)
	}
	if e.invocations(t, "flm", "pull") != 0 {
		t.Error("flm pull ran for a tag not in the catalog")
	}

	// No toolbox image: podman's own error (status 125).
	e2 := newTestEnv(t, "podman")
	p := e2.puller(t)
	p.Toolbox.Image = "localhost/missing:1"
	_, err = p.Start("qwen3:4b").Wait(context.Background())
	if codeOf(err) != api.CodeFLMUnavailable || !strings.Contains(err.Error(), "localhost/missing:1: image not known") {
		t.Fatalf("missing image: %v", err)
	}

	// Cancelled before anything ran.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = e.puller(t).Start("qwen3:4b").Wait(ctx)
	if !errors.Is(err, context.Canceled) && codeOf(err) != api.CodeCancelled {
		t.Fatalf("cancelled: %v", err)
	}
}
