package pull

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/diskimage"
	"github.com/hal0ai/hal0/internal/diskimage/imagetest"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
)

// A format=qcow2 pull installs one image holding every selected file,
// byte for byte, in a clean ext4 filesystem, and records the image and
// its SHA-256 beside the file hashes. The dir install of the same model
// is a separate registry entry with its own files.
func TestPullQCOW2(t *testing.T) {
	imagetest.Need(t)
	f := newFixture(t, hubtest.Options{})
	e := f.engine()
	rf := ref.MustParse("hf://demo/m:Q4_K_M?format=qcow2")
	m, err := e.Pull(t.Context(), Request{Ref: rf})
	if err != nil {
		t.Fatal(err)
	}
	want := ggufOnly(f.files)
	final := filepath.Join(f.cfg.Paths.PullDir(), "demo", "m", "main-Q4_K_M.qcow2")
	if m.ID != "hf://demo/m:Q4_K_M?format=qcow2" || m.Format != "qcow2" || m.Path != final || m.Image != final || m.Dir != "" ||
		m.HFFilename != want[0].Path || len(m.Files) != len(want) {
		t.Fatalf("entry %+v", m)
	}
	data, err := os.ReadFile(final)
	if err != nil {
		t.Fatal(err)
	}
	if m.ImageSHA256 != sha(data) || m.ImageSize != int64(len(data)) {
		t.Errorf("image sha256 %s size %d, file %s %d", m.ImageSHA256, m.ImageSize, sha(data), len(data))
	}
	img := imagetest.Open(t, final)
	if img.Format != "qcow2" || len(img.Files) != len(want) {
		t.Fatalf("image holds %v", img.Files)
	}
	for i, w := range want {
		if img.Files[w.Path] != sha(w.Data) || m.Files[i].SHA256 != sha(w.Data) || m.Files[i].Path != w.Path {
			t.Errorf("%s: in image %s, registry %+v, want %s", w.Path, img.Files[w.Path], m.Files[i], sha(w.Data))
		}
	}
	reg, _ := registry.Open(f.cfg.Paths.RegistryFile()).Load()
	if got, ok := reg.Get(m.ID); !ok || got.ImageSHA256 != m.ImageSHA256 || got.ImageSize != m.ImageSize || got.Image != final {
		t.Errorf("registry entry %+v", got)
	}
	if ents, _ := os.ReadDir(f.cfg.Paths.StagingDir()); len(ents) != 0 {
		t.Errorf("staging not cleaned: %v", ents)
	}

	// Pulling again finds the image in place and downloads nothing.
	f.hub.ResetStats()
	if _, err := e.Pull(t.Context(), Request{Ref: rf}); err != nil {
		t.Fatal(err)
	}
	if st := f.hub.Stats(); st.Bytes != 0 {
		t.Errorf("second pull downloaded %d bytes", st.Bytes)
	}

	// The dir install is another entry; both stay.
	d, err := e.Pull(t.Context(), Request{Ref: ref.MustParse("demo/m:Q4_K_M")})
	if err != nil {
		t.Fatal(err)
	}
	f.checkInstalled(t, d, want)
	reg, _ = registry.Open(f.cfg.Paths.RegistryFile()).Load()
	if _, ok := reg.Get(m.ID); !ok || len(reg.Models) != 2 {
		t.Errorf("registry %v", reg.List())
	}
}

// Without mke2fs or qemu-img the pull fails before it downloads anything,
// naming the Debian packages, and leaves no trace.
func TestPullQCOW2WithoutTools(t *testing.T) {
	f := newFixture(t, hubtest.Options{})
	e := f.engine()
	e.Images = &diskimage.Builder{LookPath: func(name string) (string, error) {
		if name == "mke2fs" {
			return "", exec.ErrNotFound
		}
		return "/usr/bin/" + name, nil
	}}
	_, err := e.Pull(t.Context(), Request{Ref: ref.MustParse("hf://demo/m?format=qcow2")})
	if api.CodeOf(err) != api.CodeToolMissing || !strings.Contains(err.Error(), "mke2fs (Debian package e2fsprogs)") {
		t.Fatalf("err %v", err)
	}
	if n := f.hub.Stats().HubRequests; n != 0 {
		t.Errorf("%d requests to the hub before failing", n)
	}
	if _, err := os.Stat(f.cfg.Paths.PullDir()); !os.IsNotExist(err) {
		t.Errorf("pull dir created: %v", err)
	}
	if _, err := os.Stat(f.cfg.Paths.RegistryFile()); !os.IsNotExist(err) {
		t.Errorf("registry written: %v", err)
	}
}
