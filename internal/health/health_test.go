package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fast keeps the tests quick; no assertion depends on these durations.
var fast = Options{InitialDelay: time.Millisecond, Interval: time.Millisecond, Timeout: 10 * time.Second}

// TestLlamaServer: 503 "Loading model" while loading, then 200, as
// llama-server answers /health.
func TestLlamaServer(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}`))
			return
		}
		w.Write([]byte(`{"status":"ok"}`))
	}))
	defer srv.Close()
	c, err := New(LlamaServer, srv.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Check(t.Context())
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "Loading model") || !strings.Contains(err.Error(), srv.URL+"/health") {
		t.Fatalf("first probe: %v; want the 503 with its message and the URL", err)
	}
	if err := Wait(t.Context(), c, fast); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d probes, want 3 (two 503s, then 200)", n)
	}
}

// TestWaitTimeout: a backend that never gets healthy ends in a
// TimeoutError that carries the last failure.
func TestWaitTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "still loading", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c, _ := New(LlamaServer, srv.URL, "/ready", nil)
	o := fast
	o.Timeout = 50 * time.Millisecond
	err := Wait(t.Context(), c, o)
	var te *TimeoutError
	if !errors.As(err, &te) || te.Timeout != o.Timeout || !strings.Contains(err.Error(), "/ready") || !strings.Contains(err.Error(), "still loading") {
		t.Fatalf("Wait: %v; want a TimeoutError naming the last probe", err)
	}
}

// TestWaitHungProbe: a backend that accepts the request and never answers
// cannot stretch the timeout.
func TestWaitHungProbe(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	c, _ := New(LlamaServer, srv.URL, "", nil)
	o := fast
	o.Timeout = 50 * time.Millisecond
	var te *TimeoutError
	if err := Wait(t.Context(), c, o); !errors.As(err, &te) {
		t.Fatalf("Wait: %v; want a TimeoutError", err)
	}
}

// TestWaitCancelled: the slot unit went away; Wait returns the cause at once.
func TestWaitCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c, _ := New(LlamaServer, srv.URL, "", nil)
	gone := errors.New("unit gone")
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(gone)
	if err := Wait(ctx, c, Options{Timeout: time.Hour}); !errors.Is(err, gone) {
		t.Fatalf("Wait: %v; want the cancel cause", err)
	}
}

// TestConnectionRefused: nothing listens yet.
func TestConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, _ := New(LlamaServer, url, "", nil)
	err := c.Check(t.Context())
	if err == nil || !strings.Contains(err.Error(), "refused") || strings.Count(err.Error(), url) != 1 {
		t.Fatalf("Check: %v; want connection refused naming the URL once", err)
	}
}

// TestFLM: healthy only with a model listed and a one-token completion
// that returns choices.
func TestFLM(t *testing.T) {
	var models, choices atomic.Value
	models.Store(`{"object":"list","data":[]}`)
	choices.Store(`{"choices":[]}`)
	var gotMaxTokens atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v1/models":
			w.Write([]byte(models.Load().(string)))
		case r.Method == http.MethodPost && r.URL.Path == "/v1/chat/completions":
			var req struct {
				Model     string `json:"model"`
				MaxTokens int64  `json:"max_tokens"`
			}
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model != "qwen3:4b" {
				http.Error(w, "bad request", http.StatusBadRequest)
				return
			}
			gotMaxTokens.Store(req.MaxTokens)
			w.Write([]byte(choices.Load().(string)))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, err := New(FLM, srv.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "no model loaded") {
		t.Fatalf("empty model list: %v", err)
	}
	models.Store(`{"object":"list","data":[{"id":"qwen3:4b","object":"model"}]}`)
	if err := c.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "no choices") {
		t.Fatalf("completion without choices: %v", err)
	}
	choices.Store(`{"choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"length"}]}`)
	if err := c.Check(t.Context()); err != nil {
		t.Fatalf("healthy FLM: %v", err)
	}
	if n := gotMaxTokens.Load(); n != 1 {
		t.Fatalf("the sentinel completion asked for %d tokens, want 1", n)
	}
}

func TestUnknownBackend(t *testing.T) {
	if _, err := New("vllm", "http://127.0.0.1:1", "", nil); err == nil {
		t.Fatal("unknown backend accepted")
	}
}
