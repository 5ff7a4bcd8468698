package config

import "path/filepath"

// File returns the configuration file path.
func (p Paths) File() string { return filepath.Join(p.ConfigDir, "hal0.toml") }

// RegistryFile is the model registry.
func (p Paths) RegistryFile() string { return filepath.Join(p.StateDir, "registry", "registry.toml") }

// JobsDir holds one JSON record per pull job.
func (p Paths) JobsDir() string { return filepath.Join(p.StateDir, "jobs") }

// PullDir is where pulled models are installed.
func (p Paths) PullDir() string { return filepath.Join(p.ModelRoot, "local") }

// StagingDir holds partial downloads. It sits inside PullDir so that the
// final rename never crosses a filesystem boundary.
func (p Paths) StagingDir() string { return filepath.Join(p.PullDir(), ".partial") }

// SlotConfigDir holds /etc/hal0/slots/<name>.toml.
func (p Paths) SlotConfigDir() string { return filepath.Join(p.ConfigDir, "slots") }

// SlotStateDir holds /var/lib/hal0/slots/<name>/state.json.
func (p Paths) SlotStateDir(name string) string { return filepath.Join(p.StateDir, "slots", name) }

// APISocket is hal0-apid's unix socket.
func (p Paths) APISocket() string { return filepath.Join(p.RuntimeDir, "api.sock") }

// APIEnvFile holds the API bearer token.
func (p Paths) APIEnvFile() string { return filepath.Join(p.ConfigDir, "api.env") }
