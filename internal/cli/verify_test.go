package cli

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/registry"
)

func TestModelVerify(t *testing.T) {
	cfg := config.Default(t.TempDir())
	old := LoadConfig
	LoadConfig = func() (*config.Config, error) { c := *cfg; return &c, nil }
	t.Cleanup(func() { LoadConfig = old })

	dir := filepath.Join(cfg.Paths.PullDir(), "org", "m", "main-Q4_K_M")
	files := map[string][]byte{"m-00001-of-00002.gguf": []byte("GGUF first shard"), "m-00002-of-00002.gguf": []byte("second shard"), "sub/config.json": []byte(`{"a":1}`)}
	m := &registry.Model{ID: "org/m:Q4_K_M", Path: dir, Dir: dir}
	for _, p := range []string{"m-00001-of-00002.gguf", "m-00002-of-00002.gguf", "sub/config.json"} {
		data := files[p]
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), data, 0o644)
		s := sha256.Sum256(data)
		f := registry.File{Path: p, Size: int64(len(data)), SHA256: hex.EncodeToString(s[:])}
		if strings.HasSuffix(p, ".json") {
			g := sha1.Sum([]byte(fmt.Sprintf("blob %d\x00%s", len(data), data)))
			f.GitOID = hex.EncodeToString(g[:])
		}
		m.Files = append(m.Files, f)
	}
	if err := registry.Open(cfg.Paths.RegistryFile()).Update(context.Background(), func(r *registry.Registry) error { r.Put(m); return nil }); err != nil {
		t.Fatal(err)
	}

	if r := run(t, "model", "verify", "org/m:q4_k_m"); r.code != 0 || !strings.Contains(r.stdout, "all 3 files match") {
		t.Fatalf("intact model: %s", r)
	}
	// Flip one byte of a shard, shorten another file: verify names both
	// and exits with the failure code; --json says the same.
	os.WriteFile(filepath.Join(dir, "m-00002-of-00002.gguf"), []byte("secOnd shard"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub/config.json"), []byte(`{}`), 0o644)
	r := run(t, "model", "verify", "org/m:Q4_K_M", "--json")
	if r.code != 1 {
		t.Fatalf("damaged model exit %d: %s", r.code, r)
	}
	var rep VerifyReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	got := map[string]string{}
	for _, f := range rep.Files {
		got[f.Path] = f.Status
	}
	if rep.OK || got["m-00001-of-00002.gguf"] != "ok" || got["m-00002-of-00002.gguf"] != "mismatch" || got["sub/config.json"] != "size" {
		t.Fatalf("report %+v", rep)
	}
	os.Remove(filepath.Join(dir, "m-00001-of-00002.gguf"))
	if r := run(t, "model", "verify", "org/m:Q4_K_M"); r.code != 1 || !strings.Contains(r.stdout, "missing  m-00001-of-00002.gguf") || !strings.Contains(r.stderr, "pull it again") {
		t.Fatalf("missing file: %s", r)
	}
	if r := run(t, "model", "verify", "no/such:Q4"); r.code != 3 {
		t.Fatalf("unknown model: %s", r)
	}
}
