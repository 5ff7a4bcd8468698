package flm

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/health"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestServeWarms runs the slot's `flm serve <tag>` command lines (host,
// and the toolbox through the podman stand-in, with the cache mount and
// the port published on 127.0.0.1) and checks them the way hal0-slotd
// warms an flm slot: a non-empty /v1/models and a one-token completion.
func TestServeWarms(t *testing.T) {
	for _, runtime := range []string{"host", "podman"} {
		t.Run(runtime, func(t *testing.T) {
			e := newTestEnv(t, runtime)
			if _, err := e.puller(t).Start("qwen3:4b").Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			port := freePort(t)
			c := New(e.cfg).Serve("qwen3:4b", ServeOptions{Port: port, Context: 4096, Name: SlotContainer("npu")})
			cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
			cmd.Env = append(e.environ(), c.Env...)
			out := &strings.Builder{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			chk, err := health.New("flm", fmt.Sprintf("http://127.0.0.1:%d", port), "", nil)
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				err := chk.Check(context.Background())
				if err == nil {
					break
				}
				select {
				case werr := <-exited:
					t.Fatalf("flm serve exited: %v\n%s", werr, out)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("never warm: %v\n%s", err, out)
				}
				time.Sleep(20 * time.Millisecond)
			}
			// systemd's stop: SIGTERM to the unit's main process.
			cmd.Process.Signal(syscall.SIGTERM)
			if err := <-exited; err != nil {
				t.Fatalf("stop: %v\n%s", err, out)
			}
			if runtime == "podman" {
				if ents, _ := os.ReadDir(e.State); len(ents) != 0 {
					t.Errorf("container left: %v", ents)
				}
			}
		})
	}
}

// Without the cache mount, the toolbox's flm has no model to serve: the
// slot's process fails at once instead of warming forever.
func TestServeWithoutCacheMount(t *testing.T) {
	e := newTestEnv(t, "podman")
	if _, err := e.puller(t).Start("qwen3:4b").Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.vars["PODMAN_STANDIN_HOME"] = "/root"
	c := New(e.cfg).Serve("qwen3:4b", ServeOptions{Port: freePort(t), Name: SlotContainer("npu")})
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Env = e.environ()
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "is not downloaded") {
		t.Fatalf("%v\n%s", err, out)
	}
}
