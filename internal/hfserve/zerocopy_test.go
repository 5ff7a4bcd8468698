package hfserve

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"
)

// spyConn is a TCP connection that records what net/http hands to its
// ReadFrom before passing it on to *net.TCPConn.ReadFrom, which is where
// the kernel's sendfile(2) is used for an *os.File (bare or behind an
// io.LimitedReader). If hfserve ever wrapped the file or the
// ResponseWriter, the bytes would arrive through Write instead.
type spyConn struct {
	*net.TCPConn
	mu       *sync.Mutex
	fromFile *int64 // bytes that went to ReadFrom from an *os.File
	written  *int64 // bytes that went through Write (headers, JSON, small copies)
}

func (c spyConn) ReadFrom(r io.Reader) (int64, error) {
	isFile := false
	switch src := r.(type) {
	case *os.File:
		isFile = true
	case *io.LimitedReader:
		_, isFile = src.R.(*os.File)
	}
	n, err := c.TCPConn.ReadFrom(r)
	c.mu.Lock()
	if isFile {
		*c.fromFile += n
	} else {
		*c.written += n
	}
	c.mu.Unlock()
	return n, err
}

func (c spyConn) Write(b []byte) (int, error) {
	n, err := c.TCPConn.Write(b)
	c.mu.Lock()
	*c.written += int64(n)
	c.mu.Unlock()
	return n, err
}

type spyListener struct {
	net.Listener
	mu                sync.Mutex
	fromFile, written int64
}

func (l *spyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return spyConn{TCPConn: c.(*net.TCPConn), mu: &l.mu, fromFile: &l.fromFile, written: &l.written}, nil
}

func (l *spyListener) take() (fromFile, written int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fromFile, written = l.fromFile, l.written
	l.fromFile, l.written = 0, 0
	return
}

func TestFileBytesGoThroughSendfilePath(t *testing.T) {
	s := newStore(t)
	big := data("big", 3<<20+17)
	s.add(tmodel{id: "org/zc", repo: "org/zc", commit: c1, installed: day(1), files: []tfile{{"big.gguf", big, true}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	spy := &spyListener{Listener: ln}
	mux := http.NewServeMux()
	mux.Handle("/hf/", New(Options{Registry: s.reg}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(spy)
	t.Cleanup(func() { hs.Close() })
	u := fmt.Sprintf("http://%s/hf/org/zc/resolve/main/big.gguf", ln.Addr())

	// net/http writes the first 512 bytes itself (it must not send
	// headers before the body source has proven readable); the rest goes
	// to ReadFrom.
	const sniff = 512
	for _, tc := range []struct {
		rng  string
		want int64
	}{
		{"", int64(len(big))},
		{"bytes=1000-2999999", 2999000},
		{"bytes=-1048576", 1 << 20},
	} {
		resp, body := do(t, "GET", u, map[string]string{"Range": tc.rng}, "")
		if int64(len(body)) != tc.want {
			t.Fatalf("%q: %d %d bytes", tc.rng, resp.StatusCode, len(body))
		}
		// The client can have the last byte before the server's ReadFrom
		// returns and is counted: wait for the count, bounded.
		var fromFile, written int64
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			f, w := spy.take()
			fromFile, written = fromFile+f, written+w
			if fromFile >= tc.want-sniff || time.Now().After(deadline) {
				break
			}
		}
		if fromFile != tc.want-sniff || written > sniff+2048 {
			t.Errorf("range %q: %d bytes from the file through ReadFrom, %d written by hand; want %d and only headers plus %d",
				tc.rng, fromFile, written, tc.want-sniff, sniff)
		}
	}
}
