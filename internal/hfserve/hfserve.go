// Package hfserve serves the models installed on this box as a Hugging
// Face–compatible endpoint, so that other hal0 boxes and third-party tools
// (huggingface_hub, @huggingface/hub, llama.cpp -hf, vLLM) on the LAN can
// download them with HF_ENDPOINT=http://box:8080/hf instead of going to the
// internet again.
//
// What is served comes from the registry alone: every entry with source
// "hf", an hf_repo and a pinned commit is that repo at that commit, and the
// entries of one repo and commit (several quants of one GGUF repo) merge
// into one listing. The hashes in listings and headers are the ones the
// pull recorded after verifying every byte, so a client that checks them
// (hal0 does, always) gets exactly what the upstream hub served.
//
// Files go out with http.ServeContent over the *os.File itself: net/http
// hands that to the TCP connection's ReadFrom, which uses sendfile(2), so
// file bytes never pass through user space. A file whose size on disk
// differs from the registry, or that resolves outside its model directory,
// is refused rather than served.
//
// Optionally (Options.Upstream and Options.Pulls) the endpoint is a
// pull-through mirror: listings come from the upstream hub, and a file
// that is not installed is pulled as an ordinary pull job (in hal0-apid:
// hal0-pull@<ref>.service, or a child process in embedded mode) and
// streamed to clients while it downloads. A streamed response announces
// the final size and hash, sends what the worker has written as it grows,
// and withholds its last byte until the whole file hashed to the pinned
// hash and the bytes sent match the bytes hashed; otherwise the
// connection is cut, so a client sees a truncated transfer, never a
// complete wrong file (see stream.go).
package hfserve

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/registry"
)

// Options configures a Handler.
type Options struct {
	// Registry is the store whose installed models are served.
	Registry *registry.Store
	// Prefix is the URL path the handler is mounted under, without a
	// trailing slash ("/hf" by default). Clients use <base URL><Prefix> as
	// their HF_ENDPOINT.
	Prefix string
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every request. It is the read token for the LAN and has nothing to
	// do with the admin token of hal0's API. Without it anyone who can
	// reach the listener can read the models, and Authorization headers
	// are ignored (clients routinely send their huggingface.co token to
	// whatever HF_ENDPOINT is).
	Token config.Secret
	// Privileged, when set, says whether a request comes from the box's
	// owner (hal0-apid: over the unix socket, or with the admin token).
	// Such requests need no read token and may download gated models.
	Privileged func(*http.Request) bool
	// ServeGated serves gated models (pulled from a repo whose license
	// each user must accept) to every client with access; by default only
	// privileged requests get their files, others 403 GatedRepo.
	ServeGated bool
	// Upstream and Pulls, both set, turn on pull-through: listings are
	// Upstream's, and a listed file that is not installed is pulled by a
	// job that Pulls starts, and streamed while it downloads. Either
	// alone does nothing.
	Upstream Lister
	Pulls    Puller
	// PullWait is how long a request waits for an upstream listing, or for
	// a pull-through job to pin its files, before answering 503 with
	// Retry-After (the pull goes on). The default, 8s, stays below
	// huggingface_hub's 10 s metadata timeout, so its HEAD gets an answer
	// it retries instead of a timeout.
	PullWait time.Duration
	// PageSize is how many entries a tree listing returns per page before
	// it paginates with a Link header (default 1000, as the Hub).
	PageSize int
	// Logf receives problems worth an operator's attention (damaged
	// files, unreadable registry, failed pulls), with full paths.
	Logf func(format string, a ...any)
	// Now is the clock for negative-cache expiry; default time.Now.
	Now func() time.Time
}

// Handler is the HF endpoint. Create it with New.
type Handler struct {
	opts   Options
	prefix string

	imu    sync.Mutex
	idx    *index
	idxRaw []byte // the registry bytes idx was built from

	pt    *pullThrough
	lists listings
}

// New returns a handler for opts.
func New(opts Options) *Handler {
	if opts.Prefix == "" {
		opts.Prefix = "/hf"
	}
	opts.Prefix = "/" + strings.Trim(opts.Prefix, "/")
	if opts.Prefix == "/" {
		opts.Prefix = ""
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 1000
	}
	if opts.PullWait <= 0 {
		opts.PullWait = 8 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Upstream == nil || opts.Pulls == nil {
		opts.Upstream, opts.Pulls = nil, nil
	}
	h := &Handler{opts: opts, prefix: opts.Prefix}
	if opts.Pulls != nil {
		h.pt = newPullThrough(opts.Pulls, opts.Now, h.logf)
	}
	return h
}

// Close ends the streams of files still downloading (their clients see
// an aborted transfer) and waits for their followers to stop. The pulls
// themselves go on: they are jobs of their own.
func (h *Handler) Close() {
	if h.pt != nil {
		h.pt.close()
	}
}

func (h *Handler) logf(format string, a ...any) {
	if h.opts.Logf != nil {
		h.opts.Logf(format, a...)
	}
}

// ServeHTTP routes a request under the prefix.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(w, r) {
		return
	}
	// Routing works on the escaped path: revisions arrive as one segment
	// with %2F inside (refs%2Fpr%2F1), which the decoded path would split.
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), h.prefix+"/")
	if !ok {
		hfError(w, http.StatusNotFound, "", "Not Found")
		return
	}
	segs := strings.Split(rest, "/")
	switch {
	case segs[0] == "api":
		h.serveAPI(w, r, segs[1:])
	case segs[0] == "datasets" || segs[0] == "spaces":
		// Only model repos are ever installed.
		hfError(w, http.StatusNotFound, codeRepoNotFound, "Repository not found")
	case len(segs) >= 4 && (segs[2] == "resolve" || segs[2] == "raw"):
		repo, ok := repoID(segs[:2])
		if !ok {
			hfError(w, http.StatusBadRequest, "", "Bad repository id")
			return
		}
		h.serveFile(w, r, repo, segs[2] == "raw", segs[3:])
	default:
		hfError(w, http.StatusNotFound, "", "Not Found")
	}
}

// authorized checks the read token and answers 401 itself when it fails,
// in the Hub's words so that clients print their usual advice.
func (h *Handler) authorized(w http.ResponseWriter, r *http.Request) bool {
	if !h.opts.Token.IsSet() || h.privileged(r) {
		return true
	}
	v := r.Header.Values("Authorization")
	if len(v) == 0 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hal0"`)
		hfError(w, http.StatusUnauthorized, "", "Authentication required: this hal0 endpoint needs its read token (Authorization: Bearer <token>; HF_TOKEN for Hugging Face clients)")
		return false
	}
	scheme, tok, _ := strings.Cut(v[0], " ")
	if len(v) > 1 || !strings.EqualFold(scheme, "Bearer") ||
		subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(h.opts.Token.Reveal())) != 1 {
		// The Hub's exact message: huggingface_hub recognises it and says
		// the token is invalid rather than that the repo does not exist.
		hfError(w, http.StatusUnauthorized, "", "Invalid credentials in Authorization header")
		return false
	}
	return true
}

func (h *Handler) privileged(r *http.Request) bool {
	return h.opts.Privileged != nil && h.opts.Privileged(r)
}

// gatedRefused answers 403 GatedRepo for a file of a gated repo that this
// request may not have, and reports whether it did.
func (h *Handler) gatedRefused(w http.ResponseWriter, r *http.Request, repo string, s *snapshot) bool {
	if s.gated == "" || h.opts.ServeGated || h.privileged(r) {
		return false
	}
	hfError(w, http.StatusForbidden, codeGatedRepo, "Access to model "+repo+" is restricted: it is a gated model, whose license each user accepts on Hugging Face, and this hal0 box does not pass it on (its owner can allow it with api.hf_serve_gated = true)")
	return true
}

// lookup finds repo at rev: in the index, or with pull-through in
// upstream's listing merged with the index. It answers the request itself
// (an error, 503 while upstream is slow) when it returns ok=false.
func (h *Handler) lookup(ctx context.Context, w http.ResponseWriter, idx *index, repo, rev string) (*repoIndex, *snapshot, bool) {
	if h.opts.Upstream != nil {
		return h.lookupUpstream(ctx, w, idx, repo, rev)
	}
	ri := idx.repos[repo]
	if ri == nil {
		hfError(w, http.StatusNotFound, codeRepoNotFound, "Repository not found")
		return nil, nil, false
	}
	snap := ri.resolve(rev)
	if snap == nil {
		hfError(w, http.StatusNotFound, codeRevisionNotFound, "Invalid rev id: "+rev)
		return nil, nil, false
	}
	return ri, snap, true
}

// repoID joins two escaped segments into "org/name".
func repoID(segs []string) (string, bool) {
	var parts [2]string
	for i, s := range segs[:2] {
		u, err := unescape(s)
		if err != nil || u == "" || u == "." || u == ".." || strings.ContainsAny(u, "/\\") {
			return "", false
		}
		parts[i] = u
	}
	return parts[0] + "/" + parts[1], true
}
