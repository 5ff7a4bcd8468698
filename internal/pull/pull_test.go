package pull

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
)

const testToken = "hf_testtokenAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// These tests run the engine against the in-repo hub (a real HTTP server on
// 127.0.0.1 with a separate CDN host) standing in for huggingface.co, which
// tests may not reach.

type fixture struct {
	hub   *hubtest.Hub
	cfg   *config.Config
	files []hubtest.File // the sharded GGUF set of demo/m
}

func newFixture(t *testing.T, opts hubtest.Options) *fixture {
	t.Helper()
	if opts.Token == "" {
		opts.Token = testToken
	}
	hub, err := hubtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	files := hubtest.GenerateGGUFShards("", "m", "Q4_K_M", 3, 3<<20+12345, 1)
	files = append(files, hubtest.File{Path: "README.md", Data: []byte("# demo model\n")})
	hub.AddRepo(hubtest.Repo{ID: "demo/m", Files: files})
	cfg := config.Default(t.TempDir())
	cfg.HF.Endpoint = hub.URL
	cfg.Pull.ChunkSize = 1 << 20
	cfg.Pull.Connections = 4
	cfg.Pull.DiskReserve = 0
	cfg.Pull.StallTimeout = config.Duration(300 * time.Millisecond)
	cfg.Pull.MaxRetries = 4
	return &fixture{hub: hub, cfg: cfg, files: files}
}

func (f *fixture) engine() *Engine {
	e := New(f.cfg)
	e.BackoffBase = 5 * time.Millisecond
	e.BackoffMax = 50 * time.Millisecond
	return e
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// checkInstalled verifies the registry entry and every byte on disk.
func (f *fixture) checkInstalled(t *testing.T, m *registry.Model, want []hubtest.File) {
	t.Helper()
	reg, err := registry.Open(f.cfg.Paths.RegistryFile()).Load()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := reg.Get(m.ID)
	if !ok {
		t.Fatalf("registry has no %s", m.ID)
	}
	if len(got.Files) != len(want) {
		t.Fatalf("registry lists %d files, want %d", len(got.Files), len(want))
	}
	for i, w := range want {
		data, err := os.ReadFile(filepath.Join(got.Dir, w.Path))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, w.Data) {
			t.Fatalf("%s: content differs", w.Path)
		}
		if got.Files[i].SHA256 != sha(w.Data) || got.Files[i].Size != int64(len(w.Data)) {
			t.Errorf("%s: registry %+v", w.Path, got.Files[i])
		}
	}
	if !strings.HasPrefix(got.Dir, f.cfg.Paths.PullDir()) {
		t.Errorf("installed outside the pull dir: %s", got.Dir)
	}
	// Nothing is left in staging.
	if ents, _ := os.ReadDir(f.cfg.Paths.StagingDir()); len(ents) != 0 {
		t.Errorf("staging not cleaned: %v", ents)
	}
}

func ggufOnly(files []hubtest.File) []hubtest.File {
	var out []hubtest.File
	for _, f := range files {
		if strings.HasSuffix(f.Path, ".gguf") {
			out = append(out, f)
		}
	}
	return out
}

func TestPullShardedGGUF(t *testing.T) {
	f := newFixture(t, hubtest.Options{})
	f.cfg.HF.Token = config.NewSecret(testToken)
	m, err := f.engine().Pull(context.Background(), Request{Ref: ref.MustParse("demo/m:Q4_K_M")})
	if err != nil {
		t.Fatal(err)
	}
	f.checkInstalled(t, m, ggufOnly(f.files))
	if m.Commit != f.hub.Repo("demo/m").Commit {
		t.Errorf("commit %s, want %s", m.Commit, f.hub.Repo("demo/m").Commit)
	}
	if !strings.HasSuffix(m.Path, "m-Q4_K_M-00001-of-00003.gguf") {
		t.Errorf("Path %s is not the first shard", m.Path)
	}
	// The token went to the hub and never to the CDN host.
	sawHubAuth := false
	for _, r := range f.hub.Requests() {
		if r.Server == "cdn" && r.Auth {
			t.Fatalf("Authorization sent to the CDN: %s %s", r.Method, r.URI)
		}
		if r.Server == "hub" && r.Authorization == "Bearer "+testToken {
			sawHubAuth = true
		}
	}
	if !sawHubAuth {
		t.Error("token never sent to the hub")
	}
	// Each byte was transferred once: parallel ranges do not overlap.
	if b, total := f.hub.Stats().Bytes, m.SizeBytes; b != total {
		t.Errorf("transferred %d bytes for %d", b, total)
	}

	// Pulling again is a no-op at the same commit.
	f.hub.ResetStats()
	if _, err := f.engine().Pull(context.Background(), Request{Ref: ref.MustParse("demo/m:Q4_K_M")}); err != nil {
		t.Fatal(err)
	}
	if b := f.hub.Stats().Bytes; b != 0 {
		t.Errorf("re-pull transferred %d bytes", b)
	}
}

func TestPullWholeRepoAndFile(t *testing.T) {
	f := newFixture(t, hubtest.Options{})
	st := hubtest.GenerateSafetensorsShards("", 2, 1<<20, 7)
	f.hub.AddRepo(hubtest.Repo{ID: "org/st", Files: st})
	m, err := f.engine().Pull(context.Background(), Request{Ref: ref.MustParse("org/st")})
	if err != nil {
		t.Fatal(err)
	}
	f.checkInstalled(t, m, sortedFiles(st))

	m, err = f.engine().Pull(context.Background(), Request{Ref: ref.MustParse("demo/m/README.md")})
	if err != nil {
		t.Fatal(err)
	}
	f.checkInstalled(t, m, []hubtest.File{f.files[len(f.files)-1]})
}

func sortedFiles(fs []hubtest.File) []hubtest.File {
	out := append([]hubtest.File(nil), fs...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].Path < out[i].Path {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestPullSurvivesFaults injects each kind of network fault once; the pull
// must finish with correct bytes.
func TestPullSurvivesFaults(t *testing.T) {
	shard := "m-Q4_K_M-00002-of-00003.gguf"
	for _, tc := range []struct {
		name string
		opts hubtest.Options
		f    hubtest.Fault
	}{
		{"connection drop", hubtest.Options{}, hubtest.Fault{Path: shard, Where: "cdn", DropAfter: 300000, Times: 2}},
		{"drop before any byte", hubtest.Options{}, hubtest.Fault{Path: shard, Where: "cdn", DropAfter: hubtest.Zero, Times: 2}},
		{"corrupt byte", hubtest.Options{}, hubtest.Fault{Path: shard, Where: "cdn", CorruptAt: 1<<20 + 17, Times: 1}},
		{"stall", hubtest.Options{}, hubtest.Fault{Path: shard, Where: "cdn", StallAt: 1000, StallFor: 10 * time.Second, Times: 1}},
		{"429 with Retry-After", hubtest.Options{}, hubtest.Fault{Path: shard, Status: 429, RetryAfter: 0, Times: 2}},
		{"500 burst", hubtest.Options{}, hubtest.Fault{Path: shard, Status: 503, Times: 3}},
		{"range ignored", hubtest.Options{}, hubtest.Fault{Path: shard, Where: "cdn", IgnoreRange: true}},
		{"no content length", hubtest.Options{}, hubtest.Fault{Path: shard, Where: "cdn", NoContentLength: true}},
		{"short content length", hubtest.Options{}, hubtest.Fault{Path: shard, Where: "cdn", WrongContentLength: 1000, Times: 2}},
		{"api 500 burst", hubtest.Options{}, hubtest.Fault{Where: "api", Status: 500, Times: 2}},
		{"lenient mirror", hubtest.Options{Lenient: true, PageSize: 2}, hubtest.Fault{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.opts)
			if tc.f != (hubtest.Fault{}) {
				f.hub.AddFault(tc.f)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			m, err := f.engine().Pull(ctx, Request{Ref: ref.MustParse("demo/m:Q4_K_M")})
			if err != nil {
				t.Fatal(err)
			}
			f.checkInstalled(t, m, ggufOnly(f.files))
		})
	}
}

func TestPullErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ref   string
		token string
		setup func(h *hubtest.Hub)
		code  string
		msg   string
	}{
		{name: "repo not found", ref: "nobody/nothing", code: api.CodeRepoNotFound, msg: "not found"},
		{name: "revision not found", ref: "demo/m@nope", code: api.CodeRevisionNotFound},
		{name: "file not found", ref: "demo/m/absent.gguf", code: api.CodeEntryNotFound},
		{name: "gated anonymous", ref: "demo/gated", setup: func(h *hubtest.Hub) {
			h.AddRepo(hubtest.Repo{ID: "demo/gated", Gated: "manual", Files: []hubtest.File{{Path: "a.gguf", Data: []byte("GGUF"), LFS: true}}})
		}, code: api.CodeGated, msg: "accept its license"},
		{name: "gated not approved", ref: "demo/gated", token: testToken, setup: func(h *hubtest.Hub) {
			h.AddRepo(hubtest.Repo{ID: "demo/gated", Gated: "manual", Files: []hubtest.File{{Path: "a.gguf", Data: []byte("GGUF"), LFS: true}}})
		}, code: api.CodeGated, msg: "request access"},
		{name: "bad token", ref: "demo/m:Q4_K_M", token: "hf_wrongwrongwrongwrongwrongwrongwrong", code: api.CodeAuth, msg: "invalid"},
		{name: "no such quant", ref: "demo/m:Q2_K", code: api.CodeNoMatch, msg: "Q4_K_M"},
		{name: "dead CDN", ref: "demo/m:Q4_K_M", setup: func(h *hubtest.Hub) { h.AddFault(hubtest.Fault{DeadCDN: true}) }, code: api.CodeNetwork},
		{name: "always corrupt", ref: "demo/m:Q4_K_M", setup: func(h *hubtest.Hub) {
			h.AddFault(hubtest.Fault{Path: "m-Q4_K_M-00001-of-00003.gguf", Where: "cdn", CorruptAt: 5})
		}, code: api.CodeChecksum, msg: "m-Q4_K_M-00001-of-00003.gguf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, hubtest.Options{})
			if tc.setup != nil {
				tc.setup(f.hub)
			}
			f.cfg.HF.Token = config.NewSecret(tc.token)
			_, err := f.engine().Pull(context.Background(), Request{Ref: ref.MustParse(tc.ref)})
			if api.CodeOf(err) != tc.code {
				t.Fatalf("err = %v (code %s), want %s", err, api.CodeOf(err), tc.code)
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.msg)) {
				t.Errorf("message %q lacks %q", err, tc.msg)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Fatal("token in error text")
			}
			reg, _ := registry.Open(f.cfg.Paths.RegistryFile()).Load()
			if len(reg.Models) != 0 {
				t.Fatalf("failed pull left a registry entry: %v", reg.Models)
			}
			if _, err := os.Stat(filepath.Join(f.cfg.Paths.PullDir(), "demo", "m")); err == nil {
				t.Fatal("failed pull left files under the final name")
			}
		})
	}
}

func TestPreflightRefusesWhenDiskTooSmall(t *testing.T) {
	f := newFixture(t, hubtest.Options{})
	f.cfg.Pull.DiskReserve = 1 << 62
	_, err := f.engine().Pull(context.Background(), Request{Ref: ref.MustParse("demo/m:Q4_K_M")})
	if api.CodeOf(err) != api.CodeNoSpace {
		t.Fatalf("err = %v", err)
	}
	for _, w := range []string{"needs", "free", f.cfg.Paths.ModelRoot} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message %q lacks %q", err, w)
		}
	}
	if f.hub.Stats().Bytes != 0 {
		t.Error("downloaded before refusing")
	}
}

func TestMirrorFallback(t *testing.T) {
	f := newFixture(t, hubtest.Options{})
	// The first endpoint refuses connections (a closed port on loopback).
	f.cfg.HF.Endpoint = "http://127.0.0.1:1"
	f.cfg.HF.Mirrors = []string{f.hub.URL}
	m, err := f.engine().Pull(context.Background(), Request{Ref: ref.MustParse("demo/m:Q4_K_M")})
	if err != nil {
		t.Fatal(err)
	}
	if m.Endpoint != f.hub.URL {
		t.Errorf("endpoint recorded %s", m.Endpoint)
	}
}

// TestCancelThenResume cancels a pull halfway and checks the next run
// transfers only what is missing (plus at most one chunk per connection).
func TestCancelThenResume(t *testing.T) {
	f := newFixture(t, hubtest.Options{})
	total := int64(0)
	for _, x := range ggufOnly(f.files) {
		total += int64(len(x.Data))
	}
	// Hold the last shard so the pull cannot finish before the cancel
	// lands, however slow the machine, and slow the rest a little.
	f.hub.AddFault(hubtest.Fault{Path: "m-Q4_K_M-00003-of-00003.gguf", Where: "cdn", StallAt: 1, StallFor: time.Minute})
	f.hub.AddFault(hubtest.Fault{Where: "cdn", StallAt: 512 << 10, StallFor: 50 * time.Millisecond})
	e := f.engine()
	h := e.Start(Request{Ref: ref.MustParse("demo/m:Q4_K_M")})
	ctx, cancel := context.WithCancel(context.Background())
	var stopped atomic.Bool
	go func() {
		for !stopped.Load() {
			if p := h.Progress(); p.Done >= total/2 {
				cancel()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	_, err := h.Wait(ctx)
	stopped.Store(true)
	if api.CodeOf(err) != api.CodeCancelled {
		t.Fatalf("err = %v, want cancelled", err)
	}
	before := h.Progress().Done
	if before == 0 || before >= total {
		t.Fatalf("cancelled at %d of %d", before, total)
	}
	f.hub.ClearFaults()
	f.hub.ResetStats()
	e2 := f.engine()
	h2 := e2.Start(Request{Ref: ref.MustParse("demo/m:Q4_K_M")})
	m, err := h2.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f.checkInstalled(t, m, ggufOnly(f.files))
	got := f.hub.Stats().Bytes
	if got > total-before+int64(f.cfg.Pull.Connections)*int64(f.cfg.Pull.ChunkSize) || got < total-before {
		t.Errorf("resume transferred %d bytes; missing were %d", got, total-before)
	}
	if h2.Progress().Resumed != before {
		t.Errorf("resumed %d, want %d", h2.Progress().Resumed, before)
	}
}

// TestExpiredCDNURLIsRefreshed runs the hub on a clock that jumps ten
// minutes at every look, with URLs valid for fifteen: a presigned URL works
// once and has expired by its next use, so every reuse must go back to the
// hub for a fresh one.
func TestExpiredCDNURLIsRefreshed(t *testing.T) {
	var tick atomic.Int64
	base := time.Now()
	f := newFixture(t, hubtest.Options{URLExpiry: 15 * time.Minute, Now: func() time.Time {
		return base.Add(time.Duration(tick.Add(1)) * 10 * time.Minute)
	}})
	f.cfg.Pull.Connections = 1 // one request at a time keeps the clock's ticks in step
	m, err := f.engine().Pull(context.Background(), Request{Ref: ref.MustParse("demo/m:Q4_K_M")})
	if err != nil {
		t.Fatal(err)
	}
	f.checkInstalled(t, m, ggufOnly(f.files))
	expired := 0
	for _, r := range f.hub.Requests() {
		if r.Server == "cdn" && r.Status == 403 {
			expired++
		}
	}
	if expired == 0 {
		t.Fatal("no presigned URL ever expired: the test did not exercise refresh")
	}
}

// TestUnsafeNamesFromServer uses a bare HTTP server that lists a file
// named "../escape.txt" (the test hub refuses to hold such a repo).
func TestUnsafeNamesFromServer(t *testing.T) {
	commit := strings.Repeat("ab", 20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/revision/"):
			fmt.Fprintf(w, `{"id":"evil/repo","sha":%q}`, commit)
		case strings.Contains(r.URL.Path, "/tree/"):
			fmt.Fprint(w, `[{"type":"file","path":"ok.txt","size":1,"oid":"x"},{"type":"file","path":"../escape.txt","size":1,"oid":"y"}]`)
		default:
			t.Errorf("unexpected request %s", r.URL)
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	f := newFixture(t, hubtest.Options{})
	f.cfg.HF.Endpoint = srv.URL
	_, err := f.engine().Pull(context.Background(), Request{Ref: ref.MustParse("evil/repo")})
	if api.CodeOf(err) != api.CodeUnsafePath {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.cfg.Paths.ModelRoot, "escape.txt")); err == nil {
		t.Fatal("file written outside the model directory")
	}
}

func TestCancelCanDiscardPartials(t *testing.T) {
	f := newFixture(t, hubtest.Options{})
	f.hub.AddFault(hubtest.Fault{Where: "cdn", StallAt: 1 << 20, StallFor: time.Minute})
	e := f.engine()
	h := e.Start(Request{Ref: ref.MustParse("demo/m:Q4_K_M"), DiscardPartial: true})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for h.Progress().Done == 0 {
			time.Sleep(2 * time.Millisecond)
		}
		cancel()
	}()
	if _, err := h.Wait(ctx); api.CodeOf(err) != api.CodeCancelled || !strings.Contains(err.Error(), "discarded") {
		t.Fatalf("err = %v", err)
	}
	if ents, _ := os.ReadDir(f.cfg.Paths.StagingDir()); len(ents) != 0 {
		t.Fatalf("partials kept: %v", ents)
	}
}

// TestNewCommitReplacesInstall: pulling an id again after its repo moved
// to a new commit replaces the install with one rename; when the registry
// cannot be written, the old install is put back untouched and nothing of
// the new commit stays under its name, and the next pull completes.
func TestNewCommitReplacesInstall(t *testing.T) {
	f := newFixture(t, hubtest.Options{})
	e := f.engine()
	ctx := context.Background()
	rf := ref.MustParse("demo/m:Q4_K_M")
	m1, err := e.Pull(ctx, Request{Ref: rf})
	if err != nil {
		t.Fatal(err)
	}
	newFiles := hubtest.GenerateGGUFShards("", "m", "Q4_K_M", 3, 3<<20+12345, 2)
	commit2 := f.hub.AddRepo(hubtest.Repo{ID: "demo/m", Files: newFiles}).Commit
	if commit2 == m1.Commit {
		t.Fatal("the hub kept the commit")
	}
	leftovers := func() []string {
		ents, _ := os.ReadDir(filepath.Dir(m1.Dir))
		var out []string
		for _, en := range ents {
			if en.Name() != filepath.Base(m1.Dir) {
				out = append(out, en.Name())
			}
		}
		return out
	}

	regPath := f.cfg.Paths.RegistryFile()
	good, err := os.ReadFile(regPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(regPath, []byte("[models\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = e.Pull(ctx, Request{Ref: rf})
	if api.CodeOf(err) != api.CodeIO || !strings.Contains(err.Error(), "in the registry") {
		t.Fatalf("pull with an unwritable registry: %v", err)
	}
	for _, w := range ggufOnly(f.files) {
		if data, err := os.ReadFile(filepath.Join(m1.Dir, w.Path)); err != nil || !bytes.Equal(data, w.Data) {
			t.Fatalf("%s: the old install was not put back (%v)", w.Path, err)
		}
	}
	if l := leftovers(); len(l) != 0 {
		t.Fatalf("left beside the install: %v", l)
	}

	if err := os.WriteFile(regPath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	m2, err := e.Pull(ctx, Request{Ref: rf})
	if err != nil {
		t.Fatal(err)
	}
	if m2.Commit != commit2 || m2.Dir != m1.Dir {
		t.Fatalf("second install: commit %s dir %s, want %s in %s", m2.Commit, m2.Dir, commit2, m1.Dir)
	}
	f.checkInstalled(t, m2, ggufOnly(newFiles))
	if l := leftovers(); len(l) != 0 {
		t.Fatalf("left beside the install: %v", l)
	}
}
