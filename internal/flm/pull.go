package flm

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/pull"
	"github.com/hal0ai/hal0/internal/registry"
)

// Puller pulls FLM tags: it runs `flm pull <tag>` (in the toolbox or on
// the host), reports progress from the growing model directory in flm's
// cache against the catalog's size, names the file being downloaded from
// flm's output, and installs the registry entry when flm is done and the
// files are where hal0 expects them.
//
// flm takes any file it finds for a complete one (it checks presence, not
// content, before it skips a download), so a pull that is cancelled or
// fails removes the model's directory unless the model was complete
// before it began.
type Puller struct {
	Toolbox  *Toolbox
	Prober   *Prober
	Registry *registry.Store
	// Env is flm's environment (default: this process's).
	Env  []string
	Logf func(format string, a ...any)
	Now  func() time.Time
	// Poll is how often the model directory is measured.
	Poll time.Duration
	// StopGrace is how long a cancelled flm gets to exit after SIGTERM
	// (podman stop -t) before it is killed. hal0-pull@.service allows 15 s
	// for the whole stop.
	StopGrace time.Duration
}

// NewPuller returns the puller cfg describes.
func NewPuller(cfg *config.Config) *Puller {
	pr := NewProber(cfg)
	return &Puller{
		Toolbox: pr.Toolbox, Prober: pr, Registry: registry.Open(cfg.Paths.RegistryFile()),
		Poll: 250 * time.Millisecond, StopGrace: 8 * time.Second,
	}
}

func (p *Puller) logf(format string, a ...any) {
	if p.Logf != nil {
		p.Logf(format, a...)
	}
}

func (p *Puller) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Handle is one pull in progress.
type Handle struct {
	p   *Puller
	tag string

	mu         sync.Mutex
	phase      string
	total      int64
	done       int64
	baseline   int64
	filesTotal int
	out        Output
}

// Start prepares the pull of tag; nothing runs until Wait.
func (p *Puller) Start(tag string) *Handle {
	return &Handle{p: p, tag: tag, phase: pull.PhaseResolving}
}

// Progress is safe to call from any goroutine.
func (h *Handle) Progress() pull.Progress {
	h.mu.Lock()
	defer h.mu.Unlock()
	pr := pull.Progress{
		Phase: h.phase, Total: h.total, Done: h.done, Resumed: h.baseline,
		Received: max(h.done-h.baseline, 0), FilesTotal: h.filesTotal, CurrentFile: h.out.CurrentFile,
	}
	if h.out.FilesTotal > 0 {
		pr.FilesTotal, pr.FilesDone = h.out.FilesTotal, h.out.FilesDone
	}
	if h.phase != pull.PhaseDownloading {
		pr.CurrentFile = ""
	}
	if h.phase == pull.PhaseDone {
		pr.FilesDone = pr.FilesTotal
	}
	return pr
}

func (h *Handle) setPhase(s string) {
	h.mu.Lock()
	h.phase = s
	h.mu.Unlock()
}

// observe records the model directory's size: progress never goes back,
// and a catalog size that was too small grows to what is on disk.
func (h *Handle) observe(n int64) {
	h.mu.Lock()
	h.done = max(h.done, n)
	h.total = max(h.total, n)
	h.mu.Unlock()
}

// Wait runs the pull.
func (h *Handle) Wait(ctx context.Context) (*registry.Model, error) {
	p, tag := h.p, h.tag
	t := p.Toolbox

	if ctx.Err() != nil {
		return nil, api.Errorf(api.CodeCancelled, 0, "pull of %s cancelled", tag)
	}
	p.Prober.Forget() // this pull must see flm's cache as it is now
	cat, _, err := p.Prober.Catalog(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, api.Errorf(api.CodeCancelled, 0, "pull of %s cancelled", tag)
		}
		return nil, api.Errorf(api.CodeFLMUnavailable, 0, "could not read FLM's catalog from %s: %v; check [flm] in hal0.toml (runtime, toolbox_image or flm_path)", t.where(), err)
	}
	e, ok := cat.Get(tag)
	if !ok {
		return nil, UnknownTagError(tag, cat)
	}
	repo := e.RepoDir()
	if repo == "" {
		return nil, api.Errorf(api.CodeFLMFailed, 0, "FLM's catalog entry for %s has no Hugging Face url (%q), so hal0 cannot tell which directory of %s flm will fill", tag, e.URL, t.CacheDir)
	}
	if unseen, blind := cat.MountCheck(t.CacheDir); blind {
		return nil, &api.Error{Code: api.CodeFLMCacheMount, Message: mountMessage(t, fmt.Sprintf(
			"flm reports no model installed, yet %s holds complete models (%s)", t.CacheDir, strings.Join(unseen, ", ")))}
	}
	if err := os.MkdirAll(t.CacheDir, 0o755); err != nil {
		return nil, api.Errorf(api.CodeIO, 0, "create flm's model directory %s: %v", t.CacheDir, err)
	}
	dir := filepath.Join(t.CacheDir, repo)
	// Only a model hal0 installed, with its files as recorded, is kept.
	// Anything else in its directory may be what an interrupted pull
	// left (a killed worker cannot clean up), and flm, which checks
	// presence only, would take a partial file for a complete one.
	keep := e.Installed && e.Complete(dir) && p.recorded(tag, dir)
	if !keep {
		if err := os.RemoveAll(dir); err != nil {
			return nil, api.Errorf(api.CodeIO, 0, "remove the incomplete model directory %s: %v", dir, err)
		}
	}
	if rc, ok := t.Remove(PullContainer(tag)); ok {
		// A toolbox container left by a killed worker holds the name.
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		runCapture(rctx, rc, p.Env)
		cancel()
	}
	base := dirSize(dir)
	h.mu.Lock()
	h.baseline, h.done, h.total = base, base, max(e.Size, base)
	h.filesTotal = len(e.Files)
	h.phase = pull.PhaseDownloading
	h.mu.Unlock()

	// Whatever a cancelled or failed flm left is removed: flm would take
	// a partial file for a complete one next time.
	discard := func() string {
		if keep {
			return ""
		}
		if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
			return ""
		}
		if err := os.RemoveAll(dir); err != nil {
			p.logf("remove the partial model directory %s: %v", dir, err)
			return fmt.Sprintf("; removing its partial model directory %s failed: %v", dir, err)
		}
		return fmt.Sprintf("; its partial model directory %s was removed", dir)
	}

	code, err := h.run(ctx, t.Pull(tag), dir)
	if err != nil {
		if ctx.Err() != nil {
			return nil, api.Errorf(api.CodeCancelled, 0, "pull of %s cancelled%s", tag, discard())
		}
		return nil, api.Errorf(api.CodeFLMFailed, 0, "could not run %s: %v%s", t.where(), err, discard())
	}
	if code != 0 {
		h.mu.Lock()
		reason := h.out.Reason()
		h.mu.Unlock()
		what := fmt.Sprintf("flm pull %s exited with status %d", tag, code)
		if t.Containerised() && code == 125 {
			what = fmt.Sprintf("podman could not run the toolbox image %s (status 125)", t.Image)
		}
		if reason != "" {
			what += ": " + reason
		}
		return nil, api.Errorf(api.CodeFLMFailed, 0, "%s%s", what, discard())
	}

	h.setPhase(pull.PhaseVerifying)
	if !e.Complete(dir) {
		missing := e.missing(dir)
		msg := fmt.Sprintf("flm pull %s exited 0, but %s lacks the model's files (%s)", tag, dir, strings.Join(missing, ", "))
		discard()
		return nil, &api.Error{Code: api.CodeFLMCacheMount, Message: mountMessage(t, msg)}
	}
	files, size, err := hashFiles(ctx, dir, e.Files)
	if err != nil {
		if ctx.Err() != nil {
			return nil, api.Errorf(api.CodeCancelled, 0, "pull of %s cancelled while its files were hashed; flm's download in %s is complete and kept", tag, dir)
		}
		return nil, api.Errorf(api.CodeIO, 0, "read the files of %s in %s: %v", tag, dir, err)
	}
	// The catalog's size is approximate: the install is what it is.
	h.mu.Lock()
	h.total, h.done = size, size
	h.phase = pull.PhaseInstalling
	h.mu.Unlock()

	m := &registry.Model{
		ID: tag, Name: tag, Path: dir, Dir: dir, SizeBytes: size, Source: "flm", Format: "dir",
		Capabilities: e.Capabilities(), Backends: []string{"npu"}, Pullable: true, Files: files,
		Tags:        append([]string{"flm"}, e.Labels...),
		InstalledAt: p.now().UTC().Format(time.RFC3339),
		Metadata:    map[string]any{"runtime": "flm", "source": "flm", "flm_repo": repo, "upstream_url": e.URL},
	}
	if e.Footprint > 0 {
		m.Metadata["footprint_gb"] = e.Footprint
	}
	if e.Context > 0 {
		m.Defaults = map[string]any{"context_size": e.Context}
	}
	if err := p.Registry.Update(context.WithoutCancel(ctx), func(r *registry.Registry) error {
		if old, ok := r.Get(tag); ok && old.Extra != nil {
			m.Extra = old.Extra
		}
		r.Put(m)
		return nil
	}); err != nil {
		return nil, api.Errorf(api.CodeIO, 0, "write the registry entry of %s: %v", tag, err)
	}

	// flm's cache changed: every prober, here and in hal0-apid, asks
	// again.
	if err := p.Prober.Invalidate(); err != nil {
		p.logf("mark FLM's catalog stale: %v", err)
	}
	if cat2, _, err := p.Prober.Catalog(context.WithoutCancel(ctx)); err != nil {
		p.logf("re-read FLM's catalog after pulling %s: %v", tag, err)
	} else if e2, ok := cat2.Get(tag); ok && !e2.Installed {
		p.logf("flm list -j does not count %s as installed although its files are in %s: this flm may be older than the model (see `flm list`)", tag, dir)
	}
	h.setPhase(pull.PhaseDone)
	return m, nil
}

// run runs c until it exits or ctx ends, feeding its output to h.out and
// measuring dir meanwhile. It returns flm's exit status.
func (h *Handle) run(ctx context.Context, c Cmd, dir string) (int, error) {
	p := h.p
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer pr.Close()
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	env := p.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(append([]string{}, env...), c.Env...)
	// stdout and stderr merged, as a terminal would show them.
	cmd.Stdout, cmd.Stderr = pw, pw
	// Its own process group: a Ctrl-C meant for `hal0 model pull --local`
	// reaches flm through the cancel below, in order.
	// Pdeathsig: flm (or the podman client) dies with this worker, even
	// by kill -9, rather than writing on behind its back.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.logf("running %s", c)
	if err := cmd.Start(); err != nil {
		pw.Close()
		return 0, err
	}
	pw.Close()

	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sc.Split(ScanLines)
		for sc.Scan() {
			line := sc.Text()
			h.mu.Lock()
			ev := h.out.Feed(line)
			h.mu.Unlock()
			if ev.Kind != EvFilePercent && ev.Text != "" {
				p.logf("flm: %s", ev.Text)
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	poll := p.Poll
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	var werr error
loop:
	for {
		select {
		case werr = <-exited:
			break loop
		case <-tick.C:
			h.observe(dirSize(dir))
		case <-ctx.Done():
			h.stop(c, cmd, exited)
			return 0, ctx.Err()
		}
	}
	h.observe(dirSize(dir))
	// The output is read to its end unless something flm started still
	// holds the pipe.
	select {
	case <-read:
	case <-time.After(2 * time.Second):
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, werr
}

// stop ends a running flm: `podman stop` for the toolbox, then SIGTERM
// to the process group (a host flm, or a podman client still waiting);
// SIGKILL (and podman rm -f) once StopGrace is over.
func (h *Handle) stop(c Cmd, cmd *exec.Cmd, exited <-chan error) {
	p := h.p
	grace := p.StopGrace
	if grace <= 0 {
		grace = 8 * time.Second
	}
	deadline := time.Now().Add(grace)
	pgid := cmd.Process.Pid
	if sc, ok := p.Toolbox.Stop(c.Container, max(int(grace/time.Second)/2, 1)); ok {
		sctx, cancel := context.WithDeadline(context.Background(), deadline)
		out, stderr, err := runCapture(sctx, sc, p.Env)
		cancel()
		if err != nil {
			p.logf("%s: %v %s%s", sc, err, firstLine(stderr), firstLine(out))
		}
	}
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(time.Until(deadline)):
		p.logf("flm did not stop within %v: killing it", grace)
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
		if rc, ok := p.Toolbox.Remove(c.Container); ok {
			rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			runCapture(rctx, rc, p.Env)
			cancel()
		}
	}
}

// recorded reports whether the registry has tag installed in dir with
// every recorded file at its recorded size.
func (p *Puller) recorded(tag, dir string) bool {
	reg, err := p.Registry.Load()
	if err != nil {
		return false
	}
	m, ok := reg.Get(tag)
	if !ok || m.Dir != dir || len(m.Files) == 0 {
		return false
	}
	for _, f := range m.Files {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil || fi.Size() != f.Size {
			return false
		}
	}
	return true
}

// missing lists the files of e absent from dir.
func (e *Entry) missing(dir string) []string {
	files := e.Files
	if len(files) == 0 {
		files = []string{"config.json"}
	}
	var out []string
	for _, f := range files {
		if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f))); err != nil || !fi.Mode().IsRegular() {
			out = append(out, f)
		}
	}
	return out
}

// dirSize sums the sizes of the regular files under dir (0 when it does
// not exist). flm writes each file front to back, so this is what it has
// downloaded.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// hashFiles records every file of the model with its size and SHA-256,
// so that `hal0 model verify` can tell later damage. names are the
// catalog's files; without them, every regular file under dir.
func hashFiles(ctx context.Context, dir string, names []string) ([]registry.File, int64, error) {
	if len(names) == 0 {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if rel, err := filepath.Rel(dir, p); err == nil {
					names = append(names, filepath.ToSlash(rel))
				}
			}
			return nil
		})
	}
	var out []registry.File
	var total int64
	buf := make([]byte, 1<<20)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			return nil, 0, err
		}
		hs := sha256.New()
		n, err := io.CopyBuffer(hs, f, buf)
		f.Close()
		if err != nil {
			return nil, 0, err
		}
		out = append(out, registry.File{Path: name, Size: n, SHA256: hex.EncodeToString(hs.Sum(nil))})
		total += n
	}
	return out, total, nil
}

// mountMessage explains that flm does not write where hal0 looks.
func mountMessage(t *Toolbox, what string) string {
	if t.Containerised() {
		return fmt.Sprintf("%s: the toolbox's flm does not see hal0's FLM cache. Its flm keeps models in %s (the HOME of the image's hal0 user), so the host directory %s must be bind-mounted there (hal0 runs podman with -v %s:%s); an image whose flm runs with another HOME, or a podman that drops the mount, makes every pull vanish with the container. Fix the image or flm.toolbox_image, or set flm.runtime = \"host\"",
			what, ContainerModels, t.CacheDir, t.CacheDir, ContainerModels)
	}
	return fmt.Sprintf("%s: the host flm (%s) does not keep its models in %s. hal0 runs it with FLM_MODEL_PATH=%s; an flm that ignores FLM_MODEL_PATH uses ~/.config/flm/models of the user it runs as: point flm.cache_dir there",
		what, t.FLM, t.CacheDir, filepath.Dir(t.CacheDir))
}

// UnknownTagError says that tag is not in FLM's catalog, listing a few
// tags that are.
func UnknownTagError(tag string, cat *Catalog) *api.Error {
	tags := cat.Tags()
	list := strings.Join(tags, ", ")
	if len(tags) > 12 {
		list = strings.Join(tags[:12], ", ") + ", …"
	}
	if len(tags) == 0 {
		list = "none"
	}
	return api.Errorf(api.CodeFLMUnknownTag, 0, "%s is not in FLM's catalog (flm list): FLM runs only its own models, named family:size; it has %d: %s", tag, len(tags), list)
}
