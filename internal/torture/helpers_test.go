package torture

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/apitest"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
)

// newHub starts the in-repo test hub (a real HTTP server and CDN on
// 127.0.0.1), which stands in for huggingface.co: tests may not reach it.
func newHub(t testing.TB, opts hubtest.Options) *hubtest.Hub {
	t.Helper()
	h, err := hubtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// addModel serves id with a Q4_K_M quant in n GGUF shards of size bytes
// and returns the stored files (sizes and hashes filled in).
func addModel(h *hubtest.Hub, id string, n int, size int64) []hubtest.File {
	files := hubtest.GenerateGGUFShards("", filepath.Base(id), "Q4_K_M", n, size, uint64(len(id))*7919+uint64(size))
	return h.AddRepo(hubtest.Repo{ID: id, Files: files}).Files
}

func totalSize(files []hubtest.File) int64 {
	var n int64
	for _, f := range files {
		n += f.Size
	}
	return n
}

// newHome makes a HAL0_HOME under the scratch root (seen by units too).
func newHome(t testing.TB) string {
	t.Helper()
	home, err := os.MkdirTemp(bins.scratch, "home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	return home
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

// baseEnv is the environment of every hal0 process the tests start: a
// HAL0_HOME, the hub, no disk reserve, and no token from the machine
// running the tests.
func baseEnv(home, endpoint string, extra ...string) []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HAL0_HOME=" + home,
		"HF_ENDPOINT=" + endpoint,
		"HAL0_DISK_RESERVE=0",
		"HF_TOKEN_PATH=/dev/null",
		"HF_HOME=" + filepath.Join(home, "hf-home"),
	}, extra...)
}

// pullProc is one hal0-pull process.
type pullProc struct {
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited chan struct{}
}

func startPull(t testing.TB, env []string, rf string) *pullProc {
	t.Helper()
	cmd := exec.Command(bins.pull, "--", rf)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pullProc{cmd: cmd, out: &out, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// wait waits for the process to exit (bounded) and returns its exit code.
func (p *pullProc) wait(t testing.TB, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("hal0-pull still running after %v; output:\n%s", limit, p.out)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *pullProc) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// loadRegistry reads the registry of home.
func loadRegistry(t testing.TB, home string) *registry.Registry {
	t.Helper()
	reg, err := registry.Open(config.Default(home).Paths.RegistryFile()).Load()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// checkInstalled verifies that id is in the registry exactly once with
// the hub's files, and that every byte on disk hashes to the hub's SHA-256.
func checkInstalled(t testing.TB, home, id string, want []hubtest.File) *registry.Model {
	t.Helper()
	reg := loadRegistry(t, home)
	n := 0
	for _, m := range reg.Models {
		if m.ID == id {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("registry has %d entries for %s, want 1", n, id)
	}
	m, _ := reg.Get(id)
	if len(m.Files) != len(want) {
		t.Fatalf("%s: registry lists %d files, want %d", id, len(m.Files), len(want))
	}
	byPath := map[string]hubtest.File{}
	for _, f := range want {
		byPath[f.Path] = f
	}
	for _, rf := range m.Files {
		w, ok := byPath[rf.Path]
		if !ok {
			t.Fatalf("%s: registry lists %s, which the hub does not have", id, rf.Path)
		}
		got := fileSHA256(t, filepath.Join(m.Dir, rf.Path))
		if got != w.SHA256 || rf.SHA256 != w.SHA256 || rf.Size != w.Size {
			t.Fatalf("%s/%s: on disk %s, registry %s (%d bytes), hub %s (%d bytes)", id, rf.Path, got, rf.SHA256, rf.Size, w.SHA256, w.Size)
		}
	}
	return m
}

func fileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkNotInstalled: no registry entry, and nothing under the final name.
func checkNotInstalled(t testing.TB, home string, rf ref.Ref) {
	t.Helper()
	if _, ok := loadRegistry(t, home).Get(rf.String()); ok {
		t.Fatalf("a failed pull left a registry entry for %s", rf)
	}
	dir := filepath.Join(config.Default(home).Paths.PullDir(), rf.Owner(), rf.Name())
	if _, err := os.Stat(dir); err == nil {
		t.Fatalf("a failed pull left files under the final name %s", dir)
	}
}

// jobOf returns the newest job record of a ref.
func jobOf(t testing.TB, home, id string) *jobs.Job {
	t.Helper()
	j, err := jobs.Open(config.Default(home).Paths.JobsDir()).Current(id)
	if err != nil {
		t.Fatalf("job of %s: %v", id, err)
	}
	return j
}

// apidProc is hal0-apid run as a plain process in the embedded mode
// (pulls are child processes), on a unix socket and a TCP port.
type apidProc struct {
	t      testing.TB
	home   string
	env    []string
	sock   string
	tcp    string // 127.0.0.1:PORT
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
	unix   *apitest.Client
	web    *apitest.Client
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

func startAPID(t testing.TB, home string, env []string) *apidProc {
	t.Helper()
	a := &apidProc{t: t, home: home, env: env, sock: filepath.Join(home, "api.sock"), tcp: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		log: filepath.Join(home, "apid.log")}
	a.unix = apitest.Unix(t, a.sock)
	a.web = apitest.TCP(t, a.tcp)
	a.start()
	t.Cleanup(a.stop)
	return a
}

// start runs a new hal0-apid process and waits until its socket answers.
// Its output goes to a file, not a pipe: its workers inherit it and
// outlive a killed apid, and a pipe would hold Wait until they exit.
func (a *apidProc) start() {
	t := a.t
	t.Helper()
	logf, err := os.OpenFile(a.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bins.apid, "--listen", "unix:"+a.sock+",tcp:"+a.tcp, "--runner=process", "--pull-bin="+bins.pull)
	cmd.Env = a.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.cmd, a.exited = cmd, make(chan struct{})
	exited := a.exited
	go func() { cmd.Wait(); close(exited) }()
	a.unix.WaitListening(exited, 15*time.Second, a.logText)
}

// kill9 kills hal0-apid with SIGKILL and waits for it to be gone.
func (a *apidProc) kill9() {
	a.cmd.Process.Kill()
	<-a.exited
}

func (a *apidProc) stop() {
	select {
	case <-a.exited:
		return
	default:
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		a.cmd.Process.Kill()
		<-a.exited
	}
}

func (a *apidProc) logText() string {
	b, _ := os.ReadFile(a.log)
	return string(b)
}

func final(st *api.PullStatus) bool { return st.Final() }

// waitFor polls cond every few milliseconds until it holds or the limit
// passes (then it fails the test with what).
func waitFor(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
