package worker

import (
	"context"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/diskimage/imagetest"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/livesystemd"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/registry"
)

// TestLivePullQCOW2 runs a format=qcow2 pull in the shipped
// hal0-pull@.service, with its sandbox: no capabilities at all
// (CapabilityBoundingSet=), no devices, a read-only system. mke2fs -d and
// qemu-img need none of what it takes away; the image holds every shard.
// Substitutions are those of TestLivePullUnit.
func TestLivePullQCOW2(t *testing.T) {
	imagetest.Need(t)
	s := livesystemd.Boot(t)
	e := newEnv(t)
	_, home := liveTree(t)
	installPullUnit(t, s, home, "HAL0_HOME="+home+" HF_ENDPOINT="+e.hub.URL+" HAL0_DISK_RESERVE=0 HAL0_PULL_CHUNK_SIZE=1MiB HF_TOKEN="+token, nil)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cfg := config.Default(home)
	rf := ref.MustParse("hf://demo/w:Q4_K_M?format=qcow2")
	if out, err := s.Systemctl(ctx, "start", rf.Unit()); err != nil {
		jr, _ := s.Journal(ctx, "-u", rf.Unit())
		t.Fatalf("systemctl start %s: %v\n%s\njournal:\n%s", rf.Unit(), err, out, jr)
	}
	j := waitJob(t, jobs.Open(cfg.Paths.JobsDir()), rf.String(), func(j *jobs.Job) bool { return j.State.Final() })
	if j.State != jobs.Completed {
		jr, _ := s.Journal(ctx, "-u", rf.Unit())
		t.Fatalf("job %+v\njournal:\n%s", j, jr)
	}
	reg, err := registry.Open(cfg.Paths.RegistryFile()).Load()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := reg.Get(rf.String())
	if !ok || m.Format != "qcow2" || j.Path != m.Image {
		t.Fatalf("registry %v, job path %s", reg.List(), j.Path)
	}
	img := imagetest.Open(t, m.Image)
	if len(img.Files) != len(e.files) {
		t.Errorf("image holds %d files, want %d", len(img.Files), len(e.files))
	}
	for _, f := range e.files {
		if img.Files[f.Path] != imagetest.SHA256(f.Data) {
			t.Errorf("%s: not in the image with the hub's bytes", f.Path)
		}
	}
}
