package slotd

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/slots"
	"github.com/hal0ai/hal0/internal/unitwatch"
)

func parseSlot(t *testing.T, text string) *slots.Config {
	t.Helper()
	c, err := slots.ParseConfig("/etc/hal0/slots/primary.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCommand(t *testing.T) {
	spec := &RunSpec{Slot: "primary", ModelID: "org/m:Q4_K_M", Model: "/mnt/ai-models/local/org/m/main-Q4_K_M/m.gguf", Port: 8081, Context: 8192}
	c := parseSlot(t, `[slot]
port = 8081
backend = "llama-server"
[server]
command = ["/opt/llama/llama-server", "-m", "{model}", "--port={port}", "-c", "{ctx}"]
extra_args = ["--alias", "{model}", "-ngl", "99"]
`)
	argv, err := Command(c, spec)
	want := []string{"/opt/llama/llama-server", "-m", spec.Model, "--port=8081", "-c", "8192", "--alias", spec.Model, "-ngl", "99"}
	if err != nil || !slices.Equal(argv, want) {
		t.Fatalf("Command = %q, %v; want %q", argv, err, want)
	}

	// llama-server has a default command, on loopback.
	argv, err = Command(parseSlot(t, "[slot]\nport = 8081\nbackend = \"llama-server\"\n"), spec)
	if err != nil || argv[0] != "llama-server" || !slices.Contains(argv, "127.0.0.1") || !slices.Contains(argv, spec.Model) {
		t.Fatalf("default command %q, %v", argv, err)
	}
	// flm has none: its command line is the slot file's to give.
	if _, err := Command(parseSlot(t, "[slot]\nport = 8081\nbackend = \"flm\"\n"), spec); err == nil || !strings.Contains(err.Error(), "[server] command") {
		t.Fatalf("flm without a command: %v", err)
	}
}

// TestRunSlotRefuses: run-slot without its run spec, or with another
// slot's, says what is wrong instead of starting anything.
func TestRunSlotRefuses(t *testing.T) {
	home := t.TempDir()
	cfg := config.Default(home)
	dir := cfg.Paths.SlotConfigDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "primary.toml"), []byte("[slot]\nport = 8081\nbackend = \"llama-server\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := RunSlot(cfg, "primary")
	if err == nil || !strings.Contains(err.Error(), "no run spec") {
		t.Fatalf("without run.json: %v", err)
	}
	if err := WriteRunSpec(RunSpecPath(cfg.Paths.StateDir, "primary"), &RunSpec{Slot: "npu", Port: 8081}); err != nil {
		t.Fatal(err)
	}
	if err := RunSlot(cfg, "primary"); err == nil || !strings.Contains(err.Error(), `for slot "npu"`) {
		t.Fatalf("another slot's run.json: %v", err)
	}
	if err := RunSlot(cfg, "missing"); err == nil {
		t.Fatal("a slot without a config file ran")
	}
}

func TestUnitGone(t *testing.T) {
	const unit = `hal0-slot@stt\x2dnpu.service`
	for _, tc := range []struct {
		u      unitwatch.Unit
		loaded bool
		want   []string
	}{
		{unitwatch.Unit{ActiveState: "failed", Result: "exit-code", ExecMainCode: 1, ExecMainStatus: 1}, true,
			[]string{unit + " exited with status 1 (failed, result exit-code) while warming m", `journalctl -u 'hal0-slot@stt\x2dnpu.service'`}},
		{unitwatch.Unit{ActiveState: "failed", Result: "signal", ExecMainCode: 2, ExecMainStatus: 9}, true,
			[]string{"was killed by signal 9 (SIGKILL) (failed, result signal)"}},
		{unitwatch.Unit{ActiveState: "failed", Result: "core-dump", ExecMainCode: 3, ExecMainStatus: 11}, true,
			[]string{"dumped core on signal 11 (SIGSEGV)"}},
		{unitwatch.Unit{ActiveState: "failed", Result: "oom-kill", ExecMainCode: 2, ExecMainStatus: 9}, true,
			[]string{"was killed by the kernel's OOM killer"}},
		{unitwatch.Unit{}, false, []string{unit + " is not running"}},
	} {
		got := unitGone(unit, tc.u, tc.loaded, "warming m")
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("unitGone(%+v) = %q; want it to contain %q", tc.u, got, w)
			}
		}
	}
}

func TestPullMessage(t *testing.T) {
	for p, want := range map[PullProgress]string{
		{}:                   "pulling org/m:Q4_K_M",
		{Phase: "resolving"}: "pulling org/m:Q4_K_M: resolving",
		{BytesDone: 3 << 20, BytesTotal: 12 << 20}: "pulling org/m:Q4_K_M: 3.0 MiB of 12.0 MiB (25%)",
	} {
		if got := pullMessage("org/m:Q4_K_M", p); got != want {
			t.Errorf("pullMessage(%+v) = %q, want %q", p, got, want)
		}
	}
}

// TestPullProgressRoundTrip: the progress survives state.json, which is
// how a restarted hal0-slotd finds the job it was following.
func TestPullProgressRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	p := PullProgress{JobID: "0123456789abcdef", Unit: "hal0-pull@org-m:Q4_K_M.service", BytesDone: 5, BytesTotal: 10}
	st := &slots.Status{Name: "primary", State: slots.Pulling, Extra: map[string]any{ExtraPull: p}}
	if err := slots.SaveStatus(path, st); err != nil {
		t.Fatal(err)
	}
	back, err := slots.LoadStatus(path, "primary")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := pullProgress(back); !ok || got != p {
		t.Fatalf("pull progress after a round trip: %+v, %v; want %+v", got, ok, p)
	}
}

// TestRequestWatcher: a request written the way hal0-apid writes it wakes
// the watcher for its slot, also in a slot directory created after the
// watch (apid may create it first).
func TestRequestWatcher(t *testing.T) {
	root := filepath.Join(t.TempDir(), "slots")
	w, err := watchRequests(root, []string{"primary", "npu"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	names := make(chan string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, names, t.Logf)
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-names:
			if got != want {
				t.Fatalf("woke for %q, want %q", got, want)
			}
		case <-ctx.Done():
			t.Fatalf("no wake-up for %s", want)
		}
	}
	write := func(slot string) {
		t.Helper()
		r := &slots.Request{ID: slots.NewRequestID(), Kind: slots.EvLoad, Model: "org/m:Q4_K_M", CreatedAt: time.Now()}
		if err := slots.WriteRequest(filepath.Join(root, slot, requestFile), r); err != nil {
			t.Fatal(err)
		}
	}
	write("npu")
	expect("npu")
	// state.json, written next to it, is not a request.
	if err := slots.SaveStatus(filepath.Join(root, "primary", "state.json"), &slots.Status{Name: "primary", State: slots.Offline}); err != nil {
		t.Fatal(err)
	}
	write("primary")
	expect("primary")

	if err := os.RemoveAll(filepath.Join(root, "npu")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "npu"), 0o755); err != nil {
		t.Fatal(err)
	}
	expect("npu") // the new directory is looked into at once
	write("npu")
	expect("npu")
	cancel()
	<-done
}
