package hfserve

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
)

// fakeUpstream is a PullThrough (without Lister) whose pulls block until
// released and then run install.
type fakeUpstream struct {
	mu      sync.Mutex
	calls   []PullRequest
	release chan struct{} // nil: do not block
	install func(req PullRequest) error
}

func (f *fakeUpstream) Pull(ctx context.Context, req PullRequest) error {
	f.mu.Lock()
	f.calls = append(f.calls, req)
	rel := f.release
	f.mu.Unlock()
	if rel != nil {
		select {
		case <-rel:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.install == nil {
		return nil
	}
	return f.install(req)
}

func (f *fakeUpstream) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// clock is a manual clock for the negative cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// waitPulls returns once no pull-through pull is running.
func waitPulls(h *Handler) { h.pulls.wg.Wait() }

func TestPullThroughWhilePulling(t *testing.T) {
	s := newStore(t)
	up := &fakeUpstream{release: make(chan struct{})}
	up.install = func(req PullRequest) error {
		s.add(tmodel{id: req.Repo, repo: req.Repo, commit: c1, installed: day(1), files: []tfile{{"w.gguf", data("w", 1000), true}}})
		return nil
	}
	// The 503 below comes from PullWait expiring while the fake is held:
	// it does not depend on how fast anything runs.
	srv := serve(t, Options{Registry: s.reg, Upstream: up, PullWait: 20 * time.Millisecond})
	var wg sync.WaitGroup
	statuses := make([]int, 6)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := srv.url + "/api/models/org/new"
			if i%2 == 1 {
				u = srv.url + "/org/new/resolve/main/w.gguf"
			}
			resp, _ := do(t, "GET", u, nil, "")
			statuses[i] = resp.StatusCode
			if resp.StatusCode == 503 && (resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-Error-Message") == "") {
				t.Errorf("503 without Retry-After or message: %v", resp.Header)
			}
		}()
	}
	wg.Wait()
	for _, st := range statuses {
		if st != http.StatusServiceUnavailable {
			t.Fatalf("statuses while pulling %v, want all 503", statuses)
		}
	}
	if n := up.count(); n != 1 {
		t.Fatalf("%d pulls for one repo, want 1: %+v", n, up.calls)
	}
	close(up.release)
	waitPulls(srv.h)
	resp, body := do(t, "GET", srv.url+"/org/new/resolve/main/w.gguf", nil, "")
	if resp.StatusCode != 200 || len(body) != 1000 {
		t.Fatalf("after the pull: %d, %d bytes", resp.StatusCode, len(body))
	}
	if up.count() != 1 {
		t.Errorf("served request pulled again")
	}
}

func TestPullThroughErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
		cached bool // a second request gets the same answer without a new pull
	}{
		{"repo not found", api.Errorf(api.CodeRepoNotFound, 0, "repository org/new not found on upstream"), 404, "RepoNotFound", true},
		{"revision not found", api.Errorf(api.CodeRevisionNotFound, 0, "no such revision"), 404, "RevisionNotFound", true},
		{"gated", api.Errorf(api.CodeGated, 0, "org/new is gated"), 403, "GatedRepo", true},
		{"network", api.Errorf(api.CodeNetwork, 0, "cannot reach upstream"), 502, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			clk := &clock{t: day(1)}
			up := &fakeUpstream{install: func(PullRequest) error { return tc.err }}
			srv := serve(t, Options{Registry: s.reg, Upstream: up, PullWait: time.Minute, Now: clk.now})
			for i := range 2 {
				resp, body := do(t, "GET", srv.url+"/api/models/org/new/revision/v9", nil, "")
				if resp.StatusCode != tc.status || resp.Header.Get("X-Error-Code") != tc.code {
					t.Fatalf("request %d: %d %q %s, want %d %q", i, resp.StatusCode, resp.Header.Get("X-Error-Code"), body, tc.status, tc.code)
				}
			}
			if up.count() != 1 {
				t.Errorf("%d pulls for two requests", up.count())
			}
			if up.calls[0] != (PullRequest{Repo: "org/new", Revision: "v9"}) {
				t.Errorf("pull request %+v", up.calls[0])
			}
			// Remembered answers expire: transient ones soon, definite ones later.
			clk.add(transientTTL)
			do(t, "GET", srv.url+"/api/models/org/new/revision/v9", nil, "")
			want := 1
			if tc.code == "" {
				want = 2
			}
			if up.count() != want {
				t.Errorf("after %v: %d pulls, want %d", transientTTL, up.count(), want)
			}
			clk.add(definiteTTL)
			do(t, "GET", srv.url+"/api/models/org/new/revision/v9", nil, "")
			if up.count() != want+1 {
				t.Errorf("after %v: %d pulls, want %d", definiteTTL, up.count(), want+1)
			}
		})
	}
}

// TestPullThroughFile: without a Lister, a file asked for by path in an
// installed repo is pulled by path; a pull that does not bring it ends in
// EntryNotFound, and is not repeated for every probe.
func TestPullThroughFile(t *testing.T) {
	s := newStore(t)
	s.add(tmodel{id: "org/x:Q4_K_M", repo: "org/x", commit: c1, rev: "main", installed: day(1), files: []tfile{{"a.gguf", data("a", 100), true}}})
	up := &fakeUpstream{}
	up.install = func(req PullRequest) error {
		if req.Path == "b.gguf" {
			s.add(tmodel{id: "org/x/b.gguf", repo: "org/x", commit: c1, rev: "main", installed: day(2), files: []tfile{{"b.gguf", data("b", 50), true}}})
		}
		return nil
	}
	srv := serve(t, Options{Registry: s.reg, Upstream: up, PullWait: time.Minute})
	resp, body := do(t, "GET", srv.url+"/org/x/resolve/main/b.gguf", nil, "")
	if resp.StatusCode != 200 || len(body) != 50 || resp.Header.Get("X-Repo-Commit") != c1 {
		t.Fatalf("b.gguf: %d %d bytes", resp.StatusCode, len(body))
	}
	// The listing now has both files, merged into one commit.
	_, body = do(t, "GET", srv.url+"/api/models/org/x/tree/main", nil, "")
	if string(body) == "" || up.count() != 1 || up.calls[0] != (PullRequest{Repo: "org/x", Revision: "main", Path: "b.gguf"}) {
		t.Fatalf("calls %+v, tree %s", up.calls, body)
	}
	for range 3 {
		resp, _ = do(t, "GET", srv.url+"/org/x/resolve/main/adapter_config.json", nil, "")
		if resp.StatusCode != 404 || resp.Header.Get("X-Error-Code") != "EntryNotFound" || resp.Header.Get("X-Repo-Commit") != c1 {
			t.Fatalf("probe: %d %q", resp.StatusCode, resp.Header.Get("X-Error-Code"))
		}
	}
	if up.count() != 2 {
		t.Errorf("%d pulls; want 2 (b.gguf, then adapter_config.json once)", up.count())
	}
}

// TestCloseCancelsPulls: Close ends background pulls and waits for them.
func TestCloseCancelsPulls(t *testing.T) {
	s := newStore(t)
	up := &fakeUpstream{release: make(chan struct{})} // never released
	srv := serve(t, Options{Registry: s.reg, Upstream: up, PullWait: 10 * time.Millisecond})
	resp, _ := do(t, "GET", srv.url+"/api/models/org/stuck", nil, "")
	if resp.StatusCode != 503 {
		t.Fatalf("%d, want 503", resp.StatusCode)
	}
	srv.h.Close() // returns only once the fake saw its context cancelled
	if up.count() != 1 {
		t.Errorf("%d pulls", up.count())
	}
}

// fakeLister is a Lister with a fixed answer per repo.
type fakeLister struct {
	fakeUpstream
	repos map[string]*UpstreamRepo
	err   error
}

func (f *fakeLister) List(ctx context.Context, repo, rev string) (*UpstreamRepo, error) {
	if up := f.repos[repo]; up != nil {
		return up, nil
	}
	return nil, f.err
}

// TestListerFallsBackToStore: with upstream unreachable, installed repos
// are still listed and served; others get the upstream error. With
// upstream up, its listing shows files that are not installed, and the
// installed ones are served from the store without pulling.
func TestListerFallsBackToStore(t *testing.T) {
	s := newStore(t)
	s.add(tmodel{id: "org/x:Q4_K_M", repo: "org/x", commit: c1, rev: "main", installed: day(1), files: []tfile{{"a.gguf", data("a", 100), true}}})
	down := &fakeLister{err: api.Errorf(api.CodeNetwork, 0, "cannot reach upstream")}
	srv := serve(t, Options{Registry: s.reg, Upstream: down, PullWait: time.Minute})
	resp, body := do(t, "GET", srv.url+"/api/models/org/x/tree/main", nil, "")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"a.gguf"`) {
		t.Fatalf("installed repo with upstream down: %d %s", resp.StatusCode, body)
	}
	resp, _ = do(t, "GET", srv.url+"/api/models/org/other", nil, "")
	if resp.StatusCode != 502 {
		t.Fatalf("missing repo with upstream down: %d", resp.StatusCode)
	}

	up := &fakeLister{repos: map[string]*UpstreamRepo{"org/x": {Commit: c1, Files: []UpstreamFile{
		{Path: "a.gguf", Size: 100, LFS: true, SHA256: sha256Hex(data("a", 100))},
		{Path: "b.gguf", Size: 7, LFS: true, SHA256: sha256Hex(data("b", 7))},
	}}}, err: api.Errorf(api.CodeRepoNotFound, 0, "no such repo upstream")}
	srv = serve(t, Options{Registry: s.reg, Upstream: up, PullWait: time.Minute})
	_, body = do(t, "GET", srv.url+"/api/models/org/x/tree/main", nil, "")
	if !strings.Contains(string(body), `"b.gguf"`) || !strings.Contains(string(body), `"a.gguf"`) {
		t.Fatalf("upstream listing: %s", body)
	}
	resp, body = do(t, "GET", srv.url+"/org/x/resolve/main/a.gguf", nil, "")
	if resp.StatusCode != 200 || len(body) != 100 || up.count() != 0 {
		t.Fatalf("installed file: %d, %d bytes, %d pulls", resp.StatusCode, len(body), up.count())
	}
	resp, _ = do(t, "GET", srv.url+"/api/models/org/other", nil, "")
	if resp.StatusCode != 404 || resp.Header.Get("X-Error-Code") != "RepoNotFound" {
		t.Fatalf("repo missing upstream: %d %q", resp.StatusCode, resp.Header.Get("X-Error-Code"))
	}
	// b.gguf is listed but not installed: asking for it pulls it, pinned
	// to the listed commit; this fake installs nothing, so it ends in 502.
	resp, _ = do(t, "GET", srv.url+"/org/x/resolve/main/b.gguf", nil, "")
	if resp.StatusCode != 502 || up.count() != 1 || up.calls[0] != (PullRequest{Repo: "org/x", Revision: c1, Path: "b.gguf"}) {
		t.Fatalf("listed, not installed: %d, calls %+v", resp.StatusCode, up.calls)
	}
}
