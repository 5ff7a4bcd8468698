package journal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDecode covers the shapes journalctl -o json gives MESSAGE:
// a string, an array of bytes (not UTF-8), and null (too large).
func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       Entry
		wantErr    bool
	}{
		{"string", `{"__CURSOR":"s=1","__REALTIME_TIMESTAMP":"1700000000123456","PRIORITY":"3","_PID":"42","MESSAGE":"model loaded"}`,
			Entry{Cursor: "s=1", Time: time.UnixMicro(1700000000123456).UTC(), Priority: 3, PID: 42, Message: "model loaded"}, false},
		{"bytes", `{"__CURSOR":"s=2","MESSAGE":[104,105,255]}`,
			Entry{Cursor: "s=2", Priority: 6, Message: "hi\uFFFD"}, false},
		{"null", `{"__CURSOR":"s=3","MESSAGE":null,"SYSLOG_PID":"7"}`,
			Entry{Cursor: "s=3", Priority: 6, PID: 7, Message: "[message too large for the journal's JSON output]"}, false},
		{"not json", `Hint: something`, Entry{}, true},
		{"object message", `{"MESSAGE":{"a":1}}`, Entry{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decode([]byte(tc.line))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestArgs(t *testing.T) {
	r := &Reader{Dir: "/j"}
	for _, tc := range []struct {
		q      Query
		follow bool
		want   string
	}{
		{Query{Unit: "hal0-slot@a.service"}, false, "--no-pager -o json --output-fields=MESSAGE,PRIORITY,_PID,SYSLOG_PID -u hal0-slot@a.service -n 100 --directory=/j"},
		{Query{Unit: "u", Lines: 1 << 20}, true, "--no-pager -o json --output-fields=MESSAGE,PRIORITY,_PID,SYSLOG_PID -u u -n 10000 --directory=/j --follow"},
		{Query{Unit: "u", After: "s=9"}, false, "--no-pager -o json --output-fields=MESSAGE,PRIORITY,_PID,SYSLOG_PID -u u --after-cursor=s=9 --directory=/j"},
	} {
		a, err := r.args(tc.q, tc.follow)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(a, " "); got != tc.want {
			t.Errorf("args(%+v) =\n%s\nwant\n%s", tc.q, got, tc.want)
		}
	}
	if _, err := r.args(Query{Unit: "--all"}, false); err == nil {
		t.Error("a unit name that is an option was accepted")
	}
}

// TestUnavailable runs stand-ins for journalctl: a missing program, and
// one that behaves as journalctl does for a user outside systemd-journal
// (nothing on stdout, the hint on stderr, exit 0).
func TestUnavailable(t *testing.T) {
	dir := t.TempDir()
	denied := filepath.Join(dir, "journalctl")
	script := "#!/bin/sh\necho 'Hint: You are currently not seeing messages from other users and the system.' >&2\nexit 0\n"
	if err := os.WriteFile(denied, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// A journal directory with a file in it, so that journalctl is run.
	jdir := filepath.Join(dir, "journal", "0123")
	if err := os.MkdirAll(jdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(jdir, "system.journal"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cmd, dir, want string
	}{
		{filepath.Join(dir, "missing"), filepath.Join(dir, "journal"), "journal unavailable"},
		{denied, filepath.Join(dir, "journal"), "systemd-journal group"},
		{denied, filepath.Join(dir, "empty"), "no journal files in " + filepath.Join(dir, "empty")},
	} {
		_, err := (&Reader{Cmd: tc.cmd, Dir: tc.dir}).Tail(context.Background(), Query{Unit: "x.service"})
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrUnavailable mentioning %q", tc.cmd, err, tc.want)
		}
	}
}
