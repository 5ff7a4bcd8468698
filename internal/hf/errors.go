package hf

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/hal0ai/hal0/internal/api"
)

// StatusError converts a non-2xx hub answer into an error. 408, 429 and 5xx
// become *TransientError; everything else an *api.Error with a code and a
// message that says what to do. hasToken changes the advice for 401s.
func StatusError(resp *http.Response, repo string, hasToken bool, endpoint string) error {
	code := resp.Header.Get("X-Error-Code")
	msg := strings.TrimSpace(resp.Header.Get("X-Error-Message"))
	if msg == "" {
		var body struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
		if json.Unmarshal(b, &body) == nil {
			msg = body.Error
		}
	}
	reqID := resp.Header.Get("X-Request-Id")
	suffix := ""
	if reqID != "" {
		suffix = " (request id " + reqID + ")"
	}
	page := strings.TrimRight(endpoint, "/") + "/" + repo
	st := resp.StatusCode
	switch {
	case st == http.StatusRequestTimeout || st == http.StatusTooManyRequests || st >= 500:
		e := fmt.Errorf("%s answered %d %s%s", endpoint, st, http.StatusText(st), suffix)
		if st == http.StatusTooManyRequests {
			e = api.Errorf(api.CodeRateLimited, 0, "%s is rate limiting requests (429)%s; hal0 retries with backoff, and a token (HF_TOKEN) raises the limit", endpoint, suffix)
		}
		return &TransientError{Err: e, After: RetryAfter(resp.Header)}
	case code == "GatedRepo":
		if st == http.StatusUnauthorized || !hasToken {
			return api.Errorf(api.CodeGated, 0, "%s is gated: accept its license at %s, then set HF_TOKEN (or hf.token_file) to a token of that account", repo, page)
		}
		return api.Errorf(api.CodeGated, 0, "%s is gated and this token's account has not been granted access: request access at %s and wait for approval%s", repo, page, suffix)
	case code == "RepoNotFound":
		return api.Errorf(api.CodeRepoNotFound, 0, "repository %s not found on %s: check the name, or set HF_TOKEN if it is private", repo, endpoint)
	case code == "RevisionNotFound":
		return api.Errorf(api.CodeRevisionNotFound, 0, "revision not found in %s: %s", repo, orDefault(msg, "check the branch, tag or commit"))
	case code == "EntryNotFound":
		return api.Errorf(api.CodeEntryNotFound, 0, "file not found in %s: %s", repo, orDefault(msg, "check the path"))
	case st == http.StatusUnauthorized && strings.Contains(msg, "Invalid credentials"):
		return api.Errorf(api.CodeAuth, 0, "%s rejected the Hugging Face token as invalid: replace HF_TOKEN (or the token file) with a valid token, or unset it for public models", endpoint)
	case st == http.StatusUnauthorized:
		// The hub hides private repos from anonymous users behind a 401.
		if hasToken {
			return api.Errorf(api.CodeAuth, 0, "%s refused access to %s (401): the token cannot read this repository%s", endpoint, repo, suffix)
		}
		return api.Errorf(api.CodeRepoNotFound, 0, "repository %s not found or private on %s: check the name, or set HF_TOKEN to a token that can read it", repo, endpoint)
	case st == http.StatusForbidden:
		return api.Errorf(api.CodeHubForbidden, 0, "%s refused access to %s (403): %s%s", endpoint, repo, orDefault(msg, "the token lacks permission or the repository is disabled"), suffix)
	case st == http.StatusNotFound:
		return api.Errorf(api.CodeRepoNotFound, 0, "%s answered 404 for %s: %s", endpoint, repo, orDefault(msg, "not found"))
	}
	return api.Errorf(api.CodeBadResponse, 0, "%s answered %d %s for %s%s", endpoint, st, http.StatusText(st), repo, suffix)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
