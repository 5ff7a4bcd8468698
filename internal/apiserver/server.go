// Package apiserver is hal0-apid's HTTP API: models, pulls, slots, health. Every
// reply is JSON; every error is the api.Envelope with a stable code.
//
// Requests arrive on a unix socket (trusted through its file permissions)
// or on TCP for the dashboard. On TCP a foreign Host (DNS rebinding) or a
// cross-site Origin (CSRF) is refused, and anything that changes state
// needs the bearer token.
package apiserver

import (
	"context"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/dashboard"
	"github.com/hal0ai/hal0/internal/flm"
	"github.com/hal0ai/hal0/internal/jobs"
	"github.com/hal0ai/hal0/internal/registry"
	"github.com/hal0ai/hal0/internal/runner"
)

// Server holds what the handlers need.
type Server struct {
	Cfg      *config.Config
	Jobs     *jobs.Store
	Registry *registry.Store
	Runner   runner.Runner
	// Token guards mutating requests over TCP; unset means TCP is
	// read-only.
	Token config.Secret
	// HF is the Hugging Face–compatible endpoint (internal/hfserve) served
	// at /hf/; nil turns it off.
	HF http.Handler
	// FLM reads FastFlowLM's catalog; nil builds one from Cfg on first
	// use.
	FLM *flm.Prober
	// AllowedHosts are extra Host names accepted on TCP besides loopback.
	AllowedHosts []string
	Logf         func(format string, a ...any)
	Now          func() time.Time
	// Journal reads slot logs; nil runs journalctl (api.journal_dir).
	Journal LogReader
	// EventInterval is how often an event stream looks for changes.
	EventInterval time.Duration

	lastActive atomic.Int64 // unix nanos of the last request
	inflight   atomic.Int64

	flmOnce   sync.Once
	closeOnce sync.Once
	closing   chan struct{} // made by Handler, closed by CloseStreams
}

// CloseStreams ends open event streams, so that a shutdown does not wait
// for clients that would follow a pull for hours. Register it with
// http.Server.RegisterOnShutdown.
func (s *Server) CloseStreams() {
	s.closeOnce.Do(func() {
		if s.closing != nil {
			close(s.closing)
		}
	})
}

// ctxKey marks requests that came over the unix socket.
type ctxKey struct{}

// ConnContext tags connections from unix listeners as trusted; pass it as
// http.Server.ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if _, ok := c.LocalAddr().(*net.UnixAddr); ok {
		return context.WithValue(ctx, ctxKey{}, true)
	}
	return ctx
}

func viaUnix(r *http.Request) bool {
	v, _ := r.Context().Value(ctxKey{}).(bool)
	return v
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) logf(format string, a ...any) {
	if s.Logf != nil {
		s.Logf(format, a...)
	}
}

// MaxBody bounds request bodies.
const MaxBody = 64 << 10

// Handler returns the API with its guards and compression.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/health", s.health)
	mux.HandleFunc("GET /api/version", s.version)
	mux.HandleFunc("GET /api/models", s.listModels)
	mux.HandleFunc("GET /api/pulls", s.listPulls)
	mux.HandleFunc("/api/models/", s.modelRoutes)
	mux.HandleFunc("GET /api/flm/models", s.flmModels)
	s.registerSlots(mux)
	s.registerCatalog(mux)
	if s.HF != nil {
		mux.Handle("/hf/", s.HF)
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, api.Errorf(api.CodeNotFound, http.StatusNotFound, "no API route %s %s", r.Method, r.URL.Path))
	})
	// The dashboard: static assets embedded in the binary, same origin as
	// the API it calls.
	mux.Handle("/", dashboard.Handler())
	s.lastActive.Store(s.now().UnixNano())
	s.closing = make(chan struct{})
	return s.guard(compress(mux))
}

// IdleSince reports when the API last handled a request, and how many are
// in flight now (event streams count as in flight).
func (s *Server) IdleSince() (time.Time, int64) {
	return time.Unix(0, s.lastActive.Load()), s.inflight.Load()
}

func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer func() {
			s.inflight.Add(-1)
			s.lastActive.Store(s.now().UnixNano())
		}()
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Hal0-Version", versionString())
		if !viaUnix(r) {
			if !s.hostAllowed(r.Host) {
				writeErr(w, api.Errorf(api.CodeForbidden, http.StatusForbidden, "host %q is not allowed: use http://127.0.0.1 or add it to api.allowed_hosts", r.Host))
				return
			}
			if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r.Host) {
				writeErr(w, api.Errorf(api.CodeForbidden, http.StatusForbidden, "cross-site request from origin %q refused", o))
				return
			}
			if mutating(r.Method) && !hfRead(r) && !s.authorized(r) {
				if !s.Token.IsSet() {
					writeErr(w, api.Errorf(api.CodeUnauthorized, http.StatusUnauthorized, "changes over TCP need a bearer token, and none is configured: set HAL0_API_TOKEN in %s, or use the unix socket %s", s.Cfg.Paths.APIEnvFile(), s.Cfg.Paths.APISocket()))
				} else {
					writeErr(w, api.Errorf(api.CodeUnauthorized, http.StatusUnauthorized, "missing or wrong bearer token (Authorization: Bearer …)"))
				}
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		next.ServeHTTP(w, r)
	})
}

// hfRead is the HF endpoint's one POST (paths-info): it only reads, and
// the endpoint checks its own read token.
func hfRead(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/hf/api/models/") && strings.Contains(r.URL.Path, "/paths-info/")
}

func mutating(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

func (s *Server) authorized(r *http.Request) bool {
	if !s.Token.IsSet() {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.Token.Reveal())) == 1
}

// hostAllowed accepts loopback names and addresses (any port) and the
// configured names. Anything else is a DNS-rebinding attempt or a
// misconfiguration.
func (s *Server) hostAllowed(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if h == "localhost" {
		return true
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return true
	}
	for _, a := range s.AllowedHosts {
		if strings.EqualFold(a, h) {
			return true
		}
	}
	return false
}

func sameOrigin(origin, host string) bool {
	o := strings.TrimPrefix(strings.TrimPrefix(origin, "http://"), "https://")
	return strings.EqualFold(strings.TrimSuffix(o, "/"), host)
}
