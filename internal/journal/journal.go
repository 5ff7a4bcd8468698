// Package journal reads a unit's log lines from the systemd journal by
// running journalctl, for the API's slot logs.
//
// journalctl rather than sd-journal: go-systemd's reader needs cgo and
// libsystemd at run time, and journalctl is on every systemd machine. Its
// JSON output (-o json) is stable and documented in systemd.journal-fields(7).
package journal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hal0ai/hal0/internal/api"
)

// Entry is one journal record, reduced to what a person reading logs
// needs; it is the API's wire type.
type Entry = api.LogEntry

// Reader runs journalctl.
type Reader struct {
	// Cmd is the journalctl executable; default "journalctl".
	Cmd string
	// Dir, when set, reads the journal files in this directory instead of
	// the system journal (journalctl --directory).
	Dir string
}

// ErrUnavailable means there is no journal to read here: no journalctl,
// or no permission. Its message says which and what to do.
var ErrUnavailable = errors.New("journal unavailable")

// Query selects the entries of one unit.
type Query struct {
	Unit string
	// Lines is how many of the newest entries to return (at most 10,000);
	// 0 means 100.
	Lines int
	// After continues after this cursor instead of taking the newest Lines.
	After string
}

func (r *Reader) args(q Query, follow bool) ([]string, error) {
	if q.Unit == "" || strings.HasPrefix(q.Unit, "-") {
		return nil, fmt.Errorf("journal: bad unit name %q", q.Unit)
	}
	n := q.Lines
	switch {
	case n <= 0:
		n = 100
	case n > 10000:
		n = 10000
	}
	a := []string{"--no-pager", "-o", "json", "--output-fields=MESSAGE,PRIORITY,_PID,SYSLOG_PID", "-u", q.Unit}
	if q.After != "" {
		a = append(a, "--after-cursor="+q.After)
	} else {
		a = append(a, "-n", strconv.Itoa(n))
	}
	if r.Dir != "" {
		a = append(a, "--directory="+r.Dir)
	}
	if follow {
		a = append(a, "--follow")
	}
	return a, nil
}

func (r *Reader) cmd(ctx context.Context, args []string) *exec.Cmd {
	name := r.Cmd
	if name == "" {
		name = "journalctl"
	}
	c := exec.CommandContext(ctx, name, args...)
	c.WaitDelay = 2 * time.Second
	return c
}

// Tail returns the newest entries of q.Unit, oldest first.
func (r *Reader) Tail(ctx context.Context, q Query) ([]Entry, error) {
	var out []Entry
	err := r.run(ctx, q, false, func(e Entry) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

// Follow calls fn with the newest entries of q.Unit and then with each new
// one, until ctx ends (which returns nil) or fn fails.
func (r *Reader) Follow(ctx context.Context, q Query, fn func(Entry) error) error {
	return r.run(ctx, q, true, fn)
}

func (r *Reader) run(ctx context.Context, q Query, follow bool, fn func(Entry) error) error {
	args, err := r.args(q, follow)
	if err != nil {
		return err
	}
	dirs := []string{"/run/log/journal", "/var/log/journal"}
	if r.Dir != "" {
		dirs = []string{r.Dir}
	}
	if !hasJournalFiles(dirs) {
		// journalctl says nothing at all then, which would read as a unit
		// that never logged.
		return fmt.Errorf("%w: no journal files in %s: systemd-journald does not run here; slot logs are in the journal of the systemd that runs the slots (api.journal_dir names another journal directory)", ErrUnavailable, strings.Join(dirs, " or "))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := r.cmd(ctx, args)
	var stderr bytes.Buffer
	c.Stderr = &limitedWriter{w: &stderr, n: 4096}
	stdout, err := c.StdoutPipe()
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("%w: journalctl is not installed (Debian package systemd)", ErrUnavailable)
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	n, perr := parse(stdout, fn)
	if perr != nil {
		cancel() // fn failed (the client left) or the output was bad
	}
	werr := c.Wait()
	if ctx.Err() != nil && perr == nil {
		return nil // the caller stopped following
	}
	if perr != nil {
		return perr
	}
	if werr != nil {
		return fmt.Errorf("journalctl: %v: %s", werr, strings.TrimSpace(stderr.String()))
	}
	// journalctl exits 0 and prints nothing when it may not read the
	// system journal; only its hint on stderr tells that apart from a unit
	// that never logged.
	if n == 0 && strings.Contains(stderr.String(), "not seeing messages") {
		return fmt.Errorf("%w: this user may not read the system journal; add it to the systemd-journal group (hal0-apid.service does this with SupplementaryGroups=systemd-journal)", ErrUnavailable)
	}
	return nil
}

// hasJournalFiles reports whether any of dirs holds journal files, directly
// or in a machine-id directory. Files it may not read count: journalctl
// then explains itself.
func hasJournalFiles(dirs []string) bool {
	for _, d := range dirs {
		for _, pat := range []string{"*.journal", "*/*.journal", "*.journal~", "*/*.journal~"} {
			if m, _ := filepath.Glob(filepath.Join(d, pat)); len(m) > 0 {
				return true
			}
		}
	}
	return false
}

// parse reads journalctl's JSON lines and calls fn for each entry.
func parse(r io.Reader, fn func(Entry) error) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20) // a MESSAGE may be long
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e, err := decode(line)
		if err != nil {
			return n, err
		}
		n++
		if err := fn(e); err != nil {
			return n, err
		}
	}
	return n, sc.Err()
}

// record is journalctl's JSON form. MESSAGE is a string, or an array of
// bytes when it is not valid UTF-8, or null when too large to show.
type record struct {
	Cursor    string          `json:"__CURSOR"`
	Realtime  string          `json:"__REALTIME_TIMESTAMP"`
	Message   json.RawMessage `json:"MESSAGE"`
	Priority  string          `json:"PRIORITY"`
	PID       string          `json:"_PID"`
	SyslogPID string          `json:"SYSLOG_PID"`
}

func decode(line []byte) (Entry, error) {
	var rec record
	if err := json.Unmarshal(line, &rec); err != nil {
		return Entry{}, fmt.Errorf("journalctl printed something that is not a JSON entry: %v", err)
	}
	e := Entry{Cursor: rec.Cursor, Priority: 6}
	if us, err := strconv.ParseInt(rec.Realtime, 10, 64); err == nil {
		e.Time = time.UnixMicro(us).UTC()
	}
	if p, err := strconv.Atoi(rec.Priority); err == nil {
		e.Priority = p
	}
	pid := rec.PID
	if pid == "" {
		pid = rec.SyslogPID
	}
	e.PID, _ = strconv.Atoi(pid)
	var s string
	var raw []byte
	switch {
	case len(rec.Message) == 0 || string(rec.Message) == "null":
		e.Message = "[message too large for the journal's JSON output]"
	case json.Unmarshal(rec.Message, &s) == nil:
		e.Message = s
	case json.Unmarshal(rec.Message, &raw) == nil:
		e.Message = strings.ToValidUTF8(string(raw), "\uFFFD")
	default:
		return Entry{}, fmt.Errorf("journalctl: MESSAGE of unexpected shape %.40s", rec.Message)
	}
	return e, nil
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
