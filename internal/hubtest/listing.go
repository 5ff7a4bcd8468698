package hubtest

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The listing side of the Hub API, which a catalog indexer reads:
//
//	GET /api/models?search=&author=&filter=&pipeline_tag=&sort=&direction=&limit=&full=&cardData=&expand=
//	GET /api/collections/{namespace}/{slug}-{id}
//
// Search results are paginated with a Link rel="next" URL that carries every
// parameter plus an opaque cursor, as on the Hub. Status faults with Where
// "api" and no Repo hit these routes too (429 bursts with Retry-After and
// RateLimit headers).

// Collection is a Hub collection. Only Slug is required.
type Collection struct {
	// Slug is "namespace/title-<24 hex id>", as in the collection's URL.
	Slug  string
	Title string
	Items []CollectionItem
	// LastUpdated defaults to 2025-01-01T00:00:00Z.
	LastUpdated time.Time
}

// CollectionItem is one entry of a collection: a model of this hub, or
// another kind of item (dataset, space, paper), which a model catalog must
// skip.
type CollectionItem struct {
	Type string // "model" when empty
	ID   string
}

// AddCollection stores (or replaces) a collection. Model items are answered
// from the repos the hub holds at request time; items naming repos the hub
// does not have are left out, as the Hub drops deleted repos.
func (h *Hub) AddCollection(c Collection) {
	if c.LastUpdated.IsZero() {
		c.LastUpdated = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	c.Items = append([]CollectionItem(nil), c.Items...)
	h.mu.Lock()
	if h.colls == nil {
		h.colls = map[string]Collection{}
	}
	h.colls[c.Slug] = c
	h.mu.Unlock()
}

// RemoveCollection deletes a collection; it then answers 404.
func (h *Hub) RemoveCollection(slug string) {
	h.mu.Lock()
	delete(h.colls, slug)
	h.mu.Unlock()
}

// serveListing answers the listing routes and reports whether segs (the
// escaped path after /api/) named one.
func (h *Hub) serveListing(w *rec, r *http.Request, authed bool, segs []string) bool {
	switch {
	case len(segs) == 1 && segs[0] == "models":
	case len(segs) == 3 && segs[0] == "collections":
	default:
		return false
	}
	if !h.allow(w, r, http.MethodGet, http.MethodHead) {
		return true
	}
	if f := h.takeFault(w, "api", kindAPI, r.Method, "", ""); f != nil {
		h.answerStatus(w, f)
		return true
	}
	if segs[0] == "models" {
		h.serveSearch(w, r, authed)
		return true
	}
	slug, ok := unescapeID(segs[1:])
	if !ok {
		h.plain(w, http.StatusBadRequest, "Bad collection slug")
		return true
	}
	h.serveCollection(w, authed, slug)
	return true
}

// listed is a repo as the listing routes see it.
type listed struct {
	meta   *Repo
	fields map[string]any
}

// visibleModels returns every repo the caller may see, with its fields at
// main (or the latest snapshot).
func (h *Hub) visibleModels(authed bool) map[string]listed {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := map[string]listed{}
	for id, rs := range h.repos {
		if rs.meta.Private && !(authed && rs.meta.Approved) {
			continue
		}
		commit, snap, ok := rs.resolve("main")
		if !ok {
			commit, snap = rs.head.commit, rs.head
		}
		out[id] = listed{meta: rs.meta, fields: modelFields(rs.meta, commit, snap, false)}
	}
	return out
}

// defaultListFields are what /api/models returns per model without
// full, cardData or expand.
var defaultListFields = []string{"_id", "id", "likes", "trendingScore", "private", "downloads", "tags", "pipeline_tag", "library_name", "createdAt", "modelId"}

func (h *Hub) serveSearch(w *rec, r *http.Request, authed bool) {
	q := r.URL.Query()
	full, card := isTrue(q.Get("full")), isTrue(q.Get("cardData"))
	expand := q["expand"]
	if len(expand) > 0 && (full || card || isTrue(q.Get("config"))) {
		h.hfError(w, http.StatusBadRequest, "", "expand cannot be combined with full, config or cardData")
		return
	}
	limit := 1000
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			h.hfError(w, http.StatusBadRequest, "", "Invalid limit: "+v)
			return
		}
		limit = min(n, 1000)
	}
	key := q.Get("sort")
	switch key {
	case "", "downloads", "likes", "lastModified", "createdAt", "id", "trendingScore":
	default:
		h.hfError(w, http.StatusBadRequest, "", "Invalid sort: "+key)
		return
	}
	desc := q.Get("direction") == "" || q.Get("direction") == "-1"

	search, author, task := strings.ToLower(q.Get("search")), q.Get("author"), q.Get("pipeline_tag")
	var hits []listed
	for id, m := range h.visibleModels(authed) {
		owner, _, _ := strings.Cut(id, "/")
		tags, _ := m.fields["tags"].([]string)
		switch {
		case author != "" && !strings.EqualFold(owner, author),
			search != "" && !strings.Contains(strings.ToLower(id), search),
			task != "" && m.meta.PipelineTag != task,
			!hasAll(tags, q["filter"]):
			continue
		}
		hits = append(hits, m)
	}
	sort.Slice(hits, func(i, j int) bool {
		a, b := hits[i].meta, hits[j].meta
		c := compareBy(key, a, b)
		if c == 0 {
			return a.ID < b.ID
		}
		if desc {
			return c > 0
		}
		return c < 0
	})

	off := 0
	if c := q.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "offset:"))
		if err != nil || err2 != nil || n < 0 || n > len(hits) || !strings.HasPrefix(string(b), "offset:") {
			h.hfError(w, http.StatusBadRequest, "", "Invalid cursor")
			return
		}
		off = n
	}
	end := min(off+limit, len(hits))
	page := []map[string]any{}
	for _, m := range hits[off:end] {
		var names []string
		switch {
		case len(expand) > 0:
			names = append([]string{"_id", "id"}, expand...)
		case full:
			for k := range m.fields {
				if k != "cardData" && k != "config" {
					names = append(names, k)
				}
			}
		default:
			names = defaultListFields
		}
		if card {
			names = append(names, "cardData")
		}
		item := map[string]any{}
		for _, k := range names {
			if k == "trendingScore" {
				item[k] = 0
			} else if v, ok := m.fields[k]; ok {
				item[k] = v
			}
		}
		page = append(page, item)
	}
	if end < len(hits) {
		q.Set("cursor", base64.RawURLEncoding.EncodeToString([]byte("offset:"+strconv.Itoa(end))))
		q.Del(mirrorParam)
		w.Header().Set("Link", fmt.Sprintf("<%s/api/models?%s>; rel=\"next\"", h.URL, q.Encode()))
	}
	h.writeJSON(w, http.StatusOK, page)
}

func hasAll(tags, want []string) bool {
	for _, f := range want {
		found := false
		for _, t := range tags {
			if t == f {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// compareBy orders two repos by a sort key: -1, 0 or 1.
func compareBy(key string, a, b *Repo) int {
	cmp := func(x, y int) int {
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
	switch key {
	case "likes":
		return cmp(a.Likes, b.Likes)
	case "lastModified":
		return a.LastModified.Compare(b.LastModified)
	case "createdAt":
		return a.CreatedAt.Compare(b.CreatedAt)
	case "id":
		return strings.Compare(a.ID, b.ID)
	}
	return cmp(a.Downloads, b.Downloads)
}

func (h *Hub) serveCollection(w *rec, authed bool, slug string) {
	h.mu.RLock()
	c, ok := h.colls[slug]
	h.mu.RUnlock()
	if !ok {
		h.hfError(w, http.StatusNotFound, "", "Collection not found")
		return
	}
	models := h.visibleModels(authed)
	owner, _, _ := strings.Cut(c.Slug, "/")
	items := []map[string]any{}
	for i, it := range c.Items {
		typ := it.Type
		if typ == "" {
			typ = "model"
		}
		author, _, _ := strings.Cut(it.ID, "/")
		sum := sha1.Sum([]byte("hubtest-item:" + c.Slug + ":" + it.ID))
		item := map[string]any{
			"_id": hex.EncodeToString(sum[:12]), "type": typ, "id": it.ID, "position": i,
			"author": author, "repoType": typ, "isLikedByUser": false,
		}
		if typ == "model" {
			m, ok := models[it.ID]
			if !ok {
				continue
			}
			for _, k := range []string{"gated", "private", "downloads", "likes", "lastModified", "pipeline_tag"} {
				if v, ok := m.fields[k]; ok {
					item[k] = v
				}
			}
			item["availableInferenceProviders"] = []string{}
		} else {
			item["gated"], item["private"], item["downloads"], item["likes"] = false, false, 0, 0
		}
		items = append(items, item)
	}
	sum := sha1.Sum([]byte("hubtest-owner:" + owner))
	h.writeJSON(w, http.StatusOK, map[string]any{
		"slug": c.Slug, "title": c.Title, "description": "", "gating": false,
		"lastUpdated": c.LastUpdated.UTC().Format(timeFormat), "private": false, "theme": "pink",
		"upvotes": 0, "isUpvotedByUser": false,
		"owner": map[string]any{"_id": hex.EncodeToString(sum[:12]), "name": owner, "fullname": owner, "type": "org",
			"avatarUrl": "", "followerCount": 0, "isHf": false, "isHfAdmin": false, "isMod": false, "isUserFollowing": false},
		"items": items,
	})
}

// CollectionURL is the API URL of a collection, for tests.
func (h *Hub) CollectionURL(slug string) string {
	return h.URL + "/api/collections/" + escapePath(slug)
}
