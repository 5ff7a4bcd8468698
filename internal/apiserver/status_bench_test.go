package apiserver

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkPullStatus is the CPU cost of one GET …/pull/status of a
// running pull, as the dashboard and `hal0 model pull` poll it (over the
// unix socket, gzip accepted as Go clients do). The runner is the test's
// stand-in for systemd, so D-Bus is not in the figure.
func BenchmarkPullStatus(b *testing.B) {
	for _, gz := range []bool{false, true} {
		name := "plain"
		if gz {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) {
			t := &testing.T{}
			a := newAPI(t)
			if code := a.do(t, "POST", model+"/pull", "", nil); code != http.StatusAccepted {
				b.Fatalf("POST pull: %d", code)
			}
			req, _ := http.NewRequest("GET", "http://hal0"+model+"/pull/status", nil)
			if gz {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := a.unix.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}
