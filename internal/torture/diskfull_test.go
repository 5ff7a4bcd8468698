package torture

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/pull"
	"github.com/hal0ai/hal0/internal/ref"
)

// ext4FS makes a small ext4 filesystem in an image file, loop-mounts it
// for the test and checks it with e2fsck after unmounting: a real
// filesystem that really fills up (internal/pull's disk-full test uses a
// size-limited tmpfs). Root only.
func ext4FS(t *testing.T, size int64) string {
	t.Helper()
	required := os.Getenv(livesystemd.EnvRequired) == "1"
	if os.Geteuid() != 0 {
		t.Skip("loop-mounting an ext4 image needs root (make test runs as root)")
	}
	for _, tool := range []string{"mke2fs", "e2fsck", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			if required {
				t.Fatalf("%s missing (.ci/run installs e2fsprogs): %v", tool, err)
			}
			t.Skipf("%s missing: %v", tool, err)
		}
	}
	dir := newHome(t)
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	// -m 0: no blocks reserved for root, so "free" is what a pull sees.
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		if required {
			t.Fatalf("mount -o loop: %v\n%s", err, out)
		}
		t.Skipf("cannot loop-mount: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// Something briefly holding the filesystem (a process of this
		// test still exiting) makes umount say "busy": retry, bounded.
		var out []byte
		var err error
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if out, err = exec.Command("umount", mnt).CombinedOutput(); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			users, _ := exec.Command("fuser", "-vm", mnt).CombinedOutput()
			t.Errorf("umount: %v\n%s\nusers:\n%s", err, out, users)
			exec.Command("umount", "-l", mnt).Run()
			return
		}
		// A clean filesystem after all the filling and freeing.
		if out, err := exec.Command("e2fsck", "-f", "-n", img).CombinedOutput(); err != nil {
			t.Errorf("e2fsck after the test: %v\n%s", err, out)
		}
	})
	return mnt
}

// fill writes a file until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("filling: %v", err)
			}
			break
		}
	}
	f.Sync()
}

// TestDiskFullExt4 runs pulls on a 40 MiB ext4 filesystem: the pre-flight
// refuses a model that cannot fit before downloading a byte; a pull whose
// files are preallocated survives someone filling the disk mid-pull; and
// where preallocation is missing (filesystems without fallocate), the
// fill fails the pull cleanly with no_space, keeps its partial data, and
// the pull resumes once space is freed.
func TestDiskFullExt4(t *testing.T) {
	t.Parallel()
	mnt := ext4FS(t, 40<<20)
	hub := newHub(t, hubtest.Options{})
	big := addModel(hub, "torture/big", 3, 16<<20)
	fits := addModel(hub, "torture/fits", 3, 6<<20)
	home := newHome(t)
	env := baseEnv(home, hub.URL, "HAL0_MODEL_ROOT="+mnt, "HAL0_PULL_CHUNK_SIZE=1MiB")

	freeSpace := func() int64 {
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Bavail) * int64(st.Bsize)
	}
	t.Run("preflight refuses", func(t *testing.T) {
		free := freeSpace()
		p := startPull(t, env, "torture/big:Q4_K_M")
		exit := p.wait(t, 30*time.Second)
		j := jobOf(t, home, "torture/big:Q4_K_M")
		if exit != api.ExitNoSpace || j.ErrorCode != api.CodeNoSpace {
			t.Fatalf("exit %d, job %+v\n%s", exit, j, p.out)
		}
		for _, w := range []string{"needs", "free", mnt} {
			if !strings.Contains(j.Error, w) {
				t.Errorf("error %q does not say %q", j.Error, w)
			}
		}
		if n := hub.Stats().File("torture/big", big[0].Path).Bytes; n != 0 {
			t.Errorf("downloaded %d bytes before refusing", n)
		}
		checkNotInstalled(t, home, ref.MustParse("torture/big:Q4_K_M"))
		// No space is held by the refused pull (no preallocated files).
		if after := freeSpace(); after < free-1<<20 {
			t.Errorf("the refused pull keeps %d bytes of the disk", free-after)
		}
	})

	// Hold the second shard after 256 KiB, fill the disk, let go.
	holdAndFill := func(t *testing.T, start func() (wait func() error, ended func() bool)) error {
		hub.ResetStats()
		hub.AddFault(hubtest.Fault{Repo: "torture/fits", Path: fits[1].Path, Where: "cdn", StallAt: 256 << 10})
		wait, ended := start()
		waitFor(t, "the second shard held", 30*time.Second, func() bool {
			if ended() {
				t.Fatalf("the pull ended before the disk was filled: %v", wait())
			}
			return hub.Stats().File("torture/fits", fits[1].Path).Bytes >= 256<<10
		})
		fill(t, filepath.Join(mnt, "filler"))
		hub.ClearFaults()
		hub.ReleaseStalls()
		return wait()
	}

	t.Run("fill during a preallocated pull", func(t *testing.T) {
		defer os.Remove(filepath.Join(mnt, "filler"))
		err := holdAndFill(t, func() (func() error, func() bool) {
			p := startPull(t, env, "torture/fits:Q4_K_M")
			return func() error {
				if code := p.wait(t, 60*time.Second); code != 0 {
					return errors.New(p.out.String())
				}
				return nil
			}, p.done
		})
		if err != nil {
			t.Fatalf("the preallocated pull failed when the disk filled: %v", err)
		}
		m := checkInstalled(t, home, "torture/fits:Q4_K_M", fits)
		// Make room for the next case.
		os.RemoveAll(m.Dir)
		os.Remove(config.Default(home).Paths.RegistryFile())
	})

	t.Run("fill without fallocate, then resume", func(t *testing.T) {
		// The engine in-process: NoPreallocate (what filesystems without
		// fallocate get) is not something hal0-pull can be told.
		cfg := config.Default(home)
		cfg.Paths.ModelRoot = mnt
		cfg.HF.Endpoint = hub.URL
		cfg.Pull.DiskReserve = 0
		cfg.Pull.ChunkSize = 1 << 20
		cfg.Pull.StallTimeout = config.Duration(30 * time.Second)
		engine := func() *pull.Engine {
			e := pull.New(cfg)
			e.NoPreallocate = true
			e.Files = 1
			e.BackoffBase = 5 * time.Millisecond
			return e
		}
		rf := ref.MustParse("torture/fits@main:Q4_K_M")
		err := holdAndFill(t, func() (func() error, func() bool) {
			done := make(chan error, 1)
			go func() {
				_, err := engine().Pull(context.Background(), pull.Request{Ref: rf})
				done <- err
			}()
			var result error
			finished := false
			wait := func() error {
				if !finished {
					result, finished = <-done, true
				}
				return result
			}
			ended := func() bool {
				if finished {
					return true
				}
				select {
				case result = <-done:
					finished = true
					return true
				default:
					return false
				}
			}
			return wait, ended
		})
		if api.CodeOf(err) != api.CodeNoSpace || !strings.Contains(err.Error(), "partial data is kept") {
			t.Fatalf("err = %v, want %s saying partials are kept", err, api.CodeNoSpace)
		}
		kept, _ := pull.StagedBytes(cfg.Paths.StagingDir())
		if kept == 0 {
			t.Fatal("the partial data was dropped on disk full")
		}
		if _, ok := loadRegistry(t, home).Get(rf.String()); ok {
			t.Fatal("a pull that hit a full disk left a registry entry")
		}
		os.Remove(filepath.Join(mnt, "filler"))
		hub.ResetStats()
		if _, err := engine().Pull(context.Background(), pull.Request{Ref: rf}); err != nil {
			t.Fatalf("resume after freeing space: %v", err)
		}
		checkInstalled(t, home, rf.String(), fits)
		if sent, total := hub.Stats().Bytes, totalSize(fits); sent > total-kept+4<<20 || sent >= total {
			t.Errorf("the resume transferred %d bytes; %d of %d were kept", sent, kept, total)
		}
	})
}
