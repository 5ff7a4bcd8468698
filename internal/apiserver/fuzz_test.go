package apiserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/runner"
)

// FuzzPullRequest sends arbitrary ids and bodies to POST
// /api/models/{id}/pull: every answer is a 202 with a job, a 4xx with the
// error envelope, or, for FLM tags, 503 pull.flm_unavailable (no flm can
// run here), never a 500 and never a panic.
func FuzzPullRequest(f *testing.F) {
	f.Add("demo%2Fm:Q4_K_M", `{"quant":"Q8_0","include":["*.gguf"]}`)
	f.Add("..%2Fx", `{}`)
	f.Add("qwen3:4b", ``)
	f.Add("o%2Fn", `{"format":"qcow2","revision":"refs/pr/1"}`)
	f.Add("o%2Fn", `{"quant":"../../x"}`)
	f.Add("o%2Fn", `[1,2]`)
	cfg := config.Default(f.TempDir())
	noFLM(cfg)
	s := &Server{Cfg: cfg, Jobs: jobs.Open(cfg.Paths.JobsDir()), Registry: registry.Open(cfg.Paths.RegistryFile()),
		Runner: &fakeRunner{state: map[string]runner.State{}}, Token: config.NewSecret("t")}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, id, body string) {
		if strings.ContainsAny(id, "/?# \t\r\n") {
			return // not a single escaped path segment
		}
		req, err := http.NewRequest("POST", "http://127.0.0.1/api/models/"+id+"/pull", strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer t")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch c := rec.Code; {
		case (c == http.StatusTemporaryRedirect || c == http.StatusMovedPermanently) && path.Clean(req.URL.Path) != req.URL.Path:
			// The mux redirects unclean paths ("//", "/./") to their clean
			// form, as HTTP servers do.
		case c == http.StatusAccepted:
			var st api.PullStatus
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.JobID == "" {
				t.Fatalf("202 without a job: %s", rec.Body)
			}
		case c >= 400 && c < 500, c == http.StatusServiceUnavailable:
			var env api.Envelope
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error == nil || env.Error.Code == "" {
				t.Fatalf("%d without an error envelope: %s", c, rec.Body)
			}
			if c == http.StatusServiceUnavailable && env.Error.Code != api.CodeFLMUnavailable {
				t.Fatalf("503 %s", rec.Body)
			}
		default:
			t.Fatalf("status %d for id %q body %q: %s", c, id, body, rec.Body)
		}
	})
}
