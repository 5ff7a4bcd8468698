package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/runner"
	"github.com/hal0ai/hal0/internal/slots"
)

// hal0-slotd is built by another part of the project. In these tests the
// test itself stands in for it, through the files that are the whole
// contract between the two daemons: it writes the slot configurations and
// state.json the way hal0-slotd would, and reads the request.json the API
// leaves for it.

const (
	primaryTOML = `
[slot]
port = 8081
backend = "llama-server"
role = "primary"

[model]
default = "demo/m:q4_k_m"
`
	npuTOML = `
[slot]
port = 8088
backend = "flm"

[model]
default = "qwen3:4b"
`
	modelA = "demo/a:Q4_K_M"
	modelB = "demo/b:Q4_K_M"
	modelM = "demo/m:Q4_K_M" // primary's default, canonical
)

func writeSlot(t *testing.T, a *testAPI, name, body string) {
	t.Helper()
	dir := a.cfg.Paths.SlotConfigDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".toml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// setState writes state.json as hal0-slotd does.
func setState(t *testing.T, a *testAPI, st slots.Status) {
	t.Helper()
	if st.UpdatedAt == 0 {
		st.UpdatedAt = float64(time.Now().UnixNano()) / 1e9
	}
	if err := slots.SaveStatus(slots.StatePath(a.cfg.Paths.StateDir, st.Name), &st); err != nil {
		t.Fatal(err)
	}
}

// request reads request.json as hal0-slotd does; nil when there is none.
func request(t *testing.T, a *testAPI, name string) *slots.Request {
	t.Helper()
	r, err := slots.ReadRequest(slots.RequestPath(a.cfg.Paths.StateDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// breakState writes a state.json hal0-slotd would never write.
func breakState(t *testing.T, a *testAPI, name, body string) {
	t.Helper()
	p := slots.StatePath(a.cfg.Paths.StateDir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func clearRequest(t *testing.T, a *testAPI, name string) {
	t.Helper()
	if err := os.Remove(slots.RequestPath(a.cfg.Paths.StateDir, name)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

func slotAPI(t *testing.T) *testAPI {
	t.Helper()
	a := newAPI(t)
	writeSlot(t, a, "primary", primaryTOML)
	writeSlot(t, a, "npu", npuTOML)
	return a
}

func install(t *testing.T, a *testAPI, id string) {
	t.Helper()
	err := a.srv.Registry.Update(context.Background(), func(r *registry.Registry) error {
		r.Put(&registry.Model{ID: id, Path: "/models/" + id, Source: "hf"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSlotListAndGet(t *testing.T) {
	a := slotAPI(t)
	writeSlot(t, a, "spare", "[slot]\nport = 8090\nbackend = \"llama-server\"\nenabled = false\n")
	setState(t, a, slots.Status{Name: "primary", State: slots.Ready, ModelID: modelA, Port: 8081, UpdatedAt: 1750000000.5,
		Message: "serving " + modelA, Extra: map[string]any{"request_id": "r1", "ctx": 8192.0}})

	var list []api.Slot
	if code := a.do(t, "GET", "/api/slots", "", &list); code != 200 || len(list) != 3 {
		t.Fatalf("list: %d %+v", code, list)
	}
	// Sorted by name; npu and spare never ran, so they are offline.
	npu, primary, spare := list[0], list[1], list[2]
	if npu.Name != "npu" || npu.Backend != "flm" || npu.Port != 8088 || npu.DefaultModel != "qwen3:4b" || !npu.Enabled ||
		npu.State != "offline" || npu.Unit != "hal0-slot@npu.service" || npu.ModelID != "" {
		t.Errorf("npu %+v", npu)
	}
	if primary.State != "ready" || primary.ModelID != modelA || primary.Role != "primary" || primary.UpdatedAt != 1750000000.5 ||
		primary.Message != "serving "+modelA || primary.Extra["ctx"] != 8192.0 || primary.DefaultModel != "demo/m:q4_k_m" || primary.Pending != nil {
		t.Errorf("primary %+v", primary)
	}
	if spare.Enabled || spare.State != "offline" {
		t.Errorf("spare %+v", spare)
	}
	var one api.Slot
	if code := a.do(t, "GET", "/api/slots/primary", "", &one); code != 200 || fmt.Sprint(one) != fmt.Sprint(primary) {
		t.Errorf("get: %d %+v", code, one)
	}

	// A broken state.json is shown on its slot, not fatal to the list.
	breakState(t, a, "npu", "{half")
	a.do(t, "GET", "/api/slots", "", &list)
	if len(list) != 3 || list[0].State != "unknown" || !strings.Contains(list[0].StateError, "malformed") || list[1].State != "ready" {
		t.Errorf("list with a broken state.json: %+v", list)
	}

	// No slot directory at all is an empty list, not an error.
	empty := newAPI(t)
	var none []api.Slot
	if code := empty.do(t, "GET", "/api/slots", "", &none); code != 200 || none == nil || len(none) != 0 {
		t.Errorf("no slots: %d %v", code, none)
	}
	// A broken configuration is the Python hal0's slot.config_error.
	writeSlot(t, a, "dup", "[slot]\nport = 8081\nbackend = \"llama-server\"\n")
	if code, c := errCode(t, a, "GET", "/api/slots", ""); code != 400 || c != api.CodeSlotConfig {
		t.Errorf("duplicate port: %d %s", code, c)
	}
}

func TestSlotRequestsAreRecorded(t *testing.T) {
	a := slotAPI(t)
	install(t, a, modelA)
	for _, tc := range []struct {
		name      string
		start     slots.Status
		path      string
		body      string
		kind      slots.EventKind
		model     string
		wantState string // the state now
		next      string
	}{
		{"load the default, which must be pulled", slots.Status{State: slots.Offline}, "/load", "", slots.EvLoad, modelM, "offline", "pulling"},
		{"load an installed model", slots.Status{State: slots.Offline}, "/load", `{"model":"demo/a:q4_k_m"}`, slots.EvLoad, modelA, "offline", "starting"},
		{"load after an error", slots.Status{State: slots.Error, Message: "crashed"}, "/load", `{"model":"` + modelA + `"}`, slots.EvLoad, modelA, "error", "starting"},
		{"swap a ready slot", slots.Status{State: slots.Ready, ModelID: modelA}, "/swap", `{"model":"` + modelB + `"}`, slots.EvSwap, modelB, "ready", "unloading"},
		{"swap with the Python hal0's model_id", slots.Status{State: slots.Idle, ModelID: modelA}, "/swap", `{"model_id":"` + modelB + `"}`, slots.EvSwap, modelB, "idle", "unloading"},
		{"swap to the model it serves", slots.Status{State: slots.Ready, ModelID: modelA}, "/swap", `{"model":"` + modelA + `"}`, slots.EvSwap, modelA, "ready", "ready"},
		{"load what it serves", slots.Status{State: slots.Serving, ModelID: modelA}, "/load", `{"model":"` + modelA + `"}`, slots.EvLoad, modelA, "serving", "serving"},
		{"the same load again while pulling", slots.Status{State: slots.Pulling, Target: modelB}, "/load", `{"model":"` + modelB + `"}`, slots.EvLoad, modelB, "pulling", "pulling"},
		{"unload a ready slot", slots.Status{State: slots.Ready, ModelID: modelA}, "/unload", "", slots.EvUnload, "", "ready", "unloading"},
		{"unload abandons a pull", slots.Status{State: slots.Pulling, Target: modelB}, "/unload", "{}", slots.EvUnload, "", "pulling", "offline"},
		{"unload an offline slot", slots.Status{State: slots.Offline}, "/unload", "", slots.EvUnload, "", "offline", "offline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.start
			st.Name = "primary"
			setState(t, a, st)
			clearRequest(t, a, "primary")
			var acc api.SlotAccepted
			if code := a.do(t, "POST", "/api/slots/primary"+tc.path, tc.body, &acc); code != http.StatusAccepted {
				t.Fatalf("status %d", code)
			}
			req := request(t, a, "primary")
			if req == nil || req.ID != acc.RequestID || req.Kind != tc.kind || req.Model != tc.model || req.CreatedAt.IsZero() {
				t.Fatalf("request.json %+v, reply %+v", req, acc)
			}
			if acc.Kind != string(tc.kind) || acc.Model != tc.model || acc.State != tc.wantState || acc.Next != tc.next || acc.Name != "primary" {
				t.Errorf("reply %+v", acc)
			}
			if acc.Pending == nil || acc.Pending.ID != req.ID || acc.Pending.Kind != string(tc.kind) {
				t.Errorf("reply's pending request %+v", acc.Pending)
			}
		})
	}

	// Once hal0-slotd records the request as applied, it is no longer
	// pending.
	var acc api.SlotAccepted
	setState(t, a, slots.Status{Name: "primary", State: slots.Offline})
	a.do(t, "POST", "/api/slots/primary/load", "", &acc)
	setState(t, a, slots.Status{Name: "primary", State: slots.Pulling, Target: modelM, Extra: map[string]any{"request_id": acc.RequestID}})
	var v api.Slot
	if a.do(t, "GET", "/api/slots/primary", "", &v); v.Pending != nil || v.State != "pulling" || v.Target != modelM {
		t.Errorf("after slotd applied the request: %+v", v)
	}
	// The newest request replaces one still waiting.
	var second api.SlotAccepted
	a.do(t, "POST", "/api/slots/primary/unload", "", &second)
	if r := request(t, a, "primary"); r.ID != second.RequestID || r.Kind != slots.EvUnload || r.ID == acc.RequestID {
		t.Errorf("second request %+v", r)
	}
}

// hal0-slotd reports what it did with a request, and copies the pull's
// progress, in state.json's extra; the view types both. The shapes here
// are the ones hal0-slotd writes (internal/slotd, RequestOutcome and
// PullProgress).
func TestSlotViewReadsSlotdExtras(t *testing.T) {
	a := slotAPI(t)
	setState(t, a, slots.Status{Name: "primary", State: slots.Pulling, Target: modelM, Extra: map[string]any{
		"request_id": "r2",
		"request":    map[string]any{"id": "r2", "kind": "swap", "model": modelB, "outcome": "refused", "error": "slot primary is pulling", "at": "2025-06-01T10:00:00Z"},
		"pull":       map[string]any{"job_id": "j1", "unit": "hal0-pull@demo-m:Q4_K_M.service", "state": "running", "phase": "downloading", "bytes_done": 40, "bytes_total": 100, "rate_bps": 7.5},
	}})
	var v api.Slot
	a.do(t, "GET", "/api/slots/primary", "", &v)
	if lr := v.LastRequest; lr == nil || lr.ID != "r2" || lr.Outcome != "refused" || lr.Model != modelB || !v.Refused("r2") || v.Refused("r1") {
		t.Errorf("last request %+v", v.LastRequest)
	}
	if p := v.Pull; p == nil || p.JobID != "j1" || p.BytesDone != 40 || p.BytesTotal != 100 || p.RateBPS != 7.5 {
		t.Errorf("pull from extra %+v", v.Pull)
	}
	// A running job record is fresher than hal0-slotd's copy.
	j, _, err := a.srv.Jobs.Begin(context.Background(), jobs.Job{Ref: modelM, Kind: "hf", Unit: "hal0-pull@demo-m:Q4_K_M.service"})
	if err != nil {
		t.Fatal(err)
	}
	a.run.set(j.ID, runner.State{Active: true})
	a.srv.Jobs.Update(context.Background(), j.ID, func(j *jobs.Job) error { j.State, j.BytesDone, j.BytesTotal = jobs.Running, 60, 100; return nil })
	if a.do(t, "GET", "/api/slots/primary", "", &v); v.Pull == nil || v.Pull.JobID != j.ID || v.Pull.BytesDone != 60 {
		t.Errorf("pull from the job record %+v", v.Pull)
	}
}

// TestSlotIllegalRequests sends every request from every state and
// expects exactly the refusals of the reducer hal0-slotd runs, as 409s
// that leave request.json alone and say what state the slot is in.
func TestSlotIllegalRequests(t *testing.T) {
	a := slotAPI(t)
	refused := 0
	for _, from := range slots.States {
		start := slots.Status{Name: "primary", State: from, ModelID: modelA}
		switch from {
		case slots.Pulling, slots.Starting, slots.Warming, slots.Unloading:
			start.Target = modelB
		}
		for _, kind := range []slots.EventKind{slots.EvLoad, slots.EvSwap, slots.EvUnload} {
			models := []string{modelA, modelB, "demo/c:Q4_K_M"}
			if kind == slots.EvUnload {
				models = []string{""}
			}
			for _, m := range models {
				_, _, rerr := slots.Reduce(start, slots.Event{Kind: kind, Model: m}, time.Now())
				setState(t, a, start)
				clearRequest(t, a, "primary")
				body := ""
				if m != "" {
					body = `{"model":"` + m + `"}`
				}
				var env api.Envelope
				code := a.do(t, "POST", "/api/slots/primary/"+string(kind), body, &env)
				what := fmt.Sprintf("%s %s from %s", kind, m, from)
				if rerr != nil {
					refused++
					if code != 409 || env.Error == nil || env.Error.Code != api.CodeSlotIllegal || !strings.Contains(env.Error.Message, "slot primary is "+string(from)) {
						t.Errorf("%s: want 409 %s naming the state, got %d %+v", what, api.CodeSlotIllegal, code, env.Error)
					}
					if r := request(t, a, "primary"); r != nil {
						t.Errorf("%s: refused, yet request.json holds %+v", what, r)
					}
					continue
				}
				if code != 202 || request(t, a, "primary") == nil {
					t.Errorf("%s: want 202 and a request, got %d %+v", what, code, env.Error)
				}
			}
		}
	}
	if refused < 10 {
		t.Fatalf("only %d refusals: the table does not exercise the state machine", refused)
	}

	// The messages say what to do instead.
	setState(t, a, slots.Status{Name: "primary", State: slots.Ready, ModelID: modelA})
	var env api.Envelope
	a.do(t, "POST", "/api/slots/primary/load", `{"model":"`+modelB+`"}`, &env)
	if !strings.Contains(env.Error.Message, "slot primary is ready with "+modelA) || !strings.Contains(env.Error.Message, "swap to "+modelB) {
		t.Errorf("load over a different model: %s", env.Error.Message)
	}
	setState(t, a, slots.Status{Name: "primary", State: slots.Starting, ModelID: modelA, Target: modelA})
	a.do(t, "POST", "/api/slots/primary/swap", `{"model":"`+modelB+`"}`, &env)
	if !strings.Contains(env.Error.Message, "slot primary is starting bringing in "+modelA) || !strings.Contains(env.Error.Message, "unload") {
		t.Errorf("swap while starting: %s", env.Error.Message)
	}
}

func TestSlotRequestErrors(t *testing.T) {
	a := slotAPI(t)
	writeSlot(t, a, "off", "[slot]\nport = 8090\nbackend = \"llama-server\"\nenabled = false\n[model]\ndefault = \"demo/m\"\n")
	writeSlot(t, a, "bare", "[slot]\nport = 8091\nbackend = \"llama-server\"\n")
	writeSlot(t, a, "badref", "[slot]\nport = 8092\nbackend = \"llama-server\"\n[model]\ndefault = \"demo/../x\"\n")
	for _, tc := range []struct {
		method, path, body string
		status             int
		code, text         string
	}{
		{"GET", "/api/slots/nope", "", 404, api.CodeSlotNotFound, "configured: badref, bare, npu, off, primary"},
		{"GET", "/api/slots/nope/events", "", 404, api.CodeSlotNotFound, "no slot"},
		{"POST", "/api/slots/nope/swap", `{"model":"demo/a"}`, 404, api.CodeSlotNotFound, "no slot"},
		{"POST", "/api/slots/nope/unload", "", 404, api.CodeSlotNotFound, "no slot"},
		{"POST", "/api/slots/primary/swap", `{"model":"demo/../x"}`, 400, api.CodeInvalidRef, "invalid model ref"},
		{"POST", "/api/slots/primary/load", `{"model":"a b"}`, 400, api.CodeInvalidRef, ""},
		{"POST", "/api/slots/primary/swap", "", 400, api.CodeBadRequest, "swap needs the model"},
		{"POST", "/api/slots/primary/swap", `{"model":"demo/a","colour":"red"}`, 400, api.CodeBadRequest, "colour"},
		{"POST", "/api/slots/primary/swap", `{"model":"demo/a","model_id":"demo/b"}`, 400, api.CodeBadRequest, "disagree"},
		{"POST", "/api/slots/primary/unload", `{"model":"demo/a"}`, 400, api.CodeBadRequest, "unload takes no model"},
		{"POST", "/api/slots/primary/swap", `{"model":"qwen3:4b"}`, 400, api.CodeSlotBackend, "slot primary runs llama-server, which serves GGUF models named by Hugging Face refs"},
		{"POST", "/api/slots/primary/load", `{"model":"qwen3:4b"}`, 400, api.CodeSlotBackend, "only an flm slot"},
		{"POST", "/api/slots/npu/swap", `{"model":"demo/a:Q4_K_M"}`, 400, api.CodeSlotBackend, "slot npu runs flm (the NPU), which serves FLM tags such as qwen3:4b"},
		{"POST", "/api/slots/primary/load", `{"model":"never-staged"}`, 404, api.CodeModelMissing, "not in the registry"},
		{"POST", "/api/slots/off/load", "", 409, api.CodeSlotDisabled, "slot off is disabled"},
		{"POST", "/api/slots/bare/load", "", 400, api.CodeSlotConfig, "no model.default"},
		{"POST", "/api/slots/badref/load", "", 400, api.CodeSlotConfig, "model.default of slot badref"},
		{"GET", "/api/slots/primary/swap", "", 404, api.CodeNotFound, "no API route"},
		{"DELETE", "/api/slots/primary", "", 404, api.CodeNotFound, "no API route"},
	} {
		t.Run(tc.method+" "+tc.path+" "+tc.body, func(t *testing.T) {
			var env api.Envelope
			st := a.do(t, tc.method, tc.path, tc.body, &env)
			if st != tc.status || env.Error == nil || env.Error.Code != tc.code || !strings.Contains(env.Error.Message, tc.text) {
				t.Errorf("got %d %+v, want %d %s %q", st, env.Error, tc.status, tc.code, tc.text)
			}
		})
	}
	// The same model as an FLM tag is fine on the flm slot, and a disabled
	// slot may still be unloaded.
	if code := a.do(t, "POST", "/api/slots/npu/load", "", nil); code != 202 {
		t.Errorf("npu load of its FLM default: %d", code)
	}
	if code := a.do(t, "POST", "/api/slots/off/unload", "", nil); code != 202 {
		t.Errorf("unload of a disabled slot: %d", code)
	}
	// A state.json the API cannot read refuses requests: the dry run needs
	// the current state.
	breakState(t, a, "primary", `{"state":"sleeping"}`)
	if code, c := errCode(t, a, "POST", "/api/slots/primary/unload", ""); code != 400 || c != api.CodeSlotConfig {
		t.Errorf("unreadable state: %d %s", code, c)
	}
}

func TestSlotTokenGuard(t *testing.T) {
	a := slotAPI(t)
	post := func(path, auth string) int {
		req, _ := http.NewRequest("POST", a.tcp+path, strings.NewReader(`{"model":"`+modelA+`"}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/api/slots/primary/load", "/api/slots/primary/swap"} {
		if code := post(path, ""); code != 401 {
			t.Errorf("%s without a token: %d", path, code)
		}
		if code := post(path, "Bearer nope"); code != 401 {
			t.Errorf("%s with a wrong token: %d", path, code)
		}
		if r := request(t, a, "primary"); r != nil {
			t.Fatalf("an unauthorised request was recorded: %+v", r)
		}
	}
	if code := post("/api/slots/primary/load", "Bearer "+apiToken); code != 202 {
		t.Errorf("load with the token: %d", code)
	}
	if r := request(t, a, "primary"); r == nil || r.Model != modelA {
		t.Errorf("request %+v", r)
	}
	// Reads need no token.
	for _, path := range []string{"/api/slots", "/api/slots/primary"} {
		resp, err := http.Get(a.tcp + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s over TCP: %d", path, resp.StatusCode)
		}
	}
}

// sse reads a slot event stream.
type sse struct {
	resp *http.Response
	sc   *bufio.Scanner
}

func openSlotEvents(t *testing.T, a *testAPI, name string) *sse {
	t.Helper()
	// A stream that stops delivering fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://hal0/api/slots/"+name+"/events", nil)
	resp, err := a.unix.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close(); cancel() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("events: %d %v", resp.StatusCode, resp.Header)
	}
	return &sse{resp: resp, sc: bufio.NewScanner(resp.Body)}
}

// next returns the next slot event, or nil when the stream ends; comments
// are appended to comments.
func (s *sse) next(t *testing.T, comments *[]string) *api.Slot {
	t.Helper()
	event := ""
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case strings.HasPrefix(line, ":"):
			if comments != nil {
				*comments = append(*comments, line)
			}
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if event != "slot" {
				t.Fatalf("event %q", event)
			}
			var v api.Slot
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &v); err != nil {
				t.Fatal(err)
			}
			return &v
		}
	}
	if err := s.sc.Err(); err != nil {
		t.Fatalf("stream broke: %v", err)
	}
	return nil
}

// TestSlotEvents follows a slot through a load driven by the test (as
// hal0-slotd would drive it), including the pull's progress, which comes
// from the job record without any change to state.json. Each change is
// made only after the previous one was seen, so every step must arrive
// as its own event.
func TestSlotEvents(t *testing.T) {
	a := slotAPI(t)
	setState(t, a, slots.Status{Name: "primary", State: slots.Offline})
	ev := openSlotEvents(t, a, "primary")
	var jobID string
	var applied map[string]any // hal0-slotd keeps the applied request's id in every later state
	var got []string
	for step := 0; ; step++ {
		v := ev.next(t, nil)
		if v == nil {
			break
		}
		s := v.State
		if v.Pull != nil {
			s += fmt.Sprintf(":%d/%d", v.Pull.BytesDone, v.Pull.BytesTotal)
		}
		if v.Pending != nil {
			s += "+pending"
		}
		got = append(got, s)
		switch step {
		case 0: // the API records a load
			if code := a.do(t, "POST", "/api/slots/primary/load", "", nil); code != 202 {
				t.Fatalf("load: %d", code)
			}
		case 1: // hal0-slotd applies it and starts the pull
			j, _, err := a.srv.Jobs.Begin(context.Background(), jobs.Job{Ref: modelM, Kind: "hf", Unit: "hal0-pull@demo-m:Q4_K_M.service"})
			if err != nil {
				t.Fatal(err)
			}
			jobID = j.ID
			a.run.set(j.ID, runner.State{Active: true, UnitState: "active"})
			a.srv.Jobs.Update(context.Background(), j.ID, func(j *jobs.Job) error {
				j.State, j.BytesTotal, j.BytesDone = jobs.Running, 1000, 250
				return nil
			})
			applied = map[string]any{"request_id": request(t, a, "primary").ID}
			setState(t, a, slots.Status{Name: "primary", State: slots.Pulling, Target: modelM, Extra: applied})
		case 2: // the worker makes progress
			a.srv.Jobs.Update(context.Background(), jobID, func(j *jobs.Job) error { j.BytesDone = 500; return nil })
		case 3: // the pull ends; hal0-slotd moves on first, so no event shows the finished job
			setState(t, a, slots.Status{Name: "primary", State: slots.Starting, ModelID: modelM, Target: modelM, Extra: applied})
			now := time.Now()
			a.srv.Jobs.Update(context.Background(), jobID, func(j *jobs.Job) error {
				j.State, j.BytesDone, j.FinishedAt = jobs.Completed, 1000, &now
				return nil
			})
		case 4:
			setState(t, a, slots.Status{Name: "primary", State: slots.Ready, ModelID: modelM, Extra: applied})
		case 5:
			a.srv.CloseStreams() // the stream must end on its own now
		default:
			t.Fatalf("event after CloseStreams: %+v", v)
		}
	}
	want := "offline offline+pending pulling:250/1000 pulling:500/1000 starting ready"
	if g := strings.Join(got, " "); g != want {
		t.Fatalf("events:\n got %s\nwant %s", g, want)
	}
}

func TestSlotEventsKeepAliveAndDisconnect(t *testing.T) {
	eventKeepAlive.Store(int64(20 * time.Millisecond))
	t.Cleanup(func() { eventKeepAlive.Store(0) })
	a := slotAPI(t)
	ev := openSlotEvents(t, a, "npu")
	var comments []string
	if v := ev.next(t, &comments); v == nil || v.Name != "npu" || v.State != "offline" {
		t.Fatalf("first event %+v", v)
	}
	// No change follows, so only keep-alive comments arrive; the next
	// event is the change the test makes once two of them were seen.
	for len(comments) < 2 {
		if !ev.sc.Scan() {
			t.Fatalf("stream ended waiting for keep-alives: %v", ev.sc.Err())
		}
		if line := ev.sc.Text(); line != "" {
			comments = append(comments, line)
		}
	}
	if comments[0] != ": keep-alive" || comments[1] != ": keep-alive" {
		t.Fatalf("lines without a change: %q", comments)
	}
	setState(t, a, slots.Status{Name: "npu", State: slots.Starting, ModelID: "qwen3:4b"})
	if v := ev.next(t, nil); v == nil || v.State != "starting" {
		t.Fatalf("after keep-alives: %+v", v)
	}
	// A client that goes away ends its stream: nothing stays in flight.
	ev.resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, n := a.srv.IdleSince(); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the event stream handler outlived its client")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Removing the slot's file ends a stream too.
	ev2 := openSlotEvents(t, a, "npu")
	ev2.next(t, nil)
	os.Remove(filepath.Join(a.cfg.Paths.SlotConfigDir(), "npu.toml"))
	for ev2.next(t, nil) != nil {
	}
}

// TestDeleteRefusedWhileASlotUsesTheModel: a model a slot serves, is
// bringing in, or has a pending request for cannot be deleted; once the
// slot lets go of it, it can.
func TestDeleteRefusedWhileASlotUsesTheModel(t *testing.T) {
	path := "/api/models/" + strings.ReplaceAll(modelA, "/", "%2F")
	for _, tc := range []struct {
		name    string
		prepare func(a *testAPI)
		status  int
		says    string
	}{
		{"served", func(a *testAPI) {
			setState(t, a, slots.Status{Name: "primary", State: slots.Ready, ModelID: modelA})
		}, 409, "slot primary (ready)"},
		{"idle", func(a *testAPI) {
			setState(t, a, slots.Status{Name: "primary", State: slots.Idle, ModelID: modelA})
		}, 409, "slot primary (idle)"},
		{"being brought in", func(a *testAPI) {
			setState(t, a, slots.Status{Name: "primary", State: slots.Starting, ModelID: modelB, Target: modelA})
		}, 409, "slot primary (bringing it in: starting)"},
		{"pending request", func(a *testAPI) {
			setState(t, a, slots.Status{Name: "primary", State: slots.Ready, ModelID: modelB})
			if err := slots.WriteRequest(slots.RequestPath(a.cfg.Paths.StateDir, "primary"), &slots.Request{ID: "r1", Kind: slots.EvSwap, Model: modelA}); err != nil {
				t.Fatal(err)
			}
		}, 409, "slot primary (a pending swap request)"},
		{"left in error", func(a *testAPI) {
			setState(t, a, slots.Status{Name: "primary", State: slots.Error, ModelID: modelA})
		}, 200, ""},
		{"another model served", func(a *testAPI) {
			setState(t, a, slots.Status{Name: "primary", State: slots.Ready, ModelID: modelB})
		}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := slotAPI(t)
			install(t, a, modelA)
			tc.prepare(a)
			var env api.Envelope
			st := a.do(t, "DELETE", path, "", &env)
			if st != tc.status {
				t.Fatalf("DELETE: %d %+v, want %d", st, env.Error, tc.status)
			}
			if tc.status == 409 && (env.Error.Code != api.CodeConflict || !strings.Contains(env.Error.Message, tc.says)) {
				t.Errorf("refusal %+v, want %q in it", env.Error, tc.says)
			}
			reg, err := a.srv.Registry.Load()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := reg.Get(modelA); ok != (tc.status == 409) {
				t.Errorf("entry present = %v after a %d", ok, st)
			}
		})
	}
}
