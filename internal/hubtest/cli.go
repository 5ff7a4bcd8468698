package hubtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Main runs the standalone test hub (cmd testhub): it builds the repos
// described by args, starts a Hub, prints exactly one line
// "HUB_URL=http://127.0.0.1:PORT" to stdout once it is serving, and serves
// until ctx ends. Diagnostics go to stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("testhub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "hub listen address")
	cdnListen := fs.String("cdn-listen", "127.0.0.1:0", "CDN listen address")
	repoID := fs.String("repo", "demo/tiny-GGUF", "GGUF repo id (empty: none)")
	shards := fs.Int("shards", 3, "shards per quant (1: a single unsplit file)")
	sizeStr := fs.String("shard-size", "64MiB", "shard size (B, KiB, MiB, GiB, KB, MB, GB)")
	dir := fs.String("dir", "", "write files under this directory and serve them from disk (default: memory)")
	quant := fs.String("quant", "Q4_K_M", "quant of the GGUF repo")
	extra := fs.String("extra-quant", "", "comma-separated additional quants")
	st := fs.String("safetensors", "", "also serve a safetensors repo with this id")
	token := fs.String("token", "", "the valid hub token (hf_...)")
	seed := fs.Uint64("seed", 1, "content seed")
	lenient := fs.Bool("lenient", false, "mirror mode (no Content-Length, ranges ignored, ...)")
	verbose := fs.Bool("v", false, "log every request to stderr")
	fs.Bool("exec", false, "run the command after -- with HF_ENDPOINT set to the hub, then exit with its status")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	size, err := ParseSize(*sizeStr)
	if err != nil {
		return err
	}
	opts := Options{Addr: *listen, CDNAddr: *cdnListen, Token: *token, Lenient: *lenient}
	if *verbose {
		opts.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	}
	repoDir := func(id string) string {
		if *dir == "" {
			return ""
		}
		return filepath.Join(*dir, filepath.FromSlash(id))
	}
	// The generators panic on I/O errors (they are test helpers); report them.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	var repos []Repo
	if *repoID != "" {
		base := strings.TrimSuffix(path.Base(*repoID), "-GGUF")
		readme := "---\nlicense: apache-2.0\npipeline_tag: text-generation\ntags:\n- gguf\n---\n\n# " + base + " GGUF\n\nSynthetic weights for hal0 tests.\n"
		files := []File{materialize(repoDir(*repoID), "README.md", []byte(readme), 0, 0, false)}
		for _, q := range append([]string{*quant}, splitList(*extra)...) {
			prefix := base
			if *shards > 1 {
				prefix = q + "/" + base // split models live in a per-quant folder
			}
			files = append(files, GenerateGGUFShards(repoDir(*repoID), prefix, q, *shards, size, *seed)...)
		}
		repos = append(repos, Repo{ID: *repoID, Files: files, PipelineTag: "text-generation", License: "apache-2.0",
			Extra: map[string]any{"gguf": map[string]any{"architecture": "llama", "context_length": 4096, "chat_template": ChatTemplate}}})
	}
	if *st != "" {
		repos = append(repos, Repo{ID: *st, Files: GenerateSafetensorsShards(repoDir(*st), *shards, size, *seed),
			PipelineTag: "text-generation", LibraryName: "transformers", License: "apache-2.0"})
	}
	h, err := New(opts)
	if err != nil {
		return err
	}
	defer h.Close()
	for _, r := range repos {
		stored := h.AddRepo(r)
		fmt.Fprintf(stderr, "testhub: %s @ %s, %d files\n", stored.ID, stored.Commit, len(stored.Files))
	}
	fmt.Fprintf(stdout, "HUB_URL=%s\n", h.URL)
	if cmdArgs := fs.Args(); len(cmdArgs) > 0 {
		// --exec mode (everything after "--"): run one command against the
		// hub with HF_ENDPOINT set, then stop. This is how `make demo` runs a
		// pull without juggling a background server.
		cmd := exec.CommandContext(ctx, cmdArgs[0], cmdArgs[1:]...)
		cmd.Env = append(os.Environ(), "HF_ENDPOINT="+h.URL)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
		return cmd.Run()
	}
	<-ctx.Done()
	return nil
}

// ParseSize parses "64MiB", "1GiB", "512KiB", "100MB", "4096" or "4096B".
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return n * mult, nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
