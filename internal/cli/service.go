package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os/exec"
	"strings"

	"github.com/hal0ai/hal0/internal/api"
)

// hal0Units are the units `hal0 service` acts on, in the order a person
// reads them: the API socket and daemon, then the slot daemon.
var hal0Units = []string{"hal0-apid.socket", "hal0-apid.service", "hal0-slotd.service"}

// systemctl is the program `service` runs; tests point it elsewhere.
var systemctl = "systemctl"

func init() {
	register("service", &command{
		name: "status", summary: "show the state of hal0's units (systemctl status)",
		usage: "[UNIT...]", example: "hal0 service status",
		flags: func(fs *flag.FlagSet) func(context.Context, []string) error {
			asJSON := fs.Bool("json", false, "print the units' states as JSON")
			return func(ctx context.Context, args []string) error {
				units, err := pickUnits(args)
				if err != nil {
					return err
				}
				if *asJSON {
					return serviceJSON(ctx, units)
				}
				// systemctl status exits 3 for inactive units: that is an
				// answer, not a failure of this command.
				return runTool(ctx, systemctl, append([]string{"status", "--no-pager"}, units...), 3)
			}
		},
	})
	register("service", &command{
		name: "restart", summary: "restart hal0's daemons (pulls and slots keep running: they are units of their own)",
		usage: "[UNIT...]", example: "hal0 service restart hal0-apid.service",
		flags: func(fs *flag.FlagSet) func(context.Context, []string) error {
			return func(ctx context.Context, args []string) error {
				units, err := pickUnits(args)
				if err != nil {
					return err
				}
				return runTool(ctx, systemctl, append([]string{"restart"}, units...))
			}
		},
	})
	register("service", &command{
		name: "logs", summary: "print the journal of hal0's units",
		usage: "[-f] [-n LINES] [UNIT...]", example: "hal0 service logs -f hal0-slotd.service",
		flags: func(fs *flag.FlagSet) func(context.Context, []string) error {
			follow := fs.Bool("f", false, "keep printing new lines")
			lines := fs.Int("n", 100, "lines to show")
			return func(ctx context.Context, args []string) error {
				units, err := pickUnits(args)
				if err != nil {
					return err
				}
				jargs := []string{"--no-pager", "-n", fmt.Sprint(*lines)}
				if *follow {
					jargs = append(jargs, "--follow")
				}
				for _, u := range units {
					jargs = append(jargs, "-u", u)
				}
				return runTool(ctx, journalctl, jargs)
			}
		},
	})
}

// pickUnits returns the units named (any hal0 unit, including pull and
// slot instances), or all of hal0's daemons.
func pickUnits(args []string) ([]string, error) {
	if len(args) == 0 {
		return hal0Units, nil
	}
	for _, a := range args {
		if !strings.HasPrefix(a, "hal0") {
			return nil, api.Errorf(api.CodeBadRequest, 0, "%s is not a hal0 unit (hal0-apid.socket, hal0-apid.service, hal0-slotd.service, hal0-pull@…, hal0-slot@…)", a)
		}
	}
	return args, nil
}

// runTool runs a systemd tool with the terminal's output. Exit statuses
// listed in okStatus are answers, not failures.
func runTool(ctx context.Context, tool string, args []string, okStatus ...int) error {
	bin, err := exec.LookPath(tool)
	if err != nil {
		return fmt.Errorf("%s is not installed here: hal0's services are systemd units and need systemd to manage them", tool)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = Stdout, Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		for _, s := range okStatus {
			if ee.ExitCode() == s {
				return nil
			}
		}
		if tool == systemctl && ee.ExitCode() == 4 {
			// systemctl's "no such unit".
			return api.Errorf(api.CodeNotFound, 0, "some of %s are not installed: is hal0 installed on this machine?", strings.Join(args[1:], ", "))
		}
		return fmt.Errorf("%s %s exited with status %d", tool, args[0], ee.ExitCode())
	}
	return err
}

// UnitStatus is one unit in `hal0 service status --json`.
type UnitStatus struct {
	Unit        string `json:"unit"`
	LoadState   string `json:"load_state"`
	ActiveState string `json:"active_state"`
	SubState    string `json:"sub_state"`
	Result      string `json:"result,omitempty"`
	MainPID     int    `json:"main_pid,omitempty"`
	StatusText  string `json:"status_text,omitempty"`
}

// serviceJSON reads the units' properties with `systemctl show`, whose
// key=value output is stable for scripts, unlike `status`.
func serviceJSON(ctx context.Context, units []string) error {
	bin, err := exec.LookPath(systemctl)
	if err != nil {
		return fmt.Errorf("%s is not installed here: hal0's services are systemd units and need systemd to manage them", systemctl)
	}
	args := append([]string{"show", "--no-pager", "--property=Id,LoadState,ActiveState,SubState,Result,MainPID,StatusText"}, units...)
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		return fmt.Errorf("systemctl show: %w", err)
	}
	var res []UnitStatus
	for _, block := range strings.Split(strings.TrimSpace(string(out)), "\n\n") {
		var u UnitStatus
		for _, line := range strings.Split(block, "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch k {
			case "Id":
				u.Unit = v
			case "LoadState":
				u.LoadState = v
			case "ActiveState":
				u.ActiveState = v
			case "SubState":
				u.SubState = v
			case "Result":
				u.Result = v
			case "MainPID":
				fmt.Sscan(v, &u.MainPID)
			case "StatusText":
				u.StatusText = v
			}
		}
		if u.Unit != "" {
			res = append(res, u)
		}
	}
	return printJSON(res)
}
