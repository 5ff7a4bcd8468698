package cli

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/catalog"
	"github.com/hal0ai/hal0/internal/client/clienttest"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/diskimage/imagetest"
	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/registry"
)

// The catalog commands against a real hal0-apid (catalog routes, pulls as
// hal0-pull child processes) and the in-repo hub: index, list, search,
// show, then an import as a qcow2 disk image, verified and removed.
func TestCatalogCommands(t *testing.T) {
	imagetest.Need(t)
	e := newEnv(t)
	e.Hub.AddRepo(hubtest.Repo{ID: "demo/chat", Files: hubtest.GenerateSafetensorsShards("", 1, 64<<10, 9),
		PipelineTag: "text-generation", License: "mit", Downloads: 10})
	e.Hub.AddRepo(hubtest.Repo{ID: "demo/locked-GGUF", Gated: "auto", Files: hubtest.GenerateGGUFShards("", "locked", "Q8_0", 1, 64<<10, 8),
		PipelineTag: "text-generation", Downloads: 5})
	cfg := *e.Cfg
	cfg.Catalog.Sources = []config.CatalogSource{{Orgs: []string{"demo"}}}
	cfg.Catalog.CertifiedOrgs = []string{"demo"}
	cfg.Catalog.Full = true
	useConfig(t, &cfg)

	// Before the first index.
	if r := run(t, "catalog", "list"); r.code != 0 || !strings.Contains(r.stderr, "the catalog is empty") {
		t.Fatalf("empty list: %s", r)
	}
	r := run(t, "catalog", "index", "--json")
	if r.code != 0 {
		t.Fatalf("index: %s", r)
	}
	var res catalog.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Entries != 3 || res.Gated != 1 || res.Path != cfg.Paths.CatalogFile() {
		t.Fatalf("index result %+v (%v)\n%s", res, err, r)
	}
	// The timer's run right after is skipped; the catalog is fresh.
	if r := run(t, "catalog", "index", "--if-due"); r.code != 0 || !strings.Contains(r.stdout, "skipped") || !strings.Contains(r.stdout, "next index due") {
		t.Fatalf("--if-due: %s", r)
	}

	var l api.CatalogList
	r = run(t, "catalog", "list", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || r.code != 0 || l.Total != 3 || l.IndexedAt == nil {
		t.Fatalf("list --json: %v\n%s", err, r)
	}
	m := l.Entries[0] // most downloads: the clienttest model has none, so sort puts demo/chat first
	if m.ID != "demo/chat" || !m.Certified || !m.MetadataOnly || !m.HasChatTemplate || m.ChatTemplateSource != "tokenizer_config.json" {
		t.Errorf("first entry %+v", m)
	}
	if r := run(t, "catalog", "search", "gguf", "--sort", "id"); r.code != 0 || !strings.Contains(r.stdout, clienttest.Repo+" ") ||
		!strings.Contains(r.stdout, "demo/locked-GGUF") || strings.Contains(r.stdout, "demo/chat") || !strings.Contains(r.stdout, "gated") {
		t.Errorf("search: %s", r)
	}
	if r := run(t, "catalog", "list", "--local", "--gated", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"demo/locked-GGUF"`) || strings.Contains(r.stdout, `"demo/chat"`) {
		t.Errorf("list --local --gated: %s", r)
	}
	r = run(t, "catalog", "show", clienttest.Repo)
	if r.code != 0 || !strings.Contains(r.stdout, "no (metadata only)") || !strings.Contains(r.stdout, "what an import downloads") ||
		!strings.Contains(r.stdout, "Q4_K_M") {
		t.Errorf("show: %s", r)
	}

	// Import as a disk image: a pull through hal0-apid.
	r = run(t, "catalog", "import", clienttest.Repo, "--format", "qcow2")
	if r.code != 0 {
		t.Fatalf("import: %s", r)
	}
	id := "hf://" + clienttest.Repo + "?format=qcow2"
	reg, err := registry.Open(cfg.Paths.RegistryFile()).Load()
	if err != nil {
		t.Fatal(err)
	}
	im, ok := reg.Get(id)
	if !ok || im.Format != "qcow2" || im.Image == "" || im.ImageSHA256 == "" {
		t.Fatalf("registry: %v", reg.List())
	}
	var entry api.CatalogEntry
	r = run(t, "catalog", "show", clienttest.Repo, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &entry); err != nil || entry.MetadataOnly || strings.Join(entry.Installed, ",") != id {
		t.Fatalf("entry after import: %+v\n%s", entry, r)
	}
	// The catalog's size is exactly what the import downloaded.
	if entry.SizeBytes != im.SizeBytes || entry.SizeBytes != e.Total || entry.Files != len(im.Files) {
		t.Errorf("catalog size %d (%d files), import %d (%d files), model %d", entry.SizeBytes, entry.Files, im.SizeBytes, len(im.Files), e.Total)
	}
	// Every file is in the image with the bytes the hub has.
	img := imagetest.Open(t, im.Image)
	repo := e.Hub.Repo(clienttest.Repo)
	if len(img.Files) != len(repo.Files) {
		t.Errorf("image holds %d files, repo %d", len(img.Files), len(repo.Files))
	}
	for _, f := range repo.Files {
		if img.Files[f.Path] != f.SHA256 {
			t.Errorf("%s: image %q, hub %s", f.Path, img.Files[f.Path], f.SHA256)
		}
	}
	if r := run(t, "model", "verify", id); r.code != 0 || !strings.Contains(r.stdout, "all 1 files match") {
		t.Errorf("verify: %s", r)
	}
	// A flipped byte in the image is caught.
	data, _ := os.ReadFile(im.Image)
	data[len(data)/2] ^= 1
	os.WriteFile(im.Image, data, 0o644)
	if r := run(t, "model", "verify", id); r.code != api.ExitFailed || !strings.Contains(r.stdout, "mismatch") {
		t.Errorf("verify of a damaged image: %s", r)
	}
	if r := run(t, "model", "rm", id); r.code != 0 {
		t.Fatalf("rm: %s", r)
	}
	if _, err := os.Stat(im.Image); !os.IsNotExist(err) {
		t.Errorf("image left after rm: %v", err)
	}
}

func TestCatalogErrors(t *testing.T) {
	e := newEnv(t)
	cfg := *e.Cfg
	useConfig(t, &cfg)
	for _, tc := range []struct {
		args []string
		code int
		text string
	}{
		{[]string{"catalog", "index"}, api.ExitUsage, "no catalog sources"},
		{[]string{"catalog", "index", "--if-due"}, 0, "no catalog sources are configured"},
		{[]string{"catalog", "index", "--org", "demo", "--sort", "stars"}, api.ExitUsage, `sort "stars"`},
		{[]string{"catalog", "index", "--sort", "likes"}, api.ExitUsage, "apply to a source named on the command line"},
		{[]string{"catalog", "index", "--collection", "demo/none-0123456789abcdef01234567"}, api.ExitNotFound, "collection demo/none-0123456789abcdef01234567 not found"},
		{[]string{"catalog", "index", "--collection", "demo/short"}, api.ExitUsage, "namespace/slug-id"},
		{[]string{"catalog", "show", "demo/none"}, api.ExitNotFound, "not in the catalog"},
		{[]string{"catalog", "show", "--local", "demo/none"}, api.ExitNotFound, "not in the catalog"},
		{[]string{"catalog", "show", "demo/m:Q4_K_M"}, api.ExitUsage, "named org/name"},
		{[]string{"catalog", "import", "demo/m", "--format", "zip"}, api.ExitUsage, "use dir or qcow2"},
		{[]string{"catalog", "import", "demo/none"}, api.ExitNotFound, "not in the catalog"},
		{[]string{"catalog", "list", "--sort", "stars"}, api.ExitUsage, "sort \"stars\""},
		{[]string{"catalog", "search"}, api.ExitUsage, "want search TEXT"},
	} {
		r := run(t, tc.args...)
		out := r.stderr + r.stdout
		if r.code != tc.code || !strings.Contains(out, tc.text) {
			t.Errorf("%q: want exit %d and %q\n%s", tc.args, tc.code, tc.text, r)
		}
	}
	// Nothing was written by the failed runs.
	if _, err := os.Stat(cfg.Paths.CatalogFile()); !os.IsNotExist(err) {
		t.Errorf("catalog file after failed indexes: %v", err)
	}
}
