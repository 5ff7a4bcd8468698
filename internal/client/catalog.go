package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/hal0ai/hal0/internal/api"
)

// Catalog is GET /api/catalog with query parameters q, task, format,
// certified, gated, sort, direction and limit (see catalog.Query).
func (c *Client) Catalog(ctx context.Context, query url.Values) (*api.CatalogList, error) {
	var l api.CatalogList
	p := "/api/catalog"
	if len(query) > 0 {
		p += "?" + query.Encode()
	}
	if err := c.call(ctx, http.MethodGet, p, nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// CatalogEntry returns one catalog entry by org/name; a model the catalog
// does not hold is api.CodeCatalogMissing.
func (c *Client) CatalogEntry(ctx context.Context, id string) (*api.CatalogEntry, error) {
	var e api.CatalogEntry
	if err := c.call(ctx, http.MethodGet, "/api/catalog/"+url.PathEscape(id), nil, &e); err != nil {
		return nil, err
	}
	return &e, nil
}
