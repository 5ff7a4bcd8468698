// Package diskimage turns a directory into a qcow2 disk image holding an
// ext4 filesystem with the directory's files, without root: mke2fs -d
// writes the filesystem into a regular file (no mount, no loop device, no
// FUSE), e2fsck -fn checks it, qemu-img convert makes the qcow2 and
// qemu-img compare proves the qcow2 holds exactly the checked filesystem.
// The tools come from Debian's e2fsprogs and qemu-utils.
//
// The filesystem is sized from the files (data blocks, extent and
// directory blocks, inode tables, group metadata and a 4 MiB journal) with
// a small margin, so an image is barely larger than the model. Modification
// and access times are set to Epoch and the UUID and directory hash seed
// derive from Options.Seed, so images do not record when a model was
// downloaded (mke2fs still copies each file's inode change time).
package diskimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/fsutil"
)

// Tools and the Debian packages that provide them.
var tools = []struct{ name, pkg string }{
	{"mke2fs", "e2fsprogs"},
	{"e2fsck", "e2fsprogs"},
	{"qemu-img", "qemu-utils"},
}

// Epoch is the time stamped on every inode of an image, so that images do
// not depend on when the files were downloaded.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Builder builds images. The zero value looks tools up in PATH and in
// /usr/sbin and /sbin (where Debian puts mke2fs, outside an unprivileged
// user's PATH).
type Builder struct {
	// LookPath finds a tool; nil means exec.LookPath with the sbin
	// fallback.
	LookPath func(name string) (string, error)
	Logf     func(format string, a ...any)

	// firstSize, when set (tests), replaces the estimate of the first
	// mke2fs run, to exercise the retry with a larger size.
	firstSize func(estimate int64) int64
}

// Options name an image.
type Options struct {
	// Label is the filesystem label (at most 16 bytes; longer is cut).
	Label string
	// Seed derives the filesystem UUID and directory hash seed, e.g.
	// "<model id>@<commit>": the same seed gives the same UUID.
	Seed string
}

// Image is a built image.
type Image struct {
	Path        string
	Size        int64  // bytes of the qcow2 file
	VirtualSize int64  // bytes of the filesystem (the disk qemu presents)
	SHA256      string // of the qcow2 file
	// Attempts is how many mke2fs runs it took: more than one means the
	// size estimate was short and the image was made larger.
	Attempts int
}

func (b *Builder) logf(format string, a ...any) {
	if b.Logf != nil {
		b.Logf(format, a...)
	}
}

func (b *Builder) look(name string) (string, error) {
	if b.LookPath != nil {
		return b.LookPath(name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// Check finds the tools, or returns an api.CodeToolMissing error naming
// the missing ones and the Debian packages to install.
func (b *Builder) Check() (map[string]string, error) {
	paths := map[string]string{}
	var missing, pkgs []string
	for _, t := range tools {
		p, err := b.look(t.name)
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", t.name, t.pkg))
			if !contains(pkgs, t.pkg) {
				pkgs = append(pkgs, t.pkg)
			}
			continue
		}
		paths[t.name] = p
	}
	if len(missing) > 0 {
		return nil, api.Errorf(api.CodeToolMissing, 0, "format=qcow2 needs %s, which this machine lacks: install with `apt-get install %s`, or pull with format=dir",
			strings.Join(missing, " and "), strings.Join(pkgs, " "))
	}
	return paths, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Build makes dst, a qcow2 image of an ext4 filesystem holding the tree
// under src. dst appears complete or not at all; scratch files beside it
// are removed. Build sets the times of the files it owns under src to
// Epoch; it only reads them otherwise.
func (b *Builder) Build(ctx context.Context, src, dst string, o Options) (*Image, error) {
	paths, err := b.Check()
	if err != nil {
		return nil, err
	}
	files, err := scan(src)
	if err != nil {
		return nil, api.Errorf(api.CodeIO, 0, "read %s: %v", src, err)
	}
	size, inodes, journal := Estimate(files)
	if b.firstSize != nil {
		size = b.firstSize(size)
	}

	raw := dst + ".raw.tmp"
	tmp := dst + ".tmp"
	defer os.Remove(raw)
	defer os.Remove(tmp)
	uuid := seedUUID(o.Seed)
	label := o.Label
	if len(label) > 16 {
		label = label[:16]
	}
	img := &Image{Path: dst}
	for {
		img.Attempts++
		os.Remove(raw)
		size = (size + BlockSize - 1) / BlockSize * BlockSize
		args := []string{"-q", "-F", "-t", "ext4", "-b", fmt.Sprint(BlockSize), "-m", "0", "-I", fmt.Sprint(inodeSize),
			"-N", fmt.Sprint(inodes), "-L", label, "-U", uuid, "-E", "root_owner=0:0,hash_seed=" + uuid}
		if journal {
			args = append(args, "-O", "^resize_inode", "-J", fmt.Sprintf("size=%d", journalBlocks*BlockSize>>20))
		} else {
			args = append(args, "-O", "^resize_inode,^has_journal")
		}
		args = append(args, "-d", src, raw, fmt.Sprint(size/BlockSize))
		out, err := b.run(ctx, paths["mke2fs"], []string{"E2FSPROGS_FAKE_TIME=" + fmt.Sprint(Epoch.Unix())}, args...)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !outOfSpace(out) || img.Attempts >= 3 {
			return nil, api.Errorf(api.CodeImage, 0, "mke2fs could not build the filesystem (%v): %s", err, tail(out))
		}
		grown := size + size/4 + 16<<20
		b.logf("mke2fs: %d MiB was too small for %s (%s); trying %d MiB", size>>20, src, tail(out), grown>>20)
		size = grown
	}
	fi, err := os.Stat(raw)
	if err != nil {
		return nil, api.Errorf(api.CodeImage, 0, "mke2fs left no filesystem: %v", err)
	}
	img.VirtualSize = fi.Size()
	if out, err := b.run(ctx, paths["e2fsck"], nil, "-f", "-n", raw); err != nil {
		return nil, api.Errorf(api.CodeImage, 0, "e2fsck found problems in the new filesystem (%v): %s", err, tail(out))
	}
	if out, err := b.run(ctx, paths["qemu-img"], nil, "convert", "-q", "-f", "raw", "-O", "qcow2", raw, tmp); err != nil {
		return nil, api.Errorf(api.CodeImage, 0, "qemu-img convert failed (%v): %s", err, tail(out))
	}
	if out, err := b.run(ctx, paths["qemu-img"], nil, "compare", "-q", "-f", "raw", "-F", "qcow2", raw, tmp); err != nil {
		return nil, api.Errorf(api.CodeImage, 0, "the qcow2 image differs from the filesystem it was converted from (%v): %s", err, tail(out))
	}
	os.Remove(raw)
	if img.SHA256, img.Size, err = hashSync(tmp); err != nil {
		return nil, api.Errorf(api.CodeIO, 0, "hash %s: %v", tmp, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return nil, api.Errorf(api.CodeIO, 0, "install %s: %v", dst, err)
	}
	fsutil.SyncDir(filepath.Dir(dst))
	return img, nil
}

// run runs a tool and returns its combined output.
func (b *Builder) run(ctx context.Context, tool string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	b.logf("%s %s: %v in %v", filepath.Base(tool), args[0], errOr(err), time.Since(start).Round(time.Millisecond))
	return out.String(), err
}

func errOr(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// outOfSpace recognises mke2fs running out of blocks or inodes while
// copying the files in.
func outOfSpace(out string) bool {
	o := strings.ToLower(out)
	for _, s := range []string{"no space left", "could not allocate block", "could not allocate inode", "too many inodes", "not enough space", "filesystem too small", "ext2_alloc_block"} {
		if strings.Contains(o, s) {
			return true
		}
	}
	return false
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 600 {
		s = "…" + s[len(s)-600:]
	}
	if s == "" {
		return "(no output)"
	}
	return strings.ReplaceAll(s, "\n", "; ")
}

// scan lists the regular files under root (relative paths) and stamps
// every entry with Epoch. Symlinks and special files are refused: a model
// directory has none, and mke2fs would copy them as they are.
func scan(root string) ([]File, error) {
	var files []File
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.IsDir():
			dirs = append(dirs, p)
			if rel != "." {
				files = append(files, File{Path: filepath.ToSlash(rel), Dir: true})
			}
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s is not a regular file", rel)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files = append(files, File{Path: filepath.ToSlash(rel), Size: fi.Size()})
		return stamp(p)
	})
	if err != nil {
		return nil, err
	}
	// Directories last: stamping a file changes nothing of its directory,
	// but be explicit about the order anyway.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := stamp(dirs[i]); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// stamp sets a file's times to Epoch. Reading is all a build needs of
// the tree: files the builder does not own keep their times.
func stamp(p string) error {
	err := os.Chtimes(p, Epoch, Epoch)
	if errors.Is(err, fs.ErrPermission) {
		return nil
	}
	return err
}

// hashSync fsyncs a file and returns its SHA-256 and size.
func hashSync(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// seedUUID derives a version-4-shaped UUID from seed.
func seedUUID(seed string) string {
	s := sha256.Sum256([]byte("hal0-image:" + seed))
	s[6] = s[6]&0x0f | 0x40
	s[8] = s[8]&0x3f | 0x80
	h := hex.EncodeToString(s[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
