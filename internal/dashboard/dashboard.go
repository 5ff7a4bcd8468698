// Package dashboard serves hal0's web dashboard: plain HTML, CSS and ES
// modules under web/, embedded in the binary so that hal0-apid needs no
// asset directory and the page needs no network beyond the machine (no
// CDN, no web fonts, no build step).
//
// The page talks to the API on its own origin (/api/...), so it is meant
// to be mounted on the same server as the API, behind the same guards:
//
//	mux.Handle("/", dashboard.Handler())
//
// The pattern must be "/" and not "GET /": ServeMux refuses "GET /" next
// to apiserver's method-less "/api/models/" (neither is more specific), and
// panics. Handler answers other methods with 405 itself.
package dashboard

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed web
var webFS embed.FS

// CSP is the Content-Security-Policy of every dashboard response. Only
// files of this origin may run or style anything, so an API answer that
// slipped into the page as markup (a model id, an error message) could not
// execute; the page builds its DOM with textContent anyway. connect-src
// 'self' keeps the token from being sent anywhere but hal0-apid, and
// frame-ancestors 'none' stops another site from framing the page to
// trick clicks on Cancel or Swap.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// contentTypes lists the only file types the dashboard ships. An embedded
// file with another extension fails at start-up (see load) rather than
// reaching a browser with a guessed type, which nosniff would then refuse.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".json": "application/json",
}

type asset struct {
	body  []byte
	ctype string
	etag  string
}

// assets maps URL paths ("/", "/app.js") to files. Lookups are exact, so
// no request path can reach outside web/.
var assets = mustLoad()

func mustLoad() map[string]*asset {
	m, err := load(webFS, "web")
	if err != nil {
		panic(err)
	}
	return m
}

func load(fsys fs.FS, root string) (map[string]*asset, error) {
	out := map[string]*asset{}
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("dashboard: %s has no known content type", p)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		// Weak: apiserver compresses responses when the browser accepts
		// it, and a strong ETag would then name bytes that were not sent.
		a := &asset{body: b, ctype: ct, etag: `W/"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`}
		url := strings.TrimPrefix(p, root)
		out[url] = a
		if url == "/index.html" {
			out["/"] = a
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out["/"] == nil {
		return nil, fmt.Errorf("dashboard: %s/index.html is missing", root)
	}
	return out, nil
}

// Handler serves the dashboard's files for GET and HEAD.
//
// Caching: the file names carry no content hash (there is no build step
// to add one), so browsers are told to revalidate every time
// (Cache-Control: no-cache) and get 304 while the ETag matches. After an
// upgrade of hal0-apid the new page is used at once, never an old script
// mixed with a new one.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY") // for browsers without frame-ancestors
	// Links leave for the Hub (a gated model's license page); they must
	// not tell it the address of this machine's dashboard.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: the dashboard only serves files (the API is under /api/)", http.StatusMethodNotAllowed)
		return
	}
	a := assets[r.URL.Path]
	if a == nil {
		h.Set("Cache-Control", "no-store")
		http.Error(w, "not found: the dashboard is at /", http.StatusNotFound)
		return
	}
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	if etagMatches(r.Header.Get("If-None-Match"), a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", a.ctype)
	h.Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(a.body)
	}
}

// etagMatches applies If-None-Match's weak comparison: a list of tags, or
// "*", where W/"x" and "x" are the same tag.
func etagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == want {
			return true
		}
	}
	return false
}
