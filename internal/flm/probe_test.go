package flm

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestProberCachesAndRetries(t *testing.T) {
	for _, runtime := range []string{"host", "podman"} {
		t.Run(runtime, func(t *testing.T) {
			e := newTestEnv(t, runtime)
			p := NewProber(e.cfg)
			p.Env = e.environ()
			now := time.Now()
			p.Now = func() time.Time { return now }
			ctx := context.Background()

			cat, _, err := p.Catalog(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !cat.IsTag("qwen3:4b") || cat.IsTag("qwen3:5b") || len(cat.Warnings) != 1 {
				t.Fatalf("catalog %v, warnings %q", cat.Tags(), cat.Warnings)
			}
			if q, _ := cat.Get("qwen3:4b"); q.Installed || q.Size != modelSize || q.RepoDir() != "Qwen3-4B-NPU2" {
				t.Fatalf("qwen3:4b %+v", q)
			}
			// Cached: concurrent callers within the TTL run nothing.
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() { defer wg.Done(); p.Catalog(ctx) }()
			}
			wg.Wait()
			if n := e.invocations(t, "flm", "list"); n != 1 {
				t.Fatalf("%d probes within the TTL, want 1", n)
			}
			// Past the TTL it probes again.
			now = now.Add(e.cfg.FLM.CatalogTTL.D())
			p.Catalog(ctx)
			if n := e.invocations(t, "flm", "list"); n != 2 {
				t.Fatalf("%d probes after the TTL, want 2", n)
			}
			// A change of flm's cache announced by another process (the
			// pull worker) through the stamp makes it probe again.
			other := NewProber(e.cfg)
			if err := other.Invalidate(); err != nil {
				t.Fatal(err)
			}
			p.Catalog(ctx)
			if n := e.invocations(t, "flm", "list"); n != 3 {
				t.Fatalf("%d probes after Invalidate elsewhere, want 3", n)
			}
			p.Catalog(ctx)
			if n := e.invocations(t, "flm", "list"); n != 3 {
				t.Fatalf("%d probes, want the stamp to count once", n)
			}
		})
	}
}

func TestProberFailureIsNotCachedForever(t *testing.T) {
	e := newTestEnv(t, "host")
	p := NewProber(e.cfg)
	env := e.environ()
	p.Env = env
	now := time.Now()
	p.Now = func() time.Time { return now }
	// The catalog is unreadable: flm fails.
	good, _ := os.ReadFile(e.ModelList)
	os.WriteFile(e.ModelList, []byte("{broken"), 0o644)
	_, _, err := p.Catalog(context.Background())
	var pe *ProbeError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "flm list -j") || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("err %v", err)
	}
	os.WriteFile(e.ModelList, good, 0o644)
	// Within RetryAfter the failure stands, without a new probe.
	if _, _, err := p.Catalog(context.Background()); err == nil || e.invocations(t, "flm", "list") != 1 {
		t.Fatalf("retried at once: %v", err)
	}
	now = now.Add(p.RetryAfter)
	cat, _, err := p.Catalog(context.Background())
	if err != nil || !cat.IsTag("qwen3:4b") {
		t.Fatalf("after RetryAfter: %v", err)
	}
}

func TestProberMissingFLM(t *testing.T) {
	e := newTestEnv(t, "host")
	e.cfg.FLM.FLMPath = "/nonexistent/flm"
	p := NewProber(e.cfg)
	p.Env = e.environ()
	if _, _, err := p.Catalog(context.Background()); err == nil || !strings.Contains(err.Error(), "/nonexistent/flm") {
		t.Fatalf("err %v", err)
	}
}
