package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// server is a real HTTP server on 127.0.0.1 or a unix socket that counts
// the connections it accepted and answers 500 to every fail-th request.
type server struct {
	url   string
	conns atomic.Int64
	reqs  atomic.Int64
	fail  int64
}

func serve(t *testing.T, network, addr string, fail int64) *server {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{fail: fail, url: "http://" + l.Addr().String()}
	if network == "unix" {
		s.url = "http://hal0"
	}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := s.reqs.Add(1)
			if s.fail > 0 && n%s.fail == 0 {
				http.Error(w, "injected", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"state":"running"}` + "\n"))
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
	}
	var wg sync.WaitGroup
	wg.Go(func() { hs.Serve(l) })
	t.Cleanup(func() {
		hs.Close()
		wg.Wait()
	})
	return s
}

func TestClosedLoopCountKeepsOneConnectionPerClient(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			addr, unix := "127.0.0.1:0", ""
			if network == "unix" {
				addr = filepath.Join(t.TempDir(), "s.sock")
				unix = addr
			}
			s := serve(t, network, addr, 0)
			r, err := run(context.Background(), config{URL: s.url + "/api/health", Unix: unix, Method: "GET",
				Clients: 4, Requests: 400, Timeout: 5 * time.Second, Expect: 200, Gzip: true})
			if err != nil {
				t.Fatal(err)
			}
			if r.Requests != 400 || r.Errors != 0 || r.Status["200"] != 400 || s.reqs.Load() != 400 {
				t.Fatalf("result %+v, server saw %d requests", r, s.reqs.Load())
			}
			// Keep-alive: four clients, four connections, however many
			// requests.
			if n := s.conns.Load(); n != 4 {
				t.Fatalf("%d connections for 4 clients", n)
			}
			if !(r.P50MS <= r.P90MS && r.P90MS <= r.P99MS && r.P99MS <= r.MaxMS && r.MaxMS > 0) {
				t.Fatalf("percentiles out of order: %+v", r)
			}
		})
	}
}

func TestOpenLoopCountsErrors(t *testing.T) {
	s := serve(t, "tcp", "127.0.0.1:0", 10)
	r, err := run(context.Background(), config{URL: s.url + "/x", Method: "GET", Clients: 3, Requests: 100,
		Rate: 2000, Timeout: 5 * time.Second, Expect: 200})
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 100 || r.Errors != 10 || r.Status["500"] != 10 || r.Status["200"] != 90 || r.ErrorKinds["status 500"] != 10 {
		t.Fatalf("result %+v", r)
	}
}

func TestTransportErrorsAreCounted(t *testing.T) {
	// A port nobody listens on: every request fails to connect.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String() + "/"
	l.Close()
	r, err := run(context.Background(), config{URL: url, Method: "GET", Clients: 2, Requests: 6, Timeout: 5 * time.Second, Expect: 200})
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 6 || r.Errors != 6 || len(r.Status) != 0 || r.ErrorKinds["dial: connect: connection refused"] != 6 {
		t.Fatalf("result %+v", r)
	}
}

func TestCLIJSONAndExitStatus(t *testing.T) {
	s := serve(t, "tcp", "127.0.0.1:0", 0)
	var out, errb bytes.Buffer
	code := cli(context.Background(), []string{"-json", "-c", "2", "-n", "20", "-warmup", "0", "-H", "Authorization: Bearer x", s.url + "/"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.Requests != 20 || r.Clients != 2 {
		t.Fatalf("%v: %s", err, out.String())
	}
	if code := cli(context.Background(), []string{"-c", "0", s.url}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "at least one client") {
		t.Fatalf("bad -c: exit %d, %s", code, errb.String())
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for q, want := range map[float64]time.Duration{0.5: 50, 0.9: 90, 0.99: 99, 1: 100, 0: 1} {
		if got := percentile(d, q); got != want {
			t.Errorf("percentile(%v) = %v, want %v", q, got, want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("empty")
	}
}
