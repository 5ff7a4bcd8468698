package journal

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/livesystemd"
)

// TestLiveJournal reads a unit's lines from the journal of a real systemd
// (booted in a private namespace; its journal files are read from the host
// with --directory), then follows it while the unit logs again.
func TestLiveJournal(t *testing.T) {
	const unit = "hal0-logs@a.service"
	s := livesystemd.Boot(t, livesystemd.WithUnit("hal0-logs@.service",
		"[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo \"run $$RUN of %i\"; echo \"to stderr\" >&2; printf \"\\\\377bin\\\\n\"'\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// livesystemd keeps that journal volatile, in the namespace's /run.
	r := &Reader{Dir: s.HostPath("/run/log/journal")}
	start := func(run string) {
		t.Helper()
		if out, err := s.Systemctl(ctx, "set-environment", "RUN="+run); err != nil {
			t.Fatal(out, err)
		}
		if out, err := s.Systemctl(ctx, "start", unit); err != nil {
			t.Fatal(out, err)
		}
		if out, err := s.Run(ctx, "journalctl", "--sync"); err != nil {
			t.Fatal(out, err)
		}
	}
	start("1")
	got, err := r.Tail(ctx, Query{Unit: unit})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range got {
		msgs = append(msgs, e.Message)
	}
	all := strings.Join(msgs, "|")
	for _, want := range []string{"run 1 of a", "to stderr", "\uFFFDbin"} {
		if !strings.Contains(all, want) {
			t.Errorf("journal of %s lacks %q: %q", unit, want, msgs)
		}
	}
	if len(got) > 0 && (got[0].Time.IsZero() || got[0].Cursor == "") {
		t.Errorf("entry without time or cursor: %+v", got[0])
	}
	if other, err := r.Tail(ctx, Query{Unit: "hal0-logs@b.service"}); err != nil || len(other) != 0 {
		t.Errorf("another unit's journal: %v %v, want nothing", other, err)
	}

	// Follow: the newest existing line comes first, then the second run's.
	seen := make(chan string, 100)
	fctx, fcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- r.Follow(fctx, Query{Unit: unit, Lines: 1}, func(e Entry) error {
			seen <- e.Message
			return nil
		})
	}()
	waitFor := func(want string) {
		t.Helper()
		for {
			select {
			case m := <-seen:
				if strings.Contains(m, want) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("following %s: %q never came", unit, want)
			}
		}
	}
	// -u also matches systemd's own lines about the unit ("Finished …"),
	// so the newest entry of run 1 is one of those.
	waitFor("hal0-logs@a.service")
	start("2")
	waitFor("run 2 of a")
	fcancel()
	if err := <-done; err != nil {
		t.Errorf("Follow after cancel: %v", err)
	}

	// After a cursor: only what came later.
	after, err := r.Tail(ctx, Query{Unit: unit, After: got[len(got)-1].Cursor})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) == 0 || strings.Contains(after[0].Message, "run 1") {
		t.Errorf("after the cursor of run 1's last line: %+v", after)
	}
}
