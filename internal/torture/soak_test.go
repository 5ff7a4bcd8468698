package torture

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/apitest"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/ref"
)

// TestSoak runs the whole stack (socket-activated hal0-apid, hal0-slotd,
// hal0-pull@ and hal0-slot@ units, as the hal0 user) under a steady load
// for HAL0_SOAK (make soak; default 1h there): a model pulled, deleted and
// pulled again, status polled on both listeners, and a slot swapped
// between two models, all in loops. Every few seconds it samples the
// resident memory (VmRSS) and open file descriptors of hal0-apid,
// hal0-slotd and the running worker. After a warm-up (a fifth of the
// run), memory and descriptors of each daemon must stay flat: the median
// of the last quarter of samples within a tolerance of the first's. It
// also fails on a daemon that restarted, a loop that errs, or a pull or
// swap that does not end as asked.
func TestSoak(t *testing.T) {
	if soakFor <= 0 {
		t.Skip("set HAL0_SOAK=DURATION (make soak) to run the soak")
	}
	port := freePort(t)
	slot := fmt.Sprintf(`[slot]
port = %d
backend = "llama-server"
idle_timeout = "0s"

[model]
context_size = 4096

[server]
command = [%q, "--model", "{model}", "--port", "{port}", "--ctx", "{ctx}"]

[health]
timeout = "60s"
`, port, bins.standin)
	e := newStack(t, stackOpts{config: "[api]\nidle_exit = \"1h\"\n", slotd: true, slotTOML: slot})
	filesP := addModel(e.hub, "soak/p", 3, 4<<20)
	addModel(e.hub, "soak/a", 1, 1<<20)
	addModel(e.hub, "soak/b", 1, 1<<20)
	// Pulls take a while, as from the internet: 16 MiB/s per connection.
	e.hub.AddFault(hubtest.Fault{Repo: "soak/p", Where: "cdn", Throttle: 16 << 20})
	pulled, modelA, modelB := ref.MustParse("soak/p:Q4_K_M").String(), ref.MustParse("soak/a:Q4_K_M").String(), ref.MustParse("soak/b:Q4_K_M").String()
	for _, m := range []string{modelA, modelB} {
		e.unix.Pull(m)
		if st, _ := e.unix.WaitPull(m, "completed", 60*time.Second, final); st.State != "completed" {
			t.Fatalf("setup pull of %s: %+v", m, st)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), soakFor)
	defer cancel()
	var pulls, swaps, polls atomic.Int64
	var failMu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		failMu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		failMu.Unlock()
		cancel()
	}
	var wg sync.WaitGroup
	loop := func(name string, step func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := step(); err != nil && ctx.Err() == nil {
					fail("%s: %v", name, err)
					return
				}
			}
		}()
	}
	// The clients below use plain requests (no t.Fatal off the test
	// goroutine).
	do := func(c *apitest.Client, method, path, body string, want ...int) ([]byte, error) {
		code, b, err := c.Send(ctx, method, path, strings.NewReader(body), nil)
		if err != nil {
			return nil, err
		}
		if slices.Contains(want, code) {
			return b, nil
		}
		return nil, fmt.Errorf("%s %s: %d %s", method, path, code, b)
	}
	pause := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}

	loop("pulls", func() error {
		if _, err := do(e.unix, "POST", apitest.ModelPath(pulled, "/pull"), "", 202); err != nil {
			return err
		}
		for ctx.Err() == nil {
			b, err := do(e.unix, "GET", apitest.ModelPath(pulled, "/pull/status"), "", 200)
			if err != nil {
				return err
			}
			var st api.PullStatus
			json.Unmarshal(b, &st)
			if st.Final() {
				if st.State != "completed" {
					return fmt.Errorf("pull ended %s %s: %s", st.State, st.ErrorCode, st.Error)
				}
				pulls.Add(1)
				_, err := do(e.unix, "DELETE", apitest.ModelPath(pulled, ""), "", 200)
				return err
			}
			pause(100 * time.Millisecond)
		}
		return nil
	})
	for _, c := range []*apitest.Client{e.unix, e.web} {
		loop("polls", func() error {
			for _, p := range []string{"/api/pulls", "/api/models", "/api/slots", "/api/slots/primary", "/api/health", apitest.ModelPath(pulled, "/pull/status")} {
				if _, err := do(c, "GET", p, "", 200, 404); err != nil {
					return err
				}
				polls.Add(1)
			}
			pause(20 * time.Millisecond)
			return nil
		})
	}
	loop("swaps", func() error {
		b, err := do(e.unix, "GET", "/api/slots/primary", "", 200)
		if err != nil {
			return err
		}
		var s api.Slot
		json.Unmarshal(b, &s)
		action, target := "load", modelA
		switch {
		case s.Loaded() && s.ModelID == modelA:
			action, target = "swap", modelB
		case s.Loaded() && s.ModelID == modelB:
			action, target = "swap", modelA
		case s.State != "offline":
			return fmt.Errorf("slot %s (%s): %s", s.State, s.ModelID, s.Message)
		}
		if _, err := do(e.unix, "POST", "/api/slots/primary/"+action, `{"model":"`+target+`"}`, 202); err != nil {
			return err
		}
		deadline := time.Now().Add(60 * time.Second)
		for ctx.Err() == nil {
			b, err := do(e.unix, "GET", "/api/slots/primary", "", 200)
			if err != nil {
				return err
			}
			var s api.Slot
			json.Unmarshal(b, &s)
			if s.Settled() && s.Loaded() && s.ModelID == target {
				swaps.Add(1)
				return nil
			}
			if s.State == "error" || time.Now().After(deadline) {
				return fmt.Errorf("%s to %s: slot %s (%s): %s", action, target, s.State, s.ModelID, s.Message)
			}
			pause(50 * time.Millisecond)
		}
		return nil
	})

	// Sampling.
	type row struct {
		at                 time.Duration
		apid, slotd, work  ProcSample
		pulls, swaps, reqs int64
	}
	var rows []row
	mainPID := func(unit, exe string) (int, bool) {
		out, err := e.s.Systemctl(context.Background(), "show", "-p", "MainPID", "--value", unit)
		ns, _ := strconv.Atoi(out)
		if err != nil || ns <= 0 {
			return 0, false
		}
		for _, p := range ProcsNamed(exe) {
			st, err := readNSpid(p)
			if err == nil && st == ns {
				return p, true
			}
		}
		return 0, false
	}
	apidInv := e.prop(t, apidService, "InvocationID")
	slotdInv := e.prop(t, slotdUnit, "InvocationID")
	every := max(soakFor/60, 2*time.Second)
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var workers []ProcSample
	workerTick := time.NewTicker(every / 4)
	defer workerTick.Stop()
	var peakWorker ProcSample
sample:
	for {
		select {
		case <-ctx.Done():
			break sample
		case <-workerTick.C:
			// Workers come and go: keep the largest seen in each interval.
			if p, ok := mainPID(ref.MustParse(pulled).Unit(), "hal0-pull"); ok {
				if s, err := SampleProc(p); err == nil {
					workers = append(workers, s)
					peakWorker.RSSKiB = max(peakWorker.RSSKiB, s.RSSKiB)
					peakWorker.FDs = max(peakWorker.FDs, s.FDs)
				}
			}
		case <-tick.C:
			r := row{at: time.Since(start), work: peakWorker, pulls: pulls.Load(), swaps: swaps.Load(), reqs: polls.Load()}
			peakWorker = ProcSample{}
			var ok bool
			var p int
			if p, ok = mainPID(apidService, "hal0-apid"); ok {
				r.apid, _ = SampleProc(p)
			}
			if p, ok = mainPID(slotdUnit, "hal0-slotd"); ok {
				r.slotd, _ = SampleProc(p)
			}
			rows = append(rows, r)
		}
	}
	cancel()
	wg.Wait()
	for _, f := range failures {
		t.Errorf("soak: %s", f)
	}
	if len(failures) > 0 {
		j, _ := e.s.Journal(context.Background(), "-u", "hal0-slot@primary.service", "-u", slotdUnit, "-u", ref.MustParse(pulled).Unit(), "-u", apidService, "-o", "short-precise", "-n", "80")
		t.Logf("journal of the slot and hal0-slotd:\n%s", j)
	}
	if e.prop(t, apidService, "InvocationID") != apidInv {
		t.Errorf("hal0-apid restarted during the soak:\n%s", e.systemctl(t, "status", apidService))
	}
	if e.prop(t, slotdUnit, "InvocationID") != slotdInv {
		t.Errorf("hal0-slotd restarted during the soak")
	}

	tb := &Table{
		Title:  fmt.Sprintf("soak for %v: pulls (12 MiB at 16 MiB/s per connection) and deletes, status polls on both listeners, slot swaps", soakFor),
		Header: []string{"time", "apid RSS", "apid fds", "slotd RSS", "slotd fds", "worker RSS (max)", "worker fds", "pulls", "swaps", "polls"},
	}
	step := max(len(rows)/15, 1)
	for i, r := range rows {
		if i%step == 0 || i == len(rows)-1 {
			tb.Add(r.at.Round(time.Second), kib(r.apid.RSSKiB), r.apid.FDs, kib(r.slotd.RSSKiB), r.slotd.FDs, kib(r.work.RSSKiB), r.work.FDs, r.pulls, r.swaps, r.reqs)
		}
	}
	warm := len(rows) / 5
	g := Growth{RSSSlackKiB: 8 << 10, RSSSlackPct: 25, FDSlack: 4}
	series := func(pick func(row) ProcSample) []ProcSample {
		var s []ProcSample
		for _, r := range rows[warm:] {
			if v := pick(r); v.RSSKiB > 0 {
				s = append(s, v)
			}
		}
		return s
	}
	for _, d := range []struct {
		name string
		s    []ProcSample
	}{
		{"hal0-apid", series(func(r row) ProcSample { return r.apid })},
		{"hal0-slotd", series(func(r row) ProcSample { return r.slotd })},
		{"hal0-pull (per interval max)", series(func(r row) ProcSample { return r.work })},
	} {
		if len(d.s) < 4 {
			t.Errorf("%s: only %d samples after warm-up: run longer", d.name, len(d.s))
			continue
		}
		v := g.Check(d.s)
		tb.Note("%s after warm-up: RSS %s -> %s, fds %d -> %d (tolerance max(8 MiB, 25%%) and 4 fds): %s", d.name,
			kib(v.StartRSS), kib(v.EndRSS), v.StartFDs, v.EndFDs, map[bool]string{true: "flat", false: "GROWING"}[v.RSSOK && v.FDOK])
		if !v.RSSOK || !v.FDOK {
			t.Errorf("%s grows: %+v", d.name, v)
		}
	}
	tb.Note("totals: %d pulls, %d swaps, %d status requests; %d worker samples", pulls.Load(), swaps.Load(), polls.Load(), len(workers))
	report(t, "soak", tb)
	if pulls.Load() < 2 || swaps.Load() < 2 {
		t.Errorf("the soak did too little to prove anything: %d pulls, %d swaps", pulls.Load(), swaps.Load())
	}
	checkInstalled(t, e.home, modelA, e.hub.Repo("soak/a").Files)
	_ = filesP
}

func kib(v int64) string { return fmt.Sprintf("%.1f MiB", float64(v)/1024) }

// readNSpid returns the innermost pid of a host process (its pid inside
// the private systemd's namespace), or an error.
func readNSpid(pid int) (int, error) {
	st, err := procStatusFields(pid)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(st["NSpid"])
	if len(f) < 2 {
		return 0, fmt.Errorf("pid %d is not in a child namespace", pid)
	}
	return strconv.Atoi(f[len(f)-1])
}
