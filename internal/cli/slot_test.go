package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/client/clienttest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/slots"
)

// hal0-slotd is built by another part of the project. These tests stand in
// for it through the files the daemons share: they write the slot
// configurations and state.json as hal0-slotd would, and read the
// request.json hal0-apid leaves for it. The CLI talks to a real hal0-apid
// over its unix socket (see clienttest).

const (
	slotA = "demo/a:Q4_K_M"
	slotB = "demo/b:Q4_K_M"
)

type slotEnv struct {
	*clienttest.Env
	t *testing.T
}

func newSlotEnv(t *testing.T) *slotEnv {
	t.Helper()
	e := &slotEnv{newEnv(t), t}
	dir := e.Cfg.Paths.SlotConfigDir()
	os.MkdirAll(dir, 0o755)
	for name, body := range map[string]string{
		"primary": "[slot]\nport = 8081\nbackend = \"llama-server\"\nrole = \"primary\"\n[model]\ndefault = \"" + slotA + "\"\n",
		"npu":     "[slot]\nport = 8088\nbackend = \"flm\"\n[model]\ndefault = \"qwen3:4b\"\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name+".toml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// state writes state.json as hal0-slotd does.
func (e *slotEnv) state(st slots.Status) {
	e.t.Helper()
	if st.UpdatedAt == 0 {
		st.UpdatedAt = float64(time.Now().UnixNano()) / 1e9
	}
	if err := slots.SaveStatus(slots.StatePath(e.Cfg.Paths.StateDir, st.Name), &st); err != nil {
		e.t.Fatal(err)
	}
}

// request waits (boundedly) for the request hal0-apid records for slotd.
func (e *slotEnv) request(name string) *slots.Request {
	e.t.Helper()
	return e.requestAfter(name, "")
}

// requestAfter waits for a request other than the one with id before.
func (e *slotEnv) requestAfter(name, before string) *slots.Request {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := slots.ReadRequest(slots.RequestPath(e.Cfg.Paths.StateDir, name))
		if err != nil {
			e.t.Fatal(err)
		}
		if r != nil && r.ID != before {
			return r
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no new request.json within 30 s (last %+v)", r)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is written by the CLI while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is a CLI run in the background whose output the test can watch.
type running struct {
	stdout, stderr *syncBuffer
	done           chan result
}

func startWatched(t *testing.T, intr chan os.Signal, args ...string) *running {
	t.Helper()
	r := &running{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan result, 1)}
	oldOut, oldErr, oldIntr := Stdout, Stderr, interrupts
	Stdout, Stderr = r.stdout, r.stderr
	if intr != nil {
		interrupts = func() (<-chan os.Signal, func()) { return intr, func() {} }
	}
	go func() {
		code := Run(context.Background(), args)
		Stdout, Stderr, interrupts = oldOut, oldErr, oldIntr
		r.done <- result{code, r.stdout.String(), r.stderr.String()}
	}()
	return r
}

// waitFor waits until the CLI has printed want on stderr: the slot's next
// state is written only once the CLI has seen the previous one, so that
// every state must show up as its own line.
func (r *running) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(r.stderr.String(), want) {
		select {
		case res := <-r.done:
			t.Fatalf("the command ended before printing %q:\n%s", want, res)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within 30 s; stderr so far:\n%s", want, r.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSlotListAndStatus(t *testing.T) {
	e := newSlotEnv(t)
	e.state(slots.Status{Name: "primary", State: slots.Ready, ModelID: slotA, Message: "serving " + slotA, UpdatedAt: 1750000000})

	var all []api.Slot
	decode(t, run(t, "slot", "list", "--json"), &all)
	if len(all) != 2 || all[0].Name != "npu" || all[0].State != "offline" || all[1].ModelID != slotA || all[1].Unit != "hal0-slot@primary.service" {
		t.Fatalf("list --json: %+v", all)
	}
	var statusAll []api.Slot
	decode(t, run(t, "slot", "status", "--json"), &statusAll)
	if len(statusAll) != 2 {
		t.Fatalf("status --json without a name: %+v", statusAll)
	}
	var one api.Slot
	decode(t, run(t, "slot", "status", "primary", "--json"), &one)
	if one.Name != "primary" || one.State != "ready" || one.Backend != "llama-server" || one.Port != 8081 {
		t.Fatalf("status --json: %+v", one)
	}

	r := run(t, "slot", "list")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") ||
		strings.Join(strings.Fields(lines[1]), " ") != "npu offline - flm 8088 -" ||
		strings.Join(strings.Fields(lines[2]), " ") != "primary ready "+slotA+" llama-server 8081 serving "+slotA {
		t.Fatalf("slot list:\n%s", r)
	}
	r = run(t, "slot", "status", "primary")
	for _, want := range []string{"slot:     primary (hal0-slot@primary.service)\n", "backend:  llama-server on 127.0.0.1:8081\n", "state:    ready, since ", "model:    " + slotA + "\n", "default:  " + slotA + "\n"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("slot status primary: no %q\n%s", want, r)
		}
	}
	if r := run(t, "slot", "status", "nope"); r.code != api.ExitNotFound || !strings.Contains(r.stderr, `no slot "nope"`) {
		t.Errorf("status of an unknown slot:\n%s", r)
	}
}

// A swap followed until ready, through every state, with the pull's
// progress read from its job record.
func TestSlotSwapFollowsUntilReady(t *testing.T) {
	e := newSlotEnv(t)
	e.state(slots.Status{Name: "primary", State: slots.Ready, ModelID: slotA})
	r := startWatched(t, nil, "slot", "swap", "primary", "--model", "demo/b:q4_k_m", "--json")
	req := e.request("primary")
	if req.Kind != slots.EvSwap || req.Model != slotB {
		t.Fatalf("request %+v", req)
	}
	r.waitFor(t, "primary: swap to "+slotB+" requested (request "+req.ID+")\nprimary: ready ("+slotA+")\n")
	applied := map[string]any{"request_id": req.ID}

	e.state(slots.Status{Name: "primary", State: slots.Unloading, ModelID: slotA, Target: slotB, Extra: applied})
	r.waitFor(t, "primary: unloading "+slotA+" to swap to "+slotB+"\n")

	// A pull whose worker holds its lock, as a running hal0-pull does.
	ctx := context.Background()
	j, _, err := e.Server.Jobs.Begin(ctx, jobs.Job{Ref: slotB, Kind: "hf", Unit: "hal0-pull@demo-b:Q4_K_M.service", Runner: "systemd"})
	if err != nil {
		t.Fatal(err)
	}
	lock, err := e.Server.Jobs.LockRef(slotB)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	e.Server.Jobs.Update(ctx, j.ID, func(j *jobs.Job) error {
		j.State, j.BytesTotal, j.BytesDone = jobs.Running, 10<<20, 45<<20/10
		return nil
	})
	e.state(slots.Status{Name: "primary", State: slots.Pulling, Target: slotB, Extra: applied})
	r.waitFor(t, "primary: pulling "+slotB+" 45% of 10.0 MiB\n")

	e.state(slots.Status{Name: "primary", State: slots.Starting, ModelID: slotB, Target: slotB, Extra: applied})
	r.waitFor(t, "primary: starting "+slotB+"\n")
	e.state(slots.Status{Name: "primary", State: slots.Warming, ModelID: slotB, Target: slotB, Extra: applied})
	r.waitFor(t, "primary: warming "+slotB+"\n")
	e.state(slots.Status{Name: "primary", State: slots.Ready, ModelID: slotB, Extra: applied, Message: "serving " + slotB})
	res := wait(t, r.done)
	if res.code != 0 || !strings.HasSuffix(res.stderr, "primary: warming "+slotB+"\nprimary: ready ("+slotB+")\n") {
		t.Fatalf("swap:\n%s", res)
	}
	var final api.Slot
	decode(t, res, &final)
	if final.State != "ready" || final.ModelID != slotB || final.Pending != nil {
		t.Fatalf("--json: %+v", final)
	}
}

func TestSlotLoadAndUnloadOutcomes(t *testing.T) {
	e := newSlotEnv(t)

	// A backend that crashes while warming: exit 1 with hal0-slotd's reason.
	e.state(slots.Status{Name: "primary", State: slots.Offline})
	r := startWatched(t, nil, "slot", "load", "primary")
	req := e.request("primary")
	if req.Kind != slots.EvLoad || req.Model != slotA {
		t.Fatalf("load of the default: %+v", req)
	}
	r.waitFor(t, "primary: load "+slotA+" requested")
	applied := map[string]any{"request_id": req.ID}
	e.state(slots.Status{Name: "primary", State: slots.Starting, ModelID: slotA, Target: slotA, Extra: applied})
	r.waitFor(t, "primary: starting "+slotA+"\n")
	e.state(slots.Status{Name: "primary", State: slots.Error, ModelID: slotA, Extra: applied, Message: "hal0-slot@primary.service exited with status 1"})
	res := wait(t, r.done)
	if res.code != api.ExitFailed || !strings.Contains(res.stderr, "primary: error: hal0-slot@primary.service exited with status 1\n") ||
		!strings.Contains(res.stderr, "slot primary failed: hal0-slot@primary.service exited with status 1; see `hal0 slot logs primary`") {
		t.Fatalf("load that fails:\n%s", res)
	}

	// Unload from error goes straight to offline: exit 0.
	r = startWatched(t, nil, "slot", "unload", "primary")
	req2 := e.requestAfter("primary", req.ID)
	r.waitFor(t, "primary: unload requested")
	e.state(slots.Status{Name: "primary", State: slots.Offline, Extra: map[string]any{"request_id": req2.ID}})
	if res := wait(t, r.done); res.code != 0 || !strings.HasSuffix(res.stderr, "primary: offline\n") {
		t.Fatalf("unload:\n%s", res)
	}

	// A load that hal0-slotd takes but that ends with another model (a
	// newer request won) is not a success.
	r = startWatched(t, nil, "slot", "load", "primary", "--model", slotB)
	req3 := e.requestAfter("primary", req2.ID)
	r.waitFor(t, "requested")
	e.state(slots.Status{Name: "primary", State: slots.Ready, ModelID: slotA, Extra: map[string]any{"request_id": req3.ID}})
	if res := wait(t, r.done); res.code != api.ExitFailed || !strings.Contains(res.stderr, "not what this load asked for") {
		t.Fatalf("superseded load:\n%s", res)
	}

	// A request hal0-slotd refuses (the state changed after hal0-apid's
	// check) ends the command at once with the conflict exit code, though
	// the slot itself has not settled.
	e.state(slots.Status{Name: "primary", State: slots.Ready, ModelID: slotA, Extra: map[string]any{"request_id": req3.ID}})
	r = startWatched(t, nil, "slot", "swap", "primary", "--model", slotB)
	req4 := e.requestAfter("primary", req3.ID)
	r.waitFor(t, "requested")
	e.state(slots.Status{Name: "primary", State: slots.Starting, ModelID: "demo/c:Q4_K_M", Target: "demo/c:Q4_K_M", Extra: map[string]any{
		"request_id": req4.ID,
		"request":    map[string]any{"id": req4.ID, "kind": "swap", "model": slotB, "outcome": "refused", "error": "slot primary is starting and cannot go to starting", "at": time.Now()},
	}})
	if res := wait(t, r.done); res.code != api.ExitConflict || !strings.Contains(res.stderr, "hal0-slotd refused the swap: slot primary is starting") {
		t.Fatalf("refused swap:\n%s", res)
	}
}

func TestSlotDetachAndErrors(t *testing.T) {
	e := newSlotEnv(t)
	e.state(slots.Status{Name: "primary", State: slots.Ready, ModelID: slotA})
	var acc api.SlotAccepted
	decode(t, run(t, "slot", "swap", "primary", "--model", slotB, "--detach", "--json"), &acc)
	if req := e.request("primary"); acc.RequestID != req.ID || acc.Kind != "swap" || acc.Model != slotB || acc.Next != "unloading" {
		t.Fatalf("--detach --json: %+v, request %+v", acc, req)
	}
	r := run(t, "slot", "unload", "primary", "--detach")
	if req := e.request("primary"); r.code != 0 || r.stdout != "primary: unload requested (request "+req.ID+"); follow it with `hal0 slot status primary`\n" {
		t.Fatalf("unload --detach:\n%s", r)
	}

	for _, tc := range []struct {
		args []string
		code int
		text string
	}{
		{[]string{"slot", "load", "primary", "--model", slotB}, api.ExitConflict, "slot primary is ready with " + slotA},
		{[]string{"slot", "swap", "primary", "--model", "qwen3:4b"}, api.ExitUsage, "only an flm slot"},
		{[]string{"slot", "swap", "npu", "--model", slotB}, api.ExitUsage, "slot npu runs flm"},
		{[]string{"slot", "swap", "primary", "--model", "demo/../x"}, api.ExitUsage, "invalid model ref"},
		{[]string{"slot", "swap", "primary"}, api.ExitUsage, "--model is required"},
		{[]string{"slot", "swap", "nope", "--model", slotB}, api.ExitNotFound, `no slot "nope"`},
		{[]string{"slot", "unload"}, api.ExitUsage, "want exactly one slot NAME"},
		{[]string{"slot", "status", "a", "b"}, api.ExitUsage, "at most one"},
		{[]string{"slot", "list", "x"}, api.ExitUsage, "no arguments"},
	} {
		r := run(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.text) {
			t.Errorf("%q: want exit %d and %q\n%s", tc.args, tc.code, tc.text, r)
		}
	}
}

// Without hal0-slotd nothing takes the request: after a while the CLI says
// so, and Ctrl-C stops watching without undoing anything.
func TestSlotFollowHintAndCtrlC(t *testing.T) {
	e := newSlotEnv(t)
	old := slotdHintAfter
	slotdHintAfter = 20 * time.Millisecond
	t.Cleanup(func() { slotdHintAfter = old })
	intr := make(chan os.Signal, 1)
	r := startWatched(t, intr, "slot", "load", "npu")
	req := e.request("npu")
	r.waitFor(t, "npu: hal0-slotd has not taken request "+req.ID+" yet; is it running?")
	intr <- os.Interrupt
	res := wait(t, r.done)
	if res.code != 0 || !strings.Contains(res.stderr, "stopped watching: the load goes on in hal0-slotd; see `hal0 slot status npu`") {
		t.Fatalf("Ctrl-C:\n%s", res)
	}
	if got := e.request("npu"); got.ID != req.ID {
		t.Errorf("Ctrl-C touched the request: %+v", got)
	}
}

// slot logs runs journalctl for the slot's unit; a script that prints its
// arguments stands in for journalctl (no systemd is booted here).
func TestSlotLogs(t *testing.T) {
	newSlotEnv(t)
	stub := filepath.Join(t.TempDir(), "journalctl")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\necho \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := journalctl
	t.Cleanup(func() { journalctl = old })
	journalctl = stub
	for _, tc := range []struct {
		args []string
		out  string
	}{
		{[]string{"slot", "logs", "primary"}, "--no-pager -o cat -u hal0-slot@primary.service\n"},
		{[]string{"slot", "logs", "primary", "-f"}, "--no-pager -o cat --follow -u hal0-slot@primary.service\n"},
		{[]string{"slot", "logs", "npu", "--json"}, "--no-pager -o json -u hal0-slot@npu.service\n"},
	} {
		if r := run(t, tc.args...); r.code != 0 || r.stdout != tc.out {
			t.Errorf("%q:\n%s", tc.args, r)
		}
	}
	if r := run(t, "slot", "logs", "nope"); r.code != api.ExitNotFound {
		t.Errorf("logs of an unknown slot:\n%s", r)
	}
	journalctl = filepath.Join(t.TempDir(), "no-journalctl")
	if r := run(t, "slot", "logs", "primary"); r.code != api.ExitFailed || !strings.Contains(r.stderr, "journalctl is not installed here, so the journal of hal0-slot@primary.service cannot be read") {
		t.Errorf("logs without journalctl:\n%s", r)
	}
}

func TestSlotHelp(t *testing.T) {
	for _, c := range groups["slot"] {
		r := run(t, "slot", c.name, "--help")
		if r.code != 0 || !strings.Contains(r.stderr, "example:\n  hal0 slot "+c.name) {
			t.Errorf("slot %s --help:\n%s", c.name, r)
		}
		if (c.name == "list" || c.name == "status") && !strings.Contains(r.stderr, "-json") {
			t.Errorf("slot %s has no --json", c.name)
		}
	}
	if len(groups["slot"]) != 6 {
		t.Errorf("slot verbs: %d", len(groups["slot"]))
	}
}
