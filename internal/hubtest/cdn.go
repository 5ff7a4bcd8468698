package hubtest

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The CDN stands for cdn-lfs.hf.co / cas-bridge.xethub.hf.co: it serves LFS
// content at presigned URLs handed out by the hub's 302. It runs on its own
// listener and is addressed by a different host name (Options.CDNHost) so a
// client that carries the Hub token across the redirect is visible in the
// request log; like S3 it ignores Authorization and trusts only the
// signature, and answers errors in S3's XML, not the Hub's JSON.

// signedPath returns path and query of a presigned CDN URL for e.
func (h *Hub) signedPath(repo string, e *entry) string {
	expires := strconv.FormatInt(h.now().Add(h.opts.URLExpiry).Unix(), 10)
	q := url.Values{
		"repo":    {repo},
		"path":    {e.path},
		"expires": {expires},
		"sig":     {h.sign(e.sha256, repo, e.path, expires)},
	}
	return fmt.Sprintf("/repos/%s/%s/%s?%s", e.sha256[:2], e.sha256[2:4], e.sha256, q.Encode())
}

func (h *Hub) sign(sha, repo, path, expires string) string {
	m := hmac.New(sha256.New, h.secret)
	fmt.Fprintf(m, "%s\n%s\n%s\n%s", sha, repo, path, expires)
	return hex.EncodeToString(m.Sum(nil))
}

// serveCDN serves /repos/xx/yy/{sha256}?repo=&path=&expires=&sig=.
func (h *Hub) serveCDN(w *rec, r *http.Request) {
	segs := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(segs) != 4 || segs[0] != "repos" || len(segs[3]) != 64 {
		cdnError(w, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	sha := segs[3]
	q := r.URL.Query()
	repo, file, expires := q.Get("repo"), q.Get("path"), q.Get("expires")
	h.setRepo(w.req, repo)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		cdnError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
		return
	}
	if !hmac.Equal([]byte(q.Get("sig")), []byte(h.sign(sha, repo, file, expires))) {
		cdnError(w, http.StatusForbidden, "SignatureDoesNotMatch",
			"The request signature we calculated does not match the signature you provided.")
		return
	}
	exp, err := strconv.ParseInt(expires, 10, 64)
	if err != nil || h.now().Unix() > exp {
		cdnError(w, http.StatusForbidden, "AccessDenied", "Request has expired")
		return
	}
	h.mu.RLock()
	e := h.blobs[sha]
	h.mu.RUnlock()
	if e == nil {
		cdnError(w, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	h.setFile(w.req, repo, file)
	f := h.takeFault(w, "cdn", kindContent, r.Method, repo, file)
	if f != nil && f.Status != 0 {
		h.answerStatus(w, f)
		return
	}
	// An S3-style ETag that is deliberately not the content hash: clients
	// must take the expected sha256 from X-Linked-Etag on the hub's 302.
	s3 := sha1.Sum([]byte(e.sha256))
	w.Header().Set("ETag", fmt.Sprintf(`"%x-1"`, s3[:16]))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", contentDisposition(file))
	w.fileKey = repo + "/" + file
	h.serveContent(w, r, e.content(), f)
}

func cdnError(w *rec, status int, code, msg string) {
	body := fmt.Sprintf("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>", code, msg)
	w.Header().Set("Content-Type", "application/xml")
	w.begin(status, int64(len(body)), false)
	_, _ = w.Write([]byte(body))
}
