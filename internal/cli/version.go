package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/client"
	"github.com/hal0ai/hal0/internal/version"
)

func init() {
	register("version", &command{
		summary: "print the version of hal0 and, when reachable, of hal0-apid", usage: "[--json] [--api URL]", example: "hal0 version --json",
		flags: versionCmd,
	})
}

// versionInfo is `hal0 version --json`. Version and commit keep the shape
// they had before the API existed; api is absent when hal0-apid could not
// be asked, and api_error says why.
type versionInfo struct {
	Version  string       `json:"version"`
	Commit   string       `json:"commit"`
	API      *api.Version `json:"api,omitempty"`
	APIError string       `json:"api_error,omitempty"`
}

// versionTimeout keeps `hal0 version` quick when hal0-apid hangs: the
// version of the CLI itself must always print.
const versionTimeout = 5 * time.Second

func versionCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	asJSON := fs.Bool("json", false, "print JSON")
	apiAddr := apiFlag(fs)
	return func(ctx context.Context, args []string) error {
		if len(args) != 0 {
			return api.Errorf(api.CodeBadRequest, 0, "version takes no arguments")
		}
		info := versionInfo{Version: version.Version, Commit: version.Commit}
		var apiErr error
		if c, _, err := connect(*apiAddr); err != nil {
			apiErr = err
		} else {
			ctx, cancel := context.WithTimeout(ctx, versionTimeout)
			info.API, apiErr = c.Version(ctx)
			cancel()
		}
		if apiErr != nil {
			info.API, info.APIError = nil, apiErr.Error()
		}
		if *asJSON {
			return printJSON(info)
		}
		fmt.Fprintln(Stdout, "hal0", version.String())
		if info.API != nil {
			s := info.API.Version
			if c := info.API.Commit; c != "" {
				if len(c) > 12 {
					c = c[:12]
				}
				s += " (" + c + ")"
			}
			fmt.Fprintf(Stdout, "hal0-apid %s, API %d\n", s, info.API.API)
		} else if ue := (*client.UnreachableError)(nil); errors.As(apiErr, &ue) {
			fmt.Fprintln(Stdout, info.APIError) // it names hal0-apid already
		} else {
			fmt.Fprintf(Stdout, "hal0-apid: version unknown: %s\n", info.APIError)
		}
		return nil
	}
}
