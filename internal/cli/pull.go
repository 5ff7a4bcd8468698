package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"text/tabwriter"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/client"
	"github.com/hal0ai/hal0/internal/progress"
)

func init() {
	register("pull", &command{
		name: "status", summary: "show pull jobs: one model's newest job, or all of them", usage: "[REF] [--follow] [--json] [--api URL]",
		example: "hal0 pull status\n  hal0 pull status Qwen/Qwen3-4B-GGUF:Q4_K_M --follow\n\n" +
			"--follow draws the progress until the pull ends and exits like `hal0 model pull`;\n" +
			"Ctrl-C only stops watching.",
		flags: pullStatus,
	})
	register("pull", &command{
		name: "cancel", summary: "cancel a running pull (partial data is kept for a resume)", usage: "REF [--json] [--api URL]",
		example: "hal0 pull cancel Qwen/Qwen3-4B-GGUF:Q4_K_M",
		flags:   pullCancel,
	})
	register("pull", &command{
		name: "logs", summary: "print a pull job's log from the journal", usage: "REF [-f] [--json] [--api URL]",
		example: "hal0 pull logs Qwen/Qwen3-4B-GGUF:Q4_K_M -f\n\n" +
			"Runs `journalctl --no-pager -o cat HAL0_JOB_ID=<job id>`; -f adds --follow,\n" +
			"--json prints journal entries as JSON (-o json) with their HAL0_* fields.",
		flags: pullLogs,
	})
}

func pullStatus(fs *flag.FlagSet) func(context.Context, []string) error {
	asJSON := fs.Bool("json", false, "print JSON")
	follow := fs.Bool("follow", false, "draw the pull's progress until it ends")
	apiAddr := apiFlag(fs)
	return func(ctx context.Context, args []string) error {
		if len(args) > 1 {
			return api.Errorf(api.CodeBadRequest, 0, "want at most one REF, got %d arguments", len(args))
		}
		c, _, err := connect(*apiAddr)
		if err != nil {
			return err
		}
		if len(args) == 0 {
			if *follow {
				return api.Errorf(api.CodeBadRequest, 0, "--follow needs a REF")
			}
			all, err := c.Pulls(ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				if all == nil {
					all = []*api.PullStatus{}
				}
				return printJSON(all)
			}
			return printPulls(Stdout, all)
		}
		st, err := c.PullStatus(ctx, args[0])
		if err != nil {
			return err
		}
		if *follow {
			return watchPull(ctx, c, st, *asJSON)
		}
		if *asJSON {
			return printJSON(st)
		}
		printPull(Stdout, st, time.Now())
		return nil
	}
}

// watchPull is `hal0 pull status REF --follow`.
func watchPull(ctx context.Context, c *client.Client, st *api.PullStatus, asJSON bool) error {
	intr, stop := interrupts()
	defer stop()
	res, err := follow(ctx, c, st, newView(Stderr, isTTY()), intr, false)
	if err != nil {
		return err
	}
	if asJSON {
		if err := printJSON(res.last); err != nil {
			return err
		}
	}
	if res.detached {
		fmt.Fprintf(Stderr, "stopped watching: job %s of %s goes on in hal0-apid\n", res.last.JobID, res.last.ModelID)
		return nil
	}
	if res.last.State == "completed" {
		fmt.Fprintf(Stderr, "%s: %s installed in %s\n", res.last.ModelID, progress.Bytes(res.last.BytesTotal), res.last.Path)
	}
	return outcome(res.last)
}

// printPull describes one job, one field a line.
func printPull(w io.Writer, s *api.PullStatus, now time.Time) {
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-9s %s\n", k+":", v)
		}
	}
	line("model", s.ModelID)
	line("job", s.JobID)
	unit := s.Unit
	if s.Runner != "" {
		unit += " (runner " + s.Runner
		if s.UnitState != "" {
			unit += ", " + s.UnitState
		}
		unit += ")"
	}
	line("unit", unit)
	state := s.State
	if s.State == "running" && s.Phase != "" {
		state += ", " + s.Phase
	}
	line("state", state)
	if s.BytesTotal > 0 {
		p := fmt.Sprintf("%s of %s (%.1f%%)", progress.Bytes(s.BytesDone), progress.Bytes(s.BytesTotal), 100*float64(s.BytesDone)/float64(s.BytesTotal))
		if !s.Final() {
			eta := "--"
			if s.ETAS != nil {
				eta = progress.Duration(time.Duration(*s.ETAS * float64(time.Second)))
			}
			p += fmt.Sprintf(", %s/s, eta %s", progress.Bytes(int64(s.RateBPS)), eta)
		}
		line("progress", p)
	}
	if s.FilesTotal > 0 {
		f := fmt.Sprintf("%d of %d done", s.FilesDone, s.FilesTotal)
		if s.CurrentFile != "" && !s.Final() {
			f += "; now " + s.CurrentFile
		}
		line("files", f)
	}
	if s.Attempts > 1 {
		line("attempts", fmt.Sprint(s.Attempts))
	}
	line("created", s.CreatedAt.Local().Format(time.DateTime))
	if s.StartedAt != nil {
		line("started", fmt.Sprintf("%s (%s)", s.StartedAt.Local().Format(time.DateTime), progress.Duration(time.Duration(s.ElapsedS*float64(time.Second)))))
	}
	if s.FinishedAt != nil {
		line("finished", s.FinishedAt.Local().Format(time.DateTime))
	}
	line("commit", s.Commit)
	line("path", s.Path)
	if s.Error != "" {
		line("error", fmt.Sprintf("%s [%s]", s.Error, s.ErrorCode))
	}
}

// printPulls is the table of `hal0 pull status` without a REF.
func printPulls(w io.Writer, all []*api.PullStatus) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tSTATE\tPROGRESS\tSIZE\tRATE\tJOB")
	for _, s := range all {
		state, pct, rate := s.State, "-", "-"
		if s.State == "running" && s.Phase != "" {
			state += " (" + s.Phase + ")"
		}
		if s.BytesTotal > 0 {
			pct = fmt.Sprintf("%.1f%%", 100*float64(s.BytesDone)/float64(s.BytesTotal))
		}
		if !s.Final() && s.RateBPS > 0 {
			rate = progress.Bytes(int64(s.RateBPS)) + "/s"
		}
		size := "-"
		if s.BytesTotal > 0 {
			size = progress.Bytes(s.BytesTotal)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ModelID, state, pct, size, rate, s.JobID)
	}
	return tw.Flush()
}

func pullCancel(fs *flag.FlagSet) func(context.Context, []string) error {
	asJSON := fs.Bool("json", false, "print the job as JSON")
	apiAddr := apiFlag(fs)
	return func(ctx context.Context, args []string) error {
		if err := wantOne(args, "REF"); err != nil {
			return err
		}
		c, _, err := connect(*apiAddr)
		if err != nil {
			return err
		}
		st, err := c.CancelPull(ctx, args[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(st)
		}
		switch {
		case st.State == "cancelled":
			// The reply is the same whether this call or an earlier one
			// cancelled it.
			fmt.Fprintf(Stdout, "the pull of %s is cancelled (job %s); %s\n", st.ModelID, st.JobID, cancelNote(st))
		case st.Final():
			fmt.Fprintf(Stdout, "the pull of %s had already ended: %s (job %s)\n", st.ModelID, st.State, st.JobID)
		default:
			fmt.Fprintf(Stdout, "asked the pull of %s to stop (job %s is %s); see `hal0 pull status %s`\n", st.ModelID, st.JobID, st.State, st.ModelID)
		}
		return nil
	}
}

// journalctl is the program `pull logs` runs; tests point it elsewhere.
var journalctl = "journalctl"

func pullLogs(fs *flag.FlagSet) func(context.Context, []string) error {
	var followLogs bool
	fs.BoolVar(&followLogs, "f", false, "keep printing new lines (journalctl --follow)")
	fs.BoolVar(&followLogs, "follow", false, "same as -f")
	asJSON := fs.Bool("json", false, "print journal entries as JSON, one a line (journalctl -o json)")
	apiAddr := apiFlag(fs)
	return func(ctx context.Context, args []string) error {
		if err := wantOne(args, "REF"); err != nil {
			return err
		}
		c, _, err := connect(*apiAddr)
		if err != nil {
			return err
		}
		st, err := c.PullStatus(ctx, args[0])
		if err != nil {
			return err
		}
		if !c.Loopback() {
			return fmt.Errorf("job %s ran on the machine of %s: run `hal0 pull logs %s` there, where its journal is", st.JobID, c.Addr(), st.ModelID)
		}
		switch st.Runner {
		case "process":
			// The worker's output went to hal0-apid's stderr: the journal
			// only has it when systemd runs hal0-apid, and then under
			// hal0-apid's unit, which this machine may not have.
			return fmt.Errorf("job %s ran as a child process of hal0-apid (no systemd for pulls here), so its log is hal0-apid's own: the terminal running hal0-apid, or `journalctl -u hal0-apid` when systemd runs it", st.JobID)
		case "local":
			return fmt.Errorf("job %s ran in the foreground (`hal0 model pull --local`): its log went to that terminal and was not kept", st.JobID)
		}
		bin, err := exec.LookPath(journalctl)
		if err != nil {
			return fmt.Errorf("journalctl is not installed here, so the journal cannot be read: job %s logged to it with HAL0_JOB_ID=%s (unit %s)", st.JobID, st.JobID, st.Unit)
		}
		format := "cat"
		if *asJSON {
			format = "json"
		}
		jargs := []string{"--no-pager", "-o", format}
		if followLogs {
			jargs = append(jargs, "--follow")
		}
		jargs = append(jargs, "HAL0_JOB_ID="+st.JobID)
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
