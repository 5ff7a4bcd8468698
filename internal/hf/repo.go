package hf

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/hal0ai/hal0/internal/api"
)

// Gated is the "gated" field: false, "auto" or "manual".
type Gated string

// UnmarshalJSON accepts the boolean false and the strings.
func (g *Gated) UnmarshalJSON(b []byte) error {
	switch s := strings.TrimSpace(string(b)); s {
	case "false", "null":
		*g = ""
	case "true":
		*g = "manual"
	default:
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("gated: %w", err)
		}
		*g = Gated(v)
	}
	return nil
}

// RepoInfo is what /api/models/{repo}/revision/{rev} tells a downloader.
type RepoInfo struct {
	ID          string         `json:"id"`
	SHA         string         `json:"sha"`
	Private     bool           `json:"private"`
	Gated       Gated          `json:"gated"`
	Disabled    bool           `json:"disabled"`
	PipelineTag string         `json:"pipeline_tag"`
	LibraryName string         `json:"library_name"`
	Tags        []string       `json:"tags"`
	CardData    map[string]any `json:"cardData"`
	Siblings    []struct {
		RFilename string `json:"rfilename"`
	} `json:"siblings"`
}

// License returns the repo's license from the card or the license: tag.
func (r *RepoInfo) License() string {
	if l, ok := r.CardData["license"].(string); ok && l != "" {
		return l
	}
	for _, t := range r.Tags {
		if l, ok := strings.CutPrefix(t, "license:"); ok {
			return l
		}
	}
	return ""
}

var commitRe = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Revision resolves rev (branch, tag, commit, refs/pr/N) of repo and
// returns the repo info with SHA pinned to a commit.
func (c *Client) Revision(ctx context.Context, repo, rev string) (*RepoInfo, error) {
	var info RepoInfo
	if err := c.revision(ctx, repo, rev, &info, func() string { return info.SHA }); err != nil {
		return nil, err
	}
	if info.Disabled {
		return nil, api.Errorf(api.CodeHubForbidden, 0, "repository %s is disabled on %s", repo, c.Endpoint)
	}
	return &info, nil
}

// revision GETs /api/models/{repo}/revision/{rev} into v and checks that
// the sha it names (read after decoding) is a commit.
func (c *Client) revision(ctx context.Context, repo, rev string, v any, sha func() string) error {
	u := fmt.Sprintf("%s/api/models/%s/revision/%s", c.Endpoint, repo, url.PathEscape(rev))
	if _, err := c.getJSON(ctx, u, repo, v); err != nil {
		return err
	}
	if !commitRe.MatchString(sha()) {
		return api.Errorf(api.CodeBadResponse, 0, "%s gave no commit for %s@%s (sha %q): is it a Hugging Face compatible endpoint?", c.Endpoint, repo, rev, sha())
	}
	return nil
}

// Entry is one file of the tree listing.
type Entry struct {
	Type string `json:"type"` // "file" or "directory"
	Path string `json:"path"`
	Size int64  `json:"size"`
	OID  string `json:"oid"` // git blob SHA-1 (of the LFS pointer, for LFS files)
	LFS  *struct {
		OID  string `json:"oid"` // SHA-256 of the content
		Size int64  `json:"size"`
	} `json:"lfs"`
}

// SHA256 returns the LFS content hash, or "".
func (e *Entry) SHA256() string {
	if e.LFS == nil {
		return ""
	}
	return strings.ToLower(e.LFS.OID)
}

// MaxTreeEntries bounds a listing; real repositories stay far below it.
const MaxTreeEntries = 200000

// Tree lists every file of repo at commit, following Link pagination.
func (c *Client) Tree(ctx context.Context, repo, commit string) ([]Entry, error) {
	next := fmt.Sprintf("%s/api/models/%s/tree/%s?recursive=true", c.Endpoint, repo, url.PathEscape(commit))
	var out []Entry
	seen := map[string]bool{}
	for pages := 0; next != ""; pages++ {
		if seen[next] {
			return nil, api.Errorf(api.CodeBadResponse, 0, "%s: tree pagination loops", c.Endpoint)
		}
		seen[next] = true
		var page []Entry
		hdr, err := c.getJSON(ctx, next, repo, &page)
		if err != nil {
			return nil, err
		}
		for _, e := range page {
			if e.Type == "file" || e.Type == "" {
				out = append(out, e)
			}
		}
		if len(out) > MaxTreeEntries {
			return nil, api.Errorf(api.CodeBadResponse, 0, "%s lists more than %d files for %s", c.Endpoint, MaxTreeEntries, repo)
		}
		next, err = nextLink(hdr, next)
		if err != nil {
			return nil, api.Errorf(api.CodeBadResponse, 0, "%s: %v", c.Endpoint, err)
		}
	}
	return out, nil
}

// nextLink extracts rel="next" from a Link header, resolved against the
// page's URL (some mirrors send relative links).
func nextLink(h http.Header, cur string) (string, error) {
	for _, v := range h.Values("Link") {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if !strings.Contains(part, `rel="next"`) && !strings.Contains(part, "rel=next") {
				continue
			}
			s, e := strings.Index(part, "<"), strings.Index(part, ">")
			if s < 0 || e < s {
				return "", fmt.Errorf("malformed Link header %q", v)
			}
			base, _ := url.Parse(cur)
			u, err := base.Parse(part[s+1 : e])
			if err != nil {
				return "", fmt.Errorf("bad next link: %v", err)
			}
			return u.String(), nil
		}
	}
	return "", nil
}
