// Package catalog indexes Hugging Face models into a local catalog: the
// organisations, collections and searches of [[catalog.source]] are listed
// on the hub (following Link pagination, honouring 429 and rate-limit
// headers), deduplicated under one global limit, and each repository is
// inspected with bounded concurrency for what an import would download
// (the pull engine's own default selection), its license, task, gating
// and chat template.
//
// The catalog is a JSON file beside the registry (catalog/catalog.json
// under the state directory), replaced atomically. It holds metadata only:
// importing an entry is an ordinary pull of hf://org/name.
package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/fsutil"
	"github.com/hal0ai/hal0/internal/registry"
)

// FileVersion is the format version of catalog.json.
const FileVersion = 1

// File is the catalog on disk.
type File struct {
	Version  int    `json:"version"`
	Endpoint string `json:"endpoint,omitempty"`
	// IndexedAt is when the last index that wrote the file finished; zero
	// before the first one.
	IndexedAt time.Time `json:"indexed_at"`
	// SourcesKey identifies the sources, limit and options the entries came
	// from: when the configuration changes, an index is due at once.
	SourcesKey string             `json:"sources_key,omitempty"`
	Sources    []string           `json:"sources,omitempty"`
	Entries    []api.CatalogEntry `json:"entries"`
}

// Get returns the entry of a model id (case-insensitive, like the hub).
func (f *File) Get(id string) (*api.CatalogEntry, bool) {
	for i := range f.Entries {
		if strings.EqualFold(f.Entries[i].ID, id) {
			return &f.Entries[i], true
		}
	}
	return nil, false
}

// Store is catalog.json on disk.
type Store struct{ path string }

// Open returns the store at path (config.Paths.CatalogFile()).
func Open(path string) *Store { return &Store{path: path} }

// Path is the catalog file.
func (s *Store) Path() string { return s.path }

func (s *Store) lockPath() string {
	return filepath.Join(filepath.Dir(s.path), "."+filepath.Base(s.path)+".lock")
}

// Load reads the catalog. A missing file is an empty catalog. Writers
// replace the file with rename(2), so a reader needs no lock.
func (s *Store) Load() (*File, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return &File{Version: FileVersion, Entries: []api.CatalogEntry{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("catalog %s is not valid JSON (%v): remove it and run `hal0 catalog index` to rebuild it", s.path, err)
	}
	if f.Version > FileVersion {
		return nil, fmt.Errorf("catalog %s has format version %d, newer than this hal0 understands (%d): run `hal0 catalog index` with this version to rewrite it", s.path, f.Version, FileVersion)
	}
	if f.Entries == nil {
		f.Entries = []api.CatalogEntry{}
	}
	return &f, nil
}

// Lock takes the writers' lock; indexes never run at once.
func (s *Store) Lock(ctx context.Context) (*fsutil.Lock, error) {
	l, err := fsutil.LockFileContext(ctx, s.lockPath())
	if err == nil {
		s.adopt(filepath.Dir(s.path), s.lockPath())
	}
	return l, err
}

// TryLock takes the writers' lock, or fails with fsutil.ErrLocked.
func (s *Store) TryLock() (*fsutil.Lock, error) {
	l, err := fsutil.TryLockFile(s.lockPath())
	if err == nil {
		s.adopt(filepath.Dir(s.path), s.lockPath())
	}
	return l, err
}

// Save replaces the catalog atomically. The caller holds the lock.
func (s *Store) Save(f *File) error {
	f.Version = FileVersion
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFile(s.path, append(data, '\n'), 0o644); err != nil {
		return err
	}
	s.adopt(s.path)
	return nil
}

// adopt gives paths the owner of the state directory when root writes
// them: a catalog indexed by hand (sudo hal0 catalog index) must stay
// writable for hal0-catalog.service, which runs as hal0.
func (s *Store) adopt(paths ...string) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(filepath.Dir(filepath.Dir(s.path)))
	if err != nil {
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return
	}
	for _, p := range paths {
		os.Lchown(p, int(st.Uid), int(st.Gid))
	}
}

// SourcesKey fingerprints what an index depends on besides the hub.
func SourcesKey(cfg *config.Catalog, sources []config.CatalogSource, endpoint string) string {
	b, _ := json.Marshal(struct {
		Sources   []config.CatalogSource
		Limit     int
		Full      bool
		Certified []string
		Endpoint  string
	}{sources, cfg.Limit, cfg.Full, cfg.CertifiedOrgs, endpoint})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Due reports whether an index is due: never indexed, older than interval,
// or indexed from other sources. The reason is for the log.
func Due(f *File, key string, interval time.Duration, now time.Time) (bool, string) {
	switch {
	case f.IndexedAt.IsZero():
		return true, "the catalog was never indexed"
	case f.SourcesKey != key:
		return true, "the catalog sources changed"
	case now.Sub(f.IndexedAt) >= interval:
		return true, fmt.Sprintf("last indexed %s ago (interval %s)", now.Sub(f.IndexedAt).Round(time.Second), interval)
	}
	next := f.IndexedAt.Add(interval)
	return false, fmt.Sprintf("indexed at %s; next index due at %s (catalog.interval = %s)",
		f.IndexedAt.UTC().Format(time.RFC3339), next.UTC().Format(time.RFC3339), interval)
}

// Overlay fills Installed and MetadataOnly from the registry: an entry is
// metadata only until some import of its repository is installed.
func Overlay(entries []api.CatalogEntry, reg *registry.Registry) {
	byRepo := map[string][]string{}
	if reg != nil {
		for _, m := range reg.List() {
			if m.HFRepo != "" {
				k := strings.ToLower(m.HFRepo)
				byRepo[k] = append(byRepo[k], m.ID)
			}
		}
	}
	for i := range entries {
		entries[i].Installed = byRepo[strings.ToLower(entries[i].ID)]
		entries[i].MetadataOnly = len(entries[i].Installed) == 0
	}
}
