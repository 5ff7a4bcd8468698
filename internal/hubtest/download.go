package hubtest

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
)

// serveFile answers GET|HEAD /{id}/resolve/{rev}/{path} and /{id}/raw/{rev}/{path}.
// segs are the escaped segments after "resolve"/"raw": the revision (one
// segment, "refs%2Fpr%2F1" for refs/pr/1) then the file path.
func (h *Hub) serveFile(w *rec, r *http.Request, authed bool, id, kind string, segs []string) {
	rev, ok1 := unescapeRest(segs[:1])
	file, ok2 := unescapeRest(segs[1:])
	if !ok1 || !ok2 {
		h.plain(w, http.StatusBadRequest, "Bad path encoding")
		return
	}
	rs, meta, ok := h.repoAccess(w, r, authed, "/", id, "/"+kind+"/"+strings.Join(segs, "/"))
	if !ok {
		return
	}
	h.setRepo(w.req, id)
	if !h.allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	if meta.Disabled {
		h.hfError(w, http.StatusForbidden, "", "Access to this resource is disabled.")
		return
	}
	if meta.Gated != "" && !(authed && meta.Approved) {
		if !authed {
			h.hfError(w, http.StatusUnauthorized, "GatedRepo", fmt.Sprintf(
				"Access to model %s is restricted. You must have access to it and be authenticated to access it. Please log in.", id))
		} else {
			h.hfError(w, http.StatusForbidden, "GatedRepo", fmt.Sprintf(
				"Access to model %s is restricted and you are not in the authorized list. Visit https://huggingface.co/%s to ask for access.", id, id))
		}
		return
	}
	h.mu.RLock()
	commit, snap, ok := rs.resolve(rev)
	h.mu.RUnlock()
	if !ok {
		h.revisionNotFound(w, rev)
		return
	}
	// X-Repo-Commit is on every answer past this point, 404s included:
	// clients cache "file absent at commit" from it.
	w.Header().Set("X-Repo-Commit", commit)
	e := snap.files[file]
	if e == nil {
		h.hfError(w, http.StatusNotFound, "EntryNotFound", "Entry not found")
		return
	}
	h.setFile(w.req, id, file)

	reqKind := kindContent
	if kind == "resolve" && e.lfs {
		reqKind = kindRedirect
	}
	f := h.takeFault(w, "hub", reqKind, r.Method, id, file)
	if f != nil && f.Status != 0 {
		h.answerStatus(w, f)
		return
	}
	if reqKind == kindRedirect {
		h.redirectToCDN(w, id, e, f)
		return
	}
	src := e.content()
	ctype := contentType(file)
	if kind == "raw" && e.lfs {
		src, ctype = e.blob(), "text/plain; charset=utf-8"
	}
	w.Header().Set("ETag", h.etag(e.oid))
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", contentDisposition(file))
	w.fileKey = id + "/" + file
	h.serveContent(w, r, src, f)
}

// redirectToCDN answers an LFS resolve with 302 to a presigned CDN URL. The
// headers carry what the client needs (X-Linked-Etag = sha256, X-Linked-Size
// = real size); the Content-Length is that of the short text body, not the
// file's, which is why clients must prefer X-Linked-Size.
func (h *Hub) redirectToCDN(w *rec, id string, e *entry, f *Fault) {
	base := h.CDNURL
	if f != nil && f.DeadCDN {
		base = h.deadURL
	}
	loc := base + h.signedPath(id, e)
	hdr := w.Header()
	if !h.opts.Lenient {
		hdr.Set("X-Linked-Etag", `"`+e.sha256+`"`)
		hdr.Set("X-Linked-Size", strconv.FormatInt(e.size, 10))
		hdr.Set("Accept-Ranges", "bytes")
	}
	hdr.Set("ETag", h.etag(e.sha256))
	h.redirect(w, http.StatusFound, loc)
}

func (h *Hub) etag(v string) string {
	if h.opts.Lenient {
		return v
	}
	return `"` + v + `"`
}

// serveContent sends src honouring Range, with the fault's body shaping
// (nil f = a healthy response). Callers set ETag and Content-Type.
func (h *Hub) serveContent(w *rec, r *http.Request, src source, f *Fault) {
	ignoreRange := h.opts.Lenient || f != nil && f.IgnoreRange
	chunked := h.opts.Lenient || f != nil && f.NoContentLength
	if !h.opts.Lenient {
		w.Header().Set("Accept-Ranges", "bytes")
	}
	status, start, length := http.StatusOK, int64(0), src.size
	if rg := r.Header.Get("Range"); rg != "" && !ignoreRange {
		s, n, ok, unsatisfiable := parseRange(rg, src.size)
		switch {
		case unsatisfiable:
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", src.size))
			w.Header().Del("ETag")
			h.plain(w, http.StatusRequestedRangeNotSatisfiable, "Requested Range Not Satisfiable")
			return
		case ok:
			status, start, length = http.StatusPartialContent, s, n
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", s, s+n-1, src.size))
		}
	}
	if f != nil && f.WrongContentLength != 0 {
		h.serveLying(w, r, status, src, start, length, f)
		return
	}
	w.begin(status, length, chunked)
	if w.head || length == 0 {
		return
	}
	if f.shapesBytes() {
		flush := func() error { return http.NewResponseController(w.ResponseWriter).Flush() }
		dropped, err := h.writeShaped(r.Context(), w, flush, src, start, length, f)
		if dropped {
			dropConn(w)
		} else if err != nil {
			// Cut short (client gone, hub closing): make sure the client
			// cannot take the truncated body for a complete one.
			panic(http.ErrAbortHandler)
		}
		return
	}
	if src.disk == "" {
		_, _ = w.Write(src.data[start : start+length])
		return
	}
	fh, err := os.Open(src.disk)
	if err == nil {
		_, err = fh.Seek(start, io.SeekStart)
	}
	if err != nil {
		panic(http.ErrAbortHandler) // headers are out; all we can do is cut the connection
	}
	defer fh.Close()
	// io.Copy reaches http's ReadFrom and then the TCP connection's, which
	// uses sendfile(2) for an *os.File behind an io.LimitedReader.
	w.count(length)
	n, _ := io.Copy(w.ResponseWriter, io.LimitReader(fh, length))
	w.count(n - length)
}

// parseRange parses a single-range "bytes=a-b", "bytes=a-" or "bytes=-n".
// ok=false with unsatisfiable=false means: ignore the header and send 200
// (malformed or multi-range requests, which RFC 9110 allows ignoring).
func parseRange(hdr string, size int64) (start, length int64, ok, unsatisfiable bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(hdr), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if a == "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false, false
		}
		if n == 0 || size == 0 {
			return 0, 0, false, true
		}
		n = min(n, size)
		return size - n, n, true, false
	}
	s, err := strconv.ParseInt(a, 10, 64)
	if err != nil || s < 0 {
		return 0, 0, false, false
	}
	e := size - 1
	if b != "" {
		if e, err = strconv.ParseInt(b, 10, 64); err != nil || e < s {
			return 0, 0, false, false
		}
	}
	if s >= size {
		return 0, 0, false, true
	}
	e = min(e, size-1)
	return s, e - s + 1, true, false
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".json":
		return "application/json; charset=utf-8"
	case ".md":
		return "text/markdown; charset=utf-8"
	case ".txt", ".gitattributes", "":
		return "text/plain; charset=utf-8"
	}
	if t := mime.TypeByExtension(path.Ext(p)); t != "" && !strings.HasPrefix(t, "text/html") {
		return t
	}
	return "application/octet-stream"
}

func contentDisposition(p string) string {
	base := path.Base(p)
	return fmt.Sprintf(`inline; filename*=UTF-8''%s; filename="%s";`, url.PathEscape(base), strings.ReplaceAll(base, `"`, ""))
}
