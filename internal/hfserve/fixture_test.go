package hfserve

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/registry"
)

// store is a temporary model root and registry, filled by the test the way
// hal0's pull fills the real one.
type store struct {
	t    *testing.T
	root string
	reg  *registry.Store
}

func newStore(t *testing.T) *store {
	t.Helper()
	root := t.TempDir()
	return &store{t: t, root: root, reg: registry.Open(filepath.Join(root, "registry", "registry.toml"))}
}

// tfile is a file of a test model. LFS files get no git oid in the
// registry, as after a hal0 pull.
type tfile struct {
	path string
	data []byte
	lfs  bool
}

type tmodel struct {
	id, repo, commit, rev string
	installed             time.Time
	files                 []tfile
	source                string // default "hf"
	gated                 string
}

// add writes the model's files under root/<id> and its registry entry. It
// returns the install directory.
func (s *store) add(m tmodel) string {
	s.t.Helper()
	dir := filepath.Join(s.root, "local", strings.NewReplacer("/", "_", ":", "_", "@", "_").Replace(m.id))
	entry := &registry.Model{ID: m.id, Name: m.id, Path: dir, Dir: dir, Source: m.source, HFRepo: m.repo,
		Revision: m.rev, Commit: m.commit, Format: "dir", InstalledAt: m.installed.UTC().Format(time.RFC3339), Gated: m.gated}
	if entry.Source == "" {
		entry.Source = "hf"
	}
	for _, f := range m.files {
		p := filepath.Join(dir, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			s.t.Fatal(err)
		}
		rf := registry.File{Path: f.path, Size: int64(len(f.data)), SHA256: sha256Hex(f.data)}
		if !f.lfs {
			rf.GitOID = gitBlobOID(f.data)
		}
		entry.Files = append(entry.Files, rf)
		entry.SizeBytes += rf.Size
	}
	if err := s.reg.Update(context.Background(), func(r *registry.Registry) error { r.Put(entry); return nil }); err != nil {
		s.t.Fatal(err)
	}
	return dir
}

func sha256Hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// gitBlobOID is git's object id of a blob, written out here independently
// of the package so the test checks the package's hashing.
func gitBlobOID(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func lfsPointerText(b []byte) string {
	return fmt.Sprintf("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", sha256Hex(b), len(b))
}

// data returns n deterministic bytes that differ per seed.
func data(seed string, n int) []byte {
	out := make([]byte, 0, n+32)
	for i := 0; len(out) < n; i++ {
		s := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", seed, i)))
		out = append(out, s[:]...)
	}
	return out[:n]
}

// served is a Handler behind a real http.Server on 127.0.0.1, mounted
// under /hf/ in a ServeMux as hal0-apid mounts it.
type served struct {
	h    *Handler
	base string // http://127.0.0.1:port
	url  string // base + "/hf": the HF_ENDPOINT
	logs *logBuf
}

type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, a ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
	l.mu.Unlock()
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func serve(t *testing.T, opts Options) *served {
	t.Helper()
	logs := &logBuf{}
	if opts.Logf == nil {
		opts.Logf = logs.logf
	}
	h := New(opts)
	mux := http.NewServeMux()
	mux.Handle("/hf/", h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() {
		hs.Close()
		h.Close()
	})
	base := "http://" + ln.Addr().String()
	return &served{h: h, base: base, url: base + "/hf", logs: logs}
}
