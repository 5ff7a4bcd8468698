// Package fsutil holds the durable-write and locking primitives every state
// file in hal0 goes through: registry, job records, slot state, catalog.
//
// The rule is the one databases follow: write a temp file in the same
// directory, fsync it, rename it over the target, then fsync the directory so
// the rename itself survives a power cut. A reader therefore sees either the
// old file or the new one, never a torn mix.
package fsutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile atomically replaces path with data. The parent directory is
// created if missing. perm applies to a newly created file.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteFileFunc(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFileFunc is WriteFile for callers that stream their content.
func WriteFileFunc(path string, perm os.FileMode, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = write(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that renames and creations inside it are
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		// Some filesystems (and tmpfs on old kernels) reject fsync on a
		// directory; that is not a reason to fail a write that is otherwise
		// complete.
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// Lock is an exclusive advisory lock held on a lock file (flock(2)). Locks
// are released by the kernel when the process dies, so a killed writer can
// never wedge the next one.
type Lock struct {
	f *os.File
}

// ErrLocked is returned by TryLock when another process holds the lock.
var ErrLocked = errors.New("locked by another process")

// LockFile blocks until it holds an exclusive lock on path (created if
// missing).
func LockFile(path string) (*Lock, error) {
	return lock(path, syscall.LOCK_EX)
}

// TryLockFile takes the lock without waiting; it returns ErrLocked when
// another process holds it.
func TryLockFile(path string) (*Lock, error) {
	return lock(path, syscall.LOCK_EX|syscall.LOCK_NB)
}

func lock(path string, how int) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock. It is safe to call on a nil Lock.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the flock
	l.f = nil
	return err
}

// LockFileContext is LockFile that gives up when ctx ends. flock(2) has no
// timeout, so the blocking call runs in a goroutine that releases the lock
// itself if the caller has already left.
func LockFileContext(ctx context.Context, path string) (*Lock, error) {
	type res struct {
		l   *Lock
		err error
	}
	ch := make(chan res, 1)
	go func() {
		l, err := LockFile(path)
		ch <- res{l, err}
	}()
	select {
	case r := <-ch:
		return r.l, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.l != nil {
				r.l.Unlock()
			}
		}()
		return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
	}
}
