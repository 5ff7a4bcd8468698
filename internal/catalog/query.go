package catalog

import (
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/hal0ai/hal0/internal/api"
)

// Query selects and orders catalog entries: GET /api/catalog's parameters
// and `hal0 catalog list|search`'s flags.
type Query struct {
	Q         string // every word must appear in the id, task, license, format or quant
	Task      string
	Format    string
	Certified *bool
	Gated     *bool
	// ChatTemplate keeps only entries with (true) or without (false) a
	// known chat template.
	ChatTemplate *bool
	Sort         string // downloads (default), likes, lastModified, size or id
	Direction    string // desc (default; asc for id) or asc
	Limit        int    // 0 = all
}

// Sorts are the orders Query accepts.
var Sorts = []string{"downloads", "likes", "lastModified", "size", "id"}

// ParseQuery reads a Query from URL parameters (q, task, format,
// certified, gated, chat_template, sort, direction, limit).
func ParseQuery(v url.Values) (Query, error) {
	q := Query{Q: v.Get("q"), Task: v.Get("task"), Format: v.Get("format"), Sort: v.Get("sort"), Direction: v.Get("direction")}
	for name, dst := range map[string]**bool{"certified": &q.Certified, "gated": &q.Gated, "chat_template": &q.ChatTemplate} {
		if s := v.Get(name); s != "" {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return q, api.Errorf(api.CodeBadRequest, 0, "%s=%q: use true or false", name, s)
			}
			*dst = &b
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, api.Errorf(api.CodeBadRequest, 0, "limit=%q: want a count", s)
		}
		q.Limit = n
	}
	return q, q.Validate()
}

// Values renders q as URL parameters (the inverse of ParseQuery).
func (q Query) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("q", q.Q)
	set("task", q.Task)
	set("format", q.Format)
	set("sort", q.Sort)
	set("direction", q.Direction)
	if q.Certified != nil {
		v.Set("certified", strconv.FormatBool(*q.Certified))
	}
	if q.Gated != nil {
		v.Set("gated", strconv.FormatBool(*q.Gated))
	}
	if q.ChatTemplate != nil {
		v.Set("chat_template", strconv.FormatBool(*q.ChatTemplate))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// Validate checks the sort and direction.
func (q Query) Validate() error {
	ok := q.Sort == ""
	for _, s := range Sorts {
		ok = ok || q.Sort == s
	}
	if !ok {
		return api.Errorf(api.CodeBadRequest, 0, "sort %q: use one of %s", q.Sort, strings.Join(Sorts, ", "))
	}
	switch q.Direction {
	case "", "asc", "desc":
	default:
		return api.Errorf(api.CodeBadRequest, 0, "direction %q: use asc or desc", q.Direction)
	}
	return nil
}

// Apply returns the entries q selects, in q's order.
func (q Query) Apply(entries []api.CatalogEntry) []api.CatalogEntry {
	words := strings.Fields(strings.ToLower(q.Q))
	out := []api.CatalogEntry{}
	for _, e := range entries {
		hay := strings.ToLower(strings.Join([]string{e.ID, e.Task, e.License, e.Format, e.Quant}, " "))
		match := true
		for _, w := range words {
			match = match && strings.Contains(hay, w)
		}
		switch {
		case !match,
			q.Task != "" && e.Task != q.Task,
			q.Format != "" && e.Format != q.Format,
			q.Certified != nil && e.Certified != *q.Certified,
			q.Gated != nil && e.Gated != *q.Gated,
			q.ChatTemplate != nil && e.HasChatTemplate != *q.ChatTemplate:
			continue
		}
		out = append(out, e)
	}
	key := q.Sort
	if key == "" {
		key = "downloads"
	}
	asc := q.Direction == "asc" || (q.Direction == "" && key == "id")
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		var c int
		switch key {
		case "likes":
			c = cmp64(a.Likes, b.Likes)
		case "lastModified":
			c = strings.Compare(a.LastModified, b.LastModified)
		case "size":
			c = cmp64(a.SizeBytes, b.SizeBytes)
		case "id":
			c = strings.Compare(strings.ToLower(a.ID), strings.ToLower(b.ID))
		default:
			c = cmp64(a.Downloads, b.Downloads)
		}
		if c == 0 {
			return strings.ToLower(a.ID) < strings.ToLower(b.ID)
		}
		return (c < 0) == asc
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
