package torture

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/apitest"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/ref"
)

// TestConcurrentPullsAndAPIDRestart: 20 pulls asked for at the same
// moment through a real hal0-apid (embedded mode: workers are child
// processes), two for each of 10 models, one of each pair spelled
// differently. Each model gets one job and one worker; hal0-apid is then
// killed with SIGKILL while every pull is in the middle of its transfer,
// and a new hal0-apid still sees every job running (the workers outlive
// it), can cancel one of the orphans, and the rest finish. In the end the
// registry holds each model exactly once, written once per model by ten
// worker processes racing for it, every job is final, and the hub served
// each byte once (plus what the cancel cut off).
func TestConcurrentPullsAndAPIDRestart(t *testing.T) {
	t.Parallel()
	const models = 10
	hub := newHub(t, hubtest.Options{})
	var ids []string
	want := map[string][]hubtest.File{}
	var sum int64
	for i := range models {
		id := fmt.Sprintf("torture/c%d", i)
		files := addModel(hub, id, 2, 1<<20+int64(i)*4099)
		rf := ref.MustParse(id + ":Q4_K_M").String()
		ids = append(ids, rf)
		want[rf] = files
		sum += totalSize(files)
	}
	// Hold every transfer after its first 256 KiB until released.
	hub.AddFault(hubtest.Fault{Where: "cdn", StallAt: 256 << 10})
	home := newHome(t)
	paths := config.Default(home).Paths
	if err := os.MkdirAll(filepath.Dir(paths.RegistryFile()), 0o755); err != nil {
		t.Fatal(err)
	}
	writes, err := CountWrites(paths.RegistryFile())
	if err != nil {
		t.Fatal(err)
	}
	defer writes.Close()
	a := startAPID(t, home, baseEnv(home, hub.URL, "HAL0_PULL_CHUNK_SIZE=1MiB", "HAL0_STALL_TIMEOUT=2m"))

	// 20 POSTs released at once.
	type answer struct {
		model string
		st    api.PullStatus
	}
	answers := make([]answer, 2*models)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range answers {
		model := ids[i%models]
		spelled := model
		if i >= models {
			spelled = strings.Replace(model, ":Q4_K_M", ":q4_k_m", 1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			answers[i].model = model
			answers[i].st = *a.unix.Pull(spelled)
		}()
	}
	close(gate)
	wg.Wait()
	jobOfModel := map[string]string{}
	created := map[string]int{}
	for _, an := range answers {
		if an.st.ModelID != an.model || an.st.JobID == "" {
			t.Fatalf("POST for %s answered %+v", an.model, an.st)
		}
		if prev, ok := jobOfModel[an.model]; ok && prev != an.st.JobID {
			t.Fatalf("%s got two jobs, %s and %s", an.model, prev, an.st.JobID)
		}
		jobOfModel[an.model] = an.st.JobID
		if !an.st.Existing {
			created[an.model]++
		}
	}
	for _, id := range ids {
		if created[id] != 1 {
			t.Errorf("%s: %d POSTs created a job, want exactly 1", id, created[id])
		}
	}

	held := func(c *apitest.Client) bool {
		n := 0
		for _, st := range c.Pulls() {
			if st.State == "running" && st.BytesDone >= 256<<10 {
				n++
			}
		}
		return n == models
	}
	waitFor(t, "every pull running with bytes on disk", 60*time.Second, func() bool { return held(a.unix) })

	// SIGKILL hal0-apid mid-pull, start a new one on the same socket.
	a.kill9()
	a.start()
	for _, st := range a.unix.Pulls() {
		if st.State != "running" {
			t.Fatalf("after the apid restart %s is %s (%s): %s", st.ModelID, st.State, st.ErrorCode, st.Error)
		}
	}
	if !held(a.unix) {
		t.Fatalf("the new hal0-apid does not see every pull running: %+v", a.unix.Pulls())
	}

	// The new apid cancels an orphan worker by the pid in its record.
	orphan := ids[models-1]
	a.unix.Call(http.MethodPost, apitest.ModelPath(orphan, "/pull/cancel"), http.StatusOK, nil)
	a.unix.WaitPull(orphan, "cancelled", 30*time.Second, final)
	if st := a.unix.Status(orphan); st.State != "cancelled" || st.ErrorCode != api.CodeCancelled {
		t.Fatalf("cancelled orphan: %+v", st)
	}

	hub.ClearFaults()
	hub.ReleaseStalls()
	for _, id := range ids[:models-1] {
		if st, _ := a.unix.WaitPull(id, "final", 60*time.Second, final); st.State != "completed" {
			t.Fatalf("%s ended %+v", id, st)
		}
	}
	// Pulling the cancelled one again resumes its partial data.
	before := hub.Stats().Bytes
	again := a.unix.Pull(orphan)
	if again.JobID == jobOfModel[orphan] {
		t.Errorf("a cancelled job was reused: %s", again.JobID)
	}
	if st, _ := a.unix.WaitPull(orphan, "final", 60*time.Second, final); st.State != "completed" {
		t.Fatalf("re-pull of %s ended %+v", orphan, st)
	}
	if resent := hub.Stats().Bytes - before; resent >= totalSize(want[orphan]) {
		t.Errorf("the re-pull of the cancelled %s transferred %d bytes, all of it: the partial data was lost", orphan, resent)
	}

	for _, id := range ids {
		checkInstalled(t, home, id, want[id])
	}
	if n := len(loadRegistry(t, home).Models); n != models {
		t.Errorf("registry has %d entries, want %d", n, models)
	}
	if n := writes.Close(); n != models {
		t.Errorf("registry.toml written %d times, want %d (one per model)", n, models)
	}
	all, errs := jobs.Open(paths.JobsDir()).List()
	if len(errs) != 0 || len(all) != models+1 {
		t.Fatalf("%d job records (%v), want %d", len(all), errs, models+1)
	}
	tb := &Table{
		Title:  "20 simultaneous pulls of 10 models through hal0-apid (child processes), apid killed with SIGKILL mid-pull",
		Header: []string{"model", "job", "state", "attempts", "bytes"},
	}
	for _, j := range all {
		if !j.State.Final() {
			t.Errorf("job %s of %s is %s", j.ID, j.Ref, j.State)
		}
		if j.Ref != orphan && (j.State != jobs.Completed || j.Attempts != 1) {
			t.Errorf("job %s of %s: %s after %d attempts, want completed in 1", j.ID, j.Ref, j.State, j.Attempts)
		}
		tb.Add(j.Ref, j.ID, j.State, j.Attempts, j.BytesDone)
	}
	served := hub.Stats().Bytes
	tb.Note("hub served %d bytes for %d bytes of models (%.2f%%); registry writes: %d", served, sum, 100*float64(served-sum)/float64(sum), models)
	report(t, "concurrency", tb)
	// Each byte once, except what the cancel of one pull cut off in
	// flight: at most one range per connection.
	if served < sum || served > sum+16<<20 {
		t.Errorf("hub served %d bytes for %d bytes of models", served, sum)
	}
}
