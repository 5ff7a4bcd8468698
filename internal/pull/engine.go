// Package pull is hal0's download engine: it resolves a Hugging Face ref to
// a pinned commit, selects files, checks disk space, downloads them with
// parallel byte ranges that survive a killed process, verifies every byte
// against the hub's hashes while writing, and installs the result into the
// model root and the registry in one step.
//
// The engine is a library: hal0-pull runs it under systemd, hal0-apid's
// embedded mode runs hal0-pull as a child process, and `hal0 model pull
// --local` runs it in the foreground.
package pull

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/diskimage"
	"github.com/hal0ai/hal0/internal/fsutil"
	"github.com/hal0ai/hal0/internal/hf"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/unitname"
)

// Engine pulls models. Create it with New; the zero value is not usable.
type Engine struct {
	Paths       config.Paths
	Endpoints   []string
	Token       config.Secret
	Offline     bool
	Connections int   // parallel ranges in flight across the whole pull
	Files       int   // files downloading at once
	ChunkSize   int64 // bytes per range
	DiskReserve int64
	MaxRetries  int
	// StallTimeout restarts a request that received nothing for this long.
	StallTimeout time.Duration
	BackoffBase  time.Duration
	BackoffMax   time.Duration
	DefaultQuant []string
	// Checkpoint is how often partial data is made durable (fdatasync) for
	// a resume after a power cut; a killed process loses nothing even
	// between checkpoints.
	Checkpoint time.Duration
	// NoPreallocate skips fallocate(2), as on filesystems without it (older
	// ZFS): space is then claimed as data arrives, and a disk that fills
	// during the pull fails it with no_space, keeping the partials.
	NoPreallocate bool
	Registry      *registry.Store
	// Images builds format=qcow2 installs; nil uses a default Builder.
	Images *diskimage.Builder
	HTTP   *http.Client
	Logf   func(format string, a ...any)
	Now    func() time.Time

	sem  chan struct{}
	bufs sync.Pool
}

// New builds an engine from configuration.
func New(cfg *config.Config) *Engine {
	p := cfg.Pull
	return &Engine{
		Paths:        cfg.Paths,
		Endpoints:    cfg.Endpoints(),
		Token:        cfg.HF.Token,
		Offline:      cfg.HF.Offline,
		Connections:  p.Connections,
		Files:        p.Concurrency,
		ChunkSize:    int64(p.ChunkSize),
		DiskReserve:  int64(p.DiskReserve),
		MaxRetries:   p.MaxRetries,
		StallTimeout: p.StallTimeout.D(),
		BackoffBase:  500 * time.Millisecond,
		BackoffMax:   30 * time.Second,
		DefaultQuant: p.DefaultQuant,
		Checkpoint:   5 * time.Second,
		Registry:     registry.Open(cfg.Paths.RegistryFile()),
		HTTP:         hf.NewHTTPClient(hf.NewTransport(p.Connections)),
	}
}

func (e *Engine) logf(format string, a ...any) {
	if e.Logf != nil {
		e.Logf(format, a...)
	}
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) client(endpoint string) *hf.Client {
	return &hf.Client{Endpoint: endpoint, Token: e.Token, HTTP: e.HTTP}
}

// Request is one pull.
type Request struct {
	Ref      ref.Ref
	Endpoint string // overrides the configured endpoints for this pull
	Include  []string
	Exclude  []string
	// DiscardPartial removes partial data when the pull fails or is
	// cancelled, instead of keeping it for a resume.
	DiscardPartial bool
	// OnPinned, when set, is called once the commit is pinned and every
	// partial file is open, before the first byte downloads. It runs on
	// the pull's goroutine: the download waits for it. A pull that finds
	// the model installed already does not call it.
	OnPinned func(*Pinned)
}

// Phase names what a pull is doing.
const (
	PhaseResolving   = "resolving"
	PhaseDownloading = "downloading"
	PhaseVerifying   = "verifying"
	PhaseImaging     = "imaging" // building the qcow2 image of a format=qcow2 pull
	PhaseInstalling  = "installing"
	PhaseDone        = "done"
)

// Progress is a snapshot of a running pull. Done never decreases.
type Progress struct {
	Phase       string
	Commit      string
	Total       int64 // bytes of all selected files
	Done        int64 // bytes written and accounted, monotonic
	Resumed     int64 // bytes that were already on disk when the run began
	Received    int64 // bytes read from the network in this run
	Hashed      int64
	FilesTotal  int
	FilesDone   int
	CurrentFile string
	Retries     int64
}

// run is the state of one Pull call.
type run struct {
	endpoint string
	repo     string
	phase    atomic.Value
	commit   atomic.Value
	total    int64 // total and resumed: under mu
	resumed  int64
	received atomic.Int64
	hashed   atomic.Int64
	retries  atomic.Int64
	doneMax  atomic.Int64
	mu       sync.Mutex
	files    []*fileDL
	finished map[string]bool
	sha      map[string]string
	current  string
}

func (r *run) setSHA(p, s string) {
	r.mu.Lock()
	r.sha[p] = s
	r.finished[p] = true
	r.mu.Unlock()
}

// Pull runs a pull to completion. Callers that want progress use Start and
// poll the Handle instead.
func (e *Engine) Pull(ctx context.Context, req Request) (*registry.Model, error) {
	h := e.Start(req)
	return h.Wait(ctx)
}

// Handle is a pull in progress.
type Handle struct {
	e   *Engine
	req Request
	r   *run
}

// Start prepares a pull; nothing happens until Wait.
func (e *Engine) Start(req Request) *Handle {
	r := &run{finished: map[string]bool{}, sha: map[string]string{}}
	r.phase.Store(PhaseResolving)
	r.commit.Store("")
	return &Handle{e: e, req: req, r: r}
}

// Progress returns the current snapshot. It is safe to call from any
// goroutine, as often as wanted.
func (h *Handle) Progress() Progress {
	r := h.r
	r.mu.Lock()
	files := append([]*fileDL(nil), r.files...)
	fin := len(r.finished)
	cur := r.current
	total, resumed := r.total, r.resumed
	r.mu.Unlock()
	var done int64
	for _, f := range files {
		done += f.p.done()
	}
	// Monotonic: a file discarded after a checksum mismatch does not make
	// the bar go back; it waits until real progress passes the old mark.
	for {
		old := r.doneMax.Load()
		if done <= old {
			done = old
			break
		}
		if r.doneMax.CompareAndSwap(old, done) {
			break
		}
	}
	if cur == "" {
		for _, f := range files {
			if !f.p.complete() && f.p.done() > 0 {
				cur = f.entry.Path
				break
			}
		}
	}
	return Progress{
		Phase: r.phase.Load().(string), Commit: r.commit.Load().(string),
		Total: total, Done: min(done, max(total, done)), Resumed: resumed,
		Received: r.received.Load(), Hashed: r.hashed.Load(), Retries: r.retries.Load(),
		FilesTotal: len(files), FilesDone: fin, CurrentFile: cur,
	}
}

// Wait runs the pull.
func (h *Handle) Wait(ctx context.Context) (*registry.Model, error) {
	e, req, r := h.e, h.req, h.r
	if req.Ref.Kind != ref.KindHF {
		return nil, api.Errorf(api.CodeUnsupported, 0, "%s is not a Hugging Face ref; this engine pulls Hugging Face models", req.Ref)
	}
	qcow2 := req.Ref.Format == ref.FormatQCOW2
	if qcow2 {
		// Before any download: a pull that cannot build its image must not
		// fetch gigabytes first.
		if _, err := e.images().Check(); err != nil {
			return nil, err
		}
	}
	id := req.Ref.String()
	if e.Offline {
		if m, err := e.installed(id); err == nil && m != nil {
			return m, nil
		}
		return nil, api.Errorf(api.CodeOffline, 0, "HF_HUB_OFFLINE is set and %s is not installed; unset it to download", id)
	}
	e.sem = make(chan struct{}, max(e.Connections, 1))
	e.bufs.New = func() any { b := make([]byte, 1<<20); return &b }

	endpoints := e.Endpoints
	if req.Endpoint != "" {
		endpoints = []string{strings.TrimRight(req.Endpoint, "/")}
	}
	info, tree, err := e.resolve(ctx, endpoints, req.Ref, r)
	if err != nil {
		return nil, err
	}
	r.repo = req.Ref.Repo
	r.commit.Store(info.SHA)

	sel, err := Select(tree, Criteria{
		Quant: req.Ref.Quant, File: req.Ref.File, Include: req.Include, Exclude: req.Exclude,
		DefaultQuant: e.DefaultQuant,
	})
	if err != nil {
		return nil, err
	}
	if m, _ := e.installed(id); m != nil && m.Commit == info.SHA && filesPresent(m) {
		e.logf("%s is already installed at commit %s", id, info.SHA[:12])
		r.phase.Store(PhaseDone)
		return m, nil
	}

	stage := filepath.Join(e.Paths.StagingDir(), unitname.Escape(id))
	if err := e.cleanStage(stage, info.SHA); err != nil {
		return nil, err
	}
	root := filepath.Join(stage, info.SHA)
	lock, err := fsutil.TryLockFile(filepath.Join(stage, ".lock"))
	if err != nil {
		if errors.Is(err, fsutil.ErrLocked) {
			return nil, api.Errorf(api.CodeBusy, 0, "another process is already pulling %s", id)
		}
		return nil, err
	}
	defer lock.Unlock()

	// Open every partial (this reads what earlier runs left) and size the
	// work. Space is reserved only after the preflight: a pull refused for
	// lack of space must not keep the disk full of preallocated files.
	var files []*fileDL
	var total, resumed int64
	defer func() {
		for _, f := range files {
			f.p.close()
		}
	}()
	for _, ent := range sel.Files {
		contentID := ent.SHA256()
		if contentID == "" {
			contentID = ent.OID
		}
		p, err := openPartial(filepath.Join(root, "files", ent.Path), filepath.Join(root, "state", ent.Path+".state"), ent.Size, e.ChunkSize, contentID, false)
		if err != nil {
			var ns *noSpaceError
			if errors.As(err, &ns) {
				return nil, api.Errorf(api.CodeNoSpace, 0, "not enough disk space for %s under %s: %v; free space or lower pull.disk_reserve", ent.Path, e.Paths.ModelRoot, err)
			}
			return nil, api.Errorf(api.CodeIO, 0, "prepare %s: %v", ent.Path, err)
		}
		files = append(files, &fileDL{e: e, run: r, entry: ent, p: p, notify: make(chan struct{}, 1),
			resolve: e.client(r.endpoint).ResolveURL(req.Ref.Repo, info.SHA, ent.Path)})
		total += ent.Size
		resumed += p.resumed
	}
	// Progress reads these from other goroutines: published together,
	// under the lock.
	r.mu.Lock()
	r.files, r.total, r.resumed = files, total, resumed
	r.mu.Unlock()
	var extra int64
	if qcow2 {
		// The raw filesystem and the qcow2 made from it exist side by side
		// with the downloaded files until the install.
		img := make([]diskimage.File, 0, len(sel.Files))
		for _, f := range sel.Files {
			img = append(img, diskimage.File{Path: f.Path, Size: f.Size})
		}
		size, _, _ := diskimage.Estimate(img)
		extra = 2 * size
	}
	if err := e.preflight(files, root, extra); err != nil {
		return nil, err
	}
	if !e.NoPreallocate {
		if err := preallocateAll(files); err != nil {
			var ns *noSpaceError
			if errors.As(err, &ns) {
				return nil, api.Errorf(api.CodeNoSpace, 0, "not enough disk space under %s: %v; free space or lower pull.disk_reserve", e.Paths.ModelRoot, err)
			}
			return nil, api.Errorf(api.CodeIO, 0, "prepare %v", err)
		}
	}
	if req.OnPinned != nil {
		req.OnPinned(&Pinned{
			Repo: req.Ref.Repo, Revision: req.Ref.Rev(), Commit: info.SHA, Endpoint: r.endpoint,
			Gated: string(info.Gated), Stage: root, Files: pinnedFiles(sel.Files),
		})
	}
	if resumed > 0 {
		e.logf("resuming %s: %s of %s already on disk", id, config.FormatBytes(resumed), config.FormatBytes(total))
	}

	r.phase.Store(PhaseDownloading)
	err = e.downloadAll(ctx, files)
	if err != nil {
		if req.DiscardPartial {
			os.RemoveAll(stage)
		}
		if ctx.Err() != nil {
			return nil, api.Errorf(api.CodeCancelled, 0, "pull of %s cancelled; %s", id, keptNote(req.DiscardPartial))
		}
		return nil, err
	}

	var m *registry.Model
	if qcow2 {
		m, err = e.installImage(ctx, req.Ref, info, sel, files, root, r)
	} else {
		r.phase.Store(PhaseInstalling)
		m, err = e.install(ctx, req.Ref, info, sel, files, root, r)
	}
	if err != nil {
		return nil, err
	}
	os.RemoveAll(stage)
	r.phase.Store(PhaseDone)
	return m, nil
}

func keptNote(discard bool) string {
	if discard {
		return "partial data was discarded"
	}
	return "partial data is kept: pull again to resume"
}

func (e *Engine) installed(id string) (*registry.Model, error) {
	reg, err := e.Registry.Load()
	if err != nil {
		return nil, err
	}
	m, ok := reg.Get(id)
	if !ok {
		return nil, nil
	}
	return m, nil
}

func filesPresent(m *registry.Model) bool {
	if m.Format == string(ref.FormatQCOW2) {
		fi, err := os.Stat(m.Image)
		return m.Image != "" && err == nil && fi.Size() == m.ImageSize && m.ImageSize > 0
	}
	for _, f := range m.Files {
		fi, err := os.Stat(filepath.Join(m.Dir, f.Path))
		if err != nil || fi.Size() != f.Size {
			return false
		}
	}
	return len(m.Files) > 0
}

// resolve pins the commit and lists the files, trying endpoints in order.
// When every endpoint fails, the most useful error wins: a definite answer
// (gated, not found, bad token) from any endpoint beats a network failure.
func (e *Engine) resolve(ctx context.Context, endpoints []string, rf ref.Ref, r *run) (*hf.RepoInfo, []hf.Entry, error) {
	var best error
	for _, ep := range endpoints {
		c := e.client(ep)
		info, err := retry(ctx, e, "resolve "+rf.Repo, func() (*hf.RepoInfo, error) { return c.Revision(ctx, rf.Repo, rf.Rev()) })
		if err == nil && info.Gated != "" && !e.Token.IsSet() {
			err = api.Errorf(api.CodeGated, 0, "%s is gated: accept its license at %s/%s, then set HF_TOKEN (or hf.token_file) to a token of that account", rf.Repo, ep, rf.Repo)
		}
		var tree []hf.Entry
		if err == nil {
			tree, err = retry(ctx, e, "list "+rf.Repo, func() ([]hf.Entry, error) { return c.Tree(ctx, rf.Repo, info.SHA) })
		}
		if err == nil {
			r.endpoint = ep
			return info, tree, nil
		}
		if ctx.Err() != nil {
			return nil, nil, api.Errorf(api.CodeCancelled, 0, "pull of %s cancelled while resolving", rf)
		}
		e.logf("%s: %v", ep, err)
		if best == nil || (!isDefinite(best) && isDefinite(err)) {
			best = err
		}
	}
	if !isDefinite(best) {
		var ae *api.Error
		if !errors.As(best, &ae) {
			best = api.Errorf(api.CodeNetwork, 0, "cannot reach %s: %v", strings.Join(endpoints, ", "), best)
		}
	}
	return nil, nil, best
}

func isDefinite(err error) bool {
	var ae *api.Error
	return errors.As(err, &ae) && !hf.IsTransient(err) && ae.Code != api.CodeNetwork
}

// retry runs fn until it succeeds, fails definitely, or has been retried
// MaxRetries times (like a range: pull.max_retries counts retries, not
// attempts).
func retry[T any](ctx context.Context, e *Engine, what string, fn func() (T, error)) (T, error) {
	var zero T
	for n := 1; ; n++ {
		v, err := fn()
		if err == nil || !hf.IsTransient(err) || ctx.Err() != nil || n > e.MaxRetries {
			if err != nil && ctx.Err() == nil && hf.IsTransient(err) {
				var te *hf.TransientError
				if errors.As(err, &te) {
					if ae := (*api.Error)(nil); errors.As(te.Err, &ae) {
						return zero, ae
					}
				}
			}
			return v, err
		}
		wait := e.backoff(n, err)
		e.logf("%s: %v; retrying in %v", what, err, wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
}

// cleanStage removes partials of other commits of the same model: they can
// never be resumed into this one.
func (e *Engine) cleanStage(stage, commit string) error {
	ents, err := os.ReadDir(stage)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(stage, 0o755)
	}
	if err != nil {
		return err
	}
	for _, ent := range ents {
		if ent.IsDir() && ent.Name() != commit {
			os.RemoveAll(filepath.Join(stage, ent.Name()))
		}
	}
	return nil
}

// preallocateAll reserves every file's space. When one does not fit (the
// preflight's estimate missed filesystem overhead, or someone else took
// the space meanwhile), the files this run reserved without writing to
// are released again.
func preallocateAll(files []*fileDL) error {
	for i, f := range files {
		if err := f.p.preallocate(); err != nil {
			for _, g := range files[:i] {
				if g.p.done() == 0 {
					g.p.data.Truncate(0)
				}
			}
			return err
		}
	}
	return nil
}

// preflight refuses a pull that cannot fit. Space already preallocated for
// the partials is not counted twice.
func (e *Engine) preflight(files []*fileDL, dir string, extra int64) error {
	need := extra
	for _, f := range files {
		need += f.p.size - f.p.done()
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return api.Errorf(api.CodeIO, 0, "statfs %s: %v", dir, err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	// Preallocation already took the space of partial files on
	// filesystems that support it; add it back so it is not counted twice.
	for _, f := range files {
		if fi, err := f.p.data.Stat(); err == nil {
			if sys, ok := fi.Sys().(*unix.Stat_t); ok {
				free += min(sys.Blocks*512, f.p.size) - min(f.p.done(), sys.Blocks*512)
			}
		}
	}
	if need+e.DiskReserve > free {
		what := ""
		if extra > 0 {
			what = fmt.Sprintf(" (%s of it to build the disk image)", config.FormatBytes(extra))
		}
		return api.Errorf(api.CodeNoSpace, 0, "not enough disk space: the pull needs %s more%s plus the %s reserve, but %s has %s free; free space, or lower pull.disk_reserve",
			config.FormatBytes(need), what, config.FormatBytes(e.DiskReserve), e.Paths.ModelRoot, config.FormatBytes(max(free, 0)))
	}
	return nil
}

// downloadAll downloads files, a few at a time, while a checkpointer makes
// progress durable.
func (e *Engine) downloadAll(ctx context.Context, files []*fileDL) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	order := append([]*fileDL(nil), files...)
	// Small files first: they finish fast and show progress at once.
	sort.SliceStable(order, func(i, j int) bool { return order[i].p.size < order[j].p.size })

	stopCk := make(chan struct{})
	ckDone := make(chan struct{})
	go func() {
		defer close(ckDone)
		t := time.NewTicker(max(e.Checkpoint, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				for _, f := range files {
					if err := f.p.checkpoint(); err != nil {
						e.logf("checkpoint %s: %v", f.entry.Path, err)
					}
				}
			case <-stopCk:
				return
			}
		}
	}()
	defer func() { close(stopCk); <-ckDone }()

	slots := make(chan struct{}, max(e.Files, 1))
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, f := range order {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(f *fileDL) {
			defer wg.Done()
			defer func() { <-slots }()
			if f.p.size == 0 {
				if err := f.hash(ctx); err != nil {
					once.Do(func() { first = err; cancel(err) })
				}
				return
			}
			if err := f.download(ctx); err != nil {
				once.Do(func() { first = err; cancel(err) })
			}
		}(f)
	}
	wg.Wait()
	for _, f := range files {
		f.p.checkpoint()
	}
	if first != nil {
		return first
	}
	return ctx.Err()
}

// install moves verified files into place and records them in the registry.
func (e *Engine) install(ctx context.Context, rf ref.Ref, info *hf.RepoInfo, sel *Selection, files []*fileDL, root string, r *run) (*registry.Model, error) {
	if err := syncFiles(files); err != nil {
		return nil, err
	}
	return e.place(ctx, rf, info.SHA, filepath.Join(root, "files"), "install", func(final string) *registry.Model {
		return e.modelEntry(rf, info, sel, final, r)
	})
}

// syncFiles flushes the downloaded files to disk before they are installed.
func syncFiles(files []*fileDL) error {
	for _, f := range files {
		if err := f.p.data.Sync(); err != nil {
			return api.Errorf(api.CodeIO, 0, "sync %s: %v", f.p.dataPath, err)
		}
	}
	return nil
}

// place installs staged (a tree or an image) as rf's install directory and
// records the entry that entry builds for it in the registry. An older
// install of the same id (a new commit) is moved aside first, so the new
// one appears with one rename; it is removed once the registry has the
// new entry. Without a registry entry nothing may stay under the final
// name either: if the registry cannot be written, both renames are undone.
func (e *Engine) place(ctx context.Context, rf ref.Ref, commit, staged, what string, entry func(final string) *registry.Model) (*registry.Model, error) {
	final := e.installDir(rf)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return nil, api.Errorf(api.CodeIO, 0, "create %s: %v", filepath.Dir(final), err)
	}
	old := ""
	if _, err := os.Lstat(final); err == nil {
		old = final + ".old-" + commit[:12]
		os.RemoveAll(old)
		if err := os.Rename(final, old); err != nil {
			return nil, api.Errorf(api.CodeIO, 0, "move old %s aside: %v", what, err)
		}
	}
	if err := os.Rename(staged, final); err != nil {
		if old != "" {
			os.Rename(old, final)
		}
		return nil, api.Errorf(api.CodeIO, 0, "install %s: %v", final, err)
	}
	fsutil.SyncDir(filepath.Dir(final))

	m := entry(final)
	if err := e.Registry.Update(ctx, func(reg *registry.Registry) error {
		reg.Put(m)
		return nil
	}); err != nil {
		os.Rename(final, staged)
		if old != "" {
			os.Rename(old, final)
		}
		return nil, api.Errorf(api.CodeIO, 0, "record %s in the registry: %v", m.ID, err)
	}
	if old != "" {
		os.RemoveAll(old)
	}
	return m, nil
}

// installDir is where a ref's files live: <model root>/local/<owner>/<name>/<variant>.
// The variant separates revisions and quants of one repository, so that
// removing one never touches another's files.
func (e *Engine) installDir(rf ref.Ref) string {
	variant := strings.ReplaceAll(rf.Rev(), "/", "_")
	switch {
	case rf.Quant != "":
		variant += "-" + rf.Quant
	case rf.File != "":
		variant += "-" + strings.ReplaceAll(strings.TrimSuffix(path.Base(rf.File), path.Ext(rf.File)), ".", "_")
	}
	if rf.Format == ref.FormatQCOW2 {
		variant += ".qcow2"
	}
	return filepath.Join(e.Paths.PullDir(), rf.Owner(), rf.Name(), variant)
}

func (e *Engine) modelEntry(rf ref.Ref, info *hf.RepoInfo, sel *Selection, dir string, r *run) *registry.Model {
	m := &registry.Model{
		ID: rf.String(), Name: rf.Name(), Path: dir, Dir: dir, Source: "hf",
		HFRepo: rf.Repo, Endpoint: r.endpoint, Revision: rf.Rev(), Commit: info.SHA, Format: string(ref.FormatDir),
		License:     info.License(),
		Gated:       string(info.Gated),
		InstalledAt: e.now().UTC().Format(time.RFC3339),
	}
	if sel.Quant != "" {
		m.Name += ":" + sel.Quant
	}
	if sel.Main != "" {
		m.Path = filepath.Join(dir, sel.Main)
		m.HFFilename = sel.Main
		m.Backends = []string{"vulkan", "rocm", "cpu"}
	}
	if sel.MMProj != "" {
		m.MMProj = filepath.Join(dir, sel.MMProj)
		m.Capabilities = append(m.Capabilities, "vision")
	}
	switch info.PipelineTag {
	case "feature-extraction", "sentence-similarity":
		m.Capabilities = append([]string{"embed"}, m.Capabilities...)
	case "automatic-speech-recognition":
		m.Capabilities = append([]string{"asr"}, m.Capabilities...)
	case "text-to-speech":
		m.Capabilities = append([]string{"tts"}, m.Capabilities...)
	default:
		m.Capabilities = append([]string{"chat"}, m.Capabilities...)
	}
	if sel.Quant != "" {
		m.Tags = append(m.Tags, "gguf", strings.ToLower(sel.Quant))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range sel.Files {
		rf := registry.File{Path: f.Path, Size: f.Size, SHA256: r.sha[f.Path]}
		if f.LFS == nil {
			rf.GitOID = f.OID
		}
		m.Files = append(m.Files, rf)
		m.SizeBytes += f.Size
	}
	m.Metadata = map[string]any{"source": "hf", "upstream_url": r.endpoint + "/" + rf.Repo}
	if sel.Main != "" {
		m.Metadata["sha256"] = r.sha[sel.Main]
	}
	return m
}

// ErrorCode returns the stable code of a pull error, for job records and
// exit statuses.
func ErrorCode(err error) string {
	if errors.Is(err, context.Canceled) {
		return api.CodeCancelled
	}
	return api.CodeOf(err)
}
