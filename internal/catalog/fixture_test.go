package catalog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
)

// kv is one GGUF metadata pair for ggufBytes: a string, a uint32 or a
// []string (an array of strings).
type kv struct {
	key string
	val any
}

// ggufBytes builds a GGUF v3 file: the metadata kvs, one I8 tensor, and
// deterministic bytes up to size.
func ggufBytes(kvs []kv, size int) []byte {
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	str := func(s string) { le(uint64(len(s))); b.WriteString(s) }
	b.WriteString("GGUF")
	le(uint32(3))
	le(uint64(1))
	le(uint64(len(kvs)))
	for _, p := range kvs {
		str(p.key)
		switch v := p.val.(type) {
		case string:
			le(uint32(ggufString))
			str(v)
		case uint32:
			le(uint32(ggufU32))
			le(v)
		case []string:
			le(uint32(ggufArray))
			le(uint32(ggufString))
			le(uint64(len(v)))
			for _, s := range v {
				str(s)
			}
		default:
			panic(fmt.Sprintf("ggufBytes: %T", v))
		}
	}
	str("blk.0.weight")
	le(uint32(1))
	le(uint64(max(size-b.Len()-64, 0)))
	le(uint32(24))
	le(uint64(0))
	for b.Len()%32 != 0 {
		b.WriteByte(0)
	}
	for i := 0; b.Len() < size; i++ {
		b.WriteByte(byte(i*7 + i>>8))
	}
	return b.Bytes()
}

// vocab is a tokens array of about n bytes, as large vocabularies put
// before the chat template.
func vocab(n int) []string {
	var out []string
	for size := 0; size < n; {
		t := fmt.Sprintf("tok%07d", len(out))
		out = append(out, t)
		size += 8 + len(t)
	}
	return out
}

const chatTemplate = "{% for m in messages %}{{ m['content'] }}{% endfor %}"

var day = func(d int) time.Time { return time.Date(2025, 6, d, 12, 0, 0, 0, time.UTC) }

// Collection slugs of the fixture.
const (
	picks = "curators/picks-0123456789abcdef01234567"
	more  = "curators/more-89abcdef0123456789abcdef"
)

// fixture is a hub holding an organisation with one repository per
// chat-template case, a gated repository, and two collections that
// overlap it and each other.
type fixture struct {
	hub   *hubtest.Hub
	repos map[string]*hubtest.Repo
	big   string // path of the GGUF whose template sits behind a 3 MiB vocabulary
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	hub, err := hubtest.New(hubtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	f := &fixture{hub: hub, repos: map[string]*hubtest.Repo{}}
	add := func(r hubtest.Repo) {
		f.repos[r.ID] = hub.AddRepo(r)
	}

	// GGUF: two quants; the template is in the first shard's header only.
	alpha := append(hubtest.GenerateGGUFShards("", "alpha", "Q4_K_M", 2, 256<<10, 1),
		hubtest.GenerateGGUFShards("", "alpha", "Q8_0", 1, 512<<10, 2)...)
	alpha = append(alpha, hubtest.File{Path: "README.md", Data: []byte("# alpha\n")})
	add(hubtest.Repo{ID: "acme/alpha-GGUF", Files: alpha, PipelineTag: "text-generation", License: "apache-2.0",
		Downloads: 900, Likes: 90, LastModified: day(9)})
	// safetensors with the template in tokenizer_config.json.
	add(hubtest.Repo{ID: "acme/beta", Files: hubtest.GenerateSafetensorsShards("", 2, 64<<10, 3), PipelineTag: "text-generation",
		License: "mit", Downloads: 800, Likes: 10, LastModified: day(8)})
	// The template in chat_template.jinja only.
	add(hubtest.Repo{ID: "acme/gamma", Files: []hubtest.File{
		{Path: "config.json", Data: []byte(`{"model_type":"llama"}`)},
		{Path: "tokenizer_config.json", Data: []byte(`{"bos_token":"<s>"}`)},
		{Path: "chat_template.jinja", Data: []byte(chatTemplate)},
		{Path: "model.safetensors", Data: bytes.Repeat([]byte{1}, 4096), LFS: true},
	}, PipelineTag: "text-generation", Downloads: 700, Likes: 70, LastModified: day(7)})
	// A GGUF whose template sits behind a 3 MiB vocabulary, in a 24 MiB
	// file: reading it takes several ranges, and far less than the file.
	f.big = "delta-Q4_K_M.gguf"
	add(hubtest.Repo{ID: "acme/delta-GGUF", Files: []hubtest.File{{Path: f.big, LFS: true, Data: ggufBytes([]kv{
		{"general.architecture", "llama"}, {"general.alignment", uint32(32)},
		{"tokenizer.ggml.tokens", vocab(3 << 20)}, {"tokenizer.chat_template", chatTemplate},
	}, 24<<20)}}, PipelineTag: "text-generation", Downloads: 600, Likes: 60, LastModified: day(6)})
	// No template anywhere.
	add(hubtest.Repo{ID: "acme/epsilon-GGUF", Files: []hubtest.File{{Path: "epsilon-Q8_0.gguf", LFS: true, Data: ggufBytes([]kv{
		{"general.architecture", "llama"},
	}, 64<<10)}}, PipelineTag: "feature-extraction", Downloads: 500, Likes: 5, LastModified: day(5)})
	// Gated: listed and marked, its files out of reach without a token.
	add(hubtest.Repo{ID: "acme/gated-GGUF", Gated: "manual", Files: hubtest.GenerateGGUFShards("", "gated", "Q4_K_M", 1, 64<<10, 4),
		PipelineTag: "text-generation", Downloads: 400, Likes: 4, LastModified: day(4)})
	// Only in collections.
	add(hubtest.Repo{ID: "other/zeta", Files: []hubtest.File{{Path: "config.json", Data: []byte(`{}`)}, {Path: "model.onnx", Data: []byte("onnx"), LFS: true}},
		PipelineTag: "text-generation", Downloads: 50, Likes: 500, LastModified: day(3),
		Extra: map[string]any{"config": map[string]any{"tokenizer_config": map[string]any{"chat_template": chatTemplate}}}})
	add(hubtest.Repo{ID: "other/eta", Files: []hubtest.File{{Path: "weights.bin", Data: []byte("w"), LFS: true}},
		PipelineTag: "text-to-speech", Downloads: 40, Likes: 1, LastModified: day(2)})

	hub.AddCollection(hubtest.Collection{Slug: picks, Items: []hubtest.CollectionItem{
		{ID: "acme/beta"}, {ID: "other/zeta"}, {Type: "dataset", ID: "curators/data"}, {ID: "acme/vanished"},
	}})
	hub.AddCollection(hubtest.Collection{Slug: more, Items: []hubtest.CollectionItem{{ID: "other/eta"}, {ID: "other/zeta"}}})
	return f
}

// indexer returns an indexer of the fixture's hub with small pages (so
// pagination happens) and fast backoff.
func (f *fixture) indexer(t *testing.T, cat config.Catalog) (*Indexer, *Store) {
	t.Helper()
	home := t.TempDir()
	cfg := config.Default(home)
	cfg.HF.Endpoint = f.hub.URL
	if cat.Limit == 0 {
		cat.Limit = 100
	}
	if cat.Concurrency == 0 {
		cat.Concurrency = 3
	}
	cat.Interval = config.Duration(time.Hour)
	cfg.Catalog = cat
	ix := New(cfg, nil)
	ix.PageSize = 2
	ix.BackoffBase, ix.BackoffMax = time.Millisecond, 5*time.Millisecond
	ix.Logf = t.Logf
	return ix, Open(cfg.Paths.CatalogFile())
}

// searches returns the /api/models requests the hub saw.
func (f *fixture) searches() []hubtest.Request {
	var out []hubtest.Request
	for _, r := range f.hub.Requests() {
		if strings.HasPrefix(r.URI, "/api/models?") {
			out = append(out, r)
		}
	}
	return out
}

// peakTransport counts requests to /api/models/{id}/revision/ in flight
// and remembers the most at once. A request waits (up to hold) for the
// bound to be reached, so that an indexer that overshoots it shows.
type peakTransport struct {
	next  http.RoundTripper
	bound int
	hold  time.Duration

	mu       sync.Mutex
	cond     *sync.Cond
	inflight int
	peak     int
}

func (p *peakTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.Contains(req.URL.Path, "/revision/") {
		return p.next.RoundTrip(req)
	}
	p.mu.Lock()
	p.inflight++
	p.peak = max(p.peak, p.inflight)
	p.cond.Broadcast()
	deadline := time.Now().Add(p.hold)
	for p.inflight < p.bound && time.Now().Before(deadline) {
		t := time.AfterFunc(time.Until(deadline), p.cond.Broadcast)
		p.cond.Wait()
		t.Stop()
	}
	p.mu.Unlock()
	resp, err := p.next.RoundTrip(req)
	p.mu.Lock()
	p.inflight--
	p.mu.Unlock()
	return resp, err
}

func newCond(m *sync.Mutex) *sync.Cond { return sync.NewCond(m) }

var urlValues = url.ParseQuery
