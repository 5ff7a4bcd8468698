package pull

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/hf"
	"github.com/hal0ai/hal0/internal/ref"
)

// Selection is the set of files a pull downloads.
type Selection struct {
	Files []hf.Entry
	// Main is the file a runtime opens (the first GGUF shard), or "" for a
	// whole-repo download.
	Main string
	// MMProj is a vision projector picked alongside a GGUF, or "".
	MMProj string
	// Quant is the GGUF quant chosen, explicitly or by default.
	Quant string
}

// Criteria says what to select from a tree.
type Criteria struct {
	Quant        string   // GGUF quant (case-insensitive)
	File         string   // one explicit path
	Include      []string // globs; empty means everything
	Exclude      []string
	DefaultQuant []string // preference order when a GGUF repo is pulled with no quant
}

var splitRe = regexp.MustCompile(`(?i)^(.+)-([0-9]{5,6})-of-([0-9]{5,6})\.(gguf|safetensors)$`)

// splitInfo parses "<prefix>-00001-of-00003.gguf".
func splitInfo(p string) (prefix string, n, count string, ok bool) {
	m := splitRe.FindStringSubmatch(p)
	if m == nil {
		return "", "", "", false
	}
	return m[1], m[2], m[3], true
}

func isGGUF(p string) bool { return strings.HasSuffix(strings.ToLower(p), ".gguf") }

// auxGGUF are GGUF files that are not a model by themselves.
func auxGGUF(p string) bool {
	b := strings.ToLower(path.Base(p))
	for _, s := range []string{"mmproj", "imatrix", "mtp-", "eagle3-", "draft"} {
		if strings.Contains(b, s) {
			return true
		}
	}
	return false
}

// quantMatches reports whether GGUF path p carries quant q as a whole token
// in its file or directory name: Q4_K matches "x-Q4_K.gguf" but not
// "x-Q4_K_M.gguf".
func quantMatches(p, q string) bool {
	re := regexp.MustCompile(`(?i)(^|[^A-Za-z0-9_])` + regexp.QuoteMeta(q) + `([^A-Za-z0-9_]|$)`)
	name := strings.TrimSuffix(p, path.Ext(p))
	if prefix, _, _, ok := splitInfo(p); ok {
		name = prefix
	}
	return re.MatchString(name)
}

// group is one logical GGUF model: a single file or all shards of a split.
type group struct {
	key   string // split prefix, or the file path
	files []hf.Entry
}

// ggufGroups groups the model GGUFs of a tree by split prefix. Shard sets
// with a missing member are reported so nobody installs a model that cannot
// load.
func ggufGroups(tree []hf.Entry) ([]group, error) {
	byKey := map[string]*group{}
	var keys []string
	counts := map[string]string{}
	for _, e := range tree {
		if !isGGUF(e.Path) || auxGGUF(e.Path) {
			continue
		}
		key := e.Path
		if prefix, _, count, ok := splitInfo(e.Path); ok {
			key = prefix + "-of-" + count
			counts[key] = count
		}
		g := byKey[key]
		if g == nil {
			g = &group{key: key}
			byKey[key] = g
			keys = append(keys, key)
		}
		g.files = append(g.files, e)
	}
	sort.Strings(keys)
	out := make([]group, 0, len(keys))
	for _, k := range keys {
		g := byKey[k]
		sort.Slice(g.files, func(i, j int) bool { return g.files[i].Path < g.files[j].Path })
		if c, ok := counts[k]; ok {
			var want int
			fmt.Sscanf(c, "%d", &want)
			if len(g.files) != want {
				return nil, api.Errorf(api.CodeBadResponse, 0, "split GGUF %s has %d of %d shards in the repository listing", k, len(g.files), want)
			}
		}
		out = append(out, *g)
	}
	return out, nil
}

// Select picks the files to download from tree according to c.
//
// Rules, in order:
//   - an explicit File selects it; if it is one shard of a split GGUF or
//     safetensors set, every shard comes with it;
//   - a Quant selects the GGUF group carrying that quant (all shards), plus
//     a matching mmproj if the repo has one; several groups is an error that
//     lists them;
//   - with neither, a repo containing model GGUFs gets the first quant of
//     DefaultQuant it has (Q4_K_M first, like llama.cpp), or its only GGUF,
//     or the first by name;
//   - otherwise the whole repo, narrowed by Include/Exclude globs, with
//     sharded safetensors completed by their shards and index.
//
// Every selected path is checked with ref.CleanRepoPath: a server that
// lists "../../etc/passwd" fails the pull instead of writing outside the
// model directory.
func Select(tree []hf.Entry, c Criteria) (*Selection, error) {
	for _, e := range tree {
		if _, err := ref.CleanRepoPath(e.Path); err != nil {
			return nil, api.Errorf(api.CodeUnsafePath, 0, "the hub listed an unsafe file name: %v; refusing to download from this repository", err)
		}
		if e.Size < 0 {
			return nil, api.Errorf(api.CodeBadResponse, 0, "the hub listed %s with negative size %d", e.Path, e.Size)
		}
	}
	var (
		sel *Selection
		err error
	)
	switch {
	case c.File != "":
		sel, err = selectFile(tree, c.File)
	case c.Quant != "":
		sel, err = selectQuant(tree, c.Quant)
	default:
		groups, gerr := ggufGroups(tree)
		if gerr != nil {
			return nil, gerr
		}
		if len(groups) > 0 && len(c.Include) == 0 {
			sel, err = selectDefaultQuant(tree, groups, c.DefaultQuant)
		} else {
			sel, err = selectGlobs(tree, c.Include, c.Exclude)
		}
	}
	if err != nil {
		return nil, err
	}
	if len(sel.Files) == 0 {
		return nil, api.Errorf(api.CodeNoMatch, 0, "no file matches the selection")
	}
	return sel, nil
}

func byPath(tree []hf.Entry) map[string]hf.Entry {
	m := make(map[string]hf.Entry, len(tree))
	for _, e := range tree {
		m[e.Path] = e
	}
	return m
}

func selectFile(tree []hf.Entry, file string) (*Selection, error) {
	all := byPath(tree)
	e, ok := all[file]
	if !ok {
		return nil, api.Errorf(api.CodeEntryNotFound, 0, "file %s is not in the repository (%s)", file, listSome(tree, isGGUF))
	}
	sel := &Selection{Files: []hf.Entry{e}}
	if isGGUF(file) {
		sel.Main = file
	}
	if prefix, _, count, ok := splitInfo(file); ok {
		sel.Files = nil
		for _, x := range tree {
			if p, _, c, ok := splitInfo(x.Path); ok && p == prefix && c == count {
				sel.Files = append(sel.Files, x)
			}
		}
		sort.Slice(sel.Files, func(i, j int) bool { return sel.Files[i].Path < sel.Files[j].Path })
		sel.Main = sel.Files[0].Path
		addSafetensorsIndex(sel, all, prefix)
	}
	return sel, nil
}

func selectQuant(tree []hf.Entry, quant string) (*Selection, error) {
	groups, err := ggufGroups(tree)
	if err != nil {
		return nil, err
	}
	var match []group
	for _, g := range groups {
		if quantMatches(g.files[0].Path, quant) {
			match = append(match, g)
		}
	}
	switch len(match) {
	case 0:
		return nil, api.Errorf(api.CodeNoMatch, 0, "no GGUF with quant %s in the repository; available: %s", quant, strings.Join(quantsOf(groups), ", "))
	case 1:
	default:
		var names []string
		for _, g := range match {
			names = append(names, g.files[0].Path)
		}
		return nil, api.Errorf(api.CodeAmbiguous, 0, "quant %s matches several models: %s; name one file instead (org/name/<file>)", quant, strings.Join(names, ", "))
	}
	return withMMProj(tree, match[0], quant), nil
}

func selectDefaultQuant(tree []hf.Entry, groups []group, prefs []string) (*Selection, error) {
	if len(groups) == 1 {
		return withMMProj(tree, groups[0], quantOf(groups[0].files[0].Path)), nil
	}
	for _, q := range prefs {
		for _, g := range groups {
			if quantMatches(g.files[0].Path, q) {
				return withMMProj(tree, g, strings.ToUpper(q)), nil
			}
		}
	}
	return withMMProj(tree, groups[0], quantOf(groups[0].files[0].Path)), nil
}

func withMMProj(tree []hf.Entry, g group, quant string) *Selection {
	sel := &Selection{Files: append([]hf.Entry(nil), g.files...), Main: g.files[0].Path, Quant: strings.ToUpper(quant)}
	// A vision model needs its projector. Prefer one with the same quant,
	// then full precision, then any.
	var cands []hf.Entry
	for _, e := range tree {
		if isGGUF(e.Path) && strings.Contains(strings.ToLower(path.Base(e.Path)), "mmproj") {
			cands = append(cands, e)
		}
	}
	if len(cands) == 0 {
		return sel
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].Path < cands[j].Path })
	pick := cands[0]
	for _, pref := range []string{quant, "F16", "BF16", "F32"} {
		if pref == "" {
			continue
		}
		found := false
		for _, e := range cands {
			if quantMatches(e.Path, pref) {
				pick, found = e, true
				break
			}
		}
		if found {
			break
		}
	}
	sel.Files = append(sel.Files, pick)
	sel.MMProj = pick.Path
	return sel
}

var quantTokenRe = regexp.MustCompile(`(?i)[-._]((?:UD-)?(?:I?Q[0-9][A-Z0-9_]*|[BF]F?16|F32|MXFP4[A-Z0-9_]*))$`)

// quantOf extracts the quant tag of a GGUF file name, or "".
func quantOf(p string) string {
	name := strings.TrimSuffix(path.Base(p), path.Ext(p))
	if prefix, _, _, ok := splitInfo(path.Base(p)); ok {
		name = prefix
	}
	if m := quantTokenRe.FindStringSubmatch(name); m != nil {
		return strings.ToUpper(m[1])
	}
	return ""
}

func quantsOf(groups []group) []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range groups {
		q := quantOf(g.files[0].Path)
		if q == "" {
			q = g.files[0].Path
		}
		if !seen[q] {
			seen[q] = true
			out = append(out, q)
		}
	}
	if len(out) == 0 {
		return []string{"(no GGUF files)"}
	}
	return out
}

func listSome(tree []hf.Entry, keep func(string) bool) string {
	var names []string
	for _, e := range tree {
		if keep(e.Path) {
			names = append(names, e.Path)
		}
	}
	if len(names) == 0 {
		return "it has no GGUF files"
	}
	if len(names) > 8 {
		names = append(names[:8], "…")
	}
	return "GGUF files: " + strings.Join(names, ", ")
}

func selectGlobs(tree []hf.Entry, include, exclude []string) (*Selection, error) {
	inc, err := compileGlobs(include)
	if err != nil {
		return nil, err
	}
	exc, err := compileGlobs(exclude)
	if err != nil {
		return nil, err
	}
	all := byPath(tree)
	chosen := map[string]bool{}
	for _, e := range tree {
		if (len(inc) == 0 || anyMatch(inc, e.Path)) && !anyMatch(exc, e.Path) {
			chosen[e.Path] = true
		}
	}
	// A sharded safetensors model is useless without all its shards and
	// its index: complete any set that was partly selected.
	for p := range chosen {
		prefix, _, count, ok := splitInfo(p)
		if !ok {
			if strings.HasSuffix(p, ".safetensors.index.json") {
				base := strings.TrimSuffix(p, ".index.json")
				stem := strings.TrimSuffix(base, ".safetensors")
				for _, e := range tree {
					if pr, _, _, ok := splitInfo(e.Path); ok && pr == stem {
						chosen[e.Path] = true
					}
				}
			}
			continue
		}
		for _, e := range tree {
			if pr, _, c, ok := splitInfo(e.Path); ok && pr == prefix && c == count {
				chosen[e.Path] = true
			}
		}
		if idx := prefix + ".safetensors.index.json"; strings.HasSuffix(strings.ToLower(p), ".safetensors") {
			if _, ok := all[idx]; ok {
				chosen[idx] = true
			}
		}
	}
	sel := &Selection{}
	for _, e := range tree {
		if chosen[e.Path] {
			sel.Files = append(sel.Files, e)
		}
	}
	sort.Slice(sel.Files, func(i, j int) bool { return sel.Files[i].Path < sel.Files[j].Path })
	if len(sel.Files) == 0 && len(include) > 0 {
		return nil, api.Errorf(api.CodeNoMatch, 0, "no file matches include %q (exclude %q)", include, exclude)
	}
	return sel, nil
}

func addSafetensorsIndex(sel *Selection, all map[string]hf.Entry, prefix string) {
	if idx, ok := all[prefix+".safetensors.index.json"]; ok && strings.HasSuffix(strings.ToLower(sel.Files[0].Path), ".safetensors") {
		sel.Files = append(sel.Files, idx)
		sel.Main = ""
	}
}

// compileGlobs turns fnmatch-style patterns (as huggingface_hub's
// allow_patterns: "*" crosses "/", "?" one character, "[…]" a class) into
// regexps. A pattern without "/" also matches the base name, so "*.json"
// finds nested JSON files too.
func compileGlobs(globs []string) ([]*regexp.Regexp, error) {
	var out []*regexp.Regexp
	for _, g := range globs {
		if g == "" {
			continue
		}
		var b strings.Builder
		b.WriteString("^")
		for i := 0; i < len(g); i++ {
			switch ch := g[i]; ch {
			case '*':
				b.WriteString(".*")
			case '?':
				b.WriteString(".")
			case '[':
				j := strings.IndexByte(g[i:], ']')
				if j < 0 {
					return nil, api.Errorf(api.CodeBadRequest, 0, "glob %q: unclosed [", g)
				}
				class := g[i+1 : i+j]
				if strings.HasPrefix(class, "!") {
					class = "^" + class[1:]
				}
				b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
				i += j
			default:
				b.WriteString(regexp.QuoteMeta(string(ch)))
			}
		}
		b.WriteString("$")
		re, err := regexp.Compile(b.String())
		if err != nil {
			return nil, api.Errorf(api.CodeBadRequest, 0, "glob %q: %v", g, err)
		}
		out = append(out, re)
	}
	return out, nil
}

func anyMatch(res []*regexp.Regexp, p string) bool {
	for _, re := range res {
		if re.MatchString(p) || re.MatchString(path.Base(p)) {
			return true
		}
	}
	return false
}
