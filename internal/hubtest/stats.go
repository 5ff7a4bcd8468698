package hubtest

import (
	"net/http"
	"time"
)

// Stats are counters over all requests since New or ResetStats.
type Stats struct {
	HubRequests int64 // requests to the hub (API, resolve, raw, errors)
	CDNRequests int64 // requests to the CDN
	FaultsFired int64
	// Bytes is the total of file content bytes sent (hub + CDN), the sum of
	// Files[*].Bytes. Bodies of JSON, errors and redirects are not counted.
	Bytes int64
	// Files is keyed by "<repo id>/<path>", e.g. "demo/tiny-GGUF/config.json".
	Files map[string]FileStat
}

// FileStat counts the traffic of one repo file over hub and CDN.
type FileStat struct {
	Requests int64 // resolve, raw and CDN requests that addressed the file (any method and outcome)
	Bytes    int64 // content bytes sent, including those of dropped or corrupted responses
}

// File returns the counters of one repo file.
func (s Stats) File(repoID, path string) FileStat { return s.Files[repoID+"/"+path] }

// Request is one logged request to the hub or the CDN.
type Request struct {
	Seq    int64
	Server string // "hub" or "cdn"
	Method string
	Host   string // Host header as sent: tells hub (127.0.0.1) from CDN (CDNHost) traffic
	URI    string // path and query as sent
	Repo   string // repo id when the request addressed a repo
	Path   string // repo file path when the request addressed a file
	Range  string // Range header
	// Auth says whether an Authorization header was sent, Authorization is
	// its raw value. On the CDN both must stay empty for a correct client.
	Auth          bool
	Authorization string
	Status        int
	Bytes         int64  // body bytes sent (all kinds)
	Fault         string // description of the injected fault, "" if none
	Done          bool   // the handler has returned
}

// Stats returns a snapshot of the counters.
func (h *Hub) Stats() Stats {
	h.smu.Lock()
	defer h.smu.Unlock()
	s := h.stats
	s.Files = make(map[string]FileStat, len(h.stats.Files))
	for k, v := range h.stats.Files {
		s.Files[k] = v
	}
	return s
}

// Requests returns a copy of the request log, oldest first. Entries of
// requests still running are included with their current status and bytes.
func (h *Hub) Requests() []Request {
	h.smu.Lock()
	defer h.smu.Unlock()
	out := make([]Request, len(h.log))
	for i, r := range h.log {
		out[i] = *r
	}
	return out
}

// ResetStats clears the counters and the request log.
func (h *Hub) ResetStats() {
	h.smu.Lock()
	defer h.smu.Unlock()
	h.stats = Stats{Files: map[string]FileStat{}}
	h.log = nil
}

// begin registers a request; false once the hub is closing.
func (h *Hub) begin(server string, r *http.Request) (*Request, bool) {
	h.smu.Lock()
	defer h.smu.Unlock()
	if h.closed {
		return nil, false
	}
	h.active++
	h.seq++
	auth := r.Header.Get("Authorization")
	req := &Request{
		Seq:           h.seq,
		Server:        server,
		Method:        r.Method,
		Host:          r.Host,
		URI:           r.RequestURI,
		Range:         r.Header.Get("Range"),
		Auth:          len(r.Header.Values("Authorization")) > 0,
		Authorization: auth,
	}
	if server == "hub" {
		h.stats.HubRequests++
	} else {
		h.stats.CDNRequests++
	}
	h.log = append(h.log, req)
	return req, true
}

func (h *Hub) finish(req *Request) {
	h.smu.Lock()
	defer h.smu.Unlock()
	req.Done = true
	if req.Status == 0 {
		// The handler wrote nothing: net/http answers 200 with an empty body.
		req.Status = http.StatusOK
	}
	h.active--
	if h.active == 0 {
		close(h.idle)
		h.idle = make(chan struct{})
	}
}

// setFile tags the request with the file it addresses and counts it.
func (h *Hub) setFile(req *Request, repo, path string) {
	h.smu.Lock()
	defer h.smu.Unlock()
	req.Repo, req.Path = repo, path
	if path != "" {
		k := repo + "/" + path
		fs := h.stats.Files[k]
		fs.Requests++
		h.stats.Files[k] = fs
	}
}

func (h *Hub) setRepo(req *Request, repo string) {
	h.smu.Lock()
	req.Repo = repo
	h.smu.Unlock()
}

func (h *Hub) setStatus(req *Request, status int) {
	h.smu.Lock()
	req.Status = status
	h.smu.Unlock()
}

func (h *Hub) now() time.Time { return h.opts.Now() }
