package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/hal0ai/hal0/internal/api"
	// Imported as upd: the package's tests have a flag variable named update.
	upd "github.com/hal0ai/hal0/internal/update"
)

// updateRestarter restarts the daemons after `hal0 update`; tests replace
// it.
var updateRestarter upd.Restarter = upd.Systemctl{}

func init() {
	register("update", &command{
		summary: "install a hal0 release next to this one and switch to it, or go back with --rollback",
		usage:   "--from FILE [--sha256 HEX] | --rollback [--no-restart] [--json]",
		example: "hal0 update --from hal0_1.2.0_linux_amd64.tar.gz",
		flags:   updateCmd,
	})
}

func updateCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	from := fs.String("from", "", "a release tarball (hal0_<version>_linux_<arch>.tar.gz) or .deb")
	sum := fs.String("sha256", "", "the file's SHA-256 in hex (default: sha256sum's line in FILE.sha256)")
	rollback := fs.Bool("rollback", false, "make the previous version current again (again: forward)")
	noRestart := fs.Bool("no-restart", false, "switch without restarting hal0-apid and hal0-slotd")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	return func(ctx context.Context, args []string) error {
		if len(args) != 0 {
			return api.Errorf(api.CodeBadRequest, 0, "unexpected argument %q (the release goes after --from)", args[0])
		}
		if (*from == "") == !*rollback {
			return api.Errorf(api.CodeBadRequest, 0, "give either --from FILE or --rollback")
		}
		if *rollback && *sum != "" {
			return api.Errorf(api.CodeBadRequest, 0, "--sha256 goes with --from, not --rollback")
		}
		cfg, err := LoadConfig()
		if err != nil {
			return err
		}
		var r upd.Restarter
		if !*noRestart {
			r = updateRestarter
		}
		in := upd.New(cfg.Paths.InstallDir, r)
		var res *upd.Result
		if *rollback {
			res, err = in.Rollback(ctx)
		} else {
			res, err = in.Update(ctx, *from, *sum)
		}
		if res != nil {
			var re *upd.RestartError
			restarted := len(res.Restarted) > 0 && !errors.As(err, &re)
			if perr := printUpdate(res, *rollback, restarted, *asJSON); perr != nil && err == nil {
				err = perr
			}
		}
		return updateError(err, res)
	}
}

// printUpdate says what changed; restarted is whether the daemons were
// restarted (the error says so when that failed).
func printUpdate(res *upd.Result, rollback, restarted, asJSON bool) error {
	if asJSON {
		return printJSON(res)
	}
	switch {
	case res.Unchanged:
		fmt.Fprintf(Stdout, "hal0 %s is already current (%s); nothing changed\n", res.Version, res.Dir)
		return nil
	case rollback:
		fmt.Fprintf(Stdout, "hal0 %s is current again (%s); %s is previous: hal0 update --rollback goes forward again\n", res.Version, res.Dir, res.Previous)
	case res.Previous != "":
		fmt.Fprintf(Stdout, "hal0 %s is current (%s); %s is previous: hal0 update --rollback goes back\n", res.Version, res.Dir, res.Previous)
	default:
		fmt.Fprintf(Stdout, "hal0 %s is current (%s)\n", res.Version, res.Dir)
	}
	switch {
	case restarted:
		fmt.Fprintf(Stdout, "restarted those of %s that were running\n", strings.Join(res.Restarted, ", "))
	case len(res.Restarted) == 0:
		fmt.Fprintln(Stdout, "daemons not restarted: hal0 service restart puts the new version to work")
	}
	return nil
}

// updateError gives update's errors the exit status and the advice that
// fit them.
func updateError(err error, res *upd.Result) error {
	var re *upd.RestartError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return fmt.Errorf("hal0 %s is current, but %w; see hal0 service status, or go back with hal0 update --rollback", res.Version, err)
	case errors.Is(err, upd.ErrNoChecksum):
		return api.Errorf(api.CodeBadRequest, 0, "%v", err)
	case errors.Is(err, upd.ErrNoPrevious):
		return api.Errorf(api.CodeNotFound, 0, "%v", err)
	case errors.Is(err, upd.ErrBusy):
		return api.Errorf(api.CodeConflict, 0, "%v", err)
	case errors.Is(err, os.ErrNotExist):
		return api.Errorf(api.CodeNotFound, 0, "%v", err)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w (installing a version writes under the install directory: run as root)", err)
	}
	return err
}
