// Package hubtest is an in-process imitation of the Hugging Face Hub download
// protocol, used by hal0's download tests, the demo and the benchmarks.
//
// A Hub runs two real net/http servers on 127.0.0.1: the hub itself (the
// HF_ENDPOINT: /api/models/..., /{repo}/resolve/..., /{repo}/raw/...) and a
// CDN that serves LFS content behind presigned, expiring URLs. Responses follow
// the wire format documented in /work/shared/reference/hf-hub-protocol.md
// (headers, status codes, X-Error-Code values, JSON shapes, pagination), and
// faults (throttling, dropped connections, corruption, stalls, lying servers)
// can be injected per file so a client's recovery paths can be exercised.
//
// The core does not import package testing, so the standalone binary in
// ./testhub can serve the same repos to scripts.
package hubtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Zero is used for the Fault fields in which 0 means "disabled" (DropAfter,
// CorruptAt, StallAt, WrongContentLength) to ask for a real 0: drop or stall
// right after the headers, corrupt the first byte, declare Content-Length 0.
const Zero int64 = -1

// File is one file of a repo. Its content is either in memory (Data) or on disk
// (DiskPath); disk content is streamed with sendfile so multi-GiB benchmark
// files cost neither memory nor user-space copies.
type File struct {
	Path     string // repo path, e.g. "Q4_K_M/model-Q4_K_M-00001-of-00003.gguf"
	Data     []byte // in-memory content (not copied: do not modify after AddRepo), or
	DiskPath string // content read from this file at request time
	// LFS files are stored as a git-lfs pointer: tree and siblings carry
	// lfs{oid|sha256,size,pointerSize}, resolve answers 302 to the CDN and
	// raw serves the pointer text.
	LFS bool
	// SHA256 is the hex sha256 of the content; computed by AddRepo if empty.
	// Generators precompute it so GiB files are not read twice.
	SHA256 string

	// Filled in by AddRepo.
	Size int64  // content size in bytes
	OID  string // git blob sha1 of what git stores: the content, or the LFS pointer for LFS files
}

// Repo is a model repository. Only Files and ID are required.
type Repo struct {
	ID string // "org/name" (a bare "name" is accepted for legacy ids)
	// Commit is the 40-hex commit of this snapshot. If empty it is derived
	// deterministically (a real git commit hash over a real git tree of the files).
	Commit   string
	Branches map[string]string // name -> commit; default {"main": Commit}; empty values mean Commit
	Tags     map[string]string // name -> commit
	// PullRequests maps N -> commit for the ref "refs/pr/N" (listed by
	// /refs?include_prs=1 and usable as a revision, e.g. "refs%2Fpr%2F1").
	PullRequests map[int]string
	Files        []File

	Gated   string // "" (not gated), "auto" or "manual"; only file downloads are gated
	Private bool
	// Approved says whether the hub's token (Options.Token) may read the
	// repo: for gated repos whether access was granted (false -> 403
	// GatedRepo), for private repos whether the token's user is a member
	// (false -> 404 RepoNotFound).
	Approved bool
	Disabled bool // files answer 403 "Access to this resource is disabled."
	// RenamedFrom is an old id that answers a relative 307 to this repo, as
	// the Hub does after a rename (google-bert/bert-base-uncased).
	RenamedFrom string

	// Catalog metadata, returned by /api/models/{id}.
	PipelineTag  string         // "pipeline_tag", e.g. "text-generation"
	LibraryName  string         // "library_name"
	License      string         // cardData.license and the "license:X" tag
	Downloads    int            // 30-day downloads
	Likes        int            //
	LastModified time.Time      // default 2025-01-01T00:00:00Z
	CreatedAt    time.Time      // default LastModified
	RepoTags     []string       // extra "tags"; gguf, safetensors, license:X and region:us are added
	CardData     map[string]any // README front-matter
	Extra        map[string]any // any other top-level fields ("gguf", "safetensors", "config", ...)
}

// Options configures a Hub. The zero value is usable.
type Options struct {
	// Token is the only valid bearer token ("hf_..."). A request carrying
	// any other Authorization value gets 401 "Invalid credentials in
	// Authorization header", even for public repos, as on the real Hub.
	// With Token empty every token is invalid.
	Token string
	// PageSize is the tree listing page size (Link pagination); default 1000.
	PageSize int
	// CDNHost is the host name put in CDN redirect URLs; default "localhost".
	// It deliberately differs from the hub's "127.0.0.1" so that a client
	// that forwards Authorization across hosts is caught (see Request.Auth):
	// the presigned URL must never receive the Hub token.
	CDNHost string
	// URLExpiry is the lifetime of presigned CDN URLs; default 1h. A
	// negative value makes every URL already expired.
	URLExpiry time.Duration
	// Now is the clock used for URL expiry; default time.Now. Tests move it
	// forward to expire URLs without sleeping.
	Now func() time.Time
	// Lenient imitates a sloppy mirror: unquoted ETags, a relative 307 in
	// front of every API call, chunked responses without Content-Length,
	// no X-Linked-* headers and Range ignored (200 with the full body).
	Lenient bool
	// Addr and CDNAddr are the listen addresses; default "127.0.0.1:0".
	Addr, CDNAddr string
	// Logf, if set, receives one line per request and server errors.
	Logf func(format string, args ...any)
}

// Hub is a running fake Hub plus its CDN. Methods are safe for concurrent use.
type Hub struct {
	URL    string // hub endpoint, "http://127.0.0.1:PORT" (the HF_ENDPOINT)
	CDNURL string // "http://<CDNHost>:PORT"

	opts    Options
	secret  []byte // HMAC key signing CDN URLs
	deadURL string // CDN base URL on a port nobody listens on (DeadCDN)
	hubSrv  *http.Server
	cdnSrv  *http.Server
	done    chan struct{} // closed by Close; ends stalls
	closing sync.Once

	mu      sync.RWMutex
	repos   map[string]*repoState
	renamed map[string]string     // old id -> new id
	blobs   map[string]*entry     // sha256 -> LFS content, for the CDN
	colls   map[string]Collection // slug -> collection (listing.go)

	fmu     sync.Mutex
	faults  []*faultState
	held    map[chan<- struct{}]bool // Fault.Held channels already closed
	release chan struct{}            // closed by ReleaseStalls

	smu    sync.Mutex // guards everything below
	closed bool
	active int           // handlers running
	idle   chan struct{} // closed when active drops to 0
	stats  Stats
	log    []*Request
	seq    int64
}

// New starts the hub and CDN listeners and serves until Close.
func New(opts Options) (*Hub, error) {
	if opts.PageSize <= 0 {
		opts.PageSize = 1000
	}
	if opts.CDNHost == "" {
		opts.CDNHost = "localhost"
	}
	if opts.URLExpiry == 0 {
		opts.URLExpiry = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.CDNAddr == "" {
		opts.CDNAddr = "127.0.0.1:0"
	}
	h := &Hub{
		opts:    opts,
		secret:  make([]byte, 32),
		done:    make(chan struct{}),
		repos:   map[string]*repoState{},
		renamed: map[string]string{},
		blobs:   map[string]*entry{},
		idle:    make(chan struct{}),
		stats:   Stats{Files: map[string]FileStat{}},
	}
	if _, err := rand.Read(h.secret); err != nil {
		return nil, err
	}
	hubLn, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("hubtest: hub listener: %w", err)
	}
	cdnLn, err := net.Listen("tcp", opts.CDNAddr)
	if err != nil {
		hubLn.Close()
		return nil, fmt.Errorf("hubtest: CDN listener: %w", err)
	}
	// A port that was just released: connecting to it is refused, which is
	// what a client sees when the CDN host is down (Fault.DeadCDN).
	deadLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		hubLn.Close()
		cdnLn.Close()
		return nil, fmt.Errorf("hubtest: dead CDN port: %w", err)
	}
	deadPort := portOf(deadLn.Addr())
	deadLn.Close()

	h.URL = "http://" + hostPort(hubLn.Addr())
	h.CDNURL = "http://" + net.JoinHostPort(opts.CDNHost, portOf(cdnLn.Addr()))
	h.deadURL = "http://" + net.JoinHostPort(opts.CDNHost, deadPort)

	errLog := log.New(io.Discard, "", 0)
	if opts.Logf != nil {
		errLog = log.New(logfWriter(opts.Logf), "hubtest: ", 0)
	}
	h.hubSrv = &http.Server{Handler: h.handler("hub", h.serveHub), ErrorLog: errLog, ReadHeaderTimeout: time.Minute}
	h.cdnSrv = &http.Server{Handler: h.handler("cdn", h.serveCDN), ErrorLog: errLog, ReadHeaderTimeout: time.Minute}
	go h.hubSrv.Serve(hubLn)
	go h.cdnSrv.Serve(cdnLn)
	return h, nil
}

// Close stops both servers, ends stalled responses and waits for every
// handler to return (so temp dirs holding DiskPath files can be removed).
func (h *Hub) Close() {
	h.closing.Do(func() {
		h.smu.Lock()
		h.closed = true
		h.smu.Unlock()
		close(h.done)
		h.hubSrv.Close()
		h.cdnSrv.Close()
		_ = h.WaitIdle(context.Background())
	})
}

// WaitIdle waits until no request handler is running. Counters are updated
// before bytes reach the client, so WaitIdle is only needed when the client
// gave up on a response (the server then notices the write error later).
func (h *Hub) WaitIdle(ctx context.Context) error {
	h.smu.Lock()
	if h.active == 0 {
		h.smu.Unlock()
		return nil
	}
	ch := h.idle
	h.smu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ResolveURL returns the hub URL of /{repo}/resolve/{rev}/{path}, with the
// revision escaped as huggingface_hub does (refs/pr/1 -> refs%2Fpr%2F1).
func (h *Hub) ResolveURL(repoID, rev, path string) string {
	return h.URL + "/" + repoID + "/resolve/" + url.PathEscape(rev) + "/" + escapePath(path)
}

// AddRepo stores a repo snapshot and returns a copy with Commit, Branches and
// the per-file Size, SHA256 and OID filled in. Adding a repo whose ID exists
// moves its refs to the new snapshot; earlier snapshots stay reachable by
// commit hash, like a branch that moved on the real Hub. It panics on an
// invalid repo (bad id or path, unreadable DiskPath), like httptest.NewServer
// does on setup errors.
func (h *Hub) AddRepo(r Repo) *Repo {
	stored, snap, err := buildRepo(r)
	if err != nil {
		panic("hubtest: AddRepo " + r.ID + ": " + err.Error())
	}
	h.mu.Lock()
	rs := h.repos[stored.ID]
	if rs == nil {
		rs = &repoState{snaps: map[string]*snapshot{}}
		h.repos[stored.ID] = rs
	}
	rs.meta = stored
	rs.snaps[snap.commit] = snap
	rs.head = snap
	if stored.RenamedFrom != "" {
		h.renamed[stored.RenamedFrom] = stored.ID
	}
	for _, e := range snap.files {
		if e.lfs {
			h.blobs[e.sha256] = e
		}
	}
	h.mu.Unlock()
	return cloneRepo(stored)
}

// Repo returns a copy of the stored repo (its latest snapshot), or nil.
func (h *Hub) Repo(id string) *Repo {
	h.mu.RLock()
	defer h.mu.RUnlock()
	rs := h.repos[id]
	if rs == nil {
		return nil
	}
	return cloneRepo(rs.meta)
}

// RemoveRepo deletes a repo; later requests get 404 RepoNotFound (CDN URLs
// already handed out keep working, as presigned URLs do).
func (h *Hub) RemoveRepo(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.repos, id)
	for old, cur := range h.renamed {
		if cur == id {
			delete(h.renamed, old)
		}
	}
}

func cloneRepo(r *Repo) *Repo {
	c := *r
	c.Files = append([]File(nil), r.Files...)
	c.Branches = cloneMap(r.Branches)
	c.Tags = cloneMap(r.Tags)
	c.RepoTags = append([]string(nil), r.RepoTags...)
	if r.PullRequests != nil {
		c.PullRequests = make(map[int]string, len(r.PullRequests))
		for k, v := range r.PullRequests {
			c.PullRequests[k] = v
		}
	}
	return &c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// handler wraps a server's routing function with request accounting.
func (h *Hub) handler(server string, serve func(*rec, *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, ok := h.begin(server, r)
		if !ok {
			http.Error(w, "hub closed", http.StatusServiceUnavailable)
			return
		}
		rw := &rec{ResponseWriter: w, h: h, req: req, head: r.Method == http.MethodHead}
		start := time.Now()
		defer func() {
			h.finish(req)
			if h.opts.Logf != nil {
				h.smu.Lock()
				line := fmt.Sprintf("%s %s %s%s -> %d, %d bytes, %v", req.Server, req.Method, req.Host, req.URI,
					req.Status, req.Bytes, time.Since(start).Round(time.Microsecond))
				if req.Auth {
					line += ", auth"
				}
				if req.Range != "" {
					line += ", range " + req.Range
				}
				if req.Fault != "" {
					line += ", fault " + req.Fault
				}
				h.smu.Unlock()
				h.opts.Logf("%s", line)
			}
		}()
		serve(rw, r)
	})
}

// rec records status and body bytes of one response into its Request entry.
// Bytes are counted before they are handed to the connection, so by the time
// a client has read them the counters already include them.
type rec struct {
	http.ResponseWriter
	h       *Hub
	req     *Request
	head    bool   // HEAD request: the server discards bodies
	fileKey string // "<repo>/<path>" while file content is being written
	wrote   bool
}

func (w *rec) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *rec) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		w.h.smu.Lock()
		w.req.Status = code
		w.h.smu.Unlock()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *rec) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.head {
		return len(p), nil
	}
	w.count(int64(len(p)))
	n, err := w.ResponseWriter.Write(p)
	w.count(int64(n - len(p)))
	return n, err
}

// count adds n (possibly negative, to undo an optimistic count) body bytes.
func (w *rec) count(n int64) {
	if n == 0 {
		return
	}
	w.h.smu.Lock()
	w.req.Bytes += n
	if w.fileKey != "" {
		fs := w.h.stats.Files[w.fileKey]
		fs.Bytes += n
		w.h.stats.Files[w.fileKey] = fs
		w.h.stats.Bytes += n
	}
	w.h.smu.Unlock()
}

// begin sends status and headers. A negative length or chunked omits
// Content-Length; chunked also flushes the headers at once, which forces
// Go's server into chunked transfer encoding even for short bodies.
func (w *rec) begin(status int, length int64, chunked bool) {
	if chunked || length < 0 {
		w.Header().Del("Content-Length")
	} else {
		w.Header().Set("Content-Length", fmt.Sprint(length))
	}
	w.WriteHeader(status)
	if chunked && !w.head {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

func hostPort(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if ok && ta.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port))
	}
	return a.String()
}

func portOf(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return port
}

// escapePath percent-encodes each segment of a repo path, keeping "/".
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

type logfWriter func(format string, args ...any)

func (f logfWriter) Write(p []byte) (int, error) {
	f("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var errClosed = errors.New("hubtest: hub closed")
