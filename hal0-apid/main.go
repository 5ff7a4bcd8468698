// Command hal0-apid is hal0's REST API: socket-activated by
// hal0-apid.socket, or bound with --listen. It starts one
// hal0-pull@<model> unit per pull job (or a child process where no systemd
// is reachable) and reports progress.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hal0ai/hal0/internal/apid"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/sd"
	"github.com/hal0ai/hal0/internal/version"
)

func main() {
	listen := flag.String("listen", "", "comma-separated listeners when not socket-activated, e.g. unix:/run/hal0/api.sock,tcp:127.0.0.1:8080")
	runner := flag.String("runner", "auto", "how pulls run: auto, systemd or process")
	pullBin := flag.String("pull-bin", "", "hal0-pull executable for the process runner (default: next to hal0-apid)")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("hal0-apid", version.String())
		return
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hal0-apid:", err)
		os.Exit(2)
	}
	var ls []string
	if *listen != "" {
		ls = strings.Split(*listen, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := sd.NewLogger(nil)
	if err := apid.Run(ctx, cfg, apid.Options{Listen: ls, Runner: *runner, PullBin: *pullBin, Logf: log.Printf}); err != nil {
		log.Errorf("hal0-apid: %v", err)
		os.Exit(1)
	}
}
