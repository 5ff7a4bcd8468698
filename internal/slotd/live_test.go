package slotd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/flm/flmtest"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/slots"
)

// The live tests run the shipped hal0-slotd.service, hal0-slot@.service,
// hal0-pull@.service and hal0.slice in a real, private systemd
// (livesystemd), with the substitutions a test machine needs (see
// env.units), and drive a slot the way hal0-apid does: by writing
// request.json. They observe the slot by reading state.json, waiting for
// its replacement with inotify, and read the order of transitions back
// from hal0-slotd's journal.
//
// The slot's backend is testdata/standin, built by TestMain: it stands in
// for llama-server, which cannot run here (no GPU, no real model). It
// speaks the llama-server health protocol (/health: 503 "Loading model",
// then 200) and can be told to stay loading until a file appears, to
// crash while loading, or to never finish. Pulls are real: hal0-pull
// from the in-repo test hub (internal/hubtest) on 127.0.0.1.

const (
	slotName  = "primary"
	slotUnit  = "hal0-slot@primary.service"
	slotdUnit = "hal0-slotd.service"
	shardSize = 4 << 20
	ctxSize   = 4096
)

// env is one booted systemd running hal0-slotd with one slot, "primary".
type env struct {
	t    *testing.T
	s    *livesystemd.System
	hub  *hubtest.Hub
	home string // HAL0_HOME of every unit
	cfg  *config.Config
	port int    // the slot's
	gate string // the stand-in's --gate file
	// unitEnv is added to every unit's environment (" K=V…").
	unitEnv string
}

// slotOpts shape the slot's config.
type slotOpts struct {
	args          []string // extra arguments of the stand-in (--crash, --never)
	gated         bool     // warming lasts until env.openGate
	healthTimeout string   // [health] timeout; default 60s
	idleTimeout   string   // [slot] idle_timeout; default 0 (never)
	// flm makes the slot an flm slot with no [server] command, its units
	// getting the variables flm returns for the slot's HAL0_HOME
	// (flmtest's stand-in as the host flm).
	flm func(home string) map[string]string
}

func newEnv(t *testing.T, o slotOpts) *env {
	t.Helper()
	hub, err := hubtest.New(hubtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	home, err := os.MkdirTemp(bins.scratch, "t")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, hub: hub, home: home, cfg: config.Default(home), port: freePort(t), gate: filepath.Join(home, "gate")}
	args := append([]string{}, o.args...)
	if o.gated {
		args = append(args, "--gate", e.gate)
	}
	if o.healthTimeout == "" {
		o.healthTimeout = "60s"
	}
	if o.idleTimeout == "" {
		o.idleTimeout = "0s"
	}
	quoted := func(ss []string) string {
		b, _ := json.Marshal(ss)
		return string(b)
	}
	if o.flm != nil {
		for _, kv := range flmtest.Environ(o.flm(home)) {
			e.unitEnv += " " + kv
		}
		writeFile(t, filepath.Join(e.cfg.Paths.SlotConfigDir(), slotName+".toml"), fmt.Sprintf(
			"[slot]\nport = %d\nbackend = \"flm\"\n\n[model]\ncontext_size = %d\n\n[health]\ntimeout = %q\n", e.port, ctxSize, o.healthTimeout))
	} else {
		writeFile(t, filepath.Join(e.cfg.Paths.SlotConfigDir(), slotName+".toml"), fmt.Sprintf(`[slot]
port = %d
backend = "llama-server"
idle_timeout = %q

[model]
context_size = %d

[server]
command = %s
extra_args = %s

[health]
timeout = %q
`, e.port, o.idleTimeout, ctxSize, quoted([]string{bins.standin, "--model", "{model}", "--port", "{port}", "--ctx", "{ctx}"}), quoted(args), o.healthTimeout))
	}

	var opts []livesystemd.Option
	for name, text := range e.units() {
		opts = append(opts, livesystemd.WithUnit(name, text))
	}
	// Boot returns once hal0-slotd is up, i.e. after its first resync.
	e.s = livesystemd.Boot(t, append(opts, livesystemd.WithBootUnits(slotdUnit))...)
	return e
}

// units returns the shipped units with the test substitutions: the
// binaries built by TestMain, a scratch HAL0_HOME (also the only writable
// tree) instead of the FHS paths, the hub as HF_ENDPOINT, and no hal0
// user, which only the package creates. A unit that no longer has a line
// being replaced fails the test, so the tests follow the shipped files.
func (e *env) units() map[string]string {
	t := e.t
	home := "Environment=HAL0_HOME=" + e.home + e.unitEnv
	cache := filepath.Join(e.home, "cache", "slot-%I")
	return map[string]string{
		"hal0.slice": livesystemd.Substitute(t, "../../units/hal0.slice", nil),
		slotdUnit: livesystemd.Substitute(t, "../../units/hal0-slotd.service", map[string]string{
			"ExecStart=/usr/lib/hal0/current/bin/hal0-slotd": "ExecStart=" + bins.slotd,
			"User=hal0":                    "",
			"Group=hal0":                   "",
			"ReadWritePaths=/var/lib/hal0": "ReadWritePaths=" + e.home,
			"[Service]":                    "[Service]\n" + home,
		}),
		"hal0-slot@.service": livesystemd.Substitute(t, "../../units/hal0-slot@.service", map[string]string{
			"ExecStart=/usr/lib/hal0/current/bin/hal0-slotd run-slot %I": "ExecStart=" + bins.slotd + " run-slot %I",
			"User=hal0":                   "",
			"Group=hal0":                  "",
			"CacheDirectory=hal0/slot-%I": "",
			"Environment=HOME=%C/hal0/slot-%I XDG_CACHE_HOME=%C/hal0/slot-%I": "Environment=HOME=" + cache + " XDG_CACHE_HOME=" + cache,
			"[Service]": "[Service]\n" + home,
		}),
		"hal0-pull@.service": livesystemd.Substitute(t, "../../units/hal0-pull@.service", map[string]string{
			"ExecStart=/usr/lib/hal0/current/bin/hal0-pull --runner=systemd -- %I": "ExecStart=" + bins.pull + " --runner=systemd -- %I",
			"User=hal0":  "",
			"Group=hal0": "",
			"ReadWritePaths=/var/lib/hal0 /mnt/ai-models": "ReadWritePaths=" + e.home,
			// A stall restarts its range after 1 s, so a hub fault that
			// holds a pull lets go soon after it is cleared.
			"EnvironmentFile=-/etc/hal0/pull.env": home + " HF_ENDPOINT=" + e.hub.URL +
				" HAL0_DISK_RESERVE=0 HAL0_PULL_CHUNK_SIZE=1MiB HAL0_STALL_TIMEOUT=1s",
		}),
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) systemctl(args ...string) string {
	e.t.Helper()
	out, err := e.s.Systemctl(e.ctx(), args...)
	if err != nil {
		e.t.Fatalf("systemctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (e *env) journal(unit string) string {
	out, err := e.s.Journal(e.ctx(), "-u", unit, "-o", "cat")
	if err != nil {
		return fmt.Sprintf("(journal of %s: %v)", unit, err)
	}
	return out
}

// request writes a request as hal0-apid does and returns its id.
func (e *env) request(kind slots.EventKind, model string) string {
	e.t.Helper()
	r := &slots.Request{ID: slots.NewRequestID(), Kind: kind, Model: model, CreatedAt: time.Now().UTC()}
	if err := slots.WriteRequest(slots.RequestPath(e.cfg.Paths.StateDir, slotName), r); err != nil {
		e.t.Fatal(err)
	}
	return r.ID
}

// status reads state.json.
func (e *env) status() *slots.Status {
	e.t.Helper()
	st, err := slots.LoadStatus(slots.StatePath(e.cfg.Paths.StateDir, slotName), slotName)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// waitState waits until state.json satisfies cond. It reads the file once,
// then again whenever it is replaced (inotify on its directory), so no
// state that lasts is missed and nothing polls; the wait is bounded.
func (e *env) waitState(what string, cond func(*slots.Status) bool) *slots.Status {
	e.t.Helper()
	dir := e.cfg.Paths.SlotStateDir(slotName)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		e.t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	defer f.Close()
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE); err != nil {
		e.t.Fatal(err)
	}
	deadline := time.AfterFunc(60*time.Second, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	defer deadline.Stop()
	buf := make([]byte, 4096)
	var st *slots.Status
	for {
		st = e.status()
		if cond(st) {
			return st
		}
		if _, err := f.Read(buf); err != nil {
			b, _ := json.MarshalIndent(st, "", "  ")
			all, _ := e.s.Journal(e.ctx(), "-o", "short-precise")
			e.t.Fatalf("waiting for the slot to be %s: %v; state.json:\n%s\nhal0-slotd's journal:\n%s\n%s's journal:\n%s\nALL\n%s",
				what, err, b, e.journal(slotdUnit), slotUnit, e.journal(slotUnit), all)
		}
	}
}

func state(s slots.State) func(*slots.Status) bool {
	return func(st *slots.Status) bool { return st.State == s }
}

// transitions reads the states the slot went through from hal0-slotd's
// journal (the HAL0_SLOT_STATE field of its transition lines).
func (e *env) transitions() []string {
	e.t.Helper()
	out, err := e.s.Journal(e.ctx(), "-u", slotdUnit, "HAL0_SLOT="+slotName, "-o", "json", "--output-fields=HAL0_SLOT_STATE")
	if err != nil {
		e.t.Fatalf("journal: %v\n%s", err, out)
	}
	var states []string
	for _, line := range strings.Split(out, "\n") {
		var f struct {
			State string `json:"HAL0_SLOT_STATE"`
		}
		if json.Unmarshal([]byte(line), &f) == nil && f.State != "" {
			states = append(states, f.State)
		}
	}
	return states
}

func (e *env) wantTransitions(want ...string) {
	e.t.Helper()
	// hal0-slotd logs a transition right after writing state.json, which
	// is what the test waited for: the line may reach the journal a
	// moment later (seen under load). Look again until it is there.
	got := journalUntil(e.transitions, func(got []string) bool { return slices.Equal(got, want) || len(got) >= len(want) })
	if !slices.Equal(got, want) {
		e.t.Errorf("transitions %v, want %v\nhal0-slotd's journal:\n%s", got, want, e.journal(slotdUnit))
	}
}

// install puts a model file in the model tree and its registry entry.
func (e *env) install(id string) *registry.Model {
	e.t.Helper()
	dir := filepath.Join(e.cfg.Paths.PullDir(), "test", id)
	path := filepath.Join(dir, id+".gguf")
	writeFile(e.t, path, "GGUF "+id)
	m := &registry.Model{ID: id, Name: id, Path: path, Dir: dir, Source: "local", Format: "dir", SizeBytes: int64(len("GGUF " + id))}
	err := registry.Open(e.cfg.Paths.RegistryFile()).Update(e.ctx(), func(r *registry.Registry) error {
		r.Put(m)
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// addRepo serves id with a Q4_K_M quant in n shards.
func (e *env) addRepo(id string, n int) (files []hubtest.File, total int64) {
	gen := hubtest.GenerateGGUFShards("", filepath.Base(id), "Q4_K_M", n, shardSize, uint64(len(id)))
	files = e.hub.AddRepo(hubtest.Repo{ID: id, Files: gen}).Files
	for _, f := range files {
		total += f.Size
	}
	return files, total
}

func (e *env) openGate() { writeFile(e.t, e.gate, "") }

// props asks the backend on the slot's port what it serves.
func (e *env) props() (model string, nctx int) {
	e.t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/props", e.port))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct {
		Model string `json:"model_path"`
		NCtx  int    `json:"n_ctx"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		e.t.Fatal(err)
	}
	return p.Model, p.NCtx
}

func (e *env) unitProp(unit, name string) string {
	e.t.Helper()
	return e.systemctl("show", "-p", name, "--value", unit)
}

func pull(st *slots.Status) PullProgress {
	p, _ := pullProgress(st)
	return p
}

// TestLiveSwapWithPull: a swap of an offline slot to a model that is not
// installed pulls it from the hub (the slot shows the pull's progress),
// starts the slot unit with the pulled file, warms it until the backend's
// /health answers 200, and ends ready.
func TestLiveSwapWithPull(t *testing.T) {
	e := newEnv(t, slotOpts{gated: true})
	files, total := e.addRepo("demo/a", 3)
	// Hold the last shard part-way through each range: the pull stays
	// in progress until the fault is cleared.
	e.hub.AddFault(hubtest.Fault{Repo: "demo/a", Path: files[2].Path, StallAt: 512 << 10})
	rf := ref.MustParse("demo/a:Q4_K_M")
	model := rf.String()

	id := e.request(slots.EvSwap, model)
	st := e.waitState("pulling with two shards done", func(st *slots.Status) bool {
		return st.State == slots.Pulling && pull(st).BytesDone >= 2*shardSize
	})
	p := pull(st)
	if st.Target != model || extraString(st, ExtraRequestID) != id || p.Unit != rf.Unit() || p.BytesTotal != total ||
		p.JobID == "" || !strings.HasPrefix(st.Message, "pulling "+model+": ") || !strings.Contains(st.Message, "%") {
		t.Fatalf("pulling status %+v, pull %+v", st, p)
	}

	e.hub.ClearFaults()
	st = e.waitState("warming", state(slots.Warming))
	if st.ModelID != model || st.Target != model || st.Message != "warming "+model {
		t.Fatalf("warming status %+v", st)
	}
	reg, err := registry.Open(e.cfg.Paths.RegistryFile()).Load()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := reg.Get(model)
	if !ok {
		t.Fatalf("%s not in the registry after the pull", model)
	}
	spec, err := ReadRunSpec(RunSpecPath(e.cfg.Paths.StateDir, slotName))
	if err != nil || spec.ModelID != model || spec.Model != m.Path || spec.Port != e.port || spec.Context != ctxSize {
		t.Fatalf("run.json %+v, %v; want %s at %s on port %d", spec, err, model, m.Path, e.port)
	}

	e.openGate()
	st = e.waitState("ready", state(slots.Ready))
	if st.ModelID != model || st.Target != "" || st.Message != "serving "+model || st.Port != e.port {
		t.Fatalf("ready status %+v", st)
	}
	if path, nctx := e.props(); path != m.Path || nctx != ctxSize {
		t.Fatalf("the backend serves %s with context %d, want %s and %d", path, nctx, m.Path, ctxSize)
	}
	if inv := e.unitProp(slotUnit, "InvocationID"); extraString(st, ExtraInvocation) != inv {
		t.Errorf("status follows run %q, the unit's run is %s", extraString(st, ExtraInvocation), inv)
	}
	if _, ok := st.Extra[ExtraPull]; ok {
		t.Errorf("a ready slot still shows its pull: %v", st.Extra)
	}
	e.wantTransitions("pulling", "starting", "warming", "ready")
}

// TestLiveSwapInstalled: a ready slot swapped to another installed model
// stops its unit (unloading, then offline) and brings the new model up in a
// new run of the unit. A request the state machine refuses is recorded
// as refused and changes nothing.
func TestLiveSwapInstalled(t *testing.T) {
	e := newEnv(t, slotOpts{})
	a, b := e.install("model-a"), e.install("model-b")

	e.request(slots.EvLoad, a.ID)
	st := e.waitState("ready with model-a", state(slots.Ready))
	if path, _ := e.props(); st.ModelID != a.ID || path != a.Path {
		t.Fatalf("after load: %+v, backend serves %s", st, path)
	}
	first := extraString(st, ExtraInvocation)

	id := e.request(slots.EvSwap, b.ID)
	st = e.waitState("ready with model-b", func(st *slots.Status) bool { return st.State == slots.Ready && st.ModelID == b.ID })
	if path, _ := e.props(); path != b.Path {
		t.Fatalf("after the swap the backend serves %s, want %s", path, b.Path)
	}
	if second := extraString(st, ExtraInvocation); second == first || second != e.unitProp(slotUnit, "InvocationID") {
		t.Errorf("runs: before %s, after %s, unit %s", first, second, e.unitProp(slotUnit, "InvocationID"))
	}
	if extraString(st, ExtraRequestID) != id {
		t.Errorf("request_id %v, want %s", st.Extra[ExtraRequestID], id)
	}
	// unloading → offline → starting is one step of the reducer (the
	// unit going away), so offline is never saved on its own.
	e.wantTransitions("starting", "warming", "ready", "unloading", "starting", "warming", "ready")

	// Loading another model into a ready slot is illegal (swap is the
	// way): hal0-apid would answer 409, but should such a request reach
	// hal0-slotd, it is refused without touching the slot.
	before := *st
	id = e.request(slots.EvLoad, a.ID)
	st = e.waitState("refusing the load", func(st *slots.Status) bool { return extraString(st, ExtraRequestID) == id })
	out, _ := st.Extra[ExtraRequest].(map[string]any)
	if st.State != slots.Ready || st.ModelID != b.ID || st.Message != before.Message || out["outcome"] != "refused" ||
		!strings.Contains(fmt.Sprint(out["error"]), "is ready and cannot go to starting") {
		t.Fatalf("after an illegal load: %+v", st)
	}
	if path, _ := e.props(); path != b.Path {
		t.Fatalf("the refused load changed the backend to %s", path)
	}
}

// TestLiveCrashWhileWarming: a backend that exits while loading puts the
// slot in error with a message that names the unit, how it ended and
// where its log is.
func TestLiveCrashWhileWarming(t *testing.T) {
	e := newEnv(t, slotOpts{args: []string{"--crash"}})
	a := e.install("model-a")
	e.request(slots.EvLoad, a.ID)
	st := e.waitState("error", state(slots.Error))
	for _, want := range []string{slotUnit + " exited with status 1", "result exit-code", "while warming model-a", "see journalctl -u " + slotUnit} {
		if !strings.Contains(st.Message, want) {
			t.Errorf("error message %q lacks %q", st.Message, want)
		}
	}
	if j := e.journal(slotUnit); !strings.Contains(j, "crashing while loading") {
		t.Errorf("the journalctl the message names has nothing about the crash:\n%s", j)
	}
	e.wantTransitions("starting", "warming", "error")
}

// TestLiveExitAtOnce: a backend that exits cleanly as soon as it starts
// may be gone before its "active" is ever reported; the slot must still
// end in error naming the unit, not wait in starting.
func TestLiveExitAtOnce(t *testing.T) {
	e := newEnv(t, slotOpts{args: []string{"--exit"}})
	a := e.install("model-a")
	e.request(slots.EvLoad, a.ID)
	st := e.waitState("error", state(slots.Error))
	for _, want := range []string{slotUnit + " exited with status 0", "model-a", "see journalctl -u " + slotUnit} {
		if !strings.Contains(st.Message, want) {
			t.Errorf("error message %q lacks %q", st.Message, want)
		}
	}
}

// TestLiveNeverHealthy: a backend that never answers /health with 200 is
// given up after the slot's [health] timeout; the slot is in error and
// the unit stopped.
func TestLiveNeverHealthy(t *testing.T) {
	e := newEnv(t, slotOpts{args: []string{"--never"}, healthTimeout: "2s"})
	a := e.install("model-a")
	e.request(slots.EvLoad, a.ID)
	st := e.waitState("error", state(slots.Error))
	for _, want := range []string{slotUnit + " did not become healthy while warming model-a", "not healthy after 2s", "503", "Loading model", "see journalctl -u " + slotUnit} {
		if !strings.Contains(st.Message, want) {
			t.Errorf("error message %q lacks %q", st.Message, want)
		}
	}
	if s, err := e.s.WaitUnit(e.ctx(), slotUnit, "inactive", "failed"); err != nil {
		t.Errorf("%s not stopped after the health timeout: %v (%s)", slotUnit, err, s)
	}
	e.wantTransitions("starting", "warming", "error")
}

// TestLiveRestartMidSwap: hal0-slotd restarted while the slot pulls and
// again while it warms picks the swap up where it was: the same pull job
// (no second pull), the same request applied once, and ready in the end.
func TestLiveRestartMidSwap(t *testing.T) {
	e := newEnv(t, slotOpts{gated: true})
	files, _ := e.addRepo("demo/r", 3)
	e.hub.AddFault(hubtest.Fault{Repo: "demo/r", Path: files[2].Path, StallAt: 512 << 10})
	model := ref.MustParse("demo/r:Q4_K_M").String()

	id := e.request(slots.EvSwap, model)
	st := e.waitState("pulling", func(st *slots.Status) bool { return st.State == slots.Pulling && pull(st).BytesDone > 0 })
	job := pull(st).JobID

	// systemctl restart returns once the new hal0-slotd is ready, i.e.
	// has resynchronised.
	e.systemctl("restart", slotdUnit)
	st = e.waitState("pulling, reported by the new hal0-slotd", func(st *slots.Status) bool {
		return st.State == slots.Pulling && pull(st).BytesDone > 0
	})
	if pull(st).JobID != job || extraString(st, ExtraRequestID) != id || st.Target != model {
		t.Fatalf("after the restart: %+v (job %s before)", st, job)
	}

	e.hub.ClearFaults()
	e.waitState("warming", state(slots.Warming))
	e.systemctl("restart", slotdUnit)
	if st := e.status(); st.State != slots.Warming {
		t.Fatalf("after the second restart: %+v", st)
	}
	e.openGate()
	st = e.waitState("ready", state(slots.Ready))
	if st.ModelID != model || extraString(st, ExtraRequestID) != id {
		t.Fatalf("ready status %+v", st)
	}
	all, errs := jobs.Open(e.cfg.Paths.JobsDir()).List()
	if len(errs) > 0 || len(all) != 1 || all[0].ID != job || all[0].State != jobs.Completed || all[0].Attempts != 1 {
		t.Errorf("pull jobs %+v (%v); want the one job %s, completed in one attempt", all, errs, job)
	}
	e.wantTransitions("pulling", "starting", "warming", "ready")
	// journald reads a service's stdout on its own schedule, so the third
	// start's line may reach the journal a moment after the slot is ready.
	if n := e.journalCount(slotdUnit, "hal0-slotd: driving 1 slots", 3); n != 3 {
		t.Errorf("hal0-slotd started %d times, want 3", n)
	}
}

// journalCount counts the lines of unit's journal containing s, waiting
// (up to 10 s) for want of them to arrive; more than want returns at once.
func (e *env) journalCount(unit, s string, want int) int {
	return journalUntil(func() int { return strings.Count(e.journal(unit), s) }, func(n int) bool { return n >= want })
}

// journalUntil reads the journal with read until done says the lines
// looked for are there, or 10 s pass: journald takes a service's stdout
// on its own schedule, so a line may arrive a moment after the state
// change it reports. It returns the last reading.
func journalUntil[T any](read func() T, done func(T) bool) T {
	got := read()
	for deadline := time.Now().Add(10 * time.Second); !done(got) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		got = read()
	}
	return got
}

// TestLiveDBusDropped: hal0-slotd loses the system bus and reconnects.
// Across a restart of dbus, a ready slot stays ready and a swap right
// after it goes through (unit jobs over a new connection, unit reports
// over a new subscription). A backend that dies while dbus is stopped is
// found by the resync after the bus is back, and the slot can be loaded
// again.
func TestLiveDBusDropped(t *testing.T) {
	e := newEnv(t, slotOpts{})
	a, b := e.install("model-a"), e.install("model-b")
	e.request(slots.EvLoad, a.ID)
	e.waitState("ready", state(slots.Ready))

	e.systemctl("restart", "dbus.service")
	e.request(slots.EvSwap, b.ID)
	e.waitState("ready with model-b", func(st *slots.Status) bool { return st.State == slots.Ready && st.ModelID == b.ID })
	if path, _ := e.props(); path != b.Path {
		t.Fatalf("after the swap the backend serves %s, want %s", path, b.Path)
	}
	// Nothing but the swap happened: the resync found the slot as it was.
	e.wantTransitions("starting", "warming", "ready", "unloading", "starting", "warming", "ready")

	// Keep a connection to the backend open: the kernel closes it when
	// the process dies, which is how we know it is dead with no bus to
	// ask systemd on.
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	e.systemctl("stop", "dbus.socket", "dbus.service")
	e.systemctl("kill", "--signal=KILL", slotUnit)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("the backend's connection: %v; want it closed by the backend's death", err)
	}
	if st := e.status(); st.State != slots.Ready {
		t.Fatalf("with the bus down hal0-slotd cannot know yet, but the slot is %+v", st)
	}
	e.systemctl("start", "dbus.socket", "dbus.service")
	st := e.waitState("error", state(slots.Error))
	for _, want := range []string{slotUnit + " was killed by signal 9 (SIGKILL)", "while ready model-b", "journalctl -u " + slotUnit} {
		if !strings.Contains(st.Message, want) {
			t.Errorf("error message %q lacks %q", st.Message, want)
		}
	}
	if n := e.journalCount(slotdUnit, "unitwatch: connection to unix:path=/run/dbus/system_bus_socket lost", 2); n < 2 {
		t.Errorf("hal0-slotd did not notice both outages:\n%s", e.journal(slotdUnit))
	}

	// Unit jobs work again over a new connection.
	e.request(slots.EvLoad, a.ID)
	st = e.waitState("ready again", state(slots.Ready))
	if path, _ := e.props(); path != a.Path || st.ModelID != a.ID {
		t.Fatalf("after reloading: %+v, backend serves %s", st, path)
	}
	e.wantTransitions("starting", "warming", "ready", "unloading", "starting", "warming", "ready", "error", "starting", "warming", "ready")
}

// TestLiveIdleAndUnload: a ready slot goes idle after its idle_timeout,
// and an unload stops its unit and leaves it offline.
func TestLiveIdleAndUnload(t *testing.T) {
	e := newEnv(t, slotOpts{idleTimeout: "1s"})
	a := e.install("model-a")
	e.request(slots.EvLoad, a.ID)
	st := e.waitState("idle", state(slots.Idle))
	if st.ModelID != a.ID || st.Message != "idle" {
		t.Fatalf("idle status %+v", st)
	}
	e.request(slots.EvUnload, "")
	st = e.waitState("offline", state(slots.Offline))
	if st.ModelID != "" || st.Target != "" || st.Message != "unloaded" {
		t.Fatalf("offline status %+v", st)
	}
	if s := e.unitProp(slotUnit, "ActiveState"); s != "inactive" {
		t.Errorf("%s is %s after the unload", slotUnit, s)
	}
	e.wantTransitions("starting", "warming", "ready", "idle", "unloading", "offline")
}

// TestLivePullFails: a model the hub does not have fails its pull, and the
// slot says so in error.
func TestLivePullFails(t *testing.T) {
	e := newEnv(t, slotOpts{})
	model := ref.MustParse("demo/missing:Q4_K_M").String()
	e.request(slots.EvSwap, model)
	st := e.waitState("error", state(slots.Error))
	if !strings.HasPrefix(st.Message, "pull of "+model+" failed: ") || !strings.Contains(st.Message, "[") {
		t.Fatalf("error status %+v", st)
	}
	if _, ok := st.Extra[ExtraPull]; ok {
		t.Errorf("the failed slot still shows the pull: %v", st.Extra)
	}
	e.wantTransitions("pulling", "error")
}
