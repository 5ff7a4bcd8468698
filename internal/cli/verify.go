package cli

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
)

func init() {
	register("model", &command{
		name: "verify", summary: "re-hash an installed model's files against the registry",
		usage: "ID [--json]", example: "hal0 model verify Qwen/Qwen3-4B-GGUF:Q4_K_M",
		flags: modelVerify,
	})
}

// FileCheck is one file's verdict in `hal0 model verify --json`.
type FileCheck struct {
	Path   string `json:"path"`
	Status string `json:"status"` // ok, mismatch, missing, size, unsafe (a symlink out of the model directory, not a regular file)
	Want   string `json:"want_sha256,omitempty"`
	Got    string `json:"got_sha256,omitempty"`
	Size   int64  `json:"size"`
	Error  string `json:"error,omitempty"`
}

// VerifyReport is the --json output of `hal0 model verify`.
type VerifyReport struct {
	ID    string      `json:"id"`
	OK    bool        `json:"ok"`
	Files []FileCheck `json:"files"`
}

// modelVerify reads every file of the model and compares its size and
// SHA-256 (and git blob SHA-1 where recorded) with what the pull recorded.
// It reads the registry and the files directly: hashing happens where the
// files are, so this runs on the box itself.
func modelVerify(fs *flag.FlagSet) func(context.Context, []string) error {
	asJSON := fs.Bool("json", false, "print JSON")
	return func(ctx context.Context, args []string) error {
		if err := wantOne(args, "model ID"); err != nil {
			return err
		}
		reg, err := loadRegistry()
		if err != nil {
			return err
		}
		id := args[0]
		if r, err := ref.Parse(id); err == nil {
			id = r.String()
		}
		m, ok := reg.Get(id)
		if !ok {
			return api.Errorf(api.CodeModelMissing, 0, "model %s is not installed (see `hal0 model list`)", args[0])
		}
		if len(m.Files) == 0 {
			return api.Errorf(api.CodeUnsupported, 0, "model %s has no recorded file hashes (it was not pulled by this hal0), so there is nothing to verify against", id)
		}
		rep := VerifyReport{ID: id, OK: true}
		checks := m.Files
		if m.Format == string(ref.FormatQCOW2) {
			// The files are inside the image; the image's own hash covers
			// every byte of them.
			checks = []registry.File{{Path: m.Image, Size: m.ImageSize, SHA256: m.ImageSHA256}}
		}
		for _, f := range checks {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var c FileCheck
			if filepath.IsAbs(f.Path) {
				// A qcow2 image: its own path, outside the model directory.
				c = checkFile(filepath.Dir(f.Path), filepath.Base(f.Path), f.Size, f.SHA256, f.GitOID)
			} else {
				c = checkFile(m.Dir, filepath.FromSlash(f.Path), f.Size, f.SHA256, f.GitOID)
			}
			c.Path = f.Path
			if c.Status != "ok" {
				rep.OK = false
			}
			rep.Files = append(rep.Files, c)
			if !*asJSON {
				line := fmt.Sprintf("%-8s %s", c.Status, f.Path)
				if c.Error != "" {
					line += ": " + c.Error
				}
				fmt.Fprintln(Stdout, line)
			}
		}
		if *asJSON {
			if err := printJSON(rep); err != nil {
				return err
			}
		}
		if !rep.OK {
			return api.Errorf(api.CodeChecksum, 0, "%s failed verification: pull it again to repair (only the bad files are downloaded again)", id)
		}
		if !*asJSON {
			fmt.Fprintf(Stdout, "%s: all %d files match\n", id, len(checks))
		}
		return nil
	}
}

// checkFile hashes rel inside dir. The file is opened through os.Root, so
// a symlink that leads out of the model directory is reported, not
// followed: its target is not what the pull verified and installed, even
// when its bytes happen to match.
func checkFile(dir, rel string, size int64, sha, gitOID string) FileCheck {
	c := FileCheck{Want: sha}
	root, err := os.OpenRoot(dir)
	if err != nil {
		c.Status, c.Error = "missing", fmt.Sprintf("model directory: %v", err)
		return c
	}
	defer root.Close()
	// O_NONBLOCK: a FIFO planted at the path must not hang the check.
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		c.Status, c.Error = "missing", "no such file"
		return c
	}
	if err != nil {
		c.Status, c.Error = "unsafe", err.Error()
		if strings.Contains(err.Error(), "escapes from parent") {
			c.Error = "is a symlink that leads out of the model directory; remove it and pull the model again"
		}
		return c
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		c.Status, c.Error = "missing", err.Error()
		return c
	}
	if !fi.Mode().IsRegular() {
		c.Status, c.Error = "unsafe", fmt.Sprintf("is not a regular file (%s); remove it and pull the model again", fi.Mode().Type())
		return c
	}
	c.Size = fi.Size()
	if fi.Size() != size {
		c.Status, c.Error = "size", fmt.Sprintf("%d bytes, want %d", fi.Size(), size)
		return c
	}
	s256 := sha256.New()
	var git hash.Hash
	w := io.Writer(s256)
	if gitOID != "" {
		git = sha1.New()
		git.Write([]byte("blob " + strconv.FormatInt(size, 10) + "\x00"))
		w = io.MultiWriter(s256, git)
	}
	if _, err := io.CopyBuffer(w, f, make([]byte, 1<<20)); err != nil {
		c.Status, c.Error = "missing", err.Error()
		return c
	}
	c.Got = hex.EncodeToString(s256.Sum(nil))
	c.Status = "ok"
	if sha != "" && c.Got != sha {
		c.Status, c.Error = "mismatch", "sha256 differs"
	}
	if git != nil && hex.EncodeToString(git.Sum(nil)) != gitOID {
		c.Status, c.Error = "mismatch", "git blob sha1 differs"
	}
	return c
}
