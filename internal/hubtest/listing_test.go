package hubtest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

func listingHub(t *testing.T) *Hub {
	t.Helper()
	h, err := New(Options{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	small := []File{{Path: "config.json", Data: configJSON}}
	day := func(d int) time.Time { return time.Date(2025, 3, d, 0, 0, 0, 0, time.UTC) }
	h.AddRepo(Repo{ID: "acme/a-GGUF", Files: small, PipelineTag: "text-generation", Downloads: 30, Likes: 1, LastModified: day(3), License: "mit"})
	h.AddRepo(Repo{ID: "acme/b", Files: small, PipelineTag: "text-generation", Downloads: 10, Likes: 5, LastModified: day(1)})
	h.AddRepo(Repo{ID: "acme/c-GGUF", Files: small, PipelineTag: "feature-extraction", Downloads: 20, Likes: 3, LastModified: day(2), Gated: "manual"})
	h.AddRepo(Repo{ID: "acme/hidden", Files: small, Private: true})
	h.AddRepo(Repo{ID: "other/d-GGUF", Files: small, PipelineTag: "text-generation", Downloads: 99})
	return h
}

// getJSON fetches a URL and decodes the body; it returns the response for
// its headers.
func getJSON(t *testing.T, u string, v any) *http.Response {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp
}

func ids(items []map[string]any) string {
	var out []string
	for _, it := range items {
		out = append(out, it["id"].(string))
	}
	return strings.Join(out, ",")
}

func TestSearchFiltersAndSort(t *testing.T) {
	h := listingHub(t)
	for _, tc := range []struct {
		query, want string
	}{
		{"author=acme", "acme/a-GGUF,acme/c-GGUF,acme/b"}, // downloads desc by default; private hidden
		{"author=ACME&sort=likes&direction=-1", "acme/b,acme/c-GGUF,acme/a-GGUF"},
		{"author=acme&sort=lastModified&direction=1", "acme/b,acme/c-GGUF,acme/a-GGUF"},
		{"search=gguf", "other/d-GGUF,acme/a-GGUF,acme/c-GGUF"},
		{"author=acme&pipeline_tag=text-generation", "acme/a-GGUF,acme/b"},
		{"filter=license:mit", "acme/a-GGUF"},
		{"author=nobody", ""},
	} {
		var items []map[string]any
		getJSON(t, h.URL+"/api/models?"+tc.query, &items)
		if got := ids(items); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.query, got, tc.want)
		}
	}
}

func TestSearchPaginationAndFields(t *testing.T) {
	h := listingHub(t)
	next := h.URL + "/api/models?author=acme&limit=2&expand=gated&expand=lastModified&expand=downloads"
	var all []map[string]any
	pages := 0
	linkRe := regexp.MustCompile(`^<([^>]+)>; rel="next"$`)
	for next != "" {
		var page []map[string]any
		resp := getJSON(t, next, &page)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", next, resp.StatusCode)
		}
		pages++
		all = append(all, page...)
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			m := linkRe.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("Link %q", l)
			}
			next = m[1]
			u, _ := url.Parse(next)
			if u.Query().Get("author") != "acme" || len(u.Query()["expand"]) != 3 || u.Query().Get("cursor") == "" {
				t.Fatalf("next URL lost parameters: %s", next)
			}
		}
	}
	if pages != 2 || ids(all) != "acme/a-GGUF,acme/c-GGUF,acme/b" {
		t.Fatalf("%d pages: %s", pages, ids(all))
	}
	// expand replaces the default fields.
	c := all[1]
	if c["gated"] != "manual" || c["lastModified"] != "2025-03-02T00:00:00.000Z" || c["downloads"] != float64(20) || c["likes"] != nil {
		t.Errorf("expanded item %v", c)
	}
	if all[0]["gated"] != false {
		t.Errorf("ungated item %v", all[0])
	}
	// Default fields: no gated, no lastModified.
	var def []map[string]any
	getJSON(t, h.URL+"/api/models?author=acme&limit=1", &def)
	if _, ok := def[0]["gated"]; ok || def[0]["pipeline_tag"] != "text-generation" || def[0]["likes"] != float64(1) {
		t.Errorf("default item %v", def[0])
	}
	if resp := getJSON(t, h.URL+"/api/models?expand=gated&full=true", nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("expand with full: %d", resp.StatusCode)
	}
	// The private repo shows up for its approved token only.
	req, _ := http.NewRequest(http.MethodGet, h.URL+"/api/models?author=acme", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	h.AddRepo(Repo{ID: "acme/hidden", Files: []File{{Path: "x", Data: []byte("x")}}, Private: true, Approved: true})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var withTok []map[string]any
	json.NewDecoder(resp.Body).Decode(&withTok)
	resp.Body.Close()
	if !strings.Contains(ids(withTok), "acme/hidden") {
		t.Errorf("approved private repo not listed: %s", ids(withTok))
	}
}

func TestCollectionsAndRateLimit(t *testing.T) {
	h := listingHub(t)
	slug := "acme/picks-0123456789abcdef01234567"
	h.AddCollection(Collection{Slug: slug, Title: "Picks", Items: []CollectionItem{
		{ID: "acme/b"}, {Type: "dataset", ID: "acme/data"}, {ID: "acme/gone"}, {ID: "acme/c-GGUF"},
	}})
	var c struct {
		Slug  string `json:"slug"`
		Owner struct {
			Name string `json:"name"`
		} `json:"owner"`
		Items []map[string]any `json:"items"`
	}
	getJSON(t, h.CollectionURL(slug), &c)
	if c.Slug != slug || c.Owner.Name != "acme" || len(c.Items) != 3 {
		t.Fatalf("collection %+v", c)
	}
	if c.Items[0]["id"] != "acme/b" || c.Items[0]["type"] != "model" || c.Items[1]["type"] != "dataset" ||
		c.Items[2]["gated"] != "manual" || c.Items[2]["pipeline_tag"] != "feature-extraction" {
		t.Errorf("items %v", c.Items)
	}
	if resp := getJSON(t, h.URL+"/api/collections/acme/nope-0123456789abcdef01234567", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing collection: %d", resp.StatusCode)
	}

	// A 429 burst on the API routes, with the headers the Hub sends.
	h.AddFault(Fault{Where: "api", Status: http.StatusTooManyRequests, RetryAfter: 7, Times: 2})
	for i, u := range []string{h.URL + "/api/models?author=acme", h.CollectionURL(slug), h.URL + "/api/models?author=acme"} {
		resp := getJSON(t, u, nil)
		want := http.StatusTooManyRequests
		if i == 2 {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		if want == http.StatusTooManyRequests && (resp.Header.Get("Retry-After") != "7" || !strings.Contains(resp.Header.Get("RateLimit"), "r=0;t=7")) {
			t.Errorf("429 headers %v", resp.Header)
		}
	}
}
