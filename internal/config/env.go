package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// envVars lists every HAL0_* override. Keeping them in one table documents
// them (the README's table is generated from the same names) and gives one
// place that turns a bad value into an error naming the variable.
var envVars = []struct {
	name string
	doc  string
	set  func(c *Config, v string) error
}{
	{"HAL0_STATE_DIR", "state root (registry, jobs, slots)", func(c *Config, v string) error { c.Paths.StateDir = v; return nil }},
	{"HAL0_RUNTIME_DIR", "runtime root (api.sock)", func(c *Config, v string) error { c.Paths.RuntimeDir = v; return nil }},
	{"HAL0_INSTALL_DIR", "install tree", func(c *Config, v string) error { c.Paths.InstallDir = v; return nil }},
	{"HAL0_MODEL_ROOT", "model root (pulls land in <root>/local)", func(c *Config, v string) error { c.Paths.ModelRoot = v; return nil }},
	{"HAL0_HF_MIRRORS", "comma-separated mirror endpoints", func(c *Config, v string) error {
		c.HF.Mirrors = nil
		for _, m := range strings.Split(v, ",") {
			if m = strings.TrimSpace(m); m != "" {
				c.HF.Mirrors = append(c.HF.Mirrors, m)
			}
		}
		return nil
	}},
	{"HAL0_PULL_CONCURRENCY", "files downloaded at once", intVar(func(c *Config) *int { return &c.Pull.Concurrency })},
	{"HAL0_PULL_CONNECTIONS", "parallel ranges per file", intVar(func(c *Config) *int { return &c.Pull.Connections })},
	{"HAL0_PULL_CHUNK_SIZE", "bytes per range", func(c *Config, v string) error {
		s, err := ParseSize(v)
		c.Pull.ChunkSize = s
		return err
	}},
	{"HAL0_DISK_RESERVE", "free space a pull leaves", func(c *Config, v string) error {
		s, err := ParseSize(v)
		c.Pull.DiskReserve = s
		return err
	}},
	{"HAL0_STALL_TIMEOUT", "restart a range silent this long", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		c.Pull.StallTimeout = Duration(d)
		return err
	}},
	{"HAL0_JOURNAL_DIR", "journal directory slot logs are read from", func(c *Config, v string) error { c.API.JournalDir = v; return nil }},
	{"HAL0_API_LISTEN", "comma-separated apid listeners", func(c *Config, v string) error {
		c.API.Listen = strings.Split(v, ",")
		return nil
	}},
	{"HAL0_HF_PULL_THROUGH", "1 makes /hf/ pull what it lacks from the hub", func(c *Config, v string) error {
		b, err := parseBool(v)
		c.API.HFPullThrough = b
		return err
	}},
	{"HAL0_FLM_RUNTIME", "flm runtime: podman or host", func(c *Config, v string) error { c.FLM.Runtime = v; return nil }},
	{"HAL0_FLM_TOOLBOX_IMAGE", "the FLM toolbox image", func(c *Config, v string) error { c.FLM.ToolboxImage = v; return nil }},
	{"HAL0_FLM_PODMAN", "podman executable for the FLM toolbox", func(c *Config, v string) error { c.FLM.PodmanPath = v; return nil }},
	{"HAL0_FLM_PATH", "host flm executable", func(c *Config, v string) error { c.FLM.FLMPath = v; return nil }},
	{"HAL0_FLM_CACHE_DIR", "flm's model directory on the host", func(c *Config, v string) error { c.FLM.CacheDir = v; return nil }},
	{"HAL0_FLM_CATALOG_TTL", "how long flm list -j is cached", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		c.FLM.CatalogTTL = Duration(d)
		return err
	}},
	{"HF_ENDPOINT", "Hugging Face endpoint", func(c *Config, v string) error { c.HF.Endpoint = strings.TrimRight(v, "/"); return nil }},
	{"HF_HUB_OFFLINE", "1 forbids network access", func(c *Config, v string) error {
		b, err := parseBool(v)
		c.HF.Offline = b
		return err
	}},
}

func intVar(field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		*field(c) = n
		return err
	}
}

// parseBool accepts the spellings huggingface_hub accepts.
func parseBool(v string) (bool, error) {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "1", "ON", "YES", "TRUE":
		return true, nil
	case "", "0", "OFF", "NO", "FALSE":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean")
}

func applyEnv(c *Config, env Env) error {
	for _, ev := range envVars {
		v, ok := env(ev.name)
		if !ok || v == "" {
			continue
		}
		if err := ev.set(c, v); err != nil {
			return fmt.Errorf("environment %s=%q: invalid value: %v", ev.name, v, err)
		}
	}
	return nil
}

// EnvDoc lists the supported environment variables and what they do.
func EnvDoc() [][2]string {
	out := [][2]string{
		{"HAL0_HOME", "remap every root under this directory"},
		{"HAL0_CONFIG", "configuration file to read"},
		{"HAL0_CONFIG_DIR", "configuration directory"},
	}
	for _, ev := range envVars {
		out = append(out, [2]string{ev.name, ev.doc})
	}
	return append(out,
		[2]string{"HF_TOKEN", "Hugging Face token (also HUGGING_FACE_HUB_TOKEN)"},
		[2]string{"HF_TOKEN_PATH", "file holding the token"},
	)
}

// resolveToken finds the Hugging Face token. Order: HF_TOKEN, the legacy
// HUGGING_FACE_HUB_TOKEN, the systemd credential "hf-token"
// (LoadCredential=), hf.token_file, HF_TOKEN_PATH, then $HF_HOME/token
// (default ~/.cache/huggingface/token) as huggingface_hub writes it.
func resolveToken(c *Config, env Env) error {
	for _, name := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
		if v, ok := env(name); ok && strings.TrimSpace(v) != "" {
			return setToken(c, v, "environment "+name)
		}
	}
	type cand struct{ path, src string }
	var files []cand
	if d, ok := env("CREDENTIALS_DIRECTORY"); ok && d != "" {
		files = append(files, cand{filepath.Join(d, "hf-token"), "systemd credential hf-token"})
	}
	if c.HF.TokenFile != "" {
		files = append(files, cand{c.HF.TokenFile, "hf.token_file"})
	}
	if p, ok := env("HF_TOKEN_PATH"); ok && p != "" {
		files = append(files, cand{p, "HF_TOKEN_PATH"})
	} else {
		hfHome, ok := env("HF_HOME")
		if !ok || hfHome == "" {
			if h, ok := env("HOME"); ok && h != "" {
				hfHome = filepath.Join(h, ".cache", "huggingface")
			}
		}
		if hfHome != "" {
			files = append(files, cand{filepath.Join(hfHome, "token"), "$HF_HOME/token"})
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f.path)
		if err != nil {
			// Only a file the user configured by name must exist; the
			// conventional locations are optional.
			if errors.Is(err, os.ErrNotExist) && (f.src == "$HF_HOME/token" || f.src == "systemd credential hf-token") {
				continue
			}
			return fmt.Errorf("read token from %s (%s): %v", f.src, f.path, err)
		}
		if strings.TrimSpace(string(b)) == "" {
			continue
		}
		return setToken(c, string(b), f.src)
	}
	return nil
}

func setToken(c *Config, raw, src string) error {
	t := strings.TrimSpace(raw)
	if strings.ContainsAny(t, " \t\r\n") || strings.ContainsFunc(t, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		// Never echo the value: it is a credential even when malformed.
		return fmt.Errorf("the Hugging Face token from %s contains whitespace or control characters; it must be a single line like hf_…", src)
	}
	c.HF.Token = NewSecret(t)
	c.HF.TokenSource = src
	return nil
}

// resolveAPIToken finds the bearer token that guards changes over TCP:
// HAL0_API_TOKEN, the systemd credential "api-token", or a
// HAL0_API_TOKEN=… line in api.token_file (default <config dir>/api.env,
// mode 0640 root:hal0 so that hal0-apid, running as hal0, can read it).
func resolveAPIToken(c *Config, env Env) error {
	if v, ok := env("HAL0_API_TOKEN"); ok && strings.TrimSpace(v) != "" {
		c.API.Token = NewSecret(strings.TrimSpace(v))
		return nil
	}
	if d, ok := env("CREDENTIALS_DIRECTORY"); ok && d != "" {
		if b, err := os.ReadFile(filepath.Join(d, "api-token")); err == nil && strings.TrimSpace(string(b)) != "" {
			c.API.Token = NewSecret(strings.TrimSpace(string(b)))
			return nil
		}
	}
	file := c.API.TokenFile
	if file == "" {
		file = filepath.Join(c.Paths.ConfigDir, "api.env")
	}
	b, err := os.ReadFile(file)
	if c.API.TokenFile == "" && (errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission)) {
		// The default api.env is readable by root and the hal0 group only:
		// other CLI users talk over the unix socket and need no token.
		return nil
	}
	if err != nil {
		return fmt.Errorf("read API token file: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "HAL0_API_TOKEN="); ok {
			v = strings.Trim(strings.TrimSpace(v), `"'`)
			if v != "" {
				c.API.Token = NewSecret(v)
			}
		}
	}
	return nil
}

// resolveHFServeToken reads the /hf/ endpoint's read token.
func resolveHFServeToken(c *Config, env Env) error {
	if v, ok := env("HAL0_HF_SERVE_TOKEN"); ok && strings.TrimSpace(v) != "" {
		c.API.HFToken = NewSecret(strings.TrimSpace(v))
		return nil
	}
	if c.API.HFTokenFile == "" {
		return nil
	}
	b, err := os.ReadFile(c.API.HFTokenFile)
	if err != nil {
		return fmt.Errorf("read api.hf_token_file: %v", err)
	}
	c.API.HFToken = NewSecret(strings.TrimSpace(string(b)))
	return nil
}
