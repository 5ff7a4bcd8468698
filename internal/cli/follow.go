package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/client"
	"github.com/hal0ai/hal0/internal/progress"
)

// interrupts returns the channel Ctrl-C arrives on while a pull is
// followed, and a function that stops the delivery. Tests replace it to
// press Ctrl-C without signalling the test process. Only SIGINT is taken:
// a closed terminal (SIGHUP) or SIGTERM ends the CLI and leaves the pull
// to hal0-apid, which is where it runs anyway.
var interrupts = func() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt)
	return ch, func() { signal.Stop(ch) }
}

// plainEvery is how often plain progress lines repeat within one phase.
const plainEvery = 5 * time.Second

// minBarWithFile is the narrowest bar worth keeping beside the current
// file's name; below it the name is left out, not the bar.
const minBarWithFile = 20

// view draws a pull's progress: a bar redrawn in place on a terminal, or
// plain lines (at every phase change and every plainEvery) for logs and
// pipes.
type view struct {
	w     io.Writer
	tty   bool
	width func() int
	now   func() time.Time
	every time.Duration

	last  time.Time
	phase string
	drawn bool // a bar is on the terminal's current line
	said  bool // a plain line was printed
}

func newView(w io.Writer, tty bool) *view {
	return &view{w: w, tty: tty, now: time.Now, every: plainEvery, width: termWidth}
}

// eraseLine returns to the start of the line and clears it, so that a
// redraw never leaves the tail of a longer one behind.
const eraseLine = "\r\x1b[K"

// termWidth is asked on every redraw, so a resized terminal gets a bar
// that fits.
func termWidth() int {
	if f, ok := Stderr.(*os.File); ok {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
			return w
		}
	}
	return 80
}

// phaseOf names what a job is doing: the engine's phase while it runs, the
// state otherwise.
func phaseOf(s *api.PullStatus) string {
	if s.State == "running" && s.Phase != "" {
		return s.Phase
	}
	return s.State
}

func stateOf(s *api.PullStatus) progress.State {
	return progress.State{
		Label: s.ModelID, Phase: phaseOf(s), Done: s.BytesDone, Total: s.BytesTotal, Rate: s.RateBPS,
		Elapsed: time.Duration(s.ElapsedS * float64(time.Second)), File: s.CurrentFile,
	}
}

func (v *view) update(s *api.PullStatus) {
	if s.State == "running" && s.Phase == "done" {
		// The worker's last progress report, just before it records the
		// outcome: the final event follows and says it better.
		return
	}
	ps := stateOf(s)
	if v.tty {
		w := v.width()
		line := ""
		if ps.Total <= 0 {
			// Before the file list is resolved there is nothing to fill a
			// bar with: an empty one reading "0 B/0 B" would only be noise.
			line = ps.Label + " " + ps.Phase + "…"
		} else {
			ps.Label = barLabel(ps, w)
			line = progress.Bar(ps, w)
		}
		fmt.Fprint(v.w, eraseLine+line)
		v.drawn = true
		return
	}
	now := v.now()
	if v.said && ps.Phase == v.phase && now.Sub(v.last) < v.every {
		return
	}
	v.said, v.phase, v.last = true, ps.Phase, now
	if ps.Total <= 0 {
		fmt.Fprintf(v.w, "%s %s\n", ps.Label, ps.Phase)
		return
	}
	fmt.Fprintln(v.w, progress.Line(ps))
}

// barLabel puts the current file beside the model id when the terminal is
// wide enough for both and a useful bar.
func barLabel(s progress.State, width int) string {
	if s.File == "" {
		return s.Label
	}
	withFile := s
	withFile.Label = s.Label + " " + path.Base(s.File)
	out, ok := strings.CutPrefix(progress.Bar(withFile, width), withFile.Label+" [")
	if ok && strings.Index(out, "]") >= minBarWithFile {
		return withFile.Label
	}
	return s.Label
}

// note prints a message on a line of its own, clearing the bar first.
func (v *view) note(msg string) {
	v.clear()
	fmt.Fprintln(v.w, msg)
}

// clear removes the bar, leaving the cursor at the start of an empty line.
func (v *view) clear() {
	if v.drawn {
		fmt.Fprint(v.w, eraseLine)
		v.drawn = false
	}
}

// followResult is how following a pull ended.
type followResult struct {
	last     *api.PullStatus // the final status, or the last one seen
	detached bool            // the user stopped waiting; the pull goes on
	// cancelling is true when a cancel was requested before detaching.
	cancelling bool
}

// follow draws the pull of st.ModelID from its event stream until the job
// ends. With cancel set (hal0 model pull), the first interrupt asks
// hal0-apid to cancel the pull and keeps following it to its final state;
// the next one stops waiting. Without it (hal0 pull status --follow), the
// first interrupt stops waiting: watching a pull must not end it.
func follow(ctx context.Context, c *client.Client, st *api.PullStatus, v *view, intr <-chan os.Signal, cancel bool) (followResult, error) {
	id := st.ModelID
	res := followResult{last: st}
	if st.Final() {
		return res, nil
	}
	evCtx, stopEvents := context.WithCancel(ctx)
	updates := make(chan *api.PullStatus, 8)
	errc := make(chan error, 1)
	evDone := make(chan struct{})
	go func() {
		defer close(evDone)
		errc <- streamEvents(evCtx, c, id, updates)
	}()
	defer func() {
		stopEvents()
		<-evDone
	}()
	type cancelReply struct {
		st  *api.PullStatus
		err error
	}
	// Buffered: after a detach nobody reads it, and the request may still
	// be waiting on the runner.
	cancelled := make(chan cancelReply, 1)

	v.update(st)
	for {
		select {
		case s := <-updates:
			res.last = s
			if s.Final() {
				v.clear()
				return res, nil
			}
			v.update(s)
		case err := <-errc:
			// What the stream delivered before it ended is buffered.
			for drained := false; !drained; {
				select {
				case s := <-updates:
					res.last = s
				default:
					drained = true
				}
			}
			v.clear()
			if res.last.Final() {
				return res, nil
			}
			if err == nil {
				err = client.ErrStreamEnded
			}
			return res, fmt.Errorf("lost track of the pull of %s: %w; it goes on in hal0-apid: follow it with `hal0 pull status %s --follow`", id, err, id)
		case <-intr:
			if cancel && !res.cancelling {
				res.cancelling = true
				v.note("cancelling… (Ctrl-C again to stop waiting; hal0-apid finishes the cancel)")
				go func() {
					s, err := c.CancelPull(ctx, id)
					cancelled <- cancelReply{s, err}
				}()
				continue
			}
			res.detached = true
			v.clear()
			return res, nil
		case r := <-cancelled:
			if r.err != nil {
				res.cancelling = false
				v.note(fmt.Sprintf("could not cancel the pull: %v", r.err))
				continue
			}
			if r.st.Final() {
				res.last = r.st
				v.clear()
				return res, nil
			}
		case <-ctx.Done():
			v.clear()
			return res, ctx.Err()
		}
	}
}

// streamEvents feeds the pull's statuses to out until the final one.
func streamEvents(ctx context.Context, c *client.Client, id string, out chan<- *api.PullStatus) error {
	return reconnecting(ctx, func(got *bool) error {
		return c.Events(ctx, id, func(s *api.PullStatus) error { return send(ctx, out, s, got) })
	})
}

// reconnecting runs follow, an event stream, until it ends. A stream cut
// short (hal0-apid restarted, which socket activation makes routine) is
// opened again a few times with growing pauses, the count starting over
// whenever an event got through (*got); an answer from the API itself,
// such as "no such job", is final.
func reconnecting(ctx context.Context, follow func(got *bool) error) error {
	const maxFailures = 5
	failures := 0
	for {
		got := false
		err := follow(&got)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ae *api.Error
		if errors.As(err, &ae) {
			return err
		}
		if got {
			failures = 0
		}
		failures++
		if failures > maxFailures {
			return err
		}
		t := time.NewTimer(time.Duration(1<<failures) * 100 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// send passes v on to out, noting in *got that an event got through.
func send[T any](ctx context.Context, out chan<- T, v T, got *bool) error {
	*got = true
	select {
	case out <- v:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cancelNote says what a cancel left: HF pulls keep their partial data
// for a resume; FLM pulls remove it, because flm takes any file it finds
// for a complete one.
func cancelNote(st *api.PullStatus) string {
	if st.Kind == "flm" {
		if i := strings.Index(st.Error, "its partial model directory"); i >= 0 {
			return st.Error[i:]
		}
		return "flm's partial files are not kept"
	}
	return "partial data is kept: pull again to resume"
}

// outcome turns a final status into the command's result: nil for a
// completed pull, else an error whose code gives the exit status.
func outcome(st *api.PullStatus) error {
	switch st.State {
	case "completed":
		return nil
	case "cancelled":
		return api.Errorf(api.CodeCancelled, 0, "pull of %s cancelled (job %s); %s", st.ModelID, st.JobID, cancelNote(st))
	}
	code := st.ErrorCode
	if code == "" {
		code = api.CodeInternal
	}
	msg := st.Error
	if msg == "" {
		msg = "no reason recorded"
	}
	return &api.Error{Code: code, Message: fmt.Sprintf("pull of %s failed: %s", st.ModelID, msg)}
}
