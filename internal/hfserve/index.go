package hfserve

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hal0ai/hal0/internal/registry"
)

// index is the servable view of one version of the registry file.
type index struct {
	repos map[string]*repoIndex
}

// repoIndex is one HF repo with every installed commit of it.
type repoIndex struct {
	id      string
	commits map[string]*snapshot
	// names maps a recorded revision name (main, v1.0, refs/pr/3) to the
	// newest installed commit pulled under that name.
	names  map[string]string
	newest string // newest installed commit of any name
}

// snapshot is the union of installed files of one repo at one commit.
type snapshot struct {
	commit    string
	installed time.Time // newest install among its registry entries
	created   time.Time // oldest
	license   string
	gated     string // "auto" or "manual" when upstream gates the repo
	files     map[string]*file
	dirs      map[string]string // directory ("" = root) -> git tree oid over the served files
	list      []treeEntry       // files and directories, sorted by path
	size      int64
}

// file is one servable file. copies are the model directories holding it;
// a pull of each quant of a repo installs its own copy of shared files
// (README.md, an mmproj), and any intact one will do.
type file struct {
	path    string
	size    int64
	sha256  string
	blobID  string // git blob oid: of the content, or of the LFS pointer
	lfs     bool
	pointer []byte // LFS pointer text, what /raw serves for LFS files
	copies  []copyOf
}

type copyOf struct {
	dir     string // the model's install directory
	modelID string // registry id, for log lines
}

// treeEntry is the wire shape of /tree and /paths-info entries.
type treeEntry struct {
	Type       string      `json:"type"`
	OID        string      `json:"oid"`
	Size       int64       `json:"size"`
	Path       string      `json:"path"`
	LFS        *treeLFS    `json:"lfs,omitempty"`
	LastCommit *lastCommit `json:"lastCommit,omitempty"`
}

// treeLFS spells the content hash "oid"; siblings call it "sha256".
type treeLFS struct {
	OID         string `json:"oid"`
	Size        int64  `json:"size"`
	PointerSize int    `json:"pointerSize"`
}

type lastCommit struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Date  string `json:"date"`
}

var (
	hex40 = regexp.MustCompile(`^[0-9a-f]{40}$`)
	hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// index returns the index of the current registry, rebuilding it only when
// the file's bytes changed. The file is read every time (it is small) and
// compared, not stat'ed: inode numbers are reused at once on ext4 and
// mtimes are as coarse as the kernel's tick, so a new registry can share
// the old one's inode, size and mtime, and a stale index would start a
// second pull of a model that was just installed.
// loadIndex is index for a request: on failure it logs the cause and
// answers 500 itself.
func (h *Handler) loadIndex(w http.ResponseWriter) (*index, bool) {
	idx, err := h.index()
	if err != nil {
		h.logf("hfserve: %v", err)
		hfError(w, http.StatusInternalServerError, "", "hal0's model registry cannot be read; see the server log")
		return nil, false
	}
	return idx, true
}

func (h *Handler) index() (*index, error) {
	if h.opts.Registry == nil {
		return &index{repos: map[string]*repoIndex{}}, nil
	}
	path := h.opts.Registry.Path()
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist):
		raw = nil
	default:
		return nil, fmt.Errorf("read registry: %w", err)
	}
	h.imu.Lock()
	defer h.imu.Unlock()
	if h.idx != nil && bytes.Equal(raw, h.idxRaw) && (raw == nil) == (h.idxRaw == nil) {
		return h.idx, nil
	}
	reg := &registry.Registry{Models: map[string]*registry.Model{}}
	if raw != nil {
		if reg, err = registry.Parse(path, raw); err != nil {
			return nil, err
		}
	}
	h.idx, h.idxRaw = buildIndex(reg, h.logf), raw
	return h.idx, nil
}

// buildIndex merges registry entries into repos and snapshots. Entries
// and files that cannot be described truthfully (no commit, no hashes,
// unsafe paths) are left out and logged.
func buildIndex(reg *registry.Registry, logf func(string, ...any)) *index {
	idx := &index{repos: map[string]*repoIndex{}}
	type named struct {
		ri           *repoIndex
		name, commit string
	}
	var names []named
	for _, m := range reg.List() { // sorted by id: merging is deterministic
		if m.Source != "hf" || m.HFRepo == "" {
			continue
		}
		commit := strings.ToLower(m.Commit)
		if !hex40.MatchString(commit) || m.Dir == "" || !validRepo(m.HFRepo) {
			logf("hfserve: not serving %s: it has no pinned commit, install directory or valid repo id", m.ID)
			continue
		}
		at, _ := time.Parse(time.RFC3339, m.InstalledAt)
		ri := idx.repos[m.HFRepo]
		if ri == nil {
			ri = &repoIndex{id: m.HFRepo, commits: map[string]*snapshot{}, names: map[string]string{}}
			idx.repos[m.HFRepo] = ri
		}
		s := ri.commits[commit]
		if s == nil {
			s = &snapshot{commit: commit, files: map[string]*file{}, dirs: map[string]string{}, installed: at, created: at}
			ri.commits[commit] = s
		}
		if at.After(s.installed) {
			s.installed = at
		}
		if at.Before(s.created) {
			s.created = at
		}
		if s.license == "" {
			s.license = m.License
		}
		if s.gated == "" {
			s.gated = m.Gated
		}
		for _, rf := range m.Files {
			f, err := newFile(rf)
			if err != nil {
				logf("hfserve: not serving %s of %s: %v", rf.Path, m.ID, err)
				continue
			}
			have := s.files[f.path]
			if have == nil {
				f.copies = []copyOf{{dir: m.Dir, modelID: m.ID}}
				s.files[f.path] = f
				continue
			}
			// One commit has one content per path; two entries that
			// disagree mean one of them is wrong, and the first keeps it.
			if have.size != f.size || have.sha256 != f.sha256 || have.blobID != f.blobID {
				logf("hfserve: %s@%s: %s differs between registry entries %s and %s; serving the first", m.HFRepo, commit[:12], f.path, have.copies[0].modelID, m.ID)
				continue
			}
			have.copies = append(have.copies, copyOf{dir: m.Dir, modelID: m.ID})
		}
		name := m.Revision
		if name == "" {
			name = "main"
		}
		names = append(names, named{ri, name, commit})
	}
	for id, ri := range idx.repos {
		for c, s := range ri.commits {
			if len(s.files) == 0 {
				delete(ri.commits, c)
				continue
			}
			s.build()
			if n := ri.commits[ri.newest]; n == nil || newer(s, n) {
				ri.newest = c
			}
		}
		if len(ri.commits) == 0 {
			delete(idx.repos, id)
		}
	}
	for _, n := range names {
		s := n.ri.commits[n.commit]
		if s == nil || hex40.MatchString(n.name) {
			continue // a commit needs no name; it resolves as itself
		}
		if cur := n.ri.commits[n.ri.names[n.name]]; cur == nil || newer(s, cur) {
			n.ri.names[n.name] = n.commit
		}
	}
	return idx
}

// newer orders snapshots by install time, then by commit so that the
// choice never depends on map order.
func newer(a, b *snapshot) bool {
	if !a.installed.Equal(b.installed) {
		return a.installed.After(b.installed)
	}
	return a.commit > b.commit
}

func validRepo(id string) bool {
	org, name, ok := strings.Cut(id, "/")
	return ok && validSeg(org) && validSeg(name)
}

func validSeg(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00") && strings.TrimSpace(s) == s
}

// newFile describes a registry file the way the Hub does. hal0's pull
// records a git blob oid only for files the hub stored in git; files with
// none were LFS files, whose tree oid is that of their LFS pointer.
func newFile(rf registry.File) (*file, error) {
	p := rf.Path
	if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || path.Clean(p) != p ||
		p == ".." || strings.HasPrefix(p, "../") || strings.ContainsAny(p, "\\\x00") {
		return nil, fmt.Errorf("unsafe path")
	}
	if rf.Size < 0 {
		return nil, fmt.Errorf("negative size")
	}
	f := &file{path: p, size: rf.Size, sha256: strings.ToLower(rf.SHA256)}
	if f.sha256 != "" && !hex64.MatchString(f.sha256) {
		return nil, fmt.Errorf("malformed sha256 %q", rf.SHA256)
	}
	if oid := strings.ToLower(rf.GitOID); oid != "" {
		if !hex40.MatchString(oid) {
			return nil, fmt.Errorf("malformed git oid %q", rf.GitOID)
		}
		f.blobID = oid
		return f, nil
	}
	if f.sha256 == "" {
		return nil, fmt.Errorf("the registry records no hash for it")
	}
	f.lfs = true
	f.pointer = fmt.Appendf(nil, "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", f.sha256, f.size)
	f.blobID = gitHash("blob", f.pointer)
	return f, nil
}

func gitHash(kind string, b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "%s %d\x00", kind, len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// build derives directories, their git tree oids and the sorted listing.
// The tree oids are real git hashes, but of the served subset: a box that
// installed one quant of a repo does not know the rest of its tree.
func (s *snapshot) build() {
	children := map[string][]treeKid{}
	for p, f := range s.files {
		s.size += f.size
		dir, name := "", p
		if i := strings.LastIndexByte(p, '/'); i >= 0 {
			dir, name = p[:i], p[i+1:]
		}
		children[dir] = append(children[dir], treeKid{name: name, oid: f.blobID})
		// Register every ancestor directory with its parent once.
		for dir != "" {
			parent, base := "", dir
			if i := strings.LastIndexByte(dir, '/'); i >= 0 {
				parent, base = dir[:i], dir[i+1:]
			}
			if _, seen := s.dirs[dir]; seen {
				break
			}
			s.dirs[dir] = ""
			children[parent] = append(children[parent], treeKid{name: base, dir: true})
			dir = parent
		}
	}
	s.dirs[""] = ""
	s.treeOID("", children)
	for d, oid := range s.dirs {
		if d != "" {
			s.list = append(s.list, treeEntry{Type: "directory", OID: oid, Path: d})
		}
	}
	for _, f := range s.files {
		s.list = append(s.list, f.entry())
	}
	sort.Slice(s.list, func(i, j int) bool { return s.list[i].Path < s.list[j].Path })
}

type treeKid struct {
	name, oid string
	dir       bool
}

func (s *snapshot) treeOID(dir string, children map[string][]treeKid) string {
	kids := children[dir]
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	for i := range kids {
		if kids[i].dir {
			kids[i].oid = s.treeOID(prefix+kids[i].name, children)
		}
	}
	// git sorts tree entries by name, a directory as if it ended in "/".
	key := func(k treeKid) string {
		if k.dir {
			return k.name + "/"
		}
		return k.name
	}
	sort.Slice(kids, func(i, j int) bool { return key(kids[i]) < key(kids[j]) })
	var b bytes.Buffer
	for _, k := range kids {
		mode := "100644"
		if k.dir {
			mode = "40000"
		}
		raw, _ := hex.DecodeString(k.oid)
		fmt.Fprintf(&b, "%s %s\x00", mode, k.name)
		b.Write(raw)
	}
	oid := gitHash("tree", b.Bytes())
	s.dirs[dir] = oid
	return oid
}

func (f *file) entry() treeEntry {
	e := treeEntry{Type: "file", OID: f.blobID, Size: f.size, Path: f.path}
	if f.lfs {
		e.LFS = &treeLFS{OID: f.sha256, Size: f.size, PointerSize: len(f.pointer)}
	}
	return e
}

// resolve maps a revision to an installed snapshot, or nil. Accepted: a
// 40-hex installed commit; a recorded revision name, also spelt
// refs/heads/<name> or refs/tags/<name>; and main or HEAD, which mean the
// newest install recorded as main, or the newest install of any name when
// none was (a repo pulled only by tag or commit still has a default).
func (ri *repoIndex) resolve(rev string) *snapshot {
	if s := ri.commits[rev]; s != nil && hex40.MatchString(rev) {
		return s
	}
	name := rev
	for _, p := range []string{"refs/heads/", "refs/tags/"} {
		if n, ok := strings.CutPrefix(rev, p); ok {
			name = n
		}
	}
	if c, ok := ri.names[name]; ok {
		return ri.commits[c]
	}
	if name == "main" || name == "HEAD" {
		if c, ok := ri.names["main"]; ok {
			return ri.commits[c]
		}
		return ri.commits[ri.newest]
	}
	return nil
}
