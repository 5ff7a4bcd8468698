package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/client"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/progress"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/worker"
)

func init() {
	register("model", &command{
		name: "pull", summary: "download a model (Hugging Face ref, hf:// URI or FLM tag)",
		usage: "REF [--quant Q] [--revision R] [--include GLOB]... [--exclude GLOB]... [--format dir|qcow2] [--endpoint URL] [--local] [--detach] [--json] [--api URL]",
		example: "hal0 model pull Qwen/Qwen3-4B-GGUF:Q4_K_M\n" +
			"  hal0 model pull Qwen/Qwen3-4B-GGUF --quant Q8_0 --detach\n" +
			"  hal0 model pull Qwen/Qwen3-4B-GGUF:Q4_K_M --local   # without hal0-apid\n\n" +
			"The pull runs in hal0-apid and survives this command: Ctrl-C cancels it\n" +
			"(partial data is kept for a resume), a second Ctrl-C stops waiting.",
		flags: modelPull,
	})
	register("model", &command{
		name: "list", summary: "list installed models", usage: "[--json] [--local] [--api URL]", example: "hal0 model list --json",
		flags: modelList,
	})
	register("model", &command{
		name: "show", summary: "show one installed model", usage: "ID [--json] [--local] [--api URL]", example: "hal0 model show Qwen/Qwen3-4B-GGUF:Q4_K_M",
		flags: modelShow,
	})
	register("model", &command{
		name: "rm", summary: "remove an installed model and the files hal0 pulled for it", usage: "ID [--json] [--api URL]",
		example: "hal0 model rm Qwen/Qwen3-4B-GGUF:Q4_K_M\n\nA model being pulled is refused (exit 4): `hal0 pull cancel ID` first.",
		flags:   modelRm,
	})
}

func modelPull(fs *flag.FlagSet) func(context.Context, []string) error {
	quant := fs.String("quant", "", "GGUF quant to pick, e.g. Q4_K_M")
	rev := fs.String("revision", "", "branch, tag or commit")
	endpoint := fs.String("endpoint", "", "hub endpoint for this pull (default: configured endpoints)")
	format := fs.String("format", "", "install format: dir (default) or qcow2")
	local := fs.Bool("local", false, "run the pull engine in this process, without hal0-apid")
	detach := fs.Bool("detach", false, "start the pull in hal0-apid, print the job and return")
	asJSON := fs.Bool("json", false, "print the job as JSON on stdout (the final state, or the started job with --detach)")
	apiAddr := apiFlag(fs)
	var include, exclude stringList
	fs.Var(&include, "include", "only files matching this glob (repeatable)")
	fs.Var(&exclude, "exclude", "skip files matching this glob (repeatable)")
	return func(ctx context.Context, args []string) error {
		if err := wantOne(args, "REF"); err != nil {
			return err
		}
		rf, err := ref.Parse(args[0])
		if err != nil {
			return &api.Error{Code: api.CodeInvalidRef, Message: err.Error(), Err: err}
		}
		switch *format {
		case "", "dir", "qcow2":
		default:
			return api.Errorf(api.CodeBadRequest, 0, "--format %q: use dir or qcow2", *format)
		}
		if *local {
			if *detach || *apiAddr != "" {
				return api.Errorf(api.CodeBadRequest, 0, "--local runs the pull in this process: it cannot be combined with --detach or --api")
			}
			if *format == "qcow2" {
				// The same folding hal0-apid does, so both paths name the
				// job and the registry entry alike.
				rf.Format = ref.FormatQCOW2
			}
			return pullLocal(ctx, rf, jobs.Options{Revision: *rev, Quant: *quant, Include: include, Exclude: exclude, Endpoint: *endpoint, Format: *format})
		}
		c, _, err := connect(*apiAddr)
		if err != nil {
			return err
		}
		intr, stopIntr := interrupts()
		defer stopIntr()
		st, err := startPull(ctx, c, rf.String(), api.PullRequest{Endpoint: *endpoint, Revision: *rev, Include: include, Exclude: exclude, Quant: *quant, Format: *format}, intr)
		if err != nil {
			return err
		}
		id := st.ModelID
		if *detach {
			if *asJSON {
				return printJSON(st)
			}
			verb := "started"
			if st.Existing {
				verb = "was already running"
			}
			fmt.Fprintf(Stdout, "pull of %s %s: job %s (%s)\nfollow it with `hal0 pull status %s --follow`; cancel it with `hal0 pull cancel %s`\n", id, verb, st.JobID, st.Unit, id, id)
			return nil
		}
		v := newView(Stderr, isTTY())
		if st.Existing {
			v.note(fmt.Sprintf("following the pull of %s already in progress (job %s)", id, st.JobID))
		}
		res, err := follow(ctx, c, st, v, intr, true)
		if err != nil {
			return err
		}
		if res.detached {
			what := "keeps running"
			if res.cancelling {
				what = "is being cancelled by hal0-apid"
			}
			fmt.Fprintf(Stderr, "stopped waiting: job %s of %s %s; follow it with `hal0 pull status %s --follow`\n", res.last.JobID, id, what, id)
			if *asJSON {
				return printJSON(res.last)
			}
			return nil
		}
		if *asJSON {
			if err := printJSON(res.last); err != nil {
				return err
			}
		}
		if res.last.State == "completed" {
			fmt.Fprintf(Stderr, "%s: %s installed in %s\n", id, progress.Bytes(res.last.BytesTotal), res.last.Path)
		}
		return outcome(res.last)
	}
}

// startPull posts the pull. Ctrl-C is already taken from the default
// handler at this point (so that none is lost between the start and the
// following), so a hal0-apid that does not answer must not make it
// useless: an interrupt abandons the request.
func startPull(ctx context.Context, c *client.Client, id string, req api.PullRequest, intr <-chan os.Signal) (*api.PullStatus, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type reply struct {
		st  *api.PullStatus
		err error
	}
	done := make(chan reply, 1)
	go func() {
		st, err := c.Pull(ctx, id, req)
		done <- reply{st, err}
	}()
	select {
	case r := <-done:
		return r.st, r.err
	case <-intr:
		cancel()
		<-done
		return nil, api.Errorf(api.CodeCancelled, 0, "interrupted before hal0-apid answered; if the pull started anyway, `hal0 pull cancel %s` stops it", id)
	}
}

// pullLocal runs the engine in this process, with hal0-apid nowhere in
// sight: the job record is still written, so `hal0 pull status` works from
// another terminal when the API runs.
func pullLocal(ctx context.Context, rf ref.Ref, opts jobs.Options) error {
	cfg, err := LoadConfig()
	if err != nil {
		return err
	}
	store := jobs.Open(cfg.Paths.JobsDir())
	j, _, err := store.Begin(ctx, jobs.Job{Ref: rf.String(), Kind: rf.Kind.String(), Unit: rf.Unit(), Runner: "local", Options: opts})
	if err != nil {
		return err
	}
	tty := isTTY()
	w := 80
	if tty {
		if cw, _, err := term.GetSize(int(stdoutFd())); err == nil && cw > 0 {
			w = cw
		}
	}
	ctx, stop := worker.SignalContext(ctx)
	defer stop()
	_, err = worker.Run(ctx, cfg, worker.Options{Ref: rf.String(), JobID: j.ID, Progress: Stderr, TTY: tty, Width: w, Runner: "local"})
	return err
}

func loadRegistry() (*registry.Registry, error) {
	cfg, err := LoadConfig()
	if err != nil {
		return nil, err
	}
	return registry.Open(cfg.Paths.RegistryFile()).Load()
}

func modelList(fs *flag.FlagSet) func(context.Context, []string) error {
	asJSON := fs.Bool("json", false, "print JSON")
	local := fs.Bool("local", false, "read the registry file directly instead of asking hal0-apid")
	apiAddr := apiFlag(fs)
	return func(ctx context.Context, args []string) error {
		if len(args) != 0 {
			return api.Errorf(api.CodeBadRequest, 0, "model list takes no arguments")
		}
		var ms []*registry.Model
		if *local {
			reg, err := loadRegistry()
			if err != nil {
				return err
			}
			ms = reg.List()
		} else {
			c, _, err := connect(*apiAddr)
			if err != nil {
				return err
			}
			if ms, err = c.Models(ctx); err != nil {
				return err
			}
		}
		if *asJSON {
			if ms == nil {
				ms = []*registry.Model{}
			}
			return printJSON(ms)
		}
		tw := tabwriter.NewWriter(Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSIZE\tSOURCE\tBACKENDS\tCOMMIT")
		for _, m := range ms {
			c := m.Commit
			if len(c) > 12 {
				c = c[:12]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, progress.Bytes(m.SizeBytes), orDash(m.Source), orDash(strings.Join(m.Backends, ",")), orDash(c))
		}
		return tw.Flush()
	}
}

func modelShow(fs *flag.FlagSet) func(context.Context, []string) error {
	asJSON := fs.Bool("json", false, "print JSON")
	local := fs.Bool("local", false, "read the registry file directly instead of asking hal0-apid")
	apiAddr := apiFlag(fs)
	return func(ctx context.Context, args []string) error {
		if err := wantOne(args, "model ID"); err != nil {
			return err
		}
		var m *registry.Model
		if *local {
			reg, err := loadRegistry()
			if err != nil {
				return err
			}
			id := args[0]
			if r, err := ref.Parse(id); err == nil {
				id = r.String()
			}
			var ok bool
			if m, ok = reg.Get(id); !ok {
				return api.Errorf(api.CodeModelMissing, 0, "model %s is not installed (see `hal0 model list`)", args[0])
			}
		} else {
			c, _, err := connect(*apiAddr)
			if err != nil {
				return err
			}
			if m, err = c.Model(ctx, args[0]); err != nil {
				return err
			}
		}
		if *asJSON {
			return printJSON(m)
		}
		fmt.Fprintf(Stdout, "id:       %s\npath:     %s\nsize:     %s\nsource:   %s\nrepo:     %s\nrevision: %s\ncommit:   %s\n", m.ID, m.Path, progress.Bytes(m.SizeBytes), m.Source, m.HFRepo, m.Revision, m.Commit)
		for _, f := range m.Files {
			fmt.Fprintf(Stdout, "  %s  %s  sha256:%s\n", f.Path, progress.Bytes(f.Size), f.SHA256)
		}
		return nil
	}
}

func modelRm(fs *flag.FlagSet) func(context.Context, []string) error {
	asJSON := fs.Bool("json", false, "print the removed entry as JSON")
	apiAddr := apiFlag(fs)
	return func(ctx context.Context, args []string) error {
		if err := wantOne(args, "model ID"); err != nil {
			return err
		}
		c, _, err := connect(*apiAddr)
		if err != nil {
			return err
		}
		m, err := c.DeleteModel(ctx, args[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(m)
		}
		where := m.Dir
		if where == "" {
			where = m.Path
		}
		fmt.Fprintf(Stdout, "removed %s (%s in %s)\n", m.ID, progress.Bytes(m.SizeBytes), where)
		return nil
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
