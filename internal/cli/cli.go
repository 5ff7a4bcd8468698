// Package cli implements the hal0 command. Each group of verbs lives in its
// own file (model.go, pull.go, version.go); everything that needs hal0-apid
// goes through internal/client. Stdout and Stderr are variables so tests
// can capture output.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/client"
	"github.com/hal0ai/hal0/internal/config"
)

var (
	Stdout io.Writer = os.Stdout
	Stderr io.Writer = os.Stderr
	// LoadConfig is replaced in tests.
	LoadConfig = config.Load
)

// command is one verb. run returns an error whose api code sets the exit
// status.
type command struct {
	name    string
	summary string
	usage   string // the argument line
	example string
	flags   func(fs *flag.FlagSet) func(ctx context.Context, args []string) error
}

var groups = map[string][]*command{}

func register(group string, c *command) { groups[group] = append(groups[group], c) }

// Run runs the CLI with args (without the program name) and returns the
// exit status.
func Run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(Stdout)
		if len(args) == 0 {
			return api.ExitUsage
		}
		return 0
	}
	group, rest := args[0], args[1:]
	cmds, ok := groups[group]
	if !ok {
		// Single-verb commands are registered under their own name.
		fmt.Fprintf(Stderr, "hal0: unknown command %q\n\n", group)
		usage(Stderr)
		return api.ExitUsage
	}
	var c *command
	if len(cmds) == 1 && cmds[0].name == "" {
		c = cmds[0]
	} else {
		if len(rest) == 0 || rest[0] == "-h" || rest[0] == "--help" {
			groupUsage(Stdout, group)
			if len(rest) == 0 {
				return api.ExitUsage
			}
			return 0
		}
		for _, x := range cmds {
			if x.name == rest[0] {
				c = x
			}
		}
		if c == nil {
			fmt.Fprintf(Stderr, "hal0 %s: unknown command %q\n\n", group, rest[0])
			groupUsage(Stderr, group)
			return api.ExitUsage
		}
		rest = rest[1:]
	}
	full := strings.TrimSpace("hal0 " + group + " " + c.name)
	fs := flag.NewFlagSet(full, flag.ContinueOnError)
	fs.SetOutput(Stderr)
	fn := c.flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s %s\n\n%s\n\nexample:\n  %s\n", full, c.usage, c.summary, c.example)
		if hasFlags(fs) {
			fmt.Fprintln(fs.Output(), "\nflags:")
			fs.PrintDefaults()
		}
	}
	if err := fs.Parse(interleave(fs, rest)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return api.ExitUsage
	}
	if err := fn(ctx, fs.Args()); err != nil {
		fmt.Fprintf(Stderr, "%s: %v\n", full, err)
		return exitCode(err)
	}
	return 0
}

// exitCode is api.ExitCode, plus the one failure that never crosses the
// API because it is about reaching it.
func exitCode(err error) int {
	var ue *client.UnreachableError
	if errors.As(err, &ue) {
		return api.ExitNoAPI
	}
	return api.ExitCode(err)
}

// interleave moves flags after positional arguments to the front, so that
// `hal0 model pull REF --local` works as people type it.
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") {
				if f := fs.Lookup(name); f != nil {
					if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !bf.IsBoolFlag() {
						if i+1 < len(args) {
							flags = append(flags, args[i+1])
							i++
						}
					}
				}
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: hal0 <command> [arguments]\n\ncommands:")
	var names []string
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		for _, c := range groups[g] {
			fmt.Fprintf(w, "  %-22s %s\n", strings.TrimSpace(g+" "+c.name), c.summary)
		}
	}
	fmt.Fprintln(w, "\nRun 'hal0 <command> --help' for details and an example.")
}

func groupUsage(w io.Writer, g string) {
	fmt.Fprintf(w, "usage: hal0 %s <command>\n\ncommands:\n", g)
	for _, c := range groups[g] {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

func printJSON(v any) error {
	enc := json.NewEncoder(Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
