// Package bench measures hfserve against nginx: both serve the same 4 GiB
// file on loopback to `curl -o /dev/null`, warm page cache, one
// connection, and the report gives both throughputs and their ratio.
//
//	go test -run '^$' -bench HFServeVsNginx -benchtime 1x ./internal/hfserve/bench/
//
// The file is generated once into .bench/hfserve/ at the top of the
// checkout (HFSERVE_BENCH_DIR overrides) and reused. nginx is the Debian
// package; when it is missing and the benchmark runs as root it is
// installed with apt-get, with a policy-rc.d in place for the duration so
// that the package's own service is not started. The benchmark's nginx
// runs in the foreground on a free loopback port with a minimal
// configuration and is stopped afterwards.
//
// Knobs: HFSERVE_BENCH_SIZE (bytes, default 4 GiB), HFSERVE_BENCH_RUNS
// (default 9 rounds, the two servers interleaved; best and median of each,
// and the median of the per-round ratios, are reported). With strace installed, one more hfserve download
// runs under strace to show that the file went out through sendfile(2).
package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/hfserve"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/registry"
)

func envInt(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil && v > 0 {
		return v
	}
	return def
}

func BenchmarkHFServeVsNginx(b *testing.B) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		b.Skip("curl is not installed")
	}
	size := envInt("HFSERVE_BENCH_SIZE", 4<<30)
	runs := int(envInt("HFSERVE_BENCH_RUNS", 9))
	dir := os.Getenv("HFSERVE_BENCH_DIR")
	if dir == "" {
		root, _ := filepath.Abs(filepath.Join("..", "..", ".."))
		dir = filepath.Join(root, ".bench", "hfserve")
	}
	nginx := ensureNginx(b)

	start := time.Now()
	f := hubtest.GenerateGGUFShards(dir, "bench/model", "Q4_K_M", 1, size, 42)[0]
	b.Logf("data: %s (%d bytes) ready in %v", f.DiskPath, size, time.Since(start).Round(time.Millisecond))

	// hfserve over a registry holding that one file, as a pull records it.
	reg := registry.Open(filepath.Join(b.TempDir(), "registry.toml"))
	must(b, reg.Update(context.Background(), func(r *registry.Registry) error {
		r.Put(&registry.Model{ID: "bench/model:Q4_K_M", Path: f.DiskPath, Dir: dir, Source: "hf", HFRepo: "bench/model",
			Revision: "main", Commit: strings.Repeat("b", 40), InstalledAt: time.Now().UTC().Format(time.RFC3339),
			Files: []registry.File{{Path: f.Path, Size: size, SHA256: f.SHA256}}})
		return nil
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(b, err)
	mux := http.NewServeMux()
	mux.Handle("/hf/", hfserve.New(hfserve.Options{Registry: reg}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	hfURL := fmt.Sprintf("http://%s/hf/bench/model/resolve/main/%s", ln.Addr(), f.Path)

	ngURL, stop := startNginx(b, nginx, dir)
	defer stop()
	ngURL += "/" + f.Path

	// Warm the page cache and check both serve the whole file.
	for _, u := range []string{hfURL, ngURL} {
		if n, _ := download(b, curl, u); n != size {
			b.Fatalf("%s: %d bytes, want %d", u, n, size)
		}
	}
	// Rounds interleave the servers, alternating which goes first, so
	// that load from elsewhere on the machine hits both alike; each
	// round's pair also gives one ratio, and the median of those is the
	// figure least moved by such load.
	var hf, ng, pairs []float64
	b.ResetTimer()
	for range b.N {
		for i := range runs {
			var h, n float64
			if i%2 == 0 {
				_, h = download(b, curl, hfURL)
				_, n = download(b, curl, ngURL)
			} else {
				_, n = download(b, curl, ngURL)
				_, h = download(b, curl, hfURL)
			}
			hf, ng, pairs = append(hf, h), append(ng, n), append(pairs, h/n)
		}
	}
	b.StopTimer()
	b.Logf("%d bytes, %d rounds, curl -o /dev/null on loopback (MB/s in run order):", size, len(hf))
	b.Logf("  hfserve  %s", mbs(hf))
	b.Logf("  nginx    %s", mbs(ng))
	sort.Float64s(hf)
	sort.Float64s(ng)
	sort.Float64s(pairs)
	best := func(s []float64) float64 { return s[len(s)-1] }
	med := func(s []float64) float64 { return s[len(s)/2] }
	b.ReportMetric(best(hf)/1e6, "hfserve-best-MB/s")
	b.ReportMetric(best(ng)/1e6, "nginx-best-MB/s")
	b.ReportMetric(med(hf)/1e6, "hfserve-median-MB/s")
	b.ReportMetric(med(ng)/1e6, "nginx-median-MB/s")
	b.ReportMetric(med(pairs), "ratio-paired-median")
	b.Logf("  hfserve  best %7.0f MB/s  median %7.0f MB/s", best(hf)/1e6, med(hf)/1e6)
	b.Logf("  nginx    best %7.0f MB/s  median %7.0f MB/s", best(ng)/1e6, med(ng)/1e6)
	b.Logf("  hfserve/nginx: best %.3f, median %.3f, median of paired rounds %.3f", best(hf)/best(ng), med(hf)/med(ng), med(pairs))

	straceSendfile(b, curl, hfURL, size)
}

func mbs(s []float64) string {
	var out []string
	for _, v := range s {
		out = append(out, fmt.Sprintf("%.0f", v/1e6))
	}
	return strings.Join(out, " ")
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// download fetches u with curl into /dev/null and returns the size and
// curl's own measure of the rate (bytes/s over the transfer).
func download(b *testing.B, curl, u string) (int64, float64) {
	b.Helper()
	out, err := exec.Command(curl, "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{size_download} %{speed_download} %{http_code}", u).Output()
	if err != nil {
		b.Fatalf("curl %s: %v", u, err)
	}
	var n int64
	var rate float64
	var code int
	if _, err := fmt.Sscan(string(out), &n, &rate, &code); err != nil || code != 200 {
		b.Fatalf("curl %s: %q", u, out)
	}
	return n, rate
}

// ensureNginx returns the nginx binary, installing the Debian package
// when it is missing and this runs as root.
func ensureNginx(b *testing.B) string {
	b.Helper()
	find := func() string {
		if p, err := exec.LookPath("nginx"); err == nil {
			return p
		}
		if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			return "/usr/sbin/nginx"
		}
		return ""
	}
	if p := find(); p != "" {
		return p
	}
	if os.Geteuid() != 0 {
		b.Skip("nginx is not installed, and installing it needs root: apt-get install nginx")
	}
	// Debian's policy-rc.d protocol: exit 101 forbids maintainer scripts
	// to start services, so installing nginx does not leave one running
	// on port 80.
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		must(b, os.WriteFile(policy, []byte("#!/bin/sh\n# hal0 hfserve benchmark: installing nginx, do not start services\nexit 101\n"), 0o755))
		defer os.Remove(policy)
	}
	apt := func(args ...string) error {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	b.Log("installing nginx (apt-get install nginx)")
	if err := apt("install", "-y", "-qq", "nginx"); err != nil {
		must(b, apt("update", "-qq"))
		must(b, apt("install", "-y", "-qq", "nginx"))
	}
	if p := find(); p != "" {
		return p
	}
	b.Fatal("nginx installed but not found")
	return ""
}

// startNginx runs nginx in the foreground on a free loopback port serving
// dir, with the settings a file server would use (sendfile on), and
// returns its base URL and a function that stops it.
func startNginx(b *testing.B, nginx, dir string) (string, func()) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(b, err)
	addr := ln.Addr().String()
	ln.Close() // nginx binds it next; nothing else on this box races for it
	prefix := b.TempDir()
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers must read the data wherever it is
	}
	conf := fmt.Sprintf(`%s
worker_processes 1;
daemon off;
master_process on;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 64; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	default_type application/octet-stream;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	server {
		listen %[3]s;
		root %[4]s;
	}
}
`, user, prefix, addr, dir)
	cfg := filepath.Join(prefix, "nginx.conf")
	must(b, os.WriteFile(cfg, []byte(conf), 0o644))
	cmd := exec.Command(nginx, "-p", prefix, "-c", cfg, "-e", filepath.Join(prefix, "error.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(b, cmd.Start())
	stop := func() {
		// SIGQUIT is nginx's graceful stop; only our master gets it.
		cmd.Process.Signal(syscall.SIGQUIT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	base := "http://" + addr
	// Wait until it answers (bounded; a broken config fails fast).
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			log, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			b.Fatalf("nginx did not come up on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return base, stop
}

var (
	straceCall    = regexp.MustCompile(`^(\w+)\(.*\)\s+=\s+(\d+)`)
	straceResumed = regexp.MustCompile(`^<\.\.\. (\w+) resumed>.*=\s+(\d+)`)
)

// straceSendfile downloads the file once more with strace attached to
// this process and reports how many bytes each system call moved. The
// file must go out through sendfile(2); read/write volume stays at the
// size of headers and the 512 bytes net/http copies before switching.
func straceSendfile(b *testing.B, curl, u string, size int64) {
	st, err := exec.LookPath("strace")
	if err != nil {
		b.Log("strace not installed: skipping the sendfile check")
		return
	}
	// -f attaches to every thread of this process, and also follows the
	// curl it starts; -ff writes one file per task so that curl's own
	// writes (to /dev/null) can be told apart from ours.
	dir := b.TempDir()
	cmd := exec.Command(st, "-f", "-ff", "-e", "trace=sendfile,write,writev,pwrite64,read,pread64,readv", "-e", "signal=none",
		"-o", filepath.Join(dir, "t"), "-p", strconv.Itoa(os.Getpid()))
	stderr, err := cmd.StderrPipe()
	must(b, err)
	must(b, cmd.Start())
	// strace says "Process N attached" once it traces us; downloading
	// before that would measure nothing.
	attached := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), "attached") {
				said = true
				attached <- true
			}
		}
		if !said {
			attached <- false
		}
	}()
	if !<-attached {
		cmd.Wait()
		b.Log("strace could not attach (ptrace not permitted here?): skipping the sendfile check")
		return
	}
	download(b, curl, u)
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()

	calls, bytes := map[string]int{}, map[string]int64{}
	files, _ := filepath.Glob(filepath.Join(dir, "t.*"))
	for _, name := range files {
		tid := strings.TrimPrefix(filepath.Ext(name), ".")
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%s", os.Getpid(), tid)); err != nil {
			continue // curl, not one of our threads
		}
		f, err := os.Open(name)
		must(b, err)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			m := straceCall.FindStringSubmatch(sc.Text())
			if m == nil {
				m = straceResumed.FindStringSubmatch(sc.Text())
			}
			if m == nil {
				continue
			}
			n, _ := strconv.ParseInt(m[2], 10, 64)
			kind := m[1]
			switch kind {
			case "writev", "pwrite64":
				kind = "write"
			case "pread64", "readv":
				kind = "read"
			}
			calls[kind]++
			bytes[kind] += n
		}
		f.Close()
	}
	b.Logf("strace of one %d-byte hfserve download, server threads only: sendfile %d calls %d bytes (%.2f%% of the file); write %d calls %d bytes; read %d calls %d bytes",
		size, calls["sendfile"], bytes["sendfile"], 100*float64(bytes["sendfile"])/float64(size),
		calls["write"], bytes["write"], calls["read"], bytes["read"])
	if bytes["sendfile"] < size-512 {
		b.Errorf("only %d of %d bytes went out through sendfile", bytes["sendfile"], size)
	}
}
