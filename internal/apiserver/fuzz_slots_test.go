package apiserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/runner"
)

// FuzzSlotRequest sends arbitrary slot names, actions and bodies to POST
// /api/slots/{name}/{action}: every answer is a 202 with the recorded
// request or a 4xx with the error envelope, never a 500 and never a
// panic, and no request file is ever written outside the slots' state
// directory.
func FuzzSlotRequest(f *testing.F) {
	f.Add("primary", "swap", `{"model":"demo/m:Q4_K_M"}`)
	f.Add("primary", "load", ``)
	f.Add("primary", "unload", `{"model_id":"x"}`)
	f.Add("primary", "swap", `{"model":"../../etc/passwd"}`)
	f.Add("..", "load", `{}`)
	f.Add("primary", "swap", `{"model":"`+strings.Repeat("a", 400)+`"}`)
	f.Add("primary", "swap", `{"model":1}`)
	f.Add("primary", "swap", `{"model":"a"} {"model":"b"}`)
	home := f.TempDir()
	cfg := config.Default(home)
	if err := os.MkdirAll(cfg.Paths.SlotConfigDir(), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Paths.SlotConfigDir(), "primary.toml"), []byte(primaryTOML), 0o644); err != nil {
		f.Fatal(err)
	}
	s := &Server{Cfg: cfg, Jobs: jobs.Open(cfg.Paths.JobsDir()), Registry: registry.Open(cfg.Paths.RegistryFile()),
		Runner: &fakeRunner{state: map[string]runner.State{}}, Token: config.NewSecret("t")}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, name, action, body string) {
		if strings.ContainsAny(name+action, "/?# \t\r\n") {
			return // not single path segments
		}
		req, err := http.NewRequest("POST", "http://127.0.0.1/api/slots/"+name+"/"+action, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer t")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch c := rec.Code; {
		case (c == http.StatusTemporaryRedirect || c == http.StatusMovedPermanently) && path.Clean(req.URL.Path) != req.URL.Path:
		case c == http.StatusAccepted:
			var a api.SlotAccepted
			if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
				t.Fatalf("202 without a slot: %s", rec.Body)
			}
		case c >= 400 && c < 500:
			var env api.Envelope
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error == nil || env.Error.Code == "" {
				t.Fatalf("%d without an error envelope: %s", c, rec.Body)
			}
		default:
			t.Fatalf("status %d for %q %q body %q: %s", c, name, action, body, rec.Body)
		}
		// Requests land in <state>/slots/<configured name>/ only.
		filepath.Walk(home, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() && filepath.Base(p) == "request.json" && filepath.Dir(p) != cfg.Paths.SlotStateDir("primary") {
				t.Fatalf("request written at %s", p)
			}
			return nil
		})
	})
}
