package api

import "time"

// FLMCatalog is GET /api/flm/models: FastFlowLM's catalog (flm list -j),
// the models the NPU can run, each with whether hal0 has it and whether a
// Pull makes sense, for the dashboard's NPU rows.
type FLMCatalog struct {
	Runtime  string    `json:"runtime"`         // podman (the toolbox image) or host
	Image    string    `json:"image,omitempty"` // the toolbox image (runtime podman)
	CacheDir string    `json:"cache_dir"`       // flm's model directory on the host
	ProbedAt time.Time `json:"probed_at"`       // when flm list -j ran
	// Warning says that flm does not see CacheDir (the toolbox runs
	// without the cache mount): pulls would vanish.
	Warning string     `json:"warning,omitempty"`
	Models  []FLMModel `json:"models"`
}

// FLMModel is one tag of FLM's catalog.
type FLMModel struct {
	ID            string   `json:"id"` // the tag, family:size; also the registry id once pulled
	SizeBytes     int64    `json:"size_bytes"`
	FootprintGB   float64  `json:"footprint_gb,omitempty"`
	ContextLength int      `json:"context_length,omitempty"`
	Capabilities  []string `json:"capabilities"`
	Labels        []string `json:"labels,omitempty"`
	Backends      []string `json:"backends"` // ["npu"]
	Repo          string   `json:"repo,omitempty"`
	// Installed: in hal0's registry. FLMInstalled: flm has its files
	// (it may have been pulled without hal0).
	Installed    bool `json:"installed"`
	FLMInstalled bool `json:"flm_installed"`
	// Pullable is true for every catalog tag: POST /api/models/{tag}/pull
	// downloads it. Files in flm's cache that hal0 did not record are not
	// trusted (flm checks presence only), so a model pulled outside hal0
	// is downloaded again.
	Pullable bool `json:"pullable"`
}
