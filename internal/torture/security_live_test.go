package torture

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/apitest"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/ref"
)

// randomToken is a distinctive token: any occurrence of it anywhere is a
// leak, never a coincidence.
func randomToken(t testing.TB, prefix string) string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// procStatus returns the fields of /proc/PID/status.
func procStatus(t testing.TB, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// hostPID maps the pid of a process in the private systemd's pid
// namespace (what systemctl show MainPID says) to its pid on the host,
// through the NSpid line of /proc/PID/status.
func hostPID(t testing.TB, nsPID int, exe string) int {
	t.Helper()
	for _, p := range ProcsNamed(exe) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
				f := strings.Fields(v)
				if len(f) >= 2 && f[len(f)-1] == strconv.Itoa(nsPID) {
					return p
				}
			}
		}
	}
	t.Fatalf("no %s process with pid %d in a namespace", exe, nsPID)
	return 0
}

// TestLiveTokenNeverLeaks pulls a gated model through the real stack
// (socket-activated hal0-apid starting hal0-pull@ units, both as the hal0
// user, the token in hf.token_file) and looks for the token everywhere it
// must not be: every hal0 process's command line and environment while
// the pull runs, the whole journal (journalctl -o export), every job
// record, every API answer on both listeners (lists, status, event
// streams, errors), and the error text of a pull the hub refuses with 401.
// The hub must have received it (else the test proves nothing), the CDN
// never. On the way hal0-apid is killed with SIGKILL mid-pull: the pull
// goes on and finishes under the next hal0-apid. The pull unit runs as
// hal0, with the shipped unit's hardening in force.
func TestLiveTokenNeverLeaks(t *testing.T) {
	t.Parallel()
	hfToken := randomToken(t, "hf_")
	e := newStack(t, stackOpts{
		hub:     hubtest.Options{Token: hfToken},
		config:  "[hf]\ntoken_file = \"$HOME/etc/hal0/hf-token\"\n[api]\nidle_exit = \"1h\"\n",
		hfToken: hfToken,
		env:     []string{"HAL0_STALL_TIMEOUT=2m"},
	})
	gen := hubtest.GenerateGGUFShards("", "gated", "Q4_K_M", 3, 2<<20, 3)
	files := e.hub.AddRepo(hubtest.Repo{ID: "sec/gated", Gated: "manual", Approved: true, Files: gen}).Files
	e.hub.AddRepo(hubtest.Repo{ID: "sec/denied", Files: hubtest.GenerateGGUFShards("", "denied", "Q4_K_M", 1, 1<<20, 4)})
	e.hub.AddFault(hubtest.Fault{Repo: "sec/denied", Where: "api", Status: http.StatusUnauthorized})
	// Hold the last shard half way through each of its 1 MiB ranges.
	e.hub.AddFault(hubtest.Fault{Repo: "sec/gated", Path: files[2].Path, Where: "cdn", StallAt: 512 << 10})
	rf := ref.MustParse("sec/gated:Q4_K_M")
	unit := rf.Unit()

	type capture struct{ where, text string }
	var seen []capture
	grab := func(where string, b []byte) { seen = append(seen, capture{where, string(b)}) }
	api2 := func(c *apitest.Client, name, method, path string) {
		code, b := c.Request(method, path, nil, nil)
		grab(fmt.Sprintf("%s %s %s (%d)", name, method, path, code), b)
	}

	st := e.unix.Pull(rf.String())
	if st.Runner != "systemd" {
		t.Fatalf("pull started as %+v", st)
	}
	e.unix.WaitPull(rf.String(), "held mid-transfer", 60*time.Second, func(st *api.PullStatus) bool {
		return st.State == "running" && st.BytesDone >= 2*(2<<20)+512<<10
	})

	// While it runs: who runs it, how, and what every hal0 process shows.
	nsPID, _ := strconv.Atoi(e.prop(t, unit, "MainPID"))
	if nsPID <= 0 {
		t.Fatalf("%s has no main process", unit)
	}
	pid := hostPID(t, nsPID, "hal0-pull")
	ps := procStatus(t, pid)
	want := fmt.Sprintf("%d\t%d\t%d\t%d", e.uid, e.uid, e.uid, e.uid)
	if ps["Uid"] != want || ps["Gid"] != strings.ReplaceAll(want, strconv.Itoa(e.uid), strconv.Itoa(e.gid)) {
		t.Errorf("the worker runs as uid %q gid %q, want hal0 (%d)", ps["Uid"], ps["Gid"], e.uid)
	}
	for k, v := range map[string]string{"NoNewPrivs": "1", "CapEff": "0000000000000000", "CapBnd": "0000000000000000", "CapPrm": "0000000000000000", "Seccomp": "2"} {
		if ps[k] != v {
			t.Errorf("worker %s = %q, want %q", k, ps[k], v)
		}
	}
	show := e.systemctl(t, "show", unit, "-p", "User", "-p", "Group", "-p", "NoNewPrivileges", "-p", "ProtectSystem", "-p", "ProtectHome",
		"-p", "PrivateTmp", "-p", "PrivateDevices", "-p", "CapabilityBoundingSet", "-p", "RestrictAddressFamilies", "-p", "MemoryDenyWriteExecute",
		"-p", "RestrictNamespaces", "-p", "ProtectKernelModules", "-p", "ProtectControlGroups", "-p", "SystemCallArchitectures", "-p", "LockPersonality")
	for _, w := range []string{"User=hal0", "Group=hal0", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
		"PrivateDevices=yes", "CapabilityBoundingSet=\n", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute=yes",
		"RestrictNamespaces=yes", "ProtectKernelModules=yes", "ProtectControlGroups=yes", "SystemCallArchitectures=native", "LockPersonality=yes"} {
		if !strings.Contains(show+"\n", w) {
			t.Errorf("%s: no %q in\n%s", unit, strings.TrimSpace(w), show)
		}
	}
	procs := ProcsNamed("hal0-apid", "hal0-pull", "hal0-slotd", "hal0")
	found := map[int]bool{}
	for _, p := range procs {
		found[p] = true
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", p, f))
			if err == nil {
				grab(fmt.Sprintf("/proc/%d/%s", p, f), b)
			}
		}
	}
	apidNS, _ := strconv.Atoi(e.prop(t, apidService, "MainPID"))
	apidPID := hostPID(t, apidNS, "hal0-apid")
	if !found[pid] || !found[apidPID] {
		t.Fatalf("the process scan missed the worker (%d) or hal0-apid (%d): %v", pid, apidPID, procs)
	}
	if ps := procStatus(t, apidPID); !strings.HasPrefix(ps["Uid"], strconv.Itoa(e.uid)+"\t") {
		t.Errorf("hal0-apid runs as uid %q, want hal0", ps["Uid"])
	}

	// SIGKILL hal0-apid mid-pull: the unit goes on; the next connection
	// gets a new hal0-apid that still sees it.
	before := e.prop(t, apidService, "InvocationID")
	e.systemctl(t, "kill", "-s", "KILL", apidService)
	if st, err := e.s.WaitUnit(e.ctx(t), apidService, "failed", "activating", "inactive"); err != nil {
		t.Fatalf("hal0-apid after SIGKILL: %v (%s)", err, st)
	}
	if st := e.unix.Status(rf.String()); st.State != "running" || st.JobID == "" || st.UnitState != "active" {
		t.Fatalf("after hal0-apid was killed: %+v", st)
	}
	if e.prop(t, apidService, "InvocationID") == before {
		t.Fatal("the status after the kill came from the killed hal0-apid")
	}

	e.hub.ClearFaults()
	e.hub.AddFault(hubtest.Fault{Repo: "sec/denied", Where: "api", Status: http.StatusUnauthorized})
	e.hub.ReleaseStalls()
	for _, c := range []struct {
		name string
		c    *apitest.Client
	}{{"unix", e.unix}, {"tcp", e.web}} {
		done, raw := c.c.WaitPull(rf.String(), "completed", 60*time.Second, final)
		if done.State != "completed" {
			t.Fatalf("%s: pull ended %+v", c.name, done)
		}
		grab(c.name+" events "+rf.String(), []byte(raw))
	}
	checkInstalled(t, e.home, rf.String(), files)

	// A pull the hub refuses with 401.
	denied := ref.MustParse("sec/denied:Q4_K_M")
	e.unix.Pull(denied.String())
	fail, raw := e.unix.WaitPull(denied.String(), "failed", 60*time.Second, final)
	grab("unix events "+denied.String(), []byte(raw))
	if fail.State != "failed" || fail.ErrorCode != api.CodeAuth || !strings.Contains(fail.Error, "401") {
		t.Fatalf("the refused pull: %+v", fail)
	}

	// Every API answer, on both listeners.
	for _, c := range []struct {
		name string
		c    *apitest.Client
	}{{"unix", e.unix}, {"tcp", e.web}} {
		for _, p := range []string{"/api/pulls", "/api/models", apitest.ModelPath(rf.String(), ""), apitest.ModelPath(rf.String(), "/pull/status"),
			apitest.ModelPath(denied.String(), "/pull/status"), "/api/health", "/api/version", "/api/slots", apitest.ModelPath("sec/none", ""),
			"/hf/api/models/sec/gated", "/hf/api/models/sec/gated/tree/main"} {
			api2(c.c, c.name, http.MethodGet, p)
		}
		api2(c.c, c.name, http.MethodPost, apitest.ModelPath("sec/other:Q4_K_M", "/pull/cancel"))
	}
	// The journal, whole, with every field of every entry.
	j, err := e.s.Journal(e.ctx(t), "-o", "export")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(j, "pull "+rf.String()+" completed") || !strings.Contains(j, "HAL0_JOB_ID=") {
		t.Fatalf("the journal lacks the pull's lines; searched the wrong journal?")
	}
	grab("journalctl -o export", []byte(j))
	// Job records and every other file hal0 wrote.
	paths := config.Default(e.home).Paths
	filepath.Walk(paths.StateDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, err := os.ReadFile(p); err == nil {
				grab(p, b)
			}
		}
		return nil
	})

	// The hub had the token: the test looked for something that exists.
	hubAuth, cdn, cdnAuth := 0, 0, 0
	for _, r := range e.hub.Requests() {
		switch {
		case r.Server == "hub" && r.Authorization == "Bearer "+hfToken:
			hubAuth++
		case r.Server == "cdn":
			cdn++
			if r.Auth {
				cdnAuth++
			}
		}
	}
	if hubAuth == 0 || cdn == 0 {
		t.Fatalf("the hub saw the token %d times and the CDN %d requests: the pull did not use them", hubAuth, cdn)
	}
	if cdnAuth != 0 {
		t.Errorf("%d requests to the CDN host carried Authorization", cdnAuth)
	}

	tb := &Table{Title: "where the HF token was looked for (it must appear nowhere)", Header: []string{"source", "items", "bytes", "token found"}}
	groups := map[string][2]int{}
	var order []string
	for _, c := range seen {
		g := c.where
		switch {
		case strings.HasPrefix(g, "/proc/"):
			g = "/proc/PID/" + filepath.Base(g) + " of hal0 processes"
		case strings.HasPrefix(g, paths.StateDir):
			g = "files under the state dir (job records, registry)"
		case strings.Contains(g, " events "):
			g = "event streams"
		case strings.HasPrefix(g, "unix ") || strings.HasPrefix(g, "tcp "):
			g = "API answers (" + strings.Fields(g)[0] + ")"
		}
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		n := groups[g]
		n[0]++
		n[1] += len(c.text)
		groups[g] = n
		if strings.Contains(c.text, hfToken) {
			t.Errorf("the HF token appears in %s", c.where)
			groups[g+" LEAK"] = n
		}
	}
	for _, g := range order {
		_, leak := groups[g+" LEAK"]
		tb.Add(g, groups[g][0], groups[g][1], leak)
	}
	tb.Note("hub requests with the token: %d; CDN requests: %d, with Authorization: %d", hubAuth, cdn, cdnAuth)
	report(t, "token", tb)
}

// TestLiveTCPGuards tries every route that changes something over TCP
// without the bearer token, with a wrong one and with the token in the
// wrong place: all get 401 with the error envelope and nothing changes (an
// installed model stays, a running pull keeps running, no job or slot
// request appears). A foreign Host (DNS rebinding) or a cross-site Origin
// is refused with 403 even with the right token. With the token, the same
// cancel goes through: the guard is what stopped it.
func TestLiveTCPGuards(t *testing.T) {
	t.Parallel()
	apiToken := randomToken(t, "hal0-api-")
	e := newStack(t, stackOpts{
		config:   "[api]\nidle_exit = \"1h\"\n",
		apiToken: apiToken,
		env:      []string{"HAL0_STALL_TIMEOUT=2m"},
	})
	installed := ref.MustParse("guard/a:Q4_K_M").String()
	running := ref.MustParse("guard/b:Q4_K_M").String()
	filesA := addModel(e.hub, "guard/a", 1, 1<<20)
	addModel(e.hub, "guard/b", 2, 2<<20)
	e.hub.AddFault(hubtest.Fault{Repo: "guard/b", Where: "cdn", StallAt: 256 << 10})
	e.unix.Pull(installed)
	e.unix.WaitPull(installed, "completed", 60*time.Second, final)
	held := e.unix.Pull(running)
	e.unix.WaitPull(running, "running", 60*time.Second, func(st *api.PullStatus) bool { return st.State == "running" && st.BytesDone > 0 })
	jobsBefore, _ := os.ReadDir(config.Default(e.home).Paths.JobsDir())

	mutations := []struct{ method, path, body string }{
		{"POST", apitest.ModelPath("guard/c:Q4_K_M", "/pull"), ""},
		{"POST", apitest.ModelPath("guard/c:Q4_K_M", "/pull"), `{"endpoint":"http://127.0.0.1:1"}`},
		{"POST", apitest.ModelPath(running, "/pull/cancel"), ""},
		{"DELETE", apitest.ModelPath(installed, ""), ""},
		{"POST", "/api/slots/primary/swap", `{"model":"` + installed + `"}`},
		{"POST", "/api/slots/primary/load", `{"model":"` + installed + `"}`},
		{"POST", "/api/slots/primary/unload", ""},
		{"PUT", apitest.ModelPath(installed, ""), "{}"},
		{"PATCH", "/api/pulls", "{}"},
		{"DELETE", "/api/pulls", ""},
		{"POST", "/api/health", ""},
	}
	badAuth := []map[string]string{
		nil,
		{"Authorization": "Bearer wrong-" + apiToken},
		{"Authorization": "Bearer " + apiToken[:len(apiToken)-1]},
		{"Authorization": "bearer " + apiToken},
		{"Authorization": "Basic " + apiToken},
		{"Authorization": apiToken},
		{"X-Api-Token": apiToken},
		{"Cookie": "token=" + apiToken},
	}
	tb := &Table{Title: "mutating requests over TCP without a valid token", Header: []string{"request", "auth variants", "answers"}}
	for _, m := range mutations {
		answers := map[int]int{}
		for _, h := range badAuth {
			code, body := e.web.Request(m.method, m.path, strings.NewReader(m.body), h)
			answers[code]++
			var env api.Envelope
			if code != http.StatusUnauthorized || json.Unmarshal(body, &env) != nil || env.Error == nil || env.Error.Code != api.CodeUnauthorized {
				t.Errorf("%s %s with %v: %d %s", m.method, m.path, h, code, body)
			}
		}
		// Query-string tokens are not tokens either.
		code, _ := e.web.Request(m.method, m.path+"?token="+apiToken+"&access_token="+apiToken, strings.NewReader(m.body), nil)
		answers[code]++
		if code != http.StatusUnauthorized {
			t.Errorf("%s %s with the token in the query: %d", m.method, m.path, code)
		}
		tb.Add(m.method+" "+m.path, len(badAuth)+1, fmt.Sprint(answers))
	}
	good := map[string]string{"Authorization": "Bearer " + apiToken}
	for _, h := range []map[string]string{
		{"Host": "evil.example:8080"},
		{"Host": "127.0.0.1.evil.example"},
		{"Origin": "http://evil.example"},
		{"Origin": "http://localhost:1"},
	} {
		label := fmt.Sprint(h)
		for k, v := range good {
			h[k] = v
		}
		code, body := e.web.Request("POST", apitest.ModelPath(running, "/pull/cancel"), nil, h)
		if code != http.StatusForbidden || !strings.Contains(string(body), api.CodeForbidden) {
			t.Errorf("cancel with the token and %v: %d %s", h, code, body)
		}
		tb.Add("POST cancel, right token, "+label, 1, code)
	}

	// Nothing changed.
	if st := e.unix.Status(running); st.State != "running" || st.JobID != held.JobID {
		t.Fatalf("the held pull after the attempts: %+v", st)
	}
	checkInstalled(t, e.home, installed, filesA)
	if jobsAfter, _ := os.ReadDir(config.Default(e.home).Paths.JobsDir()); len(jobsAfter) != len(jobsBefore) {
		t.Errorf("job records went from %d to %d", len(jobsBefore), len(jobsAfter))
	}
	if _, err := os.Stat(config.Default(e.home).Paths.SlotStateDir("primary")); err == nil {
		t.Error("a slot request was recorded")
	}
	// The positive control: the right token, the right host, goes through.
	code, body := e.web.Request("POST", apitest.ModelPath(running, "/pull/cancel"), nil, good)
	if code != http.StatusOK || !strings.Contains(string(body), `"cancelled"`) {
		t.Fatalf("cancel with the token: %d %s", code, body)
	}
	report(t, "tcp-guards", tb)
}
