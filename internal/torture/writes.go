package torture

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WriteCounter counts completed writes of one file: a rename onto its name
// (how hal0 replaces files atomically) or a close after writing it in
// place. It watches the directory with inotify, so it sees writes by any
// process. Create it before the writes happen; Close it when done.
type WriteCounter struct {
	f    *os.File
	name string
	n    atomic.Int64
	done chan struct{}
	once sync.Once
}

// CountWrites starts counting writes of path. Its directory must exist.
func CountWrites(path string) (*WriteCounter, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(path), unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify watch %s: %w", filepath.Dir(path), err)
	}
	// A non-blocking fd in an *os.File goes through the runtime poller, so
	// a deadline can end a pending Read (close(2) would not).
	w := &WriteCounter{f: os.NewFile(uintptr(fd), "inotify"), name: filepath.Base(path), done: make(chan struct{})}
	go w.loop()
	return w, nil
}

func (w *WriteCounter) loop() {
	defer close(w.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if n > 0 {
			w.parse(buf[:n])
		}
		if err != nil {
			break
		}
	}
	// Close set a deadline: take what the kernel had queued by then,
	// reading the fd directly until it is empty (a raw read with the
	// expired deadline would not even try).
	w.f.SetReadDeadline(time.Time{})
	rc, err := w.f.SyscallConn()
	if err != nil {
		return
	}
	rc.Read(func(fd uintptr) bool {
		for {
			n, err := unix.Read(int(fd), buf)
			if n > 0 {
				w.parse(buf[:n])
			}
			if err != nil && errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || n <= 0 {
				return true
			}
		}
	})
}

func (w *WriteCounter) parse(b []byte) {
	for off := 0; off+unix.SizeofInotifyEvent <= len(b); {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[off]))
		end := off + unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			return
		}
		name := b[off+unix.SizeofInotifyEvent : end]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		if string(name) == w.name && ev.Mask&(unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE) != 0 {
			w.n.Add(1)
		}
		off = end
	}
}

// Count returns the writes read so far; events arrive asynchronously, so
// the final figure is Close's.
func (w *WriteCounter) Count() int64 { return w.n.Load() }

// Close stops watching and returns the count of every write that completed
// before the call.
func (w *WriteCounter) Close() int64 {
	w.once.Do(func() {
		w.f.SetReadDeadline(time.Now())
		<-w.done
		w.f.Close()
	})
	return w.n.Load()
}
