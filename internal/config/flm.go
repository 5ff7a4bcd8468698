package config

import (
	"fmt"
	"path/filepath"
	"time"
)

// FLM configures FastFlowLM (flm), which runs LLMs on AMD NPUs. hal0 runs
// the flm command in a toolbox container image (runtime "podman"), or a
// flm installed on the host (runtime "host"), both for pulls (flm pull,
// flm list -j) and for slots with backend flm (flm serve).
type FLM struct {
	// Runtime is "podman" (the toolbox image) or "host" (FLMPath).
	Runtime string `toml:"runtime"`
	// ToolboxImage is the container image whose entrypoint is flm.
	ToolboxImage string `toml:"toolbox_image"`
	// PodmanPath is the podman executable (runtime podman).
	PodmanPath string `toml:"podman_path"`
	// FLMPath is the flm executable (runtime host).
	FLMPath string `toml:"flm_path"`
	// CacheDir is flm's model directory on the host, where each model is a
	// directory named after its Hugging Face repository. The toolbox gets
	// it bind-mounted at /var/lib/hal0/.config/flm/models; a host flm gets
	// FLM_MODEL_PATH set to its parent. Default: <state_dir>/.config/flm/models
	// (the home of the hal0 user is /var/lib/hal0).
	CacheDir string `toml:"cache_dir"`
	// CatalogTTL is how long the catalog (flm list -j) is cached. A failed
	// probe is retried after a few seconds instead.
	CatalogTTL Duration `toml:"catalog_ttl"`
	// ProbeTimeout bounds one flm list -j.
	ProbeTimeout Duration `toml:"probe_timeout"`
	// Devices are passed to the toolbox of an flm slot (globs; default
	// /dev/accel/*, the NPU).
	Devices []string `toml:"devices"`
}

// Default FLM settings.
const (
	DefaultFLMImage   = "ghcr.io/hal0ai/hal0-toolbox-flm:0.9.43"
	DefaultFLMRuntime = "podman"
)

func defaultFLM() FLM {
	return FLM{
		Runtime:      DefaultFLMRuntime,
		ToolboxImage: DefaultFLMImage,
		PodmanPath:   "podman",
		FLMPath:      "flm",
		CatalogTTL:   Duration(5 * time.Minute),
		ProbeTimeout: Duration(30 * time.Second),
		Devices:      []string{"/dev/accel/*"},
	}
}

// FLMCacheDir is flm's model directory on the host: flm.cache_dir, or
// <state_dir>/.config/flm/models.
func (c *Config) FLMCacheDir() string {
	if c.FLM.CacheDir != "" {
		return c.FLM.CacheDir
	}
	return filepath.Join(c.Paths.StateDir, ".config", "flm", "models")
}

func (f *FLM) validate() error {
	switch f.Runtime {
	case "podman":
		if f.ToolboxImage == "" {
			return fmt.Errorf("flm.toolbox_image is empty: runtime podman needs the FLM toolbox image (e.g. %s)", DefaultFLMImage)
		}
		if f.PodmanPath == "" {
			return fmt.Errorf("flm.podman_path is empty: name the podman executable")
		}
	case "host":
		if f.FLMPath == "" {
			return fmt.Errorf("flm.flm_path is empty: runtime host needs the flm executable")
		}
		if f.CacheDir != "" && filepath.Base(f.CacheDir) != "models" {
			// flm appends models/ to FLM_MODEL_PATH, so only a directory
			// named models can be handed to a host flm.
			return fmt.Errorf("flm.cache_dir = %q: with runtime host it must end in /models (flm keeps models in $FLM_MODEL_PATH/models)", f.CacheDir)
		}
	default:
		return fmt.Errorf("flm.runtime = %q: use podman (the toolbox image) or host (flm_path)", f.Runtime)
	}
	if f.CacheDir != "" && !filepath.IsAbs(f.CacheDir) {
		return fmt.Errorf("flm.cache_dir = %q: must be an absolute path", f.CacheDir)
	}
	if f.CatalogTTL < 0 {
		return fmt.Errorf("flm.catalog_ttl must not be negative")
	}
	if f.ProbeTimeout < Duration(time.Second) {
		return fmt.Errorf("flm.probe_timeout = %v: must be at least 1s", f.ProbeTimeout)
	}
	return nil
}
