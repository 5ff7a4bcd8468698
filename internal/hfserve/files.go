package hfserve

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serveFile answers GET|HEAD /{repo}/resolve/{rev}/{path} and /raw/. The
// answer is always direct (200/206), never a redirect to a CDN: the store
// is the CDN.
func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, repo string, raw bool, segs []string) {
	if !methodAllowed(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	idx, ok := h.loadIndex(w)
	if !ok {
		return
	}
	rev, rest, ok := splitRev(idx.repos[repo], segs)
	if !ok || len(rest) == 0 {
		hfError(w, http.StatusBadRequest, "", "Bad revision or path")
		return
	}
	name, err := unescape(strings.Join(rest, "/"))
	if err != nil || name == "" {
		hfError(w, http.StatusBadRequest, "", "Bad path encoding")
		return
	}
	// A pull-through file that finished installing while a request waited
	// for it is looked up again, now in the store.
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// The pull the request followed ended: read the store again.
			if idx, ok = h.loadIndex(w); !ok {
				return
			}
		}
		_, s, ok := h.lookup(r.Context(), w, idx, repo, rev)
		if !ok {
			return
		}
		// Every answer past this point carries the commit, 404s included:
		// clients cache "absent at this commit" from it.
		w.Header().Set("X-Repo-Commit", s.commit)
		f := s.files[name]
		if f == nil {
			hfError(w, http.StatusNotFound, codeEntryNotFound, fmt.Sprintf("Entry not found: %s does not exist at %s", name, s.commit))
			return
		}
		if h.gatedRefused(w, r, repo, s) {
			return
		}
		if raw && f.lfs {
			// git stores the LFS pointer, and /raw serves what git stores:
			// known from the listing, whether or not the file is here.
			hdr := w.Header()
			hdr.Set("Content-Disposition", contentDisposition(f.path))
			hdr.Set("ETag", `"`+f.blobID+`"`)
			hdr.Set("Content-Type", "text/plain; charset=utf-8")
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.pointer))
			return
		}
		if len(f.copies) > 0 {
			h.serveStored(w, r, f, raw)
			return
		}
		if h.pt == nil || attempt == maxLookups {
			// Listed upstream, and a pull for it finished, yet not installed.
			w.Header().Set("Retry-After", "15")
			hfError(w, http.StatusBadGateway, "", "hal0 pulled "+f.path+" from its upstream hub but it is still not installed; see the server log")
			return
		}
		if !h.serveFromPull(w, r, repo, s.commit, f, raw) {
			return
		}
	}
}

// maxLookups bounds how often one request looks a file up again after the
// pull it followed ended.
const maxLookups = 3

// serveStored sends an installed file from the store.
func (h *Handler) serveStored(w http.ResponseWriter, r *http.Request, f *file, raw bool) {
	hdr := w.Header()
	hdr.Set("Content-Disposition", contentDisposition(f.path))
	fh, err := h.open(f)
	if err != nil {
		var nf *notFoundError
		if errors.As(err, &nf) {
			hfError(w, http.StatusNotFound, codeEntryNotFound, "Entry not found: "+nf.msg)
			return
		}
		hfError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	defer fh.Close()
	if f.lfs {
		// What the Hub sends for LFS files: the content hash as ETag and
		// as X-Linked-Etag (which clients prefer), and the real size.
		etag := `"` + f.sha256 + `"`
		hdr.Set("ETag", etag)
		if !raw {
			hdr.Set("X-Linked-Etag", etag)
			hdr.Set("X-Linked-Size", strconv.FormatInt(f.size, 10))
		}
	} else {
		hdr.Set("ETag", `"`+f.blobID+`"`)
	}
	hdr.Set("Content-Type", contentType(f.path))
	// ServeContent does Range (206, Content-Range, 416), HEAD and
	// If-None-Match/If-Range against the ETag set above, and copies with
	// io.CopyN(w, fh, n). fh must stay a bare *os.File and w the server's
	// own ResponseWriter: that copy then reaches http's response.ReadFrom
	// and *net.TCPConn.ReadFrom, which sends the file with sendfile(2).
	// Wrapping either (a counting reader, a compressing writer) silently
	// falls back to a user-space copy.
	http.ServeContent(w, r, "", time.Time{}, fh)
}

// notFoundError is a registry file that is gone from every copy's
// directory: the store lost it, which clients should see as absent.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// open opens an intact copy of f: a regular file, inside its model
// directory (symlinks that stay inside are fine; ones that leave it are
// refused), with the size the registry recorded. A copy that fails is
// logged and the next one tried. The error returned is safe to show to
// clients: it names the repo path, never a path on this machine.
func (h *Handler) open(f *file) (*os.File, error) {
	var problems []string
	missing := 0
	for _, c := range f.copies {
		fh, err := openCopy(c.dir, f)
		if err == nil {
			return fh, nil
		}
		var ie *integrityError
		switch {
		case errors.As(err, &ie):
			problems = append(problems, ie.public)
			h.logf("hfserve: refusing to serve %s of %s from %s: %v; run `hal0 model verify %s`", f.path, c.modelID, c.dir, err, c.modelID)
		case errors.Is(err, fs.ErrNotExist):
			missing++
			h.logf("hfserve: %s of %s is missing from %s; run `hal0 model verify %s`", f.path, c.modelID, c.dir, c.modelID)
		default:
			problems = append(problems, "cannot be opened")
			h.logf("hfserve: cannot open %s of %s in %s: %v", f.path, c.modelID, c.dir, err)
		}
	}
	if missing == len(f.copies) {
		return nil, &notFoundError{msg: f.path + " is listed in hal0's registry but missing from its store"}
	}
	return nil, fmt.Errorf("hal0 refuses to serve %s: the stored copy %s; the box's operator should run `hal0 model verify`", f.path, strings.Join(problems, "; another "))
}

// integrityError is a stored file that must not be served.
type integrityError struct {
	public string // for the client
	detail string // for the log
}

func (e *integrityError) Error() string { return e.detail }

func openCopy(dir string, f *file) (*os.File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	// os.Root resolves symlinks itself and refuses any that lead out of
	// dir, atomically (openat2 RESOLVE_BENEATH where the kernel has it),
	// so a link swapped in after a check cannot escape either. O_NONBLOCK
	// keeps a FIFO planted at the path from blocking the open forever; it
	// changes nothing for regular files.
	fh, err := root.OpenFile(filepath.FromSlash(f.path), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		// os.Root's error for this is not exported; matching its text only
		// picks the message. Should the text change, the file is still
		// refused, as "cannot be opened".
		if strings.Contains(err.Error(), "path escapes from parent") {
			return nil, &integrityError{public: "is a symlink that leaves its model directory", detail: err.Error()}
		}
		return nil, err
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, err
	}
	switch {
	case !st.Mode().IsRegular():
		fh.Close()
		return nil, &integrityError{public: "is not a regular file", detail: "not a regular file: " + st.Mode().String()}
	case st.Size() != f.size:
		// Serving it would hand out bytes the registry never verified,
		// and a Content-Length that contradicts the listing.
		fh.Close()
		return nil, &integrityError{
			public: fmt.Sprintf("has %d bytes where the registry recorded %d", st.Size(), f.size),
			detail: fmt.Sprintf("size %d on disk, %d in the registry", st.Size(), f.size),
		}
	}
	return fh, nil
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".json":
		return "application/json; charset=utf-8"
	case ".md":
		return "text/markdown; charset=utf-8"
	case ".txt", "":
		return "text/plain; charset=utf-8"
	}
	if t := mime.TypeByExtension(path.Ext(p)); t != "" && !strings.HasPrefix(t, "text/html") {
		return t
	}
	// Never let a stored file be sniffed into HTML for a browser.
	return "application/octet-stream"
}

func contentDisposition(p string) string {
	base := path.Base(p)
	ascii := strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f || r == '"' || r == '\\' {
			return '_'
		}
		return r
	}, base)
	return fmt.Sprintf(`inline; filename*=UTF-8''%s; filename="%s";`, url.PathEscape(base), ascii)
}
