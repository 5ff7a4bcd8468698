// Package flmtest provides hal0's tests with a stand-in for FastFlowLM's
// flm and for podman running the FLM toolbox image (see the standin
// command's documentation for what it reproduces): an NPU, the toolbox
// image and huggingface.co cannot exist in a test. Build compiles it; the
// Env helpers write a catalog (model_list.json) and the environment that
// points hal0 and the stand-in at each other.
package flmtest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hal0ai/hal0/internal/testbin"
)

// Build compiles the stand-in into dir as "flm", with a "podman" symlink
// next to it (the program acts as podman under that name). It returns the
// two paths.
func Build(dir string) (flm, podman string, err error) {
	// Built under its own name, then renamed: dir may hold another
	// program called standin.
	p, err := testbin.Build(filepath.Join(dir, ".flm-standin"), "github.com/hal0ai/hal0/internal/flm/flmtest/standin")
	if err != nil {
		return "", "", err
	}
	flm = filepath.Join(dir, "flm")
	if err := os.Rename(p[0], flm); err != nil {
		return "", "", err
	}
	os.Remove(filepath.Dir(p[0]))
	podman = filepath.Join(dir, "podman")
	if err := os.Symlink("flm", podman); err != nil {
		return "", "", err
	}
	return flm, podman, nil
}

// Model is one catalog entry of the stand-in.
type Model struct {
	Tag    string   // family:size
	Repo   string   // Hugging Face repository name, the cache directory
	Size   int64    // bytes, split over the files other than config.json
	Files  []string // default: config.json, model.q4nx, tokenizer.json
	Labels []string
}

// FilesOrDefault returns m's files.
func (m Model) FilesOrDefault() []string {
	if len(m.Files) > 0 {
		return m.Files
	}
	return []string{"config.json", "model.q4nx", "tokenizer.json"}
}

// Catalog is the default test catalog: qwen3:4b (the one tests pull),
// llama3.2:1b and an embedding model.
func Catalog(size int64) []Model {
	return []Model{
		{Tag: "qwen3:4b", Repo: "Qwen3-4B-NPU2", Size: size, Labels: []string{"reasoning", "tool-calling"}},
		{Tag: "llama3.2:1b", Repo: "Llama-3.2-1B-NPU2", Size: size / 2},
		{Tag: "embed-gemma:300m", Repo: "embeddinggemma-300m-NPU2", Size: 1 << 20, Labels: []string{"embeddings"}},
	}
}

// WriteModelList writes models as flm's model_list.json to path.
func WriteModelList(path string, models []Model) error {
	doc := map[string]any{"model_path": "models"}
	fams := map[string]map[string]any{}
	for _, m := range models {
		fam, size, ok := strings.Cut(m.Tag, ":")
		if !ok {
			return fmt.Errorf("tag %q is not family:size", m.Tag)
		}
		if fams[fam] == nil {
			fams[fam] = map[string]any{}
		}
		labels := m.Labels
		if labels == nil {
			labels = []string{}
		}
		fams[fam][size] = map[string]any{
			"name": m.Repo, "url": "https://huggingface.co/FastFlowLM/" + m.Repo,
			"size": m.Size, "files": m.FilesOrDefault(), "flm_min_version": "0.9.0",
			"default_context_length": 32768, "vlm": false, "asr": false, "footprint": 2.5,
			"label": labels, "details": map[string]any{"format": "NPU2", "family": fam},
		}
	}
	doc["models"] = fams
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Invocation is one line of FLM_STANDIN_LOG.
type Invocation struct {
	Prog         string   `json:"prog"`
	Args         []string `json:"args"`
	Home         string   `json:"home"`
	FLMModelPath string   `json:"flm_model_path"`
}

// ReadLog reads FLM_STANDIN_LOG.
func ReadLog(path string) ([]Invocation, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Invocation
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var inv Invocation
		if err := json.Unmarshal([]byte(l), &inv); err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	return out, nil
}

// Env is what a test needs to run hal0 against the stand-in.
type Env struct {
	FLM, Podman string // executables
	ModelList   string // model_list.json (FLM_CONFIG_PATH)
	CacheDir    string // flm.cache_dir
	Log         string // FLM_STANDIN_LOG
	State       string // PODMAN_STANDIN_STATE
	Image       string // the only image the podman stand-in knows
	Models      []Model
}

// DefaultImage is the toolbox image name tests configure.
const DefaultImage = "localhost/hal0-toolbox-flm:test"

// Vars returns the environment variables for hal0 (HAL0_FLM_*) and the
// stand-in; runtime is "host" or "podman". extra are further knobs
// (FLM_STANDIN_RATE=…).
func (e *Env) Vars(runtime string, extra ...string) map[string]string {
	v := map[string]string{
		"HAL0_FLM_RUNTIME":   runtime,
		"HAL0_FLM_CACHE_DIR": e.CacheDir,
		"FLM_STANDIN_LOG":    e.Log,
	}
	switch runtime {
	case "host":
		v["HAL0_FLM_PATH"] = e.FLM
		v["FLM_CONFIG_PATH"] = e.ModelList
	case "podman":
		v["HAL0_FLM_PODMAN"] = e.Podman
		v["HAL0_FLM_TOOLBOX_IMAGE"] = e.Image
		v["PODMAN_STANDIN_FLM_CONFIG"] = e.ModelList
		v["PODMAN_STANDIN_STATE"] = e.State
		v["PODMAN_STANDIN_IMAGES"] = e.Image
	}
	for _, kv := range extra {
		k, val, _ := strings.Cut(kv, "=")
		v[k] = val
	}
	return v
}

// Environ turns vars into KEY=VALUE pairs, sorted.
func Environ(vars map[string]string) []string {
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// NewEnv lays out the stand-in's files under dir: the catalog, the cache
// directory and the podman state. flm and podman come from Build.
func NewEnv(dir, flm, podman string, models []Model) (*Env, error) {
	e := &Env{
		FLM: flm, Podman: podman, Models: models, Image: DefaultImage,
		ModelList: filepath.Join(dir, "share", "flm", "model_list.json"),
		CacheDir:  filepath.Join(dir, "var", "lib", "hal0", ".config", "flm", "models"),
		Log:       filepath.Join(dir, "flm-standin.log"),
		State:     filepath.Join(dir, "podman-state"),
	}
	if err := WriteModelList(e.ModelList, models); err != nil {
		return nil, err
	}
	for _, d := range []string{e.CacheDir, e.State} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// ModelDir is where the stand-in puts tag's files in the cache.
func (e *Env) ModelDir(tag string) string {
	for _, m := range e.Models {
		if m.Tag == tag {
			return filepath.Join(e.CacheDir, m.Repo)
		}
	}
	return ""
}
