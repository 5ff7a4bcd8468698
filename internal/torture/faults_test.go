package torture

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/ref"
)

// TestFaultMatrix runs the real hal0-pull against the hub with one kind of
// network fault per case, once or a few times (the pull must finish with
// correct bytes) or on every request (it must fail with the precise error
// code and a message naming the cause). Never a wrong file at the final
// path, never a registry entry for a failed pull. The pulls use
// pull.max_retries = 2 and pull.stall_timeout = 1s, so that hopeless cases
// give up in seconds.
func TestFaultMatrix(t *testing.T) {
	t.Parallel()
	type fault = hubtest.Fault
	const shard = 1 // which of the three shards the file faults hit
	cases := []struct {
		name   string
		faults func(files []hubtest.File) []fault
		code   string // "" = the pull completes
		words  []string
	}{
		{"reset mid-body (truncated), 3 times", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Where: "cdn", DropAfter: 300000, Times: 3}}
		}, "", nil},
		{"reset before the first byte, 3 times", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Where: "cdn", DropAfter: hubtest.Zero, Times: 3}}
		}, "", nil},
		{"reset before the first byte, always", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Where: "cdn", DropAfter: hubtest.Zero}}
		}, api.CodeNetwork, []string{"giving up", "connection closed"}},
		{"stall, once", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Where: "cdn", StallAt: 1000, StallFor: time.Minute, Times: 1}}
		}, "", nil},
		{"stall after the headers, always", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Where: "cdn", StallAt: hubtest.Zero}}
		}, api.CodeNetwork, []string{"giving up", "stalled"}},
		{"corrupt byte, once", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Where: "cdn", CorruptAt: 1<<20 + 17, Times: 1}}
		}, "", nil},
		{"corrupt byte, always", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Where: "cdn", CorruptAt: 5}}
		}, api.CodeChecksum, []string{"verification"}},
		{"Content-Length larger than the body, 3 times", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Where: "cdn", WrongContentLength: 4 << 20, Times: 3}}
		}, "", nil},
		{"Content-Length smaller than the body, 3 times", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Where: "cdn", WrongContentLength: 1000, Times: 3}}
		}, "", nil},
		{"Content-Length smaller than the body, always", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Where: "cdn", WrongContentLength: 1000}}
		}, api.CodeBadResponse, []string{"Content-Length", "disagrees"}},
		{"no Content-Length (chunked)", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Where: "cdn", NoContentLength: true}}
		}, "", nil},
		{"Range ignored (200, whole file)", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Where: "cdn", IgnoreRange: true}}
		}, "", nil},
		{"429 storm with Retry-After, 4 times", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Status: 429, RetryAfter: 1, Times: 4}}
		}, "", nil},
		{"429, always", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Status: 429}}
		}, api.CodeRateLimited, []string{"429", "rate limiting"}},
		{"503 storm, 6 times", func(f []hubtest.File) []fault {
			return []fault{{Status: 503, Times: 6}}
		}, "", nil},
		{"500, always", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, Status: 500}}
		}, api.CodeNetwork, []string{"500 Internal Server Error"}},
		{"hub API 503 storm, 2 times", func([]hubtest.File) []fault {
			return []fault{{Where: "api", Status: 503, Times: 2}}
		}, "", nil},
		{"hub API 503, always", func([]hubtest.File) []fault {
			return []fault{{Where: "api", Status: 503}}
		}, api.CodeNetwork, []string{"cannot reach", "503"}},
		{"redirect to a dead CDN host, once", func(f []hubtest.File) []fault {
			return []fault{{Path: f[shard].Path, DeadCDN: true, Times: 1}}
		}, "", nil},
		{"redirect to a dead CDN host, always", func([]hubtest.File) []fault {
			return []fault{{DeadCDN: true}}
		}, api.CodeNetwork, []string{"connection refused"}},
	}
	tb := &Table{
		Title:  "network faults through hal0-pull (3 shards of 3 MiB, 1 MiB ranges, 4 connections, max_retries 2, stall_timeout 1s)",
		Header: []string{"fault", "outcome", "exit", "requests", "fired", "served", "time", "error"},
	}
	var mu sync.Mutex
	rows := make([][]any, len(cases))
	t.Cleanup(func() {
		for _, r := range rows {
			if r != nil {
				tb.Add(r...)
			}
		}
		report(t, "fault-matrix", tb)
	})
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hub := newHub(t, hubtest.Options{})
			files := addModel(hub, "torture/f", 3, 3<<20+4321)
			for _, f := range tc.faults(files) {
				hub.AddFault(f)
			}
			home := newHome(t)
			writeFile(t, filepath.Join(home, "etc/hal0/hal0.toml"), "[pull]\nmax_retries = 2\nstall_timeout = \"1s\"\n")
			rf := ref.MustParse("torture/f:Q4_K_M")
			start := time.Now()
			p := startPull(t, baseEnv(home, hub.URL, "HAL0_PULL_CHUNK_SIZE=1MiB", "HAL0_PULL_CONNECTIONS=4"), rf.String())
			exit := p.wait(t, 90*time.Second)
			took := time.Since(start)
			j := jobOf(t, home, rf.String())
			st := hub.Stats()
			outcome := string(j.State)
			if j.ErrorCode != "" {
				outcome += " " + j.ErrorCode
			}
			msg := j.Error
			if len(msg) > 90 {
				msg = msg[:87] + "..."
			}
			mu.Lock()
			rows[i] = []any{tc.name, outcome, exit, st.HubRequests + st.CDNRequests, st.FaultsFired, MiB(st.Bytes), took.Round(10 * time.Millisecond), msg}
			mu.Unlock()
			if st.FaultsFired == 0 {
				t.Errorf("no fault fired: the case tested nothing")
			}
			if tc.code == "" {
				if exit != 0 || j.State != jobs.Completed {
					t.Fatalf("exit %d, job %s %s: %s\n%s", exit, j.State, j.ErrorCode, j.Error, p.out)
				}
				checkInstalled(t, home, rf.String(), files)
				return
			}
			wantExit := api.ExitCode(api.Errorf(tc.code, 0, "x"))
			if exit != wantExit || j.State != jobs.Failed || j.ErrorCode != tc.code {
				t.Fatalf("exit %d, job %s %q (%s); want exit %d, failed %s\n%s", exit, j.State, j.ErrorCode, j.Error, wantExit, tc.code, p.out)
			}
			for _, w := range tc.words {
				if !strings.Contains(j.Error, w) {
					t.Errorf("error %q does not say %q", j.Error, w)
				}
			}
			checkNotInstalled(t, home, rf)
			if j.ExitStatus == nil || *j.ExitStatus != exit {
				t.Errorf("job records exit status %v, the process exited %d", j.ExitStatus, exit)
			}
		})
	}
}
