package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	upd "github.com/hal0ai/hal0/internal/update"
)

// The update tests run `hal0 update` in-process against an installation
// in a temporary HAL0_HOME, with release tarballs built here and a
// Restarter that records its calls (internal/update's live test restarts
// real units, internal/packagetest runs the installed command).

type restartLog struct {
	calls [][]string
	err   error
}

func (r *restartLog) Restart(_ context.Context, units []string) error {
	r.calls = append(r.calls, slices.Clone(units))
	return r.err
}

// updateEnv points the CLI at a fresh installation and returns its home
// and the restarter's log.
func updateEnv(t *testing.T) (string, *restartLog) {
	t.Helper()
	home := t.TempDir()
	useConfig(t, config.Default(home))
	log := &restartLog{}
	old := updateRestarter
	updateRestarter = log
	t.Cleanup(func() { updateRestarter = old })
	return home, log
}

// releaseTarball writes hal0_<version>.tar.gz (its binaries are ELF
// headers for this machine, all the checks read) and, when withSum, its
// .sha256; it returns the path and the hex SHA-256.
func releaseTarball(t *testing.T, dir, version string, withSum bool) (string, string) {
	t.Helper()
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]
	if machine == elf.EM_NONE {
		t.Skipf("no test binaries for %s", runtime.GOARCH)
	}
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(machine), Version: uint32(elf.EV_CURRENT), Ehsize: 64}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	var bin bytes.Buffer
	if err := binary.Write(&bin, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, b := range upd.Binaries {
		hdr := &tar.Header{Name: "hal0-" + version + "/bin/" + b, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(bin.Len())}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(bin.Bytes())
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	name := "hal0_" + version + ".tar.gz"
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	hexSum := hex.EncodeToString(sum[:])
	if withSum {
		if err := os.WriteFile(p+".sha256", []byte(hexSum+"  "+name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p, hexSum
}

func wantRun(t *testing.T, r result, code int, stdout, stderr string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stdout, stdout) || !strings.Contains(r.stderr, stderr) {
		t.Fatalf("want exit %d, stdout with %q, stderr with %q; got %v", code, stdout, stderr, r)
	}
}

func TestUpdateUsage(t *testing.T) {
	home, log := updateEnv(t)
	p, _ := releaseTarball(t, home, "1.0.0", true)
	wantRun(t, run(t, "update"), api.ExitUsage, "", "either --from FILE or --rollback")
	wantRun(t, run(t, "update", "--from", p, "--rollback"), api.ExitUsage, "", "either --from FILE or --rollback")
	wantRun(t, run(t, "update", p), api.ExitUsage, "", "unexpected argument")
	wantRun(t, run(t, "update", "--rollback", "--sha256", strings.Repeat("a", 64)), api.ExitUsage, "", "--sha256 goes with --from")
	wantRun(t, run(t, "update", "--help"), 0, "", "usage: hal0 update --from FILE")
	if len(log.calls) != 0 {
		t.Fatalf("restarts: %v", log.calls)
	}
}

func TestUpdateAndRollback(t *testing.T) {
	home, log := updateEnv(t)
	root := filepath.Join(home, "usr/lib/hal0")
	v1, _ := releaseTarball(t, home, "1.0.0", true)
	v2, sum2 := releaseTarball(t, home, "2.0.0", false)

	wantRun(t, run(t, "update", "--from", v1), 0, "hal0 1.0.0 is current ("+filepath.Join(root, "1.0.0")+")\nrestarted those of hal0-apid.service, hal0-slotd.service that were running", "")
	wantRun(t, run(t, "update", "--from", v1), 0, "hal0 1.0.0 is already current", "")
	wantRun(t, run(t, "update", "--from", v2, "--sha256", strings.ToUpper(sum2)), 0, "hal0 2.0.0 is current ("+filepath.Join(root, "2.0.0")+"); 1.0.0 is previous: hal0 update --rollback goes back", "")
	wantRun(t, run(t, "update", "--rollback"), 0, "hal0 1.0.0 is current again", "")

	r := run(t, "update", "--rollback", "--json")
	var res upd.Result
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.Version != "2.0.0" || res.Previous != "1.0.0" || res.Dir != filepath.Join(root, "2.0.0") {
		t.Fatalf("--json: %v", r)
	}
	if target, err := os.Readlink(filepath.Join(root, "current")); err != nil || target != "2.0.0" {
		t.Fatalf("current -> %q (%v)", target, err)
	}
	// One restart per switch; none for the release that was already current.
	if len(log.calls) != 4 {
		t.Fatalf("restarts %v, want 4", log.calls)
	}
}

func TestUpdateFailures(t *testing.T) {
	home, log := updateEnv(t)
	v1, _ := releaseTarball(t, home, "1.0.0", false)

	wantRun(t, run(t, "update", "--from", v1), api.ExitUsage, "", "no SHA-256 to check the release against: give --sha256 HEX")
	wantRun(t, run(t, "update", "--from", v1, "--sha256", strings.Repeat("0", 64)), api.ExitFailed, "", "SHA-256 mismatch")
	wantRun(t, run(t, "update", "--from", filepath.Join(home, "nope.tar.gz"), "--sha256", strings.Repeat("0", 64)), api.ExitNotFound, "", "no such file")
	wantRun(t, run(t, "update", "--rollback"), api.ExitNotFound, "", "no previous version")
	if len(log.calls) != 0 {
		t.Fatalf("restarts after failures: %v", log.calls)
	}
	if _, err := os.Lstat(filepath.Join(home, "usr/lib/hal0/current")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed update made a current link: %v", err)
	}
}

func TestUpdateNoRestart(t *testing.T) {
	home, log := updateEnv(t)
	v1, _ := releaseTarball(t, home, "1.0.0", true)
	wantRun(t, run(t, "update", "--from", v1, "--no-restart"), 0, "daemons not restarted: hal0 service restart", "")
	if len(log.calls) != 0 {
		t.Fatalf("restarted with --no-restart: %v", log.calls)
	}
}

// A failed restart fails the command, but the switch stands and is said.
func TestUpdateRestartFails(t *testing.T) {
	home, log := updateEnv(t)
	log.err = errors.New("Job for hal0-slotd.service failed")
	v1, _ := releaseTarball(t, home, "1.0.0", true)
	r := run(t, "update", "--from", v1)
	wantRun(t, r, api.ExitFailed, "hal0 1.0.0 is current", "hal0 1.0.0 is current, but restarting the daemons: Job for hal0-slotd.service failed; see hal0 service status, or go back with hal0 update --rollback")
	if strings.Contains(r.stdout, "restarted") {
		t.Fatalf("claims a restart that failed: %v", r)
	}
}
