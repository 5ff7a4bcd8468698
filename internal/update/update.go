// Package update installs a hal0 release next to the running one and
// switches between the two: the logic of `hal0 update --from FILE` and
// `hal0 update --rollback`.
//
// An installation is a directory (Root, /usr/lib/hal0) holding one
// directory per version with the four binaries in bin/, and two symbolic
// links: "current" (the install_dir of hal0.toml), which every unit runs
// its binary through, and "previous", the version current was before the
// last switch. An update
//
//  1. copies the release (a tarball or a .deb) into a private staging
//     directory in Root while hashing it, and compares the hash with the
//     expected SHA-256 (given, or read from FILE.sha256), so the bytes
//     unpacked are the bytes checked, whoever can write FILE;
//  2. unpacks its version tree there and checks it: only regular files and
//     directories, no path outside the tree, the four binaries present,
//     executable and built for this machine's architecture;
//  3. renames the tree to Root/<version>, points "previous" at the running
//     version and then "current" at the new one, each link replaced
//     atomically (a new link renamed over the old), so a crash at any
//     point leaves current naming a complete version;
//  4. restarts the daemons that run (systemctl try-restart hal0-apid and
//     hal0-slotd) through a Restarter. Pulls and slots keep running: their
//     processes hold their binaries, and the old tree stays on disk.
//
// A rollback exchanges the two links in one renameat2(RENAME_EXCHANGE), so
// rolling back twice goes forward again. Nothing outside Root is written:
// /etc/hal0 and /var/lib/hal0 (the registry, jobs, slots) stay as they are.
// Units and other packaged files change only with the Debian package.
package update

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// PreviousLink names the link to the version before the last switch.
const PreviousLink = "previous"

// Binaries are the programs every version tree must hold in bin/.
var Binaries = []string{"hal0", "hal0-apid", "hal0-pull", "hal0-slotd"}

// Daemons are the units an update or a rollback restarts when they run.
var Daemons = []string{"hal0-apid.service", "hal0-slotd.service"}

var (
	// ErrNoChecksum: neither a SHA-256 nor FILE.sha256 was given. An
	// unverified release is never installed.
	ErrNoChecksum = errors.New("no SHA-256 to check the release against")
	// ErrChecksum: the file's SHA-256 is not the expected one.
	ErrChecksum = errors.New("SHA-256 mismatch")
	// ErrNoPrevious: there is no other version to roll back to.
	ErrNoPrevious = errors.New("no previous version to roll back to")
	// ErrBusy: another update or rollback holds the lock.
	ErrBusy = errors.New("another hal0 update is running")
	// ErrBadRelease: the file is not a release hal0 can install.
	ErrBadRelease = errors.New("not an installable hal0 release")
)

// RestartError reports daemons that failed to restart after a switch that
// did happen: the new version is current.
type RestartError struct{ Err error }

func (e *RestartError) Error() string { return "restarting the daemons: " + e.Err.Error() }
func (e *RestartError) Unwrap() error { return e.Err }

// Restarter restarts the daemons after a switch. Units that are not
// running must stay stopped (a socket-activated hal0-apid that exited
// when idle starts the new binary on its next connection).
type Restarter interface {
	Restart(ctx context.Context, units []string) error
}

// Systemctl is the Restarter of a real installation: systemctl try-restart.
type Systemctl struct {
	// Program is the systemctl to run; empty means "systemctl" in PATH.
	Program string
}

// Restart runs `systemctl try-restart UNITS`.
func (s Systemctl) Restart(ctx context.Context, units []string) error {
	prog := s.Program
	if prog == "" {
		prog = "systemctl"
	}
	out, err := exec.CommandContext(ctx, prog, append([]string{"try-restart"}, units...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl try-restart %s: %w: %s", strings.Join(units, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Installer updates and rolls back one installation.
type Installer struct {
	// Root holds the version directories and the links.
	Root string
	// Current is the name of the link the units run through.
	Current string
	// Restarter restarts the daemons after a switch; nil skips that.
	Restarter Restarter
	// Arch is the GOARCH the binaries must be built for; empty means the
	// architecture of this program.
	Arch string
}

// New returns the Installer of the installation whose current link is
// installDir (config's paths.install_dir, /usr/lib/hal0/current).
func New(installDir string, r Restarter) *Installer {
	return &Installer{Root: filepath.Dir(installDir), Current: filepath.Base(installDir), Restarter: r}
}

// Result says what an update or rollback did.
type Result struct {
	// Version is current after the operation, Dir its directory.
	Version string `json:"version"`
	Dir     string `json:"dir"`
	// Previous is the version a rollback would go back to.
	Previous string `json:"previous,omitempty"`
	// Unchanged is set when the release was already current.
	Unchanged bool `json:"unchanged,omitempty"`
	// Restarted lists the units given to the Restarter.
	Restarted []string `json:"restarted,omitempty"`
}

// versionRE is what a version directory may be called: a Debian version
// without epoch (build.sh makes the same check).
var versionRE = regexp.MustCompile(`^[0-9][0-9A-Za-z.+~]{0,63}$`)

func checkVersion(v string) error {
	if !versionRE.MatchString(v) {
		return fmt.Errorf("%w: version %q is not a digit followed by letters, digits and . + ~ (64 at most)", ErrBadRelease, v)
	}
	return nil
}

// State returns the versions the current and previous links name ("" for
// a missing link).
func (in *Installer) State() (current, previous string, err error) {
	if current, err = in.readLink(in.Current); err != nil {
		return "", "", err
	}
	previous, err = in.readLink(PreviousLink)
	return current, previous, err
}

// Update installs the release in file, checks it against sha256Hex (or
// the first field of file.sha256 when empty) and makes it current.
func (in *Installer) Update(ctx context.Context, file, sha256Hex string) (*Result, error) {
	want, err := expectedSum(file, sha256Hex)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(in.Root, 0o755); err != nil {
		return nil, err
	}
	unlock, err := in.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Staging directories of updates that were killed: none can be in use
	// while we hold the lock.
	if stale, err := filepath.Glob(filepath.Join(in.Root, ".update-*")); err == nil {
		for _, d := range stale {
			os.RemoveAll(d)
		}
	}

	stage, err := os.MkdirTemp(in.Root, ".update-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)

	archive := filepath.Join(stage, "archive")
	if err := copyVerified(file, archive, want); err != nil {
		return nil, err
	}
	tree := filepath.Join(stage, "tree")
	version, err := unpack(ctx, archive, tree)
	if err != nil {
		return nil, err
	}
	if err := in.checkTree(tree); err != nil {
		return nil, err
	}

	cur, err := in.readLink(in.Current)
	if err != nil {
		return nil, err
	}
	prev, err := in.readLink(PreviousLink)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(in.Root, version)
	if cur == version {
		return &Result{Version: version, Dir: dir, Previous: prev, Unchanged: true}, nil
	}
	if err := in.place(tree, dir, filepath.Join(stage, "old")); err != nil {
		return nil, err
	}
	if cur != "" {
		if err := in.setLink(PreviousLink, cur); err != nil {
			return nil, err
		}
		prev = cur
	}
	if err := in.setLink(in.Current, version); err != nil {
		return nil, err
	}
	if err := syncDir(in.Root); err != nil {
		return nil, err
	}
	res := &Result{Version: version, Dir: dir, Previous: prev}
	return res, in.restart(ctx, res)
}

// Rollback makes the previous version current again, and the current one
// previous.
func (in *Installer) Rollback(ctx context.Context) (*Result, error) {
	if _, err := os.Stat(in.Root); errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoPrevious
	}
	unlock, err := in.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	cur, prev, err := in.State()
	if err != nil {
		return nil, err
	}
	if prev == "" || prev == cur {
		return nil, ErrNoPrevious
	}
	if err := in.checkTree(filepath.Join(in.Root, prev)); err != nil {
		return nil, fmt.Errorf("previous version %s: %w", prev, err)
	}
	curPath, prevPath := filepath.Join(in.Root, in.Current), filepath.Join(in.Root, PreviousLink)
	switch {
	case cur == "":
		err = os.Rename(prevPath, curPath)
	default:
		// One atomic exchange, so no crash can leave both links naming
		// the same version and lose the way back.
		err = unix.Renameat2(unix.AT_FDCWD, curPath, unix.AT_FDCWD, prevPath, unix.RENAME_EXCHANGE)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
			// A file system without exchange: current first, so the
			// running system is right even if the second step is lost.
			if err = in.setLink(in.Current, prev); err == nil {
				err = in.setLink(PreviousLink, cur)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("switching %s to %s: %w", curPath, prev, err)
	}
	if err := syncDir(in.Root); err != nil {
		return nil, err
	}
	res := &Result{Version: prev, Dir: filepath.Join(in.Root, prev), Previous: cur}
	return res, in.restart(ctx, res)
}

func (in *Installer) restart(ctx context.Context, res *Result) error {
	if in.Restarter == nil {
		return nil
	}
	res.Restarted = slices.Clone(Daemons)
	if err := in.Restarter.Restart(ctx, Daemons); err != nil {
		return &RestartError{Err: err}
	}
	return nil
}

// readLink returns the version a link in Root names, or "" when there is
// no such link. A link to an absolute path is accepted when it points into
// Root; anything else is not a link hal0 update made or can manage.
func (in *Installer) readLink(name string) (string, error) {
	p := filepath.Join(in.Root, name)
	target, err := os.Readlink(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if errors.Is(err, syscall.EINVAL) {
		return "", fmt.Errorf("%s is not a symbolic link: hal0 update switches versions by replacing that link", p)
	}
	if err != nil {
		return "", err
	}
	if filepath.IsAbs(target) {
		if filepath.Dir(filepath.Clean(target)) != filepath.Clean(in.Root) {
			return "", fmt.Errorf("%s points at %s, outside %s", p, target, in.Root)
		}
		target = filepath.Base(target)
	}
	if err := checkVersion(target); err != nil {
		return "", fmt.Errorf("%s points at %q, not a version directory", p, target)
	}
	return target, nil
}

// setLink points Root/name at version: a new link renamed over the old
// one, which rename(2) does atomically.
func (in *Installer) setLink(name, version string) error {
	tmp := filepath.Join(in.Root, "."+name+".new")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Symlink(version, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(in.Root, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// place renames the checked tree to dir. A directory of the same version
// that is not current (an earlier unpack, or the previous version) is
// replaced by the freshly verified one; it is moved aside to old first,
// which the caller removes.
func (in *Installer) place(tree, dir, old string) error {
	if err := os.Chmod(tree, 0o755); err != nil {
		return err
	}
	if _, err := os.Lstat(dir); err == nil {
		if err := os.Rename(dir, old); err != nil {
			return err
		}
	}
	return os.Rename(tree, dir)
}

// checkTree checks that dir holds the binaries, built for this machine.
func (in *Installer) checkTree(dir string) error {
	for _, name := range Binaries {
		if err := checkBinary(filepath.Join(dir, "bin", name), in.Arch); err != nil {
			return err
		}
	}
	return nil
}

// lock takes Root/.update.lock, so two updates cannot interleave their
// link changes.
func (in *Installer) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(in.Root, ".update.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
