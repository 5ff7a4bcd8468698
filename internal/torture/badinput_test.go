package torture

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/apitest"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/ref"
)

// TestUnsafeRepoFileNames: a server that lists file names escaping the
// model directory (a bare HTTP server: the test hub refuses to hold such a
// repo) fails the real hal0-pull with pull.unsafe_path before anything is
// downloaded or written, whatever the spelling of the escape.
func TestUnsafeRepoFileNames(t *testing.T) {
	t.Parallel()
	commit := strings.Repeat("cd", 20)
	for _, name := range []string{
		"../escape.gguf",
		"a/../../escape.gguf",
		"/etc/escape.gguf",
		`..\escape.gguf`,
		`a\..\..\escape.gguf`,
		"./../escape.gguf",
		"a/./../../../escape.gguf",
		"",
		"a//../../escape.gguf",
		"nul\x00.gguf",
		"line\nbreak.gguf",
	} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			t.Parallel()
			var downloads atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case strings.Contains(r.URL.Path, "/revision/"):
					fmt.Fprintf(w, `{"id":"evil/repo","sha":%q}`, commit)
				case strings.Contains(r.URL.Path, "/tree/"):
					tree, _ := json.Marshal([]map[string]any{
						{"type": "file", "path": "ok.gguf", "size": 4, "oid": strings.Repeat("1", 40)},
						{"type": "file", "path": name, "size": 4, "oid": strings.Repeat("2", 40)},
					})
					w.Write(tree)
				default:
					downloads.Add(1)
					w.Write([]byte("GGUF"))
				}
			}))
			defer srv.Close()
			home := newHome(t)
			p := startPull(t, baseEnv(home, srv.URL), "evil/repo")
			exit := p.wait(t, 30*time.Second)
			j := jobOf(t, home, "evil/repo")
			if j.ErrorCode != api.CodeUnsafePath || exit != api.ExitFailed {
				t.Fatalf("exit %d, job %s %s: %s\n%s", exit, j.State, j.ErrorCode, j.Error, p.out)
			}
			if !strings.Contains(j.Error, "unsafe file name") {
				t.Errorf("error %q does not name the problem", j.Error)
			}
			if n := downloads.Load(); n != 0 {
				t.Errorf("%d file requests before refusing", n)
			}
			checkNotInstalled(t, home, ref.MustParse("evil/repo"))
			// Nothing was written anywhere under the model root but the
			// staging directory's own tree.
			root := config.Default(home).Paths.ModelRoot
			filepath.Walk(filepath.Dir(root), func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() && strings.Contains(fi.Name(), "escape") {
					t.Errorf("%s was written", p)
				}
				return nil
			})
		})
	}
}

// TestSymlinksInStore plants symlinks that lead out of installed models'
// directories, as a careless operator or another user with write access
// to the store might: `hal0 model verify` must refuse to vouch for a file
// that is a symlink to elsewhere, the /hf/ endpoint must refuse to serve
// it, and deleting the model must remove the links, never what they point
// to (a file, a directory, or the model directory itself being a link).
func TestSymlinksInStore(t *testing.T) {
	t.Parallel()
	hub := newHub(t, hubtest.Options{})
	home := newHome(t)
	env := baseEnv(home, hub.URL, "HAL0_PULL_CHUNK_SIZE=1MiB")
	models := map[string][]hubtest.File{}
	var procs []*pullProc
	for _, id := range []string{"torture/s1", "torture/s2", "torture/s3"} {
		rf := ref.MustParse(id + ":Q4_K_M").String()
		models[rf] = addModel(hub, id, 2, 512<<10)
		procs = append(procs, startPull(t, env, rf))
	}
	for _, p := range procs {
		if code := p.wait(t, 60*time.Second); code != 0 {
			t.Fatalf("pull exited %d:\n%s", code, p.out)
		}
	}
	outside := filepath.Join(home, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	a := startAPID(t, home, env)

	// 1. A model file replaced by a link to an identical copy outside.
	s1 := "torture/s1:Q4_K_M"
	m1 := checkInstalled(t, home, s1, models[s1])
	victim := filepath.Join(m1.Dir, m1.Files[0].Path)
	copyPath := filepath.Join(outside, "copy.gguf")
	data, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, copyPath, string(data))
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(copyPath, victim); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins.cli, "model", "verify", s1, "--json")
	cmd.Env = env
	out, err := cmd.Output()
	var rep struct {
		OK    bool `json:"ok"`
		Files []struct {
			Path, Status, Error string
		} `json:"files"`
	}
	if jerr := json.Unmarshal(out, &rep); jerr != nil || err == nil || rep.OK {
		t.Fatalf("verify of a model whose file links outside: %v, %s", err, out)
	}
	if f := rep.Files[0]; f.Path != m1.Files[0].Path || f.Status == "ok" || !strings.Contains(f.Error, "symlink") {
		t.Errorf("verify says %+v about the link", f)
	}
	code, body := a.web.Request(http.MethodGet, "/hf/torture/s1/resolve/"+m1.Commit+"/"+m1.Files[0].Path, nil, nil)
	if code == http.StatusOK || bytes.Contains(body, data[:64]) || !strings.Contains(string(body), "symlink") {
		t.Errorf("/hf/ served a link that leaves the model directory: %d %.200s", code, body)
	}

	// 2. A link to an outside directory planted inside the model.
	s2 := "torture/s2:Q4_K_M"
	m2 := checkInstalled(t, home, s2, models[s2])
	precious := filepath.Join(outside, "dir", "precious")
	writeFile(t, precious, "keep me")
	if err := os.Symlink(filepath.Dir(precious), filepath.Join(m2.Dir, "escape")); err != nil {
		t.Fatal(err)
	}

	// 3. The model directory itself replaced by a link to a copy outside.
	s3 := "torture/s3:Q4_K_M"
	m3 := checkInstalled(t, home, s3, models[s3])
	moved := filepath.Join(outside, "moved-model")
	if err := os.Rename(m3.Dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(moved, m3.Dir); err != nil {
		t.Fatal(err)
	}

	for _, id := range []string{s1, s2, s3} {
		a.unix.Call(http.MethodDelete, apitest.ModelPath(id, ""), http.StatusOK, nil)
	}
	if b, err := os.ReadFile(copyPath); err != nil || !bytes.Equal(b, data) {
		t.Errorf("deleting s1 touched the file its link pointed to: %v", err)
	}
	if b, err := os.ReadFile(precious); err != nil || string(b) != "keep me" {
		t.Errorf("deleting s2 went through its link: %v", err)
	}
	if ents, err := os.ReadDir(moved); err != nil || len(ents) != len(m3.Files) {
		t.Errorf("deleting s3 emptied the directory its link pointed to: %v, %d entries", err, len(ents))
	}
	for _, m := range []string{m1.Dir, m2.Dir, m3.Dir} {
		if _, err := os.Lstat(m); err == nil {
			t.Errorf("%s is still there after the delete", m)
		}
	}
}

// TestOversizedBodies: request bodies beyond the API's limit get 413 with
// the error envelope on both listeners, and change nothing; oversized
// headers are refused by the HTTP server (431).
func TestOversizedBodies(t *testing.T) {
	t.Parallel()
	hub := newHub(t, hubtest.Options{})
	home := newHome(t)
	const token = "torture-api-token-5d2e"
	writeFile(t, filepath.Join(home, "etc/hal0/api.env"), "HAL0_API_TOKEN="+token+"\n")
	a := startAPID(t, home, baseEnv(home, hub.URL))
	big := `{"include":["` + strings.Repeat("x", 1<<20) + `"]}`
	for _, c := range []struct {
		name   string
		client *apitest.Client
	}{{"unix", a.unix}, {"tcp", a.web}} {
		for _, path := range []string{apitest.ModelPath("torture/big:Q4_K_M", "/pull"), "/api/slots/primary/swap"} {
			code, body := c.client.Request(http.MethodPost, path, strings.NewReader(big), map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"})
			var env api.Envelope
			if code != http.StatusRequestEntityTooLarge || json.Unmarshal(body, &env) != nil || env.Error == nil || env.Error.Code != api.CodeTooLarge {
				t.Errorf("%s POST %s with 1 MiB: %d %.200s", c.name, path, code, body)
			}
		}
		code, _ := c.client.Request(http.MethodGet, "/api/health", nil, map[string]string{"X-Big": strings.Repeat("h", 128<<10)})
		if code != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%s: 128 KiB of headers: %d", c.name, code)
		}
	}
	if all, _ := jobs.Open(config.Default(home).Paths.JobsDir()).List(); len(all) != 0 {
		t.Errorf("an oversized request created jobs: %+v", all)
	}
	if _, err := os.Stat(config.Default(home).Paths.SlotStateDir("primary")); err == nil {
		t.Error("an oversized slot request left state behind")
	}
}

// TestSlowLoris opens slow clients on both of hal0-apid's listeners, each
// sending its request headers one byte a second. The server must cut
// every one of them off (its header timeout is 5 s), while a normal client
// on the same listener, asking at the same time, is answered at once.
func TestSlowLoris(t *testing.T) {
	t.Parallel()
	hub := newHub(t, hubtest.Options{})
	home := newHome(t)
	a := startAPID(t, home, baseEnv(home, hub.URL))
	const headerTimeout = 5 * time.Second // hal0-apid's ReadHeaderTimeout
	slow := pick(10, 50)
	tb := &Table{
		Title:  fmt.Sprintf("slow-loris: %d clients per listener sending one header byte a second", slow),
		Header: []string{"listener", "request", "cut off after (min)", "(max)", "normal client served in"},
	}
	var mu sync.Mutex
	t.Cleanup(func() { report(t, "slow-loris", tb) })
	for _, l := range []struct {
		name    string
		network string
		addr    string
		client  *apitest.Client
	}{{"unix", "unix", a.sock, a.unix}, {"tcp", "tcp", a.tcp, a.web}} {
		for _, kind := range []string{"headers", "body"} {
			if kind == "body" && !full {
				continue // the body timeout is 30 s: HAL0_TORTURE=full only
			}
			t.Run(l.name+" "+kind, func(t *testing.T) {
				t.Parallel()
				limit := headerTimeout
				prefix := "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
				if kind == "body" {
					// Headers complete at once, then the body crawls: the
					// 30 s read timeout must end it.
					limit = 30 * time.Second
					prefix = "POST /api/models/torture%2Fslow/pull HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
				}
				closed := make([]time.Duration, slow)
				var wg sync.WaitGroup
				started := make(chan struct{}, slow)
				var anyClosed atomic.Bool
				for i := range slow {
					c, err := net.Dial(l.network, l.addr)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					begin := time.Now()
					wg.Add(2)
					go func() { // the slow writer
						defer wg.Done()
						if _, err := io.WriteString(c, prefix); err != nil {
							return
						}
						started <- struct{}{}
						tick := time.NewTicker(time.Second)
						defer tick.Stop()
						for range tick.C {
							if _, err := c.Write([]byte("a")); err != nil || time.Since(begin) > limit+10*time.Second {
								return
							}
						}
					}()
					go func() { // the watcher: when does the server hang up?
						defer wg.Done()
						c.SetReadDeadline(begin.Add(limit + 5*time.Second))
						r := bufio.NewReader(c)
						for {
							if _, err := r.ReadByte(); err != nil {
								if ne, ok := err.(net.Error); ok && ne.Timeout() {
									closed[i] = -1
								} else {
									closed[i] = time.Since(begin)
									anyClosed.Store(true)
								}
								c.Close() // ends the writer too
								return
							}
						}
					}()
				}
				for range slow {
					<-started
				}
				// Every slow client holds a connection now: a normal one
				// must still be answered, long before any is cut off.
				t0 := time.Now()
				var h api.Health
				l.client.Call(http.MethodGet, "/api/health", http.StatusOK, &h)
				served := time.Since(t0)
				if anyClosed.Load() {
					t.Errorf("a slow client was cut off before the normal one was served: the test proves nothing")
				}
				wg.Wait()
				var lo, hi time.Duration
				for i, d := range closed {
					if d < 0 {
						t.Errorf("slow client %d still connected %v after it began", i, limit+5*time.Second)
						continue
					}
					if d < limit-time.Second {
						t.Errorf("slow client %d cut off after %v, before the %v timeout: something else closed it", i, d, limit)
					}
					if lo == 0 || d < lo {
						lo = d
					}
					hi = max(hi, d)
				}
				mu.Lock()
				tb.Add(l.name, kind, lo.Round(10*time.Millisecond), hi.Round(10*time.Millisecond), served.Round(100*time.Microsecond))
				mu.Unlock()
			})
		}
	}
}
