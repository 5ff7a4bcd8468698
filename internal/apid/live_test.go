package apid

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/apitest"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/ref"
)

// The live tests run the shipped hal0-apid.socket, hal0-apid.service and
// hal0-pull@.service in a real, private systemd (internal/livesystemd) and
// talk to hal0-apid the way the CLI and the dashboard do: HTTP over the
// unix socket and over TCP on 127.0.0.1. The units are the real files with
// the substitutions a test machine needs (see liveEnv.units); pulls come from
// an in-process test hub on 127.0.0.1, which the namespace shares.

const (
	apidService = "hal0-apid.service"
	apidSocket  = "hal0-apid.socket"
	shardSize   = 8 << 20
)

// liveEnv is one booted systemd with hal0-apid's units installed and its
// socket listening, plus the hub pulls come from.
type liveEnv struct {
	s    *livesystemd.System
	hub  *hubtest.Hub
	home string // HAL0_HOME of apid and the workers
	sock string // the unix socket, same path inside and outside
	tcp  string // 127.0.0.1:PORT
	unix *apitest.Client
	web  *apitest.Client // TCP, as the dashboard
}

// newLive boots a systemd with the units and starts hal0-apid.socket with
// it (the test's stand-in for WantedBy=sockets.target). idleExit is
// api.idle_exit; extra options add to the boot (drop-ins).
func newLive(t testing.TB, idleExit string, extra ...livesystemd.Option) *liveEnv {
	t.Helper()
	hub, err := hubtest.New(hubtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	home, err := os.MkdirTemp(bins.scratch, "t")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(home, "etc/hal0/hal0.toml"), fmt.Sprintf("[api]\nidle_exit = %q\n", idleExit))
	e := &liveEnv{hub: hub, home: home, sock: filepath.Join(home, "run/hal0/api.sock"), tcp: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	var opts []livesystemd.Option
	for name, text := range e.units(t) {
		opts = append(opts, livesystemd.WithUnit(name, text))
	}
	opts = append(opts, extra...)
	e.s = livesystemd.Boot(t, append(opts, livesystemd.WithBootUnits(apidSocket))...)
	// systemd inside a container (as it believes it is here) leaves /
	// private, and the credentials it prepares for a service in a child
	// mount namespace then never reach the service: LoadCredential= files
	// come out missing. On a host / is shared; make the namespace's so too.
	// Its mounts get peer groups of their own: nothing reaches the host.
	if out, err := e.s.Run(e.ctx(t), "mount", "--make-rshared", "/"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	e.unix = apitest.Unix(t, e.sock)
	e.web = apitest.TCP(t, e.tcp)
	return e
}

// units returns the shipped unit files with the test substitutions: the
// binaries built by TestMain, a scratch HAL0_HOME (also as the only
// writable tree) instead of the FHS paths, the hub as HF_ENDPOINT, the
// socket in the scratch tree (the namespace's /run is its own) and on a
// free TCP port, and no hal0 user or group, which only the package
// creates. A unit that no longer contains a line being replaced fails the
// test, so the tests cannot silently drift from the shipped files.
func (e *liveEnv) units(t testing.TB) map[string]string {
	t.Helper()
	env := fmt.Sprintf("Environment=HAL0_HOME=%s HF_ENDPOINT=%s HAL0_DISK_RESERVE=0 HAL0_PULL_CHUNK_SIZE=1MiB", e.home, e.hub.URL)
	return map[string]string{
		apidSocket: livesystemd.Substitute(t, "../../units/"+apidSocket, map[string]string{
			"ListenStream=/run/hal0/api.sock": "ListenStream=" + e.sock,
			"ListenStream=127.0.0.1:8080":     "ListenStream=" + e.tcp,
			"SocketGroup=hal0":                "",
		}),
		apidService: livesystemd.Substitute(t, "../../units/"+apidService, map[string]string{
			"ExecStart=/usr/lib/hal0/current/bin/hal0-apid --runner=systemd": "ExecStart=" + bins.apid + " --runner=systemd",
			"User=hal0":  "",
			"Group=hal0": "",
			"ReadWritePaths=/var/lib/hal0 -/mnt/ai-models": "ReadWritePaths=" + e.home,
			"[Service]": "[Service]\n" + env,
		}),
		"hal0-pull@.service": livesystemd.Substitute(t, "../../units/hal0-pull@.service", map[string]string{
			"ExecStart=/usr/lib/hal0/current/bin/hal0-pull --runner=systemd -- %I": "ExecStart=" + bins.pull + " --runner=systemd -- %I",
			"User=hal0":  "",
			"Group=hal0": "",
			"ReadWritePaths=/var/lib/hal0 /mnt/ai-models": "ReadWritePaths=" + e.home,
			"EnvironmentFile=-/etc/hal0/pull.env":         env,
		}),
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// addRepo serves org/name with a Q4_K_M quant in n shards of shardSize.
func (e *liveEnv) addRepo(id string, n int) []hubtest.File {
	files := hubtest.GenerateGGUFShards("", filepath.Base(id), "Q4_K_M", n, shardSize, uint64(len(id)))
	return e.hub.AddRepo(hubtest.Repo{ID: id, Files: files}).Files
}

func (e *liveEnv) ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// systemctl runs systemctl in the namespace and fails the test on error.
func (e *liveEnv) systemctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.s.Systemctl(e.ctx(t), args...)
	if err != nil {
		t.Fatalf("systemctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (e *liveEnv) prop(t testing.TB, unit, name string) string {
	t.Helper()
	return e.systemctl(t, "show", "-p", name, "--value", unit)
}

// waitInactive waits for unit to stop on its own and returns its Result.
func (e *liveEnv) waitInactive(t testing.TB, unit string) string {
	t.Helper()
	if st, err := e.s.WaitUnit(e.ctx(t), unit, "inactive", "failed"); err != nil || st != "inactive" {
		t.Fatalf("%s: %v (state %q)\n%s", unit, err, st, e.journal(t, unit))
	}
	return e.prop(t, unit, "Result")
}

func (e *liveEnv) journal(t testing.TB, unit string) string {
	out, err := e.s.Journal(e.ctx(t), "-u", unit, "-o", "cat")
	if err != nil {
		return fmt.Sprintf("(journal: %v)", err)
	}
	return out
}

// pullLimit bounds every wait for a pull's state in these tests: their
// pulls are a few MiB from a hub on loopback.
const pullLimit = 60 * time.Second

func completed(st *api.PullStatus) bool { return st.State == "completed" }

// TestLiveSocketActivation: hal0-apid does not run until a client
// connects, on either listener; it serves both from one process, telling
// them apart (TCP is read-only without a token); it exits cleanly when
// idle and the socket brings it back, with the socket file intact.
func TestLiveSocketActivation(t *testing.T) {
	// The documented opt-in for the bearer token: a credential.
	const token = "hal0-test-token-3b1f6c"
	cred := filepath.Join(bins.scratch, "api-token-"+strings.ReplaceAll(t.Name(), "/", "_"))
	writeFile(t, cred, token+"\n")
	t.Cleanup(func() { os.Remove(cred) })
	e := newLive(t, "2s", livesystemd.WithUnit(apidService+".d/token.conf", "[Service]\nLoadCredential=api-token:"+cred+"\n"))

	if st := e.prop(t, apidService, "ActiveState"); st != "inactive" {
		t.Fatalf("%s is %s before any connection", apidService, st)
	}
	for path, want := range map[string]os.FileMode{e.sock: os.ModeSocket | 0o660, filepath.Dir(e.sock): os.ModeDir | 0o755} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
			t.Fatalf("%s: %v, mode %v, want %v", path, err, fi.Mode(), want)
		}
	}

	// 1. The unix socket starts it.
	var h api.Health
	e.unix.Call(http.MethodGet, "/api/health", http.StatusOK, &h)
	// apid answers before it has connected to systemd; the runner shows
	// up moments later.
	for deadline := time.Now().Add(10 * time.Second); h.Runner == "pending" && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		e.unix.Call(http.MethodGet, "/api/health", http.StatusOK, &h)
	}
	if h.Runner != "systemd" {
		t.Fatalf("health %+v: pulls would not run as units", h)
	}
	first := e.prop(t, apidService, "InvocationID")
	// The same process got both sockets from systemd: TCP answers, and is
	// treated as TCP (changes need the bearer token).
	cancelX := apitest.ModelPath("demo/x:Q4_K_M", "/pull/cancel")
	code, body := e.web.Do(http.MethodPost, cancelX)
	if code != http.StatusUnauthorized || !strings.Contains(string(body), api.CodeUnauthorized) {
		t.Fatalf("POST over TCP without a token: %d %s", code, body)
	}
	// With the token from the credential the request gets through the
	// guard (and finds no job to cancel).
	code, body = e.web.DoAuth(http.MethodPost, cancelX, token)
	if code != http.StatusNotFound || !strings.Contains(string(body), api.CodeJobMissing) {
		t.Fatalf("POST over TCP with the credential's token: %d %s", code, body)
	}
	if j := e.journal(t, apidService); !strings.Contains(j, "unix:"+e.sock) || !strings.Contains(j, "tcp:"+e.tcp) || !strings.Contains(j, "(socket-activated)") {
		t.Fatalf("hal0-apid did not report serving both activated sockets:\n%s", j)
	}

	// 2. Idle: it exits by itself, successfully, and the socket stays.
	if res := e.waitInactive(t, apidService); res != "success" {
		t.Fatalf("idle exit ended with result %q\n%s", res, e.journal(t, apidService))
	}
	if st := e.prop(t, apidSocket, "ActiveState"); st != "active" {
		t.Fatalf("%s is %s after hal0-apid exited", apidSocket, st)
	}

	// 3. TCP starts a new instance.
	e.web.Call(http.MethodGet, "/api/health", http.StatusOK, &h)
	second := e.prop(t, apidService, "InvocationID")
	if second == first {
		t.Fatalf("TCP connection after the idle exit was served without a new activation (invocation %s)", first)
	}
	e.waitInactive(t, apidService)

	// 4. And the unix socket again: hal0-apid closing its copy of the
	// listener must not have removed systemd's socket file.
	e.unix.Call(http.MethodGet, "/api/health", http.StatusOK, &h)
	if third := e.prop(t, apidService, "InvocationID"); third == second || third == first {
		t.Fatalf("no new activation over the unix socket (invocations %s %s %s)", first, second, third)
	}
}

// TestLivePullCompletesAndSurvivesIdleExit: a pull asked for over the API
// runs as a hal0-pull@ unit to completion; hal0-apid then exits when idle,
// and the next connection brings it back with the job still there.
func TestLivePullCompletesAndSurvivesIdleExit(t *testing.T) {
	e := newLive(t, "2s")
	e.addRepo("demo/m", 3)
	rf := ref.MustParse("demo/m:Q4_K_M")

	st := e.unix.Pull(rf.String())
	if st.Runner != "systemd" || st.Unit != rf.Unit() || st.Unit != `hal0-pull@demo-m:Q4_K_M.service` {
		t.Fatalf("pull started as %+v", st)
	}
	// The path escaping the brief and the CLI use: demo%2Fm:Q4_K_M.
	if p := apitest.ModelPath(rf.String(), "/pull"); p != "/api/models/demo%2Fm:Q4_K_M/pull" {
		t.Fatalf("path %s", p)
	}
	st, _ = e.unix.WaitPull(rf.String(), "completed", pullLimit, completed)
	if st.Runner != "systemd" || st.BytesDone != 3*shardSize || st.BytesTotal != 3*shardSize || st.Commit == "" || st.Path == "" {
		t.Fatalf("completed pull %+v", st)
	}
	if res := e.waitInactive(t, rf.Unit()); res != "success" {
		t.Fatalf("%s: result %s", rf.Unit(), res)
	}
	var m struct {
		ID string `json:"id"`
	}
	e.unix.Call(http.MethodGet, apitest.ModelPath(rf.String(), ""), http.StatusOK, &m)
	if m.ID != rf.String() {
		t.Fatalf("registry entry %+v", m)
	}
	before := e.prop(t, apidService, "InvocationID")

	// Idle: nothing in flight, and units do not count as children.
	if res := e.waitInactive(t, apidService); res != "success" {
		t.Fatalf("idle exit: result %s", res)
	}
	after := e.web.Status(rf.String())
	if after.State != "completed" || after.JobID != st.JobID || after.Path != st.Path {
		t.Fatalf("after the idle exit: %+v, want job %s completed", after, st.JobID)
	}
	if e.prop(t, apidService, "InvocationID") == before {
		t.Fatal("status after the idle exit was not served by a new activation")
	}
}

// TestLivePullCancel: a cancel over the API stops the unit; the worker
// records the cancel itself.
func TestLivePullCancel(t *testing.T) {
	e := newLive(t, "2s")
	e.addRepo("demo/c", 1)
	// Hold the pull: the CDN sends headers, then nothing.
	e.hub.AddFault(hubtest.Fault{Repo: "demo/c", StallAt: hubtest.Zero})
	rf := ref.MustParse("demo/c:Q4_K_M")

	e.unix.Pull(rf.String())
	e.unix.WaitPull(rf.String(), "downloading", pullLimit, func(st *api.PullStatus) bool {
		return st.State == "running" && st.Phase == "downloading" && st.UnitState == "active"
	})
	st := e.unix.Cancel(rf.String())
	if st.State != "cancelled" || st.ErrorCode != api.CodeCancelled {
		t.Fatalf("cancel answered %+v", st)
	}
	// The answer came after the unit stopped: the record is final.
	if st := e.unix.Status(rf.String()); st.State != "cancelled" || st.Runner != "systemd" || st.FinishedAt == nil {
		t.Fatalf("status after cancel %+v", st)
	}
	if as := e.prop(t, rf.Unit(), "ActiveState"); as == "active" || as == "activating" || as == "deactivating" {
		t.Fatalf("%s still %s after the cancel", rf.Unit(), as)
	}
}

// TestLiveWorkerKilled: a worker killed with SIGKILL cannot record
// anything; hal0-apid reports the job failed from the unit's state, with
// the journalctl command that shows why, and a new POST resumes from the
// partial data instead of starting over.
func TestLiveWorkerKilled(t *testing.T) {
	e := newLive(t, "2s")
	files := e.addRepo("demo/k", 3)
	var total int64
	for _, f := range files {
		total += f.Size
	}
	// Hold the last shard half way through each of its ranges (1 MiB
	// chunks): two shards complete, the third is partly on disk.
	const stallAt = 512 << 10
	e.hub.AddFault(hubtest.Fault{Repo: "demo/k", Path: files[2].Path, StallAt: stallAt})
	rf := ref.MustParse("demo/k:Q4_K_M")
	unit := rf.Unit()

	e.unix.Pull(rf.String())
	held, _ := e.unix.WaitPull(rf.String(), "two shards and part of the third on disk", pullLimit, func(st *api.PullStatus) bool {
		return st.State == "running" && st.BytesDone >= 2*shardSize+stallAt
	})
	e.systemctl(t, "kill", "-s", "KILL", unit)
	if st, err := e.s.WaitUnit(e.ctx(t), unit, "failed"); err != nil {
		t.Fatalf("%s after SIGKILL: %v (state %s)", unit, err, st)
	}

	st := e.unix.Status(rf.String())
	hint := "journalctl -u " + unit
	if st.State != "failed" || st.ErrorCode != api.CodeWorkerDied || !strings.Contains(st.Error, "signal 9") || !strings.Contains(st.Error, hint) {
		t.Fatalf("status after kill -9: %+v", st)
	}
	// The hint leads somewhere: the journal of that unit says how it died.
	if j := e.journal(t, unit); !strings.Contains(j, "status=9/KILL") {
		t.Fatalf("%s shows nothing about the kill:\n%s", hint, j)
	}

	e.hub.ClearFaults()
	sent := e.hub.Stats().Bytes
	st = e.unix.Pull(rf.String())
	if st.JobID != held.JobID || st.Runner != "systemd" || st.Final() {
		t.Fatalf("resume started as %+v, want job %s again", st, held.JobID)
	}
	st, _ = e.unix.WaitPull(rf.String(), "completed", pullLimit, completed)
	if st.Attempts != 2 || st.BytesDone != total {
		t.Fatalf("resumed pull %+v", st)
	}
	resent := e.hub.Stats().Bytes - sent
	t.Logf("killed at %d of %d bytes; the resume transferred %d bytes", held.BytesDone, total, resent)
	// Less than the total, and less than one shard: the finished shards
	// were kept, and the third resumed inside its ranges.
	if resent >= total || resent >= shardSize {
		t.Fatalf("the resume transferred %d bytes of %d (killed at %d)", resent, total, held.BytesDone)
	}
}

// TestLiveManualPullListed: a pull an operator starts with systemctl is a
// job like any other: GET /api/pulls lists it, and the API can cancel and
// resume it.
func TestLiveManualPullListed(t *testing.T) {
	e := newLive(t, "2s")
	e.addRepo("demo/h", 1)
	e.hub.AddFault(hubtest.Fault{Repo: "demo/h", StallAt: hubtest.Zero})
	rf := ref.MustParse("demo/h:Q4_K_M")

	// Type=notify: systemctl start returns once the worker has taken its
	// job record.
	e.systemctl(t, "start", rf.Unit())
	var list []api.PullStatus
	e.web.Call(http.MethodGet, "/api/pulls", http.StatusOK, &list)
	var found *api.PullStatus
	for i := range list {
		if list[i].ModelID == rf.String() {
			found = &list[i]
		}
	}
	if found == nil || found.State != "running" || found.Runner != "systemd" || found.Unit != rf.Unit() || found.UnitState != "active" {
		t.Fatalf("GET /api/pulls = %+v, want %s running under systemd", list, rf)
	}

	if st := e.unix.Cancel(rf.String()); st.State != "cancelled" || st.JobID != found.JobID {
		t.Fatalf("cancel of the manual pull: %+v", st)
	}
	e.hub.ClearFaults()
	if st := e.unix.Pull(rf.String()); st.JobID == found.JobID || st.Runner != "systemd" {
		// A cancelled job is final: a new POST makes a new job (which
		// resumes the partial data all the same).
		t.Fatalf("pull after cancel %+v", st)
	}
	e.unix.WaitPull(rf.String(), "completed", pullLimit, completed)
}

// BenchmarkLiveColdStart measures the time from connect to the first byte
// of the answer while hal0-apid is not running, i.e. socket activation,
// process start, D-Bus connection and the first request. Run it with
//
//	go test ./internal/apid/ -run '^$' -bench LiveColdStart -benchtime 10x
//
// and read ms-median (ns/op is the mean of the same samples).
// benchSocket lifts the socket unit's trigger limit (20 activations in
// 2 s, after which systemd fails the socket and closes its listeners):
// the benchmark activates hal0-apid back to back on purpose.
var benchSocket = livesystemd.WithUnit(apidSocket+".d/bench.conf", "[Socket]\nTriggerLimitIntervalSec=0\n")

func BenchmarkLiveColdStart(b *testing.B) {
	e := newLive(b, "1h", benchSocket)
	b.Run("unix", func(b *testing.B) { measureColdStart(b, e, "unix", e.sock) })
	b.Run("tcp", func(b *testing.B) { measureColdStart(b, e, "tcp", e.tcp) })
}

// BenchmarkLiveColdStartUnsandboxed is the same measurement with the
// unit's sandboxing turned off, to tell what systemd's namespace and
// seccomp setup costs from what hal0-apid itself costs.
func BenchmarkLiveColdStartUnsandboxed(b *testing.B) {
	e := newLive(b, "1h", benchSocket, livesystemd.WithUnit(apidService+".d/unsandboxed.conf", unsandboxed))
	b.Run("unix", func(b *testing.B) { measureColdStart(b, e, "unix", e.sock) })
	b.Run("tcp", func(b *testing.B) { measureColdStart(b, e, "tcp", e.tcp) })
}

const unsandboxed = `[Service]
ProtectSystem=no
ReadWritePaths=
ProtectHome=no
PrivateTmp=no
PrivateDevices=no
NoNewPrivileges=no
ProtectKernelTunables=no
ProtectKernelModules=no
ProtectKernelLogs=no
ProtectControlGroups=no
ProtectClock=no
ProtectHostname=no
ProtectProc=default
RestrictSUIDSGID=no
RestrictRealtime=no
RestrictNamespaces=no
LockPersonality=no
MemoryDenyWriteExecute=no
SystemCallArchitectures=
SystemCallFilter=
RestrictAddressFamilies=
`

// measureColdStart stops hal0-apid, connects (which starts it again) and
// times connect → first byte of the answer.
func measureColdStart(b *testing.B, e *liveEnv, network, addr string) {
	var samples []time.Duration
	for b.Loop() {
		b.StopTimer()
		e.systemctl(b, "stop", apidService)
		// Back-to-back activations would hit the start limit, which
		// is not what this measures.
		e.systemctl(b, "reset-failed", apidService)
		b.StartTimer()
		start := time.Now()
		c, err := net.Dial(network, addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.WriteString(c, "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"); err != nil {
			b.Fatal(err)
		}
		r := bufio.NewReader(c)
		if _, err := r.Peek(1); err != nil {
			j, _ := e.s.Journal(e.ctx(b), "-o", "cat", "-u", apidService, "-u", apidSocket)
			b.Fatalf("%v\n%s", err, j)
		}
		samples = append(samples, time.Since(start))
		b.StopTimer()
		resp, err := http.ReadResponse(r, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("health after activation: %v %v", err, resp)
		}
		resp.Body.Close()
		c.Close()
		b.StartTimer()
	}
	reportDurations(b, samples)
}

// reportDurations reports the median, minimum and maximum in ms.
func reportDurations(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(s[(len(s)-1)/2]), "ms-median")
	b.ReportMetric(ms(s[0]), "ms-min")
	b.ReportMetric(ms(s[len(s)-1]), "ms-max")
}

// polkitRule lets the hal0 user start, stop and reset hal0-pull@ units
// and nothing else; systemd passes the unit and the verb to polkit (checked
// on systemd 252: "start", "stop", "reset-failed"). The package should
// install it as /usr/share/polkit-1/rules.d/60-hal0.rules with "hal0" for
// the test's stand-in user "nobody".
const polkitRule = `// hal0-apid (User=hal0) runs pulls as hal0-pull@<ref>.service units.
polkit.addRule(function(action, subject) {
    if (action.id != "org.freedesktop.systemd1.manage-units" || subject.user != "nobody") {
        return polkit.Result.NOT_HANDLED;
    }
    var unit = action.lookup("unit"), verb = action.lookup("verb");
    if (unit && unit.indexOf("hal0-pull@") == 0 && unit.slice(-8) == ".service" &&
        ["start", "stop", "reset-failed"].indexOf(verb) >= 0) {
        return polkit.Result.YES;
    }
    return polkit.Result.NOT_HANDLED;
});
`

// TestLiveUnprivilegedNeedsPolkitRule runs hal0-apid and the workers as an
// unprivileged user, as the shipped User=hal0 does. systemd refuses to
// start units for it unless polkit says yes: without a rule the pull fails
// with a message that says so, with polkitRule it runs, and the cancel
// (a stop) works too.
func TestLiveUnprivilegedNeedsPolkitRule(t *testing.T) {
	// The test machine has no hal0 user; nobody stands in for it.
	asNobody := "[Service]\nUser=nobody\nGroup=nogroup\n"
	e := newLive(t, "2s", livesystemd.WithUnit(apidService+".d/user.conf", asNobody), livesystemd.WithUnit("hal0-pull@.service.d/user.conf", asNobody))
	const nobody = 65534
	err := filepath.Walk(e.home, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, nobody, nobody)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Hide the host's local rules behind an empty tmpfs, in the
	// namespace's private mount table only.
	if out, err := e.s.Run(e.ctx(t), "mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/etc/polkit-1/rules.d"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	e.addRepo("demo/u", 1)
	e.hub.AddFault(hubtest.Fault{Repo: "demo/u", StallAt: hubtest.Zero})
	rf := ref.MustParse("demo/u:Q4_K_M")

	st := e.unix.Pull(rf.String())
	if st.State != "failed" || st.ErrorCode != api.CodeWorkerDied || !strings.Contains(st.Error, "Interactive authentication required") {
		t.Fatalf("pull without a polkit rule: %+v", st)
	}

	writeFile(t, e.s.HostPath("/etc/polkit-1/rules.d/60-hal0.rules"), polkitRule)
	// polkitd reloads changed rules by itself, but asynchronously; a
	// restart makes the new rule certain for the next request.
	e.systemctl(t, "restart", "polkit.service")
	st = e.unix.Pull(rf.String())
	e.unix.WaitPull(rf.String(), "downloading", pullLimit, func(st *api.PullStatus) bool { return st.State == "running" && st.Phase == "downloading" })
	var fi syscall.Stat_t
	if err := syscall.Stat(filepath.Join(e.home, "var/lib/hal0/jobs", st.JobID+".json"), &fi); err != nil || fi.Uid != nobody {
		t.Fatalf("job record: %v, owner %d: hal0-apid or the worker did not run as nobody", err, fi.Uid)
	}
	if st := e.unix.Cancel(rf.String()); st.State != "cancelled" {
		t.Fatalf("cancel as nobody: %+v", st)
	}
	e.hub.ClearFaults()
	e.unix.Pull(rf.String())
	e.unix.WaitPull(rf.String(), "completed", pullLimit, completed)
}
