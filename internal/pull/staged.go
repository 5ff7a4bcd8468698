package pull

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// StagedBytes returns how many bytes of partial data lie under a staging
// directory (config.Paths.StagingDir, or one model's directory below it),
// as a resume would count them: the live counters of every state file
// written under this boot. It reads while a worker may be writing, so a
// state file being created is skipped rather than reported as an error.
// Tests use it to watch a pull's progress from outside the process that
// runs it.
func StagedBytes(dir string) (int64, error) {
	boot := bootID()
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked (install, cleanup)
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".state") {
			return nil
		}
		total += stateFileBytes(p, boot)
		return nil
	})
	return total, err
}

// stateFileBytes sums the counters of one state file; 0 when it is
// unreadable, foreign or from another boot (then the durable copy is what
// a resume trusts).
func stateFileBytes(path, boot string) int64 {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < stateHdrSize || string(b[:len(stateMagic)]) != stateMagic {
		return 0
	}
	size := int64(binary.LittleEndian.Uint64(b[8:]))
	chunk := int64(binary.LittleEndian.Uint64(b[16:]))
	if chunk <= 0 || size < 0 {
		return 0
	}
	p := &partial{size: size, chunk: chunk, n: chunkCount(size, chunk)}
	if int64(len(b)) < stateHdrSize+16*int64(p.n) {
		return 0
	}
	live := strings.TrimRight(string(b[88:128]), "\x00") == boot
	var t int64
	for k := 0; k < p.n; k++ {
		off := p.durableOff(k)
		if live {
			off = p.liveOff(k)
		}
		v := int64(binary.LittleEndian.Uint64(b[off:]))
		if v < 0 || v > p.chunkLen(k) {
			return 0
		}
		t += v
	}
	return t
}
