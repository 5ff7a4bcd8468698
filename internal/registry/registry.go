// Package registry reads and writes registry.toml, the list of installed
// models.
//
// The file format is the Python hal0's: one [models."<id>"] table per model
// with name, path, size_bytes, license, capabilities, hf_repo, hf_filename,
// tags, backends, mmproj, defaults and metadata. hal0 adds what a verified
// multi-file pull needs (source, revision, commit, format and one
// [[models."<id>".files]] entry per file with size and SHA-256). Keys this
// package does not know are kept as they were, so a registry shared with
// other tools loses nothing when hal0 rewrites it.
//
// Writers serialise on a lock file next to the registry and replace it
// atomically, so several processes (apid, pull workers, the CLI) can write
// at once, and a crash leaves either the old or the new file.
package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/hal0ai/hal0/internal/fsutil"
)

// Model is one registry entry.
type Model struct {
	ID string `toml:"-" json:"id"`

	Name string `toml:"name,omitempty" json:"name,omitempty"`
	Path string `toml:"path" json:"path"`
	// Dir is the install directory; Files are relative to it. Path is the
	// file a runtime opens (a GGUF) or Dir itself.
	Dir          string         `toml:"dir,omitempty" json:"dir,omitempty"`
	SizeBytes    int64          `toml:"size_bytes" json:"size_bytes"`
	License      string         `toml:"license,omitempty" json:"license,omitempty"`
	Capabilities []string       `toml:"capabilities,omitempty" json:"capabilities,omitempty"`
	HFRepo       string         `toml:"hf_repo,omitempty" json:"hf_repo,omitempty"`
	HFFilename   string         `toml:"hf_filename,omitempty" json:"hf_filename,omitempty"`
	Tags         []string       `toml:"tags,omitempty" json:"tags,omitempty"`
	Backends     []string       `toml:"backends,omitempty" json:"backends,omitempty"`
	MMProj       string         `toml:"mmproj,omitempty" json:"mmproj,omitempty"`
	Pullable     bool           `toml:"pullable,omitempty" json:"pullable,omitempty"`
	Defaults     map[string]any `toml:"defaults,omitempty" json:"defaults,omitempty"`
	Metadata     map[string]any `toml:"metadata,omitempty" json:"metadata,omitempty"`

	// Added by the Go hal0.
	Source   string `toml:"source,omitempty" json:"source,omitempty"`     // hf, flm or local
	Endpoint string `toml:"endpoint,omitempty" json:"endpoint,omitempty"` // hub the files came from
	Revision string `toml:"revision,omitempty" json:"revision,omitempty"` // as asked for (branch, tag…)
	Commit   string `toml:"commit,omitempty" json:"commit,omitempty"`     // the pinned 40-hex commit
	Format   string `toml:"format,omitempty" json:"format,omitempty"`     // dir or qcow2
	// Image is the qcow2 disk image of a format=qcow2 import (also Path);
	// its files, listed in Files, are inside the image's ext4 filesystem.
	Image       string `toml:"image,omitempty" json:"image,omitempty"`
	ImageSHA256 string `toml:"image_sha256,omitempty" json:"image_sha256,omitempty"`
	ImageSize   int64  `toml:"image_size,omitempty" json:"image_size,omitempty"`
	InstalledAt string `toml:"installed_at,omitempty" json:"installed_at,omitempty"`
	Files       []File `toml:"files,omitempty" json:"files,omitempty"`
	// Gated is the hub's "gated" field when the model was pulled ("auto"
	// or "manual"): its license binds each user, so /hf/ does not pass it
	// on unless told to (api.hf_serve_gated).
	Gated string `toml:"gated,omitempty" json:"gated,omitempty"`

	// Extra holds keys this version does not know, written back unchanged.
	Extra map[string]any `toml:"-" json:"extra,omitempty"`
}

// File is one installed file of a model.
type File struct {
	Path   string `toml:"path" json:"path"` // relative to Model.Dir
	Size   int64  `toml:"size" json:"size"`
	SHA256 string `toml:"sha256" json:"sha256"`
	GitOID string `toml:"git_oid,omitempty" json:"git_oid,omitempty"` // git blob SHA-1 for non-LFS files
}

// Registry is an in-memory snapshot of the file.
type Registry struct {
	Models map[string]*Model
	// top keeps unknown top-level tables (other than models).
	top map[string]any
}

// Get returns the model with this id.
func (r *Registry) Get(id string) (*Model, bool) {
	m, ok := r.Models[id]
	return m, ok
}

// Put inserts or replaces a model.
func (r *Registry) Put(m *Model) {
	if r.Models == nil {
		r.Models = map[string]*Model{}
	}
	r.Models[m.ID] = m
}

// Delete removes a model and reports whether it existed.
func (r *Registry) Delete(id string) bool {
	_, ok := r.Models[id]
	delete(r.Models, id)
	return ok
}

// List returns the models sorted by id.
func (r *Registry) List() []*Model {
	out := make([]*Model, 0, len(r.Models))
	for _, m := range r.Models {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// CorruptError reports a registry file that does not parse. hal0 never
// overwrites such a file; a human has to look at it.
type CorruptError struct {
	File string
	Line int
	Msg  string
}

func (e *CorruptError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	return fmt.Sprintf("registry %s: %s; fix the file or move it aside (hal0 will not overwrite a registry it cannot read)", loc, e.Msg)
}

// ErrCorrupt is matched by errors.Is for any CorruptError.
var ErrCorrupt = errors.New("corrupt registry")

func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Store is the registry file on disk.
type Store struct {
	path string
}

// Open returns the store at path (typically
// /var/lib/hal0/registry/registry.toml). Nothing is read yet.
func Open(path string) *Store { return &Store{path: path} }

// Path returns the registry file's path.
func (s *Store) Path() string { return s.path }

func (s *Store) lockPath() string {
	return filepath.Join(filepath.Dir(s.path), "."+filepath.Base(s.path)+".lock")
}

// Load reads a snapshot. A missing file is an empty registry. Readers need
// no lock: writers replace the file with rename(2), so a read sees one whole
// version.
func (s *Store) Load() (*Registry, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return &Registry{Models: map[string]*Model{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read registry: %w", err)
	}
	return Parse(s.path, data)
}

// Update runs fn on the current registry under the write lock and saves the
// result atomically if fn returns nil. If the file is corrupt, fn is not
// called and nothing is written.
func (s *Store) Update(ctx context.Context, fn func(*Registry) error) error {
	lk, err := fsutil.LockFileContext(ctx, s.lockPath())
	if err != nil {
		return err
	}
	defer lk.Unlock()
	r, err := s.Load()
	if err != nil {
		return err
	}
	if err := fn(r); err != nil {
		return err
	}
	data, err := Encode(r)
	if err != nil {
		return err
	}
	return fsutil.WriteFile(s.path, data, 0o644)
}

// lockCtx takes the lock, giving up when ctx ends. flock(2) has no timeout,
// so the blocking call runs in a goroutine that releases the lock if the
// caller already left.

// knownKeys are the TOML keys Model decodes; anything else goes to Extra.
var knownKeys = map[string]bool{
	"name": true, "path": true, "size_bytes": true, "license": true, "capabilities": true,
	"hf_repo": true, "hf_filename": true, "tags": true, "backends": true, "mmproj": true,
	"pullable": true, "dir": true, "defaults": true, "metadata": true, "source": true, "endpoint": true,
	"revision": true, "commit": true, "format": true, "installed_at": true, "files": true,
	"image": true, "image_sha256": true, "image_size": true,
	"gated": true,
}

// Parse decodes registry data. file is used in error messages.
func Parse(file string, data []byte) (*Registry, error) {
	var raw map[string]any
	if _, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &CorruptError{File: file, Line: pe.Position.Line, Msg: pe.Message}
		}
		return nil, &CorruptError{File: file, Msg: err.Error()}
	}
	r := &Registry{Models: map[string]*Model{}, top: map[string]any{}}
	for k, v := range raw {
		if k != "models" {
			r.top[k] = v
		}
	}
	add := func(id string, fields map[string]any) error {
		if id == "" {
			return &CorruptError{File: file, Msg: "a model has an empty id"}
		}
		if _, dup := r.Models[id]; dup {
			return &CorruptError{File: file, Msg: fmt.Sprintf("model %q appears twice", id)}
		}
		m, err := decodeModel(fields)
		if err != nil {
			return &CorruptError{File: file, Msg: fmt.Sprintf("model %q: %v", id, err)}
		}
		m.ID = id
		r.Models[id] = m
		return nil
	}
	switch ms := raw["models"].(type) {
	case nil:
	case map[string]any:
		for id, v := range ms {
			fields, ok := v.(map[string]any)
			if !ok {
				return nil, &CorruptError{File: file, Msg: fmt.Sprintf("models.%q is not a table", id)}
			}
			if err := add(id, fields); err != nil {
				return nil, err
			}
		}
	case []map[string]any:
		// The Python hal0 also accepts [[models]] with an id field.
		for i, fields := range ms {
			id, _ := fields["id"].(string)
			if id == "" {
				return nil, &CorruptError{File: file, Msg: fmt.Sprintf("[[models]] entry %d has no id", i+1)}
			}
			delete(fields, "id")
			if err := add(id, fields); err != nil {
				return nil, err
			}
		}
	default:
		return nil, &CorruptError{File: file, Msg: "models must be a table of tables"}
	}
	return r, nil
}

// decodeModel maps a TOML table onto Model by re-encoding it, which reuses
// the TOML library's type checks instead of hand-written ones.
func decodeModel(fields map[string]any) (*Model, error) {
	var buf bytes.Buffer
	known := map[string]any{}
	extra := map[string]any{}
	for k, v := range fields {
		if knownKeys[k] {
			known[k] = v
		} else {
			extra[k] = v
		}
	}
	if err := toml.NewEncoder(&buf).Encode(known); err != nil {
		return nil, err
	}
	m := &Model{}
	if _, err := toml.NewDecoder(&buf).Decode(m); err != nil {
		return nil, err
	}
	if len(extra) > 0 {
		m.Extra = extra
	}
	return m, nil
}

const header = "# hal0 model registry. hal0 rewrites this file atomically under a lock;\n# keys it does not know are preserved.\n\n"

// Encode renders the registry as TOML with sorted keys.
func Encode(r *Registry) ([]byte, error) {
	models := map[string]any{}
	for id, m := range r.Models {
		if id == "" || strings.ContainsAny(id, "\n\r") {
			return nil, fmt.Errorf("registry: refusing to write model id %q", id)
		}
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(m); err != nil {
			return nil, fmt.Errorf("encode model %q: %w", id, err)
		}
		var fields map[string]any
		if _, err := toml.NewDecoder(&buf).Decode(&fields); err != nil {
			return nil, err
		}
		for k, v := range m.Extra {
			if _, clash := fields[k]; !clash {
				fields[k] = v
			}
		}
		models[id] = fields
	}
	doc := map[string]any{}
	for k, v := range r.top {
		doc[k] = v
	}
	doc["models"] = models
	var out bytes.Buffer
	out.WriteString(header)
	if err := toml.NewEncoder(&out).Encode(doc); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
