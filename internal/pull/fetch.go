package pull

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/hf"
)

// fileDL downloads one file of a pull into its partial.
type fileDL struct {
	e       *Engine
	run     *run
	entry   hf.Entry
	p       *partial
	resolve string // the hub's resolve URL for this file at the pinned commit

	cdnURL      atomic.Pointer[string] // presigned URL learnt from a redirect
	sequential  atomic.Bool            // the server ignores Range: one stream writes the file
	pullThrough atomic.Bool            // logged that the source streams from its own pull
	notify      chan struct{}          // wakes the hasher when bytes land
	nextChunk   atomic.Int64
	received    atomic.Int64 // bytes read from the network for this file
}

func (d *fileDL) wake() {
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

// download fetches and verifies the file, retrying it whole once after a
// checksum mismatch.
func (d *fileDL) download(ctx context.Context) error {
	const attempts = 2
	var err error
	for a := 1; a <= attempts; a++ {
		err = d.attempt(ctx)
		var mm *mismatchError
		if !errors.As(err, &mm) {
			return err
		}
		d.e.logf("%s: %v; discarding its data and downloading it again (attempt %d of %d)", d.entry.Path, mm, a+1, attempts)
		if rerr := d.p.reset(); rerr != nil {
			return rerr
		}
		d.sequential.Store(false)
		d.nextChunk.Store(0)
	}
	return api.Errorf(api.CodeChecksum, 0, "%s failed verification %d times: %v", d.entry.Path, attempts, err)
}

func (d *fileDL) attempt(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	hashErr := make(chan error, 1)
	go func() { hashErr <- d.hash(ctx) }()

	workers := min(d.e.Connections, d.p.n)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(d.nextChunk.Add(1) - 1)
				if k >= d.p.n || ctx.Err() != nil {
					return
				}
				if err := d.chunk(ctx, k); err != nil {
					once.Do(func() { firstErr = err; cancel(err) })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		<-hashErr
		return firstErr
	}
	if ctx.Err() != nil {
		<-hashErr
		return context.Cause(ctx)
	}
	d.wake()
	return <-hashErr
}

// chunk downloads chunk k with retries.
func (d *fileDL) chunk(ctx context.Context, k int) error {
	p := d.p
	start, end := p.chunkStart(k), p.chunkStart(k)+p.chunkLen(k) // [start, end)
	noProgress := 0
	var lastErr error
	for {
		if d.sequential.Load() {
			return nil // the sequential stream covers this chunk
		}
		pos := start + p.written[k].Load()
		if pos >= end {
			return nil
		}
		select {
		case d.e.sem <- struct{}{}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		n, err := d.fetch(ctx, k, pos, end)
		<-d.e.sem
		if err == nil {
			continue // loop re-checks completion
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		var ns *noSpaceError
		if errors.As(err, &ns) {
			return api.Errorf(api.CodeNoSpace, 0, "disk full while writing %s: %v; partial data is kept, free space and pull again to resume", d.entry.Path, err)
		}
		if errors.Is(err, errExpired) {
			// The presigned URL expired: go back to the hub for a fresh
			// one, right away.
			d.cdnURL.Store(nil)
			if noProgress++; noProgress > d.e.MaxRetries {
				return api.Errorf(api.CodeNetwork, 0, "%s: the CDN keeps refusing fresh download URLs: %v", d.entry.Path, err)
			}
			continue
		}
		if !hf.IsTransient(err) {
			return err
		}
		if n > 0 {
			noProgress = 0
		}
		noProgress++
		lastErr = err
		if noProgress > d.e.MaxRetries {
			return api.Errorf(giveUpCode(lastErr), 0, "%s: giving up after %d attempts without progress: %v", d.entry.Path, d.e.MaxRetries, lastErr)
		}
		wait := d.e.backoff(noProgress, err)
		d.e.logf("%s: %v; retrying in %v", d.entry.Path, err, wait.Round(time.Millisecond))
		d.run.retries.Add(1)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// giveUpCode is the code of a range that kept failing: what the server
// kept saying when it said something precise (rate limited, a response
// that contradicts itself), else a network failure.
func giveUpCode(err error) string {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code != "" {
		return ae.Code
	}
	return api.CodeNetwork
}

var errExpired = errors.New("download URL expired")

// errStalled is the cause set when the watchdog cancels a silent request.
var errStalled = errors.New("stalled")

// pullThroughStall is the stall limit on a response streamed from another
// hal0's pull (hf.HeaderPullThrough): its silences last as long as its
// upstream's, and it cuts the connection itself when its pull fails. TCP
// keepalive notices a vanished box sooner; this bounds the rest.
const pullThroughStall = 10 * time.Minute

// fetch performs one request for bytes [pos, end) of chunk k and writes what
// arrives. It returns how many bytes it wrote.
func (d *fileDL) fetch(ctx context.Context, k int, pos, end int64) (int64, error) {
	p := d.p
	url := d.resolve
	fromCDN := false
	if u := d.cdnURL.Load(); u != nil {
		url, fromCDN = *u, true
	}
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The watchdog covers the whole request, headers included: a server
	// that accepts the connection and then says nothing is a stall too.
	stall := d.e.StallTimeout
	timer := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer timer.Stop()

	rng := hf.Range{Start: pos, End: end - 1}
	whole := pos == 0 && end == p.size
	if whole {
		rng = hf.Range{Start: 0, End: -1} // plain GET: the friendliest request there is
	}
	body, err := d.e.client(d.run.endpoint).Open(rctx, url, d.run.repo, rng)
	if err != nil {
		if context.Cause(rctx) == errStalled {
			return 0, &hf.TransientError{Err: fmt.Errorf("no response for %v", stall)}
		}
		if errors.Is(err, hf.ErrURLExpired) || (fromCDN && expiredStatus(err)) {
			return 0, errExpired
		}
		return 0, err
	}
	defer body.Resp.Body.Close()
	if body.Resp.Header.Get(hf.HeaderPullThrough) != "" {
		// Another hal0 streams this file from its own pull: it sends
		// bytes as its upstream delivers them, holds each response's
		// last byte until the whole file verified, and cuts the
		// connection if its pull fails. Restarting the range after
		// StallTimeout of silence would only fail this pull while that
		// one goes on; the long limit still catches a box that vanished.
		stall = max(stall, pullThroughStall)
		timer.Reset(stall)
		if d.pullThrough.CompareAndSwap(false, true) {
			d.e.logf("%s: the source is pulling it from its upstream; waiting up to %v for its bytes instead of %v", d.entry.Path, stall, d.e.StallTimeout)
		}
	}
	if body.URL != d.resolve && !fromCDN {
		u := body.URL
		d.cdnURL.Store(&u)
	}
	if body.Total >= 0 && body.Total != p.size {
		return 0, api.Errorf(api.CodeBadResponse, 0, "%s: server says the file has %d bytes, the hub listing says %d", d.entry.Path, body.Total, p.size)
	}
	if body.Full && !whole {
		// The server ignored Range. One stream now writes the whole file
		// from byte 0; other workers stand down.
		if !d.sequential.CompareAndSwap(false, true) {
			return 0, nil
		}
		d.e.logf("%s: server ignores Range requests; downloading it as one stream", d.entry.Path)
		return d.stream(rctx, timer, stall, body, 0, p.size, -1)
	}
	if body.Full {
		return d.stream(rctx, timer, stall, body, 0, p.size, -1)
	}
	return d.stream(rctx, timer, stall, body, pos, end, k)
}

func expiredStatus(err error) bool {
	var ae *api.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case api.CodeHubForbidden, api.CodeRepoNotFound, api.CodeAuth:
			return true
		}
	}
	return false
}

// stream copies the body into the file at [from, to). k is the chunk when
// the body is one chunk's range, or -1 when it is the whole file (then
// counters of every chunk it passes are raised).
func (d *fileDL) stream(ctx context.Context, timer *time.Timer, stall time.Duration, body *hf.Body, from, to int64, k int) (int64, error) {
	p := d.p
	bufp := d.e.bufs.Get().(*[]byte)
	defer d.e.bufs.Put(bufp)
	buf := *bufp
	pos := from
	var wrote int64
	for pos < to {
		want := min(int64(len(buf)), to-pos)
		n, rerr := io.ReadAtLeast(body.Resp.Body, buf[:want], int(min(want, 64<<10)))
		if n > 0 {
			timer.Reset(stall)
			d.received.Add(int64(n))
			d.run.received.Add(int64(n))
			if _, err := p.data.WriteAt(buf[:n], pos); err != nil {
				return wrote, wrapIO(err, "write "+p.dataPath)
			}
			if k >= 0 {
				if err := p.advance(k, int64(n)); err != nil {
					return wrote, wrapIO(err, "write "+p.statePath)
				}
			} else if err := d.raiseThrough(pos + int64(n)); err != nil {
				return wrote, err
			}
			pos += int64(n)
			wrote += int64(n)
			d.wake()
		}
		if rerr != nil {
			if pos >= to && (errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF)) {
				break
			}
			if context.Cause(ctx) == errStalled {
				return wrote, &hf.TransientError{Err: fmt.Errorf("stalled: no data for %v at byte %d", stall, pos)}
			}
			if ctx.Err() != nil {
				return wrote, context.Cause(ctx)
			}
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
				return wrote, &hf.TransientError{Err: fmt.Errorf("connection closed at byte %d of %d", pos, p.size)}
			}
			return wrote, &hf.TransientError{Err: rerr}
		}
	}
	// The body must end where the file does. A server that keeps sending
	// (a wrong Content-Length, a longer file) is not trusted.
	if k < 0 || to == p.size {
		var one [1]byte
		if n, _ := body.Resp.Body.Read(one[:]); n > 0 {
			return wrote, api.Errorf(api.CodeBadResponse, 0, "%s: server sent more than the %d bytes the hub lists", d.entry.Path, p.size)
		}
	}
	return wrote, nil
}

// raiseThrough marks every chunk below off as written (sequential mode).
func (d *fileDL) raiseThrough(off int64) error {
	p := d.p
	for k := int(max(off-1, 0) / p.chunk); k >= 0; k-- {
		v := min(p.chunkLen(k), off-p.chunkStart(k))
		if p.written[k].Load() >= v {
			break
		}
		if err := p.setAtLeast(k, v); err != nil {
			return wrapIO(err, "write "+p.statePath)
		}
	}
	return nil
}

// hash follows the written prefix of the file and hashes it as it grows,
// reading back what was just written (from the page cache), so that the
// digest is ready moments after the last byte arrives, with no second pass
// over the file.
func (d *fileDL) hash(ctx context.Context) error {
	p := d.p
	s256 := sha256.New()
	var git hash.Hash
	if d.entry.LFS == nil {
		git = sha1.New()
		git.Write([]byte("blob " + strconv.FormatInt(p.size, 10) + "\x00"))
	}
	bufp := d.e.bufs.Get().(*[]byte)
	defer d.e.bufs.Put(bufp)
	buf := *bufp
	var pos int64
	for pos < p.size {
		end := p.contiguous(pos)
		if end <= pos {
			select {
			case <-d.notify:
				continue
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		n := min(int64(len(buf)), end-pos)
		if _, err := p.data.ReadAt(buf[:n], pos); err != nil {
			return fmt.Errorf("read back %s: %w", p.dataPath, err)
		}
		s256.Write(buf[:n])
		if git != nil {
			git.Write(buf[:n])
		}
		pos += n
		d.run.hashed.Add(n)
	}
	got := hex.EncodeToString(s256.Sum(nil))
	if want := d.entry.SHA256(); want != "" && got != want {
		return &mismatchError{algo: "sha256", want: want, got: got}
	}
	if git != nil {
		if g := hex.EncodeToString(git.Sum(nil)); d.entry.OID != "" && g != d.entry.OID {
			return &mismatchError{algo: "git-sha1", want: d.entry.OID, got: g}
		}
	}
	d.run.setSHA(d.entry.Path, got)
	return nil
}

type mismatchError struct{ algo, want, got string }

func (e *mismatchError) Error() string {
	return fmt.Sprintf("%s mismatch: want %s, got %s", e.algo, e.want, e.got)
}

// backoff returns the wait before retry n: capped exponential with full
// jitter, and never less than a Retry-After the server sent.
func (e *Engine) backoff(n int, err error) time.Duration {
	base := e.BackoffBase
	ceil := base << min(n, 16)
	if ceil > e.BackoffMax || ceil <= 0 {
		ceil = e.BackoffMax
	}
	d := time.Duration(rand.Int64N(int64(ceil)/2+1)) + ceil/2
	var te *hf.TransientError
	if errors.As(err, &te) && te.After > d {
		d = min(te.After, 10*time.Minute)
	}
	return d
}
