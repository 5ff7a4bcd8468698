package update

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// The tests build real release files (tarballs with Go's archive/tar, .debs
// with the real dpkg-deb) and install them into a scratch HAL0_HOME-shaped
// tree. The binaries are minimal ELF headers for the wanted machine: the
// checks read nothing else. The restart through a real systemd is in
// live_test.go.

// entry is one member of a test tarball.
type entry struct {
	name string
	typ  byte
	mode int64
	body []byte
	link string
}

// elfHeader returns the 64 bytes of an ELF header for machine, which is
// all debug/elf needs to read the architecture.
func elfHeader(t testing.TB, m elf.Machine) []byte {
	t.Helper()
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(m), Version: uint32(elf.EV_CURRENT), Ehsize: 64}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func hostELF(t testing.TB) []byte {
	m, ok := elfMachine[runtime.GOARCH]
	if !ok {
		t.Skipf("no ELF machine known for %s", runtime.GOARCH)
	}
	return elfHeader(t, m)
}

// releaseEntries is a complete release tree for version under top.
func releaseEntries(t testing.TB, top string) []entry {
	es := []entry{{name: top + "/", typ: tar.TypeDir, mode: 0o755}, {name: top + "/bin/", typ: tar.TypeDir, mode: 0o755}}
	for _, b := range Binaries {
		es = append(es, entry{name: top + "/bin/" + b, typ: tar.TypeReg, mode: 0o755, body: hostELF(t)})
	}
	return es
}

// writeTarball writes a gzip'd tarball of es to dir/name and its
// sha256sum line to name.sha256, and returns the tarball's path and sum.
func writeTarball(t testing.TB, dir, name string, es []entry) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range es {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	hexSum := hex.EncodeToString(sum[:])
	if err := os.WriteFile(p+".sha256", []byte(hexSum+"  "+name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, hexSum
}

// release writes the tarball of a complete release.
func release(t testing.TB, dir, version string) string {
	p, _ := writeTarball(t, dir, "hal0_"+version+"_linux.tar.gz", releaseEntries(t, "hal0-"+version))
	return p
}

// recorder is a Restarter that remembers its calls.
type recorder struct {
	calls [][]string
	err   error
}

func (r *recorder) Restart(_ context.Context, units []string) error {
	r.calls = append(r.calls, slices.Clone(units))
	return r.err
}

// env is a HAL0_HOME-shaped tree with state that an update must not touch.
type env struct {
	home, src string
	in        *Installer
	rec       *recorder
}

func newEnv(t *testing.T) *env {
	t.Helper()
	home := t.TempDir()
	for p, content := range map[string]string{
		"etc/hal0/hal0.toml":                  "[pull]\nconcurrency = 2\n",
		"etc/hal0/api.env":                    "HAL0_API_TOKEN=secret\n",
		"var/lib/hal0/registry/registry.toml": "[[model]]\nid = \"demo/x:Q4_K_M\"\n",
		"var/lib/hal0/jobs/abc.json":          "{}\n",
	} {
		mustWrite(t, filepath.Join(home, p), content)
	}
	// The package ships the install root; an update only adds to it.
	if err := os.MkdirAll(filepath.Join(home, "usr/lib/hal0"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	return &env{home: home, src: t.TempDir(), in: New(filepath.Join(home, "usr/lib/hal0/current"), rec), rec: rec}
}

func mustWrite(t testing.TB, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// snapshot describes every file under home but Root: its path, mode, size,
// modification time and content.
func (e *env) snapshot(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(e.home, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == e.in.Root {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d %d", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %x", sha256.Sum256(data))
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func (e *env) state(t *testing.T) (string, string) {
	t.Helper()
	cur, prev, err := e.in.State()
	if err != nil {
		t.Fatal(err)
	}
	return cur, prev
}

func (e *env) wantState(t *testing.T, cur, prev string) {
	t.Helper()
	if c, p := e.state(t); c != cur || p != prev {
		t.Fatalf("current %q previous %q, want %q %q", c, p, cur, prev)
	}
}

// rootNames lists Root's entries, to see that a failed update left nothing.
func (e *env) rootNames(t *testing.T) []string {
	t.Helper()
	des, err := os.ReadDir(e.in.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestUpdateAndRollbackSwapCurrent(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	before := e.snapshot(t)

	res, err := e.in.Update(ctx, release(t, e.src, "1.0.0"), "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != "1.0.0" || res.Previous != "" || res.Dir != filepath.Join(e.in.Root, "1.0.0") {
		t.Fatalf("first install: %+v", res)
	}
	e.wantState(t, "1.0.0", "")

	res, err = e.in.Update(ctx, release(t, e.src, "2.0.0"), "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != "2.0.0" || res.Previous != "1.0.0" {
		t.Fatalf("update: %+v", res)
	}
	e.wantState(t, "2.0.0", "1.0.0")
	// The units run their binaries through the link.
	if got, err := filepath.EvalSymlinks(filepath.Join(e.in.Root, "current", "bin", "hal0-apid")); err != nil || got != filepath.Join(e.in.Root, "2.0.0", "bin", "hal0-apid") {
		t.Fatalf("current/bin/hal0-apid resolves to %q (%v)", got, err)
	}
	if target, _ := os.Readlink(filepath.Join(e.in.Root, "current")); target != "2.0.0" {
		t.Fatalf("current -> %q, want the relative 2.0.0", target)
	}

	for _, want := range [][2]string{{"1.0.0", "2.0.0"}, {"2.0.0", "1.0.0"}, {"1.0.0", "2.0.0"}} {
		res, err := e.in.Rollback(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Version != want[0] || res.Previous != want[1] {
			t.Fatalf("rollback: %+v, want %v", res, want)
		}
		e.wantState(t, want[0], want[1])
	}
	if len(e.rec.calls) != 5 {
		t.Fatalf("restarts: %v, want one per switch (5)", e.rec.calls)
	}
	for _, c := range e.rec.calls {
		if !slices.Equal(c, Daemons) {
			t.Fatalf("restarted %v, want %v", c, Daemons)
		}
	}
	if after := e.snapshot(t); after != before {
		t.Fatalf("files outside %s changed:\nbefore:\n%s\nafter:\n%s", e.in.Root, before, after)
	}
	if names := e.rootNames(t); !slices.Equal(names, []string{".update.lock", "1.0.0", "2.0.0", "current", "previous"}) {
		t.Fatalf("root holds %v: staging or temporary links left behind", names)
	}
	// Modes: the trees are readable and runnable by all, writable by root.
	fi, err := os.Stat(filepath.Join(e.in.Root, "2.0.0", "bin", "hal0"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("bin/hal0: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(e.in.Root, "2.0.0")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("version dir: %v %v", fi.Mode(), err)
	}
}

// A killed update's staging directory is swept by the next one.
func TestStaleStagingIsRemoved(t *testing.T) {
	e := newEnv(t)
	mustWrite(t, filepath.Join(e.in.Root, ".update-123", "archive"), "half a release")
	if _, err := e.in.Update(t.Context(), release(t, e.src, "1.0.0"), ""); err != nil {
		t.Fatal(err)
	}
	if names := e.rootNames(t); !slices.Equal(names, []string{".update.lock", "1.0.0", "current"}) {
		t.Fatalf("root holds %v", names)
	}
}

func TestUpdateSameVersionChangesNothing(t *testing.T) {
	e := newEnv(t)
	p := release(t, e.src, "1.0.0")
	if _, err := e.in.Update(t.Context(), p, ""); err != nil {
		t.Fatal(err)
	}
	res, err := e.in.Update(t.Context(), p, "")
	if err != nil || !res.Unchanged || res.Version != "1.0.0" {
		t.Fatalf("again: %+v %v", res, err)
	}
	if len(e.rec.calls) != 1 {
		t.Fatalf("restarts %v: an update that changed nothing restarted the daemons", e.rec.calls)
	}
	e.wantState(t, "1.0.0", "")
}

// Updating to the version that is previous replaces its tree with the
// verified one and swaps the links like a rollback.
func TestUpdateToPreviousVersion(t *testing.T) {
	e := newEnv(t)
	for _, v := range []string{"1.0.0", "2.0.0"} {
		if _, err := e.in.Update(t.Context(), release(t, e.src, v), ""); err != nil {
			t.Fatal(err)
		}
	}
	stray := filepath.Join(e.in.Root, "1.0.0", "bin", "stray")
	mustWrite(t, stray, "left by hand")
	if _, err := e.in.Update(t.Context(), filepath.Join(e.src, "hal0_1.0.0_linux.tar.gz"), ""); err != nil {
		t.Fatal(err)
	}
	e.wantState(t, "1.0.0", "2.0.0")
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old 1.0.0 tree was not replaced: %v", err)
	}
}

func TestChecksum(t *testing.T) {
	e := newEnv(t)
	p, sum := writeTarball(t, e.src, "r.tar.gz", releaseEntries(t, "hal0-1.0.0"))
	bad := strings.Repeat("0", 64)

	_, err := e.in.Update(t.Context(), p, bad)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), sum) {
		t.Fatalf("wrong --sha256: %v", err)
	}
	mustWrite(t, p+".sha256", bad+"  r.tar.gz\n")
	if _, err := e.in.Update(t.Context(), p, ""); !errors.Is(err, ErrChecksum) {
		t.Fatalf("wrong .sha256: %v", err)
	}
	mustWrite(t, p+".sha256", sum+"  other.tar.gz\n")
	if _, err := e.in.Update(t.Context(), p, ""); !errors.Is(err, ErrNoChecksum) {
		t.Fatalf(".sha256 for another file: %v", err)
	}
	os.Remove(p + ".sha256")
	if _, err := e.in.Update(t.Context(), p, ""); !errors.Is(err, ErrNoChecksum) {
		t.Fatalf("no checksum: %v", err)
	}
	if _, err := e.in.Update(t.Context(), p, "abc"); !errors.Is(err, ErrNoChecksum) {
		t.Fatalf("short --sha256: %v", err)
	}
	if names := e.rootNames(t); slices.ContainsFunc(names, func(n string) bool { return n != ".update.lock" }) {
		t.Fatalf("failed updates left %v", names)
	}
	e.wantState(t, "", "")
	if len(e.rec.calls) != 0 {
		t.Fatalf("restarted after failures: %v", e.rec.calls)
	}

	// sha256sum's binary-mode marker and upper-case digits are fine.
	mustWrite(t, p+".sha256", strings.ToUpper(sum)+" *r.tar.gz\n")
	if _, err := e.in.Update(t.Context(), p, ""); err != nil {
		t.Fatal(err)
	}
	e.wantState(t, "1.0.0", "")
}

func TestBadReleasesAreRefused(t *testing.T) {
	good := func(t *testing.T) []entry { return releaseEntries(t, "hal0-2.0.0") }
	arm := elf.EM_AARCH64
	if runtime.GOARCH == "arm64" {
		arm = elf.EM_X86_64
	}
	cases := []struct {
		name string
		es   func(t *testing.T) []entry
		want string
	}{
		{"symlink", func(t *testing.T) []entry {
			return append(good(t), entry{name: "hal0-2.0.0/bin/sh", typ: tar.TypeSymlink, link: "/bin/sh"})
		}, "symbolic link"},
		{"hard link", func(t *testing.T) []entry {
			return append(good(t), entry{name: "hal0-2.0.0/x", typ: tar.TypeLink, link: "hal0-2.0.0/bin/hal0"})
		}, "hard link"},
		{"device", func(t *testing.T) []entry {
			return append(good(t), entry{name: "hal0-2.0.0/null", typ: tar.TypeChar})
		}, "device"},
		{"parent path", func(t *testing.T) []entry {
			return append(good(t), entry{name: "hal0-2.0.0/../../etc/evil", typ: tar.TypeReg, mode: 0o644, body: []byte("x")})
		}, "hal0-<version>"},
		{"escaping path", func(t *testing.T) []entry {
			return append(good(t), entry{name: "hal0-2.0.0/bin/../../x", typ: tar.TypeReg, mode: 0o644, body: []byte("x")})
		}, "hal0-<version>"},
		{"two versions", func(t *testing.T) []entry {
			return append(good(t), releaseEntries(t, "hal0-3.0.0")...)
		}, "versions 2.0.0 and 3.0.0"},
		{"bad version", func(t *testing.T) []entry { return releaseEntries(t, "hal0-current") }, "not a digit"},
		{"not hal0", func(t *testing.T) []entry { return releaseEntries(t, "other-1.0") }, "hal0-<version>"},
		{"missing binary", func(t *testing.T) []entry {
			es := good(t)
			return es[:len(es)-1]
		}, "hal0-slotd"},
		{"not executable", func(t *testing.T) []entry {
			es := good(t)
			es[len(es)-1].mode = 0o644
			return es
		}, "not an executable"},
		{"other architecture", func(t *testing.T) []entry {
			es := good(t)
			es[2].body = elfHeader(t, arm)
			return es
		}, "built for"},
		{"not ELF", func(t *testing.T) []entry {
			es := good(t)
			es[2].body = []byte("#!/bin/sh\necho hi\n")
			return es
		}, "bad magic"},
		{"duplicate", func(t *testing.T) []entry {
			es := good(t)
			return append(es, es[2])
		}, "exists"},
		{"empty", func(t *testing.T) []entry { return nil }, "no hal0 version tree"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			if _, err := e.in.Update(t.Context(), release(t, e.src, "1.0.0"), ""); err != nil {
				t.Fatal(err)
			}
			before := e.rootNames(t)
			p, _ := writeTarball(t, e.src, "bad.tar.gz", c.es(t))
			_, err := e.in.Update(t.Context(), p, "")
			if !errors.Is(err, ErrBadRelease) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrBadRelease mentioning %q", err, c.want)
			}
			e.wantState(t, "1.0.0", "")
			if after := e.rootNames(t); !slices.Equal(after, before) {
				t.Fatalf("root %v after a refused update, was %v", after, before)
			}
			if _, err := os.Lstat(filepath.Join(e.home, "etc/evil")); err == nil {
				t.Fatal("an entry escaped the tree")
			}
		})
	}
}

func TestNotAnArchive(t *testing.T) {
	e := newEnv(t)
	p := filepath.Join(e.src, "notes.txt")
	mustWrite(t, p, "hello, this is not a release\n")
	sum := sha256.Sum256([]byte("hello, this is not a release\n"))
	if _, err := e.in.Update(t.Context(), p, hex.EncodeToString(sum[:])); !errors.Is(err, ErrBadRelease) {
		t.Fatalf("got %v", err)
	}
	if _, err := e.in.Update(t.Context(), filepath.Join(e.src, "missing.tar.gz"), strings.Repeat("a", 64)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// Set-id bits and group/other write access never reach the tree.
func TestModesAreSanitised(t *testing.T) {
	e := newEnv(t)
	es := releaseEntries(t, "hal0-1.0.0")
	es[2].mode = 0o6777
	es = append(es, entry{name: "hal0-1.0.0/share/doc.txt", typ: tar.TypeReg, mode: 0o666, body: []byte("doc")})
	p, _ := writeTarball(t, e.src, "r.tar.gz", es)
	if _, err := e.in.Update(t.Context(), p, ""); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]fs.FileMode{"bin/" + filepath.Base(es[2].name): 0o755, "share/doc.txt": 0o644} {
		fi, err := os.Stat(filepath.Join(e.in.Root, "1.0.0", name))
		if err != nil || fi.Mode() != want {
			t.Fatalf("%s: mode %v (%v), want %v", name, fi.Mode(), err, want)
		}
	}
}

func TestRollbackWithoutPrevious(t *testing.T) {
	e := newEnv(t)
	if _, err := e.in.Rollback(t.Context()); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("empty root: %v", err)
	}
	if _, err := e.in.Update(t.Context(), release(t, e.src, "1.0.0"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.in.Rollback(t.Context()); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("one version: %v", err)
	}
}

// A previous version whose tree was removed is not switched to.
func TestRollbackToMissingTree(t *testing.T) {
	e := newEnv(t)
	for _, v := range []string{"1.0.0", "2.0.0"} {
		if _, err := e.in.Update(t.Context(), release(t, e.src, v), ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(e.in.Root, "1.0.0")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.in.Rollback(t.Context()); !errors.Is(err, ErrBadRelease) || !strings.Contains(err.Error(), "previous version 1.0.0") {
		t.Fatalf("got %v", err)
	}
	e.wantState(t, "2.0.0", "1.0.0")
}

func TestRestartFailureKeepsTheSwitch(t *testing.T) {
	e := newEnv(t)
	e.rec.err = errors.New("unit hal0-slotd.service failed")
	res, err := e.in.Update(t.Context(), release(t, e.src, "1.0.0"), "")
	var re *RestartError
	if !errors.As(err, &re) || res == nil || res.Version != "1.0.0" {
		t.Fatalf("got %+v, %v", res, err)
	}
	e.wantState(t, "1.0.0", "")
}

func TestConcurrentUpdateIsRefused(t *testing.T) {
	e := newEnv(t)
	if err := os.MkdirAll(e.in.Root, 0o755); err != nil {
		t.Fatal(err)
	}
	unlock, err := e.in.lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	other := New(filepath.Join(e.in.Root, "current"), nil)
	if _, err := other.Update(t.Context(), release(t, e.src, "1.0.0"), ""); !errors.Is(err, ErrBusy) {
		t.Fatalf("update: %v", err)
	}
	if _, err := other.Rollback(t.Context()); !errors.Is(err, ErrBusy) {
		t.Fatalf("rollback: %v", err)
	}
}

func TestCurrentThatIsNoLink(t *testing.T) {
	e := newEnv(t)
	if err := os.MkdirAll(filepath.Join(e.in.Root, "current", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := e.in.Update(t.Context(), release(t, e.src, "1.0.0"), ""); err == nil || !strings.Contains(err.Error(), "not a symbolic link") {
		t.Fatalf("got %v", err)
	}
}

// An absolute link into Root, as an admin might make by hand, is followed.
func TestAbsoluteCurrentLink(t *testing.T) {
	e := newEnv(t)
	if _, err := e.in.Update(t.Context(), release(t, e.src, "1.0.0"), ""); err != nil {
		t.Fatal(err)
	}
	cur := filepath.Join(e.in.Root, "current")
	os.Remove(cur)
	if err := os.Symlink(filepath.Join(e.in.Root, "1.0.0"), cur); err != nil {
		t.Fatal(err)
	}
	if _, err := e.in.Update(t.Context(), release(t, e.src, "2.0.0"), ""); err != nil {
		t.Fatal(err)
	}
	e.wantState(t, "2.0.0", "1.0.0")
	os.Remove(cur)
	if err := os.Symlink("/opt/elsewhere/1.0.0", cur); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.in.State(); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("link out of root: %v", err)
	}
}

// debTree writes the tree a hal0 .deb holds for version (the binaries, the
// current link, a unit and a conffile) and builds it with the real
// dpkg-deb and the given compression.
func buildDeb(t *testing.T, dir, version, compression string) string {
	t.Helper()
	dpkgDeb, err := exec.LookPath("dpkg-deb")
	if err != nil {
		t.Skip("dpkg-deb is not installed: .deb releases cannot be built here")
	}
	root := filepath.Join(t.TempDir(), "pkg")
	for _, b := range Binaries {
		p := filepath.Join(root, "usr/lib/hal0", version, "bin", b)
		mustWrite(t, p, string(hostELF(t)))
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(version, filepath.Join(root, "usr/lib/hal0/current")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(root, "lib/systemd/system/hal0-apid.service"), "[Service]\n")
	mustWrite(t, filepath.Join(root, "etc/hal0/hal0.toml"), "")
	mustWrite(t, filepath.Join(root, "DEBIAN/control"), "Package: hal0\nVersion: "+version+"\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n")
	p := filepath.Join(dir, "hal0_"+version+".deb")
	if out, err := exec.Command(dpkgDeb, "--root-owner-group", "-Z"+compression, "--build", root, p).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	mustWrite(t, p+".sha256", hex.EncodeToString(sum[:])+"  "+filepath.Base(p)+"\n")
	return p
}

// .debs: gzip'd data is read natively, xz (dpkg-deb's default) and zstd
// through dpkg-deb; only the version tree is taken.
func TestUpdateFromDeb(t *testing.T) {
	for i, comp := range []string{"gzip", "xz", "none"} {
		t.Run(comp, func(t *testing.T) {
			e := newEnv(t)
			v := fmt.Sprintf("%d.0.0", i+1)
			if _, err := e.in.Update(t.Context(), buildDeb(t, e.src, v, comp), ""); err != nil {
				t.Fatal(err)
			}
			e.wantState(t, v, "")
			var files []string
			err := filepath.WalkDir(filepath.Join(e.in.Root, v), func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					rel, _ := filepath.Rel(e.in.Root, p)
					files = append(files, rel)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, b := range Binaries {
				want = append(want, filepath.Join(v, "bin", b))
			}
			if !slices.Equal(files, want) {
				t.Fatalf("unpacked %v, want %v", files, want)
			}
		})
	}
}

// A .deb whose data member dpkg-deb cannot read fails cleanly.
func TestBrokenDeb(t *testing.T) {
	e := newEnv(t)
	p := buildDeb(t, e.src, "1.0.0", "xz")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data = data[:len(data)-100]
	mustWrite(t, p, string(data))
	sum := sha256.Sum256(data)
	if _, err := e.in.Update(t.Context(), p, hex.EncodeToString(sum[:])); !errors.Is(err, ErrBadRelease) {
		t.Fatalf("truncated .deb: %v", err)
	}
	e.wantState(t, "", "")
}
