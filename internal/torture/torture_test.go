package torture

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteCounter: renames onto the name and in-place writes count, other
// names do not, and Close returns every write finished before it.
func TestWriteCounter(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "registry.toml")
	w, err := CountWrites(target)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, target); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(target, []byte("in place"), 0o644)
	os.WriteFile(filepath.Join(dir, "other.toml"), []byte("y"), 0o644)
	if n := w.Close(); n != 4 {
		t.Fatalf("counted %d writes, want 4", n)
	}
}

func TestSampleProcAndGrowth(t *testing.T) {
	s, err := SampleProc(os.Getpid())
	if err != nil || s.RSSKiB <= 0 || s.FDs < 3 {
		t.Fatalf("sample of this process: %+v, %v", s, err)
	}
	if _, err := SampleProc(1 << 30); err == nil {
		t.Fatal("sample of a pid that cannot exist succeeded")
	}
	g := Growth{RSSSlackKiB: 1024, RSSSlackPct: 10, FDSlack: 2}
	flat := []ProcSample{{10000, 10}, {10300, 11}, {9900, 10}, {10100, 12}, {10200, 10}, {10000, 11}, {10400, 10}, {10100, 10}}
	if v := g.Check(flat); !v.RSSOK || !v.FDOK {
		t.Errorf("flat series judged growing: %+v", v)
	}
	var leak []ProcSample
	for i := 0; i < 20; i++ {
		leak = append(leak, ProcSample{RSSKiB: 10000 + int64(i)*500, FDs: 10 + i})
	}
	if v := g.Check(leak); v.RSSOK || v.FDOK {
		t.Errorf("leaking series judged flat: %+v", v)
	}
}

func TestTableAndStats(t *testing.T) {
	tb := Table{Title: "t", Header: []string{"a", "bb"}}
	tb.Add("xxx", 1)
	tb.Note("n=%d", 1)
	want := "t\na    bb\n---  --\nxxx  1\nn=1\n"
	if got := tb.String(); got != want {
		t.Errorf("table:\n%q\nwant\n%q", got, want)
	}
	s := Summarize([]float64{4, 1, 3, 2})
	if s.N != 4 || s.Min != 1 || s.Max != 4 || s.Median != 2.5 || s.Mean != 2.5 {
		t.Errorf("stats %+v", s)
	}
	if !strings.HasPrefix(MiB(3<<20), "3.00") {
		t.Errorf("MiB %s", MiB(3<<20))
	}
}
