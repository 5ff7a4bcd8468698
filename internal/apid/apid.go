// Package apid wires hal0-apid together: listeners (socket-activated or
// bound here), the runner (systemd units, or child processes where no
// systemd is reachable), the API server, readiness, the watchdog and the
// idle exit.
package apid

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hal0ai/hal0/internal/apiserver"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hfserve"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/runner"
	"github.com/hal0ai/hal0/internal/sd"
	"github.com/hal0ai/hal0/internal/sdbus"
)

// Options come from hal0-apid's flags.
type Options struct {
	// Listen overrides api.listen when not socket-activated.
	Listen []string
	// Runner is "auto" (systemd when reachable), "systemd" or "process".
	Runner string
	// PullBin is the hal0-pull executable for the process runner; default:
	// next to this executable.
	PullBin string
	Logf    func(format string, a ...any)
}

// Run serves until ctx ends or, when socket-activated, until idle.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	lns, activated, err := listeners(cfg, o.Listen)
	if err != nil {
		return err
	}
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	// The runner (a D-Bus connection and a probe of the unit template) is
	// built behind readiness: the first answer after socket activation
	// must not wait for it. Requests that start or inspect pulls do.
	run := runner.NewLazy(func() (runner.Runner, error) { return pickRunner(ctx, cfg, o, logf) })
	defer run.Close()

	srv := &apiserver.Server{
		Cfg: cfg, Jobs: jobs.Open(cfg.Paths.JobsDir()), Registry: registry.Open(cfg.Paths.RegistryFile()),
		Runner: run, Token: cfg.API.Token, AllowedHosts: cfg.API.AllowedHosts, Logf: logf,
	}
	if cfg.API.HFServe {
		opts := hfserve.Options{Registry: srv.Registry, Token: cfg.API.HFToken, Logf: logf,
			Privileged: srv.Privileged, ServeGated: cfg.API.HFServeGated}
		if cfg.API.HFPullThrough {
			// Pulls through /hf/ are ordinary jobs of this API's runner:
			// hal0-pull@<ref>.service, or child processes in embedded mode.
			opts.Upstream, opts.Pulls = hfserve.NewHubLister(cfg), srv.PullJobs()
			logf("/hf/ pulls what it lacks from %s", strings.Join(cfg.Endpoints(), ", "))
		}
		hfh := hfserve.New(opts)
		defer hfh.Close()
		srv.HF = hfh
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ConnContext:       apiserver.ConnContext,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	hs.RegisterOnShutdown(srv.CloseStreams)
	errc := make(chan error, len(lns))
	var wg sync.WaitGroup
	var addrs []string
	for _, l := range lns {
		addrs = append(addrs, l.Addr().Network()+":"+l.Addr().String())
		wg.Add(1)
		go func(l net.Listener) {
			defer wg.Done()
			if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}(l)
	}
	how := "bound"
	if activated {
		how = "socket-activated"
	}
	sd.Ready()
	sd.Status("serving on %s", strings.Join(addrs, ", "))
	runnerDone := run.Done()

	var idle <-chan time.Time
	if activated && cfg.API.IdleExit > 0 {
		t := time.NewTicker(min(cfg.API.IdleExit.D()/4, time.Second))
		defer t.Stop()
		idle = t.C
	}
	var dog <-chan time.Time
	if d := sd.Watchdog(); d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		dog = t.C
	}
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case err := <-errc:
			return err
		case <-runnerDone:
			runnerDone = nil
			r, err := run.Wait(ctx)
			if err != nil {
				return err // e.g. --runner=systemd without a usable systemd
			}
			logf("hal0-apid serving on %s (%s), pulls run as %s", strings.Join(addrs, ", "), how, r.Name())
			sd.Status("serving on %s; pulls run as %s", strings.Join(addrs, ", "), r.Name())
		case <-dog:
			sd.PingWatchdog()
		case <-idle:
			last, inflight := srv.IdleSince()
			if inflight == 0 && run.Active() == 0 && time.Since(last) >= cfg.API.IdleExit.D() {
				logf("idle for %v: exiting; systemd starts hal0-apid again on the next connection", cfg.API.IdleExit)
				done = true
			}
		}
	}
	sd.Stopping()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		// Clients that keep connections busy past the grace period are cut
		// off; that is not a failure of hal0-apid.
		logf("shutdown: %v; closing the remaining connections", err)
		hs.Close()
	}
	wg.Wait()
	return nil
}

// listeners returns systemd's sockets when socket-activated, otherwise
// binds the configured addresses.
func listeners(cfg *config.Config, flags []string) ([]net.Listener, bool, error) {
	lns, err := sd.Listeners()
	if err != nil {
		return nil, false, err
	}
	if len(lns) > 0 {
		return lns, true, nil
	}
	addrs := flags
	if len(addrs) == 0 {
		addrs = cfg.API.Listen
	}
	if len(addrs) == 0 {
		addrs = []string{"unix:" + cfg.Paths.APISocket(), "tcp:127.0.0.1:8080"}
	}
	for _, a := range addrs {
		l, err := bind(a)
		if err != nil {
			for _, o := range lns {
				o.Close()
			}
			return nil, false, err
		}
		lns = append(lns, l)
	}
	return lns, false, nil
}

func bind(addr string) (net.Listener, error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		p := strings.TrimPrefix(addr, "unix:")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		// A socket file left by a dead apid blocks bind; one that answers
		// belongs to a live apid, which must not be taken over.
		if c, err := net.Dial("unix", p); err == nil {
			c.Close()
			return nil, fmt.Errorf("another hal0-apid is listening on %s", p)
		}
		os.Remove(p)
		l, err := net.Listen("unix", p)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", p, err)
		}
		// Access to the socket is access to the API: owner and group only.
		os.Chmod(p, 0o660)
		return l, nil
	case strings.HasPrefix(addr, "tcp:"):
		a := strings.TrimPrefix(addr, "tcp:")
		l, err := net.Listen("tcp", a)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", a, err)
		}
		return l, nil
	}
	return nil, fmt.Errorf("listen address %q: want unix:/path or tcp:host:port", addr)
}

// pickRunner uses systemd when its bus answers and the hal0-pull@ template
// is installed; otherwise pulls run as child processes, and the log says so.
func pickRunner(ctx context.Context, cfg *config.Config, o Options, logf func(string, ...any)) (runner.Runner, error) {
	proc := func() runner.Runner {
		bin := o.PullBin
		if bin == "" {
			if exe, err := os.Executable(); err == nil {
				bin = filepath.Join(filepath.Dir(exe), "hal0-pull")
			}
		}
		return &runner.Process{Bin: bin, Stderr: os.Stderr}
	}
	switch o.Runner {
	case "process":
		return proc(), nil
	case "", "auto", "systemd":
	default:
		return nil, fmt.Errorf("runner %q: want auto, systemd or process", o.Runner)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	bus, err := sdbus.Dial(dctx)
	if err == nil {
		u, uerr := bus.Unit(dctx, "hal0-pull@probe.service")
		if uerr == nil && u.LoadState == "loaded" {
			return &runner.Systemd{SD: bus}, nil
		}
		bus.Close()
		if uerr != nil {
			err = uerr
		} else {
			err = fmt.Errorf("the hal0-pull@.service template is not installed")
		}
	}
	if o.Runner == "systemd" {
		return nil, fmt.Errorf("systemd runner requested but unusable: %v", err)
	}
	logf("no usable systemd (%v): running pulls as child processes of hal0-apid", err)
	return proc(), nil
}
