package packagetest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/registry"
)

// hfToken is the test hub's only valid Hugging Face token.
const hfToken = "hf_packagetestCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"

// overlaid are the directories the package, its maintainer scripts, dpkg
// and apt write to; each gets an overlay inside the namespace (see the
// package comment). /run, /tmp and /var/tmp are private tmpfs already.
var overlaid = []string{"/usr", "/etc", "/var/lib", "/var/cache", "/var/log", "/mnt"}

// overlayScript mounts the overlays (arguments: the layers directory, the
// directories, "--", then the mounts below them, parents first). An
// overlay's lower layer is the directory without the mounts below it: the
// empty tmpfs livesystemd put over the host's unit and generator
// directories would give way to the host's contents, and other mounts
// would vanish. Each is bound aside first and bound back on top of the
// overlay afterwards, so the namespace looks as it did, only writable.
const overlayScript = `set -eu
layers=$1
shift
dirs=
while [ "$1" != -- ]; do
	dirs="$dirs $1"
	shift
done
shift
n=0
for m in "$@"; do
	n=$((n + 1))
	mkdir -p "$layers/aside/$n"
	mount --bind "$m" "$layers/aside/$n"
done
n=0
for d in $dirs; do
	n=$((n + 1))
	mkdir -p "$layers/$n/upper" "$layers/$n/work"
	mount -t overlay overlay -o "lowerdir=$d,upperdir=$layers/$n/upper,workdir=$layers/$n/work" "$d"
done
n=0
for m in "$@"; do
	n=$((n + 1))
	mount --bind "$layers/aside/$n" "$m"
done
`

// maxExposure is the highest `systemd-analyze security` exposure each
// service may reach; the figures are today's, so a unit that loses some
// hardening fails the test. Why each stays where it is: units/*.service.
// A service not listed here (units/ is read as it is, so a unit added on
// another branch is checked too) may reach defaultMaxExposure, the top of
// systemd's "OK" band.
var maxExposure = map[string]float64{
	// 1.5 rather than 1.2: no ProtectKernelTunables= (see the unit), for
	// the cold start after socket activation.
	"hal0-apid.service":  1.5,
	"hal0-slotd.service": 1.1,
	// 1.2: @resources stays allowed for qemu-img (see the unit).
	"hal0-pull@x.service": 1.2,
	"hal0-slot@x.service": 1.4,
}

const defaultMaxExposure = 1.9

// shippedUnits returns the unit files the package installs: everything
// build.sh takes from units/.
func shippedUnits(t *testing.T) []string {
	t.Helper()
	names, err := filepath.Glob("../../units/hal0*")
	if err != nil || len(names) == 0 {
		t.Fatalf("no unit files in ../../units (%v)", err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return names
}

// sys runs commands in the private systemd's namespace for one test.
type sys struct {
	t *testing.T
	s *livesystemd.System
}

func (x *sys) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	x.t.Cleanup(cancel)
	return ctx
}

// try runs a command in the namespace and returns its stdout.
func (x *sys) try(name string, args ...string) (string, error) {
	return x.s.Run(x.ctx(), name, args...)
}

// run is try that fails the test on error.
func (x *sys) run(name string, args ...string) string {
	x.t.Helper()
	out, err := x.try(name, args...)
	if err != nil {
		x.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// sh runs a shell script in the namespace with args as $1….
func (x *sys) sh(script string, args ...string) string {
	x.t.Helper()
	return x.run("/bin/sh", append([]string{"-c", script, "sh"}, args...)...)
}

// stat returns "owner:group mode" of path in the namespace.
func (x *sys) stat(path string) string {
	x.t.Helper()
	return x.run("stat", "-c", "%U:%G %a", path)
}

func (x *sys) readFile(path string) string {
	x.t.Helper()
	b, err := os.ReadFile(x.s.HostPath(path))
	if err != nil {
		x.t.Fatal(err)
	}
	return string(b)
}

func (x *sys) prop(unit, name string) string {
	x.t.Helper()
	return x.run("systemctl", "show", "-p", name, "--value", unit)
}

// exe is the file the unit's main process runs, as the kernel resolved it
// at exec time.
func (x *sys) exe(unit string) string {
	x.t.Helper()
	pid := x.prop(unit, "MainPID")
	if pid == "0" {
		x.t.Fatalf("%s has no main process", unit)
	}
	return x.run("readlink", "/proc/"+pid+"/exe")
}

// throwawayRoot mounts the overlays that make the namespace's /usr, /etc,
// /var/lib, /var/cache, /var/log and /mnt writable without touching the
// machine's.
func (x *sys) throwawayRoot() {
	x.t.Helper()
	mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", x.s.PID))
	if err != nil {
		x.t.Fatal(err)
	}
	var below []string
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		point := unescapeMountinfo(f[4])
		for _, d := range overlaid {
			if strings.HasPrefix(point, d+"/") && !slices.Contains(below, point) {
				below = append(below, point)
			}
		}
	}
	sort.SliceStable(below, func(i, j int) bool { return strings.Count(below[i], "/") < strings.Count(below[j], "/") })
	args := append(append([]string{filepath.Join(x.s.Dir, "layers")}, overlaid...), "--")
	x.sh(overlayScript, append(args, below...)...)
	x.t.Logf("throwaway root: overlays on %s; mounts kept on top: %s", strings.Join(overlaid, " "), strings.Join(below, " "))
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of
// /proc/PID/mountinfo.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// hostState describes what the machine itself has of hal0, which the test
// must leave exactly as it found it.
func hostState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{"/usr/lib/hal0", "/usr/bin/hal0", "/etc/hal0", "/var/lib/hal0", "/mnt/ai-models", "/lib/systemd/system/hal0-apid.socket", "/usr/share/polkit-1/rules.d/60-hal0.rules"} {
		_, err := os.Lstat(p)
		fmt.Fprintf(&b, "%s exists=%v\n", p, err == nil)
	}
	for _, f := range []string{"/etc/passwd", "/etc/group", "/var/lib/dpkg/status"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %x\n", f, sha256.Sum256(data))
	}
	return b.String()
}

// api talks HTTP to hal0-apid, one connection per request as the CLI does
// (a socket-activated hal0-apid may be restarted between requests).
type api struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newAPI(t *testing.T, base, network, addr string) *api {
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	return &api{t: t, base: base, hc: &http.Client{Transport: tr, Timeout: time.Minute}}
}

func (a *api) do(method, path, token string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestLivePackage installs the package into a throwaway root inside a
// private systemd and follows it through its life: install, the daemons
// up as hal0, polkit, unit checks, `hal0 update` and rollbacks, an upgrade
// that keeps an edited conffile, and a purge.
func TestLivePackage(t *testing.T) {
	// polkitd is a dependency of the package (dpkg checks it against the
	// machine's database, which the overlays keep) and pkcheck asks it
	// about the packaged rule.
	need(t, "pkcheck")
	hostBefore := hostState(t)
	if fs, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(fs), "\toverlay\n") {
		// The throwaway root is made of overlays.
		if os.Getenv(livesystemd.EnvRequired) == "1" {
			t.Fatal("the kernel has no overlayfs (modprobe overlay)")
		}
		t.Skip("the kernel has no overlayfs (modprobe overlay)")
	}
	// Boot first: without root or systemd the test skips before building.
	s := livesystemd.Boot(t)
	dir := artifacts(t)
	x := &sys{t: t, s: s}
	for _, tool := range []string{"dpkg", "setpriv", "systemd-analyze", "getent"} {
		if _, err := x.try("sh", "-c", "command -v "+tool); err != nil {
			t.Fatalf("%s is missing inside the namespace", tool)
		}
	}
	x.throwawayRoot()

	// Docker-derived images carry a policy-rc.d that forbids maintainer
	// scripts to start services; a Debian install has none. Local polkit
	// rules of the machine are hidden so that only the packaged rule and
	// the vendor defaults decide. man-db's trigger, which re-indexes every
	// manual page after each dpkg run (seconds of CPU), is turned off as
	// the Debian installer does it: the index is not under test.
	x.sh("rm -f /usr/sbin/policy-rc.d /var/lib/man-db/auto-update && mount -t tmpfs -o mode=0755 tmpfs /etc/polkit-1/rules.d")

	// The socket's dashboard listener on a free port instead of 8080, the
	// way the socket unit tells an admin to change it.
	port := freePort(t)
	dropIn := fmt.Sprintf("[Socket]\nListenStream=\nListenStream=/run/hal0/api.sock\nListenStream=127.0.0.1:%d\n", port)
	writeFile(t, s.HostPath("/etc/systemd/system/hal0-apid.socket.d/test-port.conf"), dropIn, 0o644)

	// The releases, where the namespace can read them.
	dist := filepath.Join(s.Dir, "dist")
	for _, name := range []string{debName(v1), debName(v2), tarballName(v2)} {
		copyFile(t, filepath.Join(dir, name), filepath.Join(dist, name))
	}

	// dpkg leaves directories that exist alone: polkitd's rules directory
	// keeps its owner and mode (0700 polkitd on Debian 12).
	rulesDir := x.stat("/usr/share/polkit-1/rules.d")
	t.Logf("dpkg -i %s:\n%s", debName(v1), x.sh(`dpkg --log=/dev/null -i "$1" 2>&1`, filepath.Join(dist, debName(v1))))
	if got := x.stat("/usr/share/polkit-1/rules.d"); got != rulesDir {
		t.Errorf("installing changed /usr/share/polkit-1/rules.d from %s to %s", rulesDir, got)
	}
	unix := newAPI(t, "http://hal0", "unix", s.HostPath("/run/hal0/api.sock"))
	tcp := newAPI(t, fmt.Sprintf("http://127.0.0.1:%d", port), "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	token := checkInstalled(x, unix, tcp)
	checkPolkit(x)
	checkUnitFiles(x)

	// State a person has by now: an edited configuration (the hub of this
	// test, no disk reserve, a longer idle exit), the Hugging Face token
	// in /etc/hal0/hf-token (root's alone: hal0-pull@ gets it as a systemd
	// credential) and a model from a gated repo, pulled by hal0-apid as
	// hal0, which polkit's rule lets start the pull unit.
	hub, err := hubtest.New(hubtest.Options{Token: hfToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	hub.AddRepo(hubtest.Repo{ID: "demo/tiny", Gated: "manual", Approved: true, Files: hubtest.GenerateGGUFShards("", "tiny", "Q4_K_M", 2, 1<<20, 7)})
	x.sh(`umask 077 && printf '%s\n' "$1" >/etc/hal0/hf-token`, hfToken)
	if got := x.stat("/etc/hal0/hf-token"); got != "root:root 600" {
		t.Fatalf("/etc/hal0/hf-token is %s", got)
	}
	x.sh(`sed -i -e "s|^# endpoint .*|endpoint = \"$1\"|" -e 's/^# disk_reserve .*/disk_reserve = "0"/' \
		-e 's/^# idle_exit .*/idle_exit = "7m"/' /etc/hal0/hal0.toml`, hub.URL)
	edited := x.readFile("/etc/hal0/hal0.toml")
	for _, want := range []string{"\nendpoint = \"" + hub.URL + "\"\n", "\ndisk_reserve = \"0\"\n", "\nidle_exit = \"7m\"\n"} {
		if !strings.Contains(edited, want) {
			t.Fatalf("the edit %q did not take:\n%s", want, edited)
		}
	}
	x.run("hal0", "service", "restart", "hal0-apid.service")
	checkCatalog(x)
	t.Logf("hal0 model pull demo/tiny:Q4_K_M:\n%s", x.sh("hal0 model pull demo/tiny:Q4_K_M 2>&1"))
	if journal := x.run("journalctl", "--no-pager", "-o", "cat", "-u", "hal0-pull@*"); strings.Contains(journal, hfToken) {
		t.Fatal("the Hugging Face token is in the pull's journal")
	}
	reg := x.readFile("/var/lib/hal0/registry/registry.toml")
	var model registry.Model
	if err := json.Unmarshal([]byte(x.run("hal0", "model", "show", "--json", "demo/tiny:Q4_K_M")), &model); err != nil {
		t.Fatal(err)
	}
	// Written by hal0-pull as hal0 (in its user namespace) with UMask=0027.
	if got := x.stat(model.Path); got != "hal0:hal0 640" {
		t.Errorf("the pulled %s is %s, want hal0:hal0 640", model.Path, got)
	}
	apiEnv := x.readFile("/etc/hal0/api.env")
	kept := func(when string) {
		t.Helper()
		if got := x.readFile("/var/lib/hal0/registry/registry.toml"); got != reg {
			t.Fatalf("%s: the registry changed:\n%s", when, got)
		}
		if got := x.readFile("/etc/hal0/hal0.toml"); got != edited {
			t.Fatalf("%s: the edited hal0.toml changed:\n%s", when, got)
		}
		if got := x.readFile("/etc/hal0/api.env"); got != apiEnv {
			t.Fatalf("%s: api.env changed", when)
		}
		var models []registry.Model
		if err := json.Unmarshal([]byte(x.run("hal0", "model", "list", "--json")), &models); err != nil || len(models) != 1 || models[0].ID != "demo/tiny:Q4_K_M" {
			t.Fatalf("%s: hal0 model list through hal0-apid: %+v (%v)", when, models, err)
		}
	}
	kept("before updating")

	// hal0 update from the v2 tarball with the SHA-256 build.sh published
	// for it, then back and forth.
	sum, _, _ := strings.Cut(readHost(t, filepath.Join(dir, tarballName(v2)+".sha256")), " ")
	if out, err := x.try("hal0", "update", "--from", filepath.Join(dist, tarballName(v2)), "--sha256", strings.Repeat("0", 64)); err == nil || !strings.Contains(out+err.Error(), "SHA-256 mismatch") {
		t.Fatalf("hal0 update with a wrong SHA-256: %v\n%s", err, out)
	}
	if got := x.run("ls", "-A", "/usr/lib/hal0"); got != ".update.lock\n"+v1+"\ncurrent" {
		t.Fatalf("/usr/lib/hal0 after a refused update: %q", got)
	}
	out := x.run("hal0", "update", "--from", filepath.Join(dist, tarballName(v2)), "--sha256", sum)
	t.Logf("hal0 update --from %s:\n%s", tarballName(v2), out)
	runs(x, v2, v1)
	kept("after hal0 update")
	t.Logf("hal0 update --rollback:\n%s", x.run("hal0", "update", "--rollback"))
	runs(x, v1, v2)
	kept("after a rollback")
	x.run("hal0", "update", "--rollback")
	runs(x, v2, v1)
	kept("after rolling forward")

	// The packaged upgrade keeps the edited conffile (dpkg asks nothing:
	// the package's own copy did not change) and the token, removes v1's
	// tree, and restarts the daemons on v2.
	t.Logf("dpkg -i %s:\n%s", debName(v2), x.sh(`dpkg --log=/dev/null -i "$1" 2>&1`, filepath.Join(dist, debName(v2))))
	if leftovers := x.sh("ls -A /etc/hal0"); leftovers != "api.env\nhal0.toml\nhf-token\nslots" {
		t.Fatalf("/etc/hal0 after the upgrade: %q", leftovers)
	}
	if _, err := x.try("test", "-e", "/usr/lib/hal0/"+v1); err == nil {
		t.Fatalf("/usr/lib/hal0/%s outlived the upgrade", v1)
	}
	if got := x.run("readlink", "/usr/lib/hal0/current"); got != v2 {
		t.Fatalf("current -> %s after the upgrade", got)
	}
	checkServing(x, unix, tcp, token, v2)
	kept("after the upgrade")
	if got := x.exe("hal0-slotd.service"); got != "/usr/lib/hal0/"+v2+"/bin/hal0-slotd" {
		t.Fatalf("hal0-slotd runs %s after the upgrade", got)
	}
	// The way back went with v1's files; the command says so and changes
	// nothing.
	if out, err := x.try("hal0", "update", "--rollback"); err == nil || !strings.Contains(err.Error(), "previous version "+v1) {
		t.Fatalf("rollback to a removed version: %v\n%s", err, out)
	}

	checkPurge(x)
	if after := hostState(t); after != hostBefore {
		t.Fatalf("the machine's own files changed:\nbefore:\n%s\nafter:\n%s", hostBefore, after)
	}
}

// checkInstalled checks a fresh install of v1 and returns the API token.
func checkInstalled(x *sys, unix, tcp *api) string {
	t := x.t
	t.Helper()
	// The user, from sysusers.d: a system account that cannot log in, in
	// the GPU groups.
	pw := strings.Split(x.run("getent", "passwd", "hal0"), ":")
	if uid, _ := strconv.Atoi(pw[2]); len(pw) != 7 || uid == 0 || uid >= 1000 || pw[5] != "/var/lib/hal0" || !strings.HasSuffix(pw[6], "nologin") {
		t.Fatalf("hal0's passwd entry: %q", pw)
	}
	if groups := strings.Fields(x.run("id", "-nG", "hal0")); !slices.Contains(groups, "render") || !slices.Contains(groups, "video") {
		t.Fatalf("hal0's groups: %v", groups)
	}
	// Directories from tmpfiles.d, the token file from postinst.
	for path, want := range map[string]string{
		"/etc/hal0":                                 "root:root 755",
		"/etc/hal0/hal0.toml":                       "root:root 644",
		"/etc/hal0/api.env":                         "root:hal0 640",
		"/etc/hal0/slots":                           "root:root 755",
		"/var/lib/hal0":                             "hal0:hal0 750",
		"/var/lib/hal0/registry":                    "hal0:hal0 750",
		"/var/lib/hal0/jobs":                        "hal0:hal0 750",
		"/var/lib/hal0/slots":                       "hal0:hal0 750",
		"/mnt/ai-models":                            "root:root 755",
		"/mnt/ai-models/local":                      "hal0:hal0 750",
		"/usr/share/polkit-1/rules.d/60-hal0.rules": "root:root 644",
		"/run/hal0/api.sock":                        "root:hal0 660",
	} {
		if got := x.stat(path); got != want {
			t.Errorf("%s is %s, want %s", path, got, want)
		}
	}
	m := regexp.MustCompile(`(?m)^HAL0_API_TOKEN=([0-9a-f]{64})$`).FindStringSubmatch(x.readFile("/etc/hal0/api.env"))
	if m == nil {
		t.Fatalf("api.env holds no 64-hex-digit token:\n%s", x.readFile("/etc/hal0/api.env"))
	}
	// The versioned tree and the link the units run through.
	if got := x.run("readlink", "/usr/lib/hal0/current"); got != v1 {
		t.Fatalf("current -> %q, want %s", got, v1)
	}
	if got := x.run("readlink", "-f", "/usr/bin/hal0"); got != "/usr/lib/hal0/"+v1+"/bin/hal0" {
		t.Fatalf("/usr/bin/hal0 resolves to %s", got)
	}
	// Enabled and started by postinst: the socket and hal0-slotd; the
	// catalog timer shipped disabled.
	for unit, want := range map[string]string{"hal0-apid.socket": "enabled", "hal0-slotd.service": "enabled", "hal0-catalog.timer": "disabled"} {
		if got, _ := x.try("systemctl", "is-enabled", unit); got != want {
			t.Errorf("%s is %q, want %q", unit, got, want)
		}
	}
	for _, unit := range []string{"hal0-apid.socket", "hal0-slotd.service"} {
		if got, _ := x.try("systemctl", "is-active", unit); got != "active" {
			t.Fatalf("%s is %q after install:\n%s", unit, got, x.run("journalctl", "--no-pager", "-u", unit))
		}
	}
	checkServing(x, unix, tcp, m[1], v1)
	return m[1]
}

// checkServing checks that the socket answers on both listeners, that the
// daemons run as hal0 the binaries of version, and that hal0-apid has the
// token (a TCP change without it is refused as a wrong token, not as "no
// token configured").
func checkServing(x *sys, unix, tcp *api, token, version string) {
	t := x.t
	t.Helper()
	for _, a := range []*api{unix, tcp} {
		if code, body := a.do("GET", "/api/health", ""); code != http.StatusOK {
			t.Fatalf("GET %s/api/health: %d %s", a.base, code, body)
		}
	}
	for _, unit := range []string{"hal0-apid.service", "hal0-slotd.service"} {
		pid := x.prop(unit, "MainPID")
		if owner := x.run("stat", "-c", "%U", "/proc/"+pid); owner != "hal0" {
			t.Errorf("%s runs as %s", unit, owner)
		}
		if got, want := x.exe(unit), "/usr/lib/hal0/"+version+"/bin/"+strings.TrimSuffix(unit, ".service"); got != want {
			t.Errorf("%s runs %s, want %s", unit, got, want)
		}
	}
	const cancel = "/api/models/demo%2Fnone:Q4_K_M/pull/cancel"
	if code, body := tcp.do("POST", cancel, ""); code != http.StatusUnauthorized || !strings.Contains(body, "missing or wrong bearer token") {
		t.Fatalf("a change over TCP without the token: %d %s", code, body)
	}
	if code, body := tcp.do("POST", cancel, token); code == http.StatusUnauthorized {
		t.Fatalf("a change over TCP with api.env's token: %d %s", code, body)
	}
	if cli, apid := versions(x); cli != version || apid != version {
		t.Fatalf("hal0 is %s and hal0-apid %s, want %s for both", cli, apid, version)
	}
}

// runs checks the links and the running daemons after a switch.
func runs(x *sys, current, previous string) {
	t := x.t
	t.Helper()
	if got := x.run("readlink", "/usr/lib/hal0/current"); got != current {
		t.Fatalf("current -> %s, want %s", got, current)
	}
	if got := x.run("readlink", "/usr/lib/hal0/previous"); got != previous {
		t.Fatalf("previous -> %s, want %s", got, previous)
	}
	if got := x.exe("hal0-slotd.service"); got != "/usr/lib/hal0/"+current+"/bin/hal0-slotd" {
		t.Fatalf("hal0-slotd runs %s, want version %s", got, current)
	}
	if cli, apid := versions(x); cli != current || apid != current {
		t.Fatalf("after switching to %s: hal0 is %s, hal0-apid %s", current, cli, apid)
	}
}

// versions returns the versions `hal0 version --json` reports for itself
// and for hal0-apid, which it asks over the unix socket.
func versions(x *sys) (cli, apid string) {
	x.t.Helper()
	var v struct {
		Version string `json:"version"`
		API     struct {
			Version string `json:"version"`
		} `json:"api"`
	}
	out := x.run("hal0", "version", "--json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		x.t.Fatalf("hal0 version --json: %v\n%s", err, out)
	}
	return v.Version, v.API.Version
}

// checkPolkit checks the packaged rule with polkit itself: pkcheck for
// a process of hal0 (hal0-slotd's) and one of another user, then a real
// systemctl call as hal0.
func checkPolkit(x *sys) {
	t := x.t
	t.Helper()
	// polkitd notices new rules by itself, but asynchronously; a restart
	// makes the rule certain for the checks below.
	x.run("systemctl", "restart", "polkit.service")
	hal0 := x.prop("hal0-slotd.service", "MainPID")
	x.run("systemd-run", "--quiet", "--uid=nobody", "--unit=hal0-test-nobody", "sleep", "infinity")
	nobody := x.prop("hal0-test-nobody.service", "MainPID")
	pk := func(pid, unit, verb string) bool {
		_, err := x.try("pkcheck", "--action-id", "org.freedesktop.systemd1.manage-units", "--process", pid,
			"--detail", "unit", unit, "--detail", "verb", verb)
		return err == nil
	}
	for _, c := range []struct {
		pid, unit, verb string
		want            bool
	}{
		{hal0, "hal0-pull@x.service", "start", true},
		{hal0, "hal0-pull@x.service", "stop", true},
		{hal0, "hal0-pull@x.service", "reset-failed", true},
		{hal0, "hal0-slot@a.service", "start", true},
		{hal0, "hal0-slot@a.service", "stop", true},
		{hal0, "hal0-slot@a.service", "reset-failed", true},
		{hal0, "hal0-pull@x.service", "restart", false},
		{hal0, "hal0-slot@a.service", "kill", false},
		{hal0, "hal0-apid.service", "stop", false},
		{hal0, "hal0-slotd.service", "start", false},
		{hal0, "hal0-pull@x.socket", "start", false},
		{hal0, "ssh.service", "start", false},
		{nobody, "hal0-pull@x.service", "start", false},
		{nobody, "hal0-slot@a.service", "stop", false},
	} {
		who := "hal0"
		if c.pid == nobody {
			who = "nobody"
		}
		if got := pk(c.pid, c.unit, c.verb); got != c.want {
			t.Errorf("polkit: %s may %s %s: %v, want %v", who, c.verb, c.unit, got, c.want)
		}
	}
	x.run("systemctl", "stop", "hal0-test-nobody.service")

	// And through systemd, which asks polkit with the same unit and verb.
	asHal0 := []string{"--reuid=hal0", "--regid=hal0", "--init-groups", "systemctl", "--no-ask-password"}
	if out, err := x.try("setpriv", append(asHal0, "stop", "hal0-pull@x.service")...); err != nil {
		t.Errorf("hal0 may not stop hal0-pull@x.service: %v %s", err, out)
	}
	if out, err := x.try("setpriv", append(asHal0, "stop", "hal0-apid.socket")...); err == nil || !strings.Contains(err.Error(), "nteractive authentication required") {
		t.Errorf("hal0 stopping hal0-apid.socket: %v %s, want a refusal", err, out)
	}
	if got, _ := x.try("systemctl", "is-active", "hal0-apid.socket"); got != "active" {
		t.Fatalf("hal0-apid.socket is %s after hal0's refused stop", got)
	}
}

// checkUnitFiles runs systemd-analyze verify on the installed units, with
// the binaries they name installed, and systemd-analyze security on every
// service, with the exposure figures logged.
func checkUnitFiles(x *sys) {
	t := x.t
	t.Helper()
	args := []string{"verify"}
	if _, err := x.try("sh", "-c", "command -v man"); err != nil {
		// verify checks Documentation=man:hal0(1) by running man.
		t.Log("man is not installed here: systemd-analyze verify --man=no")
		args = append(args, "--man=no")
	}
	var services []string
	for _, u := range shippedUnits(t) {
		args = append(args, "/lib/systemd/system/"+u)
		if strings.HasSuffix(u, ".service") {
			// A template is analysed through an instance.
			services = append(services, strings.Replace(u, "@.", "@x.", 1))
		}
	}
	out, err := x.try("sh", append([]string{"-c", `systemd-analyze "$@" 2>&1`, "sh"}, args...)...)
	if err != nil || out != "" {
		t.Errorf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	re := regexp.MustCompile(`Overall exposure level for (\S+): ([0-9.]+) (\S+)`)
	var figures []string
	for unit := range maxExposure {
		if !slices.Contains(services, unit) {
			t.Errorf("%s has an exposure limit but is not shipped", unit)
		}
	}
	for _, unit := range services {
		out := x.sh(`systemd-analyze security --no-pager "$1" 2>&1`, unit)
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s:\n%s", unit, out)
			continue
		}
		score, _ := strconv.ParseFloat(m[2], 64)
		figures = append(figures, fmt.Sprintf("%-22s %s %s", unit, m[2], m[3]))
		limit, ok := maxExposure[unit]
		if !ok {
			limit = defaultMaxExposure
		}
		if score > limit {
			t.Errorf("%s: exposure %.1f, more than the %.1f allowed:\n%s", unit, score, limit, out)
		}
	}
	t.Logf("systemd-analyze security (exposure, lower is better):\n%s", strings.Join(figures, "\n"))
}

// checkCatalog runs the catalog service once, with hal0.toml pointing at
// the test's hub, and checks that it does not fail: a hal0 without the
// catalog command skips it through its ExecCondition=, one with it
// indexes. The timer ships disabled and stays off.
func checkCatalog(x *sys) {
	t := x.t
	t.Helper()
	if got, _ := x.try("systemctl", "is-active", "hal0-catalog.timer"); got != "inactive" {
		t.Fatalf("hal0-catalog.timer is %s: it must stay off until enabled", got)
	}
	out, err := x.try("systemctl", "start", "hal0-catalog.service")
	state, result := x.prop("hal0-catalog.service", "ActiveState"), x.prop("hal0-catalog.service", "Result")
	journal := x.run("journalctl", "--no-pager", "-o", "cat", "-u", "hal0-catalog.service")
	if err != nil || state != "inactive" || result != "success" {
		t.Fatalf("hal0-catalog.service: %s/%s (%v %s)\n%s", state, result, err, out, journal)
	}
	t.Logf("hal0-catalog.service ran to %s/%s:\n%s", state, result, journal)
}

// checkPurge purges the package: everything stops, the package's files,
// the token and the state tree go; the models and the user stay.
func checkPurge(x *sys) {
	t := x.t
	t.Helper()
	t.Logf("dpkg --purge hal0:\n%s", x.sh("dpkg --log=/dev/null --purge hal0 2>&1"))
	for _, p := range []string{"/usr/lib/hal0", "/usr/bin/hal0", "/etc/hal0", "/var/lib/hal0", "/run/hal0/api.sock",
		"/lib/systemd/system/hal0-apid.socket", "/etc/systemd/system/sockets.target.wants/hal0-apid.socket",
		"/etc/systemd/system/multi-user.target.wants/hal0-slotd.service", "/etc/systemd/system/hal0-apid.socket"} {
		if _, err := x.try("test", "-e", p); err == nil {
			t.Errorf("%s outlived the purge", p)
		}
	}
	for _, unit := range []string{"hal0-apid.socket", "hal0-apid.service", "hal0-slotd.service"} {
		if got, _ := x.try("systemctl", "is-active", unit); got == "active" {
			t.Errorf("%s still active after the purge", unit)
		}
	}
	if _, err := x.try("test", "-d", "/mnt/ai-models/local"); err != nil {
		t.Error("the purge removed the model tree")
	}
	if _, err := x.try("getent", "passwd", "hal0"); err != nil {
		t.Error("the purge removed the hal0 user")
	}
}

func readHost(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s %s: %v %s", src, dst, err, out)
	}
}
