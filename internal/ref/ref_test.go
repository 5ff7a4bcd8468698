package ref

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ref
		str  string // canonical; "" means same as in
	}{
		{"qwen3:4b", Ref{Kind: KindFLM, Tag: "qwen3:4b"}, ""},
		{"llama3.2:1b", Ref{Kind: KindFLM, Tag: "llama3.2:1b"}, ""},
		{"gemma4-it:e2b", Ref{Kind: KindFLM, Tag: "gemma4-it:e2b"}, ""},
		{"Qwen3:4B", Ref{Kind: KindFLM, Tag: "qwen3:4b"}, "qwen3:4b"},
		{"my-model", Ref{Kind: KindLocal, ID: "my-model"}, ""},
		{"gemma4-it-e2b-FLM", Ref{Kind: KindLocal, ID: "gemma4-it-e2b-FLM"}, ""},
		{"Qwen/Qwen3-4B-GGUF", Ref{Kind: KindHF, Repo: "Qwen/Qwen3-4B-GGUF"}, ""},
		{"Qwen/Qwen3-4B-GGUF:Q4_K_M", Ref{Kind: KindHF, Repo: "Qwen/Qwen3-4B-GGUF", Quant: "Q4_K_M"}, ""},
		{"Qwen/Qwen3-4B-GGUF:q4_k_m", Ref{Kind: KindHF, Repo: "Qwen/Qwen3-4B-GGUF", Quant: "Q4_K_M"}, "Qwen/Qwen3-4B-GGUF:Q4_K_M"},
		{"unsloth/GLM-4.6-GGUF:UD-Q4_K_XL", Ref{Kind: KindHF, Repo: "unsloth/GLM-4.6-GGUF", Quant: "UD-Q4_K_XL"}, ""},
		{"org/name@v1.0", Ref{Kind: KindHF, Repo: "org/name", Revision: "v1.0"}, ""},
		{"org/name@0123456789abcdef0123456789abcdef01234567:Q8_0", Ref{Kind: KindHF, Repo: "org/name", Revision: "0123456789abcdef0123456789abcdef01234567", Quant: "Q8_0"}, ""},
		{"org/name@refs/pr/12", Ref{Kind: KindHF, Repo: "org/name", Revision: "refs/pr/12"}, ""},
		{"org/name@refs/pr/12/sub/f.gguf", Ref{Kind: KindHF, Repo: "org/name", Revision: "refs/pr/12", File: "sub/f.gguf"}, ""},
		{"org/name/Q4_K_M/model-Q4_K_M-00001-of-00002.gguf", Ref{Kind: KindHF, Repo: "org/name", File: "Q4_K_M/model-Q4_K_M-00001-of-00002.gguf"}, ""},
		{"hf://org/name", Ref{Kind: KindHF, Repo: "org/name"}, "org/name"},
		{"hf://org/name?format=dir", Ref{Kind: KindHF, Repo: "org/name", Format: FormatDir}, "org/name"},
		{"hf://org/name?format=qcow2", Ref{Kind: KindHF, Repo: "org/name", Format: FormatQCOW2}, ""},
		{"hf://org/name:Q4_K_M?format=qcow2", Ref{Kind: KindHF, Repo: "org/name", Quant: "Q4_K_M", Format: FormatQCOW2}, ""},
		{"hf://org/name?quant=q8_0&revision=dev", Ref{Kind: KindHF, Repo: "org/name", Quant: "Q8_0", Revision: "dev"}, "org/name@dev:Q8_0"},
		{"hf://org/name?file=a/b.gguf", Ref{Kind: KindHF, Repo: "org/name", File: "a/b.gguf"}, "org/name/a/b.gguf"},
		{"https://huggingface.co/org/name", Ref{Kind: KindHF, Repo: "org/name"}, "org/name"},
		{"https://huggingface.co/org/name/blob/main/x/y.gguf", Ref{Kind: KindHF, Repo: "org/name", Revision: "main", File: "x/y.gguf"}, "org/name@main/x/y.gguf"},
		{"https://huggingface.co/org/name/resolve/abc123/y.gguf", Ref{Kind: KindHF, Repo: "org/name", Revision: "abc123", File: "y.gguf"}, "org/name@abc123/y.gguf"},
		{"https://huggingface.co/org/name/tree/dev", Ref{Kind: KindHF, Repo: "org/name", Revision: "dev"}, "org/name@dev"},
		{"hf.co/org/name:Q4_K_M", Ref{Kind: KindHF, Repo: "org/name", Quant: "Q4_K_M"}, "org/name:Q4_K_M"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Parse = %+v, want %+v", got, tc.want)
			}
			want := tc.str
			if want == "" {
				want = tc.in
			}
			if got.String() != want {
				t.Errorf("String = %q, want %q", got.String(), want)
			}
			// The canonical form must parse back to the same ref.
			again, err := Parse(got.String())
			if err != nil || again.String() != got.String() {
				t.Errorf("canonical %q re-parses to %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"../x", "repository owner"},
		{"org/../x", "repository name"},
		{"org/name/../../etc/passwd", `".." segment`},
		{"org/name//x", "absolute"},
		{"org/name/a//b", "empty segment"},
		{"org/name/./x", `"." segment`},
		{"org/name/a\\b", "backslash"},
		{"/abs/path", "missing repository owner"},
		{"org/", "missing repository name"},
		{"org/name:", "empty quant"},
		{"org/name@", "empty revision"},
		{"org/name@refs/heads/x", "only refs/pr/N"},
		{"org/na me", "whitespace"},
		{"org/name\x00", "control character"},
		{"org/name\n", "control character"},
		{"qwen3:", "both parts"},
		{":4b", "both parts"},
		{"a:b:c", "family:size"},
		{".hidden", "local model id"},
		{"hf://org/name?format=iso", "format"},
		{"hf://org/name?color=red", "unknown parameter"},
		{"hf://org/name?quant=Q4&quant=Q8", "given 2 times"},
		{"hf://org/name:Q4?file=x", "combined"},
		{"https://example.com/org/name", "only huggingface.co"},
		{"https://huggingface.co/org/name/commits/main", "unknown link kind"},
		{"org/" + strings.Repeat("n", 97), "repository name"},
		{strings.Repeat("a", MaxInputLen+1), "longer than"},
		{"org/name/" + strings.Repeat("-", 300), "too long"},
		{"\xff\xfe/x", "UTF-8"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := Parse(tc.in)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

func TestUnitRoundTrip(t *testing.T) {
	for _, in := range []string{
		"qwen3:4b",
		"meta-llama/Llama-3-8B:Q4_K_M",
		"org/name@refs/pr/3/dir/file-00001-of-00002.gguf",
		"hf://org/name:Q4_K_M?format=qcow2",
		"local_model+v2",
	} {
		r := MustParse(in)
		unit := r.Unit()
		if !strings.HasPrefix(unit, "hal0-pull@") || !strings.HasSuffix(unit, ".service") {
			t.Fatalf("unit %q", unit)
		}
		back, err := FromUnit(unit)
		if err != nil || back != r {
			t.Errorf("FromUnit(%q) = %+v, %v; want %+v", unit, back, err, r)
		}
	}
	if got := MustParse("meta-llama/Llama-3-8B:Q4_K_M").Unit(); got != `hal0-pull@meta\x2dllama-Llama\x2d3\x2d8B:Q4_K_M.service` {
		t.Errorf("unit = %s", got)
	}
	if _, err := FromUnit("hal0-slot@x.service"); err == nil {
		t.Error("FromUnit accepted another template")
	}
}

// TestUnitMatchesSystemdEscape checks the escaping against the real
// systemd-escape, which is what `systemctl start hal0-pull@…` users type
// through.
func TestUnitMatchesSystemdEscape(t *testing.T) {
	bin, err := exec.LookPath("systemd-escape")
	if err != nil {
		t.Skip("systemd-escape not installed (package systemd): cannot compare with the real escaper")
	}
	for _, in := range []string{"qwen3:4b", "Qwen/Qwen3-4B-GGUF:Q4_K_M", "org/name@refs/pr/3/x.gguf", "hf://org/name?format=qcow2"} {
		r := MustParse(in)
		out, err := exec.Command(bin, "--template", PullTemplate, r.String()).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != r.Unit() {
			t.Errorf("%s: systemd-escape %q, ours %q", in, got, r.Unit())
		}
		// %I is systemd-escape -u of the instance: it must give back the
		// canonical ref the worker parses.
		inst := strings.TrimSuffix(strings.TrimPrefix(r.Unit(), "hal0-pull@"), ".service")
		out, err = exec.Command(bin, "-u", inst).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != r.String() {
			t.Errorf("%s: unescaped %q, want %q", in, got, r.String())
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"qwen3:4b", "org/name:Q4_K_M", "org/name@refs/pr/1/a/b", "hf://o/n?format=qcow2&quant=x", "https://huggingface.co/o/n/blob/main/f", "../x", "a:b", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		c := r.String()
		r2, err := Parse(c)
		if err != nil {
			t.Fatalf("canonical %q of %q does not parse: %v", c, s, err)
		}
		if r2 != r || r2.String() != c {
			t.Fatalf("round trip %q -> %q -> %+v", s, c, r2)
		}
		if r.File != "" {
			if _, err := CleanRepoPath(r.File); err != nil {
				t.Fatalf("accepted unsafe path %q", r.File)
			}
		}
		back, err := FromUnit(r.Unit())
		if err != nil || back != r {
			t.Fatalf("unit round trip of %q: %+v %v", c, back, err)
		}
	})
}
