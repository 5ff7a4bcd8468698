// Package jobs keeps pull job records: one JSON file per job, written
// atomically. The record is the durable truth of a job. systemd forgets a
// successful unit as soon as it exits, and hal0-apid may be restarted or exit
// when idle, so the worker writes its own outcome here and everybody else
// reads it.
//
// Layout under the jobs directory:
//
//	<id>.json                  one record per job
//	current/<escaped ref>      symlink to the newest job of that ref
//	locks/<escaped ref>.lock   held by the worker running that ref
//	locks/<escaped ref>.new    serialises job creation for a ref
//	locks/<id>.rec             serialises read-modify-write of one record
package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hal0ai/hal0/internal/fsutil"
	"github.com/hal0ai/hal0/internal/unitname"
)

// State is a job's lifecycle state.
type State string

const (
	Queued    State = "queued"
	Running   State = "running"
	Completed State = "completed"
	Failed    State = "failed"
	Cancelled State = "cancelled"
)

// Final reports whether the job has ended.
func (s State) Final() bool { return s == Completed || s == Failed || s == Cancelled }

// Options are what a pull was asked to do beyond its ref. They travel in
// the record because a systemd template instance cannot carry them.
type Options struct {
	Endpoint string   `json:"endpoint,omitempty"`
	Revision string   `json:"revision,omitempty"`
	Include  []string `json:"include,omitempty"`
	Exclude  []string `json:"exclude,omitempty"`
	Quant    string   `json:"quant,omitempty"`
	Format   string   `json:"format,omitempty"`
	// DiscardPartial drops partial data on cancel instead of keeping it
	// for a later resume.
	DiscardPartial bool `json:"discard_partial,omitempty"`
}

// Pinned is what a running pull has fixed: the commit, every file with
// its final size and hash, and the staging directory holding the partial
// files (files/<path>, state/<path>.state). hal0-apid serves files of a
// pull from it while they download (the /hf/ pull-through).
type Pinned struct {
	Repo     string       `json:"repo"`
	Revision string       `json:"revision,omitempty"`
	Commit   string       `json:"commit"`
	Endpoint string       `json:"endpoint,omitempty"`
	Gated    string       `json:"gated,omitempty"`
	Stage    string       `json:"stage"`
	Files    []PinnedFile `json:"files"`
}

// PinnedFile is one file of a pull: LFS files carry the content's
// SHA-256, the others their git blob oid.
type PinnedFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	LFS    bool   `json:"lfs,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	GitOID string `json:"git_oid,omitempty"`
}

// Job is one pull.
type Job struct {
	ID      string  `json:"id"`
	Ref     string  `json:"ref"`  // canonical model ref, also the registry id
	Kind    string  `json:"kind"` // hf or flm
	Unit    string  `json:"unit"` // hal0-pull@….service
	Runner  string  `json:"runner,omitempty"`
	State   State   `json:"state"`
	Phase   string  `json:"phase,omitempty"` // resolving, downloading, verifying, installing
	Options Options `json:"options"`

	BytesTotal  int64   `json:"bytes_total"`
	BytesDone   int64   `json:"bytes_done"`
	FilesTotal  int     `json:"files_total"`
	FilesDone   int     `json:"files_done"`
	CurrentFile string  `json:"current_file,omitempty"`
	RateBPS     float64 `json:"rate_bps"`
	// Resumed is how many bytes were already on disk when this run began.
	Resumed int64 `json:"resumed_bytes,omitempty"`

	Commit string `json:"commit,omitempty"`
	Path   string `json:"path,omitempty"`
	// Pinned is set by the worker once it has pinned the commit and opened
	// its partial files, and cleared when a new run of the job starts.
	Pinned *Pinned `json:"pinned,omitempty"`

	ErrorCode  string `json:"error_code,omitempty"`
	Error      string `json:"error,omitempty"`
	ExitStatus *int   `json:"exit_status,omitempty"`
	PID        int    `json:"pid,omitempty"`
	// CancelRequested is set by whoever asked for a cancel, so a job whose
	// worker never got to record it still ends as cancelled.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	Attempts        int  `json:"attempts"`

	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// Elapsed is the time the job has been (or was) running.
func (j *Job) Elapsed(now time.Time) time.Duration {
	if j.StartedAt == nil {
		return 0
	}
	end := now
	if j.FinishedAt != nil {
		end = *j.FinishedAt
	}
	if d := end.Sub(*j.StartedAt); d > 0 {
		return d
	}
	return 0
}

// ETA estimates the time left, or -1 when unknown.
func (j *Job) ETA() time.Duration {
	if j.State.Final() {
		return 0
	}
	if j.RateBPS <= 0 || j.BytesTotal <= 0 {
		return -1
	}
	left := j.BytesTotal - j.BytesDone
	if left < 0 {
		left = 0
	}
	return time.Duration(float64(left) / j.RateBPS * float64(time.Second))
}

// ErrNotFound is returned for a job or ref without a record.
var ErrNotFound = errors.New("no such pull job")

// Store is a jobs directory.
type Store struct {
	dir string
	now func() time.Time

	mu    sync.Mutex
	cache map[string]cachedJob // Current's decoded records, by path

	// busyHook, when set (tests), runs each time AcquireRef finds the
	// lock taken and will try again.
	busyHook func()
}

// Open returns the store rooted at dir (typically /var/lib/hal0/jobs).
func Open(dir string) *Store { return &Store{dir: dir, now: time.Now} }

// cachedJob is a record Current decoded, with the bytes it was decoded
// from. Comparing bytes rather than file identity (inode, size, times)
// keeps the cache exact: inode numbers are reused at once on some
// filesystems and timestamps are as coarse as the kernel's tick, so two
// different records can look like one file.
type cachedJob struct {
	raw []byte
	job *Job
}

const cacheMax = 256

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) recPath(id string) string { return filepath.Join(s.dir, id+".json") }
func (s *Store) curPath(ref string) string {
	return filepath.Join(s.dir, "current", unitname.Escape(ref))
}
func (s *Store) lockPath(name string) string { return filepath.Join(s.dir, "locks", name) }

// NewID returns a fresh job id.
func NewID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

func validID(id string) bool {
	if len(id) != 16 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// Get reads one record.
func (s *Store) Get(id string) (*Job, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: bad id %q", ErrNotFound, id)
	}
	return s.read(s.recPath(id))
}

func (s *Store) read(p string) (*Job, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("job record %s is corrupt: %v", p, err)
	}
	return &j, nil
}

// Current returns the newest job for ref. It is the status poll's path
// (thousands a second under load): the record is read every time, but
// decoded again only when its bytes changed.
func (s *Store) Current(ref string) (*Job, error) {
	p := s.curPath(ref)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	c, ok := s.cache[p]
	s.mu.Unlock()
	if ok && bytes.Equal(c.raw, b) {
		return c.job.clone(), nil
	}
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("job record %s is corrupt: %v", p, err)
	}
	s.mu.Lock()
	if s.cache == nil || len(s.cache) >= cacheMax {
		s.cache = make(map[string]cachedJob)
	}
	s.cache[p] = cachedJob{raw: b, job: j.clone()}
	s.mu.Unlock()
	return &j, nil
}

// clone is a deep copy: callers change the jobs they get.
func (j *Job) clone() *Job {
	c := *j
	c.Options.Include = slices.Clone(j.Options.Include)
	c.Options.Exclude = slices.Clone(j.Options.Exclude)
	for _, p := range []**time.Time{&c.StartedAt, &c.FinishedAt} {
		if *p != nil {
			t := **p
			*p = &t
		}
	}
	if j.ExitStatus != nil {
		v := *j.ExitStatus
		c.ExitStatus = &v
	}
	return &c
}

// write stores j atomically. Callers hold the record lock.
func (s *Store) write(j *Job) error {
	j.UpdatedAt = s.now().UTC()
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFile(s.recPath(j.ID), append(b, '\n'), 0o644)
}

// Begin returns the ref's job if one is queued or running, or creates a new
// queued job from tmpl. created tells which. Creation is serialised per ref
// across processes, so two callers racing on the same model get one job.
func (s *Store) Begin(ctx context.Context, tmpl Job) (j *Job, created bool, err error) {
	if tmpl.Ref == "" {
		return nil, false, fmt.Errorf("job without a ref")
	}
	lk, err := fsutil.LockFileContext(ctx, s.lockPath(unitname.Escape(tmpl.Ref)+".new"))
	if err != nil {
		return nil, false, err
	}
	defer lk.Unlock()
	cur, err := s.Current(tmpl.Ref)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, false, err
	}
	if cur != nil && !cur.State.Final() {
		return cur, false, nil
	}
	n := tmpl
	if n.ID == "" {
		n.ID = NewID()
	}
	if n.State == "" {
		n.State = Queued
	}
	n.CreatedAt = s.now().UTC()
	if err := s.write(&n); err != nil {
		return nil, false, err
	}
	if err := s.point(n.Ref, n.ID); err != nil {
		return nil, false, err
	}
	return &n, true, nil
}

// point makes current/<ref> name job id, replacing any older link
// atomically.
func (s *Store) point(ref, id string) error {
	cur := s.curPath(ref)
	if err := os.MkdirAll(filepath.Dir(cur), 0o755); err != nil {
		return err
	}
	tmp := cur + ".tmp-" + id
	os.Remove(tmp)
	if err := os.Symlink(filepath.Join("..", id+".json"), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, cur); err != nil {
		os.Remove(tmp)
		return err
	}
	return fsutil.SyncDir(filepath.Dir(cur))
}

// Update applies fn to the record under its lock and writes the result.
func (s *Store) Update(ctx context.Context, id string, fn func(*Job) error) (*Job, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: bad id %q", ErrNotFound, id)
	}
	lk, err := fsutil.LockFileContext(ctx, s.lockPath(id+".rec"))
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	j, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	if err := fn(j); err != nil {
		return nil, err
	}
	if err := s.write(j); err != nil {
		return nil, err
	}
	return j, nil
}

// List returns every record, newest first. Unreadable records are skipped
// and reported in the second return value rather than hiding the others.
func (s *Store) List() ([]*Job, []error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []error{err}
	}
	var out []*Job
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") || !validID(strings.TrimSuffix(name, ".json")) {
			continue
		}
		j, err := s.read(filepath.Join(s.dir, name))
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].CreatedAt.After(out[b].CreatedAt) })
	return out, errs
}

// Prune deletes finished records older than maxAge, keeping the newest
// record of every ref so that status stays answerable.
func (s *Store) Prune(maxAge time.Duration) (int, error) {
	all, _ := s.List()
	keep := map[string]bool{}
	n := 0
	for _, j := range all { // newest first
		if !keep[j.Ref] {
			keep[j.Ref] = true
			continue
		}
		if !j.State.Final() || j.FinishedAt == nil || s.now().Sub(*j.FinishedAt) < maxAge {
			continue
		}
		if err := os.Remove(s.recPath(j.ID)); err == nil {
			os.Remove(s.lockPath(j.ID + ".rec"))
			n++
		}
	}
	return n, nil
}

// LockRef takes the per-ref worker lock without waiting. It returns
// fsutil.ErrLocked when another worker is running that ref. The kernel drops
// the lock when the worker dies, however it dies.
func (s *Store) LockRef(ref string) (*fsutil.Lock, error) {
	return fsutil.TryLockFile(s.lockPath(unitname.Escape(ref) + ".lock"))
}

// AcquireRef takes the ref's worker lock for a worker. WorkerAlive tests
// the lock by taking it for an instant, so a lock found taken is tried
// again for up to a second before the ref counts as busy: a worker that
// started during a status poll's probe must not give up as "already
// running".
func (s *Store) AcquireRef(ctx context.Context, ref string) (*fsutil.Lock, error) {
	deadline := time.Now().Add(time.Second)
	for {
		l, err := s.LockRef(ref)
		if !errors.Is(err, fsutil.ErrLocked) || time.Now().After(deadline) {
			return l, err
		}
		if s.busyHook != nil {
			s.busyHook()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// WorkerAlive reports whether some process holds the ref's worker lock.
func (s *Store) WorkerAlive(ref string) bool {
	l, err := s.LockRef(ref)
	if err != nil {
		return errors.Is(err, fsutil.ErrLocked)
	}
	l.Unlock()
	return false
}
