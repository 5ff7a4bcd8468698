package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/client"
	"github.com/hal0ai/hal0/internal/client/clienttest"
	"github.com/hal0ai/hal0/internal/config"
)

// These tests talk to a real hal0-apid server (internal/apiserver) over a
// unix socket and over 127.0.0.1; pulls run as real hal0-pull processes
// against the in-repo hub. See clienttest.

var pullBin string

func TestMain(m *testing.M) {
	bin, err := clienttest.BuildWorker()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pullBin = bin
	code := m.Run()
	os.RemoveAll(filepath.Dir(bin))
	os.Exit(code)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestSocketAndTCP(t *testing.T) {
	e := clienttest.New(t, pullBin)
	ctx := ctxT(t)
	unix := e.Client(t)
	h, err := unix.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || h.Runner != "process" || h.Jobs != 0 {
		t.Errorf("health %+v", h)
	}
	tcp, err := client.New(e.URL, config.NewSecret(clienttest.Token))
	if err != nil {
		t.Fatal(err)
	}
	if tcp.Unix() || !tcp.Loopback() || !unix.Loopback() {
		t.Errorf("unix/loopback: tcp %v/%v, unix loopback %v", tcp.Unix(), tcp.Loopback(), unix.Loopback())
	}
	v, err := tcp.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.API != api.APIVersion || v.Version == "" {
		t.Errorf("version %+v", v)
	}
	ms, err := tcp.Models(ctx)
	if err != nil || ms == nil || len(ms) != 0 {
		t.Errorf("models of an empty registry: %v, %v", ms, err)
	}
	// A trailing slash on the URL is not a second one in the path.
	slash, _ := client.New(e.URL+"/", config.Secret{})
	if _, err := slash.Health(ctx); err != nil {
		t.Errorf("URL with a trailing slash: %v", err)
	}
}

func TestNewAddresses(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HAL0_HOME", home)
	t.Setenv("HAL0_CONFIG", "")
	t.Setenv("HAL0_RUNTIME_DIR", "")
	c, err := client.New("", config.Secret{})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(home, "run/hal0/api.sock"); c.Addr() != want || !c.Unix() {
		t.Errorf("default address %q (unix %v), want %q", c.Addr(), c.Unix(), want)
	}
	for addr, ok := range map[string]bool{
		"unix:/run/x.sock": true, "/run/x.sock": true, "http://127.0.0.1:8080": true, "https://box.lan:8443/prefix": true,
		"unix:": false, "ftp://x": false, "127.0.0.1:8080": false, "http://": false, "http://h/?q=1": false,
	} {
		if _, err := client.New(addr, config.Secret{}); (err == nil) != ok {
			t.Errorf("New(%q): %v", addr, err)
		}
	}
	remote, _ := client.New("http://192.0.2.1:8080", config.Secret{})
	if remote.Loopback() {
		t.Error("192.0.2.1 counted as loopback")
	}
}

// A whole pull through the API: start it (with the quant folded into the
// id by the server), follow its events to the end, then see and remove the
// model. Every request names the model with its "/" escaped.
func TestPullEventsModelsDelete(t *testing.T) {
	e := clienttest.New(t, pullBin)
	ctx := ctxT(t)
	c := e.Client(t)
	st, err := c.Pull(ctx, clienttest.Repo, api.PullRequest{Quant: "q4_k_m"})
	if err != nil {
		t.Fatal(err)
	}
	if st.ModelID != clienttest.Model || st.JobID == "" || st.Existing {
		t.Fatalf("started %+v", st)
	}
	var seen []*api.PullStatus
	if err := c.Events(ctx, st.ModelID, func(s *api.PullStatus) error {
		seen = append(seen, s)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	last := seen[len(seen)-1]
	if last.State != "completed" || last.BytesDone != e.Total || last.BytesTotal != e.Total || last.JobID != st.JobID || last.Path == "" {
		t.Fatalf("final event %+v", last)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].BytesDone < seen[i-1].BytesDone {
			t.Errorf("bytes went back: %d then %d", seen[i-1].BytesDone, seen[i].BytesDone)
		}
		if seen[i-1].Final() {
			t.Errorf("event after the final one: %+v", seen[i])
		}
	}

	pulls, err := c.Pulls(ctx)
	if err != nil || len(pulls) != 1 || pulls[0].State != "completed" {
		t.Fatalf("pulls %v, %v", pulls, err)
	}
	ms, err := c.Models(ctx)
	if err != nil || len(ms) != 1 || ms[0].ID != clienttest.Model {
		t.Fatalf("models %v, %v", ms, err)
	}
	// Any spelling of the ref finds the model.
	m, err := c.Model(ctx, "hf://demo/m?quant=q4_k_m")
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != clienttest.Model || len(m.Files) != clienttest.Shards || m.Commit == "" {
		t.Fatalf("model %+v", m)
	}
	// Cancelling a finished job is harmless and returns it as it is.
	if cs, err := c.CancelPull(ctx, clienttest.Model); err != nil || cs.State != "completed" {
		t.Fatalf("cancel after completion: %+v, %v", cs, err)
	}
	del, err := c.DeleteModel(ctx, clienttest.Model)
	if err != nil || del.ID != clienttest.Model {
		t.Fatalf("delete: %+v, %v", del, err)
	}
	if _, err := os.Stat(del.Dir); !os.IsNotExist(err) {
		t.Errorf("model directory left after delete: %v", err)
	}
	_, err = c.Model(ctx, clienttest.Model)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeModelMissing || ae.Status != http.StatusNotFound {
		t.Fatalf("model after delete: %#v", err)
	}

	const escaped = "/api/models/demo%2Fm:Q4_K_M"
	reqs := e.Requests()
	for _, want := range []string{"POST /api/models/demo%2Fm/pull", "GET " + escaped + "/pull/events", "GET /api/models/hf:%2F%2Fdemo%2Fm%3Fquant=q4_k_m",
		"POST " + escaped + "/pull/cancel", "DELETE " + escaped} {
		if !slices.Contains(reqs, want) {
			t.Errorf("no request %q in %q", want, reqs)
		}
	}
}

func TestAPIErrors(t *testing.T) {
	e := clienttest.New(t, pullBin)
	ctx := ctxT(t)
	c := e.Client(t)
	check := func(what string, err error, code string, status int) {
		t.Helper()
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != code || ae.Status != status || ae.Message == "" {
			t.Errorf("%s: got %#v, want code %s status %d", what, err, code, status)
		}
	}
	_, err := c.PullStatus(ctx, "demo/none:Q4_K_M")
	check("status of a never-pulled model", err, api.CodeJobMissing, 404)
	_, err = c.Model(ctx, "demo/../x")
	check("bad ref", err, api.CodeInvalidRef, 400)
	_, err = c.Pull(ctx, "demo/m", api.PullRequest{Format: "zip"})
	check("bad format", err, api.CodeBadRequest, 400)
	_, err = c.DeleteModel(ctx, "demo/none:Q4_K_M")
	check("delete of a missing model", err, api.CodeModelMissing, 404)

	noToken, _ := client.New(e.URL, config.Secret{})
	_, err = noToken.Pull(ctx, clienttest.Model, api.PullRequest{})
	check("pull over TCP without a token", err, api.CodeUnauthorized, 401)
	wrong, _ := client.New(e.URL, config.NewSecret("nope"))
	_, err = wrong.CancelPull(ctx, clienttest.Model)
	check("cancel over TCP with a wrong token", err, api.CodeUnauthorized, 401)
	if api.ExitCode(err) != api.ExitAuth {
		t.Errorf("exit code of a refused token: %d", api.ExitCode(err))
	}
	// Reads need no token.
	if _, err := noToken.Pulls(ctx); err != nil {
		t.Errorf("read over TCP without a token: %v", err)
	}
}

// While a pull runs: a delete is refused, an event stream ends when its
// context does, and a cancel ends the job as cancelled, which a new stream
// then reports at once.
func TestCancelDuringPull(t *testing.T) {
	e := clienttest.New(t, pullBin)
	e.Stall()
	ctx := ctxT(t)
	c := e.Client(t)
	if _, err := c.Pull(ctx, clienttest.Model, api.PullRequest{}); err != nil {
		t.Fatal(err)
	}
	again, err := c.Pull(ctx, clienttest.Model, api.PullRequest{})
	if err != nil || !again.Existing {
		t.Fatalf("second pull of a running model: %+v, %v", again, err)
	}
	e.WaitPull(t, clienttest.Model, func(s *api.PullStatus) bool { return s.State == "running" && s.BytesDone > 0 })

	_, err = c.DeleteModel(ctx, clienttest.Model)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeConflict || ae.Status != 409 {
		t.Fatalf("delete during a pull: %#v", err)
	}

	evCtx, stop := context.WithCancel(ctx)
	n := 0
	start := time.Now()
	err = c.Events(evCtx, clienttest.Model, func(s *api.PullStatus) error {
		n++
		stop() // after the first event: the stream must end promptly
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 1 || time.Since(start) > 10*time.Second {
		t.Fatalf("events after cancel of the context: %v after %d events, %v", err, n, time.Since(start))
	}

	cs, err := c.CancelPull(ctx, clienttest.Model)
	if err != nil {
		t.Fatal(err)
	}
	if cs.State != "cancelled" || cs.ErrorCode != api.CodeCancelled {
		t.Fatalf("cancel: %+v", cs)
	}
	var final []*api.PullStatus
	if err := c.Events(ctx, clienttest.Model, func(s *api.PullStatus) error { final = append(final, s); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(final) != 1 || final[0].State != "cancelled" {
		t.Fatalf("events of a cancelled job: %+v", final)
	}
}

// fn's error ends Events and comes back unchanged.
func TestEventsCallbackError(t *testing.T) {
	e := clienttest.New(t, pullBin)
	e.Stall()
	ctx := ctxT(t)
	c := e.Client(t)
	if _, err := c.Pull(ctx, clienttest.Model, api.PullRequest{}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := c.Events(ctx, clienttest.Model, func(*api.PullStatus) error { return boom }); err != boom {
		t.Fatalf("Events returned %v, want fn's error", err)
	}
	if _, err := c.CancelPull(ctx, clienttest.Model); err != nil {
		t.Fatal(err)
	}
}

func TestUnreachable(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	// A socket file nobody listens on, as a crashed apid leaves it.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + tl.Addr().String()
	tl.Close()

	for _, tc := range []struct{ addr, where, reason string }{
		{"unix:" + filepath.Join(dir, "none.sock"), filepath.Join(dir, "none.sock"), "no such socket"},
		{stale, stale, "connection refused"},
		{closedURL, closedURL, "connection refused"},
	} {
		c, err := client.New(tc.addr, config.Secret{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Models(ctx)
		var ue *client.UnreachableError
		if !errors.As(err, &ue) {
			t.Errorf("%s: %#v is not an UnreachableError", tc.addr, err)
			continue
		}
		want := fmt.Sprintf("cannot reach hal0-apid at %s (%s): start it with `systemctl enable --now hal0-apid.socket`, or use `hal0 model pull --local`", tc.where, tc.reason)
		if ue.Error() != want {
			t.Errorf("message\n got %q\nwant %q", ue.Error(), want)
		}
	}
}

// sse serves one crafted event stream on 127.0.0.1.
func sse(t *testing.T, body string) *client.Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/pull/events") {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html>bad gateway</html>")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, body)
	})}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	c, err := client.New("http://"+l.Addr().String(), config.Secret{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The SSE framing a proxy or another server may produce: CRLF line ends,
// comments, unknown events, data split over lines, no space after the
// colon.
func TestEventFraming(t *testing.T) {
	ctx := ctxT(t)
	c := sse(t, ": hello\r\n\r\n"+
		"event: other\ndata: {\"state\":\"failed\"}\n\n"+
		"event: status\r\ndata: {\"model_id\":\"a/b\",\r\ndata: \"state\":\"running\",\"bytes_done\":5}\r\n\r\n"+
		"event:status\ndata:{\"model_id\":\"a/b\",\"state\":\"completed\"}\n\n"+
		"event: status\ndata: {\"state\":\"never read\"}\n\n")
	var got []string
	err := c.Events(ctx, "a/b", func(s *api.PullStatus) error {
		got = append(got, fmt.Sprintf("%s %s %d", s.ModelID, s.State, s.BytesDone))
		return nil
	})
	if err != nil || !slices.Equal(got, []string{"a/b running 5", "a/b completed 0"}) {
		t.Fatalf("events %q, %v", got, err)
	}

	cut := sse(t, "event: status\ndata: {\"state\":\"running\"}\n\n")
	if err := cut.Events(ctx, "a/b", func(*api.PullStatus) error { return nil }); !errors.Is(err, client.ErrStreamEnded) {
		t.Fatalf("stream cut before the final state: %v", err)
	}
	bad := sse(t, "event: status\ndata: {not json\n\n")
	if err := bad.Events(ctx, "a/b", func(*api.PullStatus) error { return nil }); err == nil || errors.Is(err, client.ErrStreamEnded) {
		t.Fatalf("bad JSON in an event: %v", err)
	}
	// An error page without the envelope still maps to a status-shaped
	// code and says what came back.
	_, err = cut.Models(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusBadGateway || ae.Code != api.CodeInternal || !strings.Contains(ae.Message, "bad gateway") {
		t.Fatalf("non-envelope error: %#v", err)
	}
}
