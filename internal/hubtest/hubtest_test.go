package hubtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	token    = "hf_abcdefghijklmnopqrstuvwxyz0123456789"
	repoID   = "org/model-GGUF"
	shard1   = "Q4_K_M/model-Q4_K_M-00001-of-00002.gguf"
	shard2   = "Q4_K_M/model-Q4_K_M-00002-of-00002.gguf"
	shardLen = 64 << 10
)

var configJSON = []byte(`{"architectures":["LlamaForCausalLM"]}` + "\n")

// fixture is a hub with one public GGUF repo and a few special repos.
type fixture struct {
	h      *Hub
	repo   *Repo
	shards []File
	clock  *atomic.Int64 // seconds added to the real clock
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	clock := &atomic.Int64{}
	opts.Token = token
	opts.Now = func() time.Time { return time.Now().Add(time.Duration(clock.Load()) * time.Second) }
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	shards := GenerateGGUFShards("", "Q4_K_M/model", "Q4_K_M", 2, shardLen, 7)
	files := append([]File{
		{Path: "config.json", Data: configJSON},
		{Path: "README.md", Data: []byte("---\nlicense: mit\n---\n# model\n")},
	}, shards...)
	repo := h.AddRepo(Repo{
		ID:           repoID,
		Files:        files,
		Tags:         map[string]string{"v1": ""},
		PullRequests: map[int]string{1: ""},
		PipelineTag:  "text-generation",
		License:      "mit",
		Downloads:    42,
	})
	small := []File{{Path: "config.json", Data: configJSON}, {Path: "w.bin", Data: []byte("weights"), LFS: true}}
	h.AddRepo(Repo{ID: "org/gated", Gated: "manual", Files: small})
	h.AddRepo(Repo{ID: "org/gated-ok", Gated: "auto", Approved: true, Files: small})
	h.AddRepo(Repo{ID: "org/private", Private: true, Files: small})
	h.AddRepo(Repo{ID: "org/private-ok", Private: true, Approved: true, Files: small})
	h.AddRepo(Repo{ID: "org/disabled", Disabled: true, Files: small})
	h.AddRepo(Repo{ID: "google-bert/bert-base-uncased", RenamedFrom: "bert-base-uncased", Files: small})
	h.AddRepo(Repo{ID: "gpt2", Files: small})
	return &fixture{h: h, repo: repo, shards: shards, clock: clock}
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

type reqOpt struct {
	method, auth, rng string
	body              io.Reader
	ctype             string
	follow            bool
}

func do(t *testing.T, u string, o reqOpt) (*http.Response, []byte, error) {
	t.Helper()
	if o.method == "" {
		o.method = http.MethodGet
	}
	req, err := http.NewRequest(o.method, u, o.body)
	if err != nil {
		t.Fatal(err)
	}
	if o.auth != "" {
		req.Header.Set("Authorization", "Bearer "+o.auth)
	}
	if o.rng != "" {
		req.Header.Set("Range", o.rng)
	}
	if o.ctype != "" {
		req.Header.Set("Content-Type", o.ctype)
	}
	c := noRedirect
	if o.follow {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", o.method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func get(t *testing.T, u string, o reqOpt) (*http.Response, []byte) {
	t.Helper()
	resp, body, err := do(t, u, o)
	if err != nil {
		t.Fatalf("%s: reading body: %v", u, err)
	}
	return resp, body
}

func gitBlob(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func wantError(t *testing.T, resp *http.Response, body []byte, status int, code, msg string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, status, body)
	}
	if got := resp.Header.Get("X-Error-Code"); got != code {
		t.Errorf("X-Error-Code %q, want %q", got, code)
	}
	if msg != "" && resp.Header.Get("X-Error-Message") != msg {
		t.Errorf("X-Error-Message %q, want %q", resp.Header.Get("X-Error-Message"), msg)
	}
	var e struct{ Error string }
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" || e.Error != resp.Header.Get("X-Error-Message") {
		t.Errorf("error body %q does not carry X-Error-Message (%v)", body, err)
	}
}

func TestModelInfo(t *testing.T) {
	fx := newFixture(t, Options{})
	h, commit := fx.h, fx.repo.Commit
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(commit) {
		t.Fatalf("commit %q", commit)
	}
	base := h.URL + "/api/models/"
	tests := []struct {
		name, url, auth string
		status          int
		code, msg       string
		check           func(t *testing.T, info map[string]any)
	}{
		{name: "main", url: base + repoID, status: 200, check: func(t *testing.T, info map[string]any) {
			for k, want := range map[string]any{"id": repoID, "modelId": repoID, "sha": commit, "private": false, "gated": false,
				"disabled": false, "pipeline_tag": "text-generation", "downloads": 42.0, "author": "org"} {
				if info[k] != want {
					t.Errorf("%s = %#v, want %#v", k, info[k], want)
				}
			}
			if card, _ := info["cardData"].(map[string]any); card["license"] != "mit" {
				t.Errorf("cardData %v", info["cardData"])
			}
			tags := fmt.Sprint(info["tags"])
			for _, tag := range []string{"gguf", "license:mit", "region:us"} {
				if !strings.Contains(tags, tag) {
					t.Errorf("tags %s lack %s", tags, tag)
				}
			}
			if _, err := time.Parse(time.RFC3339, info["lastModified"].(string)); err != nil {
				t.Error(err)
			}
			sib := info["siblings"].([]any)
			if len(sib) != 4 || sib[0].(map[string]any)["rfilename"] != shard1 {
				t.Errorf("siblings %v", sib)
			}
			if _, has := sib[0].(map[string]any)["size"]; has {
				t.Error("siblings have size without blobs=true")
			}
		}},
		{name: "blobs", url: base + repoID + "?blobs=true", status: 200, check: func(t *testing.T, info map[string]any) {
			for _, s := range info["siblings"].([]any) {
				s := s.(map[string]any)
				switch s["rfilename"] {
				case shard1:
					lfs := s["lfs"].(map[string]any)
					if lfs["sha256"] != fx.shards[0].SHA256 || lfs["size"] != float64(shardLen) || s["size"] != float64(shardLen) ||
						lfs["pointerSize"] != float64(len(lfsPointer(fx.shards[0].SHA256, shardLen))) {
						t.Errorf("LFS sibling %v", s)
					}
					if s["blobId"] != gitBlob(lfsPointer(fx.shards[0].SHA256, shardLen)) {
						t.Errorf("blobId %v is not the pointer's git oid", s["blobId"])
					}
				case "config.json":
					if s["blobId"] != gitBlob(configJSON) || s["size"] != float64(len(configJSON)) || s["lfs"] != nil {
						t.Errorf("regular sibling %v", s)
					}
				}
			}
		}},
		{name: "branch", url: base + repoID + "/revision/main", status: 200},
		{name: "tag", url: base + repoID + "/revision/v1", status: 200},
		{name: "commit", url: base + repoID + "/revision/" + commit, status: 200},
		{name: "pr encoded", url: base + repoID + "/revision/" + url.PathEscape("refs/pr/1"), status: 200},
		{name: "refs/heads", url: base + repoID + "/revision/refs%2Fheads%2Fmain", status: 200},
		{name: "expand", url: base + repoID + "?expand=sha&expand=gated", status: 200, check: func(t *testing.T, info map[string]any) {
			if len(info) != 4 || info["sha"] != commit || info["gated"] != false {
				t.Errorf("expand: %v", info)
			}
		}},
		{name: "bad revision", url: base + repoID + "/revision/nope", status: 404, code: "RevisionNotFound", msg: "Invalid rev id: nope"},
		{name: "unknown commit", url: base + repoID + "/revision/" + strings.Repeat("a", 40), status: 404, code: "RevisionNotFound"},
		{name: "missing anonymous", url: base + "org/nope", status: 401, code: "RepoNotFound"},
		{name: "missing with token", url: base + "org/nope", auth: token, status: 404, code: "RepoNotFound"},
		{name: "private anonymous", url: base + "org/private", status: 401, code: "RepoNotFound"},
		{name: "private no access", url: base + "org/private", auth: token, status: 404, code: "RepoNotFound"},
		{name: "private member", url: base + "org/private-ok", auth: token, status: 200, check: func(t *testing.T, info map[string]any) {
			if info["private"] != true {
				t.Errorf("private = %v", info["private"])
			}
		}},
		{name: "gated is public metadata", url: base + "org/gated", status: 200, check: func(t *testing.T, info map[string]any) {
			if info["gated"] != "manual" {
				t.Errorf("gated = %v", info["gated"])
			}
		}},
		{name: "bad token on public repo", url: base + repoID, auth: "hf_wrong", status: 401, msg: "Invalid credentials in Authorization header"},
		{name: "legacy id", url: base + "gpt2/revision/main", status: 200, check: func(t *testing.T, info map[string]any) {
			if info["id"] != "gpt2" || info["author"] != "gpt2" {
				t.Errorf("legacy id info %v", info)
			}
		}},
		{name: "datasets are not served", url: h.URL + "/api/datasets/org/x", status: 401, code: "RepoNotFound"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, tc.url, reqOpt{auth: tc.auth})
			if tc.status != 200 {
				wantError(t, resp, body, tc.status, tc.code, tc.msg)
				return
			}
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			var info map[string]any
			if err := json.Unmarshal(body, &info); err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, info)
			}
			if info["sha"] != nil && info["id"] == repoID && info["sha"] != commit {
				t.Errorf("sha %v, want %s", info["sha"], commit)
			}
		})
	}
}

func TestRenamedRepo(t *testing.T) {
	fx := newFixture(t, Options{})
	for _, tc := range []struct{ path, want string }{
		{"/api/models/bert-base-uncased", "/api/models/google-bert/bert-base-uncased"},
		{"/api/models/bert-base-uncased/revision/main?blobs=true", "/api/models/google-bert/bert-base-uncased/revision/main?blobs=true"},
		{"/bert-base-uncased/resolve/main/config.json", "/google-bert/bert-base-uncased/resolve/main/config.json"},
	} {
		resp, body := get(t, fx.h.URL+tc.path, reqOpt{auth: token})
		if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != tc.want ||
			!strings.HasPrefix(string(body), "Temporary Redirect.") {
			t.Errorf("%s: %d Location %q body %q", tc.path, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}
	// A client following the relative redirect keeps its token (same host).
	resp, _ := get(t, fx.h.URL+"/api/models/bert-base-uncased", reqOpt{auth: token, follow: true})
	if resp.StatusCode != 200 {
		t.Fatalf("following rename: %d", resp.StatusCode)
	}
	reqs := fx.h.Requests()
	if last := reqs[len(reqs)-1]; last.URI != "/api/models/google-bert/bert-base-uncased" || last.Authorization != "Bearer "+token {
		t.Errorf("redirected request %+v", last)
	}
}

func TestRefs(t *testing.T) {
	fx := newFixture(t, Options{})
	var refs struct {
		Branches, Tags, Converts []refJSON
		PullRequests             []refJSON `json:"pullRequests"`
	}
	_, body := get(t, fx.h.URL+"/api/models/"+repoID+"/refs", reqOpt{})
	if err := json.Unmarshal(body, &refs); err != nil {
		t.Fatal(err)
	}
	c := fx.repo.Commit
	if !slices.Equal(refs.Branches, []refJSON{{"main", "refs/heads/main", c}}) ||
		!slices.Equal(refs.Tags, []refJSON{{"v1", "refs/tags/v1", c}}) || refs.Converts == nil || refs.PullRequests != nil {
		t.Errorf("refs %s", body)
	}
	_, body = get(t, fx.h.URL+"/api/models/"+repoID+"/refs?include_prs=1", reqOpt{})
	if !strings.Contains(string(body), `"pullRequests":[{"name":"refs/pr/1","ref":"refs/pr/1","targetCommit":"`+c+`"}]`) {
		t.Errorf("refs with PRs %s", body)
	}
}

func TestTree(t *testing.T) {
	fx := newFixture(t, Options{PageSize: 2})
	h := fx.h
	// listAll follows Link headers to the end.
	listAll := func(t *testing.T, u string) ([]treeEntry, int) {
		var all []treeEntry
		pages := 0
		for u != "" {
			resp, body := get(t, u, reqOpt{})
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", u, resp.StatusCode, body)
			}
			var page []treeEntry
			if err := json.Unmarshal(body, &page); err != nil {
				t.Fatal(err)
			}
			all = append(all, page...)
			pages++
			u = ""
			if link := resp.Header.Get("Link"); link != "" {
				m := regexp.MustCompile(`^<([^>]+)>; rel="next"$`).FindStringSubmatch(link)
				if m == nil || !strings.HasPrefix(m[1], h.URL+"/api/models/") {
					t.Fatalf("Link %q is not an absolute next link", link)
				}
				u = m[1]
			}
		}
		return all, pages
	}
	paths := func(es []treeEntry) string {
		var s []string
		for _, e := range es {
			s = append(s, e.Type[:1]+":"+e.Path)
		}
		return strings.Join(s, " ")
	}
	tests := []struct {
		name, url string
		want      string
		pages     int
	}{
		{"root", "/tree/main", "d:Q4_K_M f:README.md f:config.json", 2},
		{"recursive", "/tree/main?recursive=true", "d:Q4_K_M f:" + shard1 + " f:" + shard2 + " f:README.md f:config.json", 3},
		{"recursive=1 by commit", "/tree/" + fx.repo.Commit + "?recursive=1", "d:Q4_K_M f:" + shard1 + " f:" + shard2 + " f:README.md f:config.json", 3},
		{"subdir", "/tree/main/Q4_K_M", "f:" + shard1 + " f:" + shard2, 1},
		{"subdir escaped", "/tree/main/" + url.PathEscape("Q4_K_M/"), "f:" + shard1 + " f:" + shard2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			all, pages := listAll(t, h.URL+"/api/models/"+repoID+tc.url)
			if got := paths(all); got != tc.want || pages != tc.pages {
				t.Errorf("got %q in %d pages, want %q in %d", got, pages, tc.want, tc.pages)
			}
		})
	}
	all, _ := listAll(t, h.URL+"/api/models/"+repoID+"/tree/main?recursive=true")
	for _, e := range all {
		switch e.Path {
		case shard1:
			ptr := lfsPointer(fx.shards[0].SHA256, shardLen)
			if e.Size != shardLen || e.LFS == nil || e.LFS.OID != fx.shards[0].SHA256 || e.LFS.Size != shardLen ||
				e.LFS.PointerSize != int64(len(ptr)) || e.OID != gitBlob(ptr) {
				t.Errorf("LFS entry %+v %+v", e, e.LFS)
			}
		case "config.json":
			if e.OID != gitBlob(configJSON) || e.Size != int64(len(configJSON)) || e.LFS != nil {
				t.Errorf("regular entry %+v", e)
			}
		case "Q4_K_M":
			if e.Type != "directory" || len(e.OID) != 40 {
				t.Errorf("directory entry %+v", e)
			}
		}
	}
	_, body := get(t, h.URL+"/api/models/"+repoID+"/tree/main/Q4_K_M?expand=true", reqOpt{})
	if !strings.Contains(string(body), `"lastCommit":{"id":"`+fx.repo.Commit) {
		t.Errorf("expand=true lacks lastCommit: %s", body)
	}
	resp, body := get(t, h.URL+"/api/models/"+repoID+"/tree/main/nope", reqOpt{})
	wantError(t, resp, body, 404, "EntryNotFound", "")
	resp, body = get(t, h.URL+"/api/models/"+repoID+"/tree/nope", reqOpt{})
	wantError(t, resp, body, 404, "RevisionNotFound", "")
	resp, body = get(t, h.URL+"/api/models/"+repoID+"/tree/main?cursor=garbage", reqOpt{})
	wantError(t, resp, body, 400, "", "")
}

func TestPathsInfo(t *testing.T) {
	fx := newFixture(t, Options{})
	u := fx.h.URL + "/api/models/" + repoID + "/paths-info/main"
	want := "config.json " + shard1 + " Q4_K_M"
	for _, tc := range []struct {
		name, ctype, body string
	}{
		{"form", "application/x-www-form-urlencoded", url.Values{"paths": {"config.json", shard1, "missing.bin", "Q4_K_M"}, "expand": {"false"}}.Encode()},
		{"json", "application/json", `{"paths":["config.json","` + shard1 + `","missing.bin","Q4_K_M"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, u, reqOpt{method: http.MethodPost, ctype: tc.ctype, body: strings.NewReader(tc.body)})
			var es []treeEntry
			if err := json.Unmarshal(body, &es); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %s %v", resp.StatusCode, body, err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Path)
			}
			if strings.Join(got, " ") != want || es[1].LFS == nil || es[1].LFS.OID != fx.shards[0].SHA256 || es[2].Type != "directory" {
				t.Errorf("paths-info %s", body)
			}
		})
	}
	resp, _ := get(t, u, reqOpt{})
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET paths-info: %d", resp.StatusCode)
	}
}

func TestResolve(t *testing.T) {
	fx := newFixture(t, Options{})
	h, commit := fx.h, fx.repo.Commit
	s1 := fx.shards[0]
	tests := []struct {
		name, method, url, auth, rng string
		status                       int
		code                         string
		check                        func(t *testing.T, resp *http.Response, body []byte)
	}{
		{name: "regular", url: h.ResolveURL(repoID, "main", "config.json"), status: 200, check: func(t *testing.T, resp *http.Response, body []byte) {
			if !bytes.Equal(body, configJSON) || resp.Header.Get("ETag") != `"`+gitBlob(configJSON)+`"` ||
				resp.ContentLength != int64(len(configJSON)) || resp.Header.Get("Accept-Ranges") != "bytes" {
				t.Errorf("headers %v body %q", resp.Header, body)
			}
		}},
		{name: "regular HEAD", method: "HEAD", url: h.ResolveURL(repoID, commit, "config.json"), status: 200, check: func(t *testing.T, resp *http.Response, body []byte) {
			if resp.ContentLength != int64(len(configJSON)) || len(body) != 0 {
				t.Errorf("HEAD: length %d body %q", resp.ContentLength, body)
			}
		}},
		{name: "regular range", url: h.ResolveURL(repoID, "main", "config.json"), rng: "bytes=2-5", status: 206, check: func(t *testing.T, resp *http.Response, body []byte) {
			if string(body) != string(configJSON[2:6]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 2-5/%d", len(configJSON)) {
				t.Errorf("range: %q %v", body, resp.Header)
			}
		}},
		{name: "LFS redirect", url: h.ResolveURL(repoID, "main", shard1), status: 302, check: func(t *testing.T, resp *http.Response, body []byte) {
			hd := resp.Header
			if hd.Get("X-Linked-Etag") != `"`+s1.SHA256+`"` || hd.Get("X-Linked-Size") != strconv.Itoa(shardLen) ||
				hd.Get("ETag") == "" || hd.Get("Accept-Ranges") != "bytes" {
				t.Errorf("302 headers %v", hd)
			}
			if resp.ContentLength == shardLen || resp.ContentLength != int64(len(body)) || len(body) == 0 {
				t.Errorf("302 Content-Length %d, body %d bytes", resp.ContentLength, len(body))
			}
			loc, err := url.Parse(hd.Get("Location"))
			if err != nil || !loc.IsAbs() || loc.Hostname() != "localhost" || "http://"+loc.Host != h.CDNURL ||
				!strings.Contains(loc.Path, s1.SHA256) || loc.Query().Get("expires") == "" || loc.Query().Get("sig") == "" {
				t.Errorf("Location %q", hd.Get("Location"))
			}
		}},
		{name: "LFS HEAD", method: "HEAD", url: h.ResolveURL(repoID, "refs/pr/1", shard1), status: 302, check: func(t *testing.T, resp *http.Response, body []byte) {
			if resp.Header.Get("X-Linked-Size") != strconv.Itoa(shardLen) || resp.Header.Get("Location") == "" {
				t.Errorf("HEAD 302 headers %v", resp.Header)
			}
		}},
		{name: "raw LFS pointer", url: h.URL + "/" + repoID + "/raw/main/" + shard1, status: 200, check: func(t *testing.T, resp *http.Response, body []byte) {
			want := fmt.Sprintf("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", s1.SHA256, shardLen)
			if string(body) != want || resp.Header.Get("ETag") != `"`+gitBlob([]byte(want))+`"` {
				t.Errorf("raw: %q %v", body, resp.Header)
			}
		}},
		{name: "missing file", url: h.ResolveURL(repoID, "main", "nope.bin"), status: 404, code: "EntryNotFound"},
		{name: "missing revision", url: h.ResolveURL(repoID, "nope", "config.json"), status: 404, code: "RevisionNotFound"},
		{name: "missing repo", url: h.ResolveURL("org/nope", "main", "config.json"), status: 401, code: "RepoNotFound"},
		{name: "gated anonymous", url: h.ResolveURL("org/gated", "main", "config.json"), status: 401, code: "GatedRepo"},
		{name: "gated not approved", url: h.ResolveURL("org/gated", "main", "config.json"), auth: token, status: 403, code: "GatedRepo"},
		{name: "gated approved", url: h.ResolveURL("org/gated-ok", "main", "config.json"), auth: token, status: 200},
		{name: "gated approved but anonymous", url: h.ResolveURL("org/gated-ok", "main", "config.json"), status: 401, code: "GatedRepo"},
		{name: "private no access", url: h.ResolveURL("org/private", "main", "config.json"), auth: token, status: 404, code: "RepoNotFound"},
		{name: "bad token", url: h.ResolveURL(repoID, "main", "config.json"), auth: "hf_nope", status: 401},
		{name: "disabled", url: h.ResolveURL("org/disabled", "main", "config.json"), status: 403},
		{name: "legacy id", url: h.ResolveURL("gpt2", "main", "config.json"), status: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, tc.url, reqOpt{method: tc.method, auth: tc.auth, rng: tc.rng})
			if tc.status >= 400 {
				wantError(t, resp, body, tc.status, tc.code, "")
			} else if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if resp.StatusCode < 400 || tc.code == "EntryNotFound" {
				if got := resp.Header.Get("X-Repo-Commit"); len(got) != 40 {
					t.Errorf("X-Repo-Commit %q", got)
				}
			}
			if tc.check != nil {
				tc.check(t, resp, body)
			}
		})
	}
	resp, _ := get(t, h.ResolveURL("org/gated", "main", "config.json"), reqOpt{})
	if msg := resp.Header.Get("X-Error-Message"); msg != "Access to model org/gated is restricted. You must have access to it and be authenticated to access it. Please log in." {
		t.Errorf("gated 401 message %q", msg)
	}
	resp, _ = get(t, h.ResolveURL("org/gated", "main", "config.json"), reqOpt{auth: token})
	if msg := resp.Header.Get("X-Error-Message"); msg != "Access to model org/gated is restricted and you are not in the authorized list. Visit https://huggingface.co/org/gated to ask for access." {
		t.Errorf("gated 403 message %q", msg)
	}
}

// cdnURL returns the presigned URL of a file, via the hub's 302.
func cdnURL(t *testing.T, h *Hub, repo, file string) string {
	t.Helper()
	resp, body := get(t, h.ResolveURL(repo, "main", file), reqOpt{})
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("resolve %s: %d %s", file, resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

func TestCDN(t *testing.T) {
	fx := newFixture(t, Options{})
	h := fx.h
	data := fx.shards[0].Data
	loc := cdnURL(t, h, repoID, shard1)
	n := int64(len(data))
	tests := []struct {
		name, url, rng string
		status         int
		want           []byte
		contentRange   string
		xmlCode        string
	}{
		{name: "full", url: loc, status: 200, want: data},
		{name: "a-b", url: loc, rng: "bytes=100-199", status: 206, want: data[100:200], contentRange: fmt.Sprintf("bytes 100-199/%d", n)},
		{name: "a-", url: loc, rng: "bytes=65000-", status: 206, want: data[65000:], contentRange: fmt.Sprintf("bytes 65000-%d/%d", n-1, n)},
		{name: "0-0 probe", url: loc, rng: "bytes=0-0", status: 206, want: data[:1], contentRange: fmt.Sprintf("bytes 0-0/%d", n)},
		{name: "suffix", url: loc, rng: "bytes=-10", status: 206, want: data[n-10:], contentRange: fmt.Sprintf("bytes %d-%d/%d", n-10, n-1, n)},
		{name: "end clamped", url: loc, rng: fmt.Sprintf("bytes=%d-%d", n-2, n+100), status: 206, want: data[n-2:], contentRange: fmt.Sprintf("bytes %d-%d/%d", n-2, n-1, n)},
		{name: "unsatisfiable", url: loc, rng: fmt.Sprintf("bytes=%d-", n), status: 416, contentRange: fmt.Sprintf("bytes */%d", n)},
		{name: "multi-range ignored", url: loc, rng: "bytes=0-1,5-6", status: 200, want: data},
		{name: "forged", url: strings.Replace(loc, "sig=", "sig=00", 1), status: 403, xmlCode: "SignatureDoesNotMatch"},
		{name: "unknown blob", url: h.CDNURL + h.signedPath(repoID, &entry{path: "x", sha256: strings.Repeat("0", 64)}), status: 404, xmlCode: "NoSuchKey"},
		{name: "bad path", url: h.CDNURL + "/elsewhere", status: 404, xmlCode: "NoSuchKey"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, tc.url, reqOpt{rng: tc.rng})
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %.200s", resp.StatusCode, tc.status, body)
			}
			if tc.want != nil && !bytes.Equal(body, tc.want) {
				t.Errorf("body: %d bytes, want %d", len(body), len(tc.want))
			}
			if got := resp.Header.Get("Content-Range"); got != tc.contentRange {
				t.Errorf("Content-Range %q, want %q", got, tc.contentRange)
			}
			if tc.xmlCode != "" && !strings.Contains(string(body), "<Code>"+tc.xmlCode+"</Code>") {
				t.Errorf("error body %s", body)
			}
			if tc.status < 300 && (resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("ETag") == `"`+fx.shards[0].SHA256+`"`) {
				t.Errorf("CDN headers %v", resp.Header)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		fx.clock.Store(3601)
		defer fx.clock.Store(0)
		resp, body := get(t, loc, reqOpt{})
		if resp.StatusCode != 403 || !strings.Contains(string(body), "Request has expired") {
			t.Fatalf("expired URL: %d %s", resp.StatusCode, body)
		}
		// A fresh resolve hands out a URL valid under the new clock.
		if resp, _ := get(t, cdnURL(t, h, repoID, shard1), reqOpt{rng: "bytes=0-0"}); resp.StatusCode != 206 {
			t.Fatalf("fresh URL: %d", resp.StatusCode)
		}
	})
	t.Run("authorization ignored and recorded", func(t *testing.T) {
		h.ResetStats()
		// Go's client drops Authorization on the cross-host 302 (127.0.0.1 -> localhost).
		resp, body := get(t, h.ResolveURL(repoID, "main", shard2), reqOpt{auth: token, follow: true})
		if resp.StatusCode != 200 || sha(body) != fx.shards[1].SHA256 {
			t.Fatalf("followed download: %d", resp.StatusCode)
		}
		// A client that leaks the token still gets the bytes: the CDN ignores it.
		if resp, _ := get(t, cdnURL(t, h, repoID, shard2), reqOpt{auth: token, rng: "bytes=0-9"}); resp.StatusCode != 206 {
			t.Fatalf("leaky request: %d", resp.StatusCode)
		}
		var cdnAuth []bool
		reqs := h.Requests()
		if r := reqs[0]; r.Server != "hub" || r.Path != shard2 || r.Authorization != "Bearer "+token {
			t.Errorf("first hub request %+v", r)
		}
		for _, r := range reqs {
			if r.Server == "cdn" {
				cdnAuth = append(cdnAuth, r.Auth)
				if !strings.HasPrefix(r.Host, "localhost:") || r.Path != shard2 || r.Repo != repoID {
					t.Errorf("CDN request %+v", r)
				}
			}
		}
		if !slices.Equal(cdnAuth, []bool{false, true}) {
			t.Errorf("CDN Auth flags %v, want [false true]", cdnAuth)
		}
	})
}

func TestExpiryOption(t *testing.T) {
	fx := newFixture(t, Options{URLExpiry: -time.Second})
	resp, _ := get(t, cdnURL(t, fx.h, repoID, shard1), reqOpt{})
	if resp.StatusCode != 403 {
		t.Fatalf("already-expired URL: %d", resp.StatusCode)
	}
}

func TestFaults(t *testing.T) {
	fx := newFixture(t, Options{})
	h := fx.h
	data := fx.shards[0].Data
	n := int64(len(data))
	hold, held := make(chan struct{}), make(chan struct{})
	tests := []struct {
		name  string
		fault Fault
		run   func(t *testing.T)
	}{
		{"429 Retry-After on hub once", Fault{Path: shard1, Where: "hub", Status: 429, RetryAfter: 7, Times: 1}, func(t *testing.T) {
			resp, body := get(t, h.ResolveURL(repoID, "main", shard1), reqOpt{})
			if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || !strings.Contains(resp.Header.Get("RateLimit"), "t=7") {
				t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
			}
			if resp, _ := get(t, h.ResolveURL(repoID, "main", shard1), reqOpt{}); resp.StatusCode != 302 {
				t.Fatalf("after Times=1: %d", resp.StatusCode)
			}
		}},
		{"503 on CDN with error code", Fault{Where: "cdn", Status: 503, ErrorCode: "SlowDown"}, func(t *testing.T) {
			resp, _ := get(t, cdnURL(t, h, repoID, shard1), reqOpt{})
			if resp.StatusCode != 503 || resp.Header.Get("X-Error-Code") != "SlowDown" {
				t.Fatalf("%d %v", resp.StatusCode, resp.Header)
			}
		}},
		{"500 on API", Fault{Where: "api", Status: 500, Times: 1}, func(t *testing.T) {
			if resp, _ := get(t, h.URL+"/api/models/"+repoID, reqOpt{}); resp.StatusCode != 500 {
				t.Fatalf("%d", resp.StatusCode)
			}
			// API faults never fire on file downloads and vice versa.
			if resp, _ := get(t, h.URL+"/api/models/"+repoID, reqOpt{}); resp.StatusCode != 200 {
				t.Fatalf("second: %d", resp.StatusCode)
			}
		}},
		{"drop after 1000 bytes", Fault{Path: shard1, DropAfter: 1000, Times: 1}, func(t *testing.T) {
			resp, body, err := do(t, cdnURL(t, h, repoID, shard1), reqOpt{})
			if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != 1000 || resp.ContentLength != n || !bytes.Equal(body, data[:1000]) {
				t.Fatalf("err %v, %d bytes", err, len(body))
			}
			if got := h.Stats().File(repoID, shard1).Bytes; got != 1000 {
				t.Errorf("counted %d bytes, want 1000", got)
			}
		}},
		{"drop right after headers", Fault{Path: shard1, DropAfter: Zero, Times: 1}, func(t *testing.T) {
			_, body, err := do(t, cdnURL(t, h, repoID, shard1), reqOpt{})
			if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != 0 {
				t.Fatalf("err %v, %d bytes", err, len(body))
			}
		}},
		{"drop on regular file, chunked", Fault{Path: "config.json", DropAfter: 5, NoContentLength: true, Times: 1}, func(t *testing.T) {
			_, body, err := do(t, h.ResolveURL(repoID, "main", "config.json"), reqOpt{})
			if !errors.Is(err, io.ErrUnexpectedEOF) || string(body) != string(configJSON[:5]) {
				t.Fatalf("err %v, body %q", err, body)
			}
		}},
		{"corrupt", Fault{Path: shard1, CorruptAt: 100, Times: 1}, func(t *testing.T) {
			resp, body := get(t, cdnURL(t, h, repoID, shard1), reqOpt{})
			if resp.StatusCode != 200 || int64(len(body)) != n || sha(body) == fx.shards[0].SHA256 {
				t.Fatalf("%d, %d bytes, sha unchanged=%v", resp.StatusCode, len(body), sha(body) == fx.shards[0].SHA256)
			}
			for i := range body {
				if (body[i] != data[i]) != (i == 100) {
					t.Fatalf("byte %d differs unexpectedly", i)
				}
			}
		}},
		{"corrupt inside a range", Fault{Path: shard1, CorruptAt: 150, Times: 1}, func(t *testing.T) {
			_, body := get(t, cdnURL(t, h, repoID, shard1), reqOpt{rng: "bytes=100-199"})
			if body[50] == data[150] || !bytes.Equal(body[:50], data[100:150]) || !bytes.Equal(body[51:], data[151:200]) {
				t.Fatal("wrong corruption")
			}
		}},
		{"corrupt first byte with Zero", Fault{Path: "config.json", CorruptAt: Zero, Times: 1}, func(t *testing.T) {
			_, body := get(t, h.ResolveURL(repoID, "main", "config.json"), reqOpt{})
			if body[0] == configJSON[0] || !bytes.Equal(body[1:], configJSON[1:]) {
				t.Fatalf("body %q", body)
			}
		}},
		{"ignore range", Fault{Path: shard1, IgnoreRange: true, Times: 1}, func(t *testing.T) {
			resp, body := get(t, cdnURL(t, h, repoID, shard1), reqOpt{rng: "bytes=100-"})
			if resp.StatusCode != 200 || !bytes.Equal(body, data) || resp.Header.Get("Content-Range") != "" {
				t.Fatalf("%d, %d bytes", resp.StatusCode, len(body))
			}
		}},
		{"no content length", Fault{Path: shard1, NoContentLength: true, Times: 1}, func(t *testing.T) {
			resp, body := get(t, cdnURL(t, h, repoID, shard1), reqOpt{})
			if resp.ContentLength != -1 || !slices.Equal(resp.TransferEncoding, []string{"chunked"}) || !bytes.Equal(body, data) {
				t.Fatalf("length %d TE %v, %d bytes", resp.ContentLength, resp.TransferEncoding, len(body))
			}
		}},
		{"content length too large", Fault{Path: shard1, WrongContentLength: n + 100, Times: 1}, func(t *testing.T) {
			resp, body, err := do(t, cdnURL(t, h, repoID, shard1), reqOpt{})
			if resp.ContentLength != n+100 || !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Equal(body, data) {
				t.Fatalf("length %d err %v, %d bytes", resp.ContentLength, err, len(body))
			}
		}},
		{"content length too small", Fault{Path: shard1, WrongContentLength: 10, Times: 1}, func(t *testing.T) {
			resp, body, err := do(t, cdnURL(t, h, repoID, shard1), reqOpt{})
			if resp.ContentLength != 10 || err != nil || !bytes.Equal(body, data[:10]) {
				t.Fatalf("length %d err %v, %d bytes", resp.ContentLength, err, len(body))
			}
		}},
		{"dead CDN", Fault{Path: shard1, DeadCDN: true, Times: 1}, func(t *testing.T) {
			loc := cdnURL(t, h, repoID, shard1)
			if strings.HasPrefix(loc, h.CDNURL+"/") {
				t.Fatalf("Location %s still on the live CDN", loc)
			}
			if resp, err := http.Get(loc); err == nil {
				resp.Body.Close()
				t.Fatalf("dead CDN answered %d", resp.StatusCode)
			}
		}},
		{"stall for a while", Fault{Path: shard1, StallAt: 4096, StallFor: 20 * time.Millisecond, Times: 1}, func(t *testing.T) {
			start := time.Now()
			_, body := get(t, cdnURL(t, h, repoID, shard1), reqOpt{})
			if !bytes.Equal(body, data) || time.Since(start) < 20*time.Millisecond {
				t.Fatalf("%d bytes after %v", len(body), time.Since(start))
			}
		}},
		{"hold until released", Fault{Path: shard1, StallAt: 4096, Hold: hold, Held: held, Times: 1}, func(t *testing.T) {
			resp, err := http.Get(cdnURL(t, h, repoID, shard1))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			head := make([]byte, 4096)
			if _, err := io.ReadFull(resp.Body, head); err != nil || !bytes.Equal(head, data[:4096]) {
				t.Fatalf("before the hold: %v", err)
			}
			<-held
			// The response is open and has sent exactly the bytes before
			// the hold.
			var cur Request
			for _, r := range h.Requests() {
				if r.Server == "cdn" && r.Path == shard1 {
					cur = r
				}
			}
			if cur.Done || cur.Bytes != 4096 {
				t.Fatalf("held response: %+v", cur)
			}
			close(hold)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(rest, data[4096:]) {
				t.Fatalf("after the hold: %d bytes, %v", len(rest), err)
			}
		}},
		{"stall until the client gives up", Fault{Path: shard1, StallAt: 4096, Times: 1}, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cdnURL(t, h, repoID, shard1), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			head := make([]byte, 4096)
			if _, err := io.ReadFull(resp.Body, head); err != nil || !bytes.Equal(head, data[:4096]) {
				t.Fatalf("before the stall: %v", err)
			}
			got := make(chan error, 1)
			go func() {
				_, err := resp.Body.Read(make([]byte, 1))
				got <- err
			}()
			select {
			case err := <-got:
				t.Fatalf("read past the stall point: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			cancel()
			if err := <-got; err == nil {
				t.Fatal("read succeeded after cancel")
			}
			wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer wcancel()
			if err := h.WaitIdle(wctx); err != nil {
				t.Fatalf("handler still stalled after the client left: %v", err)
			}
		}},
		{"body faults skip HEAD", Fault{Path: "config.json", DropAfter: 3, Times: 1}, func(t *testing.T) {
			if resp, _ := get(t, h.ResolveURL(repoID, "main", "config.json"), reqOpt{method: "HEAD"}); resp.StatusCode != 200 {
				t.Fatalf("HEAD %d", resp.StatusCode)
			}
			if _, _, err := do(t, h.ResolveURL(repoID, "main", "config.json"), reqOpt{}); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("the GET after HEAD should get the fault: %v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.ClearFaults()
			h.ResetStats()
			h.AddFault(tc.fault)
			tc.run(t)
			if h.Stats().FaultsFired == 0 {
				t.Error("no fault fired")
			}
		})
	}
	t.Run("Times is exact under concurrency", func(t *testing.T) {
		h.ClearFaults()
		h.AddFault(Fault{Path: "config.json", Status: 500, Times: 3})
		h.AddFault(Fault{Path: "config.json", Status: 502}) // later faults fire when earlier ones are spent
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[int]int{}
		for range 12 {
			wg.Go(func() {
				resp, err := http.Get(h.ResolveURL(repoID, "main", "config.json"))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if codes[500] != 3 || codes[502] != 9 {
			t.Errorf("status counts %v", codes)
		}
	})
}

func TestStatsBytes(t *testing.T) {
	fx := newFixture(t, Options{})
	h := fx.h
	data := fx.shards[0].Data
	h.AddFault(Fault{Path: shard1, Where: "cdn", DropAfter: 20000, Times: 1})
	h.ResetStats()
	// First attempt dies after 20000 bytes; the resume asks for the rest.
	_, first, err := do(t, h.ResolveURL(repoID, "main", shard1), reqOpt{follow: true})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("first attempt: %v", err)
	}
	resp, rest := get(t, h.ResolveURL(repoID, "main", shard1), reqOpt{follow: true, rng: fmt.Sprintf("bytes=%d-", len(first))})
	if resp.StatusCode != 206 || sha(append(first, rest...)) != fx.shards[0].SHA256 {
		t.Fatalf("resume: %d, %d+%d bytes", resp.StatusCode, len(first), len(rest))
	}
	// One regular file over the hub.
	get(t, h.ResolveURL(repoID, "main", "config.json"), reqOpt{})
	st := h.Stats()
	if got := st.File(repoID, shard1); got.Bytes != int64(len(data)) || got.Requests != 4 {
		t.Errorf("shard stats %+v, want %d bytes in 4 requests (2 hub + 2 CDN)", got, len(data))
	}
	if got := st.File(repoID, "config.json").Bytes; got != int64(len(configJSON)) {
		t.Errorf("config.json bytes %d", got)
	}
	if st.Bytes != int64(len(data)+len(configJSON)) || st.HubRequests != 3 || st.CDNRequests != 2 || st.FaultsFired != 1 {
		t.Errorf("stats %+v", st)
	}
	// The dropped response's handler may still be unwinding after the
	// client saw the reset: wait for every handler to return.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	var cdnBytes int64
	for _, r := range h.Requests() {
		if !r.Done {
			t.Errorf("request not done: %+v", r)
		}
		if r.Server == "cdn" {
			cdnBytes += r.Bytes
		}
	}
	if cdnBytes != int64(len(data)) {
		t.Errorf("CDN log bytes %d", cdnBytes)
	}
}

func TestLenient(t *testing.T) {
	fx := newFixture(t, Options{Lenient: true})
	h := fx.h
	// API calls bounce once through a same-host relative 307.
	resp, _ := get(t, h.URL+"/api/models/"+repoID+"?blobs=true", reqOpt{auth: token})
	if resp.StatusCode != 307 || resp.Header.Get("Location") != "/api/models/"+repoID+"?blobs=true&"+mirrorParam+"=1" {
		t.Fatalf("API: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := get(t, h.URL+"/api/models/"+repoID+"?blobs=true", reqOpt{auth: token, follow: true})
	if resp.StatusCode != 200 || !strings.Contains(string(body), fx.shards[0].SHA256) || resp.ContentLength != -1 {
		t.Fatalf("followed API: %d length %d", resp.StatusCode, resp.ContentLength)
	}
	resp, body = get(t, h.ResolveURL(repoID, "main", "config.json"), reqOpt{rng: "bytes=0-3"})
	if resp.StatusCode != 200 || !bytes.Equal(body, configJSON) || resp.Header.Get("ETag") != gitBlob(configJSON) ||
		resp.ContentLength != -1 || resp.Header.Get("Accept-Ranges") != "" {
		t.Errorf("regular file: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = get(t, h.ResolveURL(repoID, "main", shard1), reqOpt{})
	if resp.StatusCode != 302 || resp.Header.Get("X-Linked-Etag") != "" || resp.Header.Get("X-Linked-Size") != "" ||
		resp.Header.Get("ETag") != fx.shards[0].SHA256 {
		t.Errorf("LFS 302: %d %v", resp.StatusCode, resp.Header)
	}
	resp, body = get(t, resp.Header.Get("Location"), reqOpt{rng: "bytes=10-"})
	if resp.StatusCode != 200 || resp.ContentLength != -1 || !bytes.Equal(body, fx.shards[0].Data) {
		t.Errorf("CDN: %d length %d", resp.StatusCode, resp.ContentLength)
	}
}

func TestSnapshotsAndBranchMoves(t *testing.T) {
	fx := newFixture(t, Options{})
	h := fx.h
	old := fx.repo.Commit
	v2 := []byte(`{"v":2}`)
	again := h.AddRepo(Repo{ID: repoID, Files: append([]File{{Path: "config.json", Data: v2}}, fx.shards...)})
	if again.Commit == old {
		t.Fatal("new content kept the commit")
	}
	if same := h.AddRepo(Repo{ID: repoID, Files: append([]File{{Path: "config.json", Data: v2}}, fx.shards...)}); same.Commit != again.Commit {
		t.Fatal("commit is not deterministic")
	}
	if _, body := get(t, h.ResolveURL(repoID, "main", "config.json"), reqOpt{}); string(body) != string(v2) {
		t.Errorf("main serves %q", body)
	}
	resp, body := get(t, h.ResolveURL(repoID, old, "config.json"), reqOpt{})
	if !bytes.Equal(body, configJSON) || resp.Header.Get("X-Repo-Commit") != old {
		t.Errorf("old commit serves %q (commit %s)", body, resp.Header.Get("X-Repo-Commit"))
	}
	if got := h.Repo(repoID); got == nil || got.Commit != again.Commit || got.Files[0].OID != gitBlob(v2) || got.Files[0].Size != int64(len(v2)) {
		t.Errorf("Repo() = %+v", got)
	}
	h.RemoveRepo(repoID)
	if resp, _ := get(t, h.URL+"/api/models/"+repoID, reqOpt{auth: token}); resp.StatusCode != 404 {
		t.Errorf("removed repo: %d", resp.StatusCode)
	}
}

// TestGitHashes checks tree and commit oids against git itself.
func TestGitHashes(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed")
	}
	fx := newFixture(t, Options{})
	dir := t.TempDir()
	run := func(args ...string) string {
		cmd := exec.Command(git, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "-q", ".")
	for _, f := range fx.repo.Files {
		content := f.Data
		if f.LFS {
			content = lfsPointer(f.SHA256, f.Size)
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run("add", "-A")
	tree := run("write-tree")
	if got := commitOID(tree, repoID); got != fx.repo.Commit {
		t.Errorf("commit over git's tree %s = %s, hub says %s", tree, got, fx.repo.Commit)
	}
	var page []treeEntry
	_, body := get(t, fx.h.URL+"/api/models/"+repoID+"/tree/main", reqOpt{})
	_ = json.Unmarshal(body, &page)
	if sub := run("rev-parse", tree+":Q4_K_M"); page[0].Path != "Q4_K_M" || page[0].OID != sub {
		t.Errorf("directory oid %s, git says %s", page[0].OID, sub)
	}
}

// readGGUF parses the GGUF header kinds the generator writes.
func readGGUF(t *testing.T, b []byte) (version uint32, tensors uint64, kv map[string]any, dataStart int64) {
	t.Helper()
	r := bytes.NewReader(b)
	rd := func(v any) {
		if err := binary.Read(r, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	str := func() string {
		var n uint64
		rd(&n)
		s := make([]byte, n)
		if _, err := io.ReadFull(r, s); err != nil {
			t.Fatal(err)
		}
		return string(s)
	}
	magic := make([]byte, 4)
	_, _ = io.ReadFull(r, magic)
	if string(magic) != "GGUF" {
		t.Fatalf("magic %q", magic)
	}
	var nkv uint64
	rd(&version)
	rd(&tensors)
	rd(&nkv)
	kv = map[string]any{}
	for range nkv {
		key := str()
		var typ uint32
		rd(&typ)
		switch typ {
		case ggufTypeU16:
			var v uint16
			rd(&v)
			kv[key] = v
		case ggufTypeU32:
			var v uint32
			rd(&v)
			kv[key] = v
		case ggufTypeI32:
			var v int32
			rd(&v)
			kv[key] = v
		case ggufTypeStr:
			kv[key] = str()
		default:
			t.Fatalf("unexpected type %d for %s", typ, key)
		}
	}
	var dataLen int64
	for range tensors {
		str()
		var dims uint32
		rd(&dims)
		var d, off uint64
		var typ uint32
		rd(&d)
		rd(&typ)
		rd(&off)
		dataLen += int64(d)
	}
	pos := int64(len(b)) - int64(r.Len())
	dataStart = (pos + ggufAlignment - 1) / ggufAlignment * ggufAlignment
	if dataStart+dataLen != int64(len(b)) {
		t.Errorf("data %d+%d != file size %d", dataStart, dataLen, len(b))
	}
	return version, tensors, kv, dataStart
}

func TestGenerateGGUF(t *testing.T) {
	files := GenerateGGUFShards("", "Q8_0/m", "Q8_0", 3, 10000, 1)
	for i, f := range files {
		if want := fmt.Sprintf("Q8_0/m-Q8_0-%05d-of-00003.gguf", i+1); f.Path != want || !f.LFS || len(f.Data) != 10000 || f.SHA256 != sha(f.Data) {
			t.Fatalf("shard %d: %s, %d bytes, LFS %v", i, f.Path, len(f.Data), f.LFS)
		}
		version, tensors, kv, _ := readGGUF(t, f.Data)
		if version != 3 || tensors != 1 || kv["general.architecture"] != "llama" || kv["split.no"] != uint16(i) ||
			kv["split.count"] != uint16(3) || kv["split.tensors.count"] != int32(3) {
			t.Errorf("shard %d header: v%d, %d tensors, %v", i, version, tensors, kv)
		}
		if tmpl, ok := kv["tokenizer.chat_template"]; (i == 0) != ok || ok && tmpl != ChatTemplate {
			t.Errorf("shard %d chat template %v", i, tmpl)
		}
	}
	single := GenerateGGUFShards("", "m", "Q4_K_M", 1, 5000, 1)
	if _, _, kv, _ := readGGUF(t, single[0].Data); single[0].Path != "m-Q4_K_M.gguf" || kv["split.count"] != nil {
		t.Errorf("unsplit: %s %v", single[0].Path, kv)
	}
	if tiny := GenerateGGUFShards("", "m", "", 2, 10, 1); tiny[0].Path != "m-00001-of-00002.gguf" || len(tiny[0].Data) < 100 {
		t.Errorf("tiny shard %s %d bytes", tiny[0].Path, len(tiny[0].Data))
	}
	// Deterministic; differs by seed and name; disk equals memory.
	again := GenerateGGUFShards("", "Q8_0/m", "Q8_0", 3, 10000, 1)
	other := GenerateGGUFShards("", "Q8_0/m", "Q8_0", 3, 10000, 2)
	if again[1].SHA256 != files[1].SHA256 || other[1].SHA256 == files[1].SHA256 || files[0].SHA256 == files[1].SHA256 {
		t.Error("content is not a deterministic function of seed and name")
	}
	dir := t.TempDir()
	disk := GenerateGGUFShards(dir, "Q8_0/m", "Q8_0", 3, 10000, 1)
	for i, f := range disk {
		b, err := os.ReadFile(f.DiskPath)
		if err != nil || f.Data != nil || f.DiskPath != filepath.Join(dir, "Q8_0", path.Base(f.Path)) || !bytes.Equal(b, files[i].Data) || f.SHA256 != files[i].SHA256 {
			t.Fatalf("disk shard %d: %v %s", i, err, f.DiskPath)
		}
	}
	st1, _ := os.Stat(disk[0].DiskPath)
	reused := GenerateGGUFShards(dir, "Q8_0/m", "Q8_0", 3, 10000, 1)
	st2, _ := os.Stat(reused[0].DiskPath)
	if !os.SameFile(st1, st2) || reused[0].SHA256 != disk[0].SHA256 {
		t.Error("existing file was regenerated")
	}
}

func TestGenerateSafetensors(t *testing.T) {
	files := GenerateSafetensorsShards("", 3, 5000, 1)
	byPath := map[string]File{}
	for _, f := range files {
		byPath[f.Path] = f
	}
	var idx struct {
		Metadata struct {
			TotalSize int64 `json:"total_size"`
		}
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(byPath["model.safetensors.index.json"].Data, &idx); err != nil {
		t.Fatal(err)
	}
	var total int64
	tensors := 0
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("model-%05d-of-00003.safetensors", i)
		f, ok := byPath[name]
		if !ok || !f.LFS || len(f.Data) != 5000 {
			t.Fatalf("%s: present %v LFS %v size %d", name, ok, f.LFS, len(f.Data))
		}
		hl := binary.LittleEndian.Uint64(f.Data)
		if hl%8 != 0 || 8+hl > uint64(len(f.Data)) {
			t.Fatalf("%s: header length %d", name, hl)
		}
		var hdr map[string]json.RawMessage
		if err := json.Unmarshal(f.Data[8:8+hl], &hdr); err != nil {
			t.Fatalf("%s header: %v", name, err)
		}
		dataLen := int64(len(f.Data)) - 8 - int64(hl)
		var covered int64
		for k, raw := range hdr {
			if k == "__metadata__" {
				continue
			}
			var ti struct {
				Dtype       string
				Shape       []int64
				DataOffsets [2]int64 `json:"data_offsets"`
			}
			if err := json.Unmarshal(raw, &ti); err != nil {
				t.Fatal(err)
			}
			if ti.Dtype != "U8" || ti.Shape[0] != ti.DataOffsets[1]-ti.DataOffsets[0] || ti.DataOffsets[1] > dataLen {
				t.Errorf("%s %s: %+v", name, k, ti)
			}
			if idx.WeightMap[k] != name {
				t.Errorf("weight_map[%s] = %q, want %s", k, idx.WeightMap[k], name)
			}
			covered += ti.DataOffsets[1] - ti.DataOffsets[0]
			tensors++
		}
		if covered != dataLen {
			t.Errorf("%s: tensors cover %d of %d data bytes", name, covered, dataLen)
		}
		total += dataLen
	}
	if idx.Metadata.TotalSize != total || len(idx.WeightMap) != tensors {
		t.Errorf("index total_size %d (want %d), %d entries (want %d)", idx.Metadata.TotalSize, total, len(idx.WeightMap), tensors)
	}
	var tok struct {
		ChatTemplate string `json:"chat_template"`
	}
	if err := json.Unmarshal(byPath["tokenizer_config.json"].Data, &tok); err != nil || tok.ChatTemplate != ChatTemplate {
		t.Errorf("tokenizer_config.json: %v", err)
	}
	for _, p := range []string{"config.json", "README.md", "tokenizer_config.json", "model.safetensors.index.json"} {
		if f, ok := byPath[p]; !ok || f.LFS {
			t.Errorf("%s missing or LFS", p)
		}
	}
	if one := GenerateSafetensorsShards("", 1, 1000, 1); one[0].Path != "model.safetensors" || one[1].Path != "config.json" {
		t.Errorf("unsharded: %s, %s", one[0].Path, one[1].Path)
	}
}

func TestDiskRepoServesWithSendfile(t *testing.T) {
	h, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	files := GenerateGGUFShards(t.TempDir(), "m", "Q4_K_M", 2, 1<<20, 3)
	files = append(files, GenerateSafetensorsShards(t.TempDir(), 1, 1000, 3)[1:]...)
	repo := h.AddRepo(Repo{ID: "disk/model", Files: files})
	for _, f := range repo.Files {
		resp, body := get(t, h.ResolveURL("disk/model", "main", f.Path), reqOpt{follow: true})
		if resp.StatusCode != 200 || sha(body) != f.SHA256 || int64(len(body)) != f.Size {
			t.Errorf("%s: %d, %d bytes", f.Path, resp.StatusCode, len(body))
		}
	}
	if st := h.Stats(); st.Bytes != 2<<20+repo.Files[2].Size+repo.Files[3].Size+repo.Files[4].Size {
		t.Errorf("sendfile bytes not counted: %+v", st)
	}
	resp, body := get(t, h.ResolveURL("disk/model", "main", files[0].Path), reqOpt{follow: true, rng: "bytes=1000-1999"})
	want, _ := os.ReadFile(files[0].DiskPath)
	if resp.StatusCode != 206 || !bytes.Equal(body, want[1000:2000]) {
		t.Errorf("disk range: %d", resp.StatusCode)
	}
}

func TestTestHubMain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"--listen", "127.0.0.1:0", "--repo", "demo/tiny-GGUF", "--shards", "3", "--shard-size", "16KiB",
			"--extra-quant", "Q8_0", "--safetensors", "demo/st", "--token", token}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HUB_URL=http://127.0.0.1:") {
		t.Fatalf("first stdout line %q: %v", line, err)
	}
	hubURL := strings.TrimSpace(strings.TrimPrefix(line, "HUB_URL="))
	resp, body := get(t, hubURL+"/api/models/demo/tiny-GGUF?blobs=true", reqOpt{auth: token})
	for _, want := range []string{"Q4_K_M/tiny-Q4_K_M-00003-of-00003.gguf", "Q8_0/tiny-Q8_0-00001-of-00003.gguf", "README.md"} {
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("repo lacks %s: %d", want, resp.StatusCode)
		}
	}
	if resp, _ := get(t, hubURL+"/demo/st/resolve/main/model.safetensors.index.json", reqOpt{}); resp.StatusCode != 200 {
		t.Errorf("safetensors repo: %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in   string
		want int64
	}{{"64MiB", 64 << 20}, {"1GiB", 1 << 30}, {"100MB", 100e6}, {"4096", 4096}, {"7B", 7}} {
		if got, err := ParseSize(tc.in); got != tc.want || err != nil {
			t.Errorf("ParseSize(%q) = %d, %v", tc.in, got, err)
		}
	}
	if _, err := ParseSize("lots"); err == nil {
		t.Error("ParseSize accepted garbage")
	}
}
