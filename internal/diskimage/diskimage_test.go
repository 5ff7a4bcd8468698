package diskimage

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/diskimage/imagetest"
)

// The tests run the real mke2fs, e2fsck, qemu-img and debugfs (.ci/run
// installs e2fsprogs and qemu-utils).
func needTools(t *testing.T) {
	t.Helper()
	imagetest.Need(t)
}

// writeTree creates files (path -> content) under a new directory.
func writeTree(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for p, data := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func random(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// openImage proves what an image holds (see imagetest.Open): a clean
// qcow2 of the expected virtual size with exactly the files of want, byte
// for byte. It returns the used and free block counts.
func openImage(t *testing.T, img *Image, want map[string][]byte) (used, free int64) {
	t.Helper()
	got := imagetest.Open(t, img.Path)
	if got.Format != "qcow2" || got.VirtualSize != img.VirtualSize {
		t.Fatalf("image is %s of %d bytes, want qcow2 of %d", got.Format, got.VirtualSize, img.VirtualSize)
	}
	for p, data := range want {
		sum, ok := got.Files[p]
		switch {
		case !ok:
			t.Errorf("%s is not in the image", p)
		case sum != imagetest.SHA256(data):
			t.Errorf("%s has other bytes in the image (%d bytes, want %d)", p, got.Sizes[p], len(data))
		}
		delete(got.Files, p)
	}
	for p := range got.Files {
		t.Errorf("unexpected file in the image: %s", p)
	}
	return got.UsedBlocks, got.FreeBlocks
}

func TestBuildLayouts(t *testing.T) {
	needTools(t)
	t.Parallel()
	many := map[string][]byte{}
	for i := range 600 {
		many[fmt.Sprintf("tok/piece-%05d.json", i)] = []byte(strings.Repeat("x", i%97))
	}
	for i := range 60 {
		many[fmt.Sprintf("d%03d/sub/f.txt", i)] = []byte{byte(i)}
	}
	deep := map[string][]byte{}
	p := ""
	for i := range 40 {
		p += fmt.Sprintf("level-%02d/", i)
		deep[p+"file.bin"] = random(5000+i, uint64(i))
	}
	for _, tc := range []struct {
		name  string
		files map[string][]byte
	}{
		{"model", map[string][]byte{
			"Q4_K_M/model-Q4_K_M-00001-of-00002.gguf": random(24<<20, 1),
			"Q4_K_M/model-Q4_K_M-00002-of-00002.gguf": random(3<<20+17, 2),
			"config.json":                    []byte(`{"a":1}`),
			"empty.txt":                      {},
			"name with spaces & ünïcode.txt": []byte("odd name"),
		}},
		{"many small files", many},
		{"deep", deep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := writeTree(t, tc.files)
			dst := filepath.Join(t.TempDir(), "model.qcow2")
			img, err := (&Builder{Logf: t.Logf}).Build(t.Context(), src, dst, Options{Label: "hal0-test", Seed: tc.name})
			if err != nil {
				t.Fatal(err)
			}
			if img.Attempts != 1 {
				t.Errorf("the estimate was short: %d mke2fs runs", img.Attempts)
			}
			sum, n := fileSHA(t, dst)
			if img.SHA256 != sum || img.Size != n {
				t.Errorf("image %+v, file sha256 %s size %d", img, sum, n)
			}
			used, free := openImage(t, img, tc.files)
			// The estimate leaves a margin, not a second model's worth.
			if limit := used/50 + 768; free > limit {
				t.Errorf("%d blocks free of %d (more than %d): the size estimate is loose", free, used+free, limit)
			}
			t.Logf("%d blocks used, %d free; qcow2 %d bytes", used, free, img.Size)
			entries, _ := os.ReadDir(filepath.Dir(dst))
			if len(entries) != 1 {
				t.Errorf("scratch files left beside the image: %v", entries)
			}
		})
	}
}

func fileSHA(t *testing.T, p string) (string, int64) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), int64(len(b))
}

// A short estimate costs a second mke2fs run, not a failure.
func TestBuildGrowsWhenShort(t *testing.T) {
	needTools(t)
	t.Parallel()
	files := map[string][]byte{"big.bin": random(20<<20, 4)}
	src := writeTree(t, files)
	b := &Builder{Logf: t.Logf, firstSize: func(est int64) int64 { return est / 2 }}
	img, err := b.Build(t.Context(), src, filepath.Join(t.TempDir(), "x.qcow2"), Options{Seed: "grow"})
	if err != nil {
		t.Fatal(err)
	}
	if img.Attempts != 2 {
		t.Errorf("%d attempts", img.Attempts)
	}
	openImage(t, img, files)
}

func TestMissingTools(t *testing.T) {
	src := writeTree(t, map[string][]byte{"a": []byte("a")})
	dst := filepath.Join(t.TempDir(), "x.qcow2")
	b := &Builder{LookPath: func(name string) (string, error) {
		if name == "qemu-img" {
			return "", exec.ErrNotFound
		}
		return "/usr/sbin/" + name, nil
	}}
	_, err := b.Build(t.Context(), src, dst, Options{})
	if api.CodeOf(err) != api.CodeToolMissing || !strings.Contains(err.Error(), "qemu-img (Debian package qemu-utils)") ||
		!strings.Contains(err.Error(), "apt-get install qemu-utils") || strings.Contains(err.Error(), "e2fsprogs") {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Error("image created without tools")
	}
}

func TestRefusesSymlinks(t *testing.T) {
	needTools(t)
	t.Parallel()
	src := writeTree(t, map[string][]byte{"a": []byte("a")})
	os.Symlink("/etc/passwd", filepath.Join(src, "link"))
	_, err := (&Builder{}).Build(t.Context(), src, filepath.Join(t.TempDir(), "x.qcow2"), Options{})
	if err == nil || !strings.Contains(err.Error(), "link is not a regular file") {
		t.Fatalf("err %v", err)
	}
}

// TestBuildUnprivileged builds an image as the unprivileged user nobody:
// no root, no mount, no loop device, no FUSE. (Run as a normal user, every
// other test here proves the same; as root, this one re-runs the test
// binary under uid 65534.)
func TestBuildUnprivileged(t *testing.T) {
	needTools(t)
	if spec := os.Getenv("HAL0_DISKIMAGE_AS_NOBODY"); spec != "" {
		src, dst, _ := strings.Cut(spec, "|")
		if _, err := (&Builder{}).Build(t.Context(), src, dst, Options{Label: "nobody", Seed: "nobody"}); err != nil {
			t.Fatalf("build as uid %d: %v", os.Geteuid(), err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("running unprivileged already: every build in this package is one")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "hal0-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	files := map[string][]byte{"Q8_0/m.gguf": random(2<<20, 5), "config.json": []byte("{}")}
	src := filepath.Join(dir, "src")
	for p, data := range files {
		full := filepath.Join(src, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	// nobody may read the tree and the test binary, and write only out/.
	bin := filepath.Join(dir, "diskimage.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bin, data, 0o755)
	os.Chmod(dir, 0o755)
	if err := os.Chown(out, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(out, "m.qcow2")
	cmd := exec.Command(bin, "-test.run=^TestBuildUnprivileged$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HAL0_DISKIMAGE_AS_NOBODY="+src+"|"+dst, "HOME="+out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build as nobody: %v\n%s", err, b)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody {
		t.Errorf("image owned by uid %d", st.Uid)
	}
	openImage(t, &Image{Path: dst, VirtualSize: imagetest.Open(t, dst).VirtualSize}, files)
}
