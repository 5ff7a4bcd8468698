package flm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/fsutil"
)

// Prober answers "what is in FLM's catalog" from `flm list -j`, cached:
// a good answer for TTL, a failed probe only for RetryAfter (a toolbox
// image still being pulled or a podman hiccup must not hide FLM until a
// restart). Every process that changes flm's cache (the pull worker)
// calls Invalidate, which touches Stamp; a Prober in another process
// (hal0-apid) sees the newer stamp and probes again on its next use.
// Concurrent callers share one probe.
type Prober struct {
	Toolbox    *Toolbox
	TTL        time.Duration
	RetryAfter time.Duration
	Timeout    time.Duration
	// Stamp is a file whose modification marks a change of flm's cache: a process
	// that changed it rewrites the file, and others probe again.
	Stamp string
	// Env is the probe's environment (default: this process's).
	Env []string
	Now func() time.Time

	mu       sync.Mutex
	cat      *Catalog
	err      error
	at       time.Time     // when cat or err was obtained
	stamp    string        // the stamp's content when that probe began
	inflight chan struct{} // closed when the running probe ends
}

// NewProber returns the prober cfg describes.
func NewProber(cfg *config.Config) *Prober {
	return &Prober{
		Toolbox: New(cfg), TTL: cfg.FLM.CatalogTTL.D(), RetryAfter: 5 * time.Second,
		Timeout: cfg.FLM.ProbeTimeout.D(), Stamp: StampPath(cfg),
	}
}

// StampPath is the file Invalidate touches: <state>/flm/catalog.stamp.
func StampPath(cfg *config.Config) string {
	return filepath.Join(cfg.Paths.StateDir, "flm", "catalog.stamp")
}

func (p *Prober) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// ProbeError is a failed `flm list -j`.
type ProbeError struct {
	Cmd string
	Err error
}

func (e *ProbeError) Error() string { return fmt.Sprintf("%s: %v", e.Cmd, e.Err) }
func (e *ProbeError) Unwrap() error { return e.Err }

// Catalog returns the cached catalog, probing when the cache is stale.
// The time is when the answer was obtained. A caller whose ctx ends stops
// waiting; the probe goes on for the others and the cache.
func (p *Prober) Catalog(ctx context.Context) (*Catalog, time.Time, error) {
	p.mu.Lock()
	if p.fresh() {
		defer p.mu.Unlock()
		return p.cat, p.at, p.err
	}
	wait := p.inflight
	if wait == nil {
		wait = make(chan struct{})
		p.inflight = wait
		go p.run(wait)
	}
	p.mu.Unlock()
	select {
	case <-wait:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.cat, p.at, p.err
	case <-ctx.Done():
		return nil, time.Time{}, ctx.Err()
	}
}

// run probes once and publishes the answer.
func (p *Prober) run(done chan struct{}) {
	// Read before the probe: an Invalidate while it runs makes the next
	// caller probe again.
	stamp := p.readStamp()
	cat, err := p.probe(context.Background())
	p.mu.Lock()
	p.cat, p.err, p.at, p.stamp, p.inflight = cat, err, p.now(), stamp, nil
	p.mu.Unlock()
	close(done)
}

// fresh reports whether the cached answer may be used. Callers hold mu.
func (p *Prober) fresh() bool {
	if p.at.IsZero() {
		return false
	}
	age := p.now().Sub(p.at)
	if p.err != nil {
		return age < p.RetryAfter
	}
	if age >= p.TTL {
		return false
	}
	// The stamp is compared by content, not modification time: the
	// kernel's coarse file clock could date a change before a probe that
	// began just before it.
	return p.readStamp() == p.stamp
}

func (p *Prober) readStamp() string {
	if p.Stamp == "" {
		return ""
	}
	b, _ := os.ReadFile(p.Stamp)
	return string(b)
}

// Forget drops this process's cached answer.
func (p *Prober) Forget() {
	p.mu.Lock()
	p.at = time.Time{}
	p.mu.Unlock()
}

// Invalidate drops the cached answer here and, through the stamp file,
// in every other process.
func (p *Prober) Invalidate() error {
	p.Forget()
	if p.Stamp == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p.Stamp), 0o755); err != nil {
		return err
	}
	// A new content every time: readers compare it with what they saw.
	return fsutil.WriteFile(p.Stamp, []byte(time.Now().UTC().Format(time.RFC3339Nano)+" "+strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

// probe runs `flm list -j` once.
func (p *Prober) probe(ctx context.Context) (*Catalog, error) {
	c := p.Toolbox.List()
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, stderr, err := runCapture(ctx, c, p.Env)
	if err != nil {
		reason := firstLine(stderr)
		if reason == "" {
			reason = firstLine(out)
		}
		var ee *exec.ExitError
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			err = fmt.Errorf("no answer within %v", timeout)
		case errors.As(err, &ee) && reason != "":
			err = fmt.Errorf("%v: %s", err, reason)
		}
		return nil, &ProbeError{Cmd: c.String(), Err: err}
	}
	cat, err := ParseList(out)
	if err != nil {
		return nil, &ProbeError{Cmd: c.String(), Err: err}
	}
	return cat, nil
}

// runCapture runs c and returns its stdout and stderr.
func runCapture(ctx context.Context, c Cmd, env []string) ([]byte, []byte, error) {
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(append([]string{}, env...), c.Env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	return out.Bytes(), errb.Bytes(), err
}
