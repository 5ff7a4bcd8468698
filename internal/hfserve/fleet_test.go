package hfserve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/pull"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
)

// upstream is the in-repo test hub with a sharded GGUF repo (two quants
// and a README) and a safetensors repo with small git-stored files.
func upstream(t *testing.T) *hubtest.Hub {
	t.Helper()
	hub, err := hubtest.New(hubtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	files := hubtest.GenerateGGUFShards("", "Q4_K_M/m", "Q4_K_M", 3, 2<<20+4321, 1)
	files = append(files, hubtest.GenerateGGUFShards("", "Q8_0/m", "Q8_0", 2, 3<<20+7, 2)...)
	files = append(files, hubtest.File{Path: "README.md", Data: []byte("# fleet test model\n")})
	hub.AddRepo(hubtest.Repo{ID: "demo/m", Files: files})
	hub.AddRepo(hubtest.Repo{ID: "org/st", Files: hubtest.GenerateSafetensorsShards("", 2, 1<<20, 7)})
	return hub
}

// box is one hal0 installation: its own model root and registry, and an
// engine pulling from endpoint.
func box(t *testing.T, endpoint string) (*config.Config, *pull.Engine) {
	t.Helper()
	cfg := config.Default(t.TempDir())
	cfg.HF.Endpoint = endpoint
	cfg.HF.Token = config.Secret{}
	cfg.Pull.ChunkSize = 1 << 20
	cfg.Pull.Connections = 4
	cfg.Pull.DiskReserve = 0
	cfg.Pull.MaxRetries = 3
	return cfg, engine(cfg)
}

func engine(cfg *config.Config) *pull.Engine {
	e := pull.New(cfg)
	e.BackoffBase = 5 * time.Millisecond
	e.BackoffMax = 50 * time.Millisecond
	return e
}

func pullAll(t *testing.T, e *pull.Engine, refs []string) map[string]*registry.Model {
	t.Helper()
	out := map[string]*registry.Model{}
	for _, s := range refs {
		m, err := e.Pull(context.Background(), pull.Request{Ref: ref.MustParse(s)})
		if err != nil {
			t.Fatalf("pull %s: %v", s, err)
		}
		out[s] = m
	}
	return out
}

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sameModels checks that box B installed what box A has: commit, every
// file's path, size, SHA-256 and git oid in the registry, and the bytes on
// disk (hashed again here, not taken from either registry).
func sameModels(t *testing.T, a, b map[string]*registry.Model, hub *hubtest.Hub) {
	t.Helper()
	for id, ma := range a {
		mb := b[id]
		if mb == nil {
			t.Fatalf("%s missing on box B", id)
		}
		if mb.Commit != ma.Commit || mb.Commit != hub.Repo(ma.HFRepo).Commit {
			t.Errorf("%s: commit %s on B, %s on A, %s upstream", id, mb.Commit, ma.Commit, hub.Repo(ma.HFRepo).Commit)
		}
		if len(ma.Files) != len(mb.Files) || len(ma.Files) == 0 {
			t.Fatalf("%s: %d files on A, %d on B", id, len(ma.Files), len(mb.Files))
		}
		sort.Slice(ma.Files, func(i, j int) bool { return ma.Files[i].Path < ma.Files[j].Path })
		sort.Slice(mb.Files, func(i, j int) bool { return mb.Files[i].Path < mb.Files[j].Path })
		want := map[string]hubtest.File{}
		for _, f := range hub.Repo(ma.HFRepo).Files {
			want[f.Path] = f
		}
		for i, fa := range ma.Files {
			fb := mb.Files[i]
			if fa != fb {
				t.Errorf("%s: registry file %+v on A, %+v on B", id, fa, fb)
			}
			if up := want[fa.Path]; up.SHA256 != fa.SHA256 || up.Size != fa.Size {
				t.Errorf("%s: %s differs from upstream", id, fa.Path)
			}
			ha, hb := fileSHA(t, filepath.Join(ma.Dir, fa.Path)), fileSHA(t, filepath.Join(mb.Dir, fb.Path))
			if ha != hb || ha != fa.SHA256 {
				t.Errorf("%s: %s has sha256 %s on A, %s on B, %s in the registry", id, fa.Path, ha, hb, fa.SHA256)
			}
		}
	}
}

// TestHal0PullsFromHal0: box A pulls from the hub; box B pulls the same
// refs from A's hfserve with the real engine (which verifies every byte
// against the hashes hfserve lists) and ends up with identical files,
// hashes and commits, without the hub seeing a single further byte.
func TestHal0PullsFromHal0(t *testing.T) {
	hub := upstream(t)
	refs := []string{"demo/m:Q4_K_M", "demo/m:Q8_0", "demo/m/README.md", "org/st"}

	cfgA, engA := box(t, hub.URL)
	a := pullAll(t, engA, refs)
	upBytes := hub.Stats().Bytes
	hub.ResetStats()

	srv := serve(t, Options{Registry: registry.Open(cfgA.Paths.RegistryFile())})
	_, engB := box(t, srv.url)
	b := pullAll(t, engB, refs)
	sameModels(t, a, b, hub)
	if st := hub.Stats(); st.HubRequests != 0 || st.Bytes != 0 {
		t.Errorf("box B reached the hub: %d requests, %d bytes", st.HubRequests, st.Bytes)
	}
	if upBytes == 0 {
		t.Error("box A transferred nothing from the hub")
	}

	// Box C pulls from B's endpoint: a store filled from hfserve is itself
	// a complete source.
	cfgB := engB.Paths
	srvB := serve(t, Options{Registry: registry.Open(cfgB.RegistryFile())})
	_, engC := box(t, srvB.url)
	c := pullAll(t, engC, refs)
	sameModels(t, a, c, hub)
}

// TestPullThroughFleet: box A has nothing and pulls through from the hub.
// Box B pulls a quant from A with hal0's engine (parallel byte ranges,
// verified as usual) while a plain client downloads the first shard from
// A at the same time. A pulls the shard set once, as one job, and the hub
// sends each byte once; B, the client and A end with identical files.
func TestPullThroughFleet(t *testing.T) {
	hub := upstream(t)
	a := newPTBox(t, hub, Options{})
	_, engB := box(t, a.url)
	want := map[string]hubtest.File{}
	for _, f := range hub.Repo("demo/m").Files {
		want[f.Path] = f
	}
	first := "Q4_K_M/m-Q4_K_M-00001-of-00003.gguf"
	var wg sync.WaitGroup
	var plain []byte
	var plainErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := client.Get(a.url + "/demo/m/resolve/main/" + first)
		if err != nil {
			plainErr = err
			return
		}
		defer resp.Body.Close()
		plain, plainErr = io.ReadAll(resp.Body)
	}()
	b := pullAll(t, engB, []string{"demo/m:Q4_K_M"})["demo/m:Q4_K_M"]
	wg.Wait()
	if plainErr != nil || !bytes.Equal(plain, want[first].Data) {
		t.Fatalf("plain client: %d bytes, %v", len(plain), plainErr)
	}
	if len(b.Files) != 3 {
		t.Fatalf("box B: %+v", b.Files)
	}
	for _, f := range b.Files {
		if up := want[f.Path]; up.SHA256 != f.SHA256 || fileSHA(t, filepath.Join(b.Dir, f.Path)) != up.SHA256 {
			t.Errorf("box B: %s differs from upstream", f.Path)
		}
		if got := hub.Stats().File("demo/m", f.Path).Bytes; got != f.Size {
			t.Errorf("hub sent %d bytes of %s for %d", got, f.Path, f.Size)
		}
	}
	if s := a.up.started(); len(s) != 1 {
		t.Fatalf("box A started pulls %v, want one (the shard set)", s)
	}
	a.up.waitJob(t, a.up.onlyJob(t).ID)
	regA, err := registry.Open(a.cfg.Paths.RegistryFile()).Load()
	if err != nil || len(regA.Models) != 1 {
		t.Fatalf("box A's registry: %v %v", regA, err)
	}
	for _, f := range regA.List()[0].Files {
		if fileSHA(t, filepath.Join(regA.List()[0].Dir, f.Path)) != want[f.Path].SHA256 {
			t.Errorf("box A: %s differs from upstream", f.Path)
		}
	}
}

// TestPullThroughFleetWaitsOutUpstream: box B pulls from box A while A's
// own download from the hub (started by a plain client) is held silent
// for ten times B's stall timeout. A marks its streamed responses (hf.HeaderPullThrough), so B
// waits for A instead of restarting its ranges until it gives up; B
// completes with the right bytes once A's upstream resumes, without a
// single stalled range, and the hub sends each byte once.
func TestPullThroughFleetWaitsOutUpstream(t *testing.T) {
	hub := upstream(t)
	a := newPTBox(t, hub, Options{})
	const shard = "Q8_0/m-Q8_0-00001-of-00002.gguf"
	hold, held := make(chan struct{}), make(chan struct{})
	hub.AddFault(hubtest.Fault{Repo: "demo/m", Path: shard, Where: "cdn", Times: 1, StallAt: 2 << 20, Hold: hold, Held: held})
	release := sync.OnceFunc(func() { close(hold) })
	defer release()
	// A plain client starts A's pull, so that B's requests find it
	// pinned and A answers them at once.
	first := get(t, a.url+"/demo/m/resolve/main/"+shard, nil)
	<-held
	_, engB := box(t, a.url)
	// Without the marker, 4 attempts of 300 ms of silence end B's pull
	// in about a second.
	engB.StallTimeout = 300 * time.Millisecond
	var mu sync.Mutex
	var logB []string
	engB.Logf = func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logB = append(logB, fmt.Sprintf(format, args...))
	}
	done := make(chan error, 1)
	var m *registry.Model
	go func() {
		var err error
		m, err = engB.Pull(context.Background(), pull.Request{Ref: ref.MustParse("demo/m:Q8_0")})
		done <- err
	}()
	// The scenario: A's upstream stays silent for 10x B's stall timeout
	// (the hold's length is what is tested, not a wait for an event).
	select {
	case err := <-done:
		t.Fatalf("B's pull ended while A's upstream was silent: %v", err)
	case <-time.After(10 * engB.StallTimeout):
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("B's pull: %v", err)
	}
	want := map[string]hubtest.File{}
	for _, f := range hub.Repo("demo/m").Files {
		want[f.Path] = f
	}
	if body, err := io.ReadAll(first.Body); err != nil || !bytes.Equal(body, want[shard].Data) {
		t.Errorf("plain client: %d bytes, %v", len(body), err)
	}
	if len(m.Files) != 2 {
		t.Fatalf("box B: %+v", m.Files)
	}
	for _, f := range m.Files {
		if fileSHA(t, filepath.Join(m.Dir, f.Path)) != want[f.Path].SHA256 {
			t.Errorf("box B: %s differs from upstream", f.Path)
		}
		if got := hub.Stats().File("demo/m", f.Path).Bytes; got != f.Size {
			t.Errorf("hub sent %d bytes of %s for %d", got, f.Path, f.Size)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	waited := false
	for _, l := range logB {
		if strings.Contains(l, "stalled") || strings.Contains(l, "no response") {
			t.Errorf("B restarted a range: %s", l)
		}
		waited = waited || strings.Contains(l, shard+": the source is pulling it from its upstream")
	}
	if !waited {
		t.Errorf("B did not say it waits for A's upstream; its log:\n%s", strings.Join(logB, "\n"))
	}
}
