package hfserve

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/worker"
)

// localPuller runs pull-through jobs with hal0-pull's own code
// (worker.Run) on goroutines of the test, over a real job store: the job
// records, pinning, partial files and installs are the real ones. Only
// the runner differs from hal0-apid's (a goroutine instead of a unit or a
// child process); internal/apid tests the whole thing with real
// hal0-apid and hal0-pull processes.
type localPuller struct {
	cfg   *config.Config
	store *jobs.Store
	wg    sync.WaitGroup

	mu     sync.Mutex
	starts []string // refs of the workers started
}

func (l *localPuller) Pull(ctx context.Context, s string) (*jobs.Job, error) {
	rf, err := ref.Parse(s)
	if err != nil {
		return nil, err
	}
	j, created, err := l.store.Begin(ctx, jobs.Job{Ref: rf.String(), Kind: rf.Kind.String(), Unit: rf.Unit(), Runner: "local"})
	if err != nil || !created {
		return j, err
	}
	l.mu.Lock()
	l.starts = append(l.starts, j.Ref)
	l.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		worker.Run(context.Background(), l.cfg, worker.Options{Ref: j.Ref, JobID: j.ID, Runner: "local"})
	}()
	return j, nil
}

func (l *localPuller) Job(ctx context.Context, id string) (*jobs.Job, error) { return l.store.Get(id) }

func (l *localPuller) Current(ctx context.Context, ref string) (*jobs.Job, error) {
	return l.store.Current(ref)
}

func (l *localPuller) Active(ctx context.Context) ([]*jobs.Job, error) {
	all, _ := l.store.List()
	var out []*jobs.Job
	for _, j := range all {
		if !j.State.Final() {
			out = append(out, j)
		}
	}
	return out, nil
}

func (l *localPuller) started() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.starts...)
}

// onlyJob returns the one job of the store.
func (l *localPuller) onlyJob(t *testing.T) *jobs.Job {
	t.Helper()
	all, errs := l.store.List()
	if len(errs) > 0 || len(all) != 1 {
		t.Fatalf("want one job, have %d (%v)", len(all), errs)
	}
	return all[0]
}

// waitJob polls the job record until it is final.
func (l *localPuller) waitJob(t *testing.T, id string) *jobs.Job {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		j, err := l.store.Get(id)
		if err == nil && j.State.Final() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not done: %+v %v", id, j, err)
		}
		time.Sleep(5 * time.Millisecond) // polling an observable condition, with a deadline
	}
}

// ptBox is a hal0 box with nothing installed whose /hf/ pulls through
// from hub, with pulls run by localPuller.
type ptBox struct {
	*served
	cfg *config.Config
	up  *localPuller
}

func newPTBox(t *testing.T, hub *hubtest.Hub, opts Options) *ptBox {
	t.Helper()
	cfg, _ := box(t, hub.URL)
	cfg.Pull.ChunkSize = 8 << 20 // files below this download as one stream from 0
	up := &localPuller{cfg: cfg, store: jobs.Open(cfg.Paths.JobsDir())}
	t.Cleanup(up.wg.Wait) // registered first: runs after the server is closed
	opts.Registry = registry.Open(cfg.Paths.RegistryFile())
	opts.Upstream = &HubLister{Endpoints: cfg.Endpoints(), HTTP: http.DefaultClient}
	opts.Pulls = up
	if opts.PullWait == 0 {
		opts.PullWait = 20 * time.Second
	}
	srv := serve(t, opts)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hfserve log:\n%s", srv.logs)
		}
	})
	return &ptBox{served: srv, cfg: cfg, up: up}
}

// writeSlack: hal0-pull writes what it received once it holds 64 KiB of it
// (internal/pull/fetch.go), so while the hub holds a download at byte n,
// only n-writeSlack bytes are sure to be on disk, and streamable.
const writeSlack = 64 << 10

// ptRepo puts a two-shard GGUF set and a README in the hub as org/pt.
func ptRepo(hub *hubtest.Hub) []hubtest.File {
	files := hubtest.GenerateGGUFShards("", "pt", "Q4_K_M", 2, 3<<20+777, 11)
	files = append(files, hubtest.File{Path: "README.md", Data: []byte("# pull-through\n")})
	hub.AddRepo(hubtest.Repo{ID: "org/pt", Files: files})
	return hub.Repo("org/pt").Files
}

// get starts a GET and returns the response with its body unread.
func get(t *testing.T, u string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestPullThroughStreams: a client asking for a file the box does not
// have gets it from a pull job while the job downloads it: the first bytes
// arrive while the hub holds the download in the middle of the file, a
// second client gets them too, HEAD answers from the pinned files, the
// job survives a dropped connection, both clients end with the right
// bytes, and the hub sent each byte once. The other shard of the set
// comes from the same job.
func TestPullThroughStreams(t *testing.T) {
	hub := upstream(t)
	files := ptRepo(hub)
	shard, shard2 := files[0], files[1]
	hold, held := make(chan struct{}), make(chan struct{})
	const at = 1<<20 + 4321 // mid-block: streaming does not wait for whole blocks
	// One response: held at `at`, then cut at 2 MiB (the worker resumes
	// with a range).
	hub.AddFault(hubtest.Fault{Repo: "org/pt", Path: shard.Path, Where: "cdn", Times: 1, StallAt: at, Hold: hold, Held: held, DropAfter: 2 << 20})
	b := newPTBox(t, hub, Options{})
	u := b.url + "/org/pt/resolve/main/" + shard.Path

	c1 := get(t, u, nil)
	commit := hub.Repo("org/pt").Commit
	if c1.StatusCode != 200 || c1.ContentLength != shard.Size || c1.Header.Get("ETag") != `"`+shard.SHA256+`"` ||
		c1.Header.Get("X-Linked-Size") != strconv.FormatInt(shard.Size, 10) || c1.Header.Get("X-Repo-Commit") != commit {
		t.Fatalf("streamed response: %d, length %d, headers %v", c1.StatusCode, c1.ContentLength, c1.Header)
	}
	const n = at - writeSlack
	first := make([]byte, n)
	if _, err := io.ReadFull(c1.Body, first); err != nil {
		t.Fatalf("first %d bytes: %v", n, err)
	}
	<-held
	// The hub is holding the only download of the file at `at`: nothing
	// beyond it exists anywhere yet, and the job cannot have finished.
	j := b.up.onlyJob(t)
	if j.State.Final() || j.Pinned == nil || j.Ref != pullRef("org/pt", commit, shard.Path) {
		t.Fatalf("job while held: %+v", j)
	}
	resp, body := do(t, "HEAD", u, nil, "")
	if resp.StatusCode != 200 || resp.ContentLength != shard.Size || resp.Header.Get("X-Linked-Etag") != `"`+shard.SHA256+`"` || len(body) != 0 {
		t.Fatalf("HEAD while pulling: %d %d %v", resp.StatusCode, resp.ContentLength, resp.Header)
	}
	c2 := get(t, u, nil)
	second := make([]byte, n)
	if _, err := io.ReadFull(c2.Body, second); err != nil {
		t.Fatalf("second client, first %d bytes: %v", n, err)
	}
	if !bytes.Equal(first, shard.Data[:n]) || !bytes.Equal(second, shard.Data[:n]) {
		t.Fatal("the streamed prefix differs from the file")
	}
	close(hold)
	for i, c := range []*http.Response{c1, c2} {
		rest, err := io.ReadAll(c.Body)
		if err != nil || !bytes.Equal(rest, shard.Data[n:]) {
			t.Fatalf("client %d: rest of the file: %d bytes, %v", i+1, len(rest), err)
		}
	}
	// The other shard: pinned by the same job, no second pull.
	resp, body = do(t, "GET", b.url+"/org/pt/resolve/"+commit+"/"+shard2.Path, nil, "")
	if resp.StatusCode != 200 || !bytes.Equal(body, shard2.Data) {
		t.Fatalf("second shard: %d, %d bytes", resp.StatusCode, len(body))
	}
	if got := b.up.started(); len(got) != 1 {
		t.Fatalf("pulls started: %v", got)
	}
	if j = b.up.waitJob(t, j.ID); j.State != jobs.Completed {
		t.Fatalf("job: %+v", j)
	}
	st := hub.Stats()
	for _, f := range []hubtest.File{shard, shard2} {
		// The dropped response counts what it sent; the resume asked
		// only for the rest.
		if got := st.File("org/pt", f.Path).Bytes; got != f.Size {
			t.Errorf("hub sent %d bytes of %s for %d", got, f.Path, f.Size)
		}
	}
	// Installed now: served from the store, the hub sees nothing.
	hub.ResetStats()
	resp, body = do(t, "GET", u, nil, "")
	if resp.StatusCode != 200 || !bytes.Equal(body, shard.Data) || hub.Stats().Bytes != 0 {
		t.Fatalf("after the pull: %d, %d bytes, hub sent %d", resp.StatusCode, len(body), hub.Stats().Bytes)
	}
}

// TestPullThroughHeadersFirst: the response headers (size, hash) reach
// the client as soon as the job has pinned the file, before any byte of
// it can be sent: here the hub holds the download 1000 bytes in, less
// than the worker reads before it writes.
func TestPullThroughHeadersFirst(t *testing.T) {
	hub := upstream(t)
	shard := ptRepo(hub)[0]
	hold, held := make(chan struct{}), make(chan struct{})
	hub.AddFault(hubtest.Fault{Repo: "org/pt", Path: shard.Path, Where: "cdn", Times: 1, StallAt: 1000, Hold: hold, Held: held})
	b := newPTBox(t, hub, Options{})
	u := b.url + "/org/pt/resolve/main/" + shard.Path
	// The HEAD starts the pull and returns once it is pinned.
	if resp, _ := do(t, "HEAD", u, nil, ""); resp.StatusCode != 200 {
		t.Fatalf("HEAD: %d", resp.StatusCode)
	}
	<-held
	// Bounded well below the worker's 30 s stall timeout, which is what
	// would release bytes (and headers with them) otherwise.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("headers while no byte is written: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != shard.Size || resp.Header.Get("ETag") != `"`+shard.SHA256+`"` {
		t.Fatalf("%d %d %v", resp.StatusCode, resp.ContentLength, resp.Header)
	}
	close(hold)
	if body, err := io.ReadAll(resp.Body); err != nil || !bytes.Equal(body, shard.Data) {
		t.Fatalf("body: %d bytes, %v", len(body), err)
	}
}

// TestPullThroughRanges: range requests during the download get exactly
// their bytes (206, Content-Range), however they sit across blocks, and
// an unsatisfiable one gets 416 without waiting.
func TestPullThroughRanges(t *testing.T) {
	hub := upstream(t)
	shard := ptRepo(hub)[0]
	hold := make(chan struct{})
	hub.AddFault(hubtest.Fault{Repo: "org/pt", Path: shard.Path, Where: "cdn", Times: 1, StallAt: 2<<20 + 5, Hold: hold})
	b := newPTBox(t, hub, Options{})
	u := b.url + "/org/pt/resolve/main/" + shard.Path
	n := shard.Size
	type rng struct {
		hdr        string
		start, end int64 // inclusive
	}
	ranges := []rng{
		{"bytes=0-99", 0, 99},
		{"bytes=1048571-2097159", 1<<20 - 5, 2<<20 + 7},
		{"bytes=3000000-", 3000000, n - 1},
		{"bytes=-10", n - 10, n - 1},
		{"bytes=5-5", 5, 5},
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(ranges))
	for _, r := range ranges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := get(t, u, map[string]string{"Range": r.hdr})
			body, err := io.ReadAll(resp.Body)
			want := fmt.Sprintf("bytes %d-%d/%d", r.start, r.end, n)
			switch {
			case err != nil:
				errs <- fmt.Errorf("%s: %v", r.hdr, err)
			case resp.StatusCode != 206 || resp.Header.Get("Content-Range") != want:
				errs <- fmt.Errorf("%s: %d %q, want 206 %q", r.hdr, resp.StatusCode, resp.Header.Get("Content-Range"), want)
			case !bytes.Equal(body, shard.Data[r.start:r.end+1]):
				errs <- fmt.Errorf("%s: wrong bytes", r.hdr)
			}
		}()
	}
	resp, _ := do(t, "GET", u, map[string]string{"Range": fmt.Sprintf("bytes=%d-", n)}, "")
	if resp.StatusCode != 416 || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", n) {
		t.Errorf("unsatisfiable range: %d %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestPullThroughCorruptAborts: when the hub sends a corrupt byte every
// time, the pull fails verification; a client that was being streamed the
// file (corrupt byte included) sees its transfer cut short, never a
// complete body. Later requests get the pull's error without a new pull.
func TestPullThroughCorruptAborts(t *testing.T) {
	hub := upstream(t)
	shard := ptRepo(hub)[0]
	hold, held := make(chan struct{}), make(chan struct{})
	const at = 1 << 20
	hub.AddFault(hubtest.Fault{Repo: "org/pt", Path: shard.Path, Where: "cdn", Times: 1, StallAt: at, Hold: hold, Held: held, CorruptAt: 1000})
	hub.AddFault(hubtest.Fault{Repo: "org/pt", Path: shard.Path, Where: "cdn", CorruptAt: 1000})
	b := newPTBox(t, hub, Options{})
	u := b.url + "/org/pt/resolve/main/" + shard.Path
	c := get(t, u, nil)
	if c.StatusCode != 200 || c.ContentLength != shard.Size {
		t.Fatalf("%d, length %d", c.StatusCode, c.ContentLength)
	}
	prefix := make([]byte, at-writeSlack)
	if _, err := io.ReadFull(c.Body, prefix); err != nil {
		t.Fatal(err)
	}
	<-held
	if prefix[1000] == shard.Data[1000] {
		t.Fatal("the hub's corruption did not reach the stream; the test proves nothing")
	}
	close(hold)
	rest, err := io.ReadAll(c.Body)
	if got := int64(len(prefix) + len(rest)); !errors.Is(err, io.ErrUnexpectedEOF) || got >= shard.Size {
		t.Fatalf("corrupt file: got %d of %d bytes, err %v; want a cut transfer", got, shard.Size, err)
	}
	j := b.up.waitJob(t, b.up.onlyJob(t).ID)
	if j.State != jobs.Failed || j.ErrorCode != api.CodeChecksum {
		t.Fatalf("job: %s %s %s", j.State, j.ErrorCode, j.Error)
	}
	resp, _ := do(t, "GET", u, nil, "")
	if resp.StatusCode != 502 || len(b.up.started()) != 1 {
		t.Fatalf("after the failed pull: %d, pulls %v", resp.StatusCode, b.up.started())
	}
}

// TestPullThroughCorruptOnce: the hub corrupts the first download only.
// The worker discards the file and downloads it again; the client that
// was streamed the corrupt byte is cut off (whether hal0 saw the worker
// discard the data, or saw the new data, which the bytes it sent do not
// match), the job completes, and a retry gets the right file.
func TestPullThroughCorruptOnce(t *testing.T) {
	hub := upstream(t)
	shard := ptRepo(hub)[0]
	hold, held := make(chan struct{}), make(chan struct{})
	const at = 1<<20 + 1
	hub.AddFault(hubtest.Fault{Repo: "org/pt", Path: shard.Path, Where: "cdn", Times: 1, StallAt: at, Hold: hold, Held: held, CorruptAt: 1000})
	b := newPTBox(t, hub, Options{})
	u := b.url + "/org/pt/resolve/main/" + shard.Path
	c := get(t, u, nil)
	prefix := make([]byte, at-writeSlack)
	if _, err := io.ReadFull(c.Body, prefix); err != nil {
		t.Fatal(err)
	}
	<-held
	if prefix[1000] == shard.Data[1000] {
		t.Fatal("the hub's corruption did not reach the stream; the test proves nothing")
	}
	close(hold)
	rest, err := io.ReadAll(c.Body)
	if got := int64(len(prefix) + len(rest)); err == nil || got >= shard.Size {
		t.Fatalf("a stream with a corrupt byte completed: %d bytes, %v", got, err)
	}
	if j := b.up.waitJob(t, b.up.onlyJob(t).ID); j.State != jobs.Completed {
		t.Fatalf("job: %+v", j)
	}
	resp, body := do(t, "GET", u, nil, "")
	if resp.StatusCode != 200 || !bytes.Equal(body, shard.Data) {
		t.Fatalf("retry: %d, %d bytes", resp.StatusCode, len(body))
	}
}

// TestPullThroughNotFound: names upstream does not have get the Hub's
// 404s from the listing, without starting a pull; so do unauthenticated
// requests when a read token is set (401).
func TestPullThroughNotFound(t *testing.T) {
	hub := upstream(t)
	ptRepo(hub)
	b := newPTBox(t, hub, Options{})
	for _, tc := range []struct{ path, code string }{
		{"/nope/nope/resolve/main/x.gguf", "RepoNotFound"},
		{"/api/models/nope/nope", "RepoNotFound"},
		{"/org/pt/resolve/main/adapter_config.json", "EntryNotFound"},
		{"/org/pt/resolve/v9/README.md", "RevisionNotFound"},
	} {
		resp, _ := do(t, "GET", b.url+tc.path, nil, "")
		if resp.StatusCode != 404 || resp.Header.Get("X-Error-Code") != tc.code {
			t.Errorf("%s: %d %q, want 404 %s", tc.path, resp.StatusCode, resp.Header.Get("X-Error-Code"), tc.code)
		}
	}
	if s := b.up.started(); len(s) != 0 {
		t.Errorf("pulls started for names upstream lacks: %v", s)
	}

	tok := "hf_" + "readtokenreadtokenreadtokenreadtoken"
	b = newPTBox(t, hub, Options{Token: config.NewSecret(tok)})
	u := b.url + "/org/pt/resolve/main/README.md"
	for _, auth := range []string{"", "Bearer hf_wrong"} {
		resp, _ := do(t, "GET", u, map[string]string{"Authorization": auth}, "")
		if resp.StatusCode != 401 {
			t.Errorf("Authorization %q: %d, want 401", auth, resp.StatusCode)
		}
	}
	if s := b.up.started(); len(s) != 0 {
		t.Errorf("an unauthorized request started pulls: %v", s)
	}
	resp, body := do(t, "GET", u, map[string]string{"Authorization": "Bearer " + tok}, "")
	if resp.StatusCode != 200 || string(body) != "# pull-through\n" || len(b.up.started()) != 1 {
		t.Errorf("with the token: %d %q, pulls %v", resp.StatusCode, body, b.up.started())
	}
}

// TestPullThroughUpstreamDown: with the hub unreachable, installed repos
// are still listed and served from the store; others get a 502 that says
// why, and nothing is pulled.
func TestPullThroughUpstreamDown(t *testing.T) {
	s := newStore(t)
	s.add(tmodel{id: "org/x:Q4_K_M", repo: "org/x", commit: c1, rev: "main", installed: day(1), files: []tfile{{"a.gguf", data("a", 100), true}}})
	hub := upstream(t)
	dead := hub.URL
	hub.Close()
	cfg := config.Default(t.TempDir())
	up := &localPuller{cfg: cfg, store: jobs.Open(cfg.Paths.JobsDir())}
	srv := serve(t, Options{Registry: s.reg, Upstream: &HubLister{Endpoints: []string{dead}, HTTP: http.DefaultClient}, Pulls: up})
	resp, body := do(t, "GET", srv.url+"/api/models/org/x/tree/main", nil, "")
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"a.gguf"`)) {
		t.Fatalf("installed repo with upstream down: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "GET", srv.url+"/org/x/resolve/main/a.gguf", nil, "")
	if resp.StatusCode != 200 || len(body) != 100 {
		t.Fatalf("installed file with upstream down: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, _ = do(t, "GET", srv.url+"/api/models/org/other", nil, "")
	if resp.StatusCode != 502 || resp.Header.Get("Retry-After") == "" || len(up.started()) != 0 {
		t.Fatalf("missing repo with upstream down: %d %v, pulls %v", resp.StatusCode, resp.Header, up.started())
	}
}

// handStage writes a partial file the way hal0-pull lays one out (data
// under files/, counters under state/, see internal/pull/partial.go) with
// every byte counted as written, and a running job whose record pins it.
// The real worker cannot be stopped between writing the last byte and
// checking the hash; this stands in for that moment.
func handStage(t *testing.T, up *localPuller, stage, repo, commit string, f hubtest.File, content []byte) {
	t.Helper()
	data := filepath.Join(stage, "files", f.Path)
	state := filepath.Join(stage, "state", f.Path+".state")
	for _, p := range []string{data, state} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(data, content, 0o644); err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 256+16)
	copy(hdr, "HAL0PRT1")
	binary.LittleEndian.PutUint64(hdr[8:], uint64(f.Size))
	binary.LittleEndian.PutUint64(hdr[16:], uint64(f.Size)) // one chunk
	copy(hdr[24:88], f.SHA256)
	binary.LittleEndian.PutUint64(hdr[256:], uint64(f.Size)) // all written
	binary.LittleEndian.PutUint64(hdr[264:], uint64(f.Size))
	if err := os.WriteFile(state, hdr, 0o644); err != nil {
		t.Fatal(err)
	}
	rf := pullRef(repo, commit, f.Path)
	j, _, err := up.store.Begin(context.Background(), jobs.Job{Ref: rf, Kind: "hf", State: jobs.Running})
	if err != nil {
		t.Fatal(err)
	}
	_, err = up.store.Update(context.Background(), j.ID, func(j *jobs.Job) error {
		j.Attempts = 1
		j.Pinned = &jobs.Pinned{Repo: repo, Commit: commit, Stage: stage,
			Files: []jobs.PinnedFile{{Path: f.Path, Size: f.Size, LFS: true, SHA256: f.SHA256}}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStreamWithholdsLastByte: hfserve checks the hash itself. A file the
// job writes wrongly is streamed up to its last byte, which waits for the
// hash, and then cut, though the job has not (yet) said anything; a right
// one completes as soon as it is hashed, before the job ends.
func TestStreamWithholdsLastByte(t *testing.T) {
	hub := upstream(t)
	files := ptRepo(hub)
	commit := hub.Repo("org/pt").Commit
	b := newPTBox(t, hub, Options{})
	stage := filepath.Join(t.TempDir(), commit)
	f := files[0]
	wrong := append([]byte(nil), f.Data...)
	wrong[len(wrong)/2] ^= 1
	handStage(t, b.up, stage, "org/pt", commit, f, wrong)
	state := filepath.Join(stage, "state", f.Path+".state")
	setWritten(t, state, f.Size-1) // all but the last byte
	resp := get(t, b.url+"/org/pt/resolve/main/"+f.Path, nil)
	body := make([]byte, f.Size-1)
	if _, err := io.ReadFull(resp.Body, body); err != nil || !bytes.Equal(body, wrong[:f.Size-1]) {
		t.Fatalf("the written bytes: %v", err)
	}
	setWritten(t, state, f.Size)
	rest, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(rest) != 0 {
		t.Fatalf("wrong file: %d more bytes, %v; want a cut transfer", len(rest), err)
	}

	handStage(t, b.up, stage, "org/pt", commit, files[1], files[1].Data)
	resp = get(t, b.url+"/org/pt/resolve/main/"+files[1].Path, nil)
	if body, err := io.ReadAll(resp.Body); err != nil || !bytes.Equal(body, files[1].Data) {
		t.Fatalf("right file: %d bytes, %v", len(body), err)
	}
	if s := b.up.started(); len(s) != 0 {
		t.Fatalf("pulls started: %v", s)
	}
}

// setWritten sets the written counter of a hand-made one-chunk partial.
func setWritten(t *testing.T, state string, n int64) {
	t.Helper()
	st, err := os.OpenFile(state, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var c [8]byte
	binary.LittleEndian.PutUint64(c[:], uint64(n))
	if _, err := st.WriteAt(c[:], 256); err != nil {
		t.Fatal(err)
	}
}

// TestStreamCutsRewrittenBlock: a response whose bytes differ from what
// the follower hashed is cut, even though the file as hashed is right.
// Client A and the follower read the first block; then it changes on disk
// (as when a worker rewrites data), client B reads the changed block, and
// the rest of the file arrives. A completes; B is cut before its last
// byte.
func TestStreamCutsRewrittenBlock(t *testing.T) {
	hub := upstream(t)
	f := ptRepo(hub)[0] // 3 MiB + 777: blocks 0-2 whole, block 3 partial
	commit := hub.Repo("org/pt").Commit
	b := newPTBox(t, hub, Options{})
	stage := filepath.Join(t.TempDir(), commit)
	handStage(t, b.up, stage, "org/pt", commit, f, f.Data)
	// Only the first 2 MiB count as written.
	state := filepath.Join(stage, "state", f.Path+".state")
	setWritten(t, state, 2<<20)
	u := b.url + "/org/pt/resolve/main/" + f.Path
	a := get(t, u, nil)
	pa := make([]byte, 2<<20)
	if _, err := io.ReadFull(a.Body, pa); err != nil {
		t.Fatal(err)
	}
	// Wait until the follower has hashed both written blocks.
	tr := onlyTracker(t, b)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		tr.mu.Lock()
		h := tr.hashed
		tr.mu.Unlock()
		if h == 2<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower hashed %d bytes", h)
		}
	}
	data := filepath.Join(stage, "files", f.Path)
	fh, err := os.OpenFile(data, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte{f.Data[10] ^ 0xff}, 10); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	c := get(t, u, nil)
	pc := make([]byte, 2<<20)
	if _, err := io.ReadFull(c.Body, pc); err != nil || pc[10] == f.Data[10] {
		t.Fatalf("client B did not get the changed block: %v", err)
	}
	setWritten(t, state, f.Size)
	restA, err := io.ReadAll(a.Body)
	if err != nil || !bytes.Equal(append(pa, restA...), f.Data) {
		t.Fatalf("client A: %d bytes, %v", len(pa)+len(restA), err)
	}
	restC, err := io.ReadAll(c.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || int64(len(pc)+len(restC)) >= f.Size {
		t.Fatalf("client B: %d of %d bytes, %v; want a cut transfer", len(pc)+len(restC), f.Size, err)
	}
}

func onlyTracker(t *testing.T, b *ptBox) *tracker {
	t.Helper()
	b.h.pt.mu.Lock()
	defer b.h.pt.mu.Unlock()
	if len(b.h.pt.trackers) != 1 {
		t.Fatalf("%d followers", len(b.h.pt.trackers))
	}
	for _, tr := range b.h.pt.trackers {
		return tr
	}
	return nil
}

// TestPullThroughConcurrentFirstRequests: requests for both shards of a
// set arriving together, before any job exists, start one pull, and all
// of them get their shard.
func TestPullThroughConcurrentFirstRequests(t *testing.T) {
	hub := upstream(t)
	files := ptRepo(hub)
	b := newPTBox(t, hub, Options{})
	// Fetch the listing first so that the requests below all reach the
	// job lookup at once.
	if resp, _ := do(t, "GET", b.url+"/api/models/org/pt/revision/main", nil, ""); resp.StatusCode != 200 {
		t.Fatalf("listing: %d", resp.StatusCode)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		f := files[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := client.Get(b.url + "/org/pt/resolve/main/" + f.Path)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(body, f.Data) {
				errs <- fmt.Errorf("%s: %d bytes, %v", f.Path, len(body), err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := b.up.started(); len(s) != 1 {
		t.Errorf("pulls started: %v, want one for the set", s)
	}
}

// TestPullThroughNoSecondPullAfterInstall: a request that looked a file up
// before a pull installed it, and reaches the job lookup only after that
// pull ended, serves the installed file instead of pulling it again. (This
// is the window TestPullThroughConcurrentFirstRequests hits by chance;
// here it is made to happen.)
func TestPullThroughNoSecondPullAfterInstall(t *testing.T) {
	hub := upstream(t)
	files := ptRepo(hub)
	b := newPTBox(t, hub, Options{})
	ctx := context.Background()
	idx, err := b.h.index()
	if err != nil {
		t.Fatal(err)
	}
	_, stale, ok := b.h.lookupUpstream(ctx, httptest.NewRecorder(), idx, "org/pt", "main")
	if !ok {
		t.Fatal("no listing")
	}
	f := stale.files[files[0].Path]
	if f == nil || len(f.copies) != 0 {
		t.Fatalf("before the pull, %s should be listed and not installed: %+v", files[0].Path, f)
	}
	// The first request pulls the file and installs it.
	resp, body := do(t, "GET", b.url+"/org/pt/resolve/main/"+files[0].Path, nil, "")
	if resp.StatusCode != 200 || !bytes.Equal(body, files[0].Data) {
		t.Fatalf("first request: %d, %d bytes", resp.StatusCode, len(body))
	}
	b.up.waitJob(t, b.up.onlyJob(t).ID)
	hub.ResetStats()

	// A request holding the listing from before the install.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", b.url+"/org/pt/resolve/main/"+files[0].Path, nil)
	if again := b.h.serveFromPull(rec, req, "org/pt", stale.commit, f, false); !again {
		t.Fatalf("a request with a stale listing did not look the file up again: %d %s", rec.Code, rec.Body)
	}
	if s := b.up.started(); len(s) != 1 {
		t.Errorf("pulls started: %v, want the first one only", s)
	}
	if got := hub.Stats().Bytes; got != 0 {
		t.Errorf("hub served %d more bytes after the set was installed", got)
	}
}
