package apiserver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/flm"
	"github.com/hal0ai/hal0/internal/flm/flmtest"
	"github.com/hal0ai/hal0/internal/registry"
)

// FLM's catalog comes from the stand-in flm of flmtest (run as a host
// flm): no NPU and no flm can exist here. The pulls themselves run in
// hal0-pull, tested in internal/flm, internal/worker and internal/cli.

var (
	standinOnce sync.Once
	standinDir  string
	standinFLM  string
	standinErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if standinDir != "" {
		os.RemoveAll(standinDir)
	}
	os.Exit(code)
}

// withFLM configures a's server to use the stand-in flm with the test
// catalog and returns its files.
func withFLM(t *testing.T, a *testAPI) *flmtest.Env {
	t.Helper()
	standinOnce.Do(func() {
		standinDir, standinErr = os.MkdirTemp("", "hal0-apiserver-flm")
		if standinErr == nil {
			standinFLM, _, standinErr = flmtest.Build(standinDir)
		}
	})
	if standinErr != nil {
		t.Fatal(standinErr)
	}
	fe, err := flmtest.NewEnv(t.TempDir(), standinFLM, "", flmtest.Catalog(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	a.cfg.FLM.Runtime, a.cfg.FLM.FLMPath, a.cfg.FLM.CacheDir = "host", standinFLM, fe.CacheDir
	p := flm.NewProber(a.cfg)
	p.Env = flmtest.Environ(fe.Vars("host"))
	a.srv.FLM = p
	return fe
}

func TestFLMPullRoute(t *testing.T) {
	a := newAPI(t)
	withFLM(t, a)
	var st api.PullStatus
	if code := a.do(t, "POST", "/api/models/qwen3:4b/pull", "", &st); code != 202 {
		t.Fatalf("pull: %d %+v", code, st)
	}
	if st.Kind != "flm" || st.ModelID != "qwen3:4b" || st.Unit != "hal0-pull@qwen3:4b.service" || st.State != "queued" {
		t.Fatalf("job %+v", st)
	}
	if len(a.run.starts) != 1 || a.run.starts[0] != "hal0-pull@qwen3:4b.service" {
		t.Fatalf("starts %v", a.run.starts)
	}
	// A second POST joins the running job.
	var again api.PullStatus
	if code := a.do(t, "POST", "/api/models/qwen3:4b/pull", "", &again); code != 202 || !again.Existing || again.JobID != st.JobID {
		t.Fatalf("second pull: %d %+v", code, again)
	}
	for _, tc := range []struct {
		path, body string
		status     int
		code, text string
	}{
		// is_flm_tag: family:size must be in the catalog.
		{"/api/models/qwen3:99b/pull", "", 404, api.CodeFLMUnknownTag, "qwen3:99b is not in FLM's catalog (flm list): FLM runs only its own models, named family:size; it has 3: embed-gemma:300m, llama3.2:1b, qwen3:4b"},
		{"/api/models/llama3.2:1b/pull", `{"quant":"Q4_K_M"}`, 400, api.CodeBadRequest, "llama3.2:1b is an FLM tag: flm decides what to download for it, so quant cannot be set"},
	} {
		var env api.Envelope
		if code := a.do(t, "POST", tc.path, tc.body, &env); code != tc.status || env.Error == nil || env.Error.Code != tc.code || !strings.Contains(env.Error.Message, tc.text) {
			t.Errorf("%s %s: %d %+v", tc.path, tc.body, code, env.Error)
		}
	}

	// No flm at all: 503 naming the configuration to fix.
	a.cfg.FLM.FLMPath = "/nonexistent/flm"
	a.srv.FLM = flm.NewProber(a.cfg)
	var env api.Envelope
	if code := a.do(t, "POST", "/api/models/llama3.2:1b/pull", "", &env); code != 503 || env.Error.Code != api.CodeFLMUnavailable ||
		!strings.Contains(env.Error.Message, "/nonexistent/flm") || !strings.Contains(env.Error.Message, "check [flm] in") {
		t.Fatalf("no flm: %d %+v", code, env.Error)
	}
}

func TestFLMCatalogRoute(t *testing.T) {
	a := newAPI(t)
	fe := withFLM(t, a)
	// qwen3:4b is installed through hal0; llama3.2:1b was pulled by hand
	// (flm has it, the registry does not).
	dir := fe.ModelDir("qwen3:4b")
	for _, m := range []string{"qwen3:4b", "llama3.2:1b"} {
		d := fe.ModelDir(m)
		os.MkdirAll(d, 0o755)
		for _, f := range []string{"config.json", "model.q4nx", "tokenizer.json"} {
			os.WriteFile(filepath.Join(d, f), []byte("x"), 0o644)
		}
	}
	a.srv.Registry.Update(context.Background(), func(r *registry.Registry) error {
		r.Put(&registry.Model{ID: "qwen3:4b", Path: dir, Dir: dir, SizeBytes: 3, Source: "flm", Backends: []string{"npu"}, Pullable: true})
		return nil
	})
	var cat api.FLMCatalog
	if code := a.do(t, "GET", "/api/flm/models", "", &cat); code != 200 {
		t.Fatalf("%d", code)
	}
	if cat.Runtime != "host" || cat.CacheDir != fe.CacheDir || cat.ProbedAt.IsZero() || cat.Warning != "" || len(cat.Models) != 3 {
		t.Fatalf("catalog %+v", cat)
	}
	byID := map[string]api.FLMModel{}
	for _, m := range cat.Models {
		byID[m.ID] = m
		if !m.Pullable || len(m.Backends) != 1 || m.Backends[0] != "npu" {
			t.Errorf("%s: %+v", m.ID, m)
		}
	}
	if q := byID["qwen3:4b"]; !q.Installed || !q.FLMInstalled || q.SizeBytes != 3 || q.Repo != "Qwen3-4B-NPU2" {
		t.Errorf("qwen3:4b %+v", q)
	}
	if l := byID["llama3.2:1b"]; l.Installed || !l.FLMInstalled {
		t.Errorf("llama3.2:1b %+v", l)
	}
	if e := byID["embed-gemma:300m"]; e.Installed || e.FLMInstalled || e.SizeBytes != 1<<20 || e.Capabilities[0] != "embed" {
		t.Errorf("embed-gemma:300m %+v", e)
	}

	// Removing the model deletes its directory in flm's cache, and the
	// catalog is read again.
	if code := a.do(t, "DELETE", "/api/models/qwen3:4b", "", nil); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", dir, err)
	}
	cat = api.FLMCatalog{}
	a.do(t, "GET", "/api/flm/models", "", &cat)
	for _, m := range cat.Models {
		if m.ID == "qwen3:4b" && (m.Installed || m.FLMInstalled) {
			t.Errorf("after delete: %+v", m)
		}
	}
}

func TestFLMSlots(t *testing.T) {
	a := slotAPI(t)
	withFLM(t, a)
	// A tag flm does not have is refused before hal0-slotd is asked.
	var env api.Envelope
	if code := a.do(t, "POST", "/api/slots/npu/swap", `{"model":"qwen3:99b"}`, &env); code != 404 || env.Error.Code != api.CodeFLMUnknownTag ||
		!strings.Contains(env.Error.Message, "slot npu: qwen3:99b is not in FLM's catalog") {
		t.Fatalf("unknown tag: %d %+v", code, env.Error)
	}
	if request(t, a, "npu") != nil {
		t.Fatal("a request was recorded for an unknown tag")
	}
	if code := a.do(t, "POST", "/api/slots/npu/swap", `{"model":"llama3.2:1b"}`, nil); code != 202 {
		t.Fatalf("swap to a catalog tag: %d", code)
	}

	// Only one NPU slot may be enabled: a second one makes every slot
	// request a 409 that names both and the fix.
	writeSlot(t, a, "npu2", "[slot]\nport = 8089\nbackend = \"flm\"\n[model]\ndefault = \"qwen3:4b\"\n")
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/api/slots/npu2/load", ""}, {"POST", "/api/slots/npu/swap", `{"model":"qwen3:4b"}`}, {"GET", "/api/slots", ""},
	} {
		env = api.Envelope{}
		if code := a.do(t, tc.method, tc.path, tc.body, &env); code != 409 ||
			env.Error.Code != api.CodeSlotNPU || !strings.Contains(env.Error.Message, "slots npu and npu2 both use the NPU") ||
			!strings.Contains(env.Error.Message, "set enabled = false in one of them") {
			t.Errorf("%s %s: %d %+v", tc.method, tc.path, code, env.Error)
		}
	}
	writeSlot(t, a, "npu2", "[slot]\nport = 8089\nbackend = \"flm\"\nenabled = false\n")
	if code := a.do(t, "POST", "/api/slots/npu/swap", `{"model":"qwen3:4b"}`, nil); code != 202 {
		t.Fatalf("with the second NPU slot disabled: %d", code)
	}
}
