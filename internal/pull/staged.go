package pull

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hal0ai/hal0/internal/hf"
)

// Pinned is what a pull has fixed once it resolved its ref and opened its
// partial files, just before the first byte downloads: the commit, every
// selected file with the size and hash it must end up with, and the
// staging directory its partials live in. Request.OnPinned receives it;
// hal0-pull writes it into the job record so that hal0-apid can serve
// the files while they download (the /hf/ pull-through).
type Pinned struct {
	Repo     string
	Revision string // as asked for (main, a tag, a commit)
	Commit   string
	Endpoint string
	// Gated is the hub's "gated" field of the repo ("", "auto", "manual").
	Gated string
	// Stage holds files/<path> (the data) and state/<path>.state (the
	// written counters) of every file; see OpenStaged.
	Stage string
	Files []PinnedFile
}

// PinnedFile is one selected file. LFS files have SHA256 (the content
// hash the hub lists); the others have GitOID (the git blob hash).
type PinnedFile struct {
	Path   string
	Size   int64
	LFS    bool
	SHA256 string
	GitOID string
}

func pinnedFiles(ents []hf.Entry) []PinnedFile {
	out := make([]PinnedFile, 0, len(ents))
	for _, e := range ents {
		f := PinnedFile{Path: e.Path, Size: e.Size}
		if e.LFS != nil {
			f.LFS, f.SHA256, f.Size = true, e.SHA256(), e.LFS.Size
		} else {
			f.GitOID = e.OID
		}
		out = append(out, f)
	}
	return out
}

// Staged reads one partial file of a pull that runs in another process:
// the data written so far, and how much of it, from byte 0, the worker has
// written. It only reads; the worker owns the files.
//
// What it reports is "written", not "verified": the worker verifies a file
// once its last byte is in, and may discard the data when the hash does
// not match (the written prefix then shrinks to 0). A reader that passes
// bytes on before that must check them itself (hfserve hashes what it
// sends and compares).
type Staged struct {
	data, state *os.File
	size, chunk int64
	n           int
	buf         []byte
}

// ErrStagedGone means the partial is not (or no longer) in the stage: the
// pull has not opened it yet, or it was installed and the stage removed.
var ErrStagedGone = errors.New("partial file not in the stage")

// OpenStaged opens the partial of file f in stage (Pinned.Stage). The
// state file must describe f (same size and content hash): a stage left
// by another version of the file is refused.
func OpenStaged(stage string, f PinnedFile) (*Staged, error) {
	root, err := os.OpenRoot(stage)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrStagedGone
		}
		return nil, err
	}
	defer root.Close()
	// os.Root keeps a path from the job record (which the worker checked
	// already) from leaving the stage.
	rel := filepath.FromSlash(f.Path)
	// The state file first: the worker creates both before it publishes
	// Pinned, and removes both when it installs, data first.
	st, err := root.Open(filepath.Join("state", rel+".state"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrStagedGone
		}
		return nil, err
	}
	data, err := root.Open(filepath.Join("files", rel))
	if err != nil {
		st.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrStagedGone
		}
		return nil, err
	}
	s := &Staged{data: data, state: st, size: f.Size}
	hdr := make([]byte, stateHdrSize)
	if _, err := st.ReadAt(hdr, 0); err != nil {
		s.Close()
		return nil, fmt.Errorf("read %s state header: %w", f.Path, err)
	}
	id := f.SHA256
	if id == "" {
		id = f.GitOID
	}
	want := header(f.Size, 0, id, "")
	s.chunk = int64(binary.LittleEndian.Uint64(hdr[16:]))
	if !bytes.Equal(hdr[:16], want[:16]) || !bytes.Equal(hdr[24:88], want[24:88]) || s.chunk <= 0 {
		s.Close()
		return nil, fmt.Errorf("the staged state of %s describes another file version", f.Path)
	}
	s.n = chunkCount(f.Size, s.chunk)
	s.buf = make([]byte, 8*s.n)
	return s, nil
}

// Size is the file's final size.
func (s *Staged) Size() int64 { return s.size }

// Written returns how many bytes from 0 the worker has written, from the
// counters it updates after every write. The data below it can be read.
func (s *Staged) Written() (int64, error) {
	if s.n == 0 {
		return 0, nil
	}
	if _, err := s.state.ReadAt(s.buf, stateHdrSize); err != nil {
		return 0, err
	}
	var end int64
	for k := 0; k < s.n; k++ {
		w := int64(binary.LittleEndian.Uint64(s.buf[8*k:]))
		full := min(s.chunk, s.size-int64(k)*s.chunk)
		if w < 0 || w > full {
			return 0, fmt.Errorf("staged state counter %d out of range", k)
		}
		end = int64(k)*s.chunk + w
		if w < full {
			break
		}
	}
	return end, nil
}

// ReadAt reads data; a short read (the worker truncated the file to
// start it again) is io.ErrUnexpectedEOF.
func (s *Staged) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.data.ReadAt(p, off)
	if n < len(p) && (err == nil || errors.Is(err, io.EOF)) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close closes both files.
func (s *Staged) Close() error {
	s.data.Close()
	return s.state.Close()
}

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
