package apid

import (
	"bytes"
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/hal0ai/hal0/internal/hubtest"
	"github.com/hal0ai/hal0/internal/ref"
)

// TestLivePullThrough: under systemd, a /hf/ request for a file the box
// lacks starts hal0-pull@<ref>.service through the same runner the API
// uses, and the file streams to the client while the unit downloads it in
// 1 MiB ranges: the client has the first bytes while the hub holds every
// range, and the whole, right file once it lets go.
func TestLivePullThrough(t *testing.T) {
	e := newLive(t, "30s")
	// hal0-apid reads its configuration when the socket first starts it,
	// which has not happened yet.
	writeFile(t, filepath.Join(e.home, "etc/hal0/hal0.toml"), "[api]\nidle_exit = \"30s\"\nhf_pull_through = true\n")
	f := e.addRepo("live/pt", 1)[0]
	hold, held := make(chan struct{}), make(chan struct{})
	const at = 512 << 10
	// Every range stops at 512 KiB into it: the written prefix from byte
	// 0 ends within the first 512 KiB until the hold ends.
	e.hub.AddFault(hubtest.Fault{Repo: "live/pt", Where: "cdn", StallAt: at, Hold: hold, Held: held})

	resp, err := http.Get("http://" + e.tcp + "/hf/live/pt/resolve/main/" + f.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != f.Size {
		t.Fatalf("%d, length %d", resp.StatusCode, resp.ContentLength)
	}
	first := make([]byte, at-writeSlack)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	<-held
	rf := ref.MustParse("live/pt@" + e.hub.Repo("live/pt").Commit + "/" + f.Path)
	st := e.unix.Status(rf.String())
	if st.State != "running" || st.Runner != "systemd" || st.Unit != rf.Unit() || st.UnitState != "active" {
		t.Fatalf("job while held: %+v", st)
	}
	if as := e.prop(t, rf.Unit(), "ActiveState"); as != "active" {
		t.Fatalf("%s is %s", rf.Unit(), as)
	}
	close(hold)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(append(first, rest...), f.Data) {
		t.Fatalf("streamed file: %d bytes, %v", len(first)+len(rest), err)
	}
	if st, _ := e.unix.WaitPull(rf.String(), "completed", pullLimit, completed); st.ErrorCode != "" {
		t.Fatalf("%+v", st)
	}
	if res := e.waitInactive(t, rf.Unit()); res != "success" {
		t.Fatalf("%s: result %s", rf.Unit(), res)
	}
	if n := e.hub.Stats().File("live/pt", f.Path).Bytes; n != f.Size {
		t.Errorf("hub sent %d bytes for %d", n, f.Size)
	}
}
