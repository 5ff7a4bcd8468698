// Command e2ehelper runs the Go parts of the dashboard's browser tests
// (internal/dashboard/e2e). The Node test runner builds it with go build
// and starts it in three roles:
//
//	e2ehelper hub
//	    The test hub (internal/hubtest) on 127.0.0.1 with the repos the
//	    tests pull: e2e/tiny-GGUF and e2e/spare-GGUF (pull at full speed;
//	    spare is the one the removal test deletes), e2e/stall-GGUF
//	    (every download stalls after StallBytes, so a pull of it stays
//	    running until it is cancelled) and e2e/gated-GGUF (gated, so a pull
//	    without a token fails with pull.gated); and, for the catalog, the
//	    org lab: lab/notes-GGUF, lab/disk-GGUF (small, imported as a qcow2
//	    image) and lab/embed (safetensors, feature-extraction). Every repo
//	    carries listing metadata (see hubRepos). hubtest.Main's flags have
//	    no faults, hence this command. Prints "HUB_URL=…" and serves until
//	    SIGTERM.
//
//	e2ehelper front --api http://127.0.0.1:PORT
//	    The dashboard (dashboard.Handler) at / and a reverse proxy of /api/
//	    to a running hal0-apid, all on one origin, as it will be once
//	    apiserver mounts the dashboard itself. The proxy keeps the
//	    browser's Host header, so hal0-apid's own guards (Host, Origin,
//	    bearer token) judge the browser's requests as they would without
//	    the proxy. Prints "FRONT_URL=…".
//
//	e2ehelper slotd --slot NAME
//	    A stand-in for hal0-slotd, for one slot under $HAL0_HOME: the real
//	    hal0-slotd follows systemd units over D-Bus, which a browser test
//	    does not have (its live tests boot a private systemd). This one
//	    writes the same files with the same state machine (slots.Reduce
//	    and slots.SaveStatus), but each step is ordered by the test on
//	    stdin, so the test can watch every state reach the page:
//	        ready MODEL    write state.json: the slot serves MODEL
//	        take           wait for a new request.json, apply it as
//	                       hal0-slotd does, and record its id
//	        event KIND     apply an observation: unit-gone, unit-active,
//	                       healthy, unhealthy, pull-done, pull-failed
//	    Each command answers one JSON line: {"status": …} or {"error": …}.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/dashboard"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/slots"
)

// Sizes of the generated repos: big enough that a pull takes more than one
// progress event, small enough to keep the suite quick.
const (
	ShardSize  = 4 << 20
	Shards     = 3
	StallBytes = 512 << 10
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: e2ehelper hub | front --api URL | slotd --slot NAME")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "hub":
		err = runHub(ctx)
	case "front":
		err = runFront(ctx, os.Args[2:])
	case "slotd":
		err = runSlotd(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown role %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2ehelper:", err)
		os.Exit(1)
	}
}

func runHub(ctx context.Context) error {
	hub, err := hubtest.New(hubtest.Options{})
	if err != nil {
		return err
	}
	defer hub.Close()
	for _, r := range hubRepos() {
		hub.AddRepo(r)
	}
	// No StallFor: each download of the stall repo's files holds until the
	// client gives up or the hub closes, so the pull's progress stays put
	// wherever the test looks at it.
	hub.AddFault(hubtest.Fault{Repo: "e2e/stall-GGUF", StallAt: StallBytes})
	fmt.Printf("HUB_URL=%s\n", hub.URL)
	<-ctx.Done()
	return nil
}

// hubRepos are the repos of the test hub. Their listing metadata (task,
// downloads, likes, last modification, license, gating, a chat template
// in the hub's summary) is what `hal0 catalog index` of the orgs e2e and
// lab turns into the catalog the Catalog view shows; the numbers are
// chosen so that each sort gives a different order (see
// dashboard.test.mjs). The catalog is indexed without --full: the stall
// repo's files must never be read by anything but the pull that the test
// cancels.
func hubRepos() []hubtest.Repo {
	day := func(month, d int) time.Time { return time.Date(2025, time.Month(month), d, 12, 0, 0, 0, time.UTC) }
	chat := map[string]any{"gguf": map[string]any{"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}}
	gguf := func(id, name string, seed uint64, shards int, shardSize int64) hubtest.Repo {
		return hubtest.Repo{
			ID:          id,
			Files:       hubtest.GenerateGGUFShards("", "Q4_K_M/"+name, "Q4_K_M", shards, shardSize, seed),
			PipelineTag: "text-generation", License: "apache-2.0",
		}
	}
	tiny := gguf("e2e/tiny-GGUF", "tiny", 1, Shards, ShardSize)
	tiny.Downloads, tiny.Likes, tiny.LastModified, tiny.Extra = 5000, 40, day(3, 1), chat
	spare := gguf("e2e/spare-GGUF", "spare", 4, Shards, ShardSize)
	spare.Downloads, spare.Likes, spare.LastModified = 300, 2, day(1, 15)
	stall := gguf("e2e/stall-GGUF", "stall", 2, Shards, ShardSize)
	stall.Downloads, stall.Likes, stall.LastModified = 150, 1, day(1, 10)
	gated := gguf("e2e/gated-GGUF", "gated", 3, Shards, ShardSize)
	gated.Gated, gated.License = "manual", "llama3.1"
	gated.Downloads, gated.Likes, gated.LastModified, gated.Extra = 2000, 90, day(4, 1), chat
	// The lab org is not certified (hal0.toml certifies e2e only).
	notes := gguf("lab/notes-GGUF", "notes", 5, Shards, ShardSize)
	notes.License = "mit"
	notes.Downloads, notes.Likes, notes.LastModified, notes.Extra = 800, 120, day(5, 20), chat
	disk := gguf("lab/disk-GGUF", "disk", 6, 2, 1<<20)
	disk.Downloads, disk.Likes, disk.LastModified = 60, 8, day(2, 1)
	embed := hubtest.Repo{
		ID: "lab/embed", Files: hubtest.GenerateSafetensorsShards("", 1, 1<<20, 7),
		PipelineTag: "feature-extraction", License: "apache-2.0",
		Downloads: 1200, Likes: 15, LastModified: day(6, 1),
	}
	return []hubtest.Repo{tiny, spare, stall, gated, notes, disk, embed}
}

func runFront(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("front", flag.ContinueOnError)
	apiURL := fs.String("api", "", "hal0-apid's TCP URL, http://127.0.0.1:PORT")
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	target, err := url.Parse(*apiURL)
	if err != nil || target.Scheme != "http" || target.Host == "" {
		return fmt.Errorf("--api %q: want http://127.0.0.1:PORT", *apiURL)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		// Event streams are flushed as they come by ReverseProxy itself
		// (text/event-stream); this keeps other replies prompt too.
		FlushInterval: -1,
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", proxy)
	mux.Handle("/", dashboard.Handler())
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Printf("FRONT_URL=http://%s\n", l.Addr())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// standin is the hal0-slotd stand-in's state: one slot.
type standin struct {
	name     string
	state    string // state.json
	request  string // request.json
	registry *registry.Store
}

func runSlotd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("slotd", flag.ContinueOnError)
	name := fs.String("slot", "", "slot name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("--slot is required")
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	s := &standin{
		name:     *name,
		state:    slots.StatePath(cfg.Paths.StateDir, *name),
		request:  slots.RequestPath(cfg.Paths.StateDir, *name),
		registry: registry.Open(cfg.Paths.RegistryFile()),
	}
	in := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		st, err := s.do(ctx, strings.Fields(in.Text()))
		if err != nil {
			out.Encode(map[string]string{"error": err.Error()})
			continue
		}
		out.Encode(map[string]any{"status": st})
	}
	return in.Err()
}

func (s *standin) do(ctx context.Context, cmd []string) (*slots.Status, error) {
	if len(cmd) == 0 {
		return nil, errors.New("empty command")
	}
	now := time.Now()
	switch {
	case cmd[0] == "ready" && len(cmd) == 2:
		model, err := canonical(cmd[1])
		if err != nil {
			return nil, err
		}
		st := &slots.Status{Name: s.name, State: slots.Ready, ModelID: model, Message: "serving " + model,
			UpdatedAt: float64(now.UnixNano()) / 1e9, Extra: map[string]any{}}
		return st, slots.SaveStatus(s.state, st)
	case cmd[0] == "take" && len(cmd) == 1:
		return s.take(ctx)
	case cmd[0] == "event" && len(cmd) == 2:
		st, err := slots.LoadStatus(s.state, s.name)
		if err != nil {
			return nil, err
		}
		ev := slots.Event{Kind: slots.EventKind(cmd[1]), Model: st.Target, Message: "stand-in: " + cmd[1]}
		if ev.Installed, err = s.installed(st.Target); err != nil {
			return nil, err
		}
		return s.apply(st, ev, nil)
	}
	return nil, fmt.Errorf("unknown command %q", strings.Join(cmd, " "))
}

// take waits for a request.json that has not been applied yet and applies
// it as hal0-slotd's onRequest does: the reducer decides, and the request's
// id and outcome go into extra so hal0-apid stops reporting it pending.
func (s *standin) take(ctx context.Context) (*slots.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// hal0-slotd is told by inotify; polling the small file does the same
	// job for one test slot.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := slots.LoadStatus(s.state, s.name)
		if err != nil {
			return nil, err
		}
		r, err := slots.ReadRequest(s.request)
		if err != nil {
			return nil, err
		}
		if applied, _ := st.Extra["request_id"].(string); r != nil && r.ID != applied {
			return s.applyRequest(st, r)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, fmt.Errorf("no new request in %s: %w", s.request, ctx.Err())
		}
	}
}

func (s *standin) applyRequest(st *slots.Status, r *slots.Request) (*slots.Status, error) {
	out := api.SlotRequestOutcome{ID: r.ID, Kind: string(r.Kind), Model: r.Model, Outcome: "applied", At: time.Now().UTC()}
	ev := slots.Event{Kind: r.Kind}
	if r.Kind != slots.EvUnload {
		model, err := canonical(r.Model)
		if err != nil {
			return nil, err
		}
		ev.Model = model
		if ev.Installed, err = s.installed(model); err != nil {
			return nil, err
		}
	}
	record := func(x *slots.Status) {
		if x.Extra == nil {
			x.Extra = map[string]any{}
		}
		x.Extra["request_id"] = r.ID
		x.Extra["request"] = out
	}
	next, err := s.apply(st, ev, record)
	var ie *slots.IllegalTransitionError
	if errors.As(err, &ie) {
		out.Outcome, out.Error = "refused", err.Error()
		record(st)
		return st, slots.SaveStatus(s.state, st)
	}
	return next, err
}

func (s *standin) apply(st *slots.Status, ev slots.Event, edit func(*slots.Status)) (*slots.Status, error) {
	next, _, err := slots.Reduce(*st, ev, time.Now())
	if err != nil {
		return nil, err
	}
	// Reduce copies the struct, not the map: give the new state its own.
	extra := map[string]any{}
	for k, v := range st.Extra {
		extra[k] = v
	}
	next.Extra = extra
	if edit != nil {
		edit(&next)
	}
	return &next, slots.SaveStatus(s.state, &next)
}

func (s *standin) installed(model string) (bool, error) {
	if model == "" {
		return false, nil
	}
	reg, err := s.registry.Load()
	if err != nil {
		return false, err
	}
	_, ok := reg.Get(model)
	return ok, nil
}

func canonical(model string) (string, error) {
	rf, err := ref.Parse(model)
	if err != nil {
		return "", err
	}
	return rf.String(), nil
}
