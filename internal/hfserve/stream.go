package hfserve

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/maphash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hal0ai/hal0/internal/hf"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/pull"
)

// Streaming a file while its pull downloads it.
//
// The worker writes a file in parallel byte ranges and records, per range,
// how much it wrote; only the prefix written contiguously from byte 0 can
// be sent (pull.Staged reads it). The worker verifies the file's hash
// once its last byte is in, and starts the file again when it does not
// match; the bytes sent before that may have been wrong. So every byte
// sent must be checked, and a client must never receive a complete body
// that is wrong:
//
//   - One follower (tracker) per file reads the written prefix as it
//     grows, once, in order, hashes it with the pinned hash's algorithm
//     (SHA-256 of LFS files, the git blob SHA-1 of the others), and keeps
//     a keyed 64-bit digest (hash/maphash, a secret random seed per
//     follower) of each 1 MiB block it read.
//   - Each response reads the blocks it covers from the same file itself,
//     sends its bytes as they appear, and digests the blocks the same way.
//   - A response holds its last byte back until the follower has read the
//     whole file and its hash equals the pinned one, and every block the
//     response sent digests equal to the follower's: then the bytes sent
//     are the bytes that hashed right. Anything else (a hash mismatch, the
//     worker discarding data, the pull failing or being cancelled, a
//     digest that differs) cuts the connection, so the client sees a
//     truncated body.
//
// The digest comparison is what makes the check hold whatever the worker
// did between two reads of a block: a follower and a response never have
// to read at the same moment. A forged block matching a digest would need
// the seed, which never leaves this process.
const (
	blockSize = 1 << 20
	// statePoll is how often a follower reads the worker's counters.
	statePoll = 10 * time.Millisecond
	// jobPoll is how often a follower asks whether the job failed.
	jobPoll = 250 * time.Millisecond
	// writeTimeout bounds one write to a client that stopped reading.
	writeTimeout = time.Minute
)

type trackerKey struct {
	job      string
	attempts int
	path     string
}

// tracker follows one file of one run of a job; see above.
type tracker struct {
	p      *pullThrough
	key    trackerKey
	st     *pull.Staged
	size   int64
	seed   maphash.Seed
	want   string // hex digest the file must have
	git    bool   // want is a git blob SHA-1 rather than a SHA-256
	stop   context.CancelFunc
	exited chan struct{} // closed when run returns

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever the fields below change
	avail   int64         // written contiguously from 0
	hashed  int64         // read and hashed, in whole blocks (for tests)
	done    bool          // hashed completely, and right
	err     error         // the stream must be cut
	refs    int
	// digests[i] is the digest of block i; written by run before done is
	// set, read by responses only after they saw done.
	digests []uint64
}

// errStaleStage means the job's stage is gone: it installed the file.
var errStaleStage = errors.New("stage gone")

// tracker returns the follower of pf in job j's current run, starting one
// if needed. Release it when done.
func (p *pullThrough) tracker(j *jobs.Job, pf *jobs.PinnedFile) (*tracker, error) {
	key := trackerKey{job: j.ID, attempts: j.Attempts, path: pf.Path}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.trackers[key]; t != nil {
		t.mu.Lock()
		t.refs++
		t.mu.Unlock()
		return t, nil
	}
	if p.ctx.Err() != nil {
		return nil, p.ctx.Err()
	}
	st, err := pull.OpenStaged(j.Pinned.Stage, pull.PinnedFile{Path: pf.Path, Size: pf.Size, LFS: pf.LFS, SHA256: pf.SHA256, GitOID: pf.GitOID})
	if err != nil {
		if errors.Is(err, pull.ErrStagedGone) {
			return nil, errStaleStage
		}
		return nil, err
	}
	ctx, cancel := context.WithCancel(p.ctx)
	t := &tracker{p: p, key: key, st: st, size: pf.Size, seed: maphash.MakeSeed(), stop: cancel, exited: make(chan struct{}),
		changed: make(chan struct{}), refs: 1, digests: make([]uint64, (pf.Size+blockSize-1)/blockSize)}
	if pf.LFS {
		t.want = strings.ToLower(pf.SHA256)
	} else {
		t.want, t.git = strings.ToLower(pf.GitOID), true
	}
	p.trackers[key] = t
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(t.exited)
		t.run(ctx, j.ID)
	}()
	return t, nil
}

// release drops a response's hold; the last one stops the follower and
// closes the files (responses read them too, so run cannot).
func (t *tracker) release() {
	p := t.p
	p.mu.Lock()
	t.mu.Lock()
	t.refs--
	last := t.refs == 0
	t.mu.Unlock()
	if last && p.trackers[t.key] == t {
		delete(p.trackers, t.key)
	}
	p.mu.Unlock()
	if last {
		t.stop()
		<-t.exited
		t.st.Close()
	}
}

// set updates the state under the lock and wakes waiting responses.
func (t *tracker) set(fn func()) {
	t.mu.Lock()
	fn()
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
}

func (t *tracker) fail(err error) {
	t.set(func() {
		if t.err == nil && !t.done {
			t.err = err
		}
	})
	// New requests get a new follower (of the next run, or of a file
	// that is installed by then).
	p := t.p
	p.mu.Lock()
	if p.trackers[t.key] == t {
		delete(p.trackers, t.key)
	}
	p.mu.Unlock()
}

// run follows the file until it is hashed (right or wrong), the job
// fails, or the last response leaves.
func (t *tracker) run(ctx context.Context, jobID string) {
	var h hash.Hash
	if t.git {
		h = sha1.New()
		fmt.Fprintf(h, "blob %d\x00", t.size)
	} else {
		h = sha256.New()
	}
	var bh maphash.Hash
	bh.SetSeed(t.seed)
	buf := make([]byte, 256<<10)
	var avail, hashed int64
	var lastJob time.Time
	tick := time.NewTicker(statePoll)
	defer tick.Stop()
	for {
		w, err := t.st.Written()
		if err != nil {
			t.fail(fmt.Errorf("read the pull's progress: %w", err))
			return
		}
		if w < avail {
			t.fail(fmt.Errorf("the pull discarded the data it had written (its hash did not match) and downloads the file again"))
			return
		}
		if w > avail {
			avail = w
			t.set(func() { t.avail = w })
		}
		for hashed < avail {
			blk := hashed / blockSize
			end := min((blk+1)*blockSize, t.size)
			n := min(int64(len(buf)), avail-hashed, end-hashed)
			if _, err := t.st.ReadAt(buf[:n], hashed); err != nil {
				t.fail(fmt.Errorf("read the partial file at %d: %w", hashed, err))
				return
			}
			h.Write(buf[:n])
			bh.Write(buf[:n])
			hashed += n
			if hashed == end {
				t.digests[blk] = bh.Sum64()
				bh.Reset()
				t.mu.Lock()
				t.hashed = hashed
				t.mu.Unlock()
			}
			if ctx.Err() != nil {
				return
			}
		}
		if hashed == t.size {
			if got := hex.EncodeToString(h.Sum(nil)); got != t.want {
				t.fail(fmt.Errorf("the downloaded file hashes to %s, not %s", got, t.want))
				return
			}
			t.set(func() { t.done = true })
			return
		}
		if time.Since(lastJob) >= jobPoll {
			lastJob = time.Now()
			j, err := t.p.jobs.Job(ctx, jobID)
			switch {
			case err != nil && ctx.Err() == nil:
				t.fail(fmt.Errorf("read job %s: %w", jobID, err))
				return
			case err != nil:
			case j.State == jobs.Completed:
				// Every file is written and verified before a job
				// completes; the counters read next tell the rest.
				if w2, err := t.st.Written(); err == nil && w2 == avail {
					t.fail(fmt.Errorf("job %s completed but only %d of %d bytes of the file were written", jobID, avail, t.size))
					return
				}
			case j.State.Final():
				msg := j.Error
				if msg == "" {
					msg = string(j.State)
				}
				t.fail(fmt.Errorf("the pull %s: %s", j.State, msg))
				return
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.fail(errors.New("hal0-apid is shutting down"))
			return
		}
	}
}

// waitAvail returns once more than pos bytes are written.
func (t *tracker) waitAvail(ctx context.Context, pos int64) (int64, error) {
	for {
		t.mu.Lock()
		avail, err, ch := t.avail, t.err, t.changed
		t.mu.Unlock()
		if err != nil {
			return 0, err
		}
		if avail > pos {
			return avail, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// waitDone returns once the file hashed right.
func (t *tracker) waitDone(ctx context.Context) error {
	for {
		t.mu.Lock()
		done, err, ch := t.done, t.err, t.changed
		t.mu.Unlock()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// send writes bytes [a, b] of the file as they are written, holding byte b
// until the file is verified and the blocks sent digest as the follower's.
// A nil error means the whole range went out.
func (t *tracker) send(ctx context.Context, w http.ResponseWriter, a, b int64) error {
	rc := http.NewResponseController(w)
	write := func(p []byte) error {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(p); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}
	var bh maphash.Hash
	bh.SetSeed(t.seed)
	type sum struct {
		blk int64
		d   uint64
	}
	var sent []sum
	buf := make([]byte, 256<<10)
	var last byte
	// Whole blocks are read, so that their digests compare with the
	// follower's; only [a, b] is sent.
	pos := a - a%blockSize
	end := min((b/blockSize+1)*blockSize, t.size)
	for pos < end {
		avail, err := t.waitAvail(ctx, pos)
		if err != nil {
			return err
		}
		blk := pos / blockSize
		stop := min(avail, end, (blk+1)*blockSize, pos+int64(len(buf)))
		n := stop - pos
		if _, err := t.st.ReadAt(buf[:n], pos); err != nil {
			return fmt.Errorf("read the partial file at %d: %w", pos, err)
		}
		bh.Write(buf[:n])
		if b >= pos && b < stop {
			last = buf[b-pos]
		}
		if lo, hi := max(pos, a), min(stop, b); hi > lo {
			if err := write(buf[lo-pos : hi-pos]); err != nil {
				return err
			}
		}
		pos = stop
		if pos == min((blk+1)*blockSize, t.size) {
			sent = append(sent, sum{blk, bh.Sum64()})
			bh.Reset()
		}
	}
	if err := t.waitDone(ctx); err != nil {
		return err
	}
	for _, s := range sent {
		if t.digests[s.blk] != s.d {
			return fmt.Errorf("bytes %d-%d changed after they were sent (the pull rewrote them)", s.blk*blockSize, min((s.blk+1)*blockSize, t.size)-1)
		}
	}
	return write([]byte{last})
}

// streamFromJob answers a request for file f from job j, which pinned it
// as pf: HEAD at once from what the job pinned, GET by streaming. It
// reports whether the caller should look the file up again (the job
// installed it before the stream began).
func (h *Handler) streamFromJob(w http.ResponseWriter, r *http.Request, j *jobs.Job, pf *jobs.PinnedFile, f *file, raw bool, deadline time.Time) (again bool) {
	hdr := w.Header()
	hdr.Set("Content-Disposition", contentDisposition(f.path))
	etag := `"` + f.blobID + `"`
	if f.lfs {
		etag = `"` + f.sha256 + `"`
		if !raw {
			hdr.Set("X-Linked-Etag", etag)
			hdr.Set("X-Linked-Size", strconv.FormatInt(f.size, 10))
		}
	}
	hdr.Set("ETag", etag)
	hdr.Set("Content-Type", contentType(f.path))
	hdr.Set("Accept-Ranges", "bytes")
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return false
	}
	// Tells a hal0 downloading from this box that a silent stretch is
	// the upstream's (and that a failed pull cuts the connection), so it
	// waits instead of restarting its ranges; see hf.HeaderPullThrough.
	hdr.Set(hf.HeaderPullThrough, "streaming")
	a, b, partial, ok := parseRange(r.Header.Get("Range"), f.size)
	if ir := r.Header.Get("If-Range"); ir != "" && ir != etag {
		a, b, partial, ok = 0, f.size-1, false, true
	}
	if !ok {
		for _, k := range []string{"ETag", "X-Linked-Etag", "X-Linked-Size", "Content-Disposition", hf.HeaderPullThrough} {
			hdr.Del(k)
		}
		hdr.Set("Content-Range", "bytes */"+strconv.FormatInt(f.size, 10))
		writeJSON(w, http.StatusRequestedRangeNotSatisfiable, map[string]string{"error": "Requested Range Not Satisfiable"})
		return false
	}
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, f.size))
	}
	hdr.Set("Content-Length", strconv.FormatInt(b-a+1, 10))
	if r.Method == http.MethodHead || f.size == 0 {
		w.WriteHeader(status)
		return false
	}
	t, err := h.pt.tracker(j, pf)
	switch {
	case errors.Is(err, errStaleStage):
		// Installed, or about to be: wait for the job to say so.
		if err := h.pt.waitEnded(r.Context(), j.ID, deadline); err == nil {
			return true
		}
		w.Header().Set("Retry-After", "5")
		hfError(w, http.StatusServiceUnavailable, "", "hal0 is installing "+f.path+"; retry in a few seconds")
		return false
	case err != nil:
		h.logf("hfserve: follow %s of job %s: %v", f.path, j.ID, err)
		hfError(w, http.StatusInternalServerError, "", "hal0 cannot read its partial download of "+f.path+"; see the server log")
		return false
	}
	defer t.release()
	w.WriteHeader(status)
	// The headers go out now, not with the first bytes: a client learns
	// the size and hash at once, and its read timeout starts from here.
	if err := http.NewResponseController(w).Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return false
	}
	if err := t.send(r.Context(), w, a, b); err != nil {
		if r.Context().Err() == nil {
			h.logf("hfserve: cutting the stream of %s (job %s) to %s: %v", f.path, j.ID, r.RemoteAddr, err)
		}
		// Abort: net/http closes the connection without finishing the
		// body, so the client sees fewer bytes than Content-Length.
		panic(http.ErrAbortHandler)
	}
	return false
}

// parseRange reads a single-range "bytes=" Range header. partial=false
// means the whole file; ok=false means unsatisfiable (416). Multiple
// ranges and malformed headers are ignored (the whole file), as RFC 9110
// allows.
func parseRange(s string, size int64) (a, b int64, partial, ok bool) {
	spec, found := strings.CutPrefix(s, "bytes=")
	if s == "" || !found || strings.Contains(spec, ",") || size == 0 {
		return 0, size - 1, false, true
	}
	first, second, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, size - 1, false, true
	}
	if first == "" {
		n, err := strconv.ParseInt(second, 10, 64)
		if err != nil || n < 0 {
			return 0, size - 1, false, true
		}
		if n == 0 {
			return 0, 0, false, false
		}
		return max(size-n, 0), size - 1, true, true
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return 0, size - 1, false, true
	}
	end := size - 1
	if second != "" {
		e, err := strconv.ParseInt(second, 10, 64)
		if err != nil || e < start {
			return 0, size - 1, false, true
		}
		end = min(e, size-1)
	}
	if start >= size {
		return 0, 0, false, false
	}
	return start, end, true, true
}

func etagMatch(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == "*" || v == etag {
			return true
		}
	}
	return false
}
