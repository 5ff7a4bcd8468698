package apid

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/apitest"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/ref"
)

var (
	loadDuration = flag.Duration("load.duration", 10*time.Second, "BenchmarkStatusLoad: measured time of each run")
	loadRate     = flag.Float64("load.rate", 2000, "BenchmarkStatusLoad: request rate of the open-loop runs")
	loadClients  = flag.Int("load.clients", 16, "BenchmarkStatusLoad: concurrent keep-alive clients")
	loadGzip     = flag.Bool("load.gzip", true, "BenchmarkStatusLoad: send Accept-Encoding: gzip, as Go clients do by default")
	loadPin      = flag.Bool("load.pin", false, "BenchmarkStatusLoad: run hal0-apid on CPU 1 and the load generator on CPU 0 (taskset)")
)

// loadResult is the part of apiload's -json output the benchmark reports.
type loadResult struct {
	Requests   int64            `json:"requests"`
	Errors     int64            `json:"errors"`
	Late       int64            `json:"late"`
	RPS        float64          `json:"rps"`
	P50MS      float64          `json:"p50_ms"`
	P90MS      float64          `json:"p90_ms"`
	P99MS      float64          `json:"p99_ms"`
	MaxMS      float64          `json:"max_ms"`
	SvcP50MS   float64          `json:"svc_p50_ms"`
	SvcP99MS   float64          `json:"svc_p99_ms"`
	ErrorKinds map[string]int64 `json:"error_kinds"`
}

// syncBuffer collects a child's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BenchmarkStatusLoad measures GET /api/models/{id}/pull/status on
// hal0-apid (bound with --listen, pulls as child processes) while four
// pulls run, held by hub stalls so they stay running. apiload generates
// the load from its own process, over the unix socket and over TCP, at a
// fixed rate (open loop, -load.rate) and as fast as answered (closed
// loop). Run it with
//
//	go test ./internal/apid/ -run '^$' -bench StatusLoad -benchtime 1x
//
// and -load.rate, -load.clients, -load.duration or -load.gzip=false to
// vary the load (apiload sends Accept-Encoding: gzip by default, as Go
// clients do). Targets: >= 2000 req/s with p99 < 5 ms and no errors.
// Errors fail the benchmark; the latency figures are reported, not
// asserted.
func BenchmarkStatusLoad(b *testing.B) {
	hub, err := hubtest.New(hubtest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(hub.Close)
	var refs []ref.Ref
	for i := range 4 {
		id := fmt.Sprintf("bench/p%d", i)
		hub.AddRepo(hubtest.Repo{ID: id, Files: hubtest.GenerateGGUFShards("", filepath.Base(id), "Q4_K_M", 1, 4<<20, uint64(i+1))})
		hub.AddFault(hubtest.Fault{Repo: id, StallAt: hubtest.Zero})
		refs = append(refs, ref.MustParse(id+":Q4_K_M"))
	}
	home, err := os.MkdirTemp(bins.scratch, "b")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(home) })
	sock := filepath.Join(home, "api.sock")
	tcp := fmt.Sprintf("127.0.0.1:%d", freePort(b))

	cmd := exec.Command(bins.apid, "--listen", "unix:"+sock+",tcp:"+tcp, "--runner=process", "--pull-bin="+bins.pull)
	if *loadPin {
		// One CPU for hal0-apid (and its workers), the other for the load
		// generator: on a 2-CPU machine they otherwise compete, and p99
		// measures the scheduler more than the API.
		cmd = exec.Command("taskset", append([]string{"-c", "1", bins.apid}, cmd.Args[1:]...)...)
	}
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HAL0_HOME=" + home, "HF_ENDPOINT=" + hub.URL, "HAL0_DISK_RESERVE=0"}
	var apidLog syncBuffer
	cmd.Stdout, cmd.Stderr = &apidLog, &apidLog
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	unix := apitest.Unix(b, sock)
	b.Cleanup(func() { stopProcessAPID(b, cmd, exited, unix, refs, home) })
	unix.WaitListening(exited, 10*time.Second, apidLog.String)
	for _, rf := range refs {
		if st := unix.Pull(rf.String()); st.Runner != "process" {
			b.Fatalf("pull %+v", st)
		}
	}
	for _, rf := range refs {
		unix.WaitPull(rf.String(), "downloading", pullLimit, func(st *api.PullStatus) bool { return st.State == "running" && st.Phase == "downloading" })
	}

	path := apitest.ModelPath(refs[0].String(), "/pull/status")
	for _, via := range []string{"unix", "tcp"} {
		for _, mode := range []string{fmt.Sprintf("rate=%.0f", *loadRate), "closed"} {
			b.Run(via+"/"+mode, func(b *testing.B) {
				args := []string{"-json", "-c", strconv.Itoa(*loadClients), "-d", loadDuration.String(), "-warmup", "1s", "-gzip=" + strconv.FormatBool(*loadGzip)}
				if mode != "closed" {
					args = append(args, "-rate", strconv.FormatFloat(*loadRate, 'f', -1, 64))
				}
				u := "http://" + tcp + path
				if via == "unix" {
					args = append(args, "-unix", sock)
					u = "http://hal0" + path
				}
				var r loadResult
				for b.Loop() {
					r = runLoad(b, append(args, u))
				}
				b.ReportMetric(r.RPS, "req/s")
				b.ReportMetric(r.P50MS, "p50-ms")
				b.ReportMetric(r.P90MS, "p90-ms")
				b.ReportMetric(r.P99MS, "p99-ms")
				b.ReportMetric(r.MaxMS, "max-ms")
				if mode != "closed" {
					b.ReportMetric(r.SvcP50MS, "svc-p50-ms")
					b.ReportMetric(r.SvcP99MS, "svc-p99-ms")
				}
				b.ReportMetric(float64(r.Errors), "errors")
				b.ReportMetric(float64(r.Late), "late")
			})
		}
	}
	// The load must not have disturbed the pulls.
	for _, rf := range refs {
		if st := unix.Status(rf.String()); st.State != "running" {
			b.Errorf("after the load: %+v", st)
		}
	}
}

func runLoad(b *testing.B, args []string) loadResult {
	b.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bins.load, args...)
	if *loadPin {
		cmd = exec.Command("taskset", append([]string{"-c", "0", bins.load}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var r loadResult
	if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil {
		b.Fatalf("apiload %v: %v, %v\n%s%s", args, err, jerr, stdout.String(), stderr.String())
	}
	if r.Errors > 0 || r.Requests == 0 {
		b.Errorf("apiload %v: %d requests, %d errors: %v", args, r.Requests, r.Errors, r.ErrorKinds)
	}
	return r
}

// stopProcessAPID cancels the held pulls through the API (which waits for
// each worker to exit), stops hal0-apid, and kills by pid any worker the
// records still name, should the API not have been reachable.
func stopProcessAPID(b *testing.B, cmd *exec.Cmd, exited <-chan struct{}, c *apitest.Client, refs []ref.Ref, home string) {
	select {
	case <-exited:
	default:
		for _, rf := range refs {
			c.Send(context.Background(), http.MethodPost, apitest.ModelPath(rf.String(), "/pull/cancel"), nil, nil)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			b.Errorf("hal0-apid pid %d ignored SIGTERM for 15 s; killing it", cmd.Process.Pid)
			cmd.Process.Kill()
			<-exited
		}
	}
	all, _ := jobs.Open(config.Default(home).Paths.JobsDir()).List()
	for _, j := range all {
		// Only a live hal0-pull of ours, never a recycled pid.
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", j.PID)); j.PID > 0 && err == nil && exe == bins.pull {
			b.Errorf("worker pid %d of %s outlived its cancel; killing it", j.PID, j.Ref)
			syscall.Kill(j.PID, syscall.SIGKILL)
		}
	}
}
