package pull

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPartialSurvivesKillAndReboot checks which counters a reopened
// partial trusts. After a killed process (same boot) the live counters
// hold, since the kernel kept both the data and them; after a reboot only
// the durable copy written after fdatasync does. The reboot is simulated
// by rewriting the boot id in the state file: tests cannot reboot.
func TestPartialSurvivesKillAndReboot(t *testing.T) {
	dir := t.TempDir()
	data, state := filepath.Join(dir, "f"), filepath.Join(dir, "f.state")
	const size, chunk = 10 << 10, 4 << 10 // three chunks: 4K, 4K, 2K
	p, err := openPartial(data, state, size, chunk, "id", true)
	if err != nil {
		t.Fatal(err)
	}
	write := func(k int, n int64) {
		buf := make([]byte, n)
		if _, err := p.data.WriteAt(buf, p.chunkStart(k)+p.written[k].Load()); err != nil {
			t.Fatal(err)
		}
		if err := p.advance(k, n); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 4<<10) // chunk 0 complete
	write(1, 1000)
	if err := p.checkpoint(); err != nil { // durable: 4096, 1000, 0
		t.Fatal(err)
	}
	write(1, 500) // live only: 4096, 1500, 0
	write(2, 700) // live only: 4096, 1500, 700
	p.close()

	// Killed process, same boot: everything written so far counts.
	p, err = openPartial(data, state, size, chunk, "id", true)
	if err != nil {
		t.Fatal(err)
	}
	if got := []int64{p.written[0].Load(), p.written[1].Load(), p.written[2].Load()}; got[0] != 4096 || got[1] != 1500 || got[2] != 700 {
		t.Fatalf("after kill: %v", got)
	}
	if p.resumed != 4096+1500+700 || p.contiguous(0) != 4096+1500 {
		t.Fatalf("resumed %d, contiguous %d", p.resumed, p.contiguous(0))
	}
	// Reopening rewrote both copies with this boot's view; make the
	// durable copy older again, then pretend the machine rebooted.
	write(2, 100)
	p.checkpoint()
	write(2, 50)
	p.close()
	b, _ := os.ReadFile(state)
	copy(b[88:128], "00000000-0000-0000-0000-000000000000\x00\x00\x00\x00")
	os.WriteFile(state, b, 0o644)
	p, err = openPartial(data, state, size, chunk, "id", true)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.written[2].Load(); got != 800 {
		t.Fatalf("after reboot chunk 2 = %d, want the durable 800 (not the live 850)", got)
	}
	p.close()

	// A partial of other content (another hash) is discarded, not reused.
	p, err = openPartial(data, state, size, chunk, "other-id", true)
	if err != nil {
		t.Fatal(err)
	}
	if p.resumed != 0 {
		t.Fatalf("reused a partial of other content: %d bytes", p.resumed)
	}
	p.close()
}
