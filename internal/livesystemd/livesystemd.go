// Package livesystemd boots a real, private systemd for a test.
//
// The development and CI machines run Debian with systemd installed but not
// as PID 1, so code that drives systemd over D-Bus cannot be tested against
// the host. Boot starts /usr/lib/systemd/systemd as PID 1 of a fresh PID,
// mount, UTS and cgroup namespace (see /work/shared/reference/live-systemd.md
// for the recipe) and hands the test its bus address and helpers to run
// systemctl, journalctl or any command inside. On the development VMs a
// Boot takes 0.1-0.4 s until "running" (eight in parallel on two CPUs: up
// to 0.65 s each) and the power-off at cleanup under 0.1 s, and many
// Systems may run side by side in one test binary.
//
// # What is private and what is shared
//
// The namespace shares the host's file system, network and kernel. Boot
// therefore hides or neutralises everything a booting systemd would
// otherwise do to the host:
//
//   - tmpfs on /run, /tmp, /var/tmp and /var/log/journal (when it exists):
//     without the /tmp mount, systemd-tmpfiles would empty the host's /tmp;
//     units' PrivateTmp= directories would pile up in the host's /var/tmp
//     whenever a namespace is killed; the journal would land on the host's
//     disk;
//   - a cgroup2 hierarchy rooted in a cgroup of its own (cgroup namespace),
//     so parallel Systems and the host never fight over system.slice;
//   - an empty /etc/systemd/system, no generators and no vendor
//     sysinit.target.wants: otherwise the host's enabled services
//     (PostgreSQL, apt timers, timesyncd), getty on the host console,
//     sysctl/binfmt/module loading into the host kernel, sysusers editing
//     /etc/passwd and utmp writes would all run;
//   - read-only /sys and /proc/sys, and /dev/null over /dev/kmsg and
//     /dev/console, as in a container.
//
// systemd boots hal0-live.target (basic.target plus D-Bus), not
// multi-user.target, for the same reason. Units under test go to
// /run/systemd/system inside the namespace (WithUnit, System.InstallUnit).
//
// Everything else is shared: binaries, and directories the units under
// test use, must live outside /tmp, /var/tmp and /run. System.Dir is the
// exception made for that: a directory under /var/tmp, bind-mounted at the
// same path inside, removed at cleanup. A unit with PrivateTmp= gets a
// private /var/tmp and cannot see Dir.
//
// # Running the live tests
//
// Boot needs root. Without root, or when namespaces or cgroup2 are not
// available, Boot skips the test with the reason, unless HAL0_LIVE_REQUIRED=1
// (set by `make test`): then it fails, so CI cannot silently lose the live
// tests. Available reports the same verdict without a testing.TB.
package livesystemd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// EnvRequired names the environment variable that turns "cannot boot"
	// from a skip into a failure when set to "1".
	EnvRequired = "HAL0_LIVE_REQUIRED"

	// BootTarget is the target the private systemd boots into.
	BootTarget = "hal0-live.target"

	// DefaultBootTimeout bounds a Boot, from unshare to "running".
	DefaultBootTimeout = 30 * time.Second

	// DefaultWaitTimeout bounds WaitUnit when its context has no deadline.
	DefaultWaitTimeout = 60 * time.Second

	// poweroffTimeout bounds the graceful power-off at cleanup. The manager
	// is configured with DefaultTimeoutStopSec=10s, so a stuck unit cannot
	// hold it longer than that before SIGKILL.
	poweroffTimeout = 20 * time.Second

	// scratchParent holds System.Dir. It must be shared with the namespace,
	// so neither /tmp nor /run.
	scratchParent = "/var/tmp"

	// scratchPrefix starts every scratch directory name; the owner's pid
	// follows, so a later Boot can sweep directories of dead test binaries.
	scratchPrefix = "hal0-live-"

	// stateDir, inside System.Dir, holds the boot scripts, the files copied
	// to the namespace's /run, and the logs.
	stateDir = ".livesystemd"

	// busSocket is the system bus socket inside the namespace.
	busSocket = "/run/dbus/system_bus_socket"

	// safePath is the PATH for every command this package runs, so the
	// tools resolve the same way whatever the test's environment is.
	safePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// System is one private systemd booted by Boot.
type System struct {
	// PID is the pid of systemd (PID 1 inside) in the host's pid namespace.
	PID int
	// BusAddress is the namespace's system bus as seen from the host,
	// unix:path=/proc/PID/root/run/dbus/system_bus_socket. Set it as
	// DBUS_SYSTEM_BUS_ADDRESS or pass it to a D-Bus client.
	BusAddress string
	// Dir is a scratch directory shared by the host and the namespace
	// (under /var/tmp, mode 0755), removed at cleanup.
	Dir string

	state  string // Dir/.livesystemd
	cgroup string // name of our cgroup in the cgroup2 hierarchy root

	cmd     *exec.Cmd     // the unshare process, our child
	sysd    *os.Process   // systemd, held by pidfd so a kill never hits a reused pid
	exited  chan struct{} // closed once unshare has exited and been reaped
	waitErr error         // unshare's exit, valid after exited is closed
}

// Option configures Boot.
type Option func(*config)

type config struct {
	units       []unitFile
	wants       []string
	env         []string
	bootTimeout time.Duration
}

type unitFile struct{ name, content string }

// WithUnit installs a unit file (or a drop-in, name "x.service.d/y.conf")
// in /run/systemd/system before systemd starts, so it is loaded at boot.
// [Install] sections are not acted on; see WithBootUnits.
func WithUnit(name, content string) Option {
	return func(c *config) { c.units = append(c.units, unitFile{name, content}) }
}

// WithBootUnits makes BootTarget want (and order itself after) the units,
// so they are started at boot and Boot returns only once they are up.
func WithBootUnits(units ...string) Option {
	return func(c *config) { c.wants = append(c.wants, units...) }
}

// WithEnv adds KEY=VALUE pairs to the manager's DefaultEnvironment=, i.e. to
// the environment of every unit.
func WithEnv(kv ...string) Option {
	return func(c *config) { c.env = append(c.env, kv...) }
}

// WithBootTimeout replaces DefaultBootTimeout.
func WithBootTimeout(d time.Duration) Option {
	return func(c *config) { c.bootTimeout = d }
}

// Boot boots a private systemd for the calling test and registers its
// teardown with t.Cleanup. It skips the test (with the reason) when live
// tests cannot run here or systemd does not come up, or fails it instead when
// HAL0_LIVE_REQUIRED=1. A misused Option, or a unit the test supplied that
// fails at boot, fails the test in any case. Boot returns nil only after
// t.Skip or t.Fatal, i.e. never to a real test.
func Boot(t testing.TB, opts ...Option) *System {
	t.Helper()
	if ok, why := Available(); !ok {
		unavailable(t, why)
		return nil
	}
	cfg := config{bootTimeout: DefaultBootTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Fatalf("livesystemd: %v", err)
		return nil
	}
	sweepOnce.Do(func() { sweepStale(t) })

	start := time.Now()
	s, err := boot(t, &cfg)
	var bad *testUnitsFailed
	if errors.As(err, &bad) {
		// The machine can boot systemd; the test's own units are broken.
		t.Fatalf("livesystemd: %v", err)
		return nil
	}
	if err != nil {
		unavailable(t, "boot failed: "+err.Error())
		return nil
	}
	t.Logf("livesystemd: systemd pid %d running after %v (dir %s)", s.PID, time.Since(start).Round(time.Millisecond), s.Dir)
	return s
}

// unavailable skips t, or fails it when the live tests are required.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(EnvRequired) == "1" {
		t.Fatalf("livesystemd: %s (%s=1: live systemd tests must run here)", why, EnvRequired)
		return
	}
	t.Skipf("livesystemd: skipping live systemd test: %s (set %s=1 to make this a failure)", why, EnvRequired)
}

var (
	availOnce sync.Once
	availOK   bool
	availWhy  string

	sweepOnce sync.Once
)

// Available reports whether live systemd tests can run on this machine and,
// if not, why. The probe (root, tools, and a trial unshare that mounts
// cgroup2) runs once per process.
func Available() (bool, string) {
	availOnce.Do(func() { availOK, availWhy = probe() })
	return availOK, availWhy
}

func probe() (bool, string) {
	if euid := os.Geteuid(); euid != 0 {
		return false, fmt.Sprintf("needs root to create namespaces, running as uid %d (run the tests as root, e.g. via `make test`)", euid)
	}
	for _, tool := range []string{"unshare", "nsenter", "mount", "systemctl", "journalctl"} {
		if _, err := findTool(tool); err != nil {
			return false, err.Error()
		}
	}
	if _, err := systemdBinary(); err != nil {
		return false, err.Error()
	}
	if _, err := findUnitFile("dbus.socket"); err != nil {
		return false, "no D-Bus system bus to start inside: " + err.Error()
	}
	// A trial run of the parts that fail in unprivileged containers or on
	// kernels without cgroup2, so the skip reason names the real problem.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	unshare, _ := findTool("unshare")
	cmd := exec.CommandContext(ctx, unshare, "--pid", "--fork", "--mount", "--uts", "--cgroup", "--mount-proc",
		"/bin/sh", "-c", "mount --make-rprivate / && mount -t tmpfs tmpfs /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup")
	cmd.Env = []string{"PATH=" + safePath}
	if out, err := cmd.CombinedOutput(); err != nil {
		return false, fmt.Sprintf("cannot create namespaces and mount cgroup2: %v: %s", err, bytes.TrimSpace(out))
	}
	return true, ""
}

// findTool looks name up in safePath, independent of the test's PATH.
func findTool(name string) (string, error) {
	for _, dir := range filepath.SplitList(safePath) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s", name, safePath)
}

func systemdBinary() (string, error) {
	for _, p := range []string{"/usr/lib/systemd/systemd", "/lib/systemd/systemd"} {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return r, nil
		}
	}
	return "", errors.New("systemd is not installed (no /usr/lib/systemd/systemd)")
}

func findUnitFile(name string) (string, error) {
	for _, dir := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no %s unit file", name)
}

func (c *config) validate() error {
	for _, u := range c.units {
		if err := checkUnitPath(u.name); err != nil {
			return err
		}
	}
	for _, w := range c.wants {
		if w == "" || strings.ContainsAny(w, "/ \n") {
			return fmt.Errorf("WithBootUnits: bad unit name %q", w)
		}
	}
	for _, kv := range c.env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(kv, "\x00\n") {
			return fmt.Errorf("WithEnv: %q is not KEY=VALUE on one line", kv)
		}
	}
	if c.bootTimeout <= 0 {
		return fmt.Errorf("WithBootTimeout: %v is not positive", c.bootTimeout)
	}
	return nil
}

// checkUnitPath accepts "name.type" and "name.type.d/file.conf".
func checkUnitPath(name string) error {
	dir, file := filepath.Split(name)
	ok := filepath.IsLocal(name) && file != "" && !strings.HasPrefix(file, ".") &&
		(dir == "" || strings.HasSuffix(dir, ".d/") && strings.Count(dir, "/") == 1 && strings.HasSuffix(file, ".conf"))
	if !ok {
		return fmt.Errorf("unit file name %q is neither \"name.type\" nor \"name.type.d/drop-in.conf\"", name)
	}
	return nil
}

// HostPath returns the host path of path inside the namespace, through
// /proc/PID/root (for example, to read a file a unit wrote to /run).
func (s *System) HostPath(path string) string {
	return filepath.Join("/proc", strconv.Itoa(s.PID), "root", path)
}

// InstallUnit writes a unit file (or a drop-in, "x.service.d/y.conf") to
// /run/systemd/system inside the namespace and reloads the manager.
func (s *System) InstallUnit(t testing.TB, name, content string) {
	t.Helper()
	if err := checkUnitPath(name); err != nil {
		t.Fatalf("livesystemd: InstallUnit: %v", err)
	}
	dst := s.HostPath(filepath.Join("/run/systemd/system", name))
	if err := writeFileAtomic(dst, content); err != nil {
		t.Fatalf("livesystemd: InstallUnit %s: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Systemctl(ctx, "daemon-reload"); err != nil {
		t.Fatalf("livesystemd: InstallUnit %s: %v", name, err)
	}
}

// writeFileAtomic writes via a temporary file and rename, so a concurrent
// daemon-reload never reads half a unit.
func writeFileAtomic(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Systemctl runs `systemctl --no-pager ARGS` inside the namespace.
func (s *System) Systemctl(ctx context.Context, args ...string) (string, error) {
	return s.Run(ctx, "systemctl", append([]string{"--no-pager"}, args...)...)
}

// Journal runs `journalctl --no-pager ARGS` inside the namespace, after
// `journalctl --sync`, so messages logged before the call are all there.
func (s *System) Journal(ctx context.Context, args ...string) (string, error) {
	if out, err := s.Run(ctx, "journalctl", "--sync"); err != nil {
		return out, err
	}
	return s.Run(ctx, "journalctl", append([]string{"--no-pager"}, args...)...)
}

// Run runs a command inside the namespace (nsenter into its mount, pid, UTS
// and cgroup namespaces) with a minimal environment and "/" as working
// directory. It returns stdout with surrounding white space trimmed, also
// when the command fails (`systemctl is-active` prints the state and exits
// non-zero); the error then carries the exit status and stderr.
// The command is killed when ctx ends.
func (s *System) Run(ctx context.Context, name string, args ...string) (string, error) {
	nsenter, err := findTool("nsenter")
	if err != nil {
		return "", err
	}
	argv := append([]string{"--target", strconv.Itoa(s.PID), "--mount", "--pid", "--uts", "--cgroup", "--", name}, args...)
	cmd := exec.CommandContext(ctx, nsenter, argv...)
	cmd.Env = []string{"PATH=" + safePath, "LANG=C.UTF-8", "TERM=dumb", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=cat"}
	cmd.Dir = "/"
	// Don't let a grandchild that keeps stdout open stall Wait forever
	// after ctx has killed nsenter.
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	out := strings.TrimSpace(stdout.String())
	if err != nil {
		return out, fmt.Errorf("livesystemd: %s %s (in namespace of pid %d): %w: %s",
			name, strings.Join(args, " "), s.PID, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// signalProcess sends sig to p, ignoring "already finished".
func signalProcess(p *os.Process, sig syscall.Signal) {
	if p != nil {
		_ = p.Signal(sig)
	}
}

// Substitute returns the unit file at path with whole lines replaced, for
// running a shipped unit with a test's paths: each key of repl must be
// exactly one line of the file, so a test cannot drift from the unit it
// claims to run.
func Substitute(t testing.TB, path string, repl map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for old, new := range repl {
		n := 0
		for i, l := range lines {
			if l == old {
				lines[i] = new
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s: %d lines %q, want exactly one; update the test's substitutions", path, n, old)
		}
	}
	return strings.Join(lines, "\n")
}
