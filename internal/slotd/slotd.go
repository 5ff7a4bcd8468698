// Package slotd is hal0-slotd: it drives every configured slot through the
// state machine of package slots (offline → pulling → starting → warming →
// ready, and back) by following systemd's units over D-Bus, and it is the
// main process of each slot unit too (run-slot).
//
// # Contract with hal0-apid (files only)
//
//   - /etc/hal0/slots/<name>.toml: the slot's configuration, read at start.
//   - /var/lib/hal0/slots/<name>/request.json: a load, swap or unload that
//     hal0-apid wrote (slots.WriteRequest). hal0-slotd watches the
//     directory with inotify, applies each request once (by id) and keeps
//     the file; a request it cannot apply is recorded as refused
//     (status.Extra "request") without touching the state.
//   - /var/lib/hal0/slots/<name>/state.json: the slot's status, written by
//     hal0-slotd only, before it acts on a transition. status.Extra holds
//     request_id, request, pull (progress while pulling) and the unit's
//     invocation ids (see the Extra* constants).
//   - /var/lib/hal0/slots/<name>/run.json: what the slot unit must run
//     (RunSpec), written by hal0-slotd before it starts the unit.
//
// # How it follows systemd
//
// One event loop owns all slots (no locks around slot state). Its inputs
// are unit changes from unitwatch (hal0-pull@*.service and
// hal0-slot@*.service), request files from inotify, and results of its own
// goroutines: unit jobs (one queue per slot), health checks and idle
// timers, each tagged with the slot's generation (bumped at every state
// change) so that a result that arrives after the slot moved on is
// dropped. After every resynchronisation (start, bus reconnect,
// daemon-reload) each slot is reconciled with the real state of its units,
// so a restart of hal0-slotd or of dbus at any point resumes where things
// are: a unit job that may not have happened is issued again (they are
// idempotent), a health check is started again, and a unit that ended
// meanwhile moves the slot on. The reducer stays pure; everything here is
// turning observations into its events and its actions into unit jobs.
package slotd

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/sd"
	"github.com/hal0ai/hal0/internal/slots"
	"github.com/hal0ai/hal0/internal/unitname"
	"github.com/hal0ai/hal0/internal/unitwatch"
)

// SlotTemplate is the systemd template each slot runs under.
const SlotTemplate = "hal0-slot@.service"

// Options configure Run.
type Options struct {
	// BusAddress is the system bus; "" means DBUS_SYSTEM_BUS_ADDRESS or
	// the default socket.
	BusAddress string
	// Log receives the daemon's log lines; transitions carry the fields
	// HAL0_SLOT, HAL0_SLOT_STATE and HAL0_MODEL. Default: sd.NewLogger(nil).
	Log *sd.Logger
}

// slot is one configured slot as the event loop knows it.
type slot struct {
	name string
	cfg  *slots.Config
	st   slots.Status // as last saved
	path string       // state.json
	unit string       // hal0-slot@<name>.service
	act  *actor

	// gen is bumped at every state change; goroutines read it to tell
	// whether their work is still wanted.
	gen atomic.Uint64

	// upInv is the last run of the unit seen up (activating, active,
	// deactivating): only a run seen up can be over. systemd assigns a
	// run's id while the unit is still inactive, just before starting it.
	upInv string

	healthCancel context.CancelCauseFunc // the running health check, if any
	healthGen    uint64
	idle         *time.Timer
}

// result is what a goroutine of the daemon reports back to the loop: an
// event for slot, valid while the slot's generation is still gen.
type result struct {
	slot string
	gen  uint64
	ev   slots.Event
}

type daemon struct {
	ctx  context.Context
	cfg  *config.Config
	log  *sd.Logger
	jobs *jobs.Store
	reg  *registry.Store
	bus  *bus
	now  func() time.Time

	slots map[string]*slot
	order []string // slot names, sorted

	// units holds the loaded units matching the patterns, as last
	// reported; resync collects a resynchronisation until its marker.
	units  map[string]unitwatch.Unit
	resync map[string]unitwatch.Unit
	synced bool

	results chan result
	status  string // last STATUS= sent
}

// Run drives the slots until ctx ends. It reports READY=1 once the first
// resynchronisation with systemd is done and pings the watchdog from its
// event loop, so a wedged loop gets the daemon restarted.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d, err := load(ctx, cfg, o)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer func() {
		// Goroutines first: unit jobs in flight must not find the bus
		// connection closed under them and dial a new one.
		cancel()
		wg.Wait()
		d.shutdown()
	}()
	rw, err := watchRequests(filepath.Join(cfg.Paths.StateDir, "slots"), d.order)
	if err != nil {
		return err
	}
	reqs := make(chan string, 16)
	units := make(chan unitwatch.Event, 64)
	w := unitwatch.New(o.BusAddress, "hal0-pull@*.service", "hal0-slot@*.service")
	w.Logf = d.log.Printf
	goes := []func(){
		func() { rw.run(ctx, reqs, d.log.Errorf) },
		func() { w.Run(ctx, units) },
	}
	for _, name := range d.order {
		a := d.slots[name].act
		goes = append(goes, func() { a.run(ctx) })
	}
	for _, f := range goes {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}

	var tick <-chan time.Time
	if iv := sd.Watchdog(); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		tick = t.C
	}
	if len(d.order) == 0 {
		d.log.Printf("hal0-slotd: no enabled slots in %s; following units anyway", cfg.Paths.SlotConfigDir())
	}
	sd.Status("waiting for systemd over D-Bus")
	for {
		select {
		case <-ctx.Done():
			sd.Stopping()
			return nil
		case ev := <-units:
			d.onUnit(ev)
		case name := <-reqs:
			// Before the first resync the states of the units are not
			// known yet; every request is read right after it anyway.
			if d.synced {
				d.onRequest(name)
			}
		case r := <-d.results:
			d.onResult(r)
		case <-tick:
			sd.PingWatchdog()
		}
	}
}

// load reads the slot configs and states.
func load(ctx context.Context, cfg *config.Config, o Options) (*daemon, error) {
	d := &daemon{
		ctx: ctx, cfg: cfg, log: o.Log,
		jobs: jobs.Open(cfg.Paths.JobsDir()), reg: registry.Open(cfg.Paths.RegistryFile()),
		bus: &bus{addr: o.BusAddress}, now: time.Now,
		slots: map[string]*slot{}, units: map[string]unitwatch.Unit{},
		results: make(chan result, 64),
	}
	if d.log == nil {
		d.log = sd.NewLogger(nil)
	}
	cs, err := slots.LoadConfigs(cfg.Paths.SlotConfigDir())
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		name := c.Slot.Name
		if !c.IsEnabled() {
			d.log.Printf("slot %s is disabled (slot.enabled = false); not driving it", name)
			continue
		}
		path := slots.StatePath(cfg.Paths.StateDir, name)
		st, err := slots.LoadStatus(path, name)
		if err != nil {
			// One broken file must not take the other slots down; it is
			// never reset behind the operator's back either.
			d.log.Errorf("slot %s is not driven: %v", name, err)
			continue
		}
		st.Name, st.Port = name, c.Slot.Port
		d.slots[name] = &slot{name: name, cfg: c, st: *st, path: path, unit: unitname.Instance(SlotTemplate, name), act: newActor()}
		d.order = append(d.order, name)
	}
	sort.Strings(d.order)
	return d, nil
}

func (d *daemon) shutdown() {
	for _, sl := range d.slots {
		d.stopHealth(sl)
		d.stopIdle(sl)
	}
	d.bus.close()
}

// post hands a goroutine's result to the event loop.
func (d *daemon) post(r result) {
	select {
	case d.results <- r:
	case <-d.ctx.Done():
	}
}

func (d *daemon) onResult(r result) {
	sl := d.slots[r.slot]
	if sl == nil || sl.gen.Load() != r.gen {
		return // the slot moved on since the work began
	}
	if err := d.apply(sl, r.ev, nil); err != nil {
		d.log.Errorf("slot %s: %s: %v", sl.name, r.ev.Kind, err)
	}
}

// updateStatus sends a STATUS= line summarising every slot.
func (d *daemon) updateStatus() {
	var parts []string
	for _, name := range d.order {
		st := d.slots[name].st
		p := fmt.Sprintf("%s %s", name, st.State)
		if m := st.ModelID; m != "" && st.State != slots.Offline {
			p += " " + m
		}
		if st.Target != "" && st.Target != st.ModelID {
			p += " → " + st.Target
		}
		parts = append(parts, p)
	}
	line := strings.Join(parts, "; ")
	if line == "" {
		line = "no slots configured"
	}
	if line != d.status {
		d.status = line
		sd.Status("%s", line)
	}
}
