// Package imagetest opens qcow2 model images for tests with the real
// tools and reports what they hold: qemu-img info for the format and
// virtual size, qemu-img convert back to a raw filesystem, e2fsck -fn to
// prove it clean, debugfs rdump to take every file out, and dumpe2fs for
// the block counts. Tests skip when the tools are missing, or fail when
// HAL0_LIVE_REQUIRED is set (.ci/run installs e2fsprogs and qemu-utils).
package imagetest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// Image is what a qcow2 file holds.
type Image struct {
	Format      string
	VirtualSize int64
	// Files maps every regular file of the filesystem (slash-separated
	// path) to the SHA-256 of its bytes; Sizes to its size. lost+found
	// holds none.
	Files map[string]string
	Sizes map[string]int64
	// UsedBlocks and FreeBlocks are dumpe2fs's block counts.
	UsedBlocks, FreeBlocks int64
}

// Tool finds an e2fsprogs or qemu-utils tool in PATH, /usr/sbin or /sbin.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExec(p) {
			return p
		}
	}
	if os.Getenv("HAL0_LIVE_REQUIRED") != "" {
		t.Fatalf("%s is not installed (Debian packages e2fsprogs and qemu-utils; .ci/run installs them)", name)
	}
	t.Skipf("%s is not installed (Debian packages e2fsprogs and qemu-utils)", name)
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Need skips (or fails, under HAL0_LIVE_REQUIRED) a test that needs every
// tool when one is missing.
func Need(t testing.TB) {
	t.Helper()
	for _, n := range []string{"mke2fs", "e2fsck", "debugfs", "dumpe2fs", "qemu-img"} {
		Tool(t, n)
	}
}

// Open reads the image at path.
func Open(t testing.TB, path string) *Image {
	t.Helper()
	out, err := exec.Command(Tool(t, "qemu-img"), "info", "--output=json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	img := &Image{Files: map[string]string{}, Sizes: map[string]int64{}}
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}
	img.Format, img.VirtualSize = info.Format, info.VirtualSize
	scratch := t.TempDir()
	raw := filepath.Join(scratch, "fs.raw")
	if out, err := exec.Command(Tool(t, "qemu-img"), "convert", "-f", info.Format, "-O", "raw", path, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	if out, err := exec.Command(Tool(t, "e2fsck"), "-f", "-n", raw).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	dump := filepath.Join(scratch, "root")
	if err := os.Mkdir(dump, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(Tool(t, "debugfs"), "-R", "rdump / "+dump, raw).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v\n%s", err, out)
	}
	err = filepath.WalkDir(dump, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dump, p)
		img.Files[filepath.ToSlash(rel)] = hex.EncodeToString(h.Sum(nil))
		img.Sizes[filepath.ToSlash(rel)] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(Tool(t, "dumpe2fs"), "-h", raw).Output()
	if err != nil {
		t.Fatalf("dumpe2fs: %v", err)
	}
	field := func(name string) int64 {
		m := regexp.MustCompile(`(?m)^` + name + `:\s+(\d+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("dumpe2fs shows no %s", name)
		}
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		return n
	}
	total := field("Block count")
	img.FreeBlocks = field("Free blocks")
	img.UsedBlocks = total - img.FreeBlocks
	return img
}

// SHA256 is the hex SHA-256 of b, to compare with Image.Files.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
