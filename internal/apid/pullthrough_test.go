package apid

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/apitest"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/ref"
)

// writeSlack: hal0-pull writes what it received once it holds 64 KiB of it
// (internal/pull/fetch.go), so while the hub holds a download at byte n,
// only n-writeSlack bytes are sure to be on disk, and streamable.
const writeSlack = 64 << 10

// hfGet starts a GET (or HEAD) on the /hf/ endpoint with the read token;
// the body is left to the caller.
func hfGet(t *testing.T, method, u, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// pullThroughAPID runs hal0-apid in embedded mode (pulls are hal0-pull
// child processes) with api.hf_pull_through on in hal0.toml.
func pullThroughAPID(t *testing.T, endpoint string, env ...string) (*apitest.Client, string, string) {
	t.Helper()
	home := t.TempDir()
	writeFile(t, filepath.Join(home, "etc/hal0/hal0.toml"), "[api]\nhf_pull_through = true\n")
	c, base := startProcessAPID(t, home, endpoint, env...)
	return c, base + "/hf", home
}

// TestPullThroughEmbedded: hal0-apid with pull-through serves a file it
// does not have by starting an ordinary pull job for it (a hal0-pull child
// process, the job visible in the API) and streaming the file while the
// job downloads it: two clients get the first bytes while the hub holds
// the only download in the middle of the file, and identical, complete
// files once it lets go; the hub sends each byte once. A pull already
// running from the API is joined rather than repeated. Names upstream
// lacks get the Hub's 404s, the read token is required, and a pull that
// is cancelled or fails verification cuts the stream instead of
// completing it.
func TestPullThroughEmbedded(t *testing.T) {
	hub, err := hubtest.New(hubtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	files := hub.AddRepo(hubtest.Repo{ID: "pt/s", Files: hubtest.GenerateGGUFShards("", "s", "Q4_K_M", 2, 3<<20+99, 5)}).Files
	joinFiles := hub.AddRepo(hubtest.Repo{ID: "pt/j", Files: hubtest.GenerateGGUFShards("", "j", "Q4_K_M", 1, 2<<20+3, 6)}).Files
	bad := hub.AddRepo(hubtest.Repo{ID: "pt/bad", Files: hubtest.GenerateGGUFShards("", "b", "Q4_K_M", 1, 2<<20+1, 7)}).Files[0]
	const tok = "hf_pullthroughreadtokenpullthroughread"
	c, hf, home := pullThroughAPID(t, hub.URL, "HAL0_HF_SERVE_TOKEN="+tok)

	shard := files[0]
	u := hf + "/pt/s/resolve/main/" + shard.Path
	// The read token: nothing is pulled for a request without it.
	for _, token := range []string{"", "hf_wrongwrongwrongwrongwrongwrongwrong"} {
		if resp := hfGet(t, "GET", u, token); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("token %q: %d, want 401", token, resp.StatusCode)
		}
	}
	if p := c.Pulls(); len(p) != 0 {
		t.Fatalf("unauthorized requests started pulls: %+v", p)
	}

	// Streaming while the job runs.
	hold, held := make(chan struct{}), make(chan struct{})
	const at = 1<<20 + 777
	hub.AddFault(hubtest.Fault{Repo: "pt/s", Path: shard.Path, Where: "cdn", Times: 1, StallAt: at, Hold: hold, Held: held})
	c1 := hfGet(t, "GET", u, tok)
	commit := hub.Repo("pt/s").Commit
	if c1.StatusCode != 200 || c1.ContentLength != shard.Size || c1.Header.Get("X-Linked-Etag") != `"`+shard.SHA256+`"` || c1.Header.Get("X-Repo-Commit") != commit {
		t.Fatalf("stream: %d, length %d, %v", c1.StatusCode, c1.ContentLength, c1.Header)
	}
	p1 := make([]byte, at-writeSlack)
	if _, err := io.ReadFull(c1.Body, p1); err != nil {
		t.Fatal(err)
	}
	<-held
	// The job: an ordinary pull of the file pinned to the commit, run by
	// the API's runner, still running (the hub holds its only download).
	rf := ref.MustParse("pt/s@" + commit + "/" + shard.Path)
	st := c.Status(rf.String())
	if st.State != "running" || st.Runner != "process" || st.Unit != rf.Unit() {
		t.Fatalf("job while held: %+v", st)
	}
	// POST /api/models/{id}/pull for the same ref finds the same job.
	if again := c.Pull(rf.String()); !again.Existing || again.JobID != st.JobID {
		t.Fatalf("API pull of the ref being pulled through: %+v, job %s", again, st.JobID)
	}
	head := hfGet(t, "HEAD", u, tok)
	if head.StatusCode != 200 || head.Header.Get("X-Linked-Size") != strconv.FormatInt(shard.Size, 10) || head.Header.Get("ETag") != `"`+shard.SHA256+`"` {
		t.Fatalf("HEAD while pulling: %d %v", head.StatusCode, head.Header)
	}
	c2 := hfGet(t, "GET", u, tok)
	p2 := make([]byte, at-writeSlack)
	if _, err := io.ReadFull(c2.Body, p2); err != nil {
		t.Fatal(err)
	}
	close(hold)
	for i, resp := range []*http.Response{c1, c2} {
		rest, err := io.ReadAll(resp.Body)
		got := append([]byte(nil), [][]byte{p1, p2}[i]...)
		if err != nil || !bytes.Equal(append(got, rest...), shard.Data) {
			t.Fatalf("client %d: %d bytes, %v", i+1, len(got)+len(rest), err)
		}
	}
	if st, _ := c.WaitPull(rf.String(), "completed", pullLimit, completed); st.ErrorCode != "" {
		t.Fatalf("job: %+v", st)
	}
	for _, f := range files {
		if n := hub.Stats().File("pt/s", f.Path).Bytes; n != f.Size {
			t.Errorf("hub sent %d bytes of %s for %d", n, f.Path, f.Size)
		}
	}
	if m := model(t, home, rf); len(m.Files) != 2 || m.Commit != commit {
		t.Fatalf("installed: %+v", m)
	}

	// A pull started over the API is joined: no second job.
	jhold, jheld := make(chan struct{}), make(chan struct{})
	hub.AddFault(hubtest.Fault{Repo: "pt/j", Where: "cdn", Times: 1, StallAt: 1 << 20, Hold: jhold, Held: jheld})
	jrf := ref.MustParse("pt/j:Q4_K_M")
	c.Pull(jrf.String())
	<-jheld
	jresp := hfGet(t, "GET", hf+"/pt/j/resolve/main/"+joinFiles[0].Path, tok)
	close(jhold)
	if body, err := io.ReadAll(jresp.Body); err != nil || !bytes.Equal(body, joinFiles[0].Data) {
		t.Fatalf("joined stream: %d bytes, %v", len(body), err)
	}
	n := 0
	for _, p := range c.Pulls() {
		if p.ModelID != rf.String() {
			n++
			if p.ModelID != jrf.String() {
				t.Errorf("unexpected pull %s", p.ModelID)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d jobs for pt/j, want the API's one", n)
	}

	// Names upstream lacks: the Hub's answers, no pull.
	for path, code := range map[string]string{
		"/nope/nope/resolve/main/x.gguf":      "RepoNotFound",
		"/api/models/nope/nope/revision/main": "RepoNotFound",
		"/pt/s/resolve/main/missing.gguf":     "EntryNotFound",
	} {
		resp := hfGet(t, "GET", hf+path, tok)
		if resp.StatusCode != 404 || resp.Header.Get("X-Error-Code") != code {
			t.Errorf("%s: %d %q, want 404 %s", path, resp.StatusCode, resp.Header.Get("X-Error-Code"), code)
		}
	}

	// A pull cancelled over the API: the stream is cut.
	cf := hub.AddRepo(hubtest.Repo{ID: "pt/c", Files: hubtest.GenerateGGUFShards("", "c", "Q4_K_M", 1, 2<<20+9, 9)}).Files[0]
	chold, cheld := make(chan struct{}), make(chan struct{})
	defer close(chold)
	hub.AddFault(hubtest.Fault{Repo: "pt/c", Where: "cdn", Times: 1, StallAt: 1 << 20, Hold: chold, Held: cheld})
	cresp := hfGet(t, "GET", hf+"/pt/c/resolve/main/"+cf.Path, tok)
	cp := make([]byte, 1<<20-writeSlack)
	if _, err := io.ReadFull(cresp.Body, cp); err != nil {
		t.Fatal(err)
	}
	<-cheld
	crf := ref.MustParse("pt/c@" + hub.Repo("pt/c").Commit + "/" + cf.Path)
	if st := c.Cancel(crf.String()); st.State != "cancelled" {
		t.Fatalf("cancel: %+v", st)
	}
	if rest, err := io.ReadAll(cresp.Body); !errors.Is(err, io.ErrUnexpectedEOF) || int64(len(cp)+len(rest)) >= cf.Size {
		t.Fatalf("stream of a cancelled pull: %d of %d bytes, %v", len(cp)+len(rest), cf.Size, err)
	}

	// A pull that fails verification: the stream is cut, never complete.
	bhold, bheld := make(chan struct{}), make(chan struct{})
	hub.AddFault(hubtest.Fault{Repo: "pt/bad", Where: "cdn", Times: 1, StallAt: 1 << 20, Hold: bhold, Held: bheld, CorruptAt: 100})
	hub.AddFault(hubtest.Fault{Repo: "pt/bad", Where: "cdn", CorruptAt: 100})
	bresp := hfGet(t, "GET", hf+"/pt/bad/resolve/main/"+bad.Path, tok)
	bp := make([]byte, 1<<20-writeSlack)
	if _, err := io.ReadFull(bresp.Body, bp); err != nil {
		t.Fatal(err)
	}
	<-bheld
	close(bhold)
	rest, err := io.ReadAll(bresp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || int64(len(bp)+len(rest)) >= bad.Size {
		t.Fatalf("stream of a file failing verification: %d of %d bytes, %v", len(bp)+len(rest), bad.Size, err)
	}
	brf := ref.MustParse("pt/bad@" + hub.Repo("pt/bad").Commit + "/" + bad.Path)
	if st, _ := c.WaitPull(brf.String(), "failed", pullLimit, func(st *api.PullStatus) bool { return st.Final() }); st.ErrorCode != api.CodeChecksum {
		t.Fatalf("bad pull: %+v", st)
	}
}

// TestFleetPullThrough: box B pulls a sharded model from box A's /hf/
// while A has none of it: A pulls it through as one job and streams it
// to B's ranged requests and, at the same time, to a plain client. The
// hub sends each byte once; B, A and the client end with the same bytes.
func TestFleetPullThrough(t *testing.T) {
	hub, err := hubtest.New(hubtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	files := hub.AddRepo(hubtest.Repo{ID: "fleet/p", Files: hubtest.GenerateGGUFShards("", "p", "Q4_K_M", 3, 3<<20+5, 8)}).Files
	rf := ref.MustParse("fleet/p:Q4_K_M")
	a, aHF, _ := pullThroughAPID(t, hub.URL)
	homeB := t.TempDir()
	// B downloads in 1 MiB ranges, several at once, from A.
	b, _ := startProcessAPID(t, homeB, aHF, "HAL0_PULL_CHUNK_SIZE=1MiB")

	var wg sync.WaitGroup
	var plain []byte
	var plainErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := http.Get(aHF + "/fleet/p/resolve/main/" + files[0].Path)
		if err != nil {
			plainErr = err
			return
		}
		defer resp.Body.Close()
		plain, plainErr = io.ReadAll(resp.Body)
	}()
	b.Pull(rf.String())
	if st, _ := b.WaitPull(rf.String(), "completed", pullLimit, func(st *api.PullStatus) bool { return st.Final() }); st.State != "completed" {
		t.Fatalf("B: %+v", st)
	}
	wg.Wait()
	if plainErr != nil || !bytes.Equal(plain, files[0].Data) {
		t.Fatalf("plain client: %d bytes, %v", len(plain), plainErr)
	}
	mB := model(t, homeB, rf)
	if len(mB.Files) != 3 {
		t.Fatalf("B: %+v", mB)
	}
	want := map[string]hubtest.File{}
	for _, f := range files {
		want[f.Path] = f
		if n := hub.Stats().File("fleet/p", f.Path).Bytes; n != f.Size {
			t.Errorf("hub sent %d bytes of %s for %d", n, f.Path, f.Size)
		}
	}
	for _, f := range mB.Files {
		if b, err := os.ReadFile(filepath.Join(mB.Dir, f.Path)); err != nil || !bytes.Equal(b, want[f.Path].Data) {
			t.Errorf("B: %s differs from upstream (%v)", f.Path, err)
		}
	}
	// A pulled the shard set as one job.
	if p := a.Pulls(); len(p) != 1 || !bytes.Contains([]byte(p[0].ModelID), []byte("fleet/p@")) {
		t.Fatalf("A's pulls: %+v", p)
	}
}

// TestPullThroughGated: a gated repo (hal0 holds a token that was granted
// access) is not passed on to holders of the read token: 403 GatedRepo,
// and nothing is pulled for them. The box's owner (the admin token over
// TCP, or the unix socket) gets it, pulled through as usual.
func TestPullThroughGated(t *testing.T) {
	const hubToken = "hf_hubtokenhubtokenhubtokenhubtokenhub"
	hub, err := hubtest.New(hubtest.Options{Token: hubToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	f := hub.AddRepo(hubtest.Repo{ID: "pt/g", Gated: "manual", Approved: true, Files: []hubtest.File{{Path: "w.gguf", Data: bytes.Repeat([]byte("gated"), 50000), LFS: true}}}).Files[0]
	const readTok, adminTok = "hf_readtokenreadtokenreadtokenreadtoken", "admin-token-9c2e"
	c, hf, _ := pullThroughAPID(t, hub.URL, "HF_TOKEN="+hubToken, "HAL0_HF_SERVE_TOKEN="+readTok, "HAL0_API_TOKEN="+adminTok)
	u := hf + "/pt/g/resolve/main/w.gguf"
	resp := hfGet(t, "GET", u, readTok)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Error-Code") != "GatedRepo" {
		t.Fatalf("read token: %d %q", resp.StatusCode, resp.Header.Get("X-Error-Code"))
	}
	if p := c.Pulls(); len(p) != 0 {
		t.Fatalf("pulled for a client that may not have it: %+v", p)
	}
	resp = hfGet(t, "GET", u, adminTok)
	if body, err := io.ReadAll(resp.Body); resp.StatusCode != 200 || err != nil || !bytes.Equal(body, f.Data) {
		t.Fatalf("admin token: %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}
	if code, body := c.Do(http.MethodGet, "/hf/pt/g/resolve/main/w.gguf"); code != 200 || !bytes.Equal(body, f.Data) {
		t.Fatalf("unix socket: %d, %d bytes", code, len(body))
	}
}
