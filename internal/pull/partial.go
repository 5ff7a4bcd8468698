package pull

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A partial file is the data file being downloaded plus a small binary state
// file that records, per chunk, how many bytes of it are written.
//
// The state file holds two copies of the counters. The live copy is updated
// with an 8-byte pwrite after every data write, without fsync: if the
// worker is killed (kill -9, OOM, a stopped unit), the kernel still has both
// the data and the counters in its page cache, so a resume loses at most the
// one buffer in flight. After a reboot, however, the live counters may have
// reached the disk before the data they describe. So the state file also
// records the boot id it was written under, and a durable copy of the
// counters that is written only after the data has been fdatasync'ed. On
// open, the live copy is trusted only if the boot id is still the same;
// otherwise the durable copy is used. Whatever survives, the final SHA-256
// check still guards the result.
const (
	stateMagic   = "HAL0PRT1"
	stateHdrSize = 256
)

type partial struct {
	dataPath, statePath string
	data, state         *os.File
	size, chunk         int64
	n                   int
	written             []atomic.Int64
	// resumed is how many bytes were already on disk at open.
	resumed int64
}

func chunkCount(size, chunk int64) int {
	if size == 0 {
		return 0
	}
	return int((size + chunk - 1) / chunk)
}

func (p *partial) chunkStart(k int) int64 { return int64(k) * p.chunk }
func (p *partial) chunkLen(k int) int64 {
	if end := p.chunkStart(k) + p.chunk; end < p.size {
		return p.chunk
	}
	return p.size - p.chunkStart(k)
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// header identifies what a state file describes; a partial left by another
// file version (another size, hash or chunk size) is discarded, not reused.
func header(size, chunk int64, id, boot string) []byte {
	h := make([]byte, stateHdrSize)
	copy(h, stateMagic)
	binary.LittleEndian.PutUint64(h[8:], uint64(size))
	binary.LittleEndian.PutUint64(h[16:], uint64(chunk))
	copy(h[24:88], id)    // expected hash (or git oid), identifies the content
	copy(h[88:128], boot) // boot id the live counters belong to
	return h
}

func (p *partial) liveOff(k int) int64    { return stateHdrSize + int64(k)*8 }
func (p *partial) durableOff(k int) int64 { return stateHdrSize + int64(p.n+k)*8 }

// openPartial opens or creates the partial for a file of size bytes whose
// content is identified by id. It preallocates the data file so that a full
// disk shows up now rather than halfway through.
func openPartial(dataPath, statePath string, size, chunk int64, id string, prealloc bool) (*partial, error) {
	if err := os.MkdirAll(filepath.Dir(dataPath), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(statePath), 0o755); err != nil {
		return nil, err
	}
	p := &partial{dataPath: dataPath, statePath: statePath, size: size, chunk: chunk, n: chunkCount(size, chunk)}
	p.written = make([]atomic.Int64, p.n)
	boot := bootID()
	want := header(size, chunk, id, "")

	if st, err := os.OpenFile(statePath, os.O_RDWR, 0o644); err == nil {
		if ok := p.load(st, want, boot); ok {
			p.state = st
		} else {
			st.Close()
		}
	}
	fresh := p.state == nil
	if fresh {
		// No usable state: any data file left is of unknown content.
		os.Remove(dataPath)
		st, err := os.OpenFile(statePath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, err
		}
		p.state = st
		for k := range p.written {
			p.written[k].Store(0)
		}
	}
	flags := os.O_RDWR | os.O_CREATE
	data, err := os.OpenFile(dataPath, flags, 0o644)
	if err != nil {
		p.state.Close()
		return nil, err
	}
	p.data = data
	if fi, err := data.Stat(); err == nil && fi.Size() > size {
		data.Truncate(size)
	}
	if prealloc {
		if err := p.preallocate(); err != nil {
			p.close()
			return nil, err
		}
	}
	// Rewrite the header with this boot's id and both counter copies equal
	// to what we trust now.
	hdr := header(size, chunk, id, boot)
	buf := make([]byte, stateHdrSize+16*p.n)
	copy(buf, hdr)
	for k := range p.written {
		v := uint64(p.written[k].Load())
		binary.LittleEndian.PutUint64(buf[p.liveOff(k):], v)
		binary.LittleEndian.PutUint64(buf[p.durableOff(k):], v)
		p.resumed += int64(v)
	}
	if _, err := p.state.WriteAt(buf, 0); err != nil {
		p.close()
		return nil, wrapIO(err, "write "+statePath)
	}
	if err := p.state.Sync(); err != nil {
		p.close()
		return nil, wrapIO(err, "sync "+statePath)
	}
	return p, nil
}

// preallocate reserves the data file's full size, so that a disk filled by
// someone else cannot break the pull later. Filesystems without fallocate
// are fine: space is then claimed as data arrives.
func (p *partial) preallocate() error {
	if p.size == 0 {
		return nil
	}
	if err := unix.Fallocate(int(p.data.Fd()), 0, 0, p.size); err != nil && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return wrapIO(err, "preallocate "+p.dataPath)
	}
	return nil
}

// load reads counters from an existing state file; false means unusable.
func (p *partial) load(st *os.File, want []byte, boot string) bool {
	buf := make([]byte, stateHdrSize+16*p.n)
	if _, err := st.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	if !bytes.Equal(buf[:88], want[:88]) {
		return false
	}
	if _, err := os.Stat(p.dataPath); err != nil {
		return false
	}
	prevBoot := string(bytes.TrimRight(buf[88:128], "\x00"))
	for k := 0; k < p.n; k++ {
		off := p.durableOff(k)
		if prevBoot == boot {
			off = p.liveOff(k)
		}
		v := int64(binary.LittleEndian.Uint64(buf[off:]))
		if v < 0 || v > p.chunkLen(k) {
			return false
		}
		p.written[k].Store(v)
	}
	return true
}

// advance records n more bytes written in chunk k.
func (p *partial) advance(k int, n int64) error {
	v := p.written[k].Add(n)
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(v))
	_, err := p.state.WriteAt(b[:], p.liveOff(k))
	return err
}

// setAtLeast raises chunk k's counter to v (sequential mode, where one
// stream rewrites chunks others may have started).
func (p *partial) setAtLeast(k int, v int64) error {
	for {
		cur := p.written[k].Load()
		if cur >= v {
			return nil
		}
		if p.written[k].CompareAndSwap(cur, v) {
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], uint64(v))
			_, err := p.state.WriteAt(b[:], p.liveOff(k))
			return err
		}
	}
}

// checkpoint makes the current counters durable: data first, then the
// durable counter copy.
func (p *partial) checkpoint() error {
	snap := make([]byte, 8*p.n)
	for k := range p.written {
		binary.LittleEndian.PutUint64(snap[8*k:], uint64(p.written[k].Load()))
	}
	if err := unix.Fdatasync(int(p.data.Fd())); err != nil {
		return wrapIO(err, "sync "+p.dataPath)
	}
	if _, err := p.state.WriteAt(snap, p.durableOff(0)); err != nil {
		return wrapIO(err, "write "+p.statePath)
	}
	return unix.Fdatasync(int(p.state.Fd()))
}

func (p *partial) done() int64 {
	var t int64
	for k := range p.written {
		t += p.written[k].Load()
	}
	return t
}

func (p *partial) complete() bool { return p.done() == p.size }

// contiguous returns the end of the fully written prefix starting at from.
func (p *partial) contiguous(from int64) int64 {
	for k := int(from / max(p.chunk, 1)); k < p.n; k++ {
		w := p.written[k].Load()
		if w < p.chunkLen(k) {
			return max(from, p.chunkStart(k)+w)
		}
	}
	return p.size
}

// reset discards all data, after a checksum mismatch.
func (p *partial) reset() error {
	for k := range p.written {
		p.written[k].Store(0)
	}
	if err := p.data.Truncate(0); err != nil {
		return err
	}
	if p.size > 0 {
		unix.Fallocate(int(p.data.Fd()), 0, 0, p.size)
	}
	zero := make([]byte, 16*p.n)
	_, err := p.state.WriteAt(zero, stateHdrSize)
	return err
}

func (p *partial) close() {
	if p.data != nil {
		p.data.Close()
	}
	if p.state != nil {
		p.state.Close()
	}
}

func wrapIO(err error, what string) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return &noSpaceError{what: what, err: err}
	}
	return fmt.Errorf("%s: %w", what, err)
}

type noSpaceError struct {
	what string
	err  error
}

func (e *noSpaceError) Error() string { return e.what + ": " + e.err.Error() }
func (e *noSpaceError) Unwrap() error { return e.err }
