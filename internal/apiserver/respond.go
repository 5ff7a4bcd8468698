package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/version"
)

func versionString() string { return version.Version }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// writeErr answers with the error envelope. Errors that are not *api.Error
// are internal: their text is logged by the caller and not shown, so file
// paths and other details of a failure do not leak to clients.
func writeErr(w http.ResponseWriter, err error) {
	var ae *api.Error
	if !errors.As(err, &ae) {
		ae = &api.Error{Code: api.CodeInternal, Message: "internal error: " + err.Error(), Status: http.StatusInternalServerError}
	}
	writeJSON(w, api.StatusOf(ae), api.Envelope{Error: ae})
}

// decodeBody reads an optional JSON body into v, refusing unknown fields
// and bodies over MaxBody.
func decodeBody(r *http.Request, v any) error {
	if r.Body == nil {
		return nil
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		return nil // no body
	case errors.As(err, &mbe):
		return api.Errorf(api.CodeTooLarge, http.StatusRequestEntityTooLarge, "request body larger than %d bytes", MaxBody)
	case err != nil:
		return api.Errorf(api.CodeBadRequest, http.StatusBadRequest, "bad JSON body: %v", err)
	}
	if dec.More() {
		return api.Errorf(api.CodeBadRequest, http.StatusBadRequest, "bad JSON body: more than one value")
	}
	return nil
}

// compress encodes responses with zstd or gzip when the client accepts it.
// Event streams (…/events, followed logs) and model files are left alone.
func compress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Model files go out with sendfile and exact byte ranges: a
		// compressing writer would break both.
		if strings.HasSuffix(r.URL.Path, "/events") || strings.HasPrefix(r.URL.Path, "/hf/") || r.URL.Query().Get("follow") != "" {
			next.ServeHTTP(w, r)
			return
		}
		enc := pickEncoding(r.Header.Get("Accept-Encoding"))
		if enc == "" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Accept-Encoding")
		cw := &compressWriter{ResponseWriter: w, enc: enc}
		defer cw.close()
		next.ServeHTTP(cw, r)
	})
}

func pickEncoding(accept string) string {
	var gz bool
	for _, part := range strings.Split(accept, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.Contains(strings.ReplaceAll(params, " ", ""), "q=0") && !strings.Contains(params, "q=0.") {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "zstd":
			return "zstd"
		case "gzip":
			gz = true
		}
	}
	if gz {
		return "gzip"
	}
	return ""
}

// Encoders are pooled: a fresh gzip writer costs ~800 KB and most of a
// millisecond of CPU, more than the status reply it would compress. With
// pools, compression is cheap enough for thousands of polls a second.
var (
	gzPool = sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
		return w
	}}
	zsPool = sync.Pool{New: func() any {
		w, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(fmt.Sprintf("zstd writer: %v", err))
		}
		return w
	}}
)

// minCompress is the smallest body worth compressing: below about a
// kilobyte (a pull status is ~500 bytes) the encoder costs more CPU than
// the bytes it saves on loopback or a LAN, and status polls are the API's
// hottest path.
const minCompress = 1024

// compressWriter holds the start of a body until it knows whether the
// body reaches minCompress, then compresses it or sends it as it is.
type compressWriter struct {
	http.ResponseWriter
	enc     string
	status  int    // 0 until the handler set it
	through bool   // headers sent without compression
	buf     []byte // the body so far, while undecided
	w       io.WriteCloser
	put     func()
}

func (c *compressWriter) WriteHeader(status int) {
	if c.status != 0 {
		return
	}
	c.status = status
	if status == http.StatusNoContent || status == http.StatusNotModified || status < 200 {
		c.through = true
		c.ResponseWriter.WriteHeader(status)
	}
}

func (c *compressWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	switch {
	case c.through:
		return c.ResponseWriter.Write(b)
	case c.w != nil:
		return c.w.Write(b)
	}
	c.buf = append(c.buf, b...)
	if len(c.buf) < minCompress {
		return len(b), nil
	}
	c.Header().Set("Content-Encoding", c.enc)
	c.Header().Del("Content-Length")
	switch c.enc {
	case "zstd":
		zw := zsPool.Get().(*zstd.Encoder)
		zw.Reset(c.ResponseWriter)
		c.w, c.put = zw, func() { zsPool.Put(zw) }
	default:
		gw := gzPool.Get().(*gzip.Writer)
		gw.Reset(c.ResponseWriter)
		c.w, c.put = gw, func() { gzPool.Put(gw) }
	}
	c.ResponseWriter.WriteHeader(c.status)
	buf := c.buf
	c.buf = nil
	if _, err := c.w.Write(buf); err != nil {
		return 0, err
	}
	return len(b), nil
}

// close ends the body: the encoder's trailer, or the small body as it is.
func (c *compressWriter) close() {
	switch {
	case c.w != nil:
		c.w.Close()
		c.put()
		c.w = nil
	case !c.through:
		if c.status == 0 {
			c.status = http.StatusOK
		}
		c.through = true
		c.ResponseWriter.WriteHeader(c.status)
		c.ResponseWriter.Write(c.buf)
		c.buf = nil
	}
}
