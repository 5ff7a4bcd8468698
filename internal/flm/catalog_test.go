package flm

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// listOut is `flm list -j` as flm prints it: an update warning on stdout
// before one pretty-printed object whose entries are model_list.json's,
// with name and model set to the tag.
const listOut = `[WARNING]  FLM v0.9.42 is outdated; v0.9.43 is available
{
    "models": [
        {
            "name": "qwen3:4b",
            "model": "qwen3:4b",
            "installed": true,
            "url": "https://huggingface.co/FastFlowLM/Qwen3-4B-NPU2/resolve/v0.9.40",
            "size": 3145728000.0,
            "footprint": 4.2,
            "files": ["config.json", "model.q4nx"],
            "label": ["reasoning", "tool-calling"],
            "default_context_length": 32768,
            "details": {"format": "NPU2", "family": "qwen3"}
        },
        {
            "name": "embed-gemma:300m",
            "model": "embed-gemma:300m",
            "installed": false,
            "url": "https://huggingface.co/FastFlowLM/embeddinggemma-300m-NPU2",
            "size": 629145600,
            "label": "embeddings"
        },
        {"model": "whisper-v3:turbo", "installed": false, "asr": true, "url": "https://huggingface.co/FastFlowLM/whisper-large-v3-turbo-NPU2"},
        {"model": "gemma3:4b", "installed": false, "vlm": true, "label": ["vision"], "url": "https://huggingface.co/FastFlowLM/gemma3-4b-it-NPU2"}
    ]
}
`

func TestParseList(t *testing.T) {
	c, err := ParseList([]byte(listOut))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Tags(), []string{"embed-gemma:300m", "gemma3:4b", "qwen3:4b", "whisper-v3:turbo"}) {
		t.Fatalf("tags %v", c.Tags())
	}
	if !reflect.DeepEqual(c.Warnings, []string{"[WARNING]  FLM v0.9.42 is outdated; v0.9.43 is available"}) {
		t.Errorf("warnings %q", c.Warnings)
	}
	q, ok := c.Get("qwen3:4b")
	if !ok || !q.Installed || q.Size != 3145728000 || q.Footprint != 4.2 || q.Context != 32768 || q.Family != "qwen3" ||
		q.RepoDir() != "Qwen3-4B-NPU2" || !reflect.DeepEqual(q.Files, []string{"config.json", "model.q4nx"}) {
		t.Errorf("qwen3:4b %+v (repo %q)", q, q.RepoDir())
	}
	for tag, want := range map[string][]string{
		"qwen3:4b":         {"chat"},
		"embed-gemma:300m": {"embed"}, // label given as a string
		"whisper-v3:turbo": {"asr"},
		"gemma3:4b":        {"chat", "vision"},
	} {
		e, _ := c.Get(tag)
		if got := e.Capabilities(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s capabilities %v, want %v", tag, got, want)
		}
	}
	// is_flm_tag: a ":" and a catalog entry.
	for id, want := range map[string]bool{"qwen3:4b": true, "qwen3:5b": false, "qwen3": false, "org/name:Q4_K_M": false} {
		if got := c.IsTag(id); got != want {
			t.Errorf("IsTag(%q) = %v", id, got)
		}
	}
}

func TestParseListMinimal(t *testing.T) {
	// The Python hal0's test sample: model and installed only.
	c, err := ParseList([]byte(`{"models":[{"model":"gemma4-it:e4b","installed":true},{"model":"qwen3:0.6b","installed":false}]}`))
	if err != nil || len(c.Entries) != 2 || !c.Entries[0].Installed || c.Entries[1].Tag != "qwen3:0.6b" {
		t.Fatalf("%+v %v", c, err)
	}
	empty, err := ParseList([]byte("{\"models\": []}\n"))
	if err != nil || len(empty.Entries) != 0 {
		t.Fatalf("empty catalog: %+v %v", empty, err)
	}
}

func TestParseListErrors(t *testing.T) {
	for in, want := range map[string]string{
		"Models:\n  - qwen3:4b ✅\n":   `no JSON object: "Models:"`,
		"[WARNING] x\n{\"models\": [": "malformed JSON",
		`{"version": "0.9.43"}`:       `without "models"`,
		"":                            "no JSON object",
	} {
		if _, err := ParseList([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseList(%q): %v, want %q", in, err, want)
		}
	}
}

func TestRepoDir(t *testing.T) {
	for u, want := range map[string]string{
		"https://huggingface.co/FastFlowLM/Qwen3-4B-NPU2":                 "Qwen3-4B-NPU2",
		"https://huggingface.co/FastFlowLM/Qwen3-4B-NPU2/resolve/v0.9.40": "Qwen3-4B-NPU2",
		"https://huggingface.co/FastFlowLM":                               "",
		"https://huggingface.co/FastFlowLM/..":                            "",
		"":                                                                "",
	} {
		e := Entry{URL: u}
		if got := e.RepoDir(); got != want {
			t.Errorf("RepoDir(%q) = %q, want %q", u, got, want)
		}
	}
}

func TestMountCheck(t *testing.T) {
	cache := t.TempDir()
	c, err := ParseList([]byte(`{"models":[
		{"model":"a:1b","installed":false,"url":"https://huggingface.co/F/A","files":["config.json","w.bin"]},
		{"model":"b:1b","installed":false,"url":"https://huggingface.co/F/B","files":["config.json","w.bin"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	// Nothing on disk, nothing installed: a fresh cache, not a blind flm.
	if unseen, blind := c.MountCheck(cache); blind || len(unseen) != 0 {
		t.Fatalf("empty cache: %v %v", unseen, blind)
	}
	// A partial model does not count.
	os.MkdirAll(filepath.Join(cache, "A"), 0o755)
	os.WriteFile(filepath.Join(cache, "A", "config.json"), []byte("{}"), 0o644)
	if _, blind := c.MountCheck(cache); blind {
		t.Fatal("a partial model made flm look blind")
	}
	// A complete model flm does not count as installed: flm does not see
	// this directory.
	os.WriteFile(filepath.Join(cache, "A", "w.bin"), []byte("x"), 0o644)
	if unseen, blind := c.MountCheck(cache); !blind || !reflect.DeepEqual(unseen, []string{"a:1b"}) {
		t.Fatalf("complete model unseen: %v %v", unseen, blind)
	}
	// An flm that sees some models installed sees the directory: the
	// other may be from a newer flm.
	c.Entries[1].Installed = true
	if _, blind := c.MountCheck(cache); blind {
		t.Fatal("blind although flm sees an installed model")
	}
}
