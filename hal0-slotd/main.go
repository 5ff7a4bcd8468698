// Command hal0-slotd drives hal0's inference slots: it follows the
// hal0-pull@ and hal0-slot@ units over D-Bus and moves each slot through
// offline → pulling → starting → warming → ready as hal0-apid requests.
// `hal0-slotd run-slot NAME` is the main process of hal0-slot@NAME.service:
// it execs the slot's backend.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/sd"
	"github.com/hal0ai/hal0/internal/slotd"
	"github.com/hal0ai/hal0/internal/version"
)

func main() {
	args := os.Args[1:]
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		fmt.Println("hal0-slotd", version.String())
		return
	}
	if len(args) > 0 && (args[0] != "run-slot" || len(args) != 2) {
		fmt.Fprintln(os.Stderr, "usage: hal0-slotd [--version] | hal0-slotd run-slot NAME")
		os.Exit(2)
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hal0-slotd:", err)
		os.Exit(2)
	}
	if len(args) == 2 {
		err := slotd.RunSlot(cfg, args[1]) // returns only if the exec failed
		fmt.Fprintln(os.Stderr, "hal0-slotd run-slot:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := sd.NewLogger(nil)
	if err := slotd.Run(ctx, cfg, slotd.Options{Log: log}); err != nil {
		log.Errorf("hal0-slotd: %v", err)
		os.Exit(1)
	}
}
