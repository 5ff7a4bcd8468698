// Package sd is hal0's thin seam to sd_notify and the journal. Everything
// is a no-op outside systemd, so binaries behave the same from a shell.
package sd

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/coreos/go-systemd/v22/journal"
)

// Notify sends raw sd_notify state lines; it reports whether systemd got
// them.
func Notify(state ...string) bool {
	ok, _ := daemon.SdNotify(false, strings.Join(state, "\n"))
	return ok
}

// Ready tells systemd the service is up (Type=notify).
func Ready() bool { return Notify(daemon.SdNotifyReady) }

// Stopping tells systemd the service is shutting down.
func Stopping() bool { return Notify(daemon.SdNotifyStopping) }

// Status sets the one-line status `systemctl status` shows.
func Status(format string, a ...any) bool {
	return Notify("STATUS=" + strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " "))
}

// Watchdog returns the interval at which WATCHDOG=1 must be sent (half the
// configured WatchdogSec), or 0 when no watchdog is configured.
func Watchdog() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}

// PingWatchdog sends WATCHDOG=1.
func PingWatchdog() bool { return Notify(daemon.SdNotifyWatchdog) }

// Logger writes log lines to the journal with structured fields when the
// process runs under systemd with its stderr connected to the journal, and
// plain lines to stderr otherwise.
type Logger struct {
	Fields  map[string]string // added to every entry, e.g. HAL0_JOB_ID
	journal bool
}

// NewLogger decides once where lines go.
func NewLogger(fields map[string]string) *Logger {
	j, _ := journal.StderrIsJournalStream()
	return &Logger{Fields: fields, journal: j && journal.Enabled()}
}

// Printf logs at info priority.
func (l *Logger) Printf(format string, a ...any) { l.Send(journal.PriInfo, nil, format, a...) }

// Errorf logs at error priority.
func (l *Logger) Errorf(format string, a ...any) { l.Send(journal.PriErr, nil, format, a...) }

// With logs a line with extra fields (names [A-Z0-9_]).
func (l *Logger) With(fields map[string]string, format string, a ...any) {
	l.Send(journal.PriInfo, fields, format, a...)
}

// Send logs one line.
func (l *Logger) Send(pri journal.Priority, fields map[string]string, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if l.journal {
		vars := map[string]string{}
		for k, v := range l.Fields {
			vars[k] = v
		}
		for k, v := range fields {
			vars[k] = v
		}
		if err := journal.Send(msg, pri, vars); err == nil {
			return
		}
	}
	var extra []string
	for k, v := range fields {
		extra = append(extra, k+"="+v)
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		msg += " (" + strings.Join(extra, " ") + ")"
	}
	fmt.Fprintln(os.Stderr, msg)
}

// Listeners returns the sockets systemd passed (socket activation), and
// clears LISTEN_* so that children do not inherit them. None is not an
// error: the caller binds its own.
func Listeners() ([]net.Listener, error) {
	files := activation.Files(true)
	var out []net.Listener
	for _, f := range files {
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, fmt.Errorf("socket from systemd (%s): %w", f.Name(), err)
		}
		out = append(out, l)
	}
	return out, nil
}
