package dashboard

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

// webFiles lists the embedded files by URL path ("/app.js").
func webFiles(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := fs.WalkDir(webFS, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(webFS, p)
		out[strings.TrimPrefix(p, "web")] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func get(t *testing.T, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	return rec.Result()
}

func TestServesEveryFile(t *testing.T) {
	files := webFiles(t)
	if len(files) < 5 {
		t.Fatalf("only %d embedded files", len(files))
	}
	for p, want := range files {
		res := get(t, http.MethodGet, p, nil)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || string(body) != string(want) {
			t.Errorf("GET %s: %d, %d bytes (want the %d bytes of the file)", p, res.StatusCode, len(body), len(want))
		}
		if ct := res.Header.Get("Content-Type"); ct != contentTypes[path.Ext(p)] {
			t.Errorf("GET %s: Content-Type %q", p, ct)
		}
		for k, v := range map[string]string{
			"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
			"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
		} {
			if got := res.Header.Get(k); got != v {
				t.Errorf("GET %s: %s = %q, want %q", p, k, got, v)
			}
		}
		if !strings.HasPrefix(res.Header.Get("ETag"), `W/"`) {
			t.Errorf("GET %s: ETag %q", p, res.Header.Get("ETag"))
		}
	}
	// The JavaScript type browsers require for modules under nosniff.
	if contentTypes[".js"] != "text/javascript; charset=utf-8" {
		t.Error(".js type")
	}
}

func TestIndexAtRoot(t *testing.T) {
	res := get(t, http.MethodGet, "/", nil)
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || !strings.Contains(string(body), `<meta name="hal0-dashboard"`) {
		t.Fatalf("GET /: %d %.80q", res.StatusCode, body)
	}
	if res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", res.Header.Get("Content-Type"))
	}
}

func TestRevalidation(t *testing.T) {
	etag := get(t, http.MethodGet, "/app.js", nil).Header.Get("ETag")
	strong := strings.TrimPrefix(etag, "W/")
	for _, inm := range []string{etag, strong, `"nope", ` + etag, "*"} {
		res := get(t, http.MethodGet, "/app.js", map[string]string{"If-None-Match": inm})
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusNotModified || len(body) != 0 || res.Header.Get("ETag") != etag {
			t.Errorf("If-None-Match %s: %d with %d bytes", inm, res.StatusCode, len(body))
		}
	}
	if res := get(t, http.MethodGet, "/app.js", map[string]string{"If-None-Match": `W/"other"`}); res.StatusCode != 200 {
		t.Errorf("a stale ETag: %d", res.StatusCode)
	}
	// Another file's tag does not match.
	other := get(t, http.MethodGet, "/app.css", nil).Header.Get("ETag")
	if other == etag {
		t.Fatal("two files share an ETag")
	}
	if res := get(t, http.MethodGet, "/app.js", map[string]string{"If-None-Match": other}); res.StatusCode != 200 {
		t.Errorf("app.css's ETag on app.js: %d", res.StatusCode)
	}
}

func TestHeadAndMethods(t *testing.T) {
	res := get(t, http.MethodHead, "/", nil)
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || len(body) != 0 || res.Header.Get("Content-Length") == "" {
		t.Errorf("HEAD /: %d, %d bytes, Content-Length %q", res.StatusCode, len(body), res.Header.Get("Content-Length"))
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		res := get(t, m, "/", nil)
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /: %d, Allow %q", m, res.StatusCode, res.Header.Get("Allow"))
		}
	}
}

func TestNotFound(t *testing.T) {
	for _, p := range []string{"/nope", "/web/index.html", "/index.html/", "/../go.mod", "/%2e%2e/dashboard.go", "/dashboard.go", "/api/models"} {
		res := get(t, http.MethodGet, p, nil)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d", p, res.StatusCode)
		}
		if res.Header.Get("Content-Security-Policy") != CSP || res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: headers %v", p, res.Header)
		}
	}
}

func TestLoadRefusesUnknownTypes(t *testing.T) {
	if _, err := load(fstest.MapFS{"web/index.html": {}, "web/x.wasm": {}}, "web"); err == nil || !strings.Contains(err.Error(), "x.wasm") {
		t.Errorf("a .wasm file: %v", err)
	}
	if _, err := load(fstest.MapFS{"web/app.js": {}}, "web"); err == nil {
		t.Error("no index.html: no error")
	}
}

// TestCSPCompatible checks what the CSP would silently block in a browser:
// inline scripts, inline styles and event-handler attributes, and the
// DOM sinks that would turn API text into markup.
func TestCSPCompatible(t *testing.T) {
	files := webFiles(t)
	html := string(files["/index.html"])
	scripts := regexp.MustCompile(`(?s)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(html, -1)
	if len(scripts) == 0 {
		t.Error("index.html loads no script")
	}
	for _, m := range scripts {
		if !strings.Contains(m[1], ` src="`) || strings.TrimSpace(m[2]) != "" {
			t.Errorf("index.html: inline script %q is blocked by the CSP", m[0])
		}
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`<style`),
		regexp.MustCompile(`\sstyle\s*=`),
		regexp.MustCompile(`\son[a-z]+\s*=`),
		regexp.MustCompile(`javascript:`),
	} {
		for _, m := range re.FindAllString(html, -1) {
			t.Errorf("index.html: %q is blocked by the CSP", m)
		}
	}
	sinks := regexp.MustCompile(`\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['"]style|\.cssText`)
	for p, b := range files {
		if path.Ext(p) != ".js" {
			continue
		}
		for _, m := range sinks.FindAllString(string(b), -1) {
			t.Errorf("%s uses %s", p, m)
		}
	}
}

// TestNoNetworkBeyondTheServer checks that the page loads nothing from
// another host: every src, href, url() and import is relative, and every
// module imported exists. (Links a person may follow, such as a gated
// model's license page, are built at run time and are not loads.)
func TestNoNetworkBeyondTheServer(t *testing.T) {
	files := webFiles(t)
	attr := regexp.MustCompile(`\s(?:src|href)\s*=\s*"([^"]*)"`)
	for _, m := range attr.FindAllStringSubmatch(string(files["/index.html"]), -1) {
		u := m[1]
		if strings.Contains(u, "//") || (strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "/#")) {
			t.Errorf("index.html loads %q", u)
		}
		if !strings.HasPrefix(u, "#") && files["/"+u] == nil {
			t.Errorf("index.html: %q is not an embedded file", u)
		}
	}
	if css := string(files["/app.css"]); strings.Contains(css, "@import") || strings.Contains(css, "url(") || strings.Contains(css, "@font-face") {
		t.Error("app.css loads something")
	}
	imp := regexp.MustCompile(`(?m)^\s*(?:import|export)\b[^'"]*?from\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]`)
	for p, b := range files {
		if path.Ext(p) != ".js" {
			continue
		}
		for _, m := range imp.FindAllStringSubmatch(string(b), -1) {
			spec := m[1] + m[2]
			if !strings.HasPrefix(spec, "./") || files["/"+strings.TrimPrefix(spec, "./")] == nil {
				t.Errorf("%s imports %q: want ./file.js of the dashboard", p, spec)
			}
		}
		if regexp.MustCompile(`\bfetch\(\s*['"` + "`" + `]https?:`).Match(b) {
			t.Errorf("%s fetches from another host", p)
		}
	}
}

// TestMountsBesideTheAPI mounts the handler at "/" in a ServeMux holding
// routes shaped like apiserver's (method-less subtrees and method
// patterns), as the integration does: API paths still reach the API, and
// everything else the dashboard.
func TestMountsBesideTheAPI(t *testing.T) {
	mux := http.NewServeMux()
	apiHit := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "api") }
	mux.HandleFunc("GET /api/health", apiHit)
	mux.HandleFunc("/api/models/", apiHit)
	mux.HandleFunc("GET /api/slots/{name}", apiHit)
	mux.HandleFunc("POST /api/slots/{name}/swap", apiHit)
	mux.HandleFunc("/api/", apiHit)
	mux.Handle("/", Handler())
	for target, want := range map[string]string{
		"/api/health": "api", "/api/models/a%2Fb/pull/status": "api", "/api/nope": "api", "/api/slots/main": "api",
		"/": "<!doctype html>", "/app.js": "//",
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if !strings.HasPrefix(rec.Body.String(), want) {
			t.Errorf("GET %s: %.40q, want %q…", target, rec.Body.String(), want)
		}
	}
	// Why the pattern is "/" and not "GET /": ServeMux refuses it beside
	// a method-less API subtree.
	func() {
		defer func() {
			if recover() == nil {
				t.Error(`"GET /" beside "/api/models/" registered; the package doc can recommend it`)
			}
		}()
		m := http.NewServeMux()
		m.HandleFunc("/api/models/", apiHit)
		m.Handle("GET /", Handler())
	}()
}
