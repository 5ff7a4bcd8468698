package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// pullEvents is a pull as its event stream reports it, one event a
// second, with fixed figures so the rendering is exact.
func pullEvents() []*api.PullStatus {
	const mib = 1 << 20
	eta := func(s float64) *float64 { return &s }
	shard := func(i int) string { return "Q4_K_M/m-Q4_K_M-0000" + string(rune('0'+i)) + "-of-00003.gguf" }
	ev := func(state, phase string, done int64, rate float64, file string) *api.PullStatus {
		s := &api.PullStatus{JobID: "0123456789abcdef", ModelID: "demo/m:Q4_K_M", Kind: "hf", State: state, Phase: phase,
			BytesDone: done, RateBPS: rate, FilesTotal: 3, CurrentFile: file, Runner: "process"}
		if phase != "" && phase != "resolving" {
			s.BytesTotal = 12 * mib
		}
		if rate > 0 {
			s.ETAS = eta(float64(12*mib-done) / rate)
		}
		return s
	}
	return []*api.PullStatus{
		ev("queued", "", 0, 0, ""),
		ev("running", "resolving", 0, 0, ""),
		ev("running", "downloading", 1*mib, 2*mib, shard(1)),
		ev("running", "downloading", 3*mib, 2*mib, shard(1)),
		ev("running", "downloading", 5*mib, 2.5*mib, shard(2)),
		ev("running", "downloading", 7*mib, 2.5*mib, shard(2)),
		ev("running", "downloading", 9*mib, 3*mib, shard(3)),
		ev("running", "downloading", 11*mib, 3*mib, shard(3)),
		ev("running", "verifying", 12*mib, 0, ""),
		ev("running", "installing", 12*mib, 0, ""),
	}
}

// render feeds the events through a view with a fake clock, a note in
// the middle, and a terminal that narrows from 120 to 80 columns half-way.
func render(tty bool) string {
	var buf bytes.Buffer
	v := newView(&buf, tty)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := t0
	v.now = func() time.Time { return now }
	width := 120
	v.width = func() int { return width }
	for i, s := range pullEvents() {
		now = t0.Add(time.Duration(i) * time.Second)
		if i == 5 {
			width = 80
			v.note("a note, on a line of its own")
		}
		v.update(s)
	}
	v.clear()
	return buf.String()
}

// visible makes terminal control sequences readable in a golden file: one
// redraw a line.
func visible(s string) string {
	return strings.NewReplacer("\r", "\n\\r", "\x1b", "\\e").Replace(s)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// Off a terminal: a line at every phase change and every 5 s within a
// phase, no control characters.
func TestPlainProgressGolden(t *testing.T) {
	out := render(false)
	if strings.ContainsAny(out, "\r\x1b") {
		t.Errorf("control characters in plain output: %q", out)
	}
	golden(t, "pull_plain.golden", out)
}

// On a terminal: the bar is redrawn in place on every event, shows the
// current file while there is room for it, and is cleared for notes and
// at the end.
func TestTTYProgressGolden(t *testing.T) {
	out := render(true)
	for _, line := range strings.Split(strings.ReplaceAll(out, "\r\x1b[K", "\n"), "\n") {
		if len(line) >= 120 {
			t.Errorf("line of %d columns overflows the terminal: %q", len(line), line)
		}
	}
	golden(t, "pull_tty.golden", visible(out))
}
