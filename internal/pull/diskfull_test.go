package pull

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/ref"
)

// smallFS mounts a size-limited tmpfs for the test (root only): a real
// filesystem that really runs out of space.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (make test runs as root)")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestDiskFullDuringPullThenResume gives the pull a filesystem that has
// room for the preflight but is filled by someone else mid-transfer. Without
// preallocation (as on filesystems lacking fallocate): the pull fails cleanly with no_space, keeps its
// partial data, and completes after space is freed, transferring only what
// was missing.
func TestDiskFullDuringPullThenResume(t *testing.T) {
	for _, prealloc := range []bool{false, true} {
		t.Run(map[bool]string{false: "no fallocate", true: "fallocate"}[prealloc], func(t *testing.T) { diskFull(t, prealloc) })
	}
}

func diskFull(t *testing.T, prealloc bool) {
	fs := smallFS(t, "24m")
	f := newFixture(t, hubtest.Options{})
	f.cfg.Paths.ModelRoot = fs
	// Hold the second shard after its first 256 KiB, so the pull is
	// certainly mid-transfer when someone else fills the disk; then let it
	// go. The stall watchdog retries the range, and its next write meets
	// the full disk (unless the space was preallocated).
	filler := filepath.Join(fs, "filler")
	shard := "m-Q4_K_M-00002-of-00003.gguf"
	f.hub.AddFault(hubtest.Fault{Path: shard, Where: "cdn", StallAt: 256 << 10, StallFor: time.Minute})
	e := f.engine()
	e.Files = 1
	e.NoPreallocate = !prealloc
	filled := make(chan struct{})
	go func() {
		defer close(filled)
		deadline := time.Now().Add(30 * time.Second)
		for f.hub.Stats().File("demo/m", shard).Bytes < 256<<10 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // poll the condition without spinning a core
		}
		var st unix.Statfs_t
		if unix.Statfs(fs, &st) == nil {
			free := int64(st.Bavail) * int64(st.Bsize)
			os.WriteFile(filler, make([]byte, max(free-(64<<10), 0)), 0o644)
		}
		f.hub.ClearFaults()
	}()
	_, err := e.Pull(context.Background(), Request{Ref: ref.MustParse("demo/m:Q4_K_M")})
	<-filled
	if prealloc {
		// The space was reserved up front: somebody else filling the disk
		// cannot break the pull.
		if err != nil {
			t.Fatalf("preallocated pull failed: %v", err)
		}
		return
	}
	if api.CodeOf(err) != api.CodeNoSpace {
		t.Fatalf("err = %v, want %s", err, api.CodeNoSpace)
	}
	if ents, _ := os.ReadDir(f.cfg.Paths.StagingDir()); len(ents) == 0 {
		t.Fatal("partials discarded on disk full")
	}
	sentBefore := f.hub.Stats().Bytes
	os.Remove(filler)
	f.hub.ClearFaults()
	f.hub.ResetStats()
	m, err := f.engine().Pull(context.Background(), Request{Ref: ref.MustParse("demo/m:Q4_K_M")})
	if err != nil {
		t.Fatal(err)
	}
	f.checkInstalled(t, m, ggufOnly(f.files))
	if got := f.hub.Stats().Bytes; got >= m.SizeBytes {
		t.Errorf("resume after disk full transferred %d of %d bytes (first run sent %d)", got, m.SizeBytes, sentBefore)
	}
}
