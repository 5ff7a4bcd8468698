package catalog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestGGUFChatTemplate(t *testing.T) {
	nested := func() []byte {
		// An array of arrays of u32 (allowed by the format) before the template.
		var b bytes.Buffer
		le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
		b.WriteString("GGUF")
		le(uint32(3))
		le(uint64(0))
		le(uint64(2))
		le(uint64(len("x.nested")))
		b.WriteString("x.nested")
		le(uint32(ggufArray))
		le(uint32(ggufArray))
		le(uint64(2))
		for range 2 {
			le(uint32(ggufU32))
			le(uint64(3))
			le([3]uint32{1, 2, 3})
		}
		le(uint64(len("tokenizer.chat_template")))
		b.WriteString("tokenizer.chat_template")
		le(uint32(ggufString))
		le(uint64(2))
		b.WriteString("{}")
		return b.Bytes()
	}()
	for _, tc := range []struct {
		name string
		data []byte
		want bool
		err  string
	}{
		{"after a vocabulary", ggufBytes([]kv{{"tokenizer.ggml.tokens", vocab(100 << 10)}, {"tokenizer.chat_template", chatTemplate}}, 200<<10), true, ""},
		{"named template", ggufBytes([]kv{{"tokenizer.chat_template.tool_use", chatTemplate}}, 1024), true, ""},
		{"empty template", ggufBytes([]kv{{"tokenizer.chat_template", "  "}}, 1024), false, ""},
		{"none", ggufBytes([]kv{{"general.architecture", "llama"}, {"general.alignment", uint32(32)}}, 1024), false, ""},
		{"nested arrays", nested, true, ""},
		{"not GGUF", []byte("PK\x03\x04 a zip file, not a model........"), false, "no GGUF magic"},
		{"truncated", ggufBytes([]kv{{"tokenizer.ggml.tokens", vocab(10 << 10)}, {"tokenizer.chat_template", chatTemplate}}, 16<<10)[:5000], false, "EOF"},
		{"version 1", append([]byte("GGUF\x01\x00\x00\x00"), make([]byte, 16)...), false, "version 1"},
		{"huge string", append(ggufBytes(nil, 64)[:24:24], []byte("\x01\x00\x00\x00\x00\x00\x00\x00k\x08\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\x7f")...), false, "exceeds"},
	} {
		data := tc.data
		if tc.name == "huge string" {
			binary.LittleEndian.PutUint64(data[16:24], 1) // one key
		}
		got, err := ggufChatTemplate(bytes.NewReader(data))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
		case got != tc.want:
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The parser stops at the template: it does not read what follows.
func TestGGUFStopsAtTemplate(t *testing.T) {
	data := ggufBytes([]kv{{"tokenizer.chat_template", chatTemplate}, {"tokenizer.ggml.tokens", vocab(1 << 20)}}, 2<<20)
	r := &countReader{r: bytes.NewReader(data)}
	ok, err := ggufChatTemplate(r)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if r.n > 128<<10 {
		t.Errorf("read %d bytes for a template in the first KB", r.n)
	}
	if _, err := ggufChatTemplate(bytes.NewReader(nil)); !errors.Is(err, io.EOF) {
		t.Errorf("empty input: %v", err)
	}
}

type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzGGUF feeds arbitrary bytes (what a hub or CDN could send) to the
// header reader: it must return, without panicking, and agree with itself.
func FuzzGGUF(f *testing.F) {
	f.Add(ggufBytes([]kv{{"tokenizer.chat_template", chatTemplate}}, 256))
	f.Add(ggufBytes([]kv{{"tokenizer.ggml.tokens", []string{"a", "b"}}, {"general.alignment", uint32(32)}}, 256))
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, errA := ggufChatTemplate(bytes.NewReader(data))
		b, errB := ggufChatTemplate(bytes.NewReader(data))
		if a != b || (errA == nil) != (errB == nil) {
			t.Fatalf("two reads disagree: %v/%v, %v/%v", a, b, errA, errB)
		}
		if a && errA != nil {
			t.Fatalf("found a template and an error: %v", errA)
		}
	})
}
