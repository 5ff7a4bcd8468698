package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestMeterSmoothsAndConverges(t *testing.T) {
	var m Meter
	t0 := time.Unix(0, 0)
	m.Observe(0, t0)
	// A steady 10 MB/s for 20 s converges to 10 MB/s.
	var r float64
	for i := 1; i <= 40; i++ {
		r = m.Observe(int64(i)*5e6, t0.Add(time.Duration(i)*500*time.Millisecond))
	}
	if r < 9.9e6 || r > 10.1e6 {
		t.Fatalf("rate %.0f, want ~10e6", r)
	}
	// One second with nothing does not drop it to zero.
	r = m.Observe(40*5e6, t0.Add(21*time.Second))
	if r < 5e6 {
		t.Fatalf("rate fell to %.0f after one idle second", r)
	}
}

func TestETA(t *testing.T) {
	if got := (State{Done: 50, Total: 100, Rate: 10}).ETA(); got != 5*time.Second {
		t.Errorf("ETA %v", got)
	}
	if got := (State{Total: 100}).ETA(); got != -1 {
		t.Errorf("unknown ETA %v", got)
	}
}

// Golden renderings: the bar on a terminal and the plain line elsewhere.
func TestRendering(t *testing.T) {
	s := State{Label: "org/m:Q4_K_M", Phase: "downloading", Done: 3 << 30, Total: 4 << 30, Rate: 100 << 20, File: "m-00002-of-00003.gguf"}
	const wantLine = "org/m:Q4_K_M downloading  75.0% 3.0 GiB/4.0 GiB 100.0 MiB/s eta 10s m-00002-of-00003.gguf"
	if got := Line(s); got != wantLine {
		t.Errorf("Line:\n got %q\nwant %q", got, wantLine)
	}
	const wantBar = "org/m:Q4_K_M [=============================>           ]  75.0% 3.0 GiB/4.0 GiB 100.0 MiB/s ETA 10s"
	if got := Bar(s, 100); got != wantBar {
		t.Errorf("Bar:\n got %q\nwant %q", got, wantBar)
	}
	if got := Bar(s, 40); len(got) > 76 || strings.Contains(got, "org/m") {
		t.Errorf("narrow bar keeps the label or overflows: %q", got)
	}

	var tty bytes.Buffer
	r := &Renderer{W: &tty, TTY: true, Width: 100}
	r.Update(s, time.Unix(0, 0))
	r.Done("done")
	if got := tty.String(); got != "\r\x1b[K"+wantBar+"\r\x1b[Kdone\n" {
		t.Errorf("tty output %q", got)
	}

	var plain bytes.Buffer
	p := &Renderer{W: &plain, Every: 5 * time.Second}
	for i := 0; i < 11; i++ {
		p.Update(s, time.Unix(int64(i), 0)) // one call a second for 10 s
	}
	if n := strings.Count(plain.String(), "\n"); n != 3 {
		t.Errorf("plain renderer printed %d lines in 10 s at a 5 s interval, want 3:\n%s", n, plain.String())
	}
	if strings.Contains(plain.String(), "\r") || strings.Contains(plain.String(), "\x1b") {
		t.Error("escape codes in plain output")
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{-1: "--", 45 * time.Second: "45s", 185 * time.Second: "3m05s", 3720 * time.Second: "1h02m"} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
	}
}
