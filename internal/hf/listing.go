package hf

import (
	"context"
	"net/url"
	"strings"

	"github.com/hal0ai/hal0/internal/api"
)

// ModelSummary is a model as the hub describes it in search results
// (GET /api/models), collection items and /api/models/{id}. Fields an
// answer leaves out stay zero.
type ModelSummary struct {
	ID           string         `json:"id"`
	Author       string         `json:"author"`
	SHA          string         `json:"sha"`
	Private      bool           `json:"private"`
	Gated        Gated          `json:"gated"`
	Disabled     bool           `json:"disabled"`
	PipelineTag  string         `json:"pipeline_tag"`
	LibraryName  string         `json:"library_name"`
	Tags         []string       `json:"tags"`
	Downloads    int64          `json:"downloads"`
	Likes        int64          `json:"likes"`
	LastModified string         `json:"lastModified"`
	CardData     map[string]any `json:"cardData"`
	// Config carries the tokenizer config the hub extracted, chat template
	// included, for transformers repositories.
	Config *struct {
		TokenizerConfig map[string]any `json:"tokenizer_config"`
	} `json:"config"`
	// GGUF is the hub's summary of a GGUF repository (architecture,
	// context_length, chat_template, …).
	GGUF map[string]any `json:"gguf"`
}

// License returns the license from the card or the license: tag.
func (m *ModelSummary) License() string {
	r := RepoInfo{Tags: m.Tags, CardData: m.CardData}
	return r.License()
}

// HubChatTemplate reports whether the hub's own summary carries a chat
// template (config.tokenizer_config.chat_template or gguf.chat_template).
func (m *ModelSummary) HubChatTemplate() bool {
	if m.Config != nil && NonEmptyTemplate(m.Config.TokenizerConfig["chat_template"]) {
		return true
	}
	return NonEmptyTemplate(m.GGUF["chat_template"])
}

// NonEmptyTemplate reports whether a chat_template value holds a template:
// a non-empty string, or a list of {name, template} with one non-empty.
func NonEmptyTemplate(v any) bool {
	switch t := v.(type) {
	case string:
		return strings.TrimSpace(t) != ""
	case []any:
		for _, x := range t {
			if m, ok := x.(map[string]any); ok && NonEmptyTemplate(m["template"]) {
				return true
			}
		}
	}
	return false
}

// ListFields are the fields a catalog asks the search for (expand=…): the
// default set lacks gated and lastModified.
var ListFields = []string{"author", "cardData", "downloads", "gated", "lastModified", "library_name", "likes", "pipeline_tag", "private", "sha", "tags"}

// ListModels fetches one page of GET /api/models with query q, or the page
// at next (the previous page's Link rel="next", which carries every
// parameter) when next is not empty. It returns the page and the next
// link, "" after the last page.
func (c *Client) ListModels(ctx context.Context, q url.Values, next string) ([]ModelSummary, string, error) {
	u := next
	if u == "" {
		u = c.Endpoint + "/api/models?" + q.Encode()
	} else if err := c.sameEndpoint(u); err != nil {
		return nil, "", err
	}
	var page []ModelSummary
	hdr, err := c.getJSON(ctx, u, "the model search", &page)
	if err != nil {
		return nil, "", err
	}
	n, err := nextLink(hdr, u)
	if err != nil {
		return nil, "", api.Errorf(api.CodeBadResponse, 0, "%s: %v", c.Endpoint, err)
	}
	return page, n, nil
}

// sameEndpoint refuses a pagination link to another host: the token must
// not follow it, and a hub has no reason to send one.
func (c *Client) sameEndpoint(raw string) error {
	u, err := url.Parse(raw)
	ep, err2 := url.Parse(c.Endpoint)
	if err != nil || err2 != nil || !sameOrigin(u, ep) {
		return api.Errorf(api.CodeBadResponse, 0, "%s sent a next-page link to another host (%s)", c.Endpoint, redactStr(raw))
	}
	return nil
}

// Collection is GET /api/collections/{namespace}/{slug}-{id}.
type Collection struct {
	Slug  string           `json:"slug"`
	Title string           `json:"title"`
	Items []CollectionItem `json:"items"`
}

// CollectionItem is one item of a collection; Type is model, dataset,
// space, paper or collection.
type CollectionItem struct {
	Type     string `json:"type"`
	RepoType string `json:"repoType"`
	ModelSummary
}

// Collection fetches a collection by its slug (namespace/slug-id).
func (c *Client) Collection(ctx context.Context, slug string) (*Collection, error) {
	segs := strings.Split(slug, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	var col Collection
	if _, err := c.getJSON(ctx, c.Endpoint+"/api/collections/"+strings.Join(segs, "/"), slug, &col); err != nil {
		if api.CodeOf(err) == api.CodeRepoNotFound {
			return nil, api.Errorf(api.CodeCatalogSource, 0, "collection %s not found on %s: check the namespace/slug-id in the collection's URL, or set HF_TOKEN if it is private", slug, c.Endpoint)
		}
		return nil, err
	}
	return &col, nil
}

// ModelInfo is GET /api/models/{repo}/revision/{rev} with every field a
// catalog shows; SHA is checked to be a commit.
func (c *Client) ModelInfo(ctx context.Context, repo, rev string) (*ModelSummary, error) {
	var m ModelSummary
	if err := c.revision(ctx, repo, rev, &m, func() string { return m.SHA }); err != nil {
		return nil, err
	}
	return &m, nil
}
