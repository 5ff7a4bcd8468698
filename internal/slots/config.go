package slots

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/hal0ai/hal0/internal/config"
)

// Config is /etc/hal0/slots/<name>.toml.
type Config struct {
	Slot   SlotSection   `toml:"slot"`
	Model  ModelSection  `toml:"model"`
	Server ServerSection `toml:"server"`
	Health HealthSection `toml:"health"`
}

// SlotSection names the slot and how it runs.
type SlotSection struct {
	Name    string `toml:"name"`
	Port    int    `toml:"port"`    // on 127.0.0.1
	Backend string `toml:"backend"` // llama-server or flm
	Enabled *bool  `toml:"enabled"` // default true
	// IdleTimeout moves ready → idle after this long without requests; 0
	// pins the slot.
	IdleTimeout config.Duration `toml:"idle_timeout"`
	Role        string          `toml:"role"` // primary, utility, npu
	Device      string          `toml:"device"`
}

// ModelSection says what the slot serves.
type ModelSection struct {
	Default     string `toml:"default"`
	ContextSize int    `toml:"context_size"`
}

// ServerSection is the command the slot unit runs. {model}, {port} and
// {ctx} are substituted.
type ServerSection struct {
	Command   []string `toml:"command"`
	ExtraArgs []string `toml:"extra_args"`
}

// HealthSection tunes readiness checks.
type HealthSection struct {
	Path    string          `toml:"path"`    // default /health (llama-server) or /v1/models (flm)
	Timeout config.Duration `toml:"timeout"` // warming gives up after this; default 180s
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// ParseConfig decodes and validates one slot file. The file name (without
// .toml) must match slot.name when that is set.
func ParseConfig(file string, data []byte) (*Config, error) {
	var c Config
	if err := config.DecodeStrict(file, data, &c); err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(filepath.Base(file), ".toml")
	if c.Slot.Name == "" {
		c.Slot.Name = base
	}
	if err := c.validate(base); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &c, nil
}

func (c *Config) validate(base string) error {
	s := &c.Slot
	switch {
	case !nameRe.MatchString(s.Name):
		return fmt.Errorf("slot.name %q: use 1-32 of a-z 0-9 _ - starting with a letter or digit", s.Name)
	case s.Name != base:
		return fmt.Errorf("slot.name %q does not match the file name %s.toml", s.Name, base)
	case s.Port < 1024 || s.Port > 65535:
		return fmt.Errorf("slot.port %d: use a free port between 1024 and 65535 (the slot listens on 127.0.0.1)", s.Port)
	}
	switch s.Backend {
	case "llama-server", "flm":
	case "":
		return errors.New("slot.backend is missing: use llama-server or flm")
	default:
		return fmt.Errorf("slot.backend %q: use llama-server or flm", s.Backend)
	}
	if s.IdleTimeout < 0 {
		return fmt.Errorf("slot.idle_timeout must not be negative")
	}
	if c.Model.ContextSize < 0 {
		return fmt.Errorf("model.context_size must not be negative")
	}
	if c.Health.Path != "" && !strings.HasPrefix(c.Health.Path, "/") {
		return fmt.Errorf("health.path %q must start with /", c.Health.Path)
	}
	return nil
}

// NPUConflictError is two enabled slots with backend flm: the NPU has
// one hardware context, and a second flm serve fails.
type NPUConflictError struct {
	File  string
	Slots [2]string
}

func (e *NPUConflictError) Error() string {
	return fmt.Sprintf("%s: slots %s and %s both use the NPU (backend flm); only one may be enabled", e.File, e.Slots[0], e.Slots[1])
}

// IsEnabled reports slot.enabled, default true.
func (c *Config) IsEnabled() bool { return c.Slot.Enabled == nil || *c.Slot.Enabled }

// LoadConfigs reads every *.toml in dir. Two slots on one port, or two
// enabled flm slots (the NPU has one hardware context), are errors.
func LoadConfigs(dir string) ([]*Config, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Config
	ports := map[int]string{}
	npu := ""
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".toml") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		c, err := ParseConfig(p, b)
		if err != nil {
			return nil, err
		}
		if other, dup := ports[c.Slot.Port]; dup {
			return nil, fmt.Errorf("%s: port %d is already used by slot %s", p, c.Slot.Port, other)
		}
		ports[c.Slot.Port] = c.Slot.Name
		if c.Slot.Backend == "flm" && c.IsEnabled() {
			if npu != "" {
				return nil, &NPUConflictError{File: p, Slots: [2]string{npu, c.Slot.Name}}
			}
			npu = c.Slot.Name
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Slot.Name < out[j].Slot.Name })
	return out, nil
}
