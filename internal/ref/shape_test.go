package ref

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestShapesMatchTheirRegexps checks the hand-written name checks against
// the regular expressions they replace, on edge cases and random strings.
func TestShapesMatchTheirRegexps(t *testing.T) {
	cases := []struct {
		name  string
		match func(string) bool
		re    *regexp.Regexp
	}{
		{"repo", repoPart.MatchString, regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,95}$`)},
		{"rev", validRev, regexp.MustCompile(`^([A-Za-z0-9_][A-Za-z0-9._-]{0,254}|refs/pr/[0-9]{1,9}|refs/convert/[a-z]{1,32})$`)},
		{"quant", quantRe.MatchString, regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)},
		{"flm", flmPart.MatchString, regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)},
		{"local", localIDRe.MatchString, regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}$`)},
	}
	fixed := []string{"", "a", "_", ".", "-a", "a-", "Q4_K_M", "refs/pr/1", "refs/pr/", "refs/pr/1234567890",
		"refs/convert/parquet", "refs/convert/", "refs/x", "qwen3", "é", "aé", "a b", "a/b", "a+b",
		strings.Repeat("a", 64), strings.Repeat("a", 65), strings.Repeat("a", 96), strings.Repeat("a", 97),
		strings.Repeat("a", 200), strings.Repeat("a", 201), strings.Repeat("a", 255), strings.Repeat("a", 256)}
	alphabet := []byte("aZ09_.-+/é refs/pr/convert\x00\xff")
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		fixed = append(fixed, string(b))
	}
	for _, c := range cases {
		for _, s := range fixed {
			if got, want := c.match(s), c.re.MatchString(s); got != want {
				t.Errorf("%s(%q) = %v, the regexp says %v", c.name, s, got, want)
			}
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"refs/pr/12:Q4", "refs/pr/12"}, {"refs/convert/parquet/x", "refs/convert/parquet"},
		{"refs/pr/x", ""}, {"refs/heads/main", ""}, {"main", ""},
	} {
		if got := refsPrefix(tc.in); got != tc.want {
			t.Errorf("refsPrefix(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
