// Command hal0-pull runs one model pull. systemd runs it as
// hal0-pull@<ref>.service with the unescaped instance (%I) as its argument;
// hal0-apid runs it as a child process where no systemd is reachable.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/version"
	"github.com/hal0ai/hal0/internal/worker"
)

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("hal0-pull", flag.ContinueOnError)
	jobID := fs.String("job", "", "job record to run (default: the ref's queued job, or a new one)")
	runner := fs.String("runner", "", "how this worker was started, recorded in the job (systemd, process, manual)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: hal0-pull [--job ID] REF\n\nPulls one model into the registry. Example:\n  hal0-pull Qwen/Qwen3-4B-GGUF:Q4_K_M\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		return api.ExitUsage
	}
	if *showVersion {
		fmt.Println("hal0-pull", version.String())
		return 0
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return api.ExitUsage
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hal0-pull:", err)
		return api.ExitUsage
	}
	if *runner == "" {
		*runner = "manual"
		if os.Getenv("INVOCATION_ID") != "" {
			*runner = "systemd"
		}
	}
	ctx, stop := worker.SignalContext(context.Background())
	defer stop()
	if _, err := worker.Run(ctx, cfg, worker.Options{Ref: fs.Arg(0), JobID: *jobID, Runner: *runner}); err != nil {
		return api.ExitCode(err)
	}
	return 0
}
