// Command standin stands in for FastFlowLM's flm, and for podman running
// the FLM toolbox image, in hal0's tests: the NPU, the toolbox image and
// huggingface.co cannot be used there. Built by flmtest.Build.
//
// As flm (any program name but "podman") it reproduces the documented
// CLI of flm v0.9.x that hal0 relies on:
//
//   - `list [-j] [--filter all|installed|not-installed]`: the catalog from
//     model_list.json ($FLM_CONFIG_PATH), each entry with name and model
//     set to its tag and "installed"; with -j one pretty-printed JSON
//     object, preceded on stdout by a [WARNING] line and on stderr by
//     "[FLM]  Using custom model list path: …", as flm prints them.
//   - `pull <tag> [--force]`: the [FLM] lines, then per file
//     "Downloading i/N: file" and in-place progress redrawn with
//     "\r\033[K[FLM]  Downloading: p% (a MB / b MB)" (MiB figures) without
//     newlines, cursor hidden and shown with \033[?25l / \033[?25h. Files
//     are written straight to their final path in
//     $FLM_MODEL_PATH/models/<repo>/ (default ~/.config/flm/models), so a
//     killed pull leaves a partial file that a later pull takes for
//     complete, as flm does. Exit 1 with "[ERROR]  Model not found: …" for
//     an unknown tag, 0 with "Model already downloaded" when every file is
//     present.
//   - `serve [<tag>] [--host H] [--port P] [--ctx-len N]`: /v1/models and
//     /v1/chat/completions on H:P until SIGINT or SIGTERM.
//   - `version [-j]`.
//
// Test knobs (environment): FLM_STANDIN_RATE (bytes/s of a download,
// default 256 MiB/s), FLM_STANDIN_HOLD (a file: the last file of a pull
// stops half-way until it exists), FLM_STANDIN_FAIL_AFTER=N (the pull
// fails like a network error on file N+1, removing that file's partial as
// flm does on a curl error), FLM_STANDIN_IGNORE_MODEL_PATH=1 (an flm that
// ignores FLM_MODEL_PATH), FLM_STANDIN_LOG (a file getting one JSON line
// per invocation).
//
// As podman (program name "podman") it runs the toolbox image: `run`
// interprets --rm, --name, -v/--volume HOST:CTR (a symlink at CTR inside
// a scratch root standing for the container's filesystem, which is
// removed afterwards with --rm), --device (must exist), -p/--publish
// [IP:]HP:CP (HP must equal CP; flm is made to listen on IP), -e and the
// options hal0 passes, and runs this program as the image's flm with
// HOME=<root>/var/lib/hal0 (PODMAN_STANDIN_HOME overrides the image's
// home) and FLM_CONFIG_PATH=$PODMAN_STANDIN_FLM_CONFIG. Without the
// bind mount, what flm writes is gone with the scratch root: exactly the
// missing-mount failure hal0 detects. `stop [-t N] NAME` and `rm -f
// NAME` act on a running `run --name NAME`. Status 125 is podman's own
// error, as with the real podman.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	logInvocation()
	if filepath.Base(os.Args[0]) == "podman" {
		os.Exit(podman(os.Args[1:]))
	}
	os.Exit(flm(os.Args[1:]))
}

func logInvocation() {
	p := os.Getenv("FLM_STANDIN_LOG")
	if p == "" {
		return
	}
	rec := map[string]any{"prog": filepath.Base(os.Args[0]), "args": os.Args[1:], "home": os.Getenv("HOME"),
		"flm_model_path": os.Getenv("FLM_MODEL_PATH")}
	b, _ := json.Marshal(rec)
	f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	f.Write(append(b, '\n'))
	f.Close()
}

// ---------------------------------------------------------------- flm

type entry map[string]any

type catalog struct {
	modelPath string
	tags      []string
	entries   map[string]entry
}

func loadCatalog() (*catalog, error) {
	p := os.Getenv("FLM_CONFIG_PATH")
	if p == "" {
		return nil, errors.New("model_list.json not found (set FLM_CONFIG_PATH)")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var doc struct {
		ModelPath string                      `json:"model_path"`
		Models    map[string]map[string]entry `json:"models"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", p, err)
	}
	c := &catalog{modelPath: doc.ModelPath, entries: map[string]entry{}}
	if c.modelPath == "" {
		c.modelPath = "models"
	}
	for fam, sizes := range doc.Models {
		for size, e := range sizes {
			tag := fam + ":" + size
			c.tags = append(c.tags, tag)
			c.entries[tag] = e
		}
	}
	sort.Strings(c.tags)
	return c, nil
}

func (c *catalog) modelsDir() string {
	root := os.Getenv("FLM_MODEL_PATH")
	if root == "" || os.Getenv("FLM_STANDIN_IGNORE_MODEL_PATH") == "1" {
		root = filepath.Join(os.Getenv("HOME"), ".config", "flm")
	}
	return filepath.Join(root, c.modelPath)
}

func (e entry) repo() string {
	u, _ := e["url"].(string)
	u = strings.TrimPrefix(strings.TrimPrefix(u, "https://"), "http://")
	parts := strings.Split(u, "/")
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}

func (e entry) files() []string {
	raw, _ := e["files"].([]any)
	var out []string
	for _, f := range raw {
		if s, ok := f.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func (e entry) size() int64 {
	f, _ := e["size"].(float64)
	return int64(f)
}

// fileSizes splits the entry's size over its files; config.json holds a
// small JSON document.
func (e entry) fileSize(tag, name string) int64 {
	if name == "config.json" {
		return int64(len(configJSON(tag)))
	}
	n := 0
	for _, f := range e.files() {
		if f != "config.json" {
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return e.size() / int64(n)
}

func configJSON(tag string) []byte {
	return []byte(fmt.Sprintf("{\"architectures\": [\"StandIn\"], \"model_type\": %q}\n", tag))
}

func (c *catalog) installed(tag string) bool {
	e := c.entries[tag]
	dir := filepath.Join(c.modelsDir(), e.repo())
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return false
	}
	for _, f := range e.files() {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}

func flm(args []string) int {
	if len(args) == 0 {
		usage()
		return 1
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version":
		if hasFlag(rest, "-j", "--json") {
			fmt.Println("{\n    \"version\": \"0.9.43\"\n}")
		} else {
			fmt.Println("[FLM]  FLM v0.9.43")
		}
		return 0
	case "list":
		return list(rest)
	case "pull":
		return pullCmd(rest)
	case "serve":
		return serve(rest)
	case "help", "--help", "-h":
		usage()
		return 1
	}
	fmt.Fprintf(os.Stderr, "[ERROR]  Invalid command: %s\n", cmd)
	usage()
	return 1
}

func usage() {
	fmt.Println("Usage: flm <command> [model_tag] [options]\n\nCommands: run, serve, pull, remove, check, list, version, help, port, validate, bench")
}

func hasFlag(args []string, names ...string) bool {
	for _, a := range args {
		for _, n := range names {
			if a == n {
				return true
			}
		}
	}
	return false
}

// flagValue returns the value of --name V or --name=V.
func flagValue(args []string, names ...string) (string, bool) {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

// positional returns the first argument that is not an option or an
// option's value.
func positional(args []string) string {
	valued := map[string]bool{"--host": true, "--port": true, "-p": true, "--ctx-len": true, "-c": true, "--filter": true,
		"--pmode": true, "--asr": true, "-a": true, "--embed": true, "-e": true, "--socket": true, "-s": true, "--q-len": true, "-q": true, "--cors": true}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			if valued[a] {
				i++
			}
			continue
		}
		return a
	}
	return ""
}

func list(args []string) int {
	c, err := loadCatalog()
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return 1
	}
	filter, _ := flagValue(args, "--filter")
	switch filter {
	case "", "all", "installed", "not-installed":
	default:
		fmt.Printf("[ERROR]  Invalid filter: %s\n", filter)
		return 1
	}
	fmt.Fprintf(os.Stderr, "[FLM]  Using custom model list path: %s\n", os.Getenv("FLM_CONFIG_PATH"))
	type row struct {
		tag string
		e   entry
		ok  bool
	}
	var rows []row
	for _, tag := range c.tags {
		ok := c.installed(tag)
		if (filter == "installed" && !ok) || (filter == "not-installed" && ok) {
			continue
		}
		rows = append(rows, row{tag, c.entries[tag], ok})
	}
	if hasFlag(args, "-j", "--json") {
		// flm's update check prints before the JSON.
		fmt.Println("[WARNING]  FLM v0.9.43 is not the latest release; see https://github.com/FastFlowLM/FastFlowLM/releases")
		models := []map[string]any{}
		for _, r := range rows {
			m := map[string]any{}
			for k, v := range r.e {
				m[k] = v
			}
			m["name"], m["model"], m["installed"] = r.tag, r.tag, r.ok
			models = append(models, m)
		}
		b, _ := json.MarshalIndent(map[string]any{"models": models}, "", "    ")
		fmt.Println(string(b))
		return 0
	}
	fmt.Println("Models:")
	if len(rows) == 0 {
		fmt.Println("  No models found for the specified filter.")
	}
	for _, r := range rows {
		mark := "⏬"
		if r.ok {
			mark = "✅"
		}
		fmt.Printf("  - %s %s\n", r.tag, mark)
	}
	return 0
}

func envInt(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil && v > 0 {
		return v
	}
	return def
}

func pullCmd(args []string) int {
	tag := positional(args)
	c, err := loadCatalog()
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return 1
	}
	e, ok := c.entries[tag]
	if !ok {
		fmt.Printf("[ERROR]  Model not found: %s; Please check with `flm list` and try again.\n", tag)
		return 1
	}
	dir := filepath.Join(c.modelsDir(), e.repo())
	fmt.Println("[FLM]  Pulling model from HuggingFace...")
	fmt.Printf("[FLM]  Model: %s\n[FLM]  Name: %s\n", tag, e.repo())
	force := hasFlag(args, "--force")
	var missing, present []string
	for _, f := range e.files() {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil && !force {
			present = append(present, f)
		} else {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		fmt.Println("[FLM]  Model already downloaded. Use --force to re-download.")
		return 0
	}
	fmt.Printf("[FLM]  Missing files (%d):\n", len(missing))
	for _, f := range missing {
		fmt.Printf("  - %s\n", f)
	}
	if len(present) > 0 {
		fmt.Printf("[FLM]  Present files (%d):\n", len(present))
		for _, f := range present {
			fmt.Printf("  - %s\n", f)
		}
	}
	var total int64
	for _, f := range missing {
		total += e.fileSize(tag, f)
	}
	fmt.Printf("[FLM]  Downloading %d missing files...\n", len(missing))
	fmt.Printf("[FLM]  Files to download (%.2f MB):\n", float64(total)/(1<<20))
	for _, f := range missing {
		fmt.Printf("  - %s (%.2f MB)\n", f, float64(e.fileSize(tag, f))/(1<<20))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Printf("[ERROR]  Failed to create %s: %v\n", dir, err)
		return 1
	}
	rate := envInt("FLM_STANDIN_RATE", 256<<20)
	failAfter := envInt("FLM_STANDIN_FAIL_AFTER", -1)
	hold := os.Getenv("FLM_STANDIN_HOLD")
	fmt.Print("\033[?25l")
	defer fmt.Print("\033[?25h")
	for i, f := range missing {
		fmt.Printf("[FLM]  Downloading %d/%d: %s\n", i+1, len(missing), f)
		path := filepath.Join(dir, f)
		fail := failAfter >= 0 && int64(i) >= failAfter
		gate := ""
		if i == len(missing)-1 {
			gate = hold
		}
		if err := download(path, tag, f, e.fileSize(tag, f), rate, gate, fail); err != nil {
			fmt.Println()
			for a := 1; a <= 3; a++ {
				fmt.Printf("[FLM]  Download failed (attempt %d/3)\n", a)
				if a < 3 {
					fmt.Println("[FLM]  Retrying...")
				}
			}
			fmt.Printf("[ERROR]  Failed to pull model: %s\n", tag)
			return 1
		}
		fmt.Println("[FLM]  Checking Hash...")
		fmt.Printf("[FLM]  Download completed: %s\n", path)
		fmt.Printf("[FLM]  Overall progress:  %d/%d files\n", i+1, len(missing))
	}
	fmt.Println("[FLM]  All downloads completed successfully!")
	fmt.Println("[FLM]  Model downloaded successfully!")
	fmt.Println("[FLM]  All files verified successfully.")
	return 0
}

// download writes size bytes of name to path at rate, straight to the
// final path (as flm's curl does), redrawing the progress line. gate, if
// set, holds the download half-way until that file exists. fail makes it
// break off half-way like a network error, removing the partial.
func download(path, tag, name string, size, rate int64, gate string, fail bool) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var data []byte
	if name == "config.json" {
		data = configJSON(tag)
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	seed := byte(h.Sum32())
	chunk := make([]byte, 64<<10)
	start := time.Now()
	var written int64
	lastDraw := time.Time{}
	draw := func() {
		pct := 100.0
		if size > 0 {
			pct = float64(written) * 100 / float64(size)
		}
		fmt.Printf("\r\033[K[FLM]  Downloading: %.1f%% (%.1fMB / %.1fMB)", pct, float64(written)/(1<<20), float64(size)/(1<<20))
	}
	for written < size {
		if written >= size/2 {
			if fail {
				f.Close()
				os.Remove(path)
				return errors.New("connection reset")
			}
			for gate != "" {
				if _, err := os.Stat(gate); err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		n := min(int64(len(chunk)), size-written)
		if data != nil {
			chunk = data[written : written+n]
		} else {
			for i := range chunk[:n] {
				chunk[i] = seed + byte(written+int64(i))
			}
		}
		if _, err := f.Write(chunk[:n]); err != nil {
			return err
		}
		written += n
		if d := time.Duration(float64(written) / float64(rate) * float64(time.Second)); d > time.Since(start) {
			time.Sleep(d - time.Since(start))
		}
		if time.Since(lastDraw) >= 100*time.Millisecond {
			draw()
			lastDraw = time.Now()
		}
	}
	draw()
	fmt.Println()
	return nil
}

func serve(args []string) int {
	tag := positional(args)
	c, err := loadCatalog()
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return 1
	}
	if _, ok := c.entries[tag]; !ok {
		fmt.Printf("[ERROR]  Model not found: %s; Please check with `flm list` and try again.\n", tag)
		return 1
	}
	if !c.installed(tag) {
		fmt.Printf("[ERROR]  Model %s is not downloaded; run `flm pull %s` first.\n", tag, tag)
		return 1
	}
	host, ok := flagValue(args, "--host")
	if !ok {
		host = "127.0.0.1"
	}
	port, ok := flagValue(args, "--port", "-p")
	if !ok {
		if port = os.Getenv("FLM_SERVE_PORT"); port == "" {
			port = "52625"
		}
	}
	if b := os.Getenv("FLM_STANDIN_BIND"); b != "" {
		host = b // the address podman publishes the port on
	}
	if os.Getenv("FLM_STANDIN_UNPUBLISHED") == "1" {
		port = "0" // a container port nobody published: unreachable
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		fmt.Printf("[ERROR]  Failed to start server: %v\n", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": []map[string]any{{"id": tag, "object": "model", "owned_by": "flm"}}})
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model string `json:"model"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": "chatcmpl-standin", "object": "chat.completion", "model": tag,
			"choices": []map[string]any{{"index": 0, "message": map[string]string{"role": "assistant", "content": "H"}, "finish_reason": "length"}}})
	})
	fmt.Printf("[FLM]  Loading model %s...\n", tag)
	fmt.Printf("[FLM]  Starting server on port %s...\n", port)
	fmt.Println("[FLM]  Press Ctrl+C to stop.")
	srv := &http.Server{Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Printf("[ERROR]  %v\n", err)
		return 1
	}
	fmt.Println("[FLM]  Server stopped.")
	return 0
}

// ------------------------------------------------------------- podman

func podmanState() string {
	if d := os.Getenv("PODMAN_STANDIN_STATE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("podman-standin-%d", os.Getuid()))
}

func perr(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "Error: "+format+"\n", a...)
	return 125
}

func podman(args []string) int {
	if len(args) == 0 {
		return perr("missing command")
	}
	switch args[0] {
	case "run":
		return podmanRun(args[1:])
	case "stop":
		return podmanStop(args[1:], false)
	case "rm":
		return podmanStop(args[1:], true)
	}
	return perr("unrecognized command `podman %s`", args[0])
}

type mount struct{ host, ctr string }

func podmanRun(args []string) int {
	var (
		rm      bool
		name    string
		mounts  []mount
		env     []string
		publish string
	)
	valued := map[string]bool{"--name": true, "-v": true, "--volume": true, "--device": true, "-p": true, "--publish": true,
		"-e": true, "--env": true, "--security-opt": true, "--ulimit": true, "--group-add": true, "--network": true,
		"--userns": true, "-w": true, "--workdir": true}
	boolean := map[string]bool{"--rm": true, "-i": true, "-t": true, "--init": true, "--privileged": true}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			break
		}
		flag, val, hasVal := strings.Cut(a, "=")
		switch {
		case boolean[flag]:
			if flag == "--rm" {
				rm = true
			}
			continue
		case !valued[flag]:
			return perr("unknown flag: %s", flag)
		}
		if !hasVal {
			if i+1 >= len(args) {
				return perr("flag needs an argument: %s", flag)
			}
			i++
			val = args[i]
		}
		switch flag {
		case "--name":
			name = val
		case "-v", "--volume":
			parts := strings.Split(val, ":")
			if len(parts) < 2 || !filepath.IsAbs(parts[0]) || !filepath.IsAbs(parts[1]) {
				return perr("invalid volume %q (this stand-in takes HOST:CONTAINER bind mounts)", val)
			}
			if _, err := os.Stat(parts[0]); err != nil {
				return perr("statfs %s: no such file or directory", parts[0])
			}
			mounts = append(mounts, mount{parts[0], parts[1]})
		case "--device":
			dev, _, _ := strings.Cut(val, ":")
			if _, err := os.Stat(dev); err != nil {
				return perr("stat %s: no such file or directory", dev)
			}
		case "-p", "--publish":
			publish = val
		case "-e", "--env":
			env = append(env, val)
		}
	}
	if i >= len(args) {
		return perr("requires at least 1 arg(s), only received 0")
	}
	image, cargs := args[i], args[i+1:]
	if known := os.Getenv("PODMAN_STANDIN_IMAGES"); known != "" && !contains(strings.Split(known, ","), image) {
		return perr("%s: image not known", image)
	}
	state := podmanState()
	if err := os.MkdirAll(state, 0o755); err != nil {
		return perr("%v", err)
	}
	pidFile := ""
	if name != "" {
		pidFile = filepath.Join(state, name+".pid")
		if pid, ok := readPid(pidFile); ok && alive(pid) {
			return perr("creating container storage: the container name %q is already in use", name)
		}
	}
	root, err := os.MkdirTemp(state, "root-")
	if err != nil {
		return perr("%v", err)
	}
	if rm {
		defer os.RemoveAll(root) // removes the mount symlinks, never their targets
	}
	for _, m := range mounts {
		p := filepath.Join(root, m.ctr)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return perr("%v", err)
		}
		if err := os.Symlink(m.host, p); err != nil {
			return perr("mount %s: %v", m.host, err)
		}
	}
	home := os.Getenv("PODMAN_STANDIN_HOME")
	if home == "" {
		home = "/var/lib/hal0"
	}
	cenv := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + filepath.Join(root, home),
		"FLM_CONFIG_PATH=" + os.Getenv("PODMAN_STANDIN_FLM_CONFIG"), "FLM_STANDIN_BIND=127.0.0.1"}
	if err := os.MkdirAll(filepath.Join(root, home), 0o755); err != nil {
		return perr("%v", err)
	}
	if publish == "" {
		cenv = append(cenv, "FLM_STANDIN_UNPUBLISHED=1")
	} else {
		parts := strings.Split(publish, ":")
		if len(parts) < 2 || parts[len(parts)-1] != parts[len(parts)-2] {
			return perr("publish %q: this stand-in needs the same host and container port", publish)
		}
		if len(parts) == 3 && parts[0] != "127.0.0.1" {
			return perr("publish %q: this stand-in publishes on 127.0.0.1 only", publish)
		}
	}
	// The test knobs are the image's behaviour.
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FLM_STANDIN_") && !strings.HasPrefix(kv, "FLM_STANDIN_BIND=") {
			cenv = append(cenv, kv)
		}
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "FLM_MODEL_PATH" && filepath.IsAbs(v) {
			v = filepath.Join(root, v)
		}
		cenv = append(cenv, k+"="+v)
	}
	self, err := os.Executable()
	if err != nil {
		return perr("%v", err)
	}
	if p := os.Getenv("PODMAN_STANDIN_FLM"); p != "" {
		self = p
	}
	cmd := &exec.Cmd{Path: self, Args: append([]string{"flm"}, cargs...), Env: cenv,
		Stdin: nil, Stdout: os.Stdout, Stderr: os.Stderr, Dir: root}
	// The podman client forwards the signals it gets (--sig-proxy).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	if err := cmd.Start(); err != nil {
		return perr("%v", err)
	}
	if pidFile != "" {
		os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		} else {
			code = ee.ExitCode()
		}
	} else if err != nil {
		return perr("%v", err)
	}
	if rm {
		os.RemoveAll(root)
	}
	if pidFile != "" {
		os.Remove(pidFile)
	}
	return code
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func readPid(p string) (int, bool) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 0
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// podmanStop is `podman stop [-t N] NAME...` and, with remove, `podman
// rm [-f] [--ignore] NAME...`. It returns once the container's run has
// cleaned up (its pid file is gone), as podman does.
func podmanStop(args []string, remove bool) int {
	grace := 10 * time.Second
	ignore := false
	var names []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-t" || a == "--time":
			if i+1 >= len(args) {
				return perr("flag needs an argument: %s", a)
			}
			i++
			n, err := strconv.Atoi(args[i])
			if err != nil {
				return perr("invalid argument %q for %s", args[i], a)
			}
			grace = time.Duration(n) * time.Second
		case a == "-f" || a == "--force":
			grace, ignore = 0, true
		case a == "-i" || a == "--ignore":
			ignore = true
		case strings.HasPrefix(a, "-"):
			return perr("unknown flag: %s", a)
		default:
			names = append(names, a)
		}
	}
	code := 0
	for _, name := range names {
		pidFile := filepath.Join(podmanState(), name+".pid")
		pid, ok := readPid(pidFile)
		if !ok || !alive(pid) {
			if !ignore {
				code = perr("no container with name or ID %q found: no such container", name)
			}
			continue
		}
		if grace > 0 {
			syscall.Kill(pid, syscall.SIGTERM)
		}
		deadline := time.Now().Add(grace)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		// The run process removes the pid file once it has cleaned up.
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(pidFile); err != nil {
				break
			}
		}
		fmt.Println(name)
	}
	return code
}
