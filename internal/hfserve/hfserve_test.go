package hfserve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/config"
)

var (
	c1 = strings.Repeat("1", 40) // org/gguf v1.0, oldest
	c2 = strings.Repeat("2", 40) // org/gguf main: two quants merged
	c3 = strings.Repeat("3", 40) // org/gguf refs/pr/3, newest install but not main
	c4 = strings.Repeat("4", 40) // org/bad
	c5 = strings.Repeat("5", 40) // org/many
	c6 = strings.Repeat("6", 40) // org/tagonly, pulled by tag only

	day = func(d int) time.Time { return time.Date(2025, 1, d, 12, 0, 0, 0, time.UTC) }

	shard1  = data("shard1", 300_001)
	shard2  = data("shard2", 123_457)
	q8      = data("q8", 200_000)
	old     = data("old", 1000)
	pr      = data("pr", 500)
	readme  = []byte("# org/gguf\n\nA test model & <friends>.\n")
	notes   = []byte("nested notes\n")
	outside = data("outside", 64)
)

const (
	s1Path = "Q4_K_M/m-Q4_K_M-00001-of-00002.gguf"
	s2Path = "Q4_K_M/m-Q4_K_M-00002-of-00002.gguf"
	q8Path = "Q8_0/m-Q8_0.gguf"
)

// fill builds the store every table test serves.
func fill(t *testing.T, s *store) {
	s.add(tmodel{id: "org/gguf@v1.0:Q4_K_M", repo: "org/gguf", commit: c1, rev: "v1.0", installed: day(1),
		files: []tfile{{path: "m-Q4_K_M.gguf", data: old, lfs: true}}})
	q4dir := s.add(tmodel{id: "org/gguf:Q4_K_M", repo: "org/gguf", commit: c2, rev: "main", installed: day(2),
		files: []tfile{{s1Path, shard1, true}, {s2Path, shard2, true}, {"README.md", readme, false}, {"sub/dir/notes.txt", notes, false}}})
	s.add(tmodel{id: "org/gguf:Q8_0", repo: "org/gguf", commit: c2, rev: "main", installed: day(3),
		files: []tfile{{q8Path, q8, true}, {"README.md", readme, false}}})
	s.add(tmodel{id: "org/gguf@refs/pr/3", repo: "org/gguf", commit: c3, rev: "refs/pr/3", installed: day(4),
		files: []tfile{{"pr.gguf", pr, true}}})
	// The Q4 copy of README.md is gone; the Q8 copy still serves it.
	if err := os.Remove(filepath.Join(q4dir, "README.md")); err != nil {
		t.Fatal(err)
	}

	bad := s.add(tmodel{id: "org/bad", repo: "org/bad", commit: c4, installed: day(1), files: []tfile{
		{"tampered.bin", data("tampered", 100), true},
		{"escape.bin", outside, true},
		{"inside.bin", data("target", 64), true},
		{"target.bin", data("target", 64), true},
		{"missing.bin", data("missing", 10), true},
		{"fifo.bin", data("fifo", 10), true},
	}})
	must(t, os.WriteFile(filepath.Join(bad, "tampered.bin"), data("tampered", 101), 0o644))
	// escape.bin has the right size and content, but lives outside.
	out := filepath.Join(t.TempDir(), "outside.bin")
	must(t, os.WriteFile(out, outside, 0o644))
	must(t, os.Remove(filepath.Join(bad, "escape.bin")))
	must(t, os.Symlink(out, filepath.Join(bad, "escape.bin")))
	must(t, os.Remove(filepath.Join(bad, "inside.bin")))
	must(t, os.Symlink("target.bin", filepath.Join(bad, "inside.bin")))
	must(t, os.Remove(filepath.Join(bad, "missing.bin")))
	must(t, os.Remove(filepath.Join(bad, "fifo.bin")))
	must(t, syscall.Mkfifo(filepath.Join(bad, "fifo.bin"), 0o644))

	var many []tfile
	for i := range 25 {
		many = append(many, tfile{path: fmt.Sprintf("d%d/f%02d.txt", i%3, i), data: []byte(fmt.Sprint(i))})
	}
	s.add(tmodel{id: "org/many", repo: "org/many", commit: c5, installed: day(1), files: many})
	s.add(tmodel{id: "org/tagonly@v2", repo: "org/tagonly", commit: c6, rev: "v2", installed: day(1),
		files: []tfile{{"a.bin", data("a", 10), true}}})

	// Not servable: not from HF, and without a pinned commit.
	s.add(tmodel{id: "local-model", repo: "org/local", commit: c1, source: "local", installed: day(1),
		files: []tfile{{"x.gguf", data("x", 10), true}}})
	s.add(tmodel{id: "org/nocommit", repo: "org/nocommit", commit: "", installed: day(1),
		files: []tfile{{"x.gguf", data("x", 10), true}}})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var client = &http.Client{
	Transport:     &http.Transport{DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

func do(t *testing.T, method, u string, hdr map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, u, err)
	}
	return resp, b
}

type infoJSON struct {
	ID       string `json:"id"`
	ModelID  string `json:"modelId"`
	SHA      string `json:"sha"`
	Private  *bool  `json:"private"`
	Gated    any    `json:"gated"`
	Siblings []struct {
		RFilename string `json:"rfilename"`
		Size      *int64 `json:"size"`
		BlobID    string `json:"blobId"`
		LFS       *struct {
			SHA256      string `json:"sha256"`
			Size        int64  `json:"size"`
			PointerSize int    `json:"pointerSize"`
		} `json:"lfs"`
	} `json:"siblings"`
}

type entryJSON struct {
	Type string `json:"type"`
	OID  string `json:"oid"`
	Size int64  `json:"size"`
	Path string `json:"path"`
	LFS  *struct {
		OID         string `json:"oid"`
		Size        int64  `json:"size"`
		PointerSize int    `json:"pointerSize"`
	} `json:"lfs"`
	LastCommit *struct {
		ID string `json:"id"`
	} `json:"lastCommit"`
}

func paths(es []entryJSON) string {
	var out []string
	for _, e := range es {
		p := e.Path
		if e.Type == "directory" {
			p += "/"
		}
		out = append(out, p)
	}
	return strings.Join(out, " ")
}

func TestRoutes(t *testing.T) {
	s := newStore(t)
	fill(t, s)
	srv := serve(t, Options{Registry: s.reg})
	api := srv.url + "/api/models/org/gguf"
	res := srv.url + "/org/gguf/resolve/"

	type check func(t *testing.T, resp *http.Response, body []byte)
	info := func(sha string, files ...string) check {
		return func(t *testing.T, resp *http.Response, body []byte) {
			var in infoJSON
			must(t, json.Unmarshal(body, &in))
			var got []string
			for _, s := range in.Siblings {
				got = append(got, s.RFilename)
			}
			if in.SHA != sha || in.ID != "org/gguf" || in.ModelID != "org/gguf" || in.Private == nil || *in.Private || in.Gated != false ||
				strings.Join(got, " ") != strings.Join(files, " ") {
				t.Errorf("info: sha %s id %s private %v gated %v siblings %v; want sha %s siblings %v", in.SHA, in.ID, in.Private, in.Gated, got, sha, files)
			}
		}
	}
	tree := func(want string) check {
		return func(t *testing.T, resp *http.Response, body []byte) {
			var es []entryJSON
			must(t, json.Unmarshal(body, &es))
			if got := paths(es); got != want {
				t.Errorf("tree: %q, want %q", got, want)
			}
		}
	}
	bodyIs := func(want []byte) check {
		return func(t *testing.T, resp *http.Response, body []byte) {
			if !bytes.Equal(body, want) {
				t.Errorf("body: %d bytes %.40q, want %d bytes %.40q", len(body), body, len(want), want)
			}
		}
	}
	bodyHas := func(sub string) check {
		return func(t *testing.T, resp *http.Response, body []byte) {
			if !strings.Contains(string(body), sub) {
				t.Errorf("body %q lacks %q", body, sub)
			}
		}
	}
	q := func(s string) string { return `"` + s + `"` }
	c2Files := []string{s1Path, s2Path, q8Path, "README.md", "sub/dir/notes.txt"}
	sort.Strings(c2Files)
	lfsHeaders := func(b []byte) map[string]string {
		return map[string]string{"ETag": q(sha256Hex(b)), "X-Linked-Etag": q(sha256Hex(b)), "X-Linked-Size": strconv.Itoa(len(b)),
			"X-Repo-Commit": c2, "Accept-Ranges": "bytes", "Content-Length": strconv.Itoa(len(b)), "Content-Type": "application/octet-stream"}
	}
	absent := "<absent>"

	cases := []struct {
		name   string
		method string
		url    string
		hdr    map[string]string
		body   string
		status int
		code   string            // X-Error-Code
		want   map[string]string // response headers; absent means must not be set
		check  check
	}{
		// Repo info and revisions.
		{name: "info main", url: api, status: 200, check: info(c2, c2Files...), want: map[string]string{"Content-Type": "application/json; charset=utf-8"}},
		{name: "info HEAD method", method: "HEAD", url: api, status: 200},
		{name: "revision main", url: api + "/revision/main", status: 200, check: info(c2, c2Files...)},
		{name: "revision HEAD", url: api + "/revision/HEAD", status: 200, check: info(c2, c2Files...)},
		{name: "revision refs/heads/main", url: api + "/revision/refs%2Fheads%2Fmain", status: 200, check: info(c2, c2Files...)},
		{name: "revision tag", url: api + "/revision/v1.0", status: 200, check: info(c1, "m-Q4_K_M.gguf")},
		{name: "revision refs/tags/tag", url: api + "/revision/refs%2Ftags%2Fv1.0", status: 200, check: info(c1, "m-Q4_K_M.gguf")},
		{name: "revision commit", url: api + "/revision/" + c1, status: 200, check: info(c1, "m-Q4_K_M.gguf")},
		{name: "revision escaped pr", url: api + "/revision/refs%2Fpr%2F3", status: 200, check: info(c3, "pr.gguf")},
		{name: "revision plain pr", url: api + "/revision/refs/pr/3", status: 200, check: info(c3, "pr.gguf")},
		{name: "revision unknown", url: api + "/revision/nope", status: 404, code: "RevisionNotFound"},
		{name: "revision unknown commit", url: api + "/revision/" + strings.Repeat("9", 40), status: 404, code: "RevisionNotFound"},
		{name: "main falls back to newest without a main install", url: srv.url + "/api/models/org/tagonly", status: 200,
			check: func(t *testing.T, _ *http.Response, b []byte) { bodyHas(`"sha":"`+c6+`"`)(t, nil, b) }},
		{name: "blobs", url: api + "?blobs=true", status: 200, check: func(t *testing.T, _ *http.Response, b []byte) {
			var in infoJSON
			must(t, json.Unmarshal(b, &in))
			for _, s := range in.Siblings {
				switch s.RFilename {
				case s1Path:
					if s.Size == nil || *s.Size != int64(len(shard1)) || s.BlobID != gitBlobOID([]byte(lfsPointerText(shard1))) ||
						s.LFS == nil || s.LFS.SHA256 != sha256Hex(shard1) || s.LFS.Size != int64(len(shard1)) || s.LFS.PointerSize != len(lfsPointerText(shard1)) {
						t.Errorf("LFS sibling %+v", s)
					}
				case "README.md":
					if s.Size == nil || *s.Size != int64(len(readme)) || s.BlobID != gitBlobOID(readme) || s.LFS != nil {
						t.Errorf("regular sibling %+v", s)
					}
				}
			}
		}},
		{name: "no blobs no sizes", url: api, status: 200, check: func(t *testing.T, _ *http.Response, b []byte) {
			if strings.Contains(string(b), `"size"`) || strings.Contains(string(b), `"blobId"`) {
				t.Errorf("siblings carry sizes without blobs=true: %s", b)
			}
		}},
		{name: "expand replaces fields", url: api + "?expand=sha&expand=private", status: 200, check: func(t *testing.T, _ *http.Response, b []byte) {
			var m map[string]any
			must(t, json.Unmarshal(b, &m))
			if len(m) != 4 || m["sha"] != c2 || m["private"] != false || m["id"] != "org/gguf" || m["_id"] == nil {
				t.Errorf("expand: %v", m)
			}
		}},
		{name: "repo missing", url: srv.url + "/api/models/org/nope", status: 404, code: "RepoNotFound"},
		{name: "repo not from hf", url: srv.url + "/api/models/org/local", status: 404, code: "RepoNotFound"},
		{name: "repo without commit", url: srv.url + "/api/models/org/nocommit", status: 404, code: "RepoNotFound"},
		{name: "datasets", url: srv.url + "/api/datasets/org/gguf", status: 404, code: "RepoNotFound"},
		{name: "info POST", method: "POST", url: api, status: 405, want: map[string]string{"Allow": "GET, HEAD"}},

		// Tree.
		{name: "tree root", url: api + "/tree/main", status: 200, check: tree("Q4_K_M/ Q8_0/ README.md sub/"), want: map[string]string{"X-Repo-Commit": c2}},
		{name: "tree recursive", url: api + "/tree/main?recursive=true", status: 200,
			check: tree("Q4_K_M/ " + s1Path + " " + s2Path + " Q8_0/ " + q8Path + " README.md sub/ sub/dir/ sub/dir/notes.txt")},
		{name: "tree subdir", url: api + "/tree/main/sub", status: 200, check: tree("sub/dir/")},
		{name: "tree subdir recursive", url: api + "/tree/main/sub?recursive=1", status: 200, check: tree("sub/dir/ sub/dir/notes.txt")},
		{name: "tree escaped subdir", url: api + "/tree/main/sub%2Fdir", status: 200, check: tree("sub/dir/notes.txt")},
		{name: "tree plain pr rev", url: api + "/tree/refs/pr/3", status: 200, check: tree("pr.gguf")},
		{name: "tree escaped pr rev", url: api + "/tree/refs%2Fpr%2F3?recursive=true", status: 200, check: tree("pr.gguf")},
		{name: "tree commit", url: api + "/tree/" + c1, status: 200, check: tree("m-Q4_K_M.gguf")},
		{name: "tree missing dir", url: api + "/tree/main/nope", status: 404, code: "EntryNotFound", want: map[string]string{"X-Repo-Commit": c2}},
		{name: "tree missing rev", url: api + "/tree/nope", status: 404, code: "RevisionNotFound"},
		{name: "tree entry shapes", url: api + "/tree/main/Q4_K_M", status: 200, check: func(t *testing.T, _ *http.Response, b []byte) {
			var es []entryJSON
			must(t, json.Unmarshal(b, &es))
			e := es[0]
			if e.Type != "file" || e.Path != s1Path || e.Size != int64(len(shard1)) || e.OID != gitBlobOID([]byte(lfsPointerText(shard1))) ||
				e.LFS == nil || e.LFS.OID != sha256Hex(shard1) || e.LFS.Size != int64(len(shard1)) || e.LFS.PointerSize != len(lfsPointerText(shard1)) {
				t.Errorf("LFS entry %+v %+v", e, e.LFS)
			}
		}},
		{name: "tree regular entry", url: api + "/tree/main/sub/dir", status: 200, check: func(t *testing.T, _ *http.Response, b []byte) {
			var es []entryJSON
			must(t, json.Unmarshal(b, &es))
			if len(es) != 1 || es[0].OID != gitBlobOID(notes) || es[0].LFS != nil || es[0].Size != int64(len(notes)) {
				t.Errorf("regular entry %+v", es)
			}
		}},
		{name: "tree bad cursor", url: api + "/tree/main?cursor=!!!", status: 400},

		// paths-info.
		{name: "paths-info form", method: "POST", url: api + "/paths-info/main", hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			body: "paths=README.md&paths=sub&paths=nope&paths=" + url.QueryEscape(s1Path) + "&expand=false", status: 200,
			check: func(t *testing.T, _ *http.Response, b []byte) {
				var es []entryJSON
				must(t, json.Unmarshal(b, &es))
				if got := paths(es); got != "README.md sub/ "+s1Path || es[0].OID != gitBlobOID(readme) || es[2].LFS == nil || es[0].LastCommit != nil {
					t.Errorf("paths-info: %s", b)
				}
			}},
		{name: "paths-info json expand", method: "POST", url: api + "/paths-info/refs%2Fpr%2F3", hdr: map[string]string{"Content-Type": "application/json"},
			body: `{"paths":["pr.gguf","README.md"],"expand":true}`, status: 200,
			check: func(t *testing.T, _ *http.Response, b []byte) {
				var es []entryJSON
				must(t, json.Unmarshal(b, &es))
				if len(es) != 1 || es[0].Path != "pr.gguf" || es[0].LastCommit == nil || es[0].LastCommit.ID != c3 {
					t.Errorf("paths-info: %s", b)
				}
			}},
		{name: "paths-info bad json", method: "POST", url: api + "/paths-info/main", hdr: map[string]string{"Content-Type": "application/json"}, body: `{"paths":`, status: 400},
		{name: "paths-info GET", url: api + "/paths-info/main", status: 405, want: map[string]string{"Allow": "POST"}},
		{name: "paths-info missing rev", method: "POST", url: api + "/paths-info/nope", body: "paths=a", hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, status: 404, code: "RevisionNotFound"},

		// refs.
		{name: "refs", url: api + "/refs?include_prs=1", status: 200, check: func(t *testing.T, _ *http.Response, b []byte) {
			var refs struct {
				Branches, Tags, PullRequests []struct{ Name, Ref, TargetCommit string }
			}
			must(t, json.Unmarshal(b, &refs))
			if len(refs.Branches) != 2 || refs.Branches[0].Name != "main" || refs.Branches[0].TargetCommit != c2 ||
				refs.Branches[1].Name != "v1.0" || refs.Branches[1].TargetCommit != c1 ||
				len(refs.PullRequests) != 1 || refs.PullRequests[0].TargetCommit != c3 {
				t.Errorf("refs: %s", b)
			}
		}},

		// resolve and raw.
		{name: "resolve LFS", url: res + "main/" + s1Path, status: 200, want: lfsHeaders(shard1), check: bodyIs(shard1)},
		{name: "resolve LFS HEAD", method: "HEAD", url: res + "main/" + s1Path, status: 200, want: lfsHeaders(shard1), check: bodyIs(nil)},
		{name: "resolve regular", url: res + "main/README.md", status: 200, check: bodyIs(readme),
			want: map[string]string{"ETag": q(gitBlobOID(readme)), "X-Linked-Etag": absent, "X-Linked-Size": absent, "X-Repo-Commit": c2,
				"Content-Length": strconv.Itoa(len(readme)), "Content-Type": "text/markdown; charset=utf-8"}},
		{name: "resolve nested regular", url: res + "main/sub/dir/notes.txt", status: 200, check: bodyIs(notes)},
		{name: "resolve escaped path", url: res + "main/sub%2Fdir%2Fnotes.txt", status: 200, check: bodyIs(notes)},
		{name: "range a-b", url: res + "main/" + s1Path, hdr: map[string]string{"Range": "bytes=10-19"}, status: 206, check: bodyIs(shard1[10:20]),
			want: map[string]string{"Content-Range": fmt.Sprintf("bytes 10-19/%d", len(shard1)), "Content-Length": "10", "ETag": q(sha256Hex(shard1)), "X-Linked-Size": strconv.Itoa(len(shard1))}},
		{name: "range a-", url: res + "main/" + s1Path, hdr: map[string]string{"Range": "bytes=300000-"}, status: 206, check: bodyIs(shard1[300000:]),
			want: map[string]string{"Content-Range": fmt.Sprintf("bytes 300000-%d/%d", len(shard1)-1, len(shard1)), "Content-Length": "1"}},
		{name: "range -n", url: res + "main/" + s2Path, hdr: map[string]string{"Range": "bytes=-7"}, status: 206, check: bodyIs(shard2[len(shard2)-7:]),
			want: map[string]string{"Content-Range": fmt.Sprintf("bytes %d-%d/%d", len(shard2)-7, len(shard2)-1, len(shard2))}},
		{name: "range 0-0 probe", url: res + "main/" + s2Path, hdr: map[string]string{"Range": "bytes=0-0"}, status: 206, check: bodyIs(shard2[:1]),
			want: map[string]string{"Content-Range": fmt.Sprintf("bytes 0-0/%d", len(shard2))}},
		{name: "range past end", url: res + "main/" + s1Path, hdr: map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(shard1))}, status: 416,
			want: map[string]string{"Content-Range": fmt.Sprintf("bytes */%d", len(shard1))}},
		{name: "range HEAD", method: "HEAD", url: res + "main/" + s1Path, hdr: map[string]string{"Range": "bytes=5-9"}, status: 206,
			want: map[string]string{"Content-Length": "5", "Content-Range": fmt.Sprintf("bytes 5-9/%d", len(shard1))}},
		{name: "if-none-match", url: res + "main/" + s1Path, hdr: map[string]string{"If-None-Match": q(sha256Hex(shard1))}, status: 304},
		{name: "resolve at tag", url: res + "v1.0/m-Q4_K_M.gguf", status: 200, check: bodyIs(old), want: map[string]string{"X-Repo-Commit": c1}},
		{name: "resolve at commit", url: res + c1 + "/m-Q4_K_M.gguf", status: 200, check: bodyIs(old)},
		{name: "resolve at escaped pr", url: res + "refs%2Fpr%2F3/pr.gguf", status: 200, check: bodyIs(pr), want: map[string]string{"X-Repo-Commit": c3}},
		{name: "resolve at plain pr", url: res + "refs/pr/3/pr.gguf", status: 200, check: bodyIs(pr)},
		{name: "resolve HEAD revision", url: res + "HEAD/" + q8Path, status: 200, check: bodyIs(q8)},
		{name: "resolve file of other commit", url: res + "main/m-Q4_K_M.gguf", status: 404, code: "EntryNotFound", want: map[string]string{"X-Repo-Commit": c2, "ETag": absent}},
		{name: "resolve missing rev", url: res + "nope/README.md", status: 404, code: "RevisionNotFound", want: map[string]string{"X-Repo-Commit": absent}},
		{name: "resolve missing repo", url: srv.url + "/org/nope/resolve/main/README.md", status: 404, code: "RepoNotFound"},
		{name: "resolve POST", method: "POST", url: res + "main/README.md", status: 405},
		{name: "raw LFS is the pointer", url: srv.url + "/org/gguf/raw/main/" + s1Path, status: 200, check: bodyIs([]byte(lfsPointerText(shard1))),
			want: map[string]string{"ETag": q(gitBlobOID([]byte(lfsPointerText(shard1)))), "X-Linked-Etag": absent, "X-Repo-Commit": c2}},
		{name: "raw regular", url: srv.url + "/org/gguf/raw/main/README.md", status: 200, check: bodyIs(readme), want: map[string]string{"ETag": q(gitBlobOID(readme))}},

		// A damaged store: never wrong bytes.
		{name: "size differs", url: srv.url + "/org/bad/resolve/main/tampered.bin", status: 500, check: bodyHas("101 bytes where the registry recorded 100"),
			want: map[string]string{"ETag": absent, "X-Linked-Size": absent, "X-Repo-Commit": c4}},
		{name: "symlink out of the model", url: srv.url + "/org/bad/resolve/main/escape.bin", status: 500, check: bodyHas("symlink that leaves its model directory")},
		{name: "symlink inside the model", url: srv.url + "/org/bad/resolve/main/inside.bin", status: 200, check: bodyIs(data("target", 64))},
		{name: "file gone", url: srv.url + "/org/bad/resolve/main/missing.bin", status: 404, code: "EntryNotFound", want: map[string]string{"X-Repo-Commit": c4}},
		{name: "fifo", url: srv.url + "/org/bad/resolve/main/fifo.bin", status: 500, check: bodyHas("not a regular file")},

		// Pagination is tested below; unknown routes.
		{name: "unknown api route", url: srv.url + "/api/whoami-v2", status: 404},
		{name: "no such route", url: srv.url + "/org/gguf/blob/main/README.md", status: 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.method
			if m == "" {
				m = "GET"
			}
			resp, body := do(t, m, tc.url, tc.hdr, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s: %d %s (%s), want %d", m, tc.url, resp.StatusCode, body, resp.Header.Get("X-Error-Message"), tc.status)
			}
			if got := resp.Header.Get("X-Error-Code"); got != tc.code {
				t.Errorf("X-Error-Code %q, want %q", got, tc.code)
			}
			// 416 is net/http's own answer, like the CDN's on the Hub.
			if tc.status >= 400 && tc.status != 416 && resp.Header.Get("X-Error-Message") == "" {
				t.Errorf("error without X-Error-Message")
			}
			for k, v := range tc.want {
				got, ok := resp.Header[http.CanonicalHeaderKey(k)]
				switch {
				case v == absent && ok:
					t.Errorf("%s: %q, want none", k, got)
				case v != absent && (len(got) != 1 || got[0] != v):
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if tc.check != nil {
				tc.check(t, resp, body)
			}
		})
	}
	// The damaged store was reported with enough detail to fix it.
	for _, want := range []string{"tampered.bin of org/bad", "escape.bin of org/bad", "missing.bin of org/bad is missing", "README.md of org/gguf:Q4_K_M is missing"} {
		if !strings.Contains(srv.logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, srv.logs)
		}
	}
}

// TestTreePagination follows Link headers through a listing of several
// pages, as the clients do, and checks nothing is lost or repeated.
func TestTreePagination(t *testing.T) {
	s := newStore(t)
	fill(t, s)
	srv := serve(t, Options{Registry: s.reg, PageSize: 4})
	for _, tc := range []struct {
		url  string
		want int
	}{
		{srv.url + "/api/models/org/many/tree/main?recursive=true", 25 + 3}, // files and d0 d1 d2
		{srv.url + "/api/models/org/many/tree/main/d1?recursive=false", 8},
		{srv.url + "/api/models/org/many/tree/main", 3},
	} {
		next, pages := tc.url, 0
		var all []string
		for next != "" {
			resp, body := do(t, "GET", next, nil, "")
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", next, resp.StatusCode, body)
			}
			var es []entryJSON
			must(t, json.Unmarshal(body, &es))
			if len(es) > 4 {
				t.Fatalf("page of %d entries, page size 4", len(es))
			}
			for _, e := range es {
				all = append(all, e.Path)
			}
			pages++
			next = ""
			if l := resp.Header.Get("Link"); l != "" {
				// The clients' own parsing: an absolute URL in <>, then rel="next".
				if !strings.HasPrefix(l, "<"+srv.base+"/hf/api/models/org/many/tree/") || !strings.HasSuffix(l, `>; rel="next"`) {
					t.Fatalf("Link %q", l)
				}
				next = strings.TrimSuffix(strings.TrimPrefix(l, "<"), `>; rel="next"`)
			}
		}
		if len(all) != tc.want || !sort.StringsAreSorted(all) || pages != (tc.want+3)/4 {
			t.Errorf("%s: %d entries in %d pages (%v), want %d", tc.url, len(all), pages, all, tc.want)
		}
		for i := 1; i < len(all); i++ {
			if all[i] == all[i-1] {
				t.Errorf("%s listed twice", all[i])
			}
		}
	}
}

func TestReadToken(t *testing.T) {
	s := newStore(t)
	fill(t, s)
	const tok = "hf_readtokenreadtokenreadtokenreadtoken1"
	locked := serve(t, Options{Registry: s.reg, Token: config.NewSecret(tok)})
	open := serve(t, Options{Registry: s.reg})
	u := "/org/gguf/resolve/main/README.md"
	for _, tc := range []struct {
		name   string
		srv    *served
		auth   string
		status int
		msg    string
	}{
		{"no token", locked, "", 401, "Authentication required"},
		{"wrong token", locked, "Bearer hf_nope", 401, "Invalid credentials in Authorization header"},
		{"not bearer", locked, "Basic " + tok, 401, "Invalid credentials in Authorization header"},
		{"right token", locked, "Bearer " + tok, 200, ""},
		{"missing repo still needs the token", locked, "", 401, "Authentication required"},
		{"open endpoint ignores tokens", open, "Bearer hf_somebodyshuggingfacetoken", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.auth != "" {
				hdr["Authorization"] = tc.auth
			}
			target := tc.srv.url + u
			if strings.HasPrefix(tc.name, "missing repo") {
				target = tc.srv.url + "/api/models/org/nope"
			}
			resp, body := do(t, "GET", target, hdr, "")
			if resp.StatusCode != tc.status || !strings.Contains(resp.Header.Get("X-Error-Message"), tc.msg) {
				t.Fatalf("%d %q %s, want %d %q", resp.StatusCode, resp.Header.Get("X-Error-Message"), body, tc.status, tc.msg)
			}
			if tc.status == 401 && resp.Header.Get("X-Repo-Commit") != "" {
				t.Errorf("a 401 reveals the commit")
			}
		})
	}
}

// TestRegistryChanges checks that an install or removal shows up at the
// next request, without restarting anything.
func TestRegistryChanges(t *testing.T) {
	s := newStore(t)
	srv := serve(t, Options{Registry: s.reg})
	resp, _ := do(t, "GET", srv.url+"/api/models/org/late", nil, "")
	if resp.Header.Get("X-Error-Code") != "RepoNotFound" {
		t.Fatalf("empty store: %d %s", resp.StatusCode, resp.Header.Get("X-Error-Code"))
	}
	s.add(tmodel{id: "org/late", repo: "org/late", commit: c1, installed: day(1), files: []tfile{{"a.txt", []byte("a"), false}}})
	resp, body := do(t, "GET", srv.url+"/org/late/resolve/main/a.txt", nil, "")
	if resp.StatusCode != 200 || string(body) != "a" {
		t.Fatalf("after install: %d %s", resp.StatusCode, body)
	}
	// A newer commit installed as main takes over main; the old one stays
	// reachable by its hash.
	s.add(tmodel{id: "org/late@new", repo: "org/late", commit: c2, rev: "main", installed: day(2), files: []tfile{{"a.txt", []byte("b"), false}}})
	_, body = do(t, "GET", srv.url+"/org/late/resolve/main/a.txt", nil, "")
	_, bodyOld := do(t, "GET", srv.url+"/org/late/resolve/"+c1+"/a.txt", nil, "")
	if string(body) != "b" || string(bodyOld) != "a" {
		t.Fatalf("main %q, old commit %q", body, bodyOld)
	}
}

// TestGated: a model pulled from a gated repo is listed (with its gated
// field) but its files are refused with the Hub's GatedRepo, unless the
// request is privileged (the box's owner) or ServeGated is set.
func TestGated(t *testing.T) {
	s := newStore(t)
	w := data("w", 300)
	s.add(tmodel{id: "org/g", repo: "org/g", commit: c1, rev: "main", installed: day(1), gated: "manual", files: []tfile{{"w.gguf", w, true}}})
	// hal0-apid's rule (the unix socket or the admin token) is tested in
	// internal/apid; here a header stands for it.
	owner := func(r *http.Request) bool { return r.Header.Get("X-Test-Owner") == "1" }
	tok := "hf_" + strings.Repeat("r", 34)
	srv := serve(t, Options{Registry: s.reg, Token: config.NewSecret(tok), Privileged: owner})
	auth := map[string]string{"Authorization": "Bearer " + tok}
	resp, body := do(t, "GET", srv.url+"/api/models/org/g", auth, "")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"gated":"manual"`) {
		t.Fatalf("info: %d %s", resp.StatusCode, body)
	}
	for _, m := range []string{"GET", "HEAD"} {
		resp, _ = do(t, m, srv.url+"/org/g/resolve/main/w.gguf", auth, "")
		if resp.StatusCode != 403 || resp.Header.Get("X-Error-Code") != "GatedRepo" {
			t.Fatalf("%s with the read token: %d %q", m, resp.StatusCode, resp.Header.Get("X-Error-Code"))
		}
	}
	// The owner needs no read token and gets the file.
	resp, body = do(t, "GET", srv.url+"/org/g/resolve/main/w.gguf", map[string]string{"X-Test-Owner": "1"}, "")
	if resp.StatusCode != 200 || !bytes.Equal(body, w) {
		t.Fatalf("owner: %d, %d bytes", resp.StatusCode, len(body))
	}
	srv = serve(t, Options{Registry: s.reg, Token: config.NewSecret(tok), ServeGated: true})
	resp, body = do(t, "GET", srv.url+"/org/g/resolve/main/w.gguf", auth, "")
	if resp.StatusCode != 200 || !bytes.Equal(body, w) {
		t.Fatalf("ServeGated: %d, %d bytes", resp.StatusCode, len(body))
	}
}
