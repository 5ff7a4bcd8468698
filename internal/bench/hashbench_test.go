package bench

import (
	"crypto/sha256"
	"testing"
)

// BenchmarkSHA256 hashes 1 MiB blocks, the buffer size the pull engine's
// hasher reads back from the page cache, so MB/s here is the most hal0's
// verification can sustain on one core.
func BenchmarkSHA256(b *testing.B) {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + i>>9)
	}
	h := sha256.New()
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for b.Loop() {
		h.Write(buf)
	}
	_ = h.Sum(nil)
}
