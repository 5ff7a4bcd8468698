// Package progress turns byte counters into what people read: a rate that
// does not jump around, an ETA, a one-line bar on a terminal and plain
// periodic lines everywhere else.
package progress

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/hal0ai/hal0/internal/config"
)

// Meter smooths throughput with an exponentially weighted moving average
// over samples, so that one slow second does not swing the ETA.
type Meter struct {
	last     int64
	lastAt   time.Time
	rate     float64
	started  bool
	HalfLife time.Duration // default 3s
}

// Observe feeds the current byte count at time now and returns the rate in
// bytes per second.
func (m *Meter) Observe(n int64, now time.Time) float64 {
	if !m.started {
		m.last, m.lastAt, m.started = n, now, true
		return m.rate
	}
	dt := now.Sub(m.lastAt)
	if dt <= 0 {
		return m.rate
	}
	inst := float64(n-m.last) / dt.Seconds()
	if inst < 0 {
		inst = 0
	}
	hl := m.HalfLife
	if hl <= 0 {
		hl = 3 * time.Second
	}
	// Weight of the new sample for a time step dt given the half-life.
	w := 1 - math.Exp2(-dt.Seconds()/hl.Seconds())
	if m.rate == 0 {
		m.rate = inst
	} else {
		m.rate = m.rate*(1-w) + inst*w
	}
	m.last, m.lastAt = n, now
	return m.rate
}

// Rate returns the current smoothed rate.
func (m *Meter) Rate() float64 { return m.rate }

// State is what a renderer draws.
type State struct {
	Label   string // e.g. the model ref
	Phase   string
	Done    int64
	Total   int64
	Rate    float64 // bytes/s
	Elapsed time.Duration
	File    string
}

// ETA returns the estimated time left, or -1 when unknown.
func (s State) ETA() time.Duration {
	if s.Rate <= 0 || s.Total <= 0 {
		return -1
	}
	left := max(s.Total-s.Done, 0)
	return time.Duration(float64(left) / s.Rate * float64(time.Second))
}

// Bytes formats n with a binary unit.
func Bytes(n int64) string { return config.FormatBytes(n) }

// Duration formats d compactly: 45s, 3m05s, 1h02m.
func Duration(d time.Duration) string {
	if d < 0 {
		return "--"
	}
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// Line renders the plain, log-friendly form used off a terminal and in the
// journal.
func Line(s State) string {
	pct := ""
	if s.Total > 0 {
		pct = fmt.Sprintf(" %5.1f%%", 100*float64(s.Done)/float64(s.Total))
	}
	file := ""
	if s.File != "" {
		file = " " + s.File
	}
	return fmt.Sprintf("%s %s%s %s/%s %s/s eta %s%s", s.Label, s.Phase, pct, Bytes(s.Done), Bytes(s.Total), Bytes(int64(s.Rate)), Duration(s.ETA()), file)
}

// Bar renders a one-line bar fitted to width columns.
func Bar(s State, width int) string {
	if width < 40 {
		width = 40
	}
	frac := 0.0
	if s.Total > 0 {
		frac = min(float64(s.Done)/float64(s.Total), 1)
	}
	right := fmt.Sprintf(" %5.1f%% %s/%s %s/s ETA %s", 100*frac, Bytes(s.Done), Bytes(s.Total), Bytes(int64(s.Rate)), Duration(s.ETA()))
	label := s.Label
	if s.Phase != "" && s.Phase != "downloading" {
		label += " (" + s.Phase + ")"
	}
	// One column stays free: writing the last column makes some terminals
	// wrap, which breaks the \r redraw.
	barW := width - len(right) - len(label) - 4
	if barW < 10 {
		// Too narrow for the label: drop it before the bar, and keep at
		// least a short bar whatever the width.
		label = ""
		barW = max(width-len(right)-3, 5)
	}
	fill := int(frac * float64(barW))
	b := "[" + strings.Repeat("=", fill) + strings.Repeat(" ", barW-fill) + "]"
	if fill > 0 && fill < barW {
		b = "[" + strings.Repeat("=", fill-1) + ">" + strings.Repeat(" ", barW-fill) + "]"
	}
	out := b + right
	if label != "" {
		out = label + " " + out
	}
	if len(out) > width {
		out = out[:width]
	}
	return out
}

// Renderer draws states to w: redrawing one line in place on a terminal
// (TTY), or printing a plain line at most every Every otherwise.
type Renderer struct {
	W     io.Writer
	TTY   bool
	Width int           // terminal width; 80 if 0
	Every time.Duration // plain-line interval; default 5s
	last  time.Time
	drawn bool
}

// Update draws s if it is time to.
func (r *Renderer) Update(s State, now time.Time) {
	if r.TTY {
		w := r.Width
		if w == 0 {
			w = 80
		}
		fmt.Fprintf(r.W, "\r\x1b[K%s", Bar(s, w))
		r.drawn = true
		return
	}
	every := r.Every
	if every == 0 {
		every = 5 * time.Second
	}
	if !r.last.IsZero() && now.Sub(r.last) < every {
		return
	}
	r.last = now
	fmt.Fprintln(r.W, Line(s))
}

// Done ends the display with a final message on its own line.
func (r *Renderer) Done(msg string) {
	if r.TTY && r.drawn {
		fmt.Fprint(r.W, "\r\x1b[K")
	}
	if msg != "" {
		fmt.Fprintln(r.W, msg)
	}
}
