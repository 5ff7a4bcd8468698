package slots

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTransitions checks every pair of states against the table: the legal
// ones pass, every other one is refused with an IllegalTransitionError.
func TestTransitions(t *testing.T) {
	allowed := map[[2]State]bool{}
	for _, p := range [][2]State{
		{Offline, Pulling}, {Offline, Starting},
		{Pulling, Starting}, {Pulling, Error}, {Pulling, Offline},
		{Starting, Warming}, {Starting, Error}, {Starting, Offline},
		{Warming, Ready}, {Warming, Idle}, {Warming, Error}, {Warming, Offline},
		{Ready, Serving}, {Ready, Idle}, {Ready, Unloading}, {Ready, Error},
		{Serving, Ready}, {Serving, Idle}, {Serving, Error},
		{Idle, Serving}, {Idle, Unloading}, {Idle, Ready},
		{Unloading, Offline}, {Unloading, Error},
		{Error, Offline}, {Error, Pulling}, {Error, Starting},
	} {
		allowed[p] = true
	}
	now := time.Unix(1700000000, 0)
	for _, from := range States {
		for _, to := range States {
			want := allowed[[2]State{from, to}] || from == to
			st := &Status{Name: "primary", State: from}
			err := st.Transition(to, "why", now)
			if want != (err == nil) {
				t.Errorf("%s → %s: err %v, want allowed=%v", from, to, err, want)
			}
			var ie *IllegalTransitionError
			if !want && (!errors.As(err, &ie) || st.State != from || !strings.Contains(err.Error(), string(from))) {
				t.Errorf("%s → %s: refusal %v left state %s", from, to, err, st.State)
			}
			if want && (st.State != to || st.Message != "why" || st.UpdatedAt != 1700000000) {
				t.Errorf("%s → %s: status %+v", from, to, st)
			}
		}
	}
	if CanTransition("bogus", Offline) || State("bogus").Valid() {
		t.Error("unknown state accepted")
	}
}

func TestStatusPersistence(t *testing.T) {
	dir := t.TempDir()
	p := StatePath(dir, "primary")
	st, err := LoadStatus(p, "primary")
	if err != nil || st.State != Offline {
		t.Fatalf("missing file: %+v %v", st, err)
	}
	st.Transition(Starting, "starting qwen3:4b", time.Now())
	st.ModelID, st.Port = "qwen3:4b", 8081
	if err := SaveStatus(p, st); err != nil {
		t.Fatal(err)
	}
	got, err := LoadStatus(p, "primary")
	if err != nil || got.State != Starting || got.ModelID != "qwen3:4b" || got.Message != "starting qwen3:4b" {
		t.Fatalf("reloaded %+v %v", got, err)
	}
	// The Python hal0's file loads too.
	os.WriteFile(p, []byte(`{"name":"npu","state":"ready","model_id":"gemma4-it-e2b-FLM","port":8088,"updated_at":1750000000.5,"message":"","extra":{}}`), 0o644)
	if got, err := LoadStatus(p, "npu"); err != nil || got.State != Ready || got.Port != 8088 {
		t.Fatalf("python state.json: %+v %v", got, err)
	}
	for _, bad := range []string{`{"state":"sleeping"}`, `{half`} {
		os.WriteFile(p, []byte(bad), 0o644)
		if _, err := LoadStatus(p, "x"); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err %v", bad, err)
		}
	}
}

const goodSlot = `
[slot]
name = "primary"
port = 8081
backend = "llama-server"
idle_timeout = "10m"

[model]
default = "Qwen/Qwen3-4B-GGUF:Q4_K_M"
context_size = 8192

[server]
command = ["llama-server", "--model", "{model}", "--port", "{port}"]
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig("/etc/hal0/slots/primary.toml", []byte(goodSlot))
	if err != nil {
		t.Fatal(err)
	}
	if c.Slot.Port != 8081 || c.Slot.IdleTimeout.D() != 10*time.Minute || !c.IsEnabled() || c.Model.ContextSize != 8192 {
		t.Fatalf("%+v", c)
	}
	for _, tc := range []struct{ name, body, want string }{
		{"unknown key", goodSlot + "\n[slot.extra]\nx = 1\n", "unknown key"},
		{"bad name", strings.Replace(goodSlot, `"primary"`, `"Primary!"`, 1), "slot.name"},
		{"name mismatch", strings.Replace(goodSlot, `"primary"`, `"other"`, 1), "does not match"},
		{"bad port", strings.Replace(goodSlot, "8081", "80", 1), "slot.port"},
		{"no backend", strings.Replace(goodSlot, `backend = "llama-server"`, "", 1), "backend is missing"},
		{"bad backend", strings.Replace(goodSlot, `"llama-server"`, `"vllm"`, 1), "llama-server or flm"},
		{"bad health path", goodSlot + "\n[health]\npath = \"health\"\n", "health.path"},
		{"syntax", "[slot\n", "primary.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("/etc/hal0/slots/primary.toml", []byte(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadConfigs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) { os.WriteFile(filepath.Join(dir, name+".toml"), []byte(body), 0o644) }
	write("primary", goodSlot)
	write("npu", "[slot]\nport = 8088\nbackend = \"flm\"\n")
	cs, err := LoadConfigs(dir)
	if err != nil || len(cs) != 2 || cs[0].Slot.Name != "npu" {
		t.Fatalf("%v %v", cs, err)
	}
	write("npu2", "[slot]\nport = 8089\nbackend = \"flm\"\n")
	if _, err := LoadConfigs(dir); err == nil || !strings.Contains(err.Error(), "NPU") {
		t.Fatalf("two NPU slots: %v", err)
	}
	write("npu2", "[slot]\nport = 8089\nbackend = \"flm\"\nenabled = false\n")
	if _, err := LoadConfigs(dir); err != nil {
		t.Fatalf("disabled second NPU slot: %v", err)
	}
	write("dup", "[slot]\nport = 8081\nbackend = \"llama-server\"\n")
	if _, err := LoadConfigs(dir); err == nil || !strings.Contains(err.Error(), "port 8081") {
		t.Fatalf("duplicate port: %v", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodSlot))
	f.Add([]byte("[slot]\nport = 8088\nbackend = \"flm\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("/etc/hal0/slots/primary.toml", data)
		if err != nil {
			return
		}
		if c.Slot.Name != "primary" || c.Slot.Port < 1024 || (c.Slot.Backend != "flm" && c.Slot.Backend != "llama-server") {
			t.Fatalf("accepted invalid config %+v", c.Slot)
		}
	})
}

func TestRequestRoundTrip(t *testing.T) {
	p := RequestPath(t.TempDir(), "primary")
	if r, err := ReadRequest(p); r != nil || err != nil {
		t.Fatalf("no request: %v %v", r, err)
	}
	in := &Request{ID: NewRequestID(), Kind: EvSwap, Model: "qwen3:4b", CreatedAt: time.Unix(1700000000, 0).UTC()}
	if err := WriteRequest(p, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadRequest(p)
	if err != nil || *out != *in {
		t.Fatalf("got %+v %v", out, err)
	}
	if err := WriteRequest(p, &Request{Kind: EvHealthy}); err == nil {
		t.Fatal("observation accepted as a request")
	}
	os.WriteFile(p, []byte("{"), 0o644)
	if _, err := ReadRequest(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("malformed request: %v", err)
	}
}
