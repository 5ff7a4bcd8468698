// Command testhub serves the hubtest fake Hugging Face Hub for `make demo`
// and `make bench`: it prints "HUB_URL=http://127.0.0.1:PORT" on stdout once
// serving and runs until SIGINT or SIGTERM. See hubtest.Main for the flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/hal0ai/hal0/internal/hubtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := hubtest.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.ExitCode()) // --exec: pass the command's status through
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testhub:", err)
		stop()
		os.Exit(1)
	}
}
