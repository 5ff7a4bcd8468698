package cli

import (
	"flag"
	"os"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/client"
	"github.com/hal0ai/hal0/internal/config"
)

// apiFlag adds --api to a verb that talks to hal0-apid.
func apiFlag(fs *flag.FlagSet) *string {
	return fs.String("api", "", "hal0-apid to talk to: http(s)://host:port (bearer token from HAL0_API_TOKEN or api.env) or unix:/path; default $HAL0_API, else the local socket")
}

// connect returns a client of the API chosen by --api, else HAL0_API,
// else the configured unix socket. The token only matters over TCP.
func connect(addr string) (*client.Client, *config.Config, error) {
	cfg, err := LoadConfig()
	if err != nil {
		return nil, nil, err
	}
	if addr == "" {
		addr = os.Getenv("HAL0_API")
	}
	if addr == "" {
		addr = "unix:" + cfg.Paths.APISocket()
	}
	c, err := client.New(addr, cfg.API.Token)
	if err != nil {
		return nil, nil, &api.Error{Code: api.CodeBadRequest, Message: err.Error(), Err: err}
	}
	return c, cfg, nil
}

// wantOne checks that a command got exactly one argument, what.
func wantOne(args []string, what string) error {
	if len(args) != 1 {
		return api.Errorf(api.CodeBadRequest, 0, "want exactly one %s, got %d arguments", what, len(args))
	}
	return nil
}
