package hubtest

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestReleaseStalls: a response stalled without end resumes when the test
// releases it, and delivers the whole, intact body.
func TestReleaseStalls(t *testing.T) {
	h, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	h.AddRepo(Repo{ID: "org/r", Files: []File{{Path: "f.bin", Data: data}}})
	h.AddFault(Fault{Path: "f.bin", StallAt: 1000})

	type result struct {
		body []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(h.ResolveURL("org/r", "main", "f.bin"))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{b, err}
	}()
	// Wait until the response is stalled: its first 1000 bytes are counted.
	deadline := time.Now().Add(10 * time.Second)
	for h.Stats().File("org/r", "f.bin").Bytes < 1000 {
		if time.Now().After(deadline) {
			t.Fatal("the response never reached the stall")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case r := <-done:
		t.Fatalf("the stalled response ended by itself: %d bytes, %v", len(r.body), r.err)
	default:
	}
	h.ClearFaults()
	h.ReleaseStalls()
	select {
	case r := <-done:
		if r.err != nil || !bytes.Equal(r.body, data) {
			t.Fatalf("after the release: %d bytes, %v", len(r.body), r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReleaseStalls did not end the stall")
	}
}

// TestThrottle: a throttled response is intact and cannot arrive faster
// than its rate allows (a lower bound, which no machine can beat).
func TestThrottle(t *testing.T) {
	h, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	data := bytes.Repeat([]byte("throttled-bytes!"), 25600) // 400 KiB
	h.AddRepo(Repo{ID: "org/r", Files: []File{{Path: "f.bin", Data: data}}})
	const rate = 4 << 20
	h.AddFault(Fault{Path: "f.bin", Throttle: rate})
	start := time.Now()
	resp, err := http.Get(h.ResolveURL("org/r", "main", "f.bin"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("throttled body: %d bytes, %v", len(b), err)
	}
	// The last piece is due at (size - piece) / rate.
	if min := time.Duration(float64(len(data)-rate/100) / rate * float64(time.Second)); elapsed < min {
		t.Fatalf("%d bytes at %d B/s arrived in %v, faster than %v", len(data), rate, elapsed, min)
	}
}
