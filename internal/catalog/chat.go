package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/hf"
	"github.com/hal0ai/hal0/internal/pull"
)

// Limits of what chat-template detection downloads.
const (
	maxTokenizerConfig = 16 << 20
	// ggufFirstRange is the first byte range asked for a GGUF header; each
	// further range doubles, up to ggufMaxRange, until the metadata ends.
	ggufFirstRange = 1 << 20
	ggufMaxRange   = 16 << 20
	// maxGGUFHeader bounds the metadata read: vocabularies of 256k tokens
	// with their merges stay well below it.
	maxGGUFHeader = 128 << 20
)

// chatTemplate looks for a chat template in the repository at commit and
// returns where it found one ("" for nowhere): chat_template.jinja (seen in
// the listing), the chat_template of tokenizer_config.json (a small
// download), or tokenizer.chat_template in the default GGUF's header (read
// with Range requests that stop where the metadata ends, never the whole
// file).
func (ix *Indexer) chatTemplate(ctx context.Context, repo, commit string, tree []hf.Entry, sel *pull.Selection) (string, error) {
	dir := ""
	if sel != nil && sel.Main != "" {
		dir = path.Dir(sel.Main)
	}
	// Prefer the repository root, then the selected model's folder.
	pick := func(name string) *hf.Entry {
		var best *hf.Entry
		for i := range tree {
			e := &tree[i]
			if path.Base(e.Path) != name || e.Size == 0 {
				continue
			}
			if e.Path == name {
				return e
			}
			if path.Dir(e.Path) == dir && best == nil {
				best = e
			}
		}
		return best
	}
	if e := pick("chat_template.jinja"); e != nil {
		return e.Path, nil
	}
	if e := pick("tokenizer_config.json"); e != nil {
		ok, err := ix.tokenizerTemplate(ctx, repo, commit, e)
		if err != nil || ok {
			return ifTrue(ok, e.Path), err
		}
	}
	if sel != nil && strings.HasSuffix(strings.ToLower(sel.Main), ".gguf") {
		var main hf.Entry
		for _, f := range sel.Files {
			if f.Path == sel.Main {
				main = f
			}
		}
		rr := &rangeReader{ctx: ctx, ix: ix, repo: repo, resolve: ix.Client.ResolveURL(repo, commit, main.Path), size: main.Size}
		rr.url = rr.resolve
		defer rr.close()
		ok, err := ggufChatTemplate(rr)
		if err != nil {
			var ae *api.Error
			if errors.As(err, &ae) || errors.Is(err, context.Canceled) {
				return "", err
			}
			return "", api.Errorf(api.CodeBadResponse, 0, "read the GGUF header of %s/%s: %v", repo, main.Path, err)
		}
		return ifTrue(ok, main.Path), nil
	}
	return "", nil
}

func ifTrue(ok bool, s string) string {
	if ok {
		return s
	}
	return ""
}

// tokenizerTemplate downloads tokenizer_config.json and reports whether its
// chat_template holds a template.
func (ix *Indexer) tokenizerTemplate(ctx context.Context, repo, commit string, e *hf.Entry) (bool, error) {
	if e.Size > maxTokenizerConfig {
		return false, nil
	}
	u := ix.Client.ResolveURL(repo, commit, e.Path)
	data, err := retry(ctx, ix, "read "+repo+"/"+e.Path, func() ([]byte, error) {
		b, err := ix.Client.Open(ctx, u, repo, hf.Range{Start: 0, End: -1})
		if err != nil {
			return nil, err
		}
		defer b.Resp.Body.Close()
		return io.ReadAll(io.LimitReader(b.Resp.Body, maxTokenizerConfig))
	})
	if err != nil {
		return false, err
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		// A broken tokenizer config has no usable template.
		ix.logf("%s/%s is not valid JSON: %v", repo, e.Path, err)
		return false, nil
	}
	return hf.NonEmptyTemplate(cfg["chat_template"]), nil
}

// rangeReader reads a file from byte 0 through successive Range requests,
// each twice the size of the one before, so a reader that stops early
// (the GGUF metadata ends) has downloaded little more than it used. The
// CDN URL of the first answer is reused, and given up for the resolve URL
// when it expires.
type rangeReader struct {
	ctx     context.Context
	ix      *Indexer
	repo    string
	resolve string
	url     string
	size    int64
	off     int64
	chunk   int64
	body    io.ReadCloser
	// whole is set when the server ignored Range and sent everything: the
	// reader then reads on from that one answer.
	whole bool
}

func (r *rangeReader) Read(p []byte) (int, error) {
	for {
		if r.body != nil {
			n, err := r.body.Read(p)
			r.off += int64(n)
			if n > 0 {
				return n, nil
			}
			if err == nil {
				continue
			}
			if !errors.Is(err, io.EOF) || r.whole {
				return 0, err
			}
			r.body.Close()
			r.body = nil
		}
		if r.off >= r.size {
			return 0, io.EOF
		}
		if r.off >= maxGGUFHeader {
			return 0, fmt.Errorf("metadata larger than %d MiB", maxGGUFHeader>>20)
		}
		if r.chunk == 0 {
			r.chunk = ggufFirstRange
		}
		end := min(r.off+r.chunk, r.size, maxGGUFHeader) - 1
		r.chunk = min(r.chunk*2, ggufMaxRange)
		b, err := retry(r.ctx, r.ix, "read "+r.repo+" GGUF header", func() (*hf.Body, error) {
			b, err := r.ix.Client.Open(r.ctx, r.url, r.repo, hf.Range{Start: r.off, End: end})
			if errors.Is(err, hf.ErrURLExpired) {
				r.url = r.resolve
			}
			return b, err
		})
		if err != nil {
			return 0, err
		}
		r.url = b.URL
		r.body = b.Resp.Body
		if b.Full {
			r.whole = true
			if _, err := io.CopyN(io.Discard, r.body, r.off); err != nil {
				return 0, err
			}
		}
	}
}

func (r *rangeReader) close() {
	if r.body != nil {
		r.body.Close()
	}
}
