package api

import "time"

// CatalogEntry is one model of the catalog (`hal0 catalog index`): what the
// hub says about a repository, plus what an import of it would download.
// Entries are metadata only until imported; nothing of the model is on
// disk because it is listed.
type CatalogEntry struct {
	ID     string `json:"id"`      // org/name
	URI    string `json:"uri"`     // hf://org/name, importable as is (add ?format=qcow2 for a disk image)
	WebURL string `json:"web_url"` // the repository's page on the hub
	// Format is the weights' format in the default selection: gguf,
	// safetensors, onnx, pytorch or files.
	Format string `json:"format"`
	Quant  string `json:"quant,omitempty"` // the GGUF quant an import picks by default
	// SizeBytes is what an import downloads with the default selection
	// (one quant, its shards and projector; not the repository's total).
	SizeBytes    int64  `json:"size_bytes"`
	Files        int    `json:"files"` // files in that selection
	Task         string `json:"task,omitempty"`
	License      string `json:"license,omitempty"`
	Downloads    int64  `json:"downloads"`
	Likes        int64  `json:"likes"`
	LastModified string `json:"last_modified,omitempty"` // RFC 3339, UTC
	Gated        bool   `json:"gated"`
	GatedMode    string `json:"gated_mode,omitempty"` // auto or manual
	Private      bool   `json:"private,omitempty"`
	// HasChatTemplate says whether a chat template was found;
	// ChatTemplateSource says where: tokenizer_config.json,
	// chat_template.jinja, the GGUF file's path, or "hub" (the hub's own
	// summary, all that is known without a full index).
	HasChatTemplate    bool   `json:"has_chat_template"`
	ChatTemplateSource string `json:"chat_template_source,omitempty"`
	// Full is true when the repository's files were inspected (a full
	// index that could read them; a gated repository without a token
	// cannot be).
	Full bool `json:"full"`
	// MetadataOnly is true while no import of the model is installed;
	// Installed lists the registry ids of those that are. The API fills
	// both from the registry at request time.
	MetadataOnly bool     `json:"metadata_only"`
	Installed    []string `json:"installed,omitempty"`
	Certified    bool     `json:"certified"` // its organisation is in catalog.certified_orgs
	Commit       string   `json:"commit,omitempty"`
	// Sources are the catalog sources that listed it, e.g. "org:Qwen",
	// "collection:Qwen/qwen3-…", "search:gguf".
	Sources   []string  `json:"sources"`
	IndexedAt time.Time `json:"indexed_at"`
	// Error says why details could not be refreshed in the last index; the
	// details are then those of the index before, when there was one.
	Error string `json:"error,omitempty"`
}

// CatalogList is GET /api/catalog.
type CatalogList struct {
	// IndexedAt is when the catalog was last indexed; null before the first
	// index.
	IndexedAt *time.Time     `json:"indexed_at"`
	Endpoint  string         `json:"endpoint,omitempty"`
	Total     int            `json:"total"` // entries in the catalog
	Count     int            `json:"count"` // entries in this answer
	Entries   []CatalogEntry `json:"entries"`
}
