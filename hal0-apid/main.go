// Command hal0-apid is part of hal0. This version ships its command-line entry
// point only; the daemon itself is tracked in the project's issues.
package main

import (
	"fmt"
	"os"

	"github.com/hal0ai/hal0/internal/version"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "-version") {
		fmt.Println("hal0-apid", version.String())
		return
	}
	fmt.Fprintln(os.Stderr, "hal0-apid: not available in this version; use 'hal0 model pull --local' to pull models")
	os.Exit(1)
}
