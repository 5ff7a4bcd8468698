package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/client"
	"github.com/hal0ai/hal0/internal/progress"
	"github.com/hal0ai/hal0/internal/unitname"
)

func init() {
	register("slot", &command{
		name: "list", summary: "list slots: state, model, backend and port", usage: "[--json] [--api URL]",
		example: "hal0 slot list\n  hal0 slot list --json",
		flags:   slotList,
	})
	register("slot", &command{
		name: "status", summary: "show one slot in detail, or every slot", usage: "[NAME] [--json] [--api URL]",
		example: "hal0 slot status primary",
		flags:   slotStatus,
	})
	register("slot", &command{
		name: "swap", summary: "replace the model a slot serves", usage: "NAME --model M [--detach] [--json] [--api URL]",
		example: "hal0 slot swap primary --model Qwen/Qwen3-4B-GGUF:Q4_K_M\n" +
			"  hal0 slot swap npu --model qwen3:4b --detach\n\n" +
			"The slot unloads, pulls the model if it is missing, starts and warms up;\n" +
			"each state is printed until the slot is ready (exit 0) or fails (exit 1).\n" +
			"A slot busy with another change refuses (exit 4). Ctrl-C stops watching only.",
		flags: slotAction("swap"),
	})
	register("slot", &command{
		name: "load", summary: "load a model on an offline slot (default: the slot's own)", usage: "NAME [--model M] [--detach] [--json] [--api URL]",
		example: "hal0 slot load primary\n  hal0 slot load primary --model Qwen/Qwen3-4B-GGUF:Q4_K_M\n\n" +
			"A slot that already serves another model refuses (exit 4): use `hal0 slot swap`.",
		flags: slotAction("load"),
	})
	register("slot", &command{
		name: "unload", summary: "stop a slot", usage: "NAME [--detach] [--json] [--api URL]",
		example: "hal0 slot unload primary",
		flags:   slotAction("unload"),
	})
	register("slot", &command{
		name: "logs", summary: "print a slot's log from the journal", usage: "NAME [-f] [--json] [--api URL]",
		example: "hal0 slot logs primary -f\n\n" +
			"Runs `journalctl --no-pager -o cat -u hal0-slot@NAME.service`; -f adds --follow,\n" +
			"--json prints journal entries as JSON (-o json).",
		flags: slotLogs,
	})
}

// slotdHintAfter is how long a request may wait for hal0-slotd before the
// CLI says that nothing seems to be taking it.
var slotdHintAfter = 10 * time.Second

func slotList(fs *flag.FlagSet) func(context.Context, []string) error {
	asJSON := fs.Bool("json", false, "print JSON")
	apiAddr := apiFlag(fs)
	return func(ctx context.Context, args []string) error {
		if len(args) != 0 {
			return api.Errorf(api.CodeBadRequest, 0, "slot list takes no arguments")
		}
		return listSlots(ctx, *apiAddr, *asJSON)
	}
}

func listSlots(ctx context.Context, apiAddr string, asJSON bool) error {
	c, _, err := connect(apiAddr)
	if err != nil {
		return err
	}
	all, err := c.Slots(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		if all == nil {
			all = []*api.Slot{}
		}
		return printJSON(all)
	}
	return printSlots(Stdout, all)
}

func slotStatus(fs *flag.FlagSet) func(context.Context, []string) error {
	asJSON := fs.Bool("json", false, "print JSON")
	apiAddr := apiFlag(fs)
	return func(ctx context.Context, args []string) error {
		switch len(args) {
		case 0:
			return listSlots(ctx, *apiAddr, *asJSON)
		case 1:
		default:
			return api.Errorf(api.CodeBadRequest, 0, "want at most one slot NAME, got %d arguments", len(args))
		}
		c, _, err := connect(*apiAddr)
		if err != nil {
			return err
		}
		s, err := c.Slot(ctx, args[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(s)
		}
		printSlot(Stdout, s)
		return nil
	}
}

// slotModelCell is the MODEL column: what runs, and what is coming.
func slotModelCell(s *api.Slot) string {
	switch {
	case s.Target != "" && s.Target != s.ModelID && s.ModelID != "":
		return s.ModelID + " → " + s.Target
	case s.Target != "" && s.ModelID == "":
		return "→ " + s.Target
	}
	return orDash(s.ModelID)
}

func slotStateCell(s *api.Slot) string {
	st := s.State
	if p := s.Pull; s.State == api.SlotPulling && p != nil && p.BytesTotal > 0 {
		st += fmt.Sprintf(" %d%%", percent(p))
	}
	if s.Pending != nil {
		st += ", " + s.Pending.Kind + " pending"
	}
	if !s.Enabled {
		st += " (disabled)"
	}
	return st
}

func printSlots(w io.Writer, all []*api.Slot) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tMODEL\tBACKEND\tPORT\tMESSAGE")
	for _, s := range all {
		msg := s.Message
		if s.StateError != "" {
			msg = s.StateError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", s.Name, slotStateCell(s), slotModelCell(s), s.Backend, s.Port, orDash(msg))
	}
	return tw.Flush()
}

// printSlot describes one slot, one field a line.
func printSlot(w io.Writer, s *api.Slot) {
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-9s %s\n", k+":", v)
		}
	}
	line("slot", s.Name+" ("+s.Unit+")")
	line("backend", fmt.Sprintf("%s on 127.0.0.1:%d", s.Backend, s.Port))
	if !s.Enabled {
		line("enabled", "no (slot.enabled = false)")
	}
	state := s.State
	if s.UpdatedAt > 0 {
		at := time.Unix(0, int64(s.UpdatedAt*1e9))
		state += ", since " + at.Local().Format(time.DateTime)
	}
	line("state", state)
	line("model", s.ModelID)
	if s.Target != s.ModelID {
		line("target", s.Target)
	}
	line("default", s.DefaultModel)
	if p := s.Pull; p != nil {
		line("pull", pullText(p)+" (job "+p.JobID+")")
	}
	line("message", s.Message)
	if r := s.Pending; r != nil {
		line("pending", strings.TrimSpace(r.Kind+" "+r.Model)+fmt.Sprintf(" (request %s, %s), waiting for hal0-slotd", r.ID, r.CreatedAt.Local().Format(time.DateTime)))
	}
	if r := s.LastRequest; r != nil && r.Outcome == "refused" {
		line("refused", strings.TrimSpace(r.Kind+" "+r.Model)+" (request "+r.ID+"): "+r.Error)
	}
	line("error", s.StateError)
}

func percent(p *api.SlotPull) int64 {
	if p.BytesTotal <= 0 {
		return 0
	}
	return 100 * p.BytesDone / p.BytesTotal
}

// pullText is a pull's progress in words: "45% of 2.8 GB, 45 MB/s, eta 30s".
func pullText(p *api.SlotPull) string {
	if p.BytesTotal <= 0 {
		return p.State
	}
	out := fmt.Sprintf("%d%% of %s", percent(p), progress.Bytes(p.BytesTotal))
	if p.RateBPS > 0 {
		out += fmt.Sprintf(", %s/s", progress.Bytes(int64(p.RateBPS)))
	}
	if p.ETAS != nil {
		out += ", eta " + progress.Duration(time.Duration(*p.ETAS*float64(time.Second)))
	}
	return out
}

// slotLine is one line of a followed request: "primary: pulling org/m:Q4_K_M
// 45% of 2.8 GB, 45 MB/s, eta 30s", "primary: ready (org/m:Q4_K_M)".
func slotLine(s *api.Slot) string {
	head := s.Name + ": " + s.State
	switch s.State {
	case api.SlotPulling:
		out := head + " " + s.Target
		if s.Pull != nil {
			out += " " + pullText(s.Pull)
		}
		return out
	case api.SlotStarting, api.SlotWarming:
		return head + " " + s.ModelID
	case api.SlotReady, api.SlotServing, api.SlotIdle:
		return head + " (" + s.ModelID + ")"
	case api.SlotUnloading:
		out := head + " " + s.ModelID
		if s.Target != "" {
			out += " to swap to " + s.Target
		}
		return out
	case api.SlotError:
		return head + ": " + orDash(s.Message)
	}
	if s.StateError != "" {
		return head + ": " + s.StateError
	}
	return head
}

// slotPrinter prints a followed slot's lines: every change of state or
// model at once, and pull progress at most every plainEvery, so a long
// pull leaves a readable log rather than a line per event.
type slotPrinter struct {
	w     io.Writer
	now   func() time.Time
	every time.Duration

	key, line string
	at        time.Time
}

func (p *slotPrinter) show(s *api.Slot) {
	key := s.State + "\x00" + s.ModelID + "\x00" + s.Target
	line := slotLine(s)
	now := p.now()
	if key == p.key && (line == p.line || now.Sub(p.at) < p.every) {
		return
	}
	p.key, p.line, p.at = key, line, now
	fmt.Fprintln(p.w, line)
}

// slotAction is swap, load and unload: record the request, then follow
// the slot until it rests.
func slotAction(kind string) func(fs *flag.FlagSet) func(context.Context, []string) error {
	return func(fs *flag.FlagSet) func(context.Context, []string) error {
		var model *string
		switch kind {
		case "swap":
			model = fs.String("model", "", "the model to serve: a Hugging Face ref (llama-server slots), an FLM tag (flm slots) or a registry id")
		case "load":
			model = fs.String("model", "", "the model to load (default: the slot's model.default)")
		}
		detach := fs.Bool("detach", false, "record the request, print it and return without following the slot")
		asJSON := fs.Bool("json", false, "print JSON on stdout: the slot as it ends up (with --detach, the accepted request)")
		apiAddr := apiFlag(fs)
		return func(ctx context.Context, args []string) error {
			if err := wantOne(args, "slot NAME"); err != nil {
				return err
			}
			name := args[0]
			m := ""
			if model != nil {
				m = *model
			}
			if kind == "swap" && m == "" {
				return api.Errorf(api.CodeBadRequest, 0, "--model is required: the model to swap to")
			}
			c, _, err := connect(*apiAddr)
			if err != nil {
				return err
			}
			var acc *api.SlotAccepted
			switch kind {
			case "swap":
				acc, err = c.SwapSlot(ctx, name, m)
			case "load":
				acc, err = c.LoadSlot(ctx, name, m)
			default:
				acc, err = c.UnloadSlot(ctx, name)
			}
			if err != nil {
				return err
			}
			what := kind
			switch {
			case kind == "swap":
				what += " to " + acc.Model
			case acc.Model != "":
				what += " " + acc.Model
			}
			if *detach {
				if *asJSON {
					return printJSON(acc)
				}
				fmt.Fprintf(Stdout, "%s: %s requested (request %s); follow it with `hal0 slot status %s`\n", name, what, acc.RequestID, name)
				return nil
			}
			fmt.Fprintf(Stderr, "%s: %s requested (request %s)\n", name, what, acc.RequestID)
			intr, stopIntr := interrupts()
			defer stopIntr()
			last, detached, err := followSlot(ctx, c, &acc.Slot, acc.RequestID, intr, Stderr)
			if err != nil {
				return err
			}
			if *asJSON {
				if err := printJSON(last); err != nil {
					return err
				}
			}
			if detached {
				fmt.Fprintf(Stderr, "stopped watching: the %s goes on in hal0-slotd; see `hal0 slot status %s`\n", kind, name)
				return nil
			}
			return slotOutcome(kind, acc.Model, acc.RequestID, last)
		}
	}
}

// slotOutcome is the result of a followed request once the slot rests:
// nil when it got where it was asked to go.
func slotOutcome(kind, model, id string, s *api.Slot) error {
	switch {
	case s.Refused(id):
		// The state changed between hal0-apid's check and hal0-slotd's:
		// the same conflict as a 409, found later.
		return &api.Error{Code: api.CodeSlotIllegal, Message: fmt.Sprintf("hal0-slotd refused the %s: %s", kind, orDash(s.LastRequest.Error))}
	case s.State == api.SlotError:
		return fmt.Errorf("slot %s failed: %s; see `hal0 slot logs %s`", s.Name, orDash(s.Message), s.Name)
	case kind == "unload" && s.State == api.SlotOffline:
		return nil
	case kind != "unload" && s.Loaded() && s.ModelID == model:
		return nil
	case s.Loaded():
		// Another request, newer than this one, won.
		return fmt.Errorf("slot %s is %s with %s, not what this %s asked for: a later request replaced it", s.Name, s.State, s.ModelID, kind)
	}
	return fmt.Errorf("slot %s is %s: the %s did not take effect (a later request replaced it?)", s.Name, s.State, kind)
}

// followSlot prints the slot's changes until it rests with no request
// waiting or hal0-slotd refused request id, Ctrl-C (detached), or the
// stream is lost for good.
func followSlot(ctx context.Context, c *client.Client, first *api.Slot, id string, intr <-chan os.Signal, w io.Writer) (last *api.Slot, detached bool, err error) {
	name := first.Name
	done := func(s *api.Slot) bool { return s.Settled() || s.Refused(id) }
	p := &slotPrinter{w: w, now: time.Now, every: plainEvery}
	last = first
	p.show(first)
	if done(first) {
		return first, false, nil
	}
	evCtx, stopEvents := context.WithCancel(ctx)
	updates := make(chan *api.Slot, 8)
	errc := make(chan error, 1)
	evDone := make(chan struct{})
	go func() {
		defer close(evDone)
		errc <- streamSlot(evCtx, c, name, updates)
	}()
	defer func() {
		stopEvents()
		<-evDone
	}()
	hint := time.NewTimer(slotdHintAfter)
	defer hint.Stop()
	for {
		select {
		case s := <-updates:
			last = s
			p.show(s)
			if done(s) {
				return s, false, nil
			}
		case err := <-errc:
			// What the stream delivered before it ended is buffered.
			for drained := false; !drained; {
				select {
				case s := <-updates:
					last = s
					p.show(s)
					if done(s) {
						return s, false, nil
					}
				default:
					drained = true
				}
			}
			if err == nil {
				err = client.ErrSlotStreamEnded
			}
			return last, false, fmt.Errorf("lost track of slot %s: %w; whatever it was doing goes on in hal0-slotd: see `hal0 slot status %s`", name, err, name)
		case <-hint.C:
			if last.Pending != nil {
				fmt.Fprintf(w, "%s: hal0-slotd has not taken request %s yet; is it running? (systemctl status hal0-slotd)\n", name, last.Pending.ID)
			}
		case <-intr:
			return last, true, nil
		case <-ctx.Done():
			return last, false, ctx.Err()
		}
	}
}

// streamSlot feeds the slot's views to out, reconnecting as
// streamEvents does.
func streamSlot(ctx context.Context, c *client.Client, name string, out chan<- *api.Slot) error {
	return reconnecting(ctx, func(got *bool) error {
		return c.SlotEvents(ctx, name, func(s *api.Slot) error { return send(ctx, out, s, got) })
	})
}

func slotLogs(fs *flag.FlagSet) func(context.Context, []string) error {
	var followLogs bool
	fs.BoolVar(&followLogs, "f", false, "keep printing new lines (journalctl --follow)")
	fs.BoolVar(&followLogs, "follow", false, "same as -f")
	asJSON := fs.Bool("json", false, "print journal entries as JSON, one a line (journalctl -o json)")
	apiAddr := apiFlag(fs)
	return func(ctx context.Context, args []string) error {
		if err := wantOne(args, "slot NAME"); err != nil {
			return err
		}
		name := args[0]
		c, _, err := connect(*apiAddr)
		if err != nil {
			return err
		}
		if !c.Loopback() {
			return fmt.Errorf("slot %s runs on the machine of %s: run `hal0 slot logs %s` there, where its journal is", name, c.Addr(), name)
		}
		unit := unitname.Instance("hal0-slot@.service", name)
		s, err := c.Slot(ctx, name)
		var ue *client.UnreachableError
		switch {
		case errors.As(err, &ue):
			// The journal is right here: a broken API is a reason to read
			// it, not to refuse. The name just goes unchecked.
			fmt.Fprintf(Stderr, "note: %v; reading the journal of %s anyway\n", err, unit)
		case err != nil:
			return err
		default:
			unit = s.Unit
		}
		bin, err := exec.LookPath(journalctl)
		if err != nil {
			return fmt.Errorf("journalctl is not installed here, so the journal of %s cannot be read (systemd logs the slot there)", unit)
		}
		format := "cat"
		if *asJSON {
			format = "json"
		}
		jargs := []string{"--no-pager", "-o", format}
		if followLogs {
			jargs = append(jargs, "--follow")
		}
		jargs = append(jargs, "-u", unit)
		cmd := exec.CommandContext(ctx, bin, jargs...)
		cmd.Stdout, cmd.Stderr = Stdout, Stderr
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return fmt.Errorf("journalctl exited with status %d", ee.ExitCode())
			}
			return fmt.Errorf("run journalctl: %w", err)
		}
		return nil
	}
}
