package slotd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// requestFile is the name hal0-apid writes a slot's request under
// (slots.RequestPath); it replaces it atomically (temp file + rename).
const requestFile = "request.json"

// requestWatcher tells which slots got a new request.json, through
// inotify: hal0-apid writes the file and hal0-slotd wakes up, with no
// polling and no other channel between them. It watches the slots
// directory for slot directories that appear (created by apid first) and
// each slot directory for the rename that installs a request.
type requestWatcher struct {
	f    *os.File
	fd   int    // f's descriptor; f.Fd() would make f blocking
	root string // <state>/slots

	mu    sync.Mutex
	slots map[string]bool  // slot names we serve
	wds   map[int32]string // watch descriptor → slot name ("" for root)
}

const (
	slotDirMask = unix.IN_MOVED_TO | unix.IN_CLOSE_WRITE | unix.IN_ONLYDIR
	rootMask    = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_ONLYDIR
)

// watchRequests sets up the watches for the named slots under root. The
// caller reads every request once after this returns, so a request
// written before the watch existed is not missed.
func watchRequests(root string, names []string) (*requestWatcher, error) {
	// Our own slot directories first, so that creating them does not
	// show up as events.
	for _, n := range names {
		if err := os.MkdirAll(filepath.Join(root, n), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	// Non-blocking, so the runtime poller waits for it and Close ends a
	// Read in progress.
	w := &requestWatcher{f: os.NewFile(uintptr(fd), "inotify"), fd: fd, root: root, slots: map[string]bool{}, wds: map[int32]string{}}
	if err := w.add(root, ""); err != nil {
		w.f.Close()
		return nil, err
	}
	for _, n := range names {
		w.slots[n] = true
		if err := w.add(filepath.Join(root, n), n); err != nil {
			w.f.Close()
			return nil, err
		}
	}
	return w, nil
}

func (w *requestWatcher) add(dir, name string) error {
	mask := uint32(slotDirMask)
	if name == "" {
		mask = rootMask
	}
	wd, err := unix.InotifyAddWatch(w.fd, dir, mask)
	if err != nil {
		return fmt.Errorf("inotify watch %s: %w", dir, err)
	}
	w.mu.Lock()
	w.wds[int32(wd)] = name
	w.mu.Unlock()
	return nil
}

// run sends the name of every slot whose request may have changed until
// ctx ends, then closes the watcher. Repeats are harmless: a request is
// applied once, by id.
func (w *requestWatcher) run(ctx context.Context, out chan<- string, logf func(string, ...any)) {
	go func() {
		<-ctx.Done()
		w.f.Close()
	}()
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, os.ErrClosed) {
				logf("slotd: reading inotify events: %v; requests now wait for the next restart", err)
			}
			return
		}
		for _, name := range w.parse(buf[:n], logf) {
			select {
			case out <- name:
			case <-ctx.Done():
				return
			}
		}
	}
}

// parse decodes a batch of events into slot names to look at.
func (w *requestWatcher) parse(b []byte, logf func(string, ...any)) []string {
	var names []string
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := unix.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			break
		}
		file := string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00"))
		b = b[end:]
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			// Events were lost: look at every slot.
			w.mu.Lock()
			for n := range w.slots {
				names = append(names, n)
			}
			w.mu.Unlock()
			continue
		}
		w.mu.Lock()
		slot, ok := w.wds[ev.Wd]
		if ev.Mask&unix.IN_IGNORED != 0 {
			delete(w.wds, ev.Wd) // the directory went away
			ok = false
		}
		known := w.slots[file]
		w.mu.Unlock()
		switch {
		case !ok:
		case slot == "" && known:
			// A slot directory was (re)created: watch it, then look
			// for a request already inside.
			if err := w.add(filepath.Join(w.root, file), file); err != nil {
				logf("slotd: %v", err)
			}
			names = append(names, file)
		case slot != "" && file == requestFile:
			names = append(names, slot)
		}
	}
	return names
}
