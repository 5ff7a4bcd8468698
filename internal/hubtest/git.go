package hubtest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"
)

// The hashes below are the real git ones (blob, tree and commit objects), so
// oids served by the hub can be checked by a client exactly as against the
// real Hub: sha1("blob <len>\0" + content) for regular files.

var hex40 = regexp.MustCompile(`^[0-9a-f]{40}$`)

// entry is a file inside a snapshot; immutable once built.
type entry struct {
	path    string
	lfs     bool
	size    int64
	sha256  string
	oid     string // git blob sha1 of the stored blob (content or pointer)
	pointer []byte // LFS pointer text
	data    []byte
	disk    string
}

// content returns what the hub serves for the file: the bytes for regular
// files and the CDN, the pointer for /raw of an LFS file.
func (e *entry) content() source { return source{data: e.data, disk: e.disk, size: e.size} }

func (e *entry) blob() source {
	if e.lfs {
		return source{data: e.pointer, size: int64(len(e.pointer))}
	}
	return e.content()
}

// source is a byte range provider: memory or a disk file.
type source struct {
	data []byte
	disk string
	size int64
}

// treeEntry is the JSON shape of /tree and /paths-info entries.
type treeEntry struct {
	Type       string      `json:"type"`
	OID        string      `json:"oid"`
	Size       int64       `json:"size"`
	Path       string      `json:"path"`
	LFS        *treeLFS    `json:"lfs,omitempty"`
	LastCommit *lastCommit `json:"lastCommit,omitempty"`
}

type treeLFS struct {
	OID         string `json:"oid"` // sha256 of the content
	Size        int64  `json:"size"`
	PointerSize int64  `json:"pointerSize"`
}

type lastCommit struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Date  string `json:"date"`
}

// snapshot is the file set of one commit.
type snapshot struct {
	commit string
	files  map[string]*entry
	dirs   map[string]string // directory path ("" = root) -> tree oid
	list   []treeEntry       // every file and directory, sorted by path
}

// repoState is a repo with all snapshots it ever had.
type repoState struct {
	meta  *Repo
	snaps map[string]*snapshot
	head  *snapshot
}

// resolve maps a revision (branch, tag, refs/heads/x, refs/tags/x,
// refs/pr/N or a 40-hex commit) to a commit and its snapshot. A ref whose
// commit has no snapshot of its own serves the latest file set.
func (rs *repoState) resolve(rev string) (string, *snapshot, bool) {
	m := rs.meta
	commit := ""
	switch {
	case m.Branches[rev] != "":
		commit = m.Branches[rev]
	case m.Tags[rev] != "":
		commit = m.Tags[rev]
	case strings.HasPrefix(rev, "refs/heads/") && m.Branches[strings.TrimPrefix(rev, "refs/heads/")] != "":
		commit = m.Branches[strings.TrimPrefix(rev, "refs/heads/")]
	case strings.HasPrefix(rev, "refs/tags/") && m.Tags[strings.TrimPrefix(rev, "refs/tags/")] != "":
		commit = m.Tags[strings.TrimPrefix(rev, "refs/tags/")]
	case strings.HasPrefix(rev, "refs/pr/"):
		var n int
		if _, err := fmt.Sscanf(rev, "refs/pr/%d", &n); err == nil && fmt.Sprintf("refs/pr/%d", n) == rev {
			commit = m.PullRequests[n]
		}
	case hex40.MatchString(rev):
		if rs.snaps[rev] != nil || rs.isRefTarget(rev) {
			commit = rev
		}
	}
	if commit == "" {
		return "", nil, false
	}
	if s := rs.snaps[commit]; s != nil {
		return commit, s, true
	}
	return commit, rs.head, true
}

func (rs *repoState) isRefTarget(c string) bool {
	for _, refs := range []map[string]string{rs.meta.Branches, rs.meta.Tags} {
		for _, v := range refs {
			if v == c {
				return true
			}
		}
	}
	for _, v := range rs.meta.PullRequests {
		if v == c {
			return true
		}
	}
	return false
}

// buildRepo validates r, hashes its files and builds its snapshot.
func buildRepo(r Repo) (*Repo, *snapshot, error) {
	if err := checkRepoID(r.ID); err != nil {
		return nil, nil, err
	}
	if r.RenamedFrom != "" {
		if err := checkRepoID(r.RenamedFrom); err != nil {
			return nil, nil, fmt.Errorf("RenamedFrom: %w", err)
		}
	}
	switch r.Gated {
	case "", "auto", "manual":
	default:
		return nil, nil, fmt.Errorf("field Gated must be \"\", \"auto\" or \"manual\", not %q", r.Gated)
	}
	if r.Commit != "" && !hex40.MatchString(r.Commit) {
		return nil, nil, fmt.Errorf("commit %q is not 40 lowercase hex digits", r.Commit)
	}
	snap := &snapshot{files: map[string]*entry{}, dirs: map[string]string{}}
	files := make([]File, len(r.Files))
	for i, f := range r.Files {
		e, err := newEntry(f)
		if err != nil {
			return nil, nil, err
		}
		if snap.files[e.path] != nil {
			return nil, nil, fmt.Errorf("duplicate path %q", e.path)
		}
		snap.files[e.path] = e
		f.SHA256, f.Size, f.OID = e.sha256, e.size, e.oid
		files[i] = f
	}
	for p := range snap.files {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if snap.files[d] != nil {
				return nil, nil, fmt.Errorf("%q is both a file and a directory", d)
			}
		}
	}
	root := snap.tree("")
	commit := r.Commit
	if commit == "" {
		commit = commitOID(root, r.ID)
	}
	snap.commit = commit

	out := r
	out.Files = files
	out.Commit = commit
	out.Branches = cloneMap(r.Branches)
	if out.Branches == nil {
		out.Branches = map[string]string{"main": commit}
	}
	out.Tags = cloneMap(r.Tags)
	for _, refs := range []map[string]string{out.Branches, out.Tags} {
		for k, v := range refs {
			if v == "" {
				refs[k] = commit
			} else if !hex40.MatchString(v) {
				return nil, nil, fmt.Errorf("ref %q: commit %q is not 40 lowercase hex digits", k, v)
			}
		}
	}
	if r.PullRequests != nil {
		out.PullRequests = make(map[int]string, len(r.PullRequests))
		for n, v := range r.PullRequests {
			if v == "" {
				v = commit
			}
			out.PullRequests[n] = v
		}
	}
	if out.LastModified.IsZero() {
		out.LastModified = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if out.CreatedAt.IsZero() {
		out.CreatedAt = out.LastModified
	}
	snap.buildList()
	return &out, snap, nil
}

func checkRepoID(id string) error {
	segs := strings.Split(id, "/")
	if id == "" || len(segs) > 2 {
		return fmt.Errorf("repo id %q must be \"org/name\" or \"name\"", id)
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "?#%") {
			return fmt.Errorf("invalid repo id %q", id)
		}
	}
	if segs[0] == "api" {
		return fmt.Errorf("repo id %q would shadow the /api routes", id)
	}
	return nil
}

func newEntry(f File) (*entry, error) {
	p := f.Path
	if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || path.Clean(p) != p || strings.HasPrefix(p, "../") || p == ".." {
		return nil, fmt.Errorf("invalid file path %q", p)
	}
	if f.Data != nil && f.DiskPath != "" {
		return nil, fmt.Errorf("%s: set either Data or DiskPath, not both", p)
	}
	e := &entry{path: p, lfs: f.LFS, data: f.Data, disk: f.DiskPath, sha256: strings.ToLower(f.SHA256)}
	if e.data == nil && e.disk == "" {
		e.data = []byte{}
	}
	if e.disk != "" {
		st, err := os.Stat(e.disk)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: %s is not a regular file", p, e.disk)
		}
		e.size = st.Size()
	} else {
		e.size = int64(len(e.data))
	}
	// Only read the content when a hash is missing: LFS files with a
	// precomputed SHA256 (generated GiB shards) are never read here.
	needSHA := e.sha256 == ""
	needBlob := !e.lfs
	if needSHA || needBlob {
		var hs []hash.Hash
		s2 := sha256.New()
		if needSHA {
			hs = append(hs, s2)
		}
		s1 := sha1.New()
		if needBlob {
			fmt.Fprintf(s1, "blob %d\x00", e.size)
			hs = append(hs, s1)
		}
		ws := make([]io.Writer, len(hs))
		for i := range hs {
			ws[i] = hs[i]
		}
		if err := copyContent(io.MultiWriter(ws...), e.content()); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if needSHA {
			e.sha256 = hex.EncodeToString(s2.Sum(nil))
		}
		if needBlob {
			e.oid = hex.EncodeToString(s1.Sum(nil))
		}
	}
	if len(e.sha256) != 64 {
		return nil, fmt.Errorf("%s: SHA256 %q is not 64 hex digits", p, f.SHA256)
	}
	if _, err := hex.DecodeString(e.sha256); err != nil {
		return nil, fmt.Errorf("%s: SHA256: %w", p, err)
	}
	if e.lfs {
		e.pointer = lfsPointer(e.sha256, e.size)
		e.oid = gitBlobOID(e.pointer)
	}
	return e, nil
}

func copyContent(w io.Writer, src source) error {
	if src.disk == "" {
		_, err := w.Write(src.data)
		return err
	}
	f, err := os.Open(src.disk)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, f)
	if err == nil && n != src.size {
		err = errors.New("file changed size while hashing")
	}
	return err
}

// lfsPointer is the git-lfs pointer git stores for an LFS file; its length
// is the "pointerSize" of tree and siblings entries (134 bytes for 9-digit sizes).
func lfsPointer(sha string, size int64) []byte {
	return fmt.Appendf(nil, "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", sha, size)
}

func gitBlobOID(b []byte) string { return gitObject("blob", b) }

func gitObject(kind string, b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "%s %d\x00", kind, len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// tree computes (and records in s.dirs) the git tree oid of directory dir.
func (s *snapshot) tree(dir string) string {
	type child struct {
		name, oid string
		isDir     bool
	}
	seen := map[string]bool{}
	var kids []child
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	for p, e := range s.files {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		rest := p[len(prefix):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			name := rest[:i]
			if !seen[name] {
				seen[name] = true
				kids = append(kids, child{name: name, oid: s.tree(prefix + name), isDir: true})
			}
			continue
		}
		kids = append(kids, child{name: rest, oid: e.oid})
	}
	// Git orders tree entries by name, comparing directories as "name/".
	key := func(c child) string {
		if c.isDir {
			return c.name + "/"
		}
		return c.name
	}
	sort.Slice(kids, func(i, j int) bool { return key(kids[i]) < key(kids[j]) })
	var buf bytes.Buffer
	for _, c := range kids {
		mode := "100644"
		if c.isDir {
			mode = "40000"
		}
		raw, _ := hex.DecodeString(c.oid)
		fmt.Fprintf(&buf, "%s %s\x00", mode, c.name)
		buf.Write(raw)
	}
	oid := gitObject("tree", buf.Bytes())
	s.dirs[dir] = oid
	return oid
}

// commitOID is a git commit over tree with a fixed author and date, so the
// same files always give the same commit.
func commitOID(tree, repoID string) string {
	const who = "hubtest <hubtest@hal0.invalid> 1735689600 +0000"
	body := fmt.Sprintf("tree %s\nauthor %s\ncommitter %s\n\nUpload %s\n", tree, who, who, repoID)
	return gitObject("commit", []byte(body))
}

func (s *snapshot) buildList() {
	for d, oid := range s.dirs {
		if d != "" {
			s.list = append(s.list, treeEntry{Type: "directory", OID: oid, Path: d})
		}
	}
	for _, e := range s.files {
		s.list = append(s.list, e.treeEntry())
	}
	sort.Slice(s.list, func(i, j int) bool { return s.list[i].Path < s.list[j].Path })
}

func (e *entry) treeEntry() treeEntry {
	t := treeEntry{Type: "file", OID: e.oid, Size: e.size, Path: e.path}
	if e.lfs {
		t.LFS = &treeLFS{OID: e.sha256, Size: e.size, PointerSize: int64(len(e.pointer))}
	}
	return t
}
