package apitest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
)

// fatalTB records the first Fatal and ends the goroutine, as testing.T
// does, so that a test can check that a helper fails when it should.
// Everything else goes to the real test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatal(args ...any) { f.msg = fmt.Sprint(args...); runtime.Goexit() }

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls fn on a goroutine of its own, as a test would, and returns
// what it failed with ("" when it did not fail).
func (f *fatalTB) run(fn func()) string {
	f.msg = ""
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
	return f.msg
}

// events serves an event stream as hal0-apid does: a comment, then one
// "event:"/"data:" pair per status, then the end of the stream. It
// records the escaped path it was asked for.
func events(t *testing.T, paths chan<- string, states ...string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths <- r.URL.EscapedPath()
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": hal0 pull events\n\n")
		for i, st := range states {
			fmt.Fprintf(w, "event: status\ndata: {\"state\":%q,\"bytes_done\":%d}\n\n", st, i)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestWaitPull(t *testing.T) {
	const id = "demo/m:Q4_K_M"
	paths := make(chan string, 1)
	s := events(t, paths, "queued", "running", "completed")
	c := TCP(t, strings.TrimPrefix(s.URL, "http://"))

	st, raw := c.WaitPull(id, "running", 10*time.Second, func(st *api.PullStatus) bool { return st.State == "running" })
	if st.State != "running" || st.BytesDone != 1 {
		t.Errorf("WaitPull returned %+v, want the second event", st)
	}
	if want := "/api/models/demo%2Fm:Q4_K_M/pull/events"; <-paths != want {
		t.Errorf("asked for another path than %s", want)
	}
	// The raw stream up to the event that met the condition, not beyond.
	if !strings.HasPrefix(raw, ": hal0 pull events\n") || !strings.HasSuffix(raw, `{"state":"running","bytes_done":1}`+"\n") {
		t.Errorf("raw stream %q", raw)
	}

	// A stream that ends before the condition holds fails the test at
	// once, naming what it waited for and the last status.
	f := &fatalTB{TB: t}
	fc := TCP(f, strings.TrimPrefix(s.URL, "http://"))
	msg := f.run(func() {
		fc.WaitPull(id, "cancelled", 10*time.Second, func(st *api.PullStatus) bool { return st.State == "cancelled" })
	})
	<-paths
	if !strings.Contains(msg, "to be cancelled: stream ended") || !strings.Contains(msg, "State:completed") {
		t.Errorf("WaitPull past the end of the stream failed with %q", msg)
	}
}

func TestUnixRequest(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	type seen struct{ method, host, auth, body string }
	got := make(chan seen, 1)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.Host, r.Header.Get("Authorization"), string(b)}
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, `{"ok":true}`)
	}))
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	c := Unix(t, sock)
	c.WaitListening(make(chan struct{}), 5*time.Second, func() string { return "" })

	code, body := c.Request(http.MethodPut, "/x", strings.NewReader("in"), map[string]string{"Host": "evil.example", "Authorization": "Bearer k"})
	if code != http.StatusTeapot || string(body) != `{"ok":true}` {
		t.Errorf("Request: %d %s", code, body)
	}
	if g := <-got; g != (seen{http.MethodPut, "evil.example", "Bearer k", "in"}) {
		t.Errorf("the server saw %+v", g)
	}
	c.DoAuth(http.MethodPost, "/x", "")
	if g := <-got; g.host != "hal0" || g.auth != "" {
		t.Errorf("DoAuth without a token sent %+v", g)
	}

	f := &fatalTB{TB: t}
	fc := Unix(f, sock)
	msg := f.run(func() {
		var v struct{ OK bool }
		fc.Call(http.MethodGet, "/x", http.StatusOK, &v)
	})
	<-got
	if !strings.Contains(msg, "status 418, want 200") {
		t.Errorf("Call with the wrong status failed with %q", msg)
	}
}

// TestWaitListening: a daemon that exits before it listens fails the wait
// with its output; one that listens ends it.
func TestWaitListening(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	f := &fatalTB{TB: t}
	exited := make(chan struct{})
	close(exited)
	msg := f.run(func() {
		Unix(f, sock).WaitListening(exited, 5*time.Second, func() string { return "bind: address in use" })
	})
	if !strings.Contains(msg, "hal0-apid exited") || !strings.Contains(msg, "bind: address in use") {
		t.Errorf("waiting on a daemon that exited failed with %q", msg)
	}

	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if msg := f.run(func() { Unix(f, sock).WaitListening(exited, 5*time.Second, func() string { return "" }) }); msg != "" {
		t.Errorf("waiting on a listening socket failed with %q", msg)
	}
}
