package catalog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// GGUF metadata value types (ggml/gguf.h).
const (
	ggufU8 = iota
	ggufI8
	ggufU16
	ggufI16
	ggufU32
	ggufI32
	ggufF32
	ggufBool
	ggufString
	ggufArray
	ggufU64
	ggufI64
	ggufF64
)

// Bounds on what a GGUF header may declare. Real headers stay far below
// them; a file that does not is not read further.
const (
	maxGGUFKeys   = 1 << 20
	maxGGUFKey    = 64 << 10
	maxGGUFString = 64 << 20
	maxGGUFArray  = 1 << 28
	maxGGUFDepth  = 4
)

// errNotGGUF is returned for a file without the GGUF magic.
var errNotGGUF = errors.New("not a GGUF file (no GGUF magic)")

// ggufChatTemplate reads a GGUF file's key/value metadata from r, which
// starts at byte 0 of the file, and reports whether it holds a non-empty
// tokenizer.chat_template (or a named tokenizer.chat_template.<name>). It
// stops at the template or at the end of the metadata, so it never reads
// tensor data: r only has to deliver the header.
func ggufChatTemplate(r io.Reader) (bool, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var hdr struct {
		Magic   [4]byte
		Version uint32
		Tensors uint64
		KVs     uint64
	}
	if err := binary.Read(br, binary.LittleEndian, &hdr); err != nil {
		return false, fmt.Errorf("GGUF header: %w", err)
	}
	if string(hdr.Magic[:]) != "GGUF" {
		return false, errNotGGUF
	}
	if hdr.Version < 2 || hdr.Version > 3 {
		return false, fmt.Errorf("GGUF version %d is not supported (2 and 3 are)", hdr.Version)
	}
	if hdr.KVs > maxGGUFKeys {
		return false, fmt.Errorf("GGUF header declares %d metadata keys", hdr.KVs)
	}
	p := &ggufReader{r: br}
	for i := uint64(0); i < hdr.KVs; i++ {
		key, err := p.str(maxGGUFKey)
		if err != nil {
			return false, fmt.Errorf("GGUF key %d: %w", i, err)
		}
		typ, err := p.u32()
		if err != nil {
			return false, err
		}
		if typ == ggufString && (key == "tokenizer.chat_template" || strings.HasPrefix(key, "tokenizer.chat_template.")) {
			v, err := p.str(maxGGUFString)
			if err != nil {
				return false, fmt.Errorf("GGUF %s: %w", key, err)
			}
			if strings.TrimSpace(v) != "" {
				return true, nil
			}
			continue
		}
		if err := p.skip(typ, 0); err != nil {
			return false, fmt.Errorf("GGUF %s: %w", key, err)
		}
	}
	return false, nil
}

type ggufReader struct {
	r *bufio.Reader
}

func (p *ggufReader) u32() (uint32, error) {
	var v uint32
	err := binary.Read(p.r, binary.LittleEndian, &v)
	return v, err
}

func (p *ggufReader) u64() (uint64, error) {
	var v uint64
	err := binary.Read(p.r, binary.LittleEndian, &v)
	return v, err
}

func (p *ggufReader) str(limit uint64) (string, error) {
	n, err := p.u64()
	if err != nil {
		return "", err
	}
	if n > limit {
		return "", fmt.Errorf("string of %d bytes exceeds %d", n, limit)
	}
	// Read what arrives instead of allocating what the header declares.
	b, err := io.ReadAll(io.LimitReader(p.r, int64(n)))
	if err != nil {
		return "", err
	}
	if uint64(len(b)) != n {
		return "", io.ErrUnexpectedEOF
	}
	return string(b), nil
}

// skip reads past one value of type typ.
func (p *ggufReader) skip(typ uint32, depth int) error {
	if size := scalarSize(typ); size > 0 {
		_, err := p.r.Discard(size)
		return err
	}
	switch typ {
	case ggufString:
		n, err := p.u64()
		if err != nil {
			return err
		}
		if n > maxGGUFString {
			return fmt.Errorf("string of %d bytes exceeds %d", n, maxGGUFString)
		}
		_, err = p.r.Discard(int(n))
		return err
	case ggufArray:
		if depth >= maxGGUFDepth {
			return fmt.Errorf("arrays nested deeper than %d", maxGGUFDepth)
		}
		et, err := p.u32()
		if err != nil {
			return err
		}
		n, err := p.u64()
		if err != nil {
			return err
		}
		if n > maxGGUFArray {
			return fmt.Errorf("array of %d elements exceeds %d", n, maxGGUFArray)
		}
		if size := scalarSize(et); size > 0 {
			total := n * uint64(size)
			for total > 0 {
				k := min(total, 1<<30)
				if _, err := p.r.Discard(int(k)); err != nil {
					return err
				}
				total -= k
			}
			return nil
		}
		for range n {
			if err := p.skip(et, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown value type %d", typ)
}

func scalarSize(typ uint32) int {
	switch typ {
	case ggufU8, ggufI8, ggufBool:
		return 1
	case ggufU16, ggufI16:
		return 2
	case ggufU32, ggufI32, ggufF32:
		return 4
	case ggufU64, ggufI64, ggufF64:
		return 8
	}
	return 0
}
