package unitname

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"qwen3:4b", "qwen3:4b"},
		{"meta-llama/Llama-3-8B:Q4_K_M", `meta\x2dllama-Llama\x2d3\x2d8B:Q4_K_M`},
		{"Qwen/Qwen3-4B-GGUF:Q4_K_M", `Qwen-Qwen3\x2d4B\x2dGGUF:Q4_K_M`},
		{"/", "-"},
		{"//a//", "--a--"},
		{"-", `\x2d`},
		{".hidden", `\x2ehidden`},
		{"a.b", "a.b"},
		{"..", `\x2e.`},
		{"a b", `a\x20b`},
		{`back\slash`, `back\x5cslash`},
		{"x?y=z+w", `x\x3fy\x3dz\x2bw`},
		{"user@host", `user\x40host`},
		{"ü", `\xc3\xbc`},
		{"\x7f\xff", `\x7f\xff`},
		{"_:.", `_:.`},
	}
	for _, tt := range tests {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUnescape(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "", want: ""},
		{in: `meta\x2dllama-Llama\x2d3\x2d8B:Q4_K_M`, want: "meta-llama/Llama-3-8B:Q4_K_M"},
		{in: `a\x2Db`, want: "a-b"}, // systemd accepts upper-case hex too
		{in: "a b", want: "a b"},    // not a valid escape result, but systemd copies it
		{in: `\xc3\xbc`, want: "ü"},
		{in: `a\`, bad: true},
		{in: `a\x`, bad: true},
		{in: `a\x2`, bad: true},
		{in: `a\y20`, bad: true},
		{in: `a\x2g`, bad: true},
		{in: `a\x00b`, bad: true},
	}
	for _, tt := range tests {
		got, err := Unescape(tt.in)
		if tt.bad {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Unescape(%q) = %q, %v; want an ErrInvalid error", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Unescape(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestInstance(t *testing.T) {
	got := Instance("hal0-pull@.service", "Qwen/Qwen3-4B-GGUF:Q4_K_M")
	if want := `hal0-pull@Qwen-Qwen3\x2d4B\x2dGGUF:Q4_K_M.service`; got != want {
		t.Fatalf("Instance = %q, want %q", got, want)
	}
	tmpl, inst, err := ParseInstance(got)
	if err != nil || tmpl != "hal0-pull@.service" || inst != "Qwen/Qwen3-4B-GGUF:Q4_K_M" {
		t.Fatalf("ParseInstance(%q) = %q, %q, %v", got, tmpl, inst, err)
	}
	if got := Instance("a-b@.socket", "x"); got != "a-b@x.socket" {
		t.Errorf("Instance(a-b@.socket, x) = %q", got)
	}
}

func TestInstancePanicsOnNonTemplate(t *testing.T) {
	for _, tmpl := range []string{"hal0-pull.service", "hal0-pull@x.service", "hal0-pull@.bogus", "@.service", ""} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Instance(%q, ...) did not panic", tmpl)
				}
			}()
			Instance(tmpl, "x")
		}()
	}
}

func TestParseInstanceErrors(t *testing.T) {
	for _, unit := range []string{
		"hal0-pull@.service",      // template
		"hal0-pull.service",       // plain unit
		"hal0-pull@x",             // no suffix
		"hal0-pull@x.nope",        // unknown type
		`hal0-pull@a\x00.service`, // NUL
		`hal0-pull@a\q.service`,   // bad escape
		"hal0 pull@x.service",     // space is not allowed
		"@x.service",              // empty prefix
		"hal0-pull@" + strings.Repeat("a", MaxUnitNameLen) + ".service",
	} {
		if tmpl, inst, err := ParseInstance(unit); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseInstance(%q) = %q, %q, %v; want ErrInvalid", unit, tmpl, inst, err)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := []string{
		"a.service", "hal0-pull@.service", `hal0-pull@meta\x2dllama-x:y.service`, "x@y@z.service",
		"-.mount", "a." + "scope", strings.Repeat("a", MaxUnitNameLen-len(".service")) + ".service",
	}
	for _, u := range ok {
		if err := Validate(u); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", u, err)
		}
	}
	bad := []string{
		"", ".service", "a", "a.", "a.Service", "@a.service", "a b.service", "ä.service", "a/b.service",
		strings.Repeat("a", MaxUnitNameLen-len(".service")+1) + ".service",
	}
	for _, u := range bad {
		if err := Validate(u); !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%q) = %v, want ErrInvalid", u, err)
		}
	}
}

// corpus holds strings that exercise every escaping rule: hub refs with
// "/ - : . _ @ ? = +", spaces, shell metacharacters, a leading dot, non-ASCII.
var corpus = []string{
	"meta-llama/Llama-3-8B:Q4_K_M",
	"Qwen/Qwen3-4B-GGUF:Q4_K_M",
	"qwen3:4b",
	"unsloth/gpt-oss-20b-GGUF@main:UD-Q4_K_XL",
	"hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q8_0",
	"org/model?revision=abc+def",
	"a=b+c",
	"user@host:port",
	"with space",
	"tab\tand\nnewline",
	".leading-dot",
	"..",
	".",
	"/leading/slash",
	"trailing/",
	"a//b",
	"-",
	"--x--",
	"_under_score_",
	"::",
	`back\slash`,
	`quote"and'apos`,
	"dollar$var`tick`",
	"percent%i%I",
	"glob*?[x]",
	"ünïcödé",
	"日本語/モデル",
	"emoji 🦙 llama",
	"e\u0301", // e + combining acute: bytes escaped one by one
	"\x7f",
	"~tilde#hash&amp;",
	"UPPER.lower.123",
}

// systemdEscape runs the real systemd-escape with args and returns its
// stdout without the trailing newline.
func systemdEscape(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemd-escape", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("systemd-escape %q: %v: %s", args, err, ee.Stderr)
		}
		t.Fatalf("systemd-escape %q: %v", args, err)
	}
	return strings.TrimSuffix(string(out), "\n")
}

// TestMatchesSystemdEscape compares Escape, Unescape, Instance and
// ParseInstance with /usr/bin/systemd-escape byte for byte.
func TestMatchesSystemdEscape(t *testing.T) {
	if _, err := exec.LookPath("systemd-escape"); err != nil {
		t.Skip("systemd-escape not installed:", err)
	}
	const tmpl = "hal0-pull@.service"
	for _, s := range corpus {
		// "--" keeps strings that start with "-" from being read as options.
		esc := systemdEscape(t, "--", s)
		if got := Escape(s); got != esc {
			t.Errorf("Escape(%q) = %q, systemd-escape says %q", s, got, esc)
		}
		if un := systemdEscape(t, "--unescape", "--", esc); un != s {
			t.Errorf("systemd-escape -u %q = %q, want %q (corpus entry not round-trippable by systemd?)", esc, un, s)
		}
		if got, err := Unescape(esc); err != nil || got != s {
			t.Errorf("Unescape(%q) = %q, %v; want %q", esc, got, err, s)
		}
		unit := systemdEscape(t, "--template", tmpl, "--", s)
		if got := Instance(tmpl, s); got != unit {
			t.Errorf("Instance(%q, %q) = %q, systemd-escape --template says %q", tmpl, s, got, unit)
		}
		inst := systemdEscape(t, "--unescape", "--instance", "--", unit)
		gotTmpl, gotInst, err := ParseInstance(unit)
		if err != nil || gotTmpl != tmpl || gotInst != inst || gotInst != s {
			t.Errorf("ParseInstance(%q) = %q, %q, %v; systemd-escape -u --instance says %q, want %q", unit, gotTmpl, gotInst, err, inst, s)
		}
	}
	// Unescape must accept what systemd accepts beyond Escape's own output.
	for _, esc := range []string{`A\x2D\x2e`, "plain", "a b", `\xe6\x97\xa5`} {
		want := systemdEscape(t, "--unescape", "--", esc)
		if got, err := Unescape(esc); err != nil || got != want {
			t.Errorf("Unescape(%q) = %q, %v; systemd-escape -u says %q", esc, got, err, want)
		}
	}
}

func FuzzEscapeRoundTrip(f *testing.F) {
	for _, s := range corpus {
		f.Add(s)
	}
	f.Add("")
	f.Add("\x00")
	f.Add("\xff\xfe")
	f.Fuzz(func(t *testing.T, s string) {
		esc := Escape(s)
		if strings.HasPrefix(esc, ".") {
			t.Fatalf("Escape(%q) = %q starts with a dot", s, esc)
		}
		for i := 0; i < len(esc); i++ {
			if c := esc[i]; !keep(c) && c != '-' && c != '\\' {
				t.Fatalf("Escape(%q) = %q contains %q", s, esc, c)
			}
		}
		if !utf8.ValidString(esc) {
			t.Fatalf("Escape(%q) = %q is not valid UTF-8", s, esc)
		}
		got, err := Unescape(esc)
		if strings.IndexByte(s, 0) >= 0 {
			if err == nil {
				t.Fatalf("Unescape(%q) accepted an escaped NUL", esc)
			}
			return
		}
		if err != nil || got != s {
			t.Fatalf("Unescape(Escape(%q)) = %q, %v", s, got, err)
		}
		if s == "" {
			return
		}
		unit := Instance("hal0-pull@.service", s)
		if len(unit) > MaxUnitNameLen {
			if Validate(unit) == nil {
				t.Fatalf("Validate accepted %d-byte name", len(unit))
			}
			return
		}
		tmpl, inst, err := ParseInstance(unit)
		if err != nil || tmpl != "hal0-pull@.service" || inst != s {
			t.Fatalf("ParseInstance(Instance(%q)) = %q, %q, %v", s, tmpl, inst, err)
		}
	})
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"hal0-pull@qwen3:4b.service":        "hal0-pull@qwen3:4b.service",
		`hal0-pull@meta\x2dllama-x.service`: `'hal0-pull@meta\x2dllama-x.service'`,
		"it's":                              `'it'\''s'`,
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}
