package hfserve

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"sort"
	"strings"
	"time"
)

const timeFormat = "2006-01-02T15:04:05.000Z"

// serveAPI answers /api/models/{org}/{name}[/revision/{rev}|/tree/{rev}[/{path}]|/paths-info/{rev}|/refs].
func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request, segs []string) {
	if len(segs) >= 1 && (segs[0] == "datasets" || segs[0] == "spaces") {
		hfError(w, http.StatusNotFound, codeRepoNotFound, "Repository not found")
		return
	}
	if len(segs) < 3 || segs[0] != "models" {
		hfError(w, http.StatusNotFound, "", "Not Found")
		return
	}
	repo, ok := repoID(segs[1:3])
	if !ok {
		hfError(w, http.StatusBadRequest, "", "Bad repository id")
		return
	}
	rest := segs[3:]
	switch {
	case len(rest) == 0:
		if methodAllowed(w, r, http.MethodGet, http.MethodHead) {
			h.serveInfo(w, r, repo, "main")
		}
	case rest[0] == "revision" && len(rest) >= 2:
		// A revision may arrive escaped (refs%2Fpr%2F1) or not (refs/pr/1).
		rev, err := unescape(strings.Join(rest[1:], "/"))
		if err != nil || rev == "" {
			hfError(w, http.StatusBadRequest, "", "Bad revision")
			return
		}
		if methodAllowed(w, r, http.MethodGet, http.MethodHead) {
			h.serveInfo(w, r, repo, rev)
		}
	case rest[0] == "tree" && len(rest) >= 2:
		if methodAllowed(w, r, http.MethodGet, http.MethodHead) {
			h.serveTree(w, r, repo, rest[1:])
		}
	case rest[0] == "paths-info" && len(rest) >= 2:
		rev, err := unescape(strings.Join(rest[1:], "/"))
		if err != nil || rev == "" {
			hfError(w, http.StatusBadRequest, "", "Bad revision")
			return
		}
		if methodAllowed(w, r, http.MethodPost) {
			h.servePathsInfo(w, r, repo, rev)
		}
	case rest[0] == "refs" && len(rest) == 1:
		if methodAllowed(w, r, http.MethodGet, http.MethodHead) {
			h.serveRefs(w, r, repo)
		}
	default:
		hfError(w, http.StatusNotFound, "", "Not Found")
	}
}

type sibling struct {
	RFilename string      `json:"rfilename"`
	Size      *int64      `json:"size,omitempty"`
	BlobID    string      `json:"blobId,omitempty"`
	LFS       *siblingLFS `json:"lfs,omitempty"`
}

type siblingLFS struct {
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	PointerSize int    `json:"pointerSize"`
}

// serveInfo answers /api/models/{repo}[/revision/{rev}]: what a client
// needs to pin the commit (sha) and pick files (siblings).
func (h *Handler) serveInfo(w http.ResponseWriter, r *http.Request, repo, rev string) {
	idx, ok := h.loadIndex(w)
	if !ok {
		return
	}
	_, s, ok := h.lookup(r.Context(), w, idx, repo, rev)
	if !ok {
		return
	}
	q := r.URL.Query()
	blobs := isTrue(q.Get("blobs"))
	siblings := make([]sibling, 0, len(s.files))
	hasGGUF, hasST := false, false
	for _, e := range s.list {
		if e.Type != "file" {
			continue
		}
		f := s.files[e.Path]
		hasGGUF = hasGGUF || strings.HasSuffix(f.path, ".gguf")
		hasST = hasST || strings.HasSuffix(f.path, ".safetensors")
		sb := sibling{RFilename: f.path}
		if blobs {
			size := f.size
			sb.Size, sb.BlobID = &size, f.blobID
			if f.lfs {
				sb.LFS = &siblingLFS{SHA256: f.sha256, Size: f.size, PointerSize: len(f.pointer)}
			}
		}
		siblings = append(siblings, sb)
	}
	tags := []string{}
	if hasGGUF {
		tags = append(tags, "gguf")
	}
	if hasST {
		tags = append(tags, "safetensors")
	}
	author, _, _ := strings.Cut(repo, "/")
	id := sha1.Sum([]byte("hal0-hfserve:" + repo))
	out := map[string]any{
		// The Hub's _id is a 24-hex database id; a stable hash of the
		// name has the same shape.
		"_id":          hex.EncodeToString(id[:12]),
		"id":           repo,
		"modelId":      repo,
		"author":       author,
		"sha":          s.commit,
		"private":      false,
		"gated":        gatedJSON(s.gated),
		"disabled":     false,
		"downloads":    0,
		"likes":        0,
		"lastModified": fmtTime(s.installed),
		"createdAt":    fmtTime(s.created),
		"siblings":     siblings,
		"usedStorage":  s.size,
	}
	if s.license != "" {
		tags = append(tags, "license:"+s.license)
		out["cardData"] = map[string]any{"license": s.license}
	}
	out["tags"] = tags
	if expand := q["expand"]; len(expand) > 0 {
		// expand replaces the default field set, as on the Hub.
		keep := map[string]any{"_id": out["_id"], "id": out["id"]}
		for _, k := range expand {
			if v, ok := out[k]; ok {
				keep[k] = v
			}
		}
		out = keep
	}
	writeJSON(w, http.StatusOK, out)
}

// gatedJSON is the Hub's "gated" field: false, or "auto"/"manual".
func gatedJSON(g string) any {
	if g == "" {
		return false
	}
	return g
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	return t.UTC().Format(timeFormat)
}

func isTrue(s string) bool { return s == "1" || strings.EqualFold(s, "true") }

// splitRev separates the revision from what follows it in escaped path
// segments. The revision is normally one segment, escaped; unescaped
// refs/pr/N or refs/heads/x span several, and the first prefix that names
// an installed revision wins.
func splitRev(ri *repoIndex, segs []string) (rev string, rest []string, ok bool) {
	first, err := unescape(segs[0])
	if err != nil || first == "" {
		return "", nil, false
	}
	if ri != nil && first == "refs" && ri.resolve(first) == nil {
		for k := 2; k <= len(segs); k++ {
			cand, err := unescape(strings.Join(segs[:k], "/"))
			if err == nil && ri.resolve(cand) != nil {
				return cand, segs[k:], true
			}
		}
	}
	return first, segs[1:], true
}

// serveTree answers /api/models/{repo}/tree/{rev}[/{path}]: the entries of
// one directory, or with recursive=true everything below it, paginated
// with an absolute Link: rel="next" URL carrying an opaque cursor.
func (h *Handler) serveTree(w http.ResponseWriter, r *http.Request, repo string, segs []string) {
	idx, ok := h.loadIndex(w)
	if !ok {
		return
	}
	rev, rest, ok := splitRev(idx.repos[repo], segs)
	if !ok {
		hfError(w, http.StatusBadRequest, "", "Bad revision")
		return
	}
	dir, err := unescape(strings.Join(rest, "/"))
	if err != nil {
		hfError(w, http.StatusBadRequest, "", "Bad path")
		return
	}
	dir = strings.Trim(dir, "/")
	_, s, ok := h.lookup(r.Context(), w, idx, repo, rev)
	if !ok {
		return
	}
	if _, isDir := s.dirs[dir]; !isDir {
		w.Header().Set("X-Repo-Commit", s.commit)
		hfError(w, http.StatusNotFound, codeEntryNotFound, fmt.Sprintf("Entry not found: %s does not exist on %q", dir, rev))
		return
	}
	q := r.URL.Query()
	recursive := isTrue(q.Get("recursive"))
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	after := ""
	if c := q.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil || len(b) == 0 {
			hfError(w, http.StatusBadRequest, "", "Invalid cursor")
			return
		}
		after = string(b)
	}
	// The listing is sorted by path, so the cursor is simply the last path
	// sent: a page boundary stays put even if the listing changed between
	// pages.
	start := max(
		sort.Search(len(s.list), func(i int) bool { return s.list[i].Path >= prefix }),
		sort.Search(len(s.list), func(i int) bool { return s.list[i].Path > after }))
	page := []treeEntry{}
	more := false
	for _, e := range s.list[start:] {
		rel, ok := strings.CutPrefix(e.Path, prefix)
		if !ok {
			break // sorted: nothing further is under dir
		}
		if !recursive && strings.Contains(rel, "/") {
			continue
		}
		if len(page) == h.opts.PageSize {
			more = true
			break
		}
		page = append(page, e)
	}
	if more {
		q.Set("cursor", base64.RawURLEncoding.EncodeToString([]byte(page[len(page)-1].Path)))
		w.Header().Set("Link", fmt.Sprintf(`<%s%s?%s>; rel="next"`, baseURL(r), r.URL.EscapedPath(), q.Encode()))
	}
	w.Header().Set("X-Repo-Commit", s.commit)
	writeJSON(w, http.StatusOK, page)
}

// baseURL is scheme://host of the request. Pagination links must be
// absolute: huggingface_hub and @huggingface/hub fetch them as they are.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// maxPathsInfoBody bounds a paths-info body; the Hub takes a few thousand
// paths at most, and ours are far fewer.
const maxPathsInfoBody = 1 << 20

// servePathsInfo answers POST /api/models/{repo}/paths-info/{rev}, with a
// form body (paths=a&paths=b, as huggingface_hub sends) or JSON
// ({"paths":[...]} as @huggingface/hub sends). Missing paths are left out.
func (h *Handler) servePathsInfo(w http.ResponseWriter, r *http.Request, repo, rev string) {
	idx, ok := h.loadIndex(w)
	if !ok {
		return
	}
	_, s, ok := h.lookup(r.Context(), w, idx, repo, rev)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxPathsInfoBody)
	var paths []string
	expand := false
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		var body struct {
			Paths  []string        `json:"paths"`
			Expand json.RawMessage `json:"expand"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			hfError(w, http.StatusBadRequest, "", "Invalid JSON body: "+err.Error())
			return
		}
		paths = body.Paths
		expand = isTrue(strings.Trim(string(body.Expand), `"`))
	} else {
		if err := r.ParseForm(); err != nil {
			hfError(w, http.StatusBadRequest, "", "Invalid form body: "+err.Error())
			return
		}
		paths = r.PostForm["paths"]
		expand = isTrue(r.PostForm.Get("expand"))
	}
	out := []treeEntry{}
	seen := map[string]bool{}
	for _, p := range paths {
		p = strings.Trim(p, "/")
		if seen[p] {
			continue
		}
		seen[p] = true
		var e treeEntry
		if f := s.files[p]; f != nil {
			e = f.entry()
		} else if oid, ok := s.dirs[p]; ok && p != "" {
			e = treeEntry{Type: "directory", OID: oid, Path: p}
		} else {
			continue
		}
		if expand {
			// The Hub names the last commit that touched the path; hal0
			// only knows the installed commit, which is what clients use
			// this for (@huggingface/hub names its snapshot folder after
			// it).
			e.LastCommit = &lastCommit{ID: s.commit, Title: "", Date: fmtTime(s.installed)}
		}
		out = append(out, e)
	}
	w.Header().Set("X-Repo-Commit", s.commit)
	writeJSON(w, http.StatusOK, out)
}

type refJSON struct {
	Name         string `json:"name"`
	Ref          string `json:"ref"`
	TargetCommit string `json:"targetCommit"`
}

// serveRefs answers /api/models/{repo}/refs, which llama.cpp uses to find
// main's commit. Recorded revision names are listed as branches unless
// they say otherwise (refs/tags/…, refs/pr/N): hal0 does not record
// whether a name was a branch or a tag.
func (h *Handler) serveRefs(w http.ResponseWriter, r *http.Request, repo string) {
	idx, ok := h.loadIndex(w)
	if !ok {
		return
	}
	ri, main, ok := h.lookup(r.Context(), w, idx, repo, "main")
	if !ok {
		return
	}
	branches := []refJSON{{Name: "main", Ref: "refs/heads/main", TargetCommit: main.commit}}
	tags, prs := []refJSON{}, []refJSON{}
	names := make([]string, 0, len(ri.names))
	for n := range ri.names {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := ri.names[n]
		switch {
		case n == "main" || n == "HEAD":
		case strings.HasPrefix(n, "refs/pr/"):
			prs = append(prs, refJSON{Name: n, Ref: n, TargetCommit: c})
		case strings.HasPrefix(n, "refs/tags/"):
			tags = append(tags, refJSON{Name: strings.TrimPrefix(n, "refs/tags/"), Ref: n, TargetCommit: c})
		case strings.HasPrefix(n, "refs/"):
		default:
			branches = append(branches, refJSON{Name: n, Ref: "refs/heads/" + n, TargetCommit: c})
		}
	}
	out := map[string]any{"branches": branches, "tags": tags, "converts": []refJSON{}}
	if isTrue(r.URL.Query().Get("include_prs")) {
		out["pullRequests"] = prs
	}
	writeJSON(w, http.StatusOK, out)
}
