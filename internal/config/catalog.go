package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Catalog configures the model catalog: which Hugging Face organisations,
// collections and searches `hal0 catalog index` reads, and how often the
// timer re-indexes.
type Catalog struct {
	// Interval is how old the catalog may get before `hal0 catalog index
	// --if-due` (what hal0-catalog.timer runs) indexes again.
	Interval Duration `toml:"interval"`
	// Limit bounds the number of entries across all sources together.
	Limit int `toml:"limit"`
	// CertifiedOrgs are the organisations whose models are marked
	// certified (compared case-insensitively).
	CertifiedOrgs []string `toml:"certified_orgs"`
	// Full is the default of Source.Full: look inside repositories for a
	// chat template (tokenizer_config.json, chat_template.jinja, the GGUF
	// header) instead of trusting the hub's summary.
	Full bool `toml:"full"`
	// Concurrency bounds the repositories inspected at once.
	Concurrency int `toml:"concurrency"`
	// Sources are the [[catalog.source]] tables, indexed in order.
	Sources []CatalogSource `toml:"source"`
}

// CatalogSource is one [[catalog.source]]: organisations, collections or a
// search on the hub, narrowed by task and search text.
type CatalogSource struct {
	Orgs        []string `toml:"orgs"`        // authors, e.g. ["Qwen", "unsloth"]
	Collections []string `toml:"collections"` // "namespace/slug-<24 hex id>"
	Task        string   `toml:"task"`        // pipeline_tag, e.g. "text-generation"
	Search      string   `toml:"search"`      // free text matched against model ids
	Sort        string   `toml:"sort"`        // downloads (default), likes or lastModified
	Direction   string   `toml:"direction"`   // desc (default) or asc
	Limit       int      `toml:"limit"`       // entries from this source; 0 = up to the global limit
	Full        *bool    `toml:"full"`        // unset: [catalog] full
}

// Catalog defaults.
const (
	DefaultCatalogInterval    = 24 * time.Hour
	DefaultCatalogLimit       = 500
	DefaultCatalogConcurrency = 4
)

// CatalogSorts are the orders a source can ask the hub for.
var CatalogSorts = []string{"downloads", "likes", "lastModified"}

var (
	orgRe        = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,95}$`)
	collectionRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,95}/[A-Za-z0-9._-]{1,200}-[0-9a-f]{24}$`)
	taskRe       = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
)

// FullOr returns the source's full flag, or def when the source leaves it
// unset.
func (s CatalogSource) FullOr(def bool) bool {
	if s.Full == nil {
		return def
	}
	return *s.Full
}

// Validate checks one source; where names it in errors ("catalog.source[0]"
// or "--org").
func (s *CatalogSource) Validate(where string) error {
	if len(s.Orgs) == 0 && len(s.Collections) == 0 && s.Search == "" && s.Task == "" {
		return fmt.Errorf("%s: names no orgs, collections, search or task: add at least one (e.g. orgs = [\"Qwen\"])", where)
	}
	for _, o := range s.Orgs {
		if !orgRe.MatchString(o) || strings.Contains(o, "..") {
			return fmt.Errorf("%s: organisation %q: letters, digits, - _ . only (e.g. Qwen)", where, o)
		}
	}
	for _, c := range s.Collections {
		if !collectionRe.MatchString(c) {
			return fmt.Errorf("%s: collection %q: want namespace/slug-id as in the collection's URL, e.g. Qwen/qwen3-67dd247413f0e2e4f99a6f4b", where, c)
		}
	}
	if s.Task != "" && !taskRe.MatchString(s.Task) {
		return fmt.Errorf("%s: task %q: a pipeline tag such as text-generation", where, s.Task)
	}
	if strings.ContainsFunc(s.Search, func(r rune) bool { return r < 0x20 || r == 0x7f }) || len(s.Search) > 200 {
		return fmt.Errorf("%s: search %q: at most 200 printable characters", where, s.Search)
	}
	switch s.Sort {
	case "", "downloads", "likes", "lastModified":
	default:
		return fmt.Errorf("%s: sort %q: use one of %s", where, s.Sort, strings.Join(CatalogSorts, ", "))
	}
	switch s.Direction {
	case "", "desc", "asc":
	default:
		return fmt.Errorf("%s: direction %q: use desc or asc", where, s.Direction)
	}
	if s.Limit < 0 {
		return fmt.Errorf("%s: limit = %d: must not be negative", where, s.Limit)
	}
	return nil
}

func (c *Catalog) validate() error {
	switch {
	case c.Interval < Duration(time.Minute):
		return fmt.Errorf("catalog.interval = %v: must be at least 1m", c.Interval)
	case c.Limit < 1 || c.Limit > 100000:
		return fmt.Errorf("catalog.limit = %d: must be between 1 and 100000", c.Limit)
	case c.Concurrency < 1 || c.Concurrency > 32:
		return fmt.Errorf("catalog.concurrency = %d: must be between 1 and 32", c.Concurrency)
	}
	for _, o := range c.CertifiedOrgs {
		if !orgRe.MatchString(o) {
			return fmt.Errorf("catalog.certified_orgs: %q is not an organisation name", o)
		}
	}
	for i := range c.Sources {
		if err := c.Sources[i].Validate(fmt.Sprintf("catalog.source[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

// CatalogFile is the catalog store: beside the registry, never inside it.
func (p Paths) CatalogFile() string { return filepath.Join(p.StateDir, "catalog", "catalog.json") }
