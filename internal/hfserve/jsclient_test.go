package hfserve

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hubtest"
)

// skipOrFail skips with a reason, or fails when HAL0_LIVE_REQUIRED=1 (set
// by `make test`), where a missing tool must not pass silently.
func skipOrFail(t *testing.T, format string, a ...any) {
	t.Helper()
	if os.Getenv("HAL0_LIVE_REQUIRED") == "1" {
		t.Fatalf(format+" (HAL0_LIVE_REQUIRED=1: this test must run)", a...)
	}
	t.Skipf(format, a...)
}

// jsClient makes sure testdata/jsclient has its node_modules (npm ci from
// the committed lock file) and returns the node binary.
func jsClient(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "node is not installed: the @huggingface/hub client test needs Node.js >= 18 and npm")
	}
	dir, _ := filepath.Abs(filepath.Join("testdata", "jsclient"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@huggingface", "hub", "package.json")); err == nil {
		return node
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		skipOrFail(t, "npm is not installed: the @huggingface/hub client test needs it to install the client")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		skipOrFail(t, "npm ci in %s failed (no access to the npm registry?): %v\n%s", dir, err, out)
	}
	return node
}

type jsEntry struct {
	Type string `json:"type"`
	Path string `json:"path"`
	Size int64  `json:"size"`
	OID  string `json:"oid"`
	LFS  *struct {
		OID  string `json:"oid"`
		Size int64  `json:"size"`
	} `json:"lfs"`
}

// TestJSClientDownloadsShardedModel has @huggingface/hub, Hugging Face's
// JavaScript client, download a sharded GGUF model from hfserve (with the
// read token) and compares every byte.
func TestJSClientDownloadsShardedModel(t *testing.T) {
	node := jsClient(t)
	s := newStore(t)
	want := map[string][]byte{}
	var files []tfile
	// Shards above 1 MB: the client probes them with Range: bytes=0-0 and
	// streams them; smaller files it fetches whole.
	for _, f := range hubtest.GenerateGGUFShards("", "Q4_K_M/tiny", "Q4_K_M", 3, 1<<20+12345, 3) {
		files = append(files, tfile{f.Path, f.Data, f.LFS})
	}
	files = append(files, tfile{"README.md", []byte("# tiny\n"), false}, tfile{"configs/generation_config.json", []byte(`{"temperature": 0.7}` + "\n"), false})
	for _, f := range files {
		want[f.path] = f.data
	}
	commit := strings.Repeat("ab", 20)
	s.add(tmodel{id: "demo/tiny-GGUF:Q4_K_M", repo: "demo/tiny-GGUF", commit: commit, rev: "main", installed: day(1), files: files})
	const tok = "hf_hal0readtokenhal0readtokenhal0readtoken"
	// A small page size makes the client follow Link pagination.
	srv := serve(t, Options{Registry: s.reg, Token: config.NewSecret(tok), PageSize: 2})

	work := t.TempDir()
	out, cache, result := filepath.Join(work, "out"), filepath.Join(work, "cache"), filepath.Join(work, "result.json")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "jsclient", "download.mjs"), srv.url, "demo/tiny-GGUF", out, cache, result)
	cmd.Env = append(os.Environ(), "HAL0_TEST_TOKEN="+tok)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("@huggingface/hub client: %v\n%s\nserver log:\n%s", err, stderr.String(), srv.logs)
	}
	var res struct {
		SHA           string    `json:"sha"`
		Listing       []jsEntry `json:"listing"`
		PathsInfo     []jsEntry `json:"pathsInfo"`
		MissingIsNull bool      `json:"missingIsNull"`
		Snapshot      string    `json:"snapshot"`
	}
	b, err := os.ReadFile(result)
	must(t, err)
	must(t, json.Unmarshal(b, &res))
	if res.SHA != commit || !res.MissingIsNull {
		t.Errorf("sha %s (want %s), missing file null: %v", res.SHA, commit, res.MissingIsNull)
	}
	if filepath.Base(res.Snapshot) != commit {
		t.Errorf("snapshot folder %s is not named after the commit", res.Snapshot)
	}
	var listed []string
	for _, e := range res.Listing {
		if e.Type != "file" {
			continue
		}
		listed = append(listed, e.Path)
		d := want[e.Path]
		if e.Size != int64(len(d)) || strings.HasSuffix(e.Path, ".gguf") != (e.LFS != nil) ||
			e.LFS != nil && e.LFS.OID != sha256Hex(d) || e.LFS == nil && e.OID != gitBlobOID(d) {
			t.Errorf("listed %+v", e)
		}
	}
	sort.Strings(listed)
	if len(listed) != len(want) || len(res.PathsInfo) != len(want) {
		t.Fatalf("listed %v and %d paths-info entries for %d files", listed, len(res.PathsInfo), len(want))
	}
	for p, d := range want {
		for _, root := range []string{out, res.Snapshot} {
			got, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
			if err != nil || !bytes.Equal(got, d) {
				t.Errorf("%s under %s: %d bytes (%v), want %d identical bytes", p, root, len(got), err, len(d))
			}
		}
	}
}
