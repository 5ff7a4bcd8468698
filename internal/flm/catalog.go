package flm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Entry is one model of FLM's catalog, as `flm list -j` prints it: the
// model_list.json entry with name and model overwritten by the tag, plus
// whether it is installed.
type Entry struct {
	Tag       string   // family:size, e.g. qwen3:4b
	Installed bool     // flm found config.json and every file, compatible with this flm
	Size      int64    // bytes, approximate (model_list.json "size")
	Footprint float64  // GB of memory when running
	URL       string   // https://huggingface.co/<owner>/<repo>[/resolve/<rev>]
	Files     []string // file names inside the model directory
	Labels    []string // vision, reasoning, tool-calling, embeddings, ...
	ASR       bool
	VLM       bool
	Family    string // details.family
	Context   int    // default_context_length
}

// RepoDir is the name of the model's directory in flm's cache: the
// Hugging Face repository named in its url (flm downloads
// FastFlowLM/Qwen3-4B-NPU2 into <models>/Qwen3-4B-NPU2). "" when the url
// does not name one.
func (e *Entry) RepoDir() string {
	u, err := url.Parse(e.URL)
	if err != nil {
		return ""
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 {
		return ""
	}
	name := parts[1]
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `\`) {
		return ""
	}
	return name
}

// Capabilities maps flm's labels to hal0's capability names, as the
// Python hal0 did: embeddings → embed; reasoning or tool-calling → chat
// (plus asr when the model also transcribes); asr alone → asr; anything
// else chats. Vision models add vision.
func (e *Entry) Capabilities() []string {
	has := func(l string) bool {
		for _, x := range e.Labels {
			if x == l {
				return true
			}
		}
		return false
	}
	var out []string
	switch {
	case has("embeddings"):
		out = []string{"embed"}
	case has("reasoning") || has("tool-calling"):
		out = []string{"chat"}
		if e.ASR {
			out = append(out, "asr")
		}
	case e.ASR:
		out = []string{"asr"}
	default:
		out = []string{"chat"}
	}
	if e.VLM || has("vision") {
		out = append(out, "vision")
	}
	return out
}

// Catalog is the parsed output of `flm list -j`.
type Catalog struct {
	Entries []Entry
	// Warnings are the lines flm printed before its JSON ([WARNING] …).
	Warnings []string
	byTag    map[string]int
}

// Get returns the entry for tag.
func (c *Catalog) Get(tag string) (*Entry, bool) {
	if c == nil {
		return nil, false
	}
	i, ok := c.byTag[tag]
	if !ok {
		return nil, false
	}
	return &c.Entries[i], true
}

// IsTag reports whether id names a model in the catalog. Only ids with a
// ":" can: FLM tags are family:size.
func (c *Catalog) IsTag(id string) bool {
	if !strings.Contains(id, ":") {
		return false
	}
	_, ok := c.Get(id)
	return ok
}

// Tags lists the catalog's tags, sorted.
func (c *Catalog) Tags() []string {
	out := make([]string, 0, len(c.Entries))
	for _, e := range c.Entries {
		out = append(out, e.Tag)
	}
	sort.Strings(out)
	return out
}

// rawEntry is one element of list -j's "models". Numbers and labels are
// decoded loosely: model_list.json is hand-written upstream.
type rawEntry struct {
	Model     string          `json:"model"`
	Name      string          `json:"name"`
	Installed bool            `json:"installed"`
	Size      json.Number     `json:"size"`
	Footprint json.Number     `json:"footprint"`
	URL       string          `json:"url"`
	Files     []string        `json:"files"`
	Label     json.RawMessage `json:"label"`
	ASR       bool            `json:"asr"`
	VLM       bool            `json:"vlm"`
	Context   json.Number     `json:"default_context_length"`
	Details   struct {
		Family string `json:"family"`
	} `json:"details"`
}

// ParseList parses the output of `flm list -j`. flm may print status or
// [WARNING] lines before the JSON (a version warning, "Using custom model
// list path"), so the JSON is read from the first "{"; the lines before it
// are kept as warnings.
func ParseList(out []byte) (*Catalog, error) {
	i := bytes.IndexByte(out, '{')
	if i < 0 {
		return nil, fmt.Errorf("flm list -j printed no JSON object: %q", firstLine(out))
	}
	var doc struct {
		Models []rawEntry `json:"models"`
	}
	dec := json.NewDecoder(bytes.NewReader(out[i:]))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("flm list -j printed malformed JSON: %v", err)
	}
	if doc.Models == nil {
		return nil, errors.New(`flm list -j printed JSON without "models"`)
	}
	c := &Catalog{byTag: map[string]int{}}
	for _, l := range strings.FieldsFunc(string(out[:i]), func(r rune) bool { return r == '\n' || r == '\r' }) {
		if l = strings.TrimSpace(StripANSI(l)); l != "" {
			c.Warnings = append(c.Warnings, l)
		}
	}
	for _, r := range doc.Models {
		tag := r.Model
		if tag == "" {
			tag = r.Name
		}
		if tag == "" {
			continue
		}
		if _, dup := c.byTag[tag]; dup {
			continue
		}
		e := Entry{Tag: tag, Installed: r.Installed, URL: r.URL, Files: r.Files, ASR: r.ASR, VLM: r.VLM, Family: r.Details.Family}
		if f, err := r.Size.Float64(); err == nil && f > 0 {
			e.Size = int64(f)
		}
		if f, err := r.Footprint.Float64(); err == nil {
			e.Footprint = f
		}
		if n, err := r.Context.Int64(); err == nil {
			e.Context = int(n)
		}
		e.Labels = labels(r.Label)
		c.byTag[tag] = len(c.Entries)
		c.Entries = append(c.Entries, e)
	}
	return c, nil
}

// labels accepts "label": "vision" as well as "label": ["vision", ...].
func labels(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	var one string
	if json.Unmarshal(raw, &one) == nil && one != "" {
		return []string{one}
	}
	return nil
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(StripANSI(string(b)))
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// Complete reports whether dir holds every file of e (at least
// config.json when the catalog lists none), which is what flm itself
// checks to call a model installed: presence, not content.
func (e *Entry) Complete(dir string) bool {
	files := e.Files
	if len(files) == 0 {
		files = []string{"config.json"}
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// MountCheck compares the catalog with the host's cache directory: the
// tags whose files are all in cacheDir although flm says they are not
// installed. When flm reports nothing installed at all while such models
// exist, flm does not see cacheDir (the toolbox was started without the
// cache bind-mounted, or a host flm looks elsewhere), and whatever it
// pulls lands where hal0 cannot find it.
func (c *Catalog) MountCheck(cacheDir string) (unseen []string, blind bool) {
	installed := 0
	for i := range c.Entries {
		e := &c.Entries[i]
		if e.Installed {
			installed++
			continue
		}
		if d := e.RepoDir(); d != "" && e.Complete(filepath.Join(cacheDir, d)) {
			unseen = append(unseen, e.Tag)
		}
	}
	return unseen, installed == 0 && len(unseen) > 0
}
