package runner

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/sdbus"
)

// countingSD is the real D-Bus client, counting the unit reads that reach
// systemd.
type countingSD struct {
	sdbus.Systemd
	reads atomic.Int64
}

func (c *countingSD) Unit(ctx context.Context, name string) (sdbus.UnitState, error) {
	c.reads.Add(1)
	return c.Systemd.Unit(ctx, name)
}

// TestLiveStateCache runs a template instance in a real systemd: polls
// within StateTTL are answered without asking systemd, a Stop is seen at
// once (it forgets the entry), and a change systemd makes on its own (the
// worker exiting) is seen once the entry is older than StateTTL.
func TestLiveStateCache(t *testing.T) {
	s := livesystemd.Boot(t, livesystemd.WithUnit("hal0-pull@.service",
		"[Service]\nExecStart=/bin/sh -c 'test -e /run/exit-now || exec sleep 300'\nRestart=no\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bus, err := sdbus.DialAddress(ctx, s.BusAddress)
	if err != nil {
		t.Fatal(err)
	}
	sd := &countingSD{Systemd: bus}
	r := &Systemd{SD: sd, StateTTL: time.Hour}
	defer r.Close()
	j := &jobs.Job{ID: "0123456789abcdef", Unit: "hal0-pull@demo-m:Q4.service"}

	if err := r.Start(ctx, j); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		st, err := r.State(ctx, j)
		if err != nil || !st.Active {
			t.Fatalf("state of a running unit: %+v %v", st, err)
		}
	}
	if n := sd.reads.Load(); n != 1 {
		t.Errorf("100 polls within the TTL read the unit %d times, want 1", n)
	}
	if err := r.Stop(ctx, j); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.State(ctx, j); st.Active {
		t.Errorf("state right after Stop: %+v, want inactive", st)
	}

	// A change behind the runner's back: with a short TTL it shows.
	r.StateTTL = 50 * time.Millisecond
	if out, err := s.Run(ctx, "touch", "/run/exit-now"); err != nil {
		t.Fatal(out, err)
	}
	if err := r.Start(ctx, j); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := r.State(ctx, j)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Active {
			break // the instance ran `test`, which exited 0 at once
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the unit's exit never showed: %+v", st)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
