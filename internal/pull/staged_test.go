package pull

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
)

// TestPinnedAndStaged: a pull reports what it pinned before downloading,
// and another reader (as hal0-apid does from another process) follows a
// file's written prefix from the stage: while the hub holds the first
// range of a shard 300 KiB in, exactly those bytes are readable from byte
// 0. The gated field reaches the registry.
func TestPinnedAndStaged(t *testing.T) {
	f := newFixture(t, hubtest.Options{})
	files := f.hub.AddRepo(hubtest.Repo{ID: "demo/g", Gated: "auto", Approved: true, Files: f.files}).Files
	f.cfg.HF.Token = config.NewSecret(testToken)
	first := files[0]
	hold, held := make(chan struct{}), make(chan struct{})
	const at = 300 << 10
	// The first range of the shard requested stops 300 KiB in (ranges
	// run in parallel: it need not be the one at byte 0).
	f.hub.AddFault(hubtest.Fault{Repo: "demo/g", Path: first.Path, Where: "cdn", Times: 1, StallAt: at, Hold: hold, Held: held})
	e := f.engine()
	pinned := make(chan *Pinned, 1)
	done := make(chan error, 1)
	var m *registry.Model
	go func() {
		var err error
		m, err = e.Pull(context.Background(), Request{Ref: ref.MustParse("demo/g:Q4_K_M"), OnPinned: func(p *Pinned) { pinned <- p }})
		done <- err
	}()
	p := <-pinned
	if p.Repo != "demo/g" || p.Commit != f.hub.Repo("demo/g").Commit || p.Gated != "auto" || len(p.Files) != 3 {
		t.Fatalf("pinned %+v", p)
	}
	var pf PinnedFile
	for _, x := range p.Files {
		if x.Path == first.Path {
			pf = x
		}
	}
	if pf.Size != first.Size || !pf.LFS || pf.SHA256 != first.SHA256 {
		t.Fatalf("pinned file %+v", pf)
	}
	<-held
	st, err := OpenStaged(p.Stage, pf)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Everything before the held range completes; the written prefix then
	// ends inside it. The worker records counters right after each write;
	// poll them.
	var heldStart int64 = -1
	for _, r := range f.hub.Requests() {
		if r.Fault != "" {
			fmt.Sscanf(r.Range, "bytes=%d-", &heldStart)
		}
	}
	if heldStart < 0 {
		t.Fatal("no held request in the hub's log")
	}
	// The worker writes once it holds 64 KiB (fetch.go), so the last
	// bytes before the hold may still be in its buffer.
	hi := heldStart + at
	lo := hi - 64<<10
	var w int64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if w, err = st.Written(); err != nil {
			t.Fatal(err)
		}
		if w > hi {
			t.Fatalf("written %d while the hub holds the download at %d", w, hi)
		}
		if w >= lo {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("written %d, want %d to %d while held", w, lo, hi)
		}
	}
	buf := make([]byte, w)
	if _, err := st.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, first.Data[:w]) {
		t.Fatalf("staged prefix: %v", err)
	}
	// A reader for another version of the file is refused.
	other := pf
	other.SHA256 = sha([]byte("other"))
	if s2, err := OpenStaged(p.Stage, other); err == nil {
		s2.Close()
		t.Fatal("opened a partial under another hash")
	}
	close(hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m.Gated != "auto" {
		t.Errorf("registry entry gated %q", m.Gated)
	}
	reg, _ := registry.Open(f.cfg.Paths.RegistryFile()).Load()
	if got, _ := reg.Get(m.ID); got == nil || got.Gated != "auto" {
		t.Errorf("stored entry: %+v", got)
	}
	if _, err := OpenStaged(p.Stage, pf); err != ErrStagedGone {
		t.Errorf("after install: %v, want ErrStagedGone", err)
	}
	if _, err := os.Stat(p.Stage); !os.IsNotExist(err) {
		t.Errorf("stage still there: %v", err)
	}
}
