package torture

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/apitest"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/livesystemd"
)

// The live tests run the shipped units in a private systemd
// (internal/livesystemd) with as few substitutions as a test machine
// needs: binary paths, a scratch tree instead of /var/lib/hal0 and
// /mnt/ai-models, and the socket's addresses. Unlike the other live
// tests they keep User=hal0 and Group=hal0: a hal0 user exists inside the
// namespace only, through /etc/passwd and /etc/group bind-mounted over
// with copies that add it (the host's files are never touched), and a
// polkit rule lets it start hal0-pull@ units, as the package installs.

const (
	apidService = "hal0-apid.service"
	apidSocket  = "hal0-apid.socket"
	slotdUnit   = "hal0-slotd.service"
)

// liveStack is one booted systemd with hal0's units and a hal0 user.
type liveStack struct {
	s        *livesystemd.System
	hub      *hubtest.Hub
	home     string
	sock     string
	tcp      string
	uid, gid int
	unix     *apitest.Client
	web      *apitest.Client
}

// stackOpts shape a liveStack.
type stackOpts struct {
	hub      hubtest.Options
	config   string // hal0.toml; $HOME stands for the stack's HAL0_HOME
	apiToken string // written to api.env when set
	hfToken  string // written to the hf.token_file when set
	slotd    bool   // also hal0-slotd, hal0-slot@ and a slot "primary" (see soak)
	slotTOML string // the slot's config when slotd
	env      []string
}

// unusedID returns a uid (and gid) free in the host's passwd and group.
func unusedID(t testing.TB) int {
	t.Helper()
	pw, _ := os.ReadFile("/etc/passwd")
	gr, _ := os.ReadFile("/etc/group")
	for id := 64500; id < 65000; id++ {
		s := ":" + strconv.Itoa(id) + ":"
		if !strings.Contains(string(pw), s) && !strings.Contains(string(gr), s) {
			return id
		}
	}
	t.Fatal("no free uid between 64500 and 65000")
	return 0
}

func newStack(t *testing.T, o stackOpts) *liveStack {
	t.Helper()
	if ok, why := livesystemd.Available(); !ok && os.Getenv(livesystemd.EnvRequired) != "1" {
		t.Skipf("live systemd: %s", why)
	}
	hub := newHub(t, o.hub)
	home := newHome(t)
	id := unusedID(t)
	e := &liveStack{hub: hub, home: home, sock: filepath.Join(home, "run/hal0/api.sock"), tcp: fmt.Sprintf("127.0.0.1:%d", freePort(t)), uid: id, gid: id}
	etc := filepath.Join(home, "etc/hal0")
	writeFile(t, filepath.Join(etc, "hal0.toml"), strings.ReplaceAll(o.config, "$HOME", home))
	if o.apiToken != "" {
		writeFile(t, filepath.Join(etc, "api.env"), "HAL0_API_TOKEN="+o.apiToken+"\n")
	}
	if o.hfToken != "" {
		writeFile(t, filepath.Join(etc, "hf-token"), o.hfToken+"\n")
	}
	// What the package does: the tree belongs to hal0, secrets are
	// root:hal0 0640.
	if err := filepath.Walk(home, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, id, id)
	}); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"api.env", "hf-token"} {
		p := filepath.Join(etc, secret)
		if _, err := os.Stat(p); err == nil {
			os.Chown(p, 0, id)
			os.Chmod(p, 0o640)
		}
	}
	env := "Environment=HAL0_HOME=" + home + " HF_ENDPOINT=" + hub.URL + " HAL0_DISK_RESERVE=0 HAL0_PULL_CHUNK_SIZE=1MiB HF_TOKEN_PATH=/dev/null"
	for _, kv := range o.env {
		env += " " + kv
	}
	units := map[string]string{
		apidSocket: substitute(t, apidSocket, map[string]string{
			"ListenStream=/run/hal0/api.sock": "ListenStream=" + e.sock,
			"ListenStream=127.0.0.1:8080":     "ListenStream=" + e.tcp,
		}),
		apidService: substitute(t, apidService, map[string]string{
			"ExecStart=/usr/lib/hal0/current/bin/hal0-apid --runner=systemd": "ExecStart=" + bins.apid + " --runner=systemd",
			"ReadWritePaths=/var/lib/hal0 -/mnt/ai-models":                   "ReadWritePaths=" + home,
			"[Service]": "[Service]\n" + env,
		}),
		"hal0-pull@.service": substitute(t, "hal0-pull@.service", map[string]string{
			"ExecStart=/usr/lib/hal0/current/bin/hal0-pull --runner=systemd -- %I": "ExecStart=" + bins.pull + " --runner=systemd -- %I",
			"ReadWritePaths=/var/lib/hal0 /mnt/ai-models":                          "ReadWritePaths=" + home,
			"EnvironmentFile=-/etc/hal0/pull.env":                                  env,
		}),
	}
	if o.slotd {
		for name, text := range slotdUnits(t, home, env) {
			units[name] = text
		}
		writeFile(t, filepath.Join(etc, "slots", "primary.toml"), o.slotTOML)
		os.Lchown(filepath.Join(etc, "slots"), id, id)
		os.Lchown(filepath.Join(etc, "slots", "primary.toml"), id, id)
	}
	var opts []livesystemd.Option
	for name, text := range units {
		opts = append(opts, livesystemd.WithUnit(name, text))
	}
	e.s = livesystemd.Boot(t, opts...)
	ctx := e.ctx(t)

	// The hal0 user and group, inside the namespace only.
	for _, f := range []struct{ path, line string }{
		{"/etc/passwd", fmt.Sprintf("hal0:x:%d:%d:hal0:/nonexistent:/usr/sbin/nologin\n", id, id)},
		{"/etc/group", fmt.Sprintf("hal0:x:%d:\n", id)},
	} {
		orig, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		cp := filepath.Join(bins.scratch, fmt.Sprintf("%s-%d", filepath.Base(f.path), id))
		if err := os.WriteFile(cp, append(orig, f.line...), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(cp) })
		if out, err := e.s.Run(ctx, "mount", "--bind", cp, f.path); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	// The host's polkit rules hidden, the package's rule in place.
	if out, err := e.s.Run(ctx, "mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/etc/polkit-1/rules.d"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	writeFile(t, e.s.HostPath("/etc/polkit-1/rules.d/60-hal0.rules"), polkitRule)
	e.systemctl(t, "restart", "polkit.service")
	// LoadCredential= and friends need / shared in the namespace (see the
	// apid live tests).
	if out, err := e.s.Run(ctx, "mount", "--make-rshared", "/"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	e.systemctl(t, "start", apidSocket)
	if o.slotd {
		e.systemctl(t, "start", slotdUnit)
	}
	e.unix = apitest.Unix(t, e.sock)
	e.web = apitest.TCP(t, e.tcp)
	return e
}

// polkitRule is the rule the package installs: hal0 may start, stop and
// reset hal0-pull@ units (hal0-apid, hal0-slotd) and hal0-slot@ units
// (hal0-slotd), nothing else (internal/apid's live tests check that
// nothing works without it).
const polkitRule = `polkit.addRule(function(action, subject) {
    if (action.id != "org.freedesktop.systemd1.manage-units" || subject.user != "hal0") {
        return polkit.Result.NOT_HANDLED;
    }
    var unit = action.lookup("unit"), verb = action.lookup("verb");
    if (unit && (unit.indexOf("hal0-pull@") == 0 || unit.indexOf("hal0-slot@") == 0) && unit.slice(-8) == ".service" &&
        ["start", "stop", "reset-failed"].indexOf(verb) >= 0) {
        return polkit.Result.YES;
    }
    return polkit.Result.NOT_HANDLED;
});
`

// substitute is livesystemd.Substitute on a shipped unit named unit.
func substitute(t testing.TB, unit string, repl map[string]string) string {
	t.Helper()
	return livesystemd.Substitute(t, filepath.Join("..", "..", "units", unit), repl)
}

func (e *liveStack) ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *liveStack) systemctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.s.Systemctl(e.ctx(t), args...)
	if err != nil {
		t.Fatalf("systemctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (e *liveStack) prop(t testing.TB, unit, name string) string {
	t.Helper()
	return e.systemctl(t, "show", "-p", name, "--value", unit)
}

// slotdUnits are hal0-slotd, hal0-slot@ and hal0.slice with the same kind
// of substitutions (and the slot's cache in the scratch tree, not in the
// host's /var/cache).
func slotdUnits(t testing.TB, home, env string) map[string]string {
	cache := filepath.Join(home, "cache", "slot-%I")
	return map[string]string{
		"hal0.slice": substitute(t, "hal0.slice", nil),
		slotdUnit: substitute(t, "hal0-slotd.service", map[string]string{
			"ExecStart=/usr/lib/hal0/current/bin/hal0-slotd": "ExecStart=" + bins.slotd,
			"ReadWritePaths=/var/lib/hal0":                   "ReadWritePaths=" + home,
			"[Service]":                                      "[Service]\n" + env,
		}),
		"hal0-slot@.service": substitute(t, "hal0-slot@.service", map[string]string{
			"ExecStart=/usr/lib/hal0/current/bin/hal0-slotd run-slot %I":      "ExecStart=" + bins.slotd + " run-slot %I",
			"CacheDirectory=hal0/slot-%I":                                     "",
			"Environment=HOME=%C/hal0/slot-%I XDG_CACHE_HOME=%C/hal0/slot-%I": "Environment=HOME=" + cache + " XDG_CACHE_HOME=" + cache,
			"[Service]": "[Service]\n" + env,
		}),
	}
}
