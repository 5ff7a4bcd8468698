package catalog

import (
	"context"
	"net/url"
	"sort"
	"strings"

	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/hf"
)

// candidate is a model some source listed, before inspection.
type candidate struct {
	sum    hf.ModelSummary
	labels []string // the sources that listed it
}

// Label names a source in entries and logs: "org:Qwen",
// "collection:Qwen/qwen3-…", "search:gguf" or "task:text-generation".
func Label(s config.CatalogSource) []string {
	var out []string
	for _, o := range s.Orgs {
		out = append(out, "org:"+o)
	}
	for _, c := range s.Collections {
		out = append(out, "collection:"+c)
	}
	if len(out) == 0 {
		if s.Search != "" {
			out = append(out, "search:"+s.Search)
		} else {
			out = append(out, "task:"+s.Task)
		}
	}
	return out
}

// list walks the sources in order and returns the models to inspect:
// deduplicated (an id listed twice keeps its first place and gains the
// other source's label), at most limit in all, and at most a source's own
// limit from each source.
func (ix *Indexer) list(ctx context.Context) ([]*candidate, error) {
	var out []*candidate
	known := map[string]*candidate{}
	for _, src := range ix.Sources {
		need := ix.Limit - len(out)
		if need <= 0 {
			break
		}
		if src.Limit > 0 {
			need = min(need, src.Limit)
		}
		found, err := ix.listSource(ctx, src, need, known)
		if err != nil {
			return nil, err
		}
		for _, c := range found {
			known[strings.ToLower(c.sum.ID)] = c
			out = append(out, c)
		}
	}
	return out, nil
}

// part is what one org, collection or search of a source yielded, in the
// order the hub gave.
type part struct {
	label string
	items []*candidate
}

func (ix *Indexer) listSource(ctx context.Context, src config.CatalogSource, need int, known map[string]*candidate) ([]*candidate, error) {
	var parts []part
	seen := map[string]*candidate{} // within this source
	// take keeps a listed model unless an earlier source or part has it,
	// which then gains this label.
	take := func(label string, m hf.ModelSummary, p *part) {
		k := strings.ToLower(m.ID)
		c := known[k]
		if c == nil {
			c = seen[k]
		}
		if c != nil {
			if !contains(c.labels, label) {
				c.labels = append(c.labels, label)
			}
			return
		}
		if m.ID == "" {
			return
		}
		c = &candidate{sum: m, labels: []string{label}}
		seen[k] = c
		p.items = append(p.items, c)
	}
	for _, org := range src.Orgs {
		p := part{label: "org:" + org}
		if err := ix.search(ctx, src, org, need, func(m hf.ModelSummary) bool {
			take(p.label, m, &p)
			return len(p.items) < need
		}); err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	for _, slug := range src.Collections {
		p := part{label: "collection:" + slug}
		col, err := retry(ctx, ix, "collection "+slug, func() (*hf.Collection, error) { return ix.Client.Collection(ctx, slug) })
		if err != nil {
			return nil, err
		}
		for _, it := range col.Items {
			if it.Type != "model" && it.RepoType != "model" {
				continue // datasets, spaces, papers
			}
			if src.Task != "" && it.PipelineTag != src.Task {
				continue
			}
			if src.Search != "" && !strings.Contains(strings.ToLower(it.ID), strings.ToLower(src.Search)) {
				continue
			}
			take(p.label, it.ModelSummary, &p)
		}
		if src.Sort != "" {
			sortModels(p.items, src.Sort, src.Direction)
		}
		parts = append(parts, p)
	}
	if len(src.Orgs) == 0 && len(src.Collections) == 0 {
		p := part{label: Label(src)[0]}
		if err := ix.search(ctx, src, "", need, func(m hf.ModelSummary) bool {
			take(p.label, m, &p)
			return len(p.items) < need
		}); err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	var all []*candidate
	for _, p := range parts {
		all = append(all, p.items...)
	}
	// Several orgs (or orgs and collections) are one ranking: the source
	// asked for the most downloaded (or liked, or recent) models across
	// them, not for the first org's models first.
	if len(parts) > 1 && (len(src.Orgs) > 0 || src.Sort != "") {
		sortModels(all, orDefault(src.Sort, "downloads"), src.Direction)
	}
	if len(all) > need {
		all = all[:need]
	}
	return all, nil
}

// search pages through GET /api/models for one author (or none), calling
// keep for each model until it returns false or the hub has no more.
func (ix *Indexer) search(ctx context.Context, src config.CatalogSource, author string, need int, keep func(hf.ModelSummary) bool) error {
	q := url.Values{}
	if author != "" {
		q.Set("author", author)
	}
	if src.Search != "" {
		q.Set("search", src.Search)
	}
	if src.Task != "" {
		q.Set("pipeline_tag", src.Task)
	}
	q.Set("sort", orDefault(src.Sort, "downloads"))
	if src.Direction == "asc" {
		q.Set("direction", "1")
	} else {
		q.Set("direction", "-1")
	}
	q.Set("limit", itoa(max(min(need, ix.pageSize()), 1)))
	q["expand"] = hf.ListFields
	what := "list models"
	if author != "" {
		what += " of " + author
	}
	next := ""
	for pages := 0; ; pages++ {
		if pages > 10000 {
			return nil // a hub that never stops paginating
		}
		cur := next
		page, err := retry(ctx, ix, what, func() (pageResult, error) {
			p, n, err := ix.Client.ListModels(ctx, q, cur)
			return pageResult{p, n}, err
		})
		if err != nil {
			return err
		}
		for _, m := range page.items {
			if !keep(m) {
				return nil
			}
		}
		if page.next == "" || page.next == cur {
			return nil
		}
		next = page.next
	}
}

type pageResult struct {
	items []hf.ModelSummary
	next  string
}

func (ix *Indexer) pageSize() int {
	if ix.PageSize > 0 {
		return ix.PageSize
	}
	return 100
}

// sortModels orders candidates by a hub sort key, stable for ties.
func sortModels(c []*candidate, key, direction string) {
	asc := direction == "asc"
	sort.SliceStable(c, func(i, j int) bool {
		a, b := c[i].sum, c[j].sum
		var less, greater bool
		switch key {
		case "likes":
			less, greater = a.Likes < b.Likes, a.Likes > b.Likes
		case "lastModified":
			ta, tb := normTime(a.LastModified), normTime(b.LastModified)
			less, greater = ta < tb, ta > tb
		default:
			less, greater = a.Downloads < b.Downloads, a.Downloads > b.Downloads
		}
		if asc {
			return less
		}
		return greater
	})
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
