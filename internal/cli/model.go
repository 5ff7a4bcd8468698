package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"golang.org/x/term"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/progress"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/version"
	"github.com/hal0ai/hal0/internal/worker"
)

func init() {
	register("model", &command{
		name: "pull", summary: "download a model (Hugging Face ref, hf:// URI or FLM tag)",
		usage:   "REF [--quant Q] [--revision R] [--include GLOB]... [--exclude GLOB]... --local",
		example: "hal0 model pull Qwen/Qwen3-4B-GGUF:Q4_K_M --local",
		flags:   modelPull,
	})
	register("model", &command{
		name: "list", summary: "list installed models", usage: "[--json]", example: "hal0 model list --json",
		flags: modelList,
	})
	register("model", &command{
		name: "show", summary: "show one installed model", usage: "ID [--json]", example: "hal0 model show Qwen/Qwen3-4B-GGUF:Q4_K_M",
		flags: modelShow,
	})
	register("version", &command{
		summary: "print the version", usage: "[--json]", example: "hal0 version",
		flags: func(fs *flag.FlagSet) func(context.Context, []string) error {
			asJSON := fs.Bool("json", false, "print JSON")
			return func(context.Context, []string) error {
				if *asJSON {
					return printJSON(map[string]string{"version": version.Version, "commit": version.Commit})
				}
				fmt.Fprintln(Stdout, "hal0", version.String())
				return nil
			}
		},
	})
}

func modelPull(fs *flag.FlagSet) func(context.Context, []string) error {
	quant := fs.String("quant", "", "GGUF quant to pick, e.g. Q4_K_M")
	rev := fs.String("revision", "", "branch, tag or commit")
	endpoint := fs.String("endpoint", "", "hub endpoint for this pull (default: configured endpoints)")
	local := fs.Bool("local", false, "run the pull engine in this process, without hal0-apid")
	var include, exclude stringList
	fs.Var(&include, "include", "only files matching this glob (repeatable)")
	fs.Var(&exclude, "exclude", "skip files matching this glob (repeatable)")
	return func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return api.Errorf(api.CodeBadRequest, 0, "want exactly one REF, got %d arguments", len(args))
		}
		rf, err := ref.Parse(args[0])
		if err != nil {
			return &api.Error{Code: api.CodeInvalidRef, Message: err.Error(), Err: err}
		}
		if !*local {
			return api.Errorf(api.CodeUnsupported, 0, "pulling through hal0-apid is not available in this build; add --local to run the pull here")
		}
		cfg, err := LoadConfig()
		if err != nil {
			return err
		}
		store := jobs.Open(cfg.Paths.JobsDir())
		j, _, err := store.Begin(ctx, jobs.Job{Ref: rf.String(), Kind: rf.Kind.String(), Unit: rf.Unit(), Runner: "local",
			Options: jobs.Options{Revision: *rev, Quant: *quant, Include: include, Exclude: exclude, Endpoint: *endpoint}})
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
	return func(ctx context.Context, args []string) error {
		reg, err := loadRegistry()
		if err != nil {
			return err
		}
		ms := reg.List()
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
	return func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return api.Errorf(api.CodeBadRequest, 0, "want exactly one model ID")
		}
		reg, err := loadRegistry()
		if err != nil {
			return err
		}
		id := args[0]
		if r, err := ref.Parse(id); err == nil {
			id = r.String()
		}
		m, ok := reg.Get(id)
		if !ok {
			return api.Errorf(api.CodeModelMissing, 0, "model %s is not installed (see `hal0 model list`)", args[0])
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

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
