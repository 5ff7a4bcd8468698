// Package config is the only reader of hal0.toml and of the HAL0_* and HF_*
// environment variables. Everything else receives a *Config.
//
// Precedence, lowest first: built-in defaults (remapped under HAL0_HOME when
// set), the TOML file, then environment variables. Unknown TOML keys are an
// error that names the key, the file and the line, because a misspelt key
// that silently does nothing is worse than a refusal to start.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config is hal0's whole configuration.
type Config struct {
	Paths Paths `toml:"paths"`
	HF    HF    `toml:"hf"`
	Pull  Pull  `toml:"pull"`
	API   API   `toml:"api"`
	FLM   FLM   `toml:"flm"`

	Catalog Catalog `toml:"catalog"`

	// File is the configuration file that was read, or "" when none existed
	// and only defaults and environment apply.
	File string `toml:"-"`
}

// Paths are the filesystem roots of an installation.
type Paths struct {
	ConfigDir  string `toml:"config_dir"`  // /etc/hal0
	StateDir   string `toml:"state_dir"`   // /var/lib/hal0
	RuntimeDir string `toml:"runtime_dir"` // /run/hal0
	InstallDir string `toml:"install_dir"` // /usr/lib/hal0/current
	ModelRoot  string `toml:"model_root"`  // /mnt/ai-models
}

// HF configures access to Hugging Face and its mirrors.
type HF struct {
	// Endpoint is the primary hub; HF_ENDPOINT overrides it.
	Endpoint string `toml:"endpoint"`
	// Mirrors are tried in order after Endpoint when it fails with a
	// transient or server-side error.
	Mirrors []string `toml:"mirrors"`
	// TokenFile holds a token (one line). HF_TOKEN and the systemd
	// credential "hf-token" take precedence.
	TokenFile string `toml:"token_file"`
	// Offline forbids network access (HF_HUB_OFFLINE).
	Offline bool `toml:"offline"`

	// Token is resolved at load time; it never comes from the TOML file
	// itself so that hal0.toml stays shareable.
	Token Secret `toml:"-"`
	// TokenSource says where Token came from, for diagnostics.
	TokenSource string `toml:"-"`
}

// Pull tunes the download engine.
type Pull struct {
	// Concurrency is how many files download at once.
	Concurrency int `toml:"concurrency"`
	// Connections is how many byte ranges of one large file download in
	// parallel.
	Connections int `toml:"connections"`
	// ChunkSize is the size of one byte range. It is also the most a resume
	// can lose per interrupted range.
	ChunkSize Size `toml:"chunk_size"`
	// DiskReserve is free space that a pull must leave on the target
	// filesystem.
	DiskReserve Size `toml:"disk_reserve"`
	// StallTimeout restarts a range that received nothing for this long.
	StallTimeout Duration `toml:"stall_timeout"`
	// MaxRetries bounds consecutive failed attempts of one range that made
	// no progress; any progress resets the count.
	MaxRetries int `toml:"max_retries"`
	// DefaultQuant is the GGUF quant preference when a ref names none.
	DefaultQuant []string `toml:"default_quant"`
}

// API configures hal0-apid.
type API struct {
	// Listen addresses used when not socket-activated: "unix:/path" or
	// "tcp:host:port".
	Listen []string `toml:"listen"`
	// IdleExit makes a socket-activated apid exit after this long without
	// requests or running jobs; 0 disables it.
	IdleExit Duration `toml:"idle_exit"`
	// TokenFile holds HAL0_API_TOKEN=… for bearer auth on TCP (default
	// <config dir>/api.env).
	TokenFile string `toml:"token_file"`
	// AllowedHosts are Host names accepted on TCP besides loopback, for a
	// dashboard reached by name.
	AllowedHosts []string `toml:"allowed_hosts"`

	// Token is resolved at load time from HAL0_API_TOKEN, the systemd
	// credential "api-token" or TokenFile.
	Token Secret `toml:"-"`

	// HFServe turns on the Hugging Face–compatible endpoint at /hf/ that
	// serves installed models to other machines and tools.
	HFServe bool `toml:"hf_serve"`
	// HFTokenFile holds the read token of that endpoint (one line),
	// separate from the admin token; HAL0_HF_SERVE_TOKEN overrides it.
	// Without a token the endpoint is open to whoever reaches the API.
	HFTokenFile string `toml:"hf_token_file"`
	HFToken     Secret `toml:"-"`
	// HFPullThrough makes /hf/ a pull-through mirror: a file that is not
	// installed is pulled from the configured hub as an ordinary pull job
	// (hal0-pull@<ref>.service) and streamed to the client while it
	// downloads. HAL0_HF_PULL_THROUGH overrides it.
	HFPullThrough bool `toml:"hf_pull_through"`
	// HFServeGated lets /hf/ serve gated models (their license binds each
	// user) to every client with the read token, not only to the box's
	// owner (the unix socket or the admin token).
	HFServeGated bool `toml:"hf_serve_gated"`

	// JournalDir, when set, is the journal directory slot logs are read
	// from (journalctl --directory) instead of the system journal: for a
	// hal0-apid outside the systemd that runs the slots.
	JournalDir string `toml:"journal_dir"`
}

// Default root locations of an appliance install.
const (
	DefaultConfigDir  = "/etc/hal0"
	DefaultStateDir   = "/var/lib/hal0"
	DefaultRuntimeDir = "/run/hal0"
	DefaultInstallDir = "/usr/lib/hal0/current"
	DefaultModelRoot  = "/mnt/ai-models"
	DefaultEndpoint   = "https://huggingface.co"
)

// Default returns the built-in configuration. With home != "" every root is
// remapped under it (HAL0_HOME), keeping the FHS shape: home/etc/hal0,
// home/var/lib/hal0, home/run/hal0, home/usr/lib/hal0/current and
// home/mnt/ai-models.
func Default(home string) *Config {
	root := func(p string) string {
		if home == "" {
			return p
		}
		return filepath.Join(home, p)
	}
	c := &Config{
		Paths: Paths{
			ConfigDir:  root(DefaultConfigDir),
			StateDir:   root(DefaultStateDir),
			RuntimeDir: root(DefaultRuntimeDir),
			InstallDir: root(DefaultInstallDir),
			ModelRoot:  root(DefaultModelRoot),
		},
		HF: HF{Endpoint: DefaultEndpoint},
		Pull: Pull{
			Concurrency:  4,
			Connections:  16,
			ChunkSize:    64 << 20,
			DiskReserve:  1 << 30,
			StallTimeout: Duration(30 * time.Second),
			MaxRetries:   10,
			DefaultQuant: []string{"Q4_K_M", "Q4_K_S", "Q4_0", "Q5_K_M", "Q8_0"},
		},
		API: API{IdleExit: Duration(5 * time.Minute), HFServe: true},
		Catalog: Catalog{
			Interval: Duration(DefaultCatalogInterval), Limit: DefaultCatalogLimit,
			Concurrency: DefaultCatalogConcurrency,
		},
		FLM: defaultFLM(),
	}
	return c
}

// Env abstracts the process environment so tests need not mutate it.
type Env func(string) (string, bool)

// Load reads the configuration from the real environment.
func Load() (*Config, error) { return LoadEnv(os.LookupEnv) }

// LoadEnv reads the configuration using env for every variable lookup.
//
// The file is HAL0_CONFIG when set, else <config dir>/hal0.toml. A missing
// default file is fine (defaults apply); a missing HAL0_CONFIG file is an
// error, because the user asked for it by name.
func LoadEnv(env Env) (*Config, error) {
	home, _ := env("HAL0_HOME")
	if home != "" {
		abs, err := filepath.Abs(home)
		if err != nil {
			return nil, fmt.Errorf("HAL0_HOME=%q: %w", home, err)
		}
		home = abs
	}
	c := Default(home)
	if v, ok := env("HAL0_CONFIG_DIR"); ok && v != "" {
		c.Paths.ConfigDir = v
	}
	file, explicit := env("HAL0_CONFIG")
	if !explicit || file == "" {
		file = filepath.Join(c.Paths.ConfigDir, "hal0.toml")
		explicit = false
	}
	data, err := os.ReadFile(file)
	switch {
	case err == nil:
		if err := DecodeStrict(file, data, c); err != nil {
			return nil, err
		}
		c.File = file
	case errors.Is(err, os.ErrNotExist) && !explicit:
	default:
		return nil, fmt.Errorf("read config: %w (set HAL0_CONFIG to a readable file or unset it)", err)
	}
	if err := applyEnv(c, env); err != nil {
		return nil, err
	}
	if err := resolveToken(c, env); err != nil {
		return nil, err
	}
	if err := resolveAPIToken(c, env); err != nil {
		return nil, err
	}
	if err := resolveHFServeToken(c, env); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		if c.File != "" {
			return nil, fmt.Errorf("%s: %w", c.File, err)
		}
		return nil, err
	}
	return c, nil
}

// Validate checks values a file or the environment could have got wrong.
func (c *Config) Validate() error {
	for name, p := range map[string]string{
		"paths.config_dir": c.Paths.ConfigDir, "paths.state_dir": c.Paths.StateDir,
		"paths.runtime_dir": c.Paths.RuntimeDir, "paths.install_dir": c.Paths.InstallDir,
		"paths.model_root": c.Paths.ModelRoot,
	} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%s = %q: must be an absolute path", name, p)
		}
	}
	for i, e := range append([]string{c.HF.Endpoint}, c.HF.Mirrors...) {
		if err := checkEndpoint(e); err != nil {
			if i == 0 {
				return fmt.Errorf("hf.endpoint: %w", err)
			}
			return fmt.Errorf("hf.mirrors[%d]: %w", i-1, err)
		}
	}
	p := c.Pull
	switch {
	case p.Concurrency < 1 || p.Concurrency > 64:
		return fmt.Errorf("pull.concurrency = %d: must be between 1 and 64", p.Concurrency)
	case p.Connections < 1 || p.Connections > 64:
		return fmt.Errorf("pull.connections = %d: must be between 1 and 64", p.Connections)
	case p.ChunkSize < 1<<20:
		return fmt.Errorf("pull.chunk_size = %v: must be at least 1MiB", p.ChunkSize)
	case p.DiskReserve < 0:
		return fmt.Errorf("pull.disk_reserve = %v: must not be negative", p.DiskReserve)
	case p.StallTimeout < Duration(time.Second):
		return fmt.Errorf("pull.stall_timeout = %v: must be at least 1s", p.StallTimeout)
	case p.MaxRetries < 1:
		return fmt.Errorf("pull.max_retries = %d: must be at least 1", p.MaxRetries)
	}
	for _, l := range c.API.Listen {
		if !strings.HasPrefix(l, "unix:") && !strings.HasPrefix(l, "tcp:") {
			return fmt.Errorf("api.listen %q: want unix:/path or tcp:host:port", l)
		}
	}
	if err := c.Catalog.validate(); err != nil {
		return err
	}
	return c.FLM.validate()
}

func checkEndpoint(e string) error {
	if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
		return fmt.Errorf("%q is not an http(s) URL", e)
	}
	if strings.ContainsAny(e, " \t\r\n") {
		return fmt.Errorf("%q contains whitespace", e)
	}
	return nil
}

// Endpoints returns the hub followed by its mirrors, without trailing
// slashes, as the pull engine tries them.
func (c *Config) Endpoints() []string {
	out := []string{strings.TrimRight(c.HF.Endpoint, "/")}
	for _, m := range c.HF.Mirrors {
		out = append(out, strings.TrimRight(m, "/"))
	}
	return out
}
