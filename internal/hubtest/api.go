package hubtest

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// mirrorParam marks API requests that already went through the lenient
// mirror's relative 307.
const mirrorParam = "hubtest-mirror"

const timeFormat = "2006-01-02T15:04:05.000Z"

// serveHub routes a request to the hub listener.
func (h *Hub) serveHub(w *rec, r *http.Request) {
	h.smu.Lock()
	seq := w.req.Seq
	h.smu.Unlock()
	w.Header().Set("X-Request-Id", fmt.Sprintf("Root=1-%08x-%024x", h.now().Unix()&0xffffffff, seq))

	authed, bad := h.auth(r)
	if bad {
		// The Hub rejects a present-but-invalid token even on public repos.
		h.hfError(w, http.StatusUnauthorized, "", "Invalid credentials in Authorization header")
		return
	}
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	if segs[0] == "api" {
		if h.opts.Lenient && r.URL.Query().Get(mirrorParam) == "" {
			// A mirror in front of the API that bounces every call once with
			// a same-host relative redirect: clients must follow it and keep
			// the Authorization header (same host).
			q := r.URL.RawQuery
			if q != "" {
				q += "&"
			}
			h.redirect(w, http.StatusTemporaryRedirect, r.URL.EscapedPath()+"?"+q+mirrorParam+"=1")
			return
		}
		h.serveAPI(w, r, authed, segs[1:])
		return
	}
	// /{org}/{name}/(resolve|raw)/{rev}/{path} or /{name}/(resolve|raw)/...
	for _, n := range []int{2, 1} {
		if len(segs) >= n+3 && (segs[n] == "resolve" || segs[n] == "raw") {
			id, ok := unescapeID(segs[:n])
			if !ok {
				break
			}
			h.serveFile(w, r, authed, id, segs[n], segs[n+1:])
			return
		}
	}
	h.plain(w, http.StatusNotFound, "Not Found")
}

// auth reports whether the request carries the valid token, and whether it
// carries an invalid one.
func (h *Hub) auth(r *http.Request) (authed, bad bool) {
	v := r.Header.Values("Authorization")
	if len(v) == 0 {
		return false, false
	}
	scheme, tok, _ := strings.Cut(v[0], " ")
	if !strings.EqualFold(scheme, "Bearer") || len(v) > 1 || h.opts.Token == "" ||
		subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(h.opts.Token)) != 1 {
		return false, true
	}
	return true, false
}

func unescapeID(segs []string) (string, bool) {
	out := make([]string, len(segs))
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil || u == "" || strings.Contains(u, "/") {
			return "", false
		}
		out[i] = u
	}
	return strings.Join(out, "/"), true
}

// unescapeRest joins escaped segments and decodes them, so both
// "refs%2Fpr%2F1" and "refs/pr/1" give "refs/pr/1".
func unescapeRest(segs []string) (string, bool) {
	s, err := url.PathUnescape(strings.Join(segs, "/"))
	return s, err == nil
}

func (h *Hub) serveAPI(w *rec, r *http.Request, authed bool, segs []string) {
	if h.serveListing(w, r, authed, segs) {
		return
	}
	if len(segs) < 2 || segs[0] != "models" || segs[1] == "" {
		if len(segs) >= 2 && (segs[0] == "datasets" || segs[0] == "spaces") {
			// Only model repos exist here.
			h.repoNotFound(w, authed)
			return
		}
		h.plain(w, http.StatusNotFound, "Not Found")
		return
	}
	segs = segs[1:]
	// Split the repo id off: "org/name" normally, "name" for a legacy id.
	n := 1
	if len(segs) >= 2 {
		two, ok2 := unescapeID(segs[:2])
		one, _ := unescapeID(segs[:1])
		h.mu.RLock()
		known := func(id string) bool { return h.repos[id] != nil || h.renamed[id] != "" }
		if ok2 && (known(two) || !known(one)) {
			n = 2
		}
		h.mu.RUnlock()
	}
	id, ok := unescapeID(segs[:n])
	if !ok {
		h.plain(w, http.StatusBadRequest, "Bad repo id")
		return
	}
	rest := segs[n:]
	h.setRepo(w.req, id)
	if f := h.takeFault(w, "api", kindAPI, r.Method, id, ""); f != nil {
		h.answerStatus(w, f)
		return
	}
	restEsc := ""
	if len(rest) > 0 {
		restEsc = "/" + strings.Join(rest, "/")
	}
	rs, meta, ok := h.repoAccess(w, r, authed, "/api/models/", id, restEsc)
	if !ok {
		return
	}
	var arg string
	switch {
	case len(rest) == 0:
		if h.allow(w, r, http.MethodGet, http.MethodHead) {
			h.serveInfo(w, r, rs, meta, "main")
		}
	case rest[0] == "revision" && len(rest) >= 2:
		if arg, ok = unescapeRest(rest[1:]); ok && h.allow(w, r, http.MethodGet, http.MethodHead) {
			h.serveInfo(w, r, rs, meta, arg)
		}
	case rest[0] == "refs" && len(rest) == 1:
		if h.allow(w, r, http.MethodGet, http.MethodHead) {
			h.serveRefs(w, r, meta)
		}
	case rest[0] == "tree" && len(rest) >= 2:
		rev, ok1 := unescapeRest(rest[1:2])
		dir, ok2 := unescapeRest(rest[2:])
		if ok1 && ok2 && h.allow(w, r, http.MethodGet, http.MethodHead) {
			h.serveTree(w, r, rs, meta, rev, strings.Trim(dir, "/"))
		}
	case rest[0] == "paths-info" && len(rest) >= 2:
		if arg, ok = unescapeRest(rest[1:]); ok && h.allow(w, r, http.MethodPost) {
			h.servePathsInfo(w, r, rs, meta, arg)
		}
	default:
		h.plain(w, http.StatusNotFound, "Not Found")
	}
}

// repoAccess checks that the repo exists and is visible to the caller. It
// answers the request itself (error or rename redirect) when it returns false.
func (h *Hub) repoAccess(w *rec, r *http.Request, authed bool, prefix, id, restEsc string) (*repoState, *Repo, bool) {
	h.mu.RLock()
	rs := h.repos[id]
	var meta *Repo
	if rs != nil {
		meta = rs.meta
	}
	newID := h.renamed[id]
	h.mu.RUnlock()
	if rs == nil && newID != "" {
		// Renamed repo: a same-host relative redirect, which clients must
		// follow with the token (huggingface_hub follows only these).
		loc := prefix + escapePath(newID) + restEsc
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		h.redirect(w, http.StatusTemporaryRedirect, loc)
		return nil, nil, false
	}
	// The Hub hides whether a private repo exists: same answer as a missing one.
	if rs == nil || meta.Private && !(authed && meta.Approved) {
		h.repoNotFound(w, authed)
		return nil, nil, false
	}
	return rs, meta, true
}

func (h *Hub) repoNotFound(w *rec, authed bool) {
	status := http.StatusNotFound
	if !authed {
		status = http.StatusUnauthorized
	}
	h.hfError(w, status, "RepoNotFound", "Repository not found")
}

func (h *Hub) revisionNotFound(w *rec, rev string) {
	h.hfError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+rev)
}

// hfError answers in the Hub's error format: X-Error-Code, X-Error-Message
// and a JSON body {"error": message}.
func (h *Hub) hfError(w *rec, status int, code, msg string) {
	if code != "" {
		w.Header().Set("X-Error-Code", code)
	}
	w.Header().Set("X-Error-Message", msg)
	h.writeJSON(w, status, map[string]string{"error": msg})
}

func (h *Hub) writeJSON(w *rec, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"hubtest: cannot encode JSON"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.begin(status, int64(len(b)), h.opts.Lenient)
	_, _ = w.Write(b)
}

func (h *Hub) plain(w *rec, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.begin(status, int64(len(msg)), false)
	_, _ = w.Write([]byte(msg))
}

// redirect answers with a redirect whose body is short text, as the Hub does.
func (h *Hub) redirect(w *rec, status int, loc string) {
	w.Header().Set("Location", loc)
	text := "Temporary Redirect. Redirecting to " + loc
	if status == http.StatusFound {
		text = "Found. Redirecting to " + loc
	}
	h.plain(w, status, text)
}

func (h *Hub) allow(w *rec, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	h.plain(w, http.StatusMethodNotAllowed, "Method Not Allowed")
	return false
}

func isTrue(s string) bool { return s == "1" || strings.EqualFold(s, "true") }

type sibling struct {
	RFilename string      `json:"rfilename"`
	Size      *int64      `json:"size,omitempty"`
	BlobID    string      `json:"blobId,omitempty"`
	LFS       *siblingLFS `json:"lfs,omitempty"`
}

// siblingLFS spells the hash "sha256" where tree entries say "oid".
type siblingLFS struct {
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	PointerSize int64  `json:"pointerSize"`
}

// serveInfo answers /api/models/{id}[/revision/{rev}]. Gated repos answer
// anonymously too: only their files are gated.
func (h *Hub) serveInfo(w *rec, r *http.Request, rs *repoState, meta *Repo, rev string) {
	h.mu.RLock()
	commit, snap, ok := rs.resolve(rev)
	h.mu.RUnlock()
	if !ok {
		h.revisionNotFound(w, rev)
		return
	}
	q := r.URL.Query()
	out := modelFields(meta, commit, snap, isTrue(q.Get("blobs")))
	if expand := q["expand"]; len(expand) > 0 {
		// expand replaces the default field set.
		keep := map[string]any{"_id": out["_id"], "id": out["id"]}
		for _, k := range expand {
			if v, ok := out[k]; ok {
				keep[k] = v
			}
		}
		out = keep
	}
	h.writeJSON(w, http.StatusOK, out)
}

// modelFields is the full /api/models/{id} object of a repo at a commit;
// the search and collection answers are subsets of it.
func modelFields(meta *Repo, commit string, snap *snapshot, blobs bool) map[string]any {
	var siblings []sibling
	var used int64
	hasGGUF, hasST := false, false
	for _, p := range sortedKeys(snap.files) {
		e := snap.files[p]
		used += e.size
		hasGGUF = hasGGUF || strings.HasSuffix(p, ".gguf")
		hasST = hasST || strings.HasSuffix(p, ".safetensors")
		s := sibling{RFilename: p}
		if blobs {
			size := e.size
			s.Size, s.BlobID = &size, e.oid
			if e.lfs {
				s.LFS = &siblingLFS{SHA256: e.sha256, Size: e.size, PointerSize: int64(len(e.pointer))}
			}
		}
		siblings = append(siblings, s)
	}
	if siblings == nil {
		siblings = []sibling{}
	}
	tags := append([]string(nil), meta.RepoTags...)
	if hasGGUF {
		tags = append(tags, "gguf")
	}
	if hasST {
		tags = append(tags, "safetensors")
	}
	if meta.PipelineTag != "" {
		tags = append(tags, meta.PipelineTag)
	}
	card := map[string]any{}
	for k, v := range meta.CardData {
		card[k] = v
	}
	if meta.License != "" {
		tags = append(tags, "license:"+meta.License)
		card["license"] = meta.License
	}
	tags = append(tags, "region:us")
	var gated any = false
	if meta.Gated != "" {
		gated = meta.Gated
	}
	author, _, _ := strings.Cut(meta.ID, "/")
	sum := sha1.Sum([]byte("hubtest-id:" + meta.ID))
	out := map[string]any{
		"_id":          hex.EncodeToString(sum[:12]),
		"id":           meta.ID,
		"modelId":      meta.ID,
		"author":       author,
		"sha":          commit,
		"private":      meta.Private,
		"gated":        gated,
		"disabled":     meta.Disabled,
		"lastModified": meta.LastModified.UTC().Format(timeFormat),
		"createdAt":    meta.CreatedAt.UTC().Format(timeFormat),
		"tags":         dedupe(tags),
		"downloads":    meta.Downloads,
		"likes":        meta.Likes,
		"siblings":     siblings,
		"usedStorage":  used,
	}
	if meta.PipelineTag != "" {
		out["pipeline_tag"] = meta.PipelineTag
	}
	if meta.LibraryName != "" {
		out["library_name"] = meta.LibraryName
	}
	if len(card) > 0 {
		out["cardData"] = card
	}
	for k, v := range meta.Extra {
		out[k] = v
	}
	return out
}

type refJSON struct {
	Name         string `json:"name"`
	Ref          string `json:"ref"`
	TargetCommit string `json:"targetCommit"`
}

func (h *Hub) serveRefs(w *rec, r *http.Request, meta *Repo) {
	list := func(m map[string]string, prefix string) []refJSON {
		out := []refJSON{}
		for _, name := range sortedKeys(m) {
			out = append(out, refJSON{Name: name, Ref: prefix + name, TargetCommit: m[name]})
		}
		return out
	}
	out := map[string]any{
		"branches": list(meta.Branches, "refs/heads/"),
		"tags":     list(meta.Tags, "refs/tags/"),
		"converts": []refJSON{},
	}
	if isTrue(r.URL.Query().Get("include_prs")) {
		prs := []refJSON{}
		nums := make([]int, 0, len(meta.PullRequests))
		for n := range meta.PullRequests {
			nums = append(nums, n)
		}
		sort.Ints(nums)
		for _, n := range nums {
			ref := fmt.Sprintf("refs/pr/%d", n)
			prs = append(prs, refJSON{Name: ref, Ref: ref, TargetCommit: meta.PullRequests[n]})
		}
		out["pullRequests"] = prs
	}
	h.writeJSON(w, http.StatusOK, out)
}

// serveTree answers /api/models/{id}/tree/{rev}[/{dir}], paginated with a
// Link header whose absolute next URL carries an opaque cursor.
func (h *Hub) serveTree(w *rec, r *http.Request, rs *repoState, meta *Repo, rev, dir string) {
	h.mu.RLock()
	commit, snap, ok := rs.resolve(rev)
	h.mu.RUnlock()
	if !ok {
		h.revisionNotFound(w, rev)
		return
	}
	if _, isDir := snap.dirs[dir]; !isDir {
		w.Header().Set("X-Repo-Commit", commit)
		h.hfError(w, http.StatusNotFound, "EntryNotFound", fmt.Sprintf("Entry not found: %s does not exist on %q", dir, rev))
		return
	}
	q := r.URL.Query()
	recursive := isTrue(q.Get("recursive"))
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	var items []treeEntry
	for _, te := range snap.list {
		rel, ok := strings.CutPrefix(te.Path, prefix)
		if !ok || !recursive && strings.Contains(rel, "/") {
			continue
		}
		items = append(items, te)
	}
	off := 0
	if c := q.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "offset:"))
		if err != nil || err2 != nil || n < 0 || n > len(items) || !strings.HasPrefix(string(b), "offset:") {
			h.hfError(w, http.StatusBadRequest, "", "Invalid cursor")
			return
		}
		off = n
	}
	end := min(off+h.opts.PageSize, len(items))
	page := make([]treeEntry, 0, end-off)
	page = append(page, items[off:end]...)
	if isTrue(q.Get("expand")) {
		for i := range page {
			page[i].LastCommit = &lastCommit{ID: commit, Title: "Upload " + path.Base(page[i].Path),
				Date: meta.LastModified.UTC().Format(timeFormat)}
		}
	}
	if end < len(items) {
		q.Set("cursor", base64.RawURLEncoding.EncodeToString([]byte("offset:"+strconv.Itoa(end))))
		w.Header().Set("Link", fmt.Sprintf("<%s%s?%s>; rel=\"next\"", h.URL, r.URL.EscapedPath(), q.Encode()))
	}
	h.writeJSON(w, http.StatusOK, page)
}

// servePathsInfo answers POST /api/models/{id}/paths-info/{rev}, form
// (paths=a&paths=b) or JSON ({"paths":[...]}). Missing paths are left out.
func (h *Hub) servePathsInfo(w *rec, r *http.Request, rs *repoState, meta *Repo, rev string) {
	h.mu.RLock()
	commit, snap, ok := rs.resolve(rev)
	h.mu.RUnlock()
	if !ok {
		h.revisionNotFound(w, rev)
		return
	}
	r.Body = http.MaxBytesReader(w.ResponseWriter, r.Body, 1<<20)
	var paths []string
	expand := false
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		var body struct {
			Paths  []string `json:"paths"`
			Expand any      `json:"expand"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			h.hfError(w, http.StatusBadRequest, "", "Invalid JSON body: "+err.Error())
			return
		}
		paths = body.Paths
		expand = body.Expand == true || isTrue(fmt.Sprint(body.Expand))
	} else {
		if err := r.ParseForm(); err != nil {
			h.hfError(w, http.StatusBadRequest, "", "Invalid form body: "+err.Error())
			return
		}
		paths = r.PostForm["paths"]
		expand = isTrue(r.PostForm.Get("expand"))
	}
	out := []treeEntry{}
	for _, p := range paths {
		p = strings.Trim(p, "/")
		var te treeEntry
		if e := snap.files[p]; e != nil {
			te = e.treeEntry()
		} else if oid, ok := snap.dirs[p]; ok && p != "" {
			te = treeEntry{Type: "directory", OID: oid, Path: p}
		} else {
			continue
		}
		if expand {
			te.LastCommit = &lastCommit{ID: commit, Title: "Upload " + path.Base(p), Date: meta.LastModified.UTC().Format(timeFormat)}
		}
		out = append(out, te)
	}
	h.writeJSON(w, http.StatusOK, out)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
