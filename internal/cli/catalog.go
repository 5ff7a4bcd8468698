package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/catalog"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/progress"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
)

func init() {
	register("catalog", &command{
		name: "index", summary: "index Hugging Face models into the catalog (metadata only)",
		usage: "[--if-due] [--org A,B] [--collection NS/SLUG-ID]... [--task T] [--search TEXT] [--sort downloads|likes|lastModified] [--direction desc|asc] [--limit N] [--full] [--json]",
		example: "hal0 catalog index                       # the [[catalog.source]] tables of hal0.toml\n" +
			"  hal0 catalog index --org Qwen,unsloth --task text-generation --limit 50 --full\n" +
			"  hal0 catalog index --collection Qwen/qwen3-67dd247413f0e2e4f99a6f4b\n" +
			"  hal0 catalog index --if-due              # what hal0-catalog.timer runs: only when catalog.interval has passed\n\n" +
			"Flags naming a source replace the configured sources for this run. The catalog\n" +
			"is written beside the registry; models are downloaded only by `hal0 catalog import`.",
		flags: catalogIndex,
	})
	register("catalog", &command{
		name: "list", summary: "list the catalog",
		usage:   "[--task T] [--format gguf|safetensors|…] [--certified] [--gated] [--sort downloads|likes|lastModified|size|id] [--direction desc|asc] [--limit N] [--json] [--local] [--api URL]",
		example: "hal0 catalog list --certified --sort likes\n  hal0 catalog list --task text-generation --json",
		flags:   func(fs *flag.FlagSet) func(context.Context, []string) error { return catalogList(fs, false) },
	})
	register("catalog", &command{
		name: "search", summary: "search the catalog (every word must match the id, task, license, format or quant)",
		usage:   "TEXT... [--task T] [--format F] [--certified] [--gated] [--sort S] [--direction D] [--limit N] [--json] [--local] [--api URL]",
		example: "hal0 catalog search qwen gguf\n  hal0 catalog search embed --task feature-extraction --json",
		flags:   func(fs *flag.FlagSet) func(context.Context, []string) error { return catalogList(fs, true) },
	})
	register("catalog", &command{
		name: "show", summary: "show one catalog entry", usage: "ID [--json] [--local] [--api URL]",
		example: "hal0 catalog show Qwen/Qwen3-4B-GGUF",
		flags:   catalogShow,
	})
	register("catalog", &command{
		name: "import", summary: "pull a catalog entry as a directory or a qcow2 disk image",
		usage: "ID [--format dir|qcow2] [--quant Q] [--local] [--detach] [--json] [--api URL]",
		example: "hal0 catalog import Qwen/Qwen3-4B-GGUF\n" +
			"  hal0 catalog import Qwen/Qwen3-4B-GGUF --format qcow2   # an ext4 filesystem in a qcow2 image\n\n" +
			"An import is `hal0 model pull hf://ID?format=…`: the same engine, job and registry entry.",
		flags: catalogImport,
	})
}

// catalogSources builds the one source the command line names, or nil.
func catalogSources(orgs, collections stringList, task, search, sort, direction string, full bool) []config.CatalogSource {
	split := func(l stringList) []string {
		var out []string
		for _, v := range l {
			for _, p := range strings.Split(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
		}
		return out
	}
	s := config.CatalogSource{Orgs: split(orgs), Collections: split(collections), Task: task, Search: search, Sort: sort, Direction: direction}
	if len(s.Orgs) == 0 && len(s.Collections) == 0 && task == "" && search == "" {
		return nil
	}
	if full {
		s.Full = &full
	}
	return []config.CatalogSource{s}
}

func catalogIndex(fs *flag.FlagSet) func(context.Context, []string) error {
	ifDue := fs.Bool("if-due", false, "index only when catalog.interval has passed since the last index, or the sources changed")
	var orgs, collections stringList
	fs.Var(&orgs, "org", "organisations to index, comma-separated (repeatable)")
	fs.Var(&collections, "collection", "collections (namespace/slug-id) to index, comma-separated (repeatable)")
	task := fs.String("task", "", "pipeline tag, e.g. text-generation")
	search := fs.String("search", "", "free text the model ids must contain")
	sort := fs.String("sort", "", "downloads (default), likes or lastModified")
	direction := fs.String("direction", "", "desc (default) or asc")
	limit := fs.Int("limit", 0, "entries at most across all sources (default catalog.limit)")
	full := fs.Bool("full", false, "look for chat templates in tokenizer_config.json, chat_template.jinja and GGUF headers")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	return func(ctx context.Context, args []string) error {
		if len(args) != 0 {
			return api.Errorf(api.CodeBadRequest, 0, "catalog index takes no arguments (name sources with --org, --collection, --search or --task)")
		}
		cfg, err := LoadConfig()
		if err != nil {
			return err
		}
		if *limit < 0 {
			return api.Errorf(api.CodeBadRequest, 0, "--limit %d: must not be negative", *limit)
		}
		if *limit > 0 {
			cfg.Catalog.Limit = *limit
		}
		if *full {
			cfg.Catalog.Full = true
		}
		sources := catalogSources(orgs, collections, *task, *search, *sort, *direction, *full)
		if sources != nil {
			if err := sources[0].Validate("--org/--collection/--search/--task"); err != nil {
				return api.Errorf(api.CodeBadRequest, 0, "%v", err)
			}
		} else if *sort != "" || *direction != "" {
			return api.Errorf(api.CodeBadRequest, 0, "--sort and --direction apply to a source named on the command line (--org, --collection, --search or --task)")
		}
		ix := catalog.New(cfg, sources)
		ix.Logf = func(format string, a ...any) { fmt.Fprintf(Stderr, format+"\n", a...) }
		store := catalog.Open(cfg.Paths.CatalogFile())
		if *ifDue {
			if len(ix.Sources) == 0 {
				return report(*asJSON, &catalog.Result{Path: store.Path(), Skipped: true, Reason: "no catalog sources are configured"})
			}
			prev, err := store.Load()
			if err != nil {
				return api.Errorf(api.CodeIO, 0, "%v", err)
			}
			due, why := catalog.Due(prev, ix.Key, cfg.Catalog.Interval.D(), time.Now())
			if !due {
				return report(*asJSON, &catalog.Result{Path: store.Path(), Skipped: true, Reason: why, IndexedAt: prev.IndexedAt, Entries: len(prev.Entries)})
			}
			fmt.Fprintf(Stderr, "indexing: %s\n", why)
		}
		res, err := ix.Run(ctx, store)
		if err != nil {
			return err
		}
		if err := report(*asJSON, res); err != nil {
			return err
		}
		if len(res.Failed) > 0 {
			return api.Errorf(api.CodeNetwork, 0, "%d of %d models could not be refreshed (their entries keep earlier details): %s",
				len(res.Failed), res.Entries, strings.Join(res.Failed, "; "))
		}
		return nil
	}
}

func report(asJSON bool, res *catalog.Result) error {
	if asJSON {
		return printJSON(res)
	}
	if res.Skipped {
		fmt.Fprintf(Stdout, "catalog index skipped: %s\n", res.Reason)
		return nil
	}
	fmt.Fprintf(Stdout, "indexed %d models into %s: %d added, %d removed, %d gated\n",
		res.Entries, res.Path, len(res.Added), len(res.Removed), res.Gated)
	return nil
}

// catalogQueryFlags adds the list/search flags; the result reads them.
func catalogQueryFlags(fs *flag.FlagSet) func() catalog.Query {
	task := fs.String("task", "", "only this pipeline tag")
	format := fs.String("format", "", "only this weights format (gguf, safetensors, onnx, pytorch, files)")
	certified := fs.Bool("certified", false, "only models of catalog.certified_orgs")
	gated := fs.Bool("gated", false, "only gated models")
	sort := fs.String("sort", "", "downloads (default), likes, lastModified, size or id")
	direction := fs.String("direction", "", "desc or asc")
	limit := fs.Int("limit", 0, "at most this many")
	return func() catalog.Query {
		q := catalog.Query{Task: *task, Format: *format, Sort: *sort, Direction: *direction, Limit: *limit}
		if *certified {
			q.Certified = certified
		}
		if *gated {
			q.Gated = gated
		}
		return q
	}
}

func catalogList(fs *flag.FlagSet, search bool) func(context.Context, []string) error {
	query := catalogQueryFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	local := fs.Bool("local", false, "read the catalog file directly instead of asking hal0-apid")
	apiAddr := apiFlag(fs)
	return func(ctx context.Context, args []string) error {
		q := query()
		switch {
		case search && len(args) == 0:
			return api.Errorf(api.CodeBadRequest, 0, "want search TEXT (e.g. hal0 catalog search qwen gguf)")
		case !search && len(args) != 0:
			return api.Errorf(api.CodeBadRequest, 0, "catalog list takes no arguments; use `hal0 catalog search TEXT`")
		}
		q.Q = strings.Join(args, " ")
		if q.Limit < 0 {
			return api.Errorf(api.CodeBadRequest, 0, "--limit %d: must not be negative", q.Limit)
		}
		if err := q.Validate(); err != nil {
			return err
		}
		var l *api.CatalogList
		if *local {
			f, reg, err := loadCatalog()
			if err != nil {
				return err
			}
			entries := q.Apply(f.Entries)
			catalog.Overlay(entries, reg)
			l = &api.CatalogList{Endpoint: f.Endpoint, Total: len(f.Entries), Count: len(entries), Entries: entries}
			if !f.IndexedAt.IsZero() {
				l.IndexedAt = &f.IndexedAt
			}
		} else {
			c, _, err := connect(*apiAddr)
			if err != nil {
				return err
			}
			if l, err = c.Catalog(ctx, q.Values()); err != nil {
				return err
			}
		}
		if *asJSON {
			return printJSON(l)
		}
		if l.IndexedAt == nil {
			fmt.Fprintln(Stderr, "the catalog is empty: configure [[catalog.source]] in hal0.toml and run `hal0 catalog index`")
			return nil
		}
		tw := tabwriter.NewWriter(Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tFORMAT\tQUANT\tSIZE\tTASK\tDOWNLOADS\tLIKES\tFLAGS")
		for _, e := range l.Entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", e.ID, orDash(e.Format), orDash(e.Quant), progress.Bytes(e.SizeBytes),
				orDash(e.Task), e.Downloads, e.Likes, orDash(flags(e)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(Stderr, "%d of %d models; indexed %s\n", l.Count, l.Total, l.IndexedAt.Local().Format("2006-01-02 15:04"))
		return nil
	}
}

// flags abbreviates an entry's marks for the table.
func flags(e api.CatalogEntry) string {
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{{e.Certified, "certified"}, {e.Gated, "gated"}, {e.HasChatTemplate, "chat"}, {!e.MetadataOnly, "installed"}, {e.Error != "", "error"}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	return strings.Join(f, ",")
}

func loadCatalog() (*catalog.File, *registry.Registry, error) {
	cfg, err := LoadConfig()
	if err != nil {
		return nil, nil, err
	}
	f, err := catalog.Open(cfg.Paths.CatalogFile()).Load()
	if err != nil {
		return nil, nil, api.Errorf(api.CodeIO, 0, "%v", err)
	}
	reg, err := registry.Open(cfg.Paths.RegistryFile()).Load()
	if err != nil {
		fmt.Fprintf(Stderr, "warning: %v\n", err)
		reg = nil
	}
	return f, reg, nil
}

// catalogEntry looks an entry up, in the file or through hal0-apid.
func catalogEntry(ctx context.Context, id string, local bool, apiAddr string) (*api.CatalogEntry, error) {
	rf, err := ref.Parse(id)
	if err != nil || rf.Kind != ref.KindHF || rf.Quant != "" || rf.File != "" || rf.Revision != "" {
		return nil, api.Errorf(api.CodeInvalidRef, 0, "catalog entries are named org/name (or hf://org/name), not %q", id)
	}
	if !local {
		c, _, err := connect(apiAddr)
		if err != nil {
			return nil, err
		}
		return c.CatalogEntry(ctx, rf.Repo)
	}
	f, reg, err := loadCatalog()
	if err != nil {
		return nil, err
	}
	e, ok := f.Get(rf.Repo)
	if !ok {
		return nil, api.Errorf(api.CodeCatalogMissing, 0, "%s is not in the catalog (%d models): run `hal0 catalog index`, or pull it directly with `hal0 model pull %s`", rf.Repo, len(f.Entries), rf.Repo)
	}
	one := []api.CatalogEntry{*e}
	catalog.Overlay(one, reg)
	return &one[0], nil
}

func catalogShow(fs *flag.FlagSet) func(context.Context, []string) error {
	asJSON := fs.Bool("json", false, "print JSON")
	local := fs.Bool("local", false, "read the catalog file directly instead of asking hal0-apid")
	apiAddr := apiFlag(fs)
	return func(ctx context.Context, args []string) error {
		if err := wantOne(args, "ID (org/name)"); err != nil {
			return err
		}
		e, err := catalogEntry(ctx, args[0], *local, *apiAddr)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e)
		}
		yes := func(b bool) string {
			if b {
				return "yes"
			}
			return "no"
		}
		chat := yes(e.HasChatTemplate)
		if e.ChatTemplateSource != "" {
			chat += " (" + e.ChatTemplateSource + ")"
		}
		if !e.Full {
			chat += ", from the hub's summary (index with --full to look inside)"
		}
		gated := yes(e.Gated)
		if e.Gated {
			gated += " (" + e.GatedMode + "): accept the license at " + e.WebURL + " and set HF_TOKEN"
		}
		installed := "no (metadata only)"
		if !e.MetadataOnly {
			installed = strings.Join(e.Installed, ", ")
		}
		tw := tabwriter.NewWriter(Stdout, 2, 4, 1, ' ', 0)
		for _, row := range [][2]string{
			{"id", e.ID}, {"uri", e.URI}, {"web", e.WebURL},
			{"format", e.Format + orEmpty(" "+e.Quant, e.Quant)},
			{"size", fmt.Sprintf("%s in %d files (what an import downloads)", progress.Bytes(e.SizeBytes), e.Files)},
			{"task", orDash(e.Task)}, {"license", orDash(e.License)},
			{"downloads", fmt.Sprint(e.Downloads)}, {"likes", fmt.Sprint(e.Likes)},
			{"modified", orDash(e.LastModified)}, {"commit", orDash(e.Commit)},
			{"gated", gated}, {"chat template", chat}, {"certified", yes(e.Certified)},
			{"installed", installed}, {"sources", strings.Join(e.Sources, ", ")},
			{"indexed", e.IndexedAt.Local().Format("2006-01-02 15:04")},
		} {
			fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
		}
		if e.Error != "" {
			fmt.Fprintf(tw, "error:\t%s\n", e.Error)
		}
		return tw.Flush()
	}
}

func orEmpty(s, cond string) string {
	if cond == "" {
		return ""
	}
	return s
}

func catalogImport(fs *flag.FlagSet) func(context.Context, []string) error {
	format := fs.String("format", "dir", "dir (files in a directory) or qcow2 (an ext4 filesystem in a qcow2 disk image)")
	quant := fs.String("quant", "", "GGUF quant instead of the default")
	local := fs.Bool("local", false, "run the pull in this process, without hal0-apid")
	detach := fs.Bool("detach", false, "start the pull in hal0-apid, print the job and return")
	asJSON := fs.Bool("json", false, "print the job as JSON")
	apiAddr := apiFlag(fs)
	return func(ctx context.Context, args []string) error {
		if err := wantOne(args, "ID (org/name)"); err != nil {
			return err
		}
		switch *format {
		case "dir", "qcow2":
		default:
			return api.Errorf(api.CodeBadRequest, 0, "--format %q: use dir or qcow2", *format)
		}
		e, err := catalogEntry(ctx, args[0], *local, *apiAddr)
		if err != nil {
			return err
		}
		if e.Error != "" {
			fmt.Fprintf(Stderr, "note: the last index said: %s\n", e.Error)
		}
		// The pull itself is `hal0 model pull`, with the same flags.
		pfs := flag.NewFlagSet("hal0 catalog import", flag.ContinueOnError)
		pfs.SetOutput(Stderr)
		pull := modelPull(pfs)
		pargs := []string{"--format", *format}
		if *quant != "" {
			pargs = append(pargs, "--quant", *quant)
		}
		if *local {
			pargs = append(pargs, "--local")
		}
		if *detach {
			pargs = append(pargs, "--detach")
		}
		if *asJSON {
			pargs = append(pargs, "--json")
		}
		if *apiAddr != "" {
			pargs = append(pargs, "--api", *apiAddr)
		}
		if err := pfs.Parse(pargs); err != nil {
			return api.Errorf(api.CodeBadRequest, 0, "%v", err)
		}
		return pull(ctx, []string{e.ID})
	}
}
