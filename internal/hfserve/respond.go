package hfserve

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
)

// The Hub's X-Error-Code values that clients act on.
const (
	codeRepoNotFound     = "RepoNotFound"
	codeRevisionNotFound = "RevisionNotFound"
	codeEntryNotFound    = "EntryNotFound"
	codeGatedRepo        = "GatedRepo"
)

// hfError answers in the Hub's error format: X-Error-Code (when there is
// one), X-Error-Message and the JSON body {"error": message}. Clients read
// the headers; the body is for people and for clients that only log it.
func hfError(w http.ResponseWriter, status int, code, msg string) {
	h := w.Header()
	// Headers meant for a file must not stick to an error about it.
	for _, k := range []string{"ETag", "X-Linked-Etag", "X-Linked-Size", "Content-Range", "Content-Disposition", "Accept-Ranges", "Content-Length"} {
		h.Del(k)
	}
	if code != "" {
		h.Set("X-Error-Code", code)
	}
	h.Set("X-Error-Message", headerSafe(msg))
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"hfserve: cannot encode JSON"}`+"\n")
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func marshal(v any) ([]byte, error) {
	var b jsonBuf
	enc := json.NewEncoder(&b)
	// Paths with & or < are ordinary file names here, not HTML.
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return b, err
}

type jsonBuf []byte

func (b *jsonBuf) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

// headerSafe keeps a message (which may quote a client's revision or
// path) from breaking the header it is put in, and keeps it ASCII, which
// every client's header parser accepts; the JSON body has it unchanged.
func headerSafe(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			c = ' '
		case c >= 0x80:
			c = '?'
		}
		out = append(out, c)
	}
	return string(out)
}

func unescape(s string) (string, error) { return url.PathUnescape(s) }

func methodAllowed(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	allow := ""
	for i, m := range methods {
		if i > 0 {
			allow += ", "
		}
		allow += m
	}
	w.Header().Set("Allow", allow)
	hfError(w, http.StatusMethodNotAllowed, "", "Method Not Allowed")
	return false
}
