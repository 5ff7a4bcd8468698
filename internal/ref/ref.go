// Package ref parses model references: the one grammar shared by the CLI, the
// API, systemd unit instance names and registry ids.
//
// Grammar (ABNF-ish; see docs/refs.md for examples):
//
//	ref       = hf-uri / hf-url / hf-short / flm-tag / local-id
//	hf-short  = owner "/" name [ "@" revision ] [ ":" quant / "/" path ]
//	hf-uri    = "hf://" hf-short [ "?" param *( "&" param ) ]
//	param     = "format=" ( "dir" / "qcow2" ) / "revision=" revision / "quant=" quant / "file=" path
//	hf-url    = ( "https://huggingface.co/" / "hf.co/" ) owner "/" name
//	            [ "/" ( "resolve" / "blob" / "tree" ) "/" revision [ "/" path ] ]
//	flm-tag   = family ":" size            ; lower-case, e.g. qwen3:4b, llama3.2:1b
//	local-id  = word                       ; no "/" and no ":", e.g. my-model
//	owner, name = 1*96( ALPHA / DIGIT / "-" / "_" / "." )  ; no leading "." or "-", no ".."
//	revision  = 1*( ALPHA / DIGIT / "-" / "_" / "." ) / "refs/pr/" 1*DIGIT / "refs/convert/" 1*ALPHA
//	quant     = 1*( ALPHA / DIGIT / "_" / "-" / "." )   ; matched case-insensitively, kept upper-case
//	path      = segment *( "/" segment )   ; no "." or ".." segments, no control characters, no "\"
//
// Every ref has one canonical spelling (String). It is the registry id and,
// escaped, the instance of hal0-pull@.service, so a ref must fit in a unit
// name: that is what bounds its length.
package ref

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/hal0ai/hal0/internal/unitname"
)

// Kind says where a model comes from.
type Kind int

const (
	// KindHF is a Hugging Face repository (optionally a quant or file in it).
	KindHF Kind = iota + 1
	// KindFLM is a FastFlowLM tag, pulled by the flm toolbox.
	KindFLM
	// KindLocal is the id of a pre-staged model already in the registry.
	KindLocal
)

func (k Kind) String() string {
	switch k {
	case KindHF:
		return "hf"
	case KindFLM:
		return "flm"
	case KindLocal:
		return "local"
	}
	return "unknown"
}

// Format is how an HF import is installed.
type Format string

const (
	FormatDir   Format = "dir"   // files in a directory (the default)
	FormatQCOW2 Format = "qcow2" // an ext4 filesystem in a qcow2 disk image
)

// Ref is a parsed model reference.
type Ref struct {
	Kind Kind

	// Hugging Face.
	Repo     string // "owner/name"
	Revision string // branch, tag, commit or refs/pr/N; "" means main
	Quant    string // GGUF quant, upper-case, e.g. "Q4_K_M"
	File     string // explicit path inside the repo
	Format   Format // "" or FormatDir means a directory

	// FLM.
	Tag string // "family:size"

	// Local.
	ID string
}

// PullTemplate is the systemd template every pull runs under.
const PullTemplate = "hal0-pull@.service"

// MaxInputLen bounds what Parse even looks at.
const MaxInputLen = 1024

// ErrInvalid is wrapped by every parse error, so callers can map it to a
// "bad request" without matching strings.
var ErrInvalid = errors.New("invalid model ref")

// Error describes why a ref was refused and how to write it instead.
type Error struct {
	Input  string
	Reason string
}

func (e *Error) Error() string {
	in := e.Input
	if len(in) > 80 {
		in = in[:77] + "..."
	}
	return fmt.Sprintf("invalid model ref %q: %s (examples: Qwen/Qwen3-4B-GGUF:Q4_K_M, org/name@main, org/name/path/file.gguf, hf://org/name?format=qcow2, qwen3:4b)", in, e.Reason)
}

func (e *Error) Unwrap() error { return ErrInvalid }

func fail(in, format string, a ...any) error {
	return &Error{Input: in, Reason: fmt.Sprintf(format, a...)}
}

// The name shapes below are checked by hand rather than with regexps:
// compiling counted repetitions like {0,254} cost about 1.5 ms at every
// process start, and hal0-apid's cold start after socket activation is
// measured in tens of milliseconds.
var (
	// [A-Za-z0-9_][A-Za-z0-9._-]{0,95}
	repoPart = shape{first: alnum + "_", rest: alnum + "._-", max: 96}
	// [A-Za-z0-9_][A-Za-z0-9._-]{0,254}, or refs/pr/N, refs/convert/NAME
	revName = shape{first: alnum + "_", rest: alnum + "._-", max: 255}
	prNum   = shape{first: digits, rest: digits, max: 9}
	convert = shape{first: lower, rest: lower, max: 32}
	// [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}
	quantRe = shape{first: alnum + "_", rest: alnum + "_.-", max: 64}
	// [a-z0-9][a-z0-9._-]{0,63}
	flmPart = shape{first: lower + digits, rest: lower + digits + "._-", max: 64}
	// [A-Za-z0-9_][A-Za-z0-9._+-]{0,199}
	localIDRe = shape{first: alnum + "_", rest: alnum + "._+-", max: 200}
)

const (
	lower  = "abcdefghijklmnopqrstuvwxyz"
	digits = "0123456789"
	alnum  = lower + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + digits
)

// shape is a name made of one character from first, then up to max-1
// characters from rest.
type shape struct {
	first, rest string
	max         int
}

// MatchString reports whether s has the shape.
func (p shape) MatchString(s string) bool {
	if s == "" || len(s) > p.max || !strings.ContainsRune(p.first, rune(s[0])) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !strings.ContainsRune(p.rest, rune(s[i])) {
			return false
		}
	}
	return true
}

// validRev reports whether s is a branch, tag or commit name, refs/pr/N or
// refs/convert/NAME.
func validRev(s string) bool {
	if n, ok := strings.CutPrefix(s, "refs/pr/"); ok {
		return prNum.MatchString(n)
	}
	if n, ok := strings.CutPrefix(s, "refs/convert/"); ok {
		return convert.MatchString(n)
	}
	return revName.MatchString(s)
}

// refsPrefix returns the refs/pr/N or refs/convert/NAME at the start of
// s, or "".
func refsPrefix(s string) string {
	for _, k := range []struct {
		prefix string
		set    string
	}{{"refs/pr/", digits}, {"refs/convert/", lower}} {
		if rest, ok := strings.CutPrefix(s, k.prefix); ok {
			n := 0
			for n < len(rest) && strings.IndexByte(k.set, rest[n]) >= 0 {
				n++
			}
			if n == 0 {
				return ""
			}
			return s[:len(k.prefix)+n]
		}
	}
	return ""
}

// Parse parses s into a Ref.
func Parse(s string) (Ref, error) {
	if s == "" {
		return Ref{}, fail(s, "empty")
	}
	if len(s) > MaxInputLen {
		return Ref{}, fail(s, "longer than %d bytes", MaxInputLen)
	}
	if !utf8.ValidString(s) {
		return Ref{}, fail(s, "not valid UTF-8")
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return Ref{}, fail(s, "control character at byte %d", i)
	}
	if strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t") {
		return Ref{}, fail(s, "contains whitespace")
	}
	var (
		r   Ref
		err error
	)
	switch {
	case strings.HasPrefix(s, "hf://"):
		r, err = parseURI(s)
	case strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://"):
		r, err = parseURL(s)
	case strings.HasPrefix(s, "hf.co/"):
		r, err = parseURL("https://" + s)
	case strings.Contains(s, "/"):
		r, err = parseShort(s, s)
	case strings.Contains(s, ":"):
		r, err = parseFLM(s)
	default:
		if strings.HasPrefix(s, ".") || !localIDRe.MatchString(s) {
			return Ref{}, fail(s, "a local model id uses letters, digits and . _ + - only")
		}
		r = Ref{Kind: KindLocal, ID: s}
	}
	if err != nil {
		return Ref{}, err
	}
	if n := len(unitname.Instance(PullTemplate, r.String())); n > unitname.MaxUnitNameLen {
		return Ref{}, fail(s, "too long: its unit name hal0-pull@….service would be %d bytes, systemd allows %d", n, unitname.MaxUnitNameLen)
	}
	return r, nil
}

// MustParse is Parse for constants in tests and examples.
func MustParse(s string) Ref {
	r, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return r
}

func parseFLM(s string) (Ref, error) {
	fam, size, _ := strings.Cut(s, ":")
	if fam == "" || size == "" {
		return Ref{}, fail(s, "an FLM tag is family:size with both parts non-empty")
	}
	fam, size = strings.ToLower(fam), strings.ToLower(size)
	if strings.Contains(size, ":") || !flmPart.MatchString(fam) || !flmPart.MatchString(size) {
		return Ref{}, fail(s, "an FLM tag is family:size using letters, digits and . _ - (e.g. qwen3:4b)")
	}
	return Ref{Kind: KindFLM, Tag: fam + ":" + size}, nil
}

// parseShort parses owner/name[@rev][:quant|/path]. in is the user's
// original text, for error messages.
func parseShort(s, in string) (Ref, error) {
	owner, rest, _ := strings.Cut(s, "/")
	if owner == "" {
		return Ref{}, fail(in, "missing repository owner before /")
	}
	// The name ends at the first of "@", ":" or "/".
	end := strings.IndexAny(rest, "@:/")
	if end < 0 {
		end = len(rest)
	}
	name, tail := rest[:end], rest[end:]
	if name == "" {
		return Ref{}, fail(in, "missing repository name after %s/", owner)
	}
	if err := checkRepoPart(in, "owner", owner); err != nil {
		return Ref{}, err
	}
	if err := checkRepoPart(in, "name", name); err != nil {
		return Ref{}, err
	}
	r := Ref{Kind: KindHF, Repo: owner + "/" + name}
	if strings.HasPrefix(tail, "@") {
		tail = tail[1:]
		var rev string
		if strings.HasPrefix(tail, "refs/") {
			// refs/pr/N contains slashes of its own; take exactly its shape.
			m := refsPrefix(tail)
			if m == "" {
				return Ref{}, fail(in, "revision %q: only refs/pr/N and refs/convert/NAME may contain /", tail)
			}
			rev, tail = m, tail[len(m):]
		} else {
			e := strings.IndexAny(tail, ":/")
			if e < 0 {
				e = len(tail)
			}
			rev, tail = tail[:e], tail[e:]
		}
		if rev == "" {
			return Ref{}, fail(in, "empty revision after @")
		}
		if !validRev(rev) {
			return Ref{}, fail(in, "revision %q: use a branch, tag, commit or refs/pr/N", rev)
		}
		r.Revision = rev
	}
	switch {
	case tail == "":
	case strings.HasPrefix(tail, ":"):
		q := tail[1:]
		if q == "" {
			return Ref{}, fail(in, "empty quant after :")
		}
		if !quantRe.MatchString(q) {
			return Ref{}, fail(in, "quant %q: letters, digits and _ - . only (e.g. Q4_K_M)", q)
		}
		r.Quant = strings.ToUpper(q)
	case strings.HasPrefix(tail, "/"):
		p, err := CleanRepoPath(tail[1:])
		if err != nil {
			return Ref{}, fail(in, "%v", err)
		}
		r.File = p
	default:
		return Ref{}, fail(in, "unexpected %q after the repository", tail)
	}
	return r, nil
}

func checkRepoPart(in, what, p string) error {
	if !repoPart.MatchString(p) || strings.Contains(p, "..") || strings.HasPrefix(p, ".") {
		return fail(in, "repository %s %q: letters, digits, - _ . only, not starting with . and without ..", what, p)
	}
	return nil
}

// CleanRepoPath validates a path inside a repository and returns it
// unchanged. It refuses anything that could escape the directory a repo is
// installed into: absolute paths, "." and ".." segments, empty segments,
// backslashes and control characters. The pull engine applies it to every
// file name a server sends, not only to what users type.
func CleanRepoPath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("empty file path")
	}
	if len(p) > 1000 {
		return "", fmt.Errorf("file path longer than 1000 bytes")
	}
	if !utf8.ValidString(p) {
		return "", fmt.Errorf("file path %q is not valid UTF-8", p)
	}
	if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("file path %q is absolute", p)
	}
	if strings.ContainsAny(p, "\\") || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("file path %q contains a backslash or control character", p)
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return "", fmt.Errorf("file path %q has an empty segment", p)
		case ".", "..":
			return "", fmt.Errorf("file path %q has a %q segment", p, seg)
		}
	}
	return p, nil
}

func parseURI(s string) (Ref, error) {
	body, query, _ := strings.Cut(strings.TrimPrefix(s, "hf://"), "?")
	if strings.Contains(body, "#") {
		return Ref{}, fail(s, "fragments (#) are not allowed")
	}
	r, err := parseShort(body, s)
	if err != nil {
		return Ref{}, err
	}
	if query == "" {
		return r, nil
	}
	vals, err := url.ParseQuery(query)
	if err != nil {
		return Ref{}, fail(s, "bad query: %v", err)
	}
	for k, v := range vals {
		if len(v) != 1 {
			return Ref{}, fail(s, "parameter %q given %d times", k, len(v))
		}
		val := v[0]
		switch k {
		case "format":
			switch Format(val) {
			case FormatDir, FormatQCOW2:
				r.Format = Format(val)
			default:
				return Ref{}, fail(s, "format %q: use dir or qcow2", val)
			}
		case "revision":
			if r.Revision != "" || !validRev(val) {
				return Ref{}, fail(s, "revision %q: bad or given twice", val)
			}
			r.Revision = val
		case "quant":
			if r.Quant != "" || r.File != "" || !quantRe.MatchString(val) {
				return Ref{}, fail(s, "quant %q: bad, given twice, or combined with a file", val)
			}
			r.Quant = strings.ToUpper(val)
		case "file":
			if r.File != "" || r.Quant != "" {
				return Ref{}, fail(s, "file given twice or combined with a quant")
			}
			p, err := CleanRepoPath(val)
			if err != nil {
				return Ref{}, fail(s, "%v", err)
			}
			r.File = p
		default:
			return Ref{}, fail(s, "unknown parameter %q (known: format, revision, quant, file)", k)
		}
	}
	return r, nil
}

// parseURL accepts links copied from the Hugging Face website.
func parseURL(s string) (Ref, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Ref{}, fail(s, "bad URL: %v", err)
	}
	if u.Host != "huggingface.co" && u.Host != "hf.co" && u.Host != "www.huggingface.co" {
		return Ref{}, fail(s, "only huggingface.co links are understood; for a mirror use its repo id and set hf.mirrors")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Ref{}, fail(s, "query and fragment are not allowed in a huggingface.co link")
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 {
		return Ref{}, fail(s, "link has no owner/name")
	}
	if len(parts) >= 3 && parts[2] != "" && !strings.ContainsAny(parts[1], ":@") {
		if len(parts) < 4 {
			return Ref{}, fail(s, "link %s/... needs a revision", parts[2])
		}
		switch parts[2] {
		case "resolve", "blob", "tree":
		default:
			return Ref{}, fail(s, "unknown link kind %q (want resolve, blob or tree)", parts[2])
		}
		short := parts[0] + "/" + parts[1] + "@" + parts[3]
		if len(parts) > 4 && parts[2] != "tree" {
			short += "/" + strings.Join(parts[4:], "/")
		}
		return parseShort(short, s)
	}
	return parseShort(strings.Join(parts, "/"), s)
}

// String returns the canonical spelling: the registry id and, escaped, the
// pull unit's instance name.
func (r Ref) String() string {
	switch r.Kind {
	case KindFLM:
		return r.Tag
	case KindLocal:
		return r.ID
	case KindHF:
		s := r.Repo
		if r.Revision != "" {
			s += "@" + r.Revision
		}
		switch {
		case r.Quant != "":
			s += ":" + r.Quant
		case r.File != "":
			s += "/" + r.File
		}
		if r.Format == FormatQCOW2 {
			return "hf://" + s + "?format=qcow2"
		}
		return s
	}
	return ""
}

// Unit returns the name of the pull unit for this ref.
func (r Ref) Unit() string { return unitname.Instance(PullTemplate, r.String()) }

// FromUnit recovers the ref from a pull unit name (or a bare escaped
// instance, as systemd's %i gives it).
func FromUnit(unit string) (Ref, error) {
	inst := unit
	if strings.Contains(unit, "@") && strings.HasSuffix(unit, ".service") {
		tmpl, i, err := unitname.ParseInstance(unit)
		if err != nil {
			return Ref{}, fail(unit, "%v", err)
		}
		if tmpl != PullTemplate {
			return Ref{}, fail(unit, "not a %s instance", PullTemplate)
		}
		return Parse(i)
	}
	s, err := unitname.Unescape(inst)
	if err != nil {
		return Ref{}, fail(unit, "%v", err)
	}
	return Parse(s)
}

// Owner returns the repository owner of an HF ref.
func (r Ref) Owner() string { o, _, _ := strings.Cut(r.Repo, "/"); return o }

// Name returns the repository name of an HF ref.
func (r Ref) Name() string { _, n, _ := strings.Cut(r.Repo, "/"); return n }

// Rev returns the revision to resolve, defaulting to main.
func (r Ref) Rev() string {
	if r.Revision == "" {
		return "main"
	}
	return r.Revision
}
