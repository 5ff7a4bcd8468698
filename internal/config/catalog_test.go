package config

import (
	"strings"
	"testing"
	"time"
)

func TestCatalogConfig(t *testing.T) {
	home := t.TempDir()
	writeConfig(t, home, `
[catalog]
interval = "6h"
limit = 40
certified_orgs = ["Qwen"]
full = true

[[catalog.source]]
orgs = ["Qwen", "unsloth"]
task = "text-generation"
sort = "likes"
direction = "asc"
limit = 10

[[catalog.source]]
collections = ["Qwen/qwen3-67dd247413f0e2e4f99a6f4b"]
search = "GGUF"
full = false
`)
	c, err := LoadEnv(envMap(map[string]string{"HAL0_HOME": home}))
	if err != nil {
		t.Fatal(err)
	}
	cat := c.Catalog
	if cat.Interval.D() != 6*time.Hour || cat.Limit != 40 || !cat.Full || cat.Concurrency != DefaultCatalogConcurrency ||
		len(cat.CertifiedOrgs) != 1 || len(cat.Sources) != 2 {
		t.Fatalf("catalog %+v", cat)
	}
	s0, s1 := cat.Sources[0], cat.Sources[1]
	if strings.Join(s0.Orgs, ",") != "Qwen,unsloth" || s0.Task != "text-generation" || s0.Sort != "likes" ||
		s0.Direction != "asc" || s0.Limit != 10 || !s0.FullOr(cat.Full) {
		t.Errorf("source 0 %+v", s0)
	}
	if s1.Collections[0] != "Qwen/qwen3-67dd247413f0e2e4f99a6f4b" || s1.FullOr(cat.Full) || s1.Search != "GGUF" {
		t.Errorf("source 1 %+v", s1)
	}
	if got := c.Paths.CatalogFile(); got != home+"/var/lib/hal0/catalog/catalog.json" {
		t.Errorf("catalog file %s", got)
	}

	d, err := LoadEnv(envMap(map[string]string{"HAL0_CONFIG_DIR": t.TempDir()}))
	if err != nil {
		t.Fatal(err)
	}
	if d.Catalog.Interval.D() != DefaultCatalogInterval || d.Catalog.Limit != DefaultCatalogLimit || len(d.Catalog.Sources) != 0 {
		t.Errorf("defaults %+v", d.Catalog)
	}
}

func TestCatalogConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"unknown source key", "[catalog]\n[[catalog.source]]\norgs = [\"Qwen\"]\norganisation = \"x\"\n", []string{"hal0.toml:4", `unknown key "catalog.source.organisation"`}},
		{"unknown catalog key", "[catalog]\nintervall = \"1h\"\n", []string{"hal0.toml:2", `"catalog.intervall"`}},
		{"empty source", "[[catalog.source]]\nsort = \"likes\"\n", []string{"catalog.source[0]", "names no orgs"}},
		{"bad sort", "[[catalog.source]]\norgs = [\"Qwen\"]\nsort = \"stars\"\n", []string{"catalog.source[0]", `sort "stars"`, "downloads, likes, lastModified"}},
		{"bad direction", "[[catalog.source]]\norgs = [\"Qwen\"]\ndirection = \"up\"\n", []string{"direction \"up\"", "desc or asc"}},
		{"bad collection", "[[catalog.source]]\ncollections = [\"Qwen/qwen3\"]\n", []string{"collection \"Qwen/qwen3\"", "namespace/slug-id"}},
		{"bad org", "[[catalog.source]]\norgs = [\"../etc\"]\n", []string{"organisation \"../etc\""}},
		{"short interval", "[catalog]\ninterval = \"10s\"\n", []string{"catalog.interval", "at least 1m"}},
		{"zero limit", "[catalog]\nlimit = 0\n", []string{"catalog.limit"}},
		{"negative source limit", "[[catalog.source]]\ntask = \"text-generation\"\nlimit = -1\n", []string{"limit = -1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			writeConfig(t, home, tc.body)
			_, err := LoadEnv(envMap(map[string]string{"HAL0_HOME": home}))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
