package pull

import (
	"errors"
	"strings"
	"testing"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/hf"
)

func tree(paths ...string) []hf.Entry {
	var out []hf.Entry
	for _, p := range paths {
		out = append(out, hf.Entry{Type: "file", Path: p, Size: 1})
	}
	return out
}

func paths(sel *Selection) string {
	var ps []string
	for _, f := range sel.Files {
		ps = append(ps, f.Path)
	}
	return strings.Join(ps, " ")
}

func TestSelect(t *testing.T) {
	gguf := tree("README.md", ".gitattributes",
		"m-Q4_K_M-00001-of-00002.gguf", "m-Q4_K_M-00002-of-00002.gguf",
		"m-Q4_K_S.gguf", "m-Q8_0.gguf", "mmproj-m-F16.gguf", "mmproj-m-Q8_0.gguf", "m-imatrix.gguf")
	st := tree("config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
		"model.safetensors.index.json", "tokenizer.json", "extra/notes.txt")
	for _, tc := range []struct {
		name  string
		tree  []hf.Entry
		c     Criteria
		want  string
		main  string
		quant string
		code  string
	}{
		{name: "quant picks all shards and an mmproj", tree: gguf, c: Criteria{Quant: "q4_k_m"},
			want: "m-Q4_K_M-00001-of-00002.gguf m-Q4_K_M-00002-of-00002.gguf mmproj-m-F16.gguf", main: "m-Q4_K_M-00001-of-00002.gguf", quant: "Q4_K_M"},
		{name: "quant token is whole", tree: gguf, c: Criteria{Quant: "Q4_K_S"}, want: "m-Q4_K_S.gguf mmproj-m-F16.gguf", main: "m-Q4_K_S.gguf"},
		{name: "mmproj of the same quant", tree: gguf, c: Criteria{Quant: "Q8_0"}, want: "m-Q8_0.gguf mmproj-m-Q8_0.gguf"},
		{name: "default quant preference", tree: gguf, c: Criteria{DefaultQuant: []string{"Q8_0", "Q4_K_M"}}, want: "m-Q8_0.gguf mmproj-m-Q8_0.gguf", quant: "Q8_0"},
		{name: "explicit shard brings its set", tree: gguf, c: Criteria{File: "m-Q4_K_M-00002-of-00002.gguf"},
			want: "m-Q4_K_M-00001-of-00002.gguf m-Q4_K_M-00002-of-00002.gguf", main: "m-Q4_K_M-00001-of-00002.gguf"},
		{name: "explicit file", tree: gguf, c: Criteria{File: "README.md"}, want: "README.md"},
		{name: "missing quant", tree: gguf, c: Criteria{Quant: "Q2_K"}, code: api.CodeNoMatch},
		{name: "missing file", tree: gguf, c: Criteria{File: "nope.gguf"}, code: api.CodeEntryNotFound},
		{name: "ambiguous quant", tree: tree("a-Q4_0.gguf", "b-Q4_0.gguf"), c: Criteria{Quant: "Q4_0"}, code: api.CodeAmbiguous},
		{name: "incomplete split", tree: tree("m-Q4_0-00001-of-00003.gguf", "m-Q4_0-00002-of-00003.gguf"), c: Criteria{Quant: "Q4_0"}, code: api.CodeBadResponse},
		{name: "whole repo", tree: st, c: Criteria{}, want: "config.json extra/notes.txt model-00001-of-00002.safetensors model-00002-of-00002.safetensors model.safetensors.index.json tokenizer.json"},
		{name: "include completes shards and index", tree: st, c: Criteria{Include: []string{"model-00001*"}},
			want: "model-00001-of-00002.safetensors model-00002-of-00002.safetensors model.safetensors.index.json"},
		{name: "index brings shards", tree: st, c: Criteria{Include: []string{"*.index.json"}},
			want: "model-00001-of-00002.safetensors model-00002-of-00002.safetensors model.safetensors.index.json"},
		{name: "glob matches base names", tree: st, c: Criteria{Include: []string{"*.txt"}}, want: "extra/notes.txt"},
		{name: "exclude", tree: st, c: Criteria{Exclude: []string{"*.safetensors", "*.index.json", "extra/*"}}, want: "config.json tokenizer.json"},
		{name: "include nothing", tree: st, c: Criteria{Include: []string{"*.bin"}}, code: api.CodeNoMatch},
		{name: "bad glob", tree: st, c: Criteria{Include: []string{"[abc"}}, code: api.CodeBadRequest},
		{name: "traversal in listing", tree: tree("ok.json", "../../etc/passwd"), c: Criteria{}, code: api.CodeUnsafePath},
		{name: "absolute in listing", tree: tree("/etc/passwd"), c: Criteria{}, code: api.CodeUnsafePath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := Select(tc.tree, tc.c)
			if tc.code != "" {
				var ae *api.Error
				if !errors.As(err, &ae) || ae.Code != tc.code {
					t.Fatalf("err = %v, want code %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := paths(sel); got != tc.want {
				t.Errorf("files = %s\nwant    %s", got, tc.want)
			}
			if tc.main != "" && sel.Main != tc.main {
				t.Errorf("main = %s, want %s", sel.Main, tc.main)
			}
			if tc.quant != "" && sel.Quant != tc.quant {
				t.Errorf("quant = %s, want %s", sel.Quant, tc.quant)
			}
		})
	}
}

func TestQuantOf(t *testing.T) {
	for in, want := range map[string]string{
		"Qwen3-4B-Q4_K_M.gguf":                           "Q4_K_M",
		"qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf": "Q4_K_M",
		"GLM-4.6-UD-Q4_K_XL-00001-of-00005.gguf":         "UD-Q4_K_XL",
		"BF16/model-BF16-00001-of-00002.gguf":            "BF16",
		"model-IQ2_XXS.gguf":                             "IQ2_XXS",
		"model.gguf":                                     "",
	} {
		if got := quantOf(in); got != want {
			t.Errorf("quantOf(%s) = %q, want %q", in, got, want)
		}
	}
}
