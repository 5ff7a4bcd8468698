// Command hal0 is the command line of hal0: models, pulls, slots and the
// services behind them.
package main

import (
	"context"
	"os"

	"github.com/hal0ai/hal0/internal/cli"
)

func main() { os.Exit(cli.Run(context.Background(), os.Args[1:])) }
