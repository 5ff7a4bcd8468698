package torture

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/pull"
	"github.com/hal0ai/hal0/internal/ref"
)

// TestKillResume kills the real hal0-pull with SIGKILL at random moments of
// a sharded pull, each time starting it again, until a last run finishes.
// Every kill lands at a point drawn uniformly from the bytes of the pull
// (or, when the partial data is already past it, at a random moment of the
// next run's start-up: resolve, partial files being opened). In the end
// the files must hash to the hub's SHA-256, the registry must have been
// written exactly once (counted with inotify) with exactly one entry, one
// job record must tell the whole story, and each kill may have cost at
// most the ranges in flight.
//
// A kill can never cost more than the ranges in flight, one per
// connection: each kill is held to that. The whole series is held to what
// the link allows. Over a link slower than the disk (the hub sends 8 MiB/s
// per response, as from the internet) a kill loses what was in flight in
// the network buffers, and all the runs together transfer at most one
// range per kill more than the model; at loopback speed with 4
// connections the hub pushes whole ranges into the socket buffers before
// the client reads them, so the series may cost up to a range per
// connection per kill.
func TestKillResume(t *testing.T) {
	for _, tc := range []struct {
		name        string
		conns       int
		kills       int
		throttle    int64
		totalChunks int64 // ranges per kill the whole series may cost
	}{
		{"4 connections at 8 MiB per s", 4, pick(8, 50), 8 << 20, 1},
		{"4 connections at loopback speed", 4, pick(4, 50), 0, 4},
		{"1 connection at loopback speed", 1, pick(0, 50), 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kills == 0 {
				t.Skip("HAL0_TORTURE=full only")
			}
			// One at a time, and not beside the parallel tests: how much a
			// kill costs depends on the client keeping up with the link.
			killResume(t, tc.conns, tc.kills, tc.throttle, tc.totalChunks)
		})
	}
}

func killResume(t *testing.T, conns, kills int, throttle, totalChunks int64) {
	const chunk = 1 << 20                       // the smallest pull.chunk_size allowed
	shard := pick[int64](4<<20, 16<<20) + 12345 // not a multiple of the chunk: a short last range
	hub := newHub(t, hubtest.Options{})
	files := addModel(hub, "torture/kill", 3, shard)
	total := totalSize(files)
	if throttle > 0 {
		hub.AddFault(hubtest.Fault{Where: "cdn", Throttle: throttle})
	}
	rf := ref.MustParse("torture/kill:Q4_K_M")
	home := newHome(t)
	paths := config.Default(home).Paths
	stage := paths.StagingDir()
	env := baseEnv(home, hub.URL, "HAL0_PULL_CHUNK_SIZE=1MiB", fmt.Sprintf("HAL0_PULL_CONNECTIONS=%d", conns))
	if err := os.MkdirAll(filepath.Dir(paths.RegistryFile()), 0o755); err != nil {
		t.Fatal(err)
	}
	writes, err := CountWrites(paths.RegistryFile())
	if err != nil {
		t.Fatal(err)
	}
	defer writes.Close()

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, uint64(conns)))
	t.Logf("seed %d", seed)
	targets := make([]int64, kills)
	for i := range targets {
		targets[i] = 1 + rng.Int64N(total*98/100)
	}
	slices.Sort(targets)

	staged := func() int64 {
		n, err := pull.StagedBytes(stage)
		if err != nil {
			t.Fatalf("reading partial data: %v", err)
		}
		return n
	}
	settle := func() {
		// A killed client's responses end server-side a little later;
		// their byte counts are final only then.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hub.WaitIdle(ctx); err != nil {
			t.Fatalf("hub still busy 10 s after a kill: %v", err)
		}
	}

	tb := &Table{
		Title:  fmt.Sprintf("kill -9 of hal0-pull, %s, %s chunks, %s in 3 shards", t.Name(), MiB(chunk), MiB(total)),
		Header: []string{"kill", "moment", "on disk after", "served this run", "lost", "lost/chunk"},
	}
	var overheads []float64
	delivered, runs := 0, 0
	completedEarly := false
	for k := 0; k < kills; k++ {
		before := staged()
		served0 := hub.Stats().Bytes
		p := startPull(t, env, rf.String())
		runs++
		start := time.Now()
		moment := ""
		target := targets[k]
		delay := time.Duration(rng.Int64N(int64(30 * time.Millisecond)))
		deadline := start.Add(60 * time.Second)
		for {
			if p.done() {
				break
			}
			if target <= before {
				if time.Since(start) >= delay {
					moment = fmt.Sprintf("start-up +%v", delay.Round(time.Millisecond))
					break
				}
			} else if staged() >= target {
				moment = "at " + MiB(target)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %d: target %d never reached in 60 s; output:\n%s", runs, target, p.out)
			}
			time.Sleep(500 * time.Microsecond)
		}
		if moment != "" {
			p.cmd.Process.Signal(syscall.SIGKILL)
		}
		p.wait(t, 30*time.Second)
		ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() {
			if p.cmd.ProcessState.ExitCode() != 0 {
				t.Fatalf("run %d exited with %d before the kill; output:\n%s", runs, p.cmd.ProcessState.ExitCode(), p.out)
			}
			// The last target lies so close to the end that the pull
			// finished between two looks at its progress.
			completedEarly = true
			t.Logf("run %d completed before kill %d could land", runs, k+1)
			break
		}
		if ws.Signal() != syscall.SIGKILL {
			t.Fatalf("run %d died of %v", runs, ws.Signal())
		}
		delivered++
		settle()
		after := staged()
		served := hub.Stats().Bytes - served0
		lost := served - (after - before)
		overheads = append(overheads, float64(lost))
		tb.Add(delivered, moment, MiB(after), MiB(served), fmt.Sprintf("%d KiB", lost/1024), fmt.Sprintf("%.2f", float64(lost)/chunk))
		if lost > int64(conns)*chunk {
			t.Errorf("kill %d lost %d bytes, more than one %d-byte range per connection (%d)", delivered, lost, chunk, conns)
		}
	}
	if delivered < kills-1 || completedEarly && delivered < kills-1 {
		t.Fatalf("only %d of %d kills landed", delivered, kills)
	}

	// The last run finishes; it must not lose anything.
	served0, before := hub.Stats().Bytes, staged()
	if !completedEarly {
		p := startPull(t, env, rf.String())
		runs++
		if code := p.wait(t, 120*time.Second); code != 0 {
			t.Fatalf("the final run exited with %d:\n%s", code, p.out)
		}
		if extra := hub.Stats().Bytes - served0 - (total - before); extra != 0 {
			t.Errorf("the final run, never killed, transferred %d bytes more than were missing", extra)
		}
	}
	checkInstalled(t, home, rf.String(), files)
	if n := writes.Close(); n != 1 {
		t.Errorf("registry.toml written %d times over %d runs, want exactly once", n, runs)
	}
	all, errs := jobs.Open(paths.JobsDir()).List()
	if len(errs) != 0 || len(all) != 1 || all[0].State != jobs.Completed || all[0].Attempts < 1 || all[0].Attempts > runs {
		t.Errorf("job records %+v (%v): want one completed job with at most %d attempts", all, errs, runs)
	}
	if ents, _ := os.ReadDir(stage); len(ents) != 0 {
		t.Errorf("staging not cleaned after the install: %v", ents)
	}
	served := hub.Stats().Bytes
	st := Summarize(overheads)
	tb.Note("kills landed: %d, runs: %d, attempts in the job record: %d", delivered, runs, all[0].Attempts)
	tb.Note("bytes served: %d for a %d-byte model: overhead %d bytes = %.2f chunks in all", served, total, served-total, float64(served-total)/chunk)
	tb.Note("lost per kill: min %.0f KiB, median %.0f KiB, mean %.0f KiB (%.2f chunks), max %.0f KiB (%.2f chunks); bounds: %d chunk(s) for any kill, %d per kill over the series",
		st.Min/1024, st.Median/1024, st.Mean/1024, st.Mean/chunk, st.Max/1024, st.Max/chunk, conns, totalChunks)
	name := fmt.Sprintf("kill-resume-%dconn", conns)
	if throttle > 0 {
		name += "-throttled"
	}
	report(t, name, tb)
	if served > total+int64(delivered)*totalChunks*chunk {
		t.Errorf("served %d bytes in all: more than the model (%d) plus %d range(s) per kill (%d kills)", served, total, totalChunks, delivered)
	}
}
