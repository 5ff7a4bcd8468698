package update

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hal0ai/hal0/internal/livesystemd"
)

// nsRestarter is the Restarter of the live test: systemctl try-restart in
// the private systemd's namespace, as Systemctl does on an appliance.
type nsRestarter struct{ s *livesystemd.System }

func (r nsRestarter) Restart(ctx context.Context, units []string) error {
	_, err := r.s.Systemctl(ctx, append([]string{"try-restart"}, units...)...)
	return err
}

// TestLiveSwitchRestartsRunningDaemons installs two releases into a tree
// shared with a private systemd whose hal0-slotd.service and
// hal0-apid.service run their binary through the current link, like the
// shipped units. The binaries are the machine's sleep (a real executable
// for this architecture). After each switch the running daemon runs the
// new version's file, and the stopped one stays stopped.
func TestLiveSwitchRestartsRunningDaemons(t *testing.T) {
	s := livesystemd.Boot(t)
	ctx := t.Context()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary to stand in for the daemons")
	}
	body, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(s.Dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.0", "2.0.0"} {
		es := releaseEntries(t, "hal0-"+v)
		for i := range es {
			if es[i].body != nil {
				es[i].body = body
			}
		}
		writeTarball(t, src, v+".tar.gz", es)
	}
	root := filepath.Join(s.Dir, "usr/lib/hal0")
	in := New(filepath.Join(root, "current"), nsRestarter{s})
	for _, d := range []string{"slotd", "apid"} {
		s.InstallUnit(t, "hal0-"+d+".service", "[Service]\nType=exec\nExecStart="+filepath.Join(root, "current/bin/hal0-"+d)+" infinity\n")
	}
	if _, err := in.Update(ctx, filepath.Join(src, "1.0.0.tar.gz"), ""); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Systemctl(ctx, "start", "hal0-slotd.service"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}

	// exe returns the file the unit's main process runs, resolved by the
	// kernel at exec time (so through the link as it was then).
	exe := func(unit string) string {
		t.Helper()
		pid, err := s.Systemctl(ctx, "show", "-p", "MainPID", "--value", unit)
		if err != nil || pid == "0" {
			t.Fatalf("%s has no main process (%q, %v)", unit, pid, err)
		}
		out, err := s.Run(ctx, "readlink", "/proc/"+pid+"/exe")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	runs := func(v string) {
		t.Helper()
		if got, want := exe("hal0-slotd.service"), filepath.Join(root, v, "bin/hal0-slotd"); got != want {
			t.Fatalf("hal0-slotd runs %s, want %s", got, want)
		}
		if st, _ := s.Systemctl(ctx, "is-active", "hal0-apid.service"); st != "inactive" {
			t.Fatalf("hal0-apid.service is %q: try-restart must leave a stopped daemon stopped", st)
		}
	}
	runs("1.0.0")

	res, err := in.Update(ctx, filepath.Join(src, "2.0.0.tar.gz"), "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Restarted, " ") != "hal0-apid.service hal0-slotd.service" {
		t.Fatalf("restarted %v", res.Restarted)
	}
	runs("2.0.0")
	if _, err := in.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	runs("1.0.0")
	if _, err := in.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	runs("2.0.0")
}
