package apid

import (
	"bytes"
	"fmt"
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
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
)

// startProcessAPID runs hal0-apid as a plain process (child-process
// runner) on a unix socket for its API and a TCP port for /hf/, and
// returns a client for the socket and the TCP base URL. env adds to its
// environment (and its workers').
func startProcessAPID(t *testing.T, home, endpoint string, env ...string) (*apitest.Client, string) {
	t.Helper()
	sock := filepath.Join(home, "api.sock")
	tcp := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(bins.apid, "--listen", "unix:"+sock+",tcp:"+tcp, "--runner=process", "--pull-bin="+bins.pull)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HAL0_HOME=" + home, "HF_ENDPOINT=" + endpoint, "HAL0_DISK_RESERVE=0", "HF_TOKEN_PATH=/dev/null"}
	cmd.Env = append(cmd.Env, env...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	c := apitest.Unix(t, sock)
	c.WaitListening(exited, 10*time.Second, out.String)
	return c, "http://" + tcp
}

// TestFleetPullsOnce: box B pulls a sharded model from box A's /hf/
// endpoint, which A pulled from the hub; the hub serves it once, and both
// boxes hold identical, verified files. Two real hal0-apid processes on
// loopback, each running real hal0-pull workers.
func TestFleetPullsOnce(t *testing.T) {
	hub, err := hubtest.New(hubtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	files := hubtest.GenerateGGUFShards("", "f", "Q4_K_M", 3, 2<<20, 9)
	hub.AddRepo(hubtest.Repo{ID: "fleet/f", Files: files})
	rf := ref.MustParse("fleet/f:Q4_K_M")

	homeA, homeB := t.TempDir(), t.TempDir()
	a, aURL := startProcessAPID(t, homeA, hub.URL)
	b, _ := startProcessAPID(t, homeB, aURL+"/hf")

	a.Pull(rf.String())
	if st, _ := a.WaitPull(rf.String(), "completed on A", pullLimit, completed); st.ErrorCode != "" {
		t.Fatalf("A: %+v", st)
	}
	hub.ResetStats()
	b.Pull(rf.String())
	stB, _ := b.WaitPull(rf.String(), "completed on B", pullLimit, func(st *api.PullStatus) bool { return st.State != "queued" && st.State != "running" })
	if stB.State != "completed" {
		t.Fatalf("B: %+v", stB)
	}
	if n := hub.Stats().Bytes; n != 0 {
		t.Fatalf("the hub served %d bytes to B's pull; B should pull from A only", n)
	}
	mA := model(t, homeA, rf)
	mB := model(t, homeB, rf)
	if mA.Commit != mB.Commit || len(mA.Files) != len(mB.Files) || mB.Endpoint != aURL+"/hf" {
		t.Fatalf("A %+v\nB %+v", mA, mB)
	}
	for i, f := range mA.Files {
		if mB.Files[i] != f {
			t.Errorf("file %d: A %+v, B %+v", i, f, mB.Files[i])
		}
		da, _ := os.ReadFile(filepath.Join(mA.Dir, f.Path))
		db, _ := os.ReadFile(filepath.Join(mB.Dir, f.Path))
		if len(da) == 0 || !bytes.Equal(da, db) {
			t.Errorf("%s differs between the boxes", f.Path)
		}
	}
}

func model(t *testing.T, home string, rf ref.Ref) *registry.Model {
	t.Helper()
	reg, err := registry.Open(config.Default(home).Paths.RegistryFile()).Load()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := reg.Get(rf.String())
	if !ok {
		t.Fatalf("%s not in the registry of %s", rf, home)
	}
	return m
}
