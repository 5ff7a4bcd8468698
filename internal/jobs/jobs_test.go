package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/fsutil"
)

func TestBeginDeduplicatesRunningJobs(t *testing.T) {
	s := Open(t.TempDir())
	ctx := context.Background()
	var wg sync.WaitGroup
	ids := make(chan string, 16)
	created := make(chan bool, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, c, err := s.Begin(ctx, Job{Ref: "org/name:Q4_K_M", Kind: "hf"})
			if err != nil {
				t.Error(err)
				return
			}
			ids <- j.ID
			created <- c
		}()
	}
	wg.Wait()
	close(ids)
	close(created)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	n := 0
	for c := range created {
		if c {
			n++
		}
	}
	if len(seen) != 1 || n != 1 {
		t.Fatalf("%d distinct jobs, %d created; want one", len(seen), n)
	}

	// Once the job ends, Begin starts a new one and Current follows it.
	var first string
	for id := range seen {
		first = id
	}
	if _, err := s.Update(ctx, first, func(j *Job) error { j.State = Failed; return nil }); err != nil {
		t.Fatal(err)
	}
	j2, c, err := s.Begin(ctx, Job{Ref: "org/name:Q4_K_M"})
	if err != nil || !c || j2.ID == first {
		t.Fatalf("after failure: %+v created=%v err=%v", j2, c, err)
	}
	cur, err := s.Current("org/name:Q4_K_M")
	if err != nil || cur.ID != j2.ID {
		t.Fatalf("Current = %+v, %v; want %s", cur, err, j2.ID)
	}
	old, err := s.Get(first)
	if err != nil || old.State != Failed {
		t.Fatalf("old record: %+v %v", old, err)
	}
}

func TestGetErrors(t *testing.T) {
	s := Open(t.TempDir())
	for _, id := range []string{"", "../../etc/passwd", "0123456789abcdef"} {
		if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
	}
	if _, err := s.Current("no/such:Q4"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Current: %v", err)
	}
	// A corrupt record is an error naming the file, not a silent miss.
	id := NewID()
	os.WriteFile(filepath.Join(s.Dir(), id+".json"), []byte("{half"), 0o644)
	if _, err := s.Get(id); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("corrupt record: %v", err)
	}
	_, errs := s.List()
	if len(errs) != 1 {
		t.Errorf("List errors = %v, want the corrupt record", errs)
	}
}

func TestListAndPrune(t *testing.T) {
	s := Open(t.TempDir())
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	ctx := context.Background()
	var ids []string
	for i := 0; i < 3; i++ {
		j, _, err := s.Begin(ctx, Job{Ref: "a/b"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
		fin := now
		s.Update(ctx, j.ID, func(j *Job) error { j.State = Completed; j.FinishedAt = &fin; return nil })
		now = now.Add(time.Hour)
	}
	all, errs := s.List()
	if len(all) != 3 || len(errs) != 0 || all[0].ID != ids[2] {
		t.Fatalf("List newest-first: %v %v", all, errs)
	}
	n, _ := s.Prune(90 * time.Minute)
	// The oldest finished 3h ago and the middle 2h ago are pruned; the
	// newest is kept as the ref's current job whatever its age.
	if n != 2 {
		t.Fatalf("pruned %d, want 2", n)
	}
	if _, err := s.Current("a/b"); err != nil {
		t.Fatal(err)
	}
}

func TestWorkerLock(t *testing.T) {
	s := Open(t.TempDir())
	if s.WorkerAlive("qwen3:4b") {
		t.Fatal("alive before lock")
	}
	l, err := s.LockRef("qwen3:4b")
	if err != nil {
		t.Fatal(err)
	}
	if !s.WorkerAlive("qwen3:4b") {
		t.Fatal("not alive while locked")
	}
	if _, err := s.LockRef("qwen3:4b"); !errors.Is(err, fsutil.ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	l.Unlock()
	if s.WorkerAlive("qwen3:4b") {
		t.Fatal("alive after unlock")
	}
}

func TestElapsedAndETA(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fin := t0.Add(10 * time.Second)
	for _, tc := range []struct {
		name    string
		j       Job
		now     time.Time
		elapsed time.Duration
		eta     time.Duration
	}{
		{"queued", Job{State: Queued}, t0, 0, -1},
		{"running", Job{State: Running, StartedAt: &t0, BytesTotal: 1000, BytesDone: 400, RateBPS: 100}, t0.Add(4 * time.Second), 4 * time.Second, 6 * time.Second},
		{"no rate", Job{State: Running, StartedAt: &t0, BytesTotal: 1000}, t0, 0, -1},
		{"done", Job{State: Completed, StartedAt: &t0, FinishedAt: &fin}, t0.Add(time.Hour), 10 * time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.j.Elapsed(tc.now); got != tc.elapsed {
				t.Errorf("Elapsed %v want %v", got, tc.elapsed)
			}
			if got := tc.j.ETA(); got != tc.eta {
				t.Errorf("ETA %v want %v", got, tc.eta)
			}
		})
	}
}

// TestCurrentSeesEveryChange: Current decodes a record once and serves it
// from its cache until the file changes; every change made through the
// store, or by another process's store, shows at once, and a caller that
// changes what it got does not change what the next caller gets.
func TestCurrentSeesEveryChange(t *testing.T) {
	dir := t.TempDir()
	s, other := Open(dir), Open(dir) // other stands in for a worker process
	ctx := context.Background()
	j, _, err := s.Begin(ctx, Job{Ref: "o/m:Q4_K_M", Options: Options{Include: []string{"*.gguf"}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		want := int64(i * 1000)
		if _, err := other.Update(ctx, j.ID, func(j *Job) error { j.BytesDone = want; return nil }); err != nil {
			t.Fatal(err)
		}
		got, err := s.Current("o/m:Q4_K_M")
		if err != nil {
			t.Fatal(err)
		}
		if got.BytesDone != want {
			t.Fatalf("update %d: Current says %d bytes, the record %d", i, got.BytesDone, want)
		}
		got.Options.Include[0] = "changed by a caller"
		got.BytesDone = -1
	}
	again, err := s.Current("o/m:Q4_K_M")
	if err != nil {
		t.Fatal(err)
	}
	if again.Options.Include[0] != "*.gguf" || again.BytesDone != 49000 {
		t.Errorf("a caller's changes leaked into the cache: %+v", again)
	}
	if _, err := other.Update(ctx, j.ID, func(j *Job) error { j.State = Completed; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Current("o/m:Q4_K_M"); got.State != Completed {
		t.Errorf("state after completion: %s", got.State)
	}
	if _, err := s.Current("o/other"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown ref: %v", err)
	}
}

// TestAcquireRefWaitsOutAProbe: WorkerAlive takes the worker lock for an
// instant; a worker starting at that moment waits for it instead of
// reporting the ref busy. A lock held for good is still busy.
func TestAcquireRefWaitsOutAProbe(t *testing.T) {
	s := Open(t.TempDir())
	ctx := context.Background()
	probe, err := s.LockRef("o/m")
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	s.busyHook = func() { once.Do(func() { probe.Unlock() }) } // the probe ends while AcquireRef waits
	l, err := s.AcquireRef(ctx, "o/m")
	if err != nil {
		t.Fatalf("AcquireRef after a probe: %v", err)
	}
	s.busyHook = nil
	if _, err := s.AcquireRef(ctx, "o/m"); !errors.Is(err, fsutil.ErrLocked) {
		t.Errorf("AcquireRef while a worker holds the lock: %v, want ErrLocked", err)
	}
	l.Unlock()
}
