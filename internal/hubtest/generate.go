package hubtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/bits"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ChatTemplate is the (ChatML) chat template put in generated GGUF shard 1
// (tokenizer.chat_template) and in tokenizer_config.json.
const ChatTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// GGUF constants (ggml/gguf.h).
const (
	ggufVersion   = 3
	ggufAlignment = 32
	ggufTypeU16   = 2
	ggufTypeU32   = 4
	ggufTypeI32   = 5
	ggufTypeStr   = 8
	ggmlTypeI8    = 24
)

// GGUFShardName is the llama-gguf-split name "<prefix>-<QUANT>-%05d-of-%05d.gguf"
// of shard i (0-based), or "<prefix>-<QUANT>.gguf" for an unsplit model.
// An empty quant leaves the "-<QUANT>" part out.
func GGUFShardName(prefix, quant string, i, shards int) string {
	if quant != "" {
		prefix += "-" + quant
	}
	if shards <= 1 {
		return prefix + ".gguf"
	}
	return fmt.Sprintf("%s-%05d-of-%05d.gguf", prefix, i+1, shards)
}

// GenerateGGUFShards makes a split GGUF model as LFS files named by
// GGUFShardName; prefix may contain a folder ("Q4_K_M/model").
//
// Each shard is a valid GGUF v3 file: a KV header (general.architecture,
// general.name, general.alignment, split.no (u16, 0-based), split.count
// (u16), split.tensors.count (i32), and tokenizer.chat_template in shard 1),
// one I8 tensor spanning the rest of the file, and deterministic
// pseudo-random tensor data (ChaCha8 seeded from seed and the file name).
// Shards are exactly shardSize bytes unless that is smaller than the header.
// shards <= 1 gives one unsplit file without split.* keys.
//
// With dir == "" the content is in memory; otherwise files are written
// under dir (dir/<path>) and served from disk. A file already there from an
// earlier call with the same parameters is reused without rewriting it, so
// benchmarks regenerate GiB files only once. It panics on I/O errors.
func GenerateGGUFShards(dir, prefix, quant string, shards int, shardSize int64, seed uint64) []File {
	shards = max(shards, 1)
	files := make([]File, shards)
	for i := range shards {
		name := GGUFShardName(prefix, quant, i, shards)
		hdrLen := int64(len(ggufHeader(prefix, i, shards, 0)))
		dataLen := max(shardSize-hdrLen, 0)
		files[i] = materialize(dir, name, ggufHeader(prefix, i, shards, dataLen), dataLen, seed, true)
	}
	return files
}

// ggufHeader is everything before the tensor data, alignment padding included.
func ggufHeader(prefix string, i, shards int, dataLen int64) []byte {
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	str := func(s string) { le(uint64(len(s))); b.WriteString(s) }
	type kv struct {
		key string
		typ uint32
		val any
	}
	kvs := []kv{
		{"general.architecture", ggufTypeStr, "llama"},
		{"general.name", ggufTypeStr, path.Base(prefix)},
		{"general.alignment", ggufTypeU32, uint32(ggufAlignment)},
	}
	if shards > 1 {
		kvs = append(kvs,
			kv{"split.no", ggufTypeU16, uint16(i)},
			kv{"split.count", ggufTypeU16, uint16(shards)},
			kv{"split.tensors.count", ggufTypeI32, int32(shards)})
	}
	if i == 0 {
		kvs = append(kvs, kv{"tokenizer.chat_template", ggufTypeStr, ChatTemplate})
	}
	b.WriteString("GGUF")
	le(uint32(ggufVersion))
	le(uint64(1)) // tensor count of this shard
	le(uint64(len(kvs)))
	for _, e := range kvs {
		str(e.key)
		le(e.typ)
		if s, ok := e.val.(string); ok {
			str(s)
		} else {
			le(e.val)
		}
	}
	// Tensor info: name, n_dims, dims, type, offset within the data section.
	str(fmt.Sprintf("blk.%d.hubtest.weight", i))
	le(uint32(1))
	le(uint64(dataLen))
	le(uint32(ggmlTypeI8))
	le(uint64(0))
	for b.Len()%ggufAlignment != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

// GenerateSafetensorsShards makes a transformers-style repo: shards
// "model-0000i-of-0000N.safetensors" (LFS; u64-LE header length, JSON header
// padded with spaces to 8 bytes, then the tensor data, two U8 tensors per
// shard), "model.safetensors.index.json" whose weight_map names every tensor
// and whose metadata.total_size is the sum of tensor bytes, and the small
// regular files config.json, README.md and tokenizer_config.json (with
// ChatTemplate). shards <= 1 gives a single "model.safetensors" and no index.
// Shards are exactly shardSize bytes unless that is smaller than the header.
// dir and error handling are as for GenerateGGUFShards.
func GenerateSafetensorsShards(dir string, shards int, shardSize int64, seed uint64) []File {
	shards = max(shards, 1)
	var files []File
	weightMap := map[string]string{}
	var total int64
	for i := range shards {
		name := "model.safetensors"
		if shards > 1 {
			name = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, shards)
		}
		names := []string{
			fmt.Sprintf("model.layers.%d.mlp.down_proj.weight", i),
			fmt.Sprintf("model.layers.%d.self_attn.o_proj.weight", i),
		}
		// The header length depends on the data size (digits) and vice
		// versa: grow the padded header until the pair is consistent.
		var hdr []byte
		var dataLen int64
		for padded := int64(0); ; {
			dataLen = max(shardSize-8-padded, 0)
			js := safetensorsHeader(names, dataLen)
			need := (int64(len(js)) + 7) &^ 7
			if need <= padded {
				hdr = binary.LittleEndian.AppendUint64(nil, uint64(padded))
				hdr = append(hdr, js...)
				hdr = append(hdr, bytes.Repeat([]byte(" "), int(padded)-len(js))...)
				break
			}
			padded = need
		}
		for _, n := range names {
			weightMap[n] = name
		}
		total += dataLen
		files = append(files, materialize(dir, name, hdr, dataLen, seed, true))
	}
	small := func(name string, data []byte) {
		files = append(files, materialize(dir, name, data, 0, seed, false))
	}
	if shards > 1 {
		idx, _ := json.MarshalIndent(map[string]any{
			"metadata":   map[string]any{"total_size": total},
			"weight_map": weightMap,
		}, "", "  ")
		small("model.safetensors.index.json", append(idx, '\n'))
	}
	cfg, _ := json.MarshalIndent(map[string]any{
		"architectures":     []string{"LlamaForCausalLM"},
		"model_type":        "llama",
		"num_hidden_layers": shards,
		"torch_dtype":       "bfloat16",
	}, "", "  ")
	small("config.json", append(cfg, '\n'))
	small("README.md", []byte("---\nlicense: apache-2.0\nlibrary_name: transformers\npipeline_tag: text-generation\n---\n\n# hubtest model\n\nSynthetic weights for hal0 download tests.\n"))
	tok, _ := json.MarshalIndent(map[string]any{
		"bos_token":     "<|im_start|>",
		"eos_token":     "<|im_end|>",
		"chat_template": ChatTemplate,
	}, "", "  ")
	small("tokenizer_config.json", append(tok, '\n'))
	return files
}

func safetensorsHeader(names []string, dataLen int64) []byte {
	var b strings.Builder
	b.WriteString(`{"__metadata__":{"format":"pt"}`)
	var off int64
	for i, n := range names {
		size := dataLen / int64(len(names))
		if i == len(names)-1 {
			size = dataLen - off
		}
		fmt.Fprintf(&b, `,%q:{"dtype":"U8","shape":[%d],"data_offsets":[%d,%d]}`, n, size, off, off+size)
		off += size
	}
	b.WriteString("}")
	return []byte(b.String())
}

// materialize builds a File whose content is header followed by dataLen
// pseudo-random bytes, in memory or on disk.
func materialize(dir, name string, header []byte, dataLen int64, seed uint64, lfs bool) File {
	key := sha256.Sum256(fmt.Appendf(append([]byte(nil), header...), "hubtest/v1/%d/%s/%d", seed, name, dataLen))
	rng := &prng{s: binary.LittleEndian.Uint64(key[:8])}
	size := int64(len(header)) + dataLen

	if dir == "" {
		buf := make([]byte, size)
		off := 0
		sum, _ := generate(header, dataLen, rng, func(b []byte) error {
			off += copy(buf[off:], b)
			return nil
		})
		return File{Path: name, Data: buf, LFS: lfs, SHA256: sum}
	}

	dst := filepath.Join(dir, filepath.FromSlash(name))
	stamp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".hubtest")
	want := hex.EncodeToString(key[:]) // identifies the content
	if b, err := os.ReadFile(stamp); err == nil {
		if k, sum, ok := strings.Cut(strings.TrimSpace(string(b)), " "); ok && k == want {
			if st, err := os.Stat(dst); err == nil && st.Size() == size {
				return File{Path: name, DiskPath: dst, LFS: lfs, SHA256: sum}
			}
		}
	}
	sum, err := writeGenerated(dst, header, dataLen, rng)
	if err == nil {
		err = os.WriteFile(stamp, []byte(want+" "+sum+"\n"), 0o644)
	}
	if err != nil {
		panic("hubtest: generating " + dst + ": " + err.Error())
	}
	return File{Path: name, DiskPath: dst, LFS: lfs, SHA256: sum}
}

// writeGenerated writes header + dataLen random bytes to dst atomically
// (temp file + rename) and returns their sha256.
func writeGenerated(dst string, header []byte, dataLen int64, rng *prng) (string, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	sum, err := generate(header, dataLen, rng, func(b []byte) error {
		_, err := tmp.Write(b)
		return err
	})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	return sum, err
}

// generate passes header and then dataLen generated bytes to sink in
// chunks, and returns the sha256 of it all. Hashing (the bottleneck, about
// 1 GB/s with SHA-NI) runs in its own goroutine, overlapping generation and
// the sink.
func generate(header []byte, dataLen int64, rng *prng, sink func([]byte) error) (string, error) {
	h := sha256.New()
	h.Write(header)
	if err := sink(header); err != nil {
		return "", err
	}
	const chunk, nbuf = 4 << 20, 3
	toHash := make(chan []byte, nbuf)
	hashed := make(chan []byte, nbuf)
	go func() {
		for b := range toHash {
			h.Write(b)
			hashed <- b
		}
		close(hashed)
	}()
	var err error
	made := 0
	for left := dataLen; left > 0 && err == nil; {
		var b []byte
		if made < nbuf {
			b, made = make([]byte, chunk), made+1
		} else {
			b = <-hashed
		}
		b = b[:min(int64(chunk), left)]
		rng.fill(b)
		left -= int64(len(b))
		if err = sink(b); err == nil {
			toHash <- b
		}
	}
	close(toHash)
	for range hashed {
	}
	return hex.EncodeToString(h.Sum(nil)), err
}

// prng is a wyrand-style generator: 64-bit state advanced by a constant
// and mixed by a 128-bit multiply. It is not cryptographic, but it makes
// incompressible data at several GB/s (math/rand/v2's ChaCha8 reaches
// about 0.1 GB/s through Read here, PCG about 1.2 GB/s).
type prng struct{ s uint64 }

const (
	wyP0 = 0xa0761d6478bd642f
	wyP1 = 0xe7037ed1a0b428db
)

func (p *prng) next() uint64 {
	p.s += wyP0
	hi, lo := bits.Mul64(p.s, p.s^wyP1)
	return hi ^ lo
}

// fill fills b; the stream is the same however it is split into calls as
// long as every call but the last has a length divisible by 8.
func (p *prng) fill(b []byte) {
	for len(b) >= 32 {
		binary.LittleEndian.PutUint64(b, p.next())
		binary.LittleEndian.PutUint64(b[8:], p.next())
		binary.LittleEndian.PutUint64(b[16:], p.next())
		binary.LittleEndian.PutUint64(b[24:], p.next())
		b = b[32:]
	}
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, p.next())
		b = b[8:]
	}
	if len(b) > 0 {
		var t [8]byte
		binary.LittleEndian.PutUint64(t[:], p.next())
		copy(b, t[:])
	}
}
