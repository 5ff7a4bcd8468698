// Command testhub serves the hubtest fake Hugging Face Hub for `make demo`
// and `make bench`: it prints "HUB_URL=http://127.0.0.1:PORT" on stdout once
// serving and runs until SIGINT or SIGTERM. See hubtest.Main for the flags.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hal0ai/hal0/internal/hubtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := hubtest.Main(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "testhub:", err)
		stop()
		os.Exit(1)
	}
}
