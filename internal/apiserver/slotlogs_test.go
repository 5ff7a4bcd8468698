package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/journal"
	"github.com/hal0ai/hal0/internal/livesystemd"
)

// TestSlotLogsErrors covers what is answered before any journal is read:
// unknown slots, bad parameters, and a machine without journalctl.
func TestSlotLogsErrors(t *testing.T) {
	a := slotAPI(t)
	a.srv.Journal = &journal.Reader{Cmd: filepath.Join(t.TempDir(), "no-journalctl")}
	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/api/slots/nope/logs", 404, api.CodeSlotNotFound},
		{"/api/slots/primary/logs?lines=0", 400, api.CodeBadRequest},
		{"/api/slots/primary/logs?lines=x", 400, api.CodeBadRequest},
		{"/api/slots/primary/logs", 503, api.CodeLogsUnavailable},
		{"/api/slots/primary/logs?follow=1", 503, api.CodeLogsUnavailable},
	} {
		if st, code := errCode(t, a, "GET", tc.path, ""); st != tc.status || code != tc.code {
			t.Errorf("GET %s: %d %s, want %d %s", tc.path, st, code, tc.status, tc.code)
		}
	}
}

// TestLiveSlotLogs reads a slot unit's journal from a real systemd: the
// newest lines, lines after a cursor, and a followed stream that gets a
// restarted unit's new lines. The slot unit is a shell standing in for a
// backend: what is under test is the way from the journal to the API.
func TestLiveSlotLogs(t *testing.T) {
	s := livesystemd.Boot(t, livesystemd.WithUnit("hal0-slot@.service",
		"[Service]\nType=oneshot\nRemainAfterExit=no\nExecStart=/bin/sh -c 'echo \"backend of %i says $$RUN\"; echo \"warning: $$RUN\" >&2'\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func(n string) {
		t.Helper()
		for _, args := range [][]string{{"set-environment", "RUN=" + n}, {"start", "hal0-slot@primary.service"}} {
			if out, err := s.Systemctl(ctx, args...); err != nil {
				t.Fatal(out, err)
			}
		}
		if out, err := s.Run(ctx, "journalctl", "--sync"); err != nil {
			t.Fatal(out, err)
		}
	}
	a := slotAPI(t)
	a.srv.Journal = &journal.Reader{Dir: s.HostPath("/run/log/journal")}
	run("one")

	var logs api.SlotLogs
	if st := a.do(t, "GET", "/api/slots/primary/logs?lines=50", "", &logs); st != 200 {
		t.Fatalf("GET logs: %d", st)
	}
	text := messages(logs.Entries)
	if logs.Unit != "hal0-slot@primary.service" || !strings.Contains(text, "backend of primary says one") || !strings.Contains(text, "warning: one") {
		t.Fatalf("logs of %s: %q", logs.Unit, text)
	}
	var none api.SlotLogs
	if st := a.do(t, "GET", "/api/slots/npu/logs", "", &none); st != 200 || len(none.Entries) != 0 || none.Entries == nil {
		t.Errorf("logs of a slot that never ran: %d %+v (want 200 and an empty list)", st, none)
	}

	// Follow from the last entry on; a second run's lines arrive live.
	last := logs.Entries[len(logs.Entries)-1].Cursor
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://hal0/api/slots/primary/logs?follow=1", nil)
	req.Header.Set("Last-Event-ID", last)
	resp, err := a.unix.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("follow: %d %v", resp.StatusCode, resp.Header)
	}
	run("two")
	sc := bufio.NewScanner(resp.Body)
	var got []string
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var e api.LogEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(e.Message, "one") {
			t.Fatalf("an entry from before the cursor came back: %q", e.Message)
		}
		got = append(got, e.Message)
		if strings.Contains(e.Message, "says two") {
			return
		}
	}
	t.Fatalf("the stream ended (%v) without the second run's line; got %q", sc.Err(), got)
}

func messages(es []api.LogEntry) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.Message + "\n")
	}
	return b.String()
}
