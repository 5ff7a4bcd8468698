package update

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// Limits on what a release may hold. Today's trees are about 35 MB in
// four files; the limits only stop a hostile or broken archive from
// filling /usr.
const (
	maxArchive = 1 << 30 // bytes of the release file
	maxTree    = 2 << 30 // bytes unpacked
	maxEntries = 10000
)

// DpkgDeb unpacks .deb files whose data member is compressed with
// something other than gzip (dpkg-deb's default is xz); tests may point it
// elsewhere.
var DpkgDeb = "dpkg-deb"

// expectedSum returns the expected SHA-256 in lower-case hex: given, or
// from file.sha256 in sha256sum's format ("HEX  NAME", or only HEX). A
// line naming another file does not count.
func expectedSum(file, given string) (string, error) {
	if given != "" {
		return parseHex(given, "--sha256")
	}
	sumFile := file + ".sha256"
	b, err := os.ReadFile(sumFile)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: give --sha256 HEX or put sha256sum's line in %s", ErrNoChecksum, sumFile)
	}
	if err != nil {
		return "", err
	}
	base := filepath.Base(file)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) == 1 || strings.TrimPrefix(f[1], "*") == base {
			return parseHex(f[0], sumFile)
		}
	}
	return "", fmt.Errorf("%w: %s has no line for %s", ErrNoChecksum, sumFile, base)
}

func parseHex(s, from string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%w: %s: %q is not a SHA-256 (64 hex digits)", ErrNoChecksum, from, s)
	}
	return s, nil
}

// copyVerified copies src to dst (a new file) while hashing it and fails
// unless the hash is want. Everything after reads dst, which only root can
// write, never src again.
func copyVerified(src, dst, want string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(in, maxArchive+1))
	if err != nil {
		return fmt.Errorf("reading %s: %w", src, err)
	}
	if n > maxArchive {
		return fmt.Errorf("%w: %s is larger than %d bytes", ErrBadRelease, src, maxArchive)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%w: %s has SHA-256 %s, expected %s", ErrChecksum, src, got, want)
	}
	return out.Close()
}

// unpack unpacks the version tree of the release in archive (a .deb or a
// gzip'd tarball, told apart by their first bytes) into dst and returns
// its version.
func unpack(ctx context.Context, archive, dst string) (string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", err
	}
	defer f.Close()
	magic := make([]byte, 8)
	if _, err := io.ReadFull(f, magic); err != nil {
		return "", fmt.Errorf("%w: too short to be a .deb or .tar.gz", ErrBadRelease)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	switch {
	case bytes.Equal(magic, []byte("!<arch>\n")):
		return unpackDeb(ctx, f, archive, dst)
	case magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(f)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrBadRelease, err)
		}
		return extract(tar.NewReader(zr), dst, tarballEntry)
	}
	return "", fmt.Errorf("%w: neither a .deb nor a .tar.gz", ErrBadRelease)
}

// tarballEntry maps an entry of a release tarball, hal0-<version>/..., to
// its version and its path in the version tree.
func tarballEntry(name string) (version, rel string, ok bool, err error) {
	top, rest, _ := strings.Cut(name, "/")
	v, found := strings.CutPrefix(top, "hal0-")
	if !found {
		return "", "", false, fmt.Errorf("%w: entry %q is not under hal0-<version>/", ErrBadRelease, name)
	}
	return v, rest, true, nil
}

// debEntry maps an entry of a .deb's data to its version and path in the
// version tree: ./usr/lib/hal0/<version>/... . Everything else (units,
// the current link, /etc) is the package's business and left out.
func debEntry(name string) (version, rel string, ok bool, err error) {
	rest, found := strings.CutPrefix(name, "usr/lib/hal0/")
	if !found {
		return "", "", false, nil
	}
	v, rel, _ := strings.Cut(rest, "/")
	if v == "" || v == "current" || v == PreviousLink {
		return "", "", false, nil
	}
	return v, rel, true, nil
}

// extract writes the entries pick selects into dst. Only directories and
// regular files are allowed, modes lose set-id bits and write access for
// group and others, every path must stay inside the tree, and all entries
// must belong to one version.
func extract(tr *tar.Reader, dst string, pick func(string) (string, string, bool, error)) (string, error) {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return "", err
	}
	var version string
	var total int64
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrBadRelease, err)
		}
		if n >= maxEntries {
			return "", fmt.Errorf("%w: more than %d entries", ErrBadRelease, maxEntries)
		}
		name := strings.TrimPrefix(path.Clean(strings.TrimPrefix(hdr.Name, "./")), "/")
		if name == "." {
			continue
		}
		v, rel, ok, err := pick(name)
		if err != nil {
			return "", err
		}
		if !ok {
			continue
		}
		if err := checkVersion(v); err != nil {
			return "", err
		}
		if version != "" && v != version {
			return "", fmt.Errorf("%w: holds versions %s and %s", ErrBadRelease, version, v)
		}
		version = v
		if rel == "" {
			continue // the version directory itself
		}
		if !filepath.IsLocal(rel) || strings.Contains(rel, `\`) {
			return "", fmt.Errorf("%w: unsafe path %q", ErrBadRelease, hdr.Name)
		}
		target := filepath.Join(dst, rel)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return "", err
			}
		case tar.TypeReg:
			total += hdr.Size
			if total > maxTree {
				return "", fmt.Errorf("%w: more than %d bytes unpacked", ErrBadRelease, maxTree)
			}
			if err := writeFile(target, tr, hdr); err != nil {
				return "", err
			}
		default:
			return "", fmt.Errorf("%w: %q is a %s; a release holds only files and directories", ErrBadRelease, hdr.Name, typeName(hdr.Typeflag))
		}
	}
	if version == "" {
		return "", fmt.Errorf("%w: no hal0 version tree inside", ErrBadRelease)
	}
	return version, nil
}

func writeFile(target string, r io.Reader, hdr *tar.Header) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if hdr.Mode&0o111 != 0 {
		mode = 0o755
	}
	// O_EXCL: an archive naming a file twice is refused, not merged.
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRelease, err)
	}
	defer f.Close()
	if n, err := io.Copy(f, r); err != nil {
		return err
	} else if n != hdr.Size {
		return fmt.Errorf("%w: %s is truncated", ErrBadRelease, hdr.Name)
	}
	// The tree becomes what the units run: on disk before the switch.
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "fifo"
	}
	return fmt.Sprintf("tar entry of type %q", t)
}

// unpackDeb finds the data member of a .deb (an ar archive) and extracts
// the version tree from it: gzip'd or plain data natively, anything else
// through `dpkg-deb --fsys-tarfile`, which every Debian system has.
func unpackDeb(ctx context.Context, f *os.File, archive, dst string) (string, error) {
	br := bufio.NewReader(f)
	if _, err := br.Discard(8); err != nil {
		return "", err
	}
	for {
		var hdr [60]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return "", fmt.Errorf("%w: .deb without a data member", ErrBadRelease)
		}
		if string(hdr[58:60]) != "`\n" {
			return "", fmt.Errorf("%w: corrupt .deb member header", ErrBadRelease)
		}
		name := strings.TrimSuffix(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return "", fmt.Errorf("%w: corrupt .deb member size", ErrBadRelease)
		}
		if comp, ok := strings.CutPrefix(name, "data.tar"); ok {
			body := io.LimitReader(br, size)
			switch comp {
			case "":
				return extract(tar.NewReader(body), dst, debEntry)
			case ".gz":
				zr, err := gzip.NewReader(body)
				if err != nil {
					return "", fmt.Errorf("%w: %v", ErrBadRelease, err)
				}
				return extract(tar.NewReader(zr), dst, debEntry)
			}
			return extractWithDpkgDeb(ctx, archive, dst)
		}
		// Members are padded to an even size.
		if _, err := br.Discard(int(size + size%2)); err != nil {
			return "", fmt.Errorf("%w: truncated .deb", ErrBadRelease)
		}
	}
}

func extractWithDpkgDeb(ctx context.Context, archive, dst string) (string, error) {
	cmd := exec.CommandContext(ctx, DpkgDeb, "--fsys-tarfile", archive)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("unpacking the .deb needs %s: %w", DpkgDeb, err)
	}
	version, xerr := extract(tar.NewReader(out), dst, debEntry)
	// Drain, so dpkg-deb never blocks on a full pipe after an early error.
	io.Copy(io.Discard, out)
	werr := cmd.Wait()
	if xerr != nil {
		return "", xerr
	}
	if werr != nil {
		return "", fmt.Errorf("%w: %s --fsys-tarfile: %v: %s", ErrBadRelease, DpkgDeb, werr, strings.TrimSpace(stderr.String()))
	}
	return version, nil
}

// elfMachine maps GOARCH to the ELF machine its binaries carry.
var elfMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386,
	"arm": elf.EM_ARM, "riscv64": elf.EM_RISCV, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390,
}

// checkBinary checks that p is an executable ELF file for arch (GOARCH,
// "" for this program's), so a release for another machine is refused
// before it becomes current rather than when systemd fails to exec it.
func checkBinary(p, arch string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRelease, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%w: %s is not an executable file", ErrBadRelease, p)
	}
	ef, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadRelease, p, err)
	}
	defer ef.Close()
	if arch == "" {
		arch = runtime.GOARCH
	}
	if want, ok := elfMachine[arch]; !ok || ef.Machine != want {
		return fmt.Errorf("%w: %s is built for %s, this machine needs %s", ErrBadRelease, p, ef.Machine, arch)
	}
	return nil
}
