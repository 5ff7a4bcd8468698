package pull

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/diskimage"
	"github.com/hal0ai/hal0/internal/hf"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
)

func (e *Engine) images() *diskimage.Builder {
	if e.Images != nil {
		return e.Images
	}
	return &diskimage.Builder{Logf: e.logf}
}

// installImage is install for format=qcow2: the verified files become an
// ext4 filesystem in a qcow2 image (diskimage), which replaces an older
// image of the same ref with one rename, and the registry entry records
// the image with its SHA-256 next to the hashes of the files inside it.
// If building or recording fails, nothing is left under the final name
// and the downloaded files stay staged, so pulling again only rebuilds.
func (e *Engine) installImage(ctx context.Context, rf ref.Ref, info *hf.RepoInfo, sel *Selection, files []*fileDL, root string, r *run) (*registry.Model, error) {
	if err := syncFiles(files); err != nil {
		return nil, err
	}
	r.phase.Store(PhaseImaging)
	staged := filepath.Join(root, "model.qcow2")
	os.Remove(staged)
	label := strings.ToLower(rf.Name())
	img, err := e.images().Build(ctx, filepath.Join(root, "files"), staged, diskimage.Options{Label: label, Seed: rf.String() + "@" + info.SHA})
	if err != nil {
		if ctx.Err() != nil {
			return nil, api.Errorf(api.CodeCancelled, 0, "pull of %s cancelled while building its image; the downloaded files are kept", rf)
		}
		return nil, err
	}
	e.logf("built %s: %d bytes, filesystem %d bytes, sha256 %s", rf, img.Size, img.VirtualSize, img.SHA256)

	r.phase.Store(PhaseInstalling)
	return e.place(ctx, rf, info.SHA, staged, "image", func(final string) *registry.Model {
		m := e.modelEntry(rf, info, sel, final, r)
		// The files live inside the image: Files keeps their paths and
		// hashes there, HFFilename the GGUF a runtime opens once the image
		// is mounted.
		m.Dir, m.Path, m.MMProj, m.Backends = "", final, "", nil
		m.Format = string(ref.FormatQCOW2)
		m.Image, m.ImageSHA256, m.ImageSize = final, img.SHA256, img.Size
		m.Metadata["image_virtual_size"] = img.VirtualSize
		if sel.MMProj != "" {
			m.Metadata["image_mmproj"] = sel.MMProj
		}
		return m
	})
}
