package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/server"
)

// newFrontServer starts a server that serves *handler under prefix, as a
// reverse proxy publishing spotoken under a path would, and returns its URL.
func newFrontServer(t *testing.T, prefix string, handler *http.Handler) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.StripPrefix(prefix, *handler).ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

// wantErrorBody checks that an error answer is JSON
// {"error": code, "error_description": non-empty}, not cached.
func wantErrorBody(t *testing.T, resp *http.Response, raw []byte, code string) server.ErrorResponse {
	t.Helper()
	var e server.ErrorResponse
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json (%s)", ct, raw)
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Errorf("error body %q: %v", raw, err)
	}
	if e.Error != code || e.Description == "" {
		t.Errorf("error body %s, want error %q with a description", raw, code)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	return e
}

// vend asks for a token for id with body and returns the answer.
func (h *harness) vend(id string, body any) (*http.Response, []byte) {
	h.t.Helper()
	return h.call("POST", "/v1/connections/"+id+"/token", h.apiKey, body, nil)
}

func TestToken(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("c1", "user-read-email", "playlist-read-private")
	now := h.emu.Now()
	var tok server.TokenResponse
	resp, raw := h.call("POST", "/v1/connections/c1/token", h.apiKey, map[string]any{"min_ttl": 60}, &tok)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	stored := h.connection(appID, "c1")
	want := server.TokenResponse{AccessToken: stored.Token.AccessToken.Reveal(), TokenType: "Bearer",
		ExpiresAt: now.Add(time.Hour), Scope: "playlist-read-private user-read-email"}
	if diff := cmp.Diff(tok, want); diff != "" {
		t.Errorf("token (-got +want):\n%s", diff)
	}
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	if diff := cmp.Diff(len(fields), 4); diff != "" {
		t.Errorf("token answer %s has other fields than the four documented", raw)
	}
	for k, v := range map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache", "Content-Type": "application/json"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	// Without a body and with an empty object: the same token.
	for _, body := range []any{nil, "{}", " \n"} {
		var again server.TokenResponse
		resp, raw := h.call("POST", "/v1/connections/c1/token", h.apiKey, body, &again)
		if resp.StatusCode != http.StatusOK || again.AccessToken != tok.AccessToken {
			t.Errorf("body %q: %d %s", body, resp.StatusCode, raw)
		}
	}
	if n := h.refreshes(); n != 0 {
		t.Errorf("%d refreshes for a fresh token, want 0", n)
	}
}

func TestTokenRequestValidation(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("c1")
	const ttlMsg = "min_ttl must be an integer number of seconds from 0 to 3300"
	for _, tc := range []struct {
		name   string
		body   any
		ct     string // Content-Type, when not application/json
		status int
		code   string
		desc   string // the exact error_description, when not empty
	}{
		{"min_ttl -1", `{"min_ttl": -1}`, "", 400, "invalid_request", ttlMsg},
		{"min_ttl 3301", `{"min_ttl": 3301}`, "", 400, "invalid_request", ttlMsg},
		{"min_ttl string", `{"min_ttl": "abc"}`, "", 400, "invalid_request", ttlMsg},
		{"min_ttl fraction", `{"min_ttl": 1.5}`, "", 400, "invalid_request", ttlMsg},
		{"min_ttl huge", `{"min_ttl": 1e400}`, "", 400, "invalid_request", ttlMsg},
		{"min_ttl null", `{"min_ttl": null}`, "", 200, "", ""},
		{"min_ttl 3300", `{"min_ttl": 3300}`, "", 200, "", ""},
		{"min_ttl 0", `{"min_ttl": 0}`, "", 200, "", ""},
		{"force_refresh string", `{"force_refresh": "yes"}`, "", 400, "invalid_request", "force_refresh must be true or false"},
		{"unknown field", `{"min_ttl": 5, "ttl": 5}`, "", 400, "invalid_request", `the body is not valid: unknown field "ttl"`},
		{"field in another case", `{"MIN_TTL": 3301}`, "", 400, "invalid_request", `the body is not valid: unknown field "MIN_TTL"`},
		{"repeated field", `{"min_ttl": 5, "min_ttl": 5000}`, "", 400, "invalid_request", `the body is not valid: field "min_ttl" is repeated`},
		{"long unknown field", `{"` + strings.Repeat("x", 5000) + `": 1}`, "", 400, "invalid_request", `the body is not valid: unknown field "` + strings.Repeat("x", 64) + `…"`},
		{"trailing object", `{} {}`, "", 400, "invalid_request", "the body has data after its JSON object"},
		{"trailing bracket", `{}]`, "", 400, "invalid_request", "the body has data after its JSON object"},
		{"trailing brace", `{"min_ttl": 5}}`, "", 400, "invalid_request", "the body has data after its JSON object"},
		{"array", `[]`, "", 400, "invalid_request", "the body must be a JSON object"},
		{"null", `null`, "", 400, "invalid_request", "the body must be a JSON object"},
		{"number", `5`, "", 400, "invalid_request", "the body must be a JSON object"},
		{"truncated", `{"min_ttl": 5`, "", 400, "invalid_request", "the body is not valid: truncated JSON"},
		{"malformed", `{min_ttl: 5}`, "", 400, "invalid_request", "the body is not valid: malformed JSON at byte 1"},
		{"form", `min_ttl=5`, "application/x-www-form-urlencoded", 400, "invalid_request", `the body must be JSON (Content-Type: application/json), got "application/x-www-form-urlencoded"`},
		{"JSON with charset", `{"min_ttl": 5}`, "application/json; charset=utf-8", 200, "", ""},
		{"JSON in capitals", `{"min_ttl": 5}`, "Application/JSON", 200, "", ""},
		{"not quite JSON", `{"min_ttl": 5}`, "application/jsonx", 400, "invalid_request", `the body must be JSON (Content-Type: application/json), got "application/jsonx"`},
		{"over 64 KiB", `{"min_ttl": 5, "pad": "` + strings.Repeat("a", 64<<10) + `"}`, "", 413, "request_too_large", "the body is over 65536 bytes"},
		{"64 KiB of spaces", `{"min_ttl": 5` + strings.Repeat(" ", 64<<10) + `}`, "", 413, "request_too_large", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", h.ts.URL+"/v1/connections/c1/token", strings.NewReader(tc.body.(string)))
			req.Header.Set("Authorization", "Bearer "+h.apiKey)
			ct := tc.ct
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("%d %s, want %d", resp.StatusCode, raw, tc.status)
			}
			if tc.code == "" {
				return
			}
			e := wantErrorBody(t, resp, raw, tc.code)
			if tc.desc != "" && e.Description != tc.desc {
				t.Errorf("error_description %q, want %q", e.Description, tc.desc)
			}
		})
	}
	if n := h.refreshes(); n != 0 {
		t.Errorf("%d refreshes from refused requests, want 0", n)
	}
}

func TestTokenRefreshesWhenExpired(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("c1")
	first, _, _ := h.token("c1")
	h.emu.Advance(time.Hour)
	tok, resp, raw := h.token("c1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	if n := h.refreshes(); n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
	if tok.AccessToken == first.AccessToken || !tok.ExpiresAt.Equal(h.emu.Now().Add(time.Hour)) {
		t.Errorf("token after expiry: same token %v, expires %v", tok.AccessToken == first.AccessToken, tok.ExpiresAt)
	}
	// min_ttl beyond what is left refreshes too.
	h.emu.Advance(59 * time.Minute)
	if resp, raw := h.vend("c1", map[string]any{"min_ttl": 120}); resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	if n := h.refreshes(); n != 2 {
		t.Errorf("%d refreshes after a min_ttl the token could not meet, want 2", n)
	}
}

func TestTokenConcurrentVendsRefreshOnce(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("c1")
	h.emu.Advance(2 * time.Hour)
	var wg sync.WaitGroup
	tokens := make([]string, 100)
	statuses := make([]int, 100)
	for i := range 100 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", h.ts.URL+"/v1/connections/c1/token", nil)
			req.Header.Set("Authorization", "Bearer "+h.apiKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var tok server.TokenResponse
			json.NewDecoder(resp.Body).Decode(&tok)
			tokens[i], statuses[i] = tok.AccessToken, resp.StatusCode
		})
	}
	wg.Wait()
	for i := range 100 {
		if statuses[i] != http.StatusOK || tokens[i] != tokens[0] {
			t.Fatalf("vend %d: status %d, same token as the first: %v", i, statuses[i], tokens[i] == tokens[0])
		}
	}
	if n := h.refreshes(); n != 1 {
		t.Errorf("%d refreshes for 100 concurrent vends, want 1", n)
	}
}

func TestTokenForceRefresh(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("c1")
	seen := map[string]bool{}
	first, _, _ := h.token("c1")
	seen[first.AccessToken] = true
	for i := range 3 {
		var tok server.TokenResponse
		resp, raw := h.call("POST", "/v1/connections/c1/token", h.apiKey, map[string]any{"force_refresh": true}, &tok)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("force %d: %d %s", i+1, resp.StatusCode, raw)
		}
		if seen[tok.AccessToken] {
			t.Errorf("force %d returned a token seen before", i+1)
		}
		seen[tok.AccessToken] = true
	}
	if n := h.refreshes(); n != 3 {
		t.Errorf("%d refreshes after 3 force_refresh, want 3", n)
	}
	resp, raw := h.vend("c1", map[string]any{"force_refresh": true})
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th force_refresh: %d %s, want 429", resp.StatusCode, raw)
	}
	e := wantErrorBody(t, resp, raw, "rate_limited")
	if ra := resp.Header.Get("Retry-After"); ra != "10" || e.RetryAfter != 10 {
		t.Errorf("Retry-After %q, retry_after %d, want 10", ra, e.RetryAfter)
	}
	if n := h.refreshes(); n != 3 {
		t.Errorf("%d refreshes after a refused force_refresh, want 3", n)
	}
	// A plain vend is not limited, and the limit is per connection.
	if resp, raw := h.vend("c1", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("plain vend while force is limited: %d %s", resp.StatusCode, raw)
	}
	h.connect("c2")
	if resp, raw := h.vend("c2", map[string]any{"force_refresh": true}); resp.StatusCode != http.StatusOK {
		t.Errorf("force_refresh of another connection: %d %s", resp.StatusCode, raw)
	}
	// One allowance back after the interval.
	h.emu.Advance(10 * time.Second)
	if resp, raw := h.vend("c1", map[string]any{"force_refresh": true}); resp.StatusCode != http.StatusOK {
		t.Errorf("force_refresh after the interval: %d %s", resp.StatusCode, raw)
	}
	if resp, _ := h.vend("c1", map[string]any{"force_refresh": true}); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("second force_refresh after the interval: %d, want 429", resp.StatusCode)
	}
}

func TestTokenNeedsReauth(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("c1", "user-read-email", "user-top-read")
	if err := h.emu.RevokeGrant("alice", clientID); err != nil {
		t.Fatal(err)
	}
	h.emu.Advance(time.Hour)
	var e server.ErrorResponse
	resp, raw := h.call("POST", "/v1/connections/c1/token", h.apiKey, nil, &e)
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("%d %s, want 409", resp.StatusCode, raw)
	}
	wantErrorBody(t, resp, raw, "needs_reauth")
	if !strings.HasPrefix(e.ConnectURL, h.ts.URL+"/connect/cs_") || e.ConnectURLExpiresAt == nil ||
		!e.ConnectURLExpiresAt.Equal(h.emu.Now().Add(server.DefaultSessionTTL)) {
		t.Fatalf("connect_url %q expiring %v", e.ConnectURL, e.ConnectURLExpiresAt)
	}
	// Asking again within a minute gives the same link (no new pending
	// authorization), and does not call Spotify again; past the minute,
	// another one.
	var e2 server.ErrorResponse
	h.emu.Advance(59 * time.Second)
	h.call("POST", "/v1/connections/c1/token", h.apiKey, nil, &e2)
	if e2.Error != "needs_reauth" || e2.ConnectURL != e.ConnectURL || !e2.ConnectURLExpiresAt.Equal(*e.ConnectURLExpiresAt) {
		t.Errorf("second answer within the minute %+v, want the first link", e2)
	}
	h.emu.Advance(time.Second)
	var e3 server.ErrorResponse
	h.call("POST", "/v1/connections/c1/token", h.apiKey, nil, &e3)
	if e3.Error != "needs_reauth" || e3.ConnectURL == e.ConnectURL || e3.ConnectURL == "" {
		t.Errorf("third answer a minute on %+v, want another link", e3)
	}
	if n := h.refreshes(); n != 1 {
		t.Errorf("%d refreshes, want 1 (needs_reauth is not retried)", n)
	}
	// The links work, for the connection's own scopes; the first is still
	// valid.
	if r := flowGet(t, h.browser, e.ConnectURL); r.Outcome != "connected" {
		t.Fatalf("following connect_url: %d %q", r.Status, r.Outcome)
	}
	tok, resp, raw := h.token("c1")
	if resp.StatusCode != http.StatusOK || tok.Scope != "user-read-email user-top-read" {
		t.Errorf("token after re-consent: %d %s", resp.StatusCode, raw)
	}
	if c := h.connection(appID, "c1"); c.State != spotoken.StateActive {
		t.Errorf("state %s after re-consent", c.State)
	}
}

func TestTokenRateLimitedBySpotify(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("c1")
	h.emu.Advance(time.Hour)
	ra := 30
	if err := h.emu.SetFaults(emulator.Faults{TokenStatus: 429, RetryAfter: &ra}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the second is answered by the app's cooldown gate
		resp, raw := h.vend("c1", nil)
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("vend %d: %d %s, want 429", i, resp.StatusCode, raw)
		}
		e := wantErrorBody(t, resp, raw, "rate_limited")
		secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || secs < 1 || secs > ra || e.RetryAfter != secs {
			t.Errorf("vend %d: Retry-After %q, retry_after %d, want 1..%d and equal", i, resp.Header.Get("Retry-After"), e.RetryAfter, ra)
		}
	}
	if n := h.refreshes(); n != 1 {
		t.Errorf("%d refresh requests, want 1 (callers do not retry into a 429)", n)
	}
	if c := h.connection(appID, "c1"); c.State != spotoken.StateActive {
		t.Errorf("state %s after a 429, want active", c.State)
	}
	h.emu.ClearFaults()
	h.emu.Advance(time.Duration(ra) * time.Second)
	if resp, raw := h.vend("c1", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("after Retry-After: %d %s", resp.StatusCode, raw)
	}
}

// connectAll connects each of ids through the browser flow.
func (h *harness) connectAll(ids ...string) {
	h.t.Helper()
	for _, id := range ids {
		h.connect(id)
	}
}

func TestListConnections(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connectAll("e", "a", "d", "b", "c")
	var seen []string
	cursor := ""
	var cursors []string
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("pagination does not end")
		}
		path := "/v1/connections?limit=2"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var list server.ConnectionList
		resp, raw := h.call("GET", path, h.apiKey, nil, &list)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, raw)
		}
		for _, c := range list.Connections {
			seen = append(seen, c.ID)
			if c.State != spotoken.StateActive || c.SpotifyUserID != "alice" {
				t.Errorf("%s: %+v", c.ID, c)
			}
		}
		if list.NextCursor == "" {
			if strings.Contains(string(raw), "next_cursor") {
				t.Errorf("last page %s names a next_cursor", raw)
			}
			break
		}
		cursors = append(cursors, list.NextCursor)
		cursor = list.NextCursor
	}
	if diff := cmp.Diff(seen, []string{"a", "b", "c", "d", "e"}); diff != "" {
		t.Errorf("connections over the pages (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(cursors, []string{"b", "d"}); diff != "" {
		t.Errorf("cursors (-got +want):\n%s", diff)
	}
	// Exactly a page's worth: no next page.
	var list server.ConnectionList
	h.call("GET", "/v1/connections?limit=5", h.apiKey, nil, &list)
	if len(list.Connections) != 5 || list.NextCursor != "" {
		t.Errorf("limit=5 over 5: %d connections, next %q", len(list.Connections), list.NextCursor)
	}

	// State filter.
	if err := h.emu.RevokeGrant("alice", clientID); err != nil {
		t.Fatal(err)
	}
	h.emu.Advance(time.Hour)
	h.token("b")
	for _, tc := range []struct {
		state string
		want  []string
	}{
		{"needs_reauth", []string{"b"}},
		{"active", []string{"a", "c", "d", "e"}},
		{"revoked", []string{}},
		{"", []string{"a", "b", "c", "d", "e"}},
	} {
		var list server.ConnectionList
		resp, raw := h.call("GET", "/v1/connections?state="+tc.state, h.apiKey, nil, &list)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("state=%s: %d %s", tc.state, resp.StatusCode, raw)
		}
		got := []string{}
		for _, c := range list.Connections {
			got = append(got, c.ID)
		}
		if diff := cmp.Diff(got, tc.want); diff != "" {
			t.Errorf("state=%s (-got +want):\n%s", tc.state, diff)
		}
	}
	// An empty list is [], not null.
	_, raw := h.call("GET", "/v1/connections", h.otherKey, nil, nil)
	if got := strings.TrimSpace(string(raw)); got != `{"connections":[]}` {
		t.Errorf("empty list: %s", got)
	}
}

func TestListConnectionsInvalid(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, tc := range []struct{ query, desc string }{
		{"state=gone", "state must be active, needs_reauth or revoked"},
		{"state=ACTIVE", "state must be active, needs_reauth or revoked"},
		{"limit=0", "limit must be an integer from 1 to 1000"},
		{"limit=1001", "limit must be an integer from 1 to 1000"},
		{"limit=-1", "limit must be an integer from 1 to 1000"},
		{"limit=abc", "limit must be an integer from 1 to 1000"},
		{"limit=2.5", "limit must be an integer from 1 to 1000"},
		{"cursor=a%20b", "cursor is not a cursor this API returned"},
		{"cursor=" + strings.Repeat("a", 129), "cursor is not a cursor this API returned"},
		{"page=2", `unknown parameter "page"; use state, limit, cursor`},
		{"limit=1&limit=2", "parameter limit is repeated"},
	} {
		resp, raw := h.call("GET", "/v1/connections?"+tc.query, h.apiKey, nil, nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", tc.query, resp.StatusCode, raw)
			continue
		}
		if e := wantErrorBody(t, resp, raw, "invalid_request"); e.Description != tc.desc {
			t.Errorf("%s: %q, want %q", tc.query, e.Description, tc.desc)
		}
	}
}

func TestDeleteConnection(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("c1")
	h.connect("keep")
	if _, resp, _ := h.token("c1"); resp.StatusCode != http.StatusOK {
		t.Fatal("no token before deleting")
	}
	resp, raw := h.call("DELETE", "/v1/connections/c1", h.apiKey, nil, nil)
	if resp.StatusCode != http.StatusNoContent || len(raw) != 0 {
		t.Fatalf("DELETE: %d %q, want 204 and no body", resp.StatusCode, raw)
	}
	if h.connection(appID, "c1") != nil {
		t.Error("the connection is still stored")
	}
	for _, req := range []struct{ method, path string }{
		{"GET", "/v1/connections/c1"},
		{"DELETE", "/v1/connections/c1"},
		{"POST", "/v1/connections/c1/token"},
	} {
		resp, raw := h.call(req.method, req.path, h.apiKey, nil, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s after delete: %d %s, want 404", req.method, req.path, resp.StatusCode, raw)
			continue
		}
		wantErrorBody(t, resp, raw, "not_found")
	}
	want := []string{"connection.created demo/c1", "connection.created demo/keep", "connection.revoked demo/c1"}
	if diff := cmp.Diff(h.events(), want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	if h.connection(appID, "keep") == nil {
		t.Error("deleting c1 deleted keep")
	}
}

func TestGetConnectionInvalidID(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, path := range []string{"/v1/connections/a%20b", "/v1/connections/" + strings.Repeat("a", 129), "/v1/connections/%C3%A9"} {
		resp, raw := h.call("GET", path, h.apiKey, nil, nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", path, resp.StatusCode, raw)
			continue
		}
		wantErrorBody(t, resp, raw, "invalid_request")
	}
}

// TestOtherAppsConnections: a key sees only its app's connections; for
// another app's connection it gets exactly the answer a missing one gets.
func TestOtherAppsConnections(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("c1")
	h.connect("c2")
	type answer struct {
		Status int
		Header http.Header
		Body   string
	}
	ask := func(method, path string, body any) answer {
		resp, raw := h.call(method, path, h.otherKey, body, nil)
		hdr := resp.Header.Clone()
		for _, k := range []string{"Date", "X-Request-Id", "Content-Length"} {
			hdr.Del(k)
		}
		return answer{resp.StatusCode, hdr, string(raw)}
	}
	requests := []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/connections/c1", nil},
		{"POST", "/v1/connections/c1/token", nil},
		{"POST", "/v1/connections/c1/token", map[string]any{"force_refresh": true}},
		{"POST", "/v1/connections/c1/token", map[string]any{"min_ttl": 3000}},
		{"DELETE", "/v1/connections/c1", nil},
	}
	exists := make([]answer, len(requests))
	for i, r := range requests {
		exists[i] = ask(r.method, r.path, r.body)
		if exists[i].Status != http.StatusNotFound {
			t.Errorf("%s %s with another app's key: %d %s, want 404", r.method, r.path, exists[i].Status, exists[i].Body)
		}
	}
	var list server.ConnectionList
	h.call("GET", "/v1/connections", h.otherKey, nil, &list)
	if len(list.Connections) != 0 {
		t.Errorf("another app's key lists %d connections", len(list.Connections))
	}
	if c := h.connection(appID, "c1"); c == nil || c.State != spotoken.StateActive {
		t.Fatalf("another app's key changed c1: %+v", c)
	}
	if n := h.refreshes(); n != 0 {
		t.Errorf("another app's key caused %d refreshes", n)
	}
	// Now c1 exists nowhere: the answers must not differ by a byte.
	if resp, raw := h.call("DELETE", "/v1/connections/c1", h.apiKey, nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", resp.StatusCode, raw)
	}
	for i, r := range requests {
		missing := ask(r.method, r.path, r.body)
		if diff := cmp.Diff(exists[i], missing); diff != "" {
			t.Errorf("%s %s: another app's connection vs a missing one (-other +missing):\n%s", r.method, r.path, diff)
		}
	}
	if h.connection(appID, "c2") == nil {
		t.Error("c2 is gone")
	}
}

func TestUnknownRouteAndMethod(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, tc := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/nope", 404, "not_found", ""},
		{"GET", "/v1/connections/c1/nope", 404, "not_found", ""},
		{"GET", "/v1", 404, "not_found", ""},
		{"PUT", "/v1/connections/c1", 405, "method_not_allowed", "DELETE, GET, HEAD"},
		{"GET", "/v1/connect-sessions", 405, "method_not_allowed", "POST"},
		{"GET", "/v1/connections/c1/token", 405, "method_not_allowed", "POST"},
		{"POST", "/healthz", 405, "method_not_allowed", "GET, HEAD"},
		{"DELETE", "/callback", 405, "method_not_allowed", "GET, HEAD"},
	} {
		resp, raw := h.call(tc.method, tc.path, h.apiKey, nil, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, resp.StatusCode, raw, tc.status)
			continue
		}
		wantErrorBody(t, resp, raw, tc.code)
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

func TestHealth(t *testing.T) {
	var ready error
	var mu sync.Mutex
	h := newHarness(t, harnessOptions{server: func(c *server.Config) {
		c.Ready = func(context.Context) error { mu.Lock(); defer mu.Unlock(); return ready }
	}})
	check := func(path string, status int, want map[string]string) {
		t.Helper()
		var got map[string]string
		resp, raw := h.call("GET", path, "", nil, &got)
		if resp.StatusCode != status {
			t.Errorf("%s: %d %s, want %d", path, resp.StatusCode, raw, status)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("%s (-got +want):\n%s", path, diff)
		}
	}
	check("/healthz", 200, map[string]string{"status": "ok"})
	check("/readyz", 200, map[string]string{"status": "ready"})
	mu.Lock()
	ready = errors.New("database is locked: secret detail")
	mu.Unlock()
	check("/healthz", 200, map[string]string{"status": "ok"})
	check("/readyz", 503, map[string]string{"status": "unavailable", "error": "the database is not reachable or not migrated"})
	if !strings.Contains(h.logs.String(), "secret detail") {
		t.Error("the readiness failure is not logged")
	}
}

func TestRequestID(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	idRE := regexp.MustCompile(`^[A-Za-z0-9_-]{16}$`)
	for _, tc := range []struct {
		sent string
		echo bool
	}{
		{"req-123_abc.DEF", true},
		{"", false},
		{"has space", false},
		{"quote\"", false},
		{strings.Repeat("a", 65), false},
		{strings.Repeat("a", 64), true},
	} {
		req, _ := http.NewRequest("GET", h.ts.URL+"/healthz", nil)
		if tc.sent != "" {
			req.Header.Set("X-Request-Id", tc.sent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get("X-Request-Id")
		switch {
		case tc.echo && got != tc.sent:
			t.Errorf("sent %q, got %q, want it echoed", tc.sent, got)
		case !tc.echo && !idRE.MatchString(got):
			t.Errorf("sent %q, got %q, want a generated id", tc.sent, got)
		}
		if !strings.Contains(h.logs.String(), `"request_id":"`+got+`"`) {
			t.Errorf("request id %q not in the log", got)
		}
	}
	// Generated ids differ.
	a, _ := h.call("GET", "/healthz", "", nil, nil)
	b, _ := h.call("GET", "/healthz", "", nil, nil)
	if a.Header.Get("X-Request-Id") == b.Header.Get("X-Request-Id") {
		t.Error("two requests got the same generated id")
	}
	resp, _ := h.call("GET", "/v1/connections/nope", h.apiKey, nil, nil)
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id on an error answer")
	}
}

// listFails is a store whose connection listing fails.
type listFails struct{ server.Store }

func (listFails) Connections(context.Context, spotoken.ConnectionFilter) ([]*spotoken.Connection, error) {
	return nil, errors.New("disk I/O error at page 42")
}

// TestInternalError: the client sees a generic message naming the request
// id; the detail goes to the log under that id.
func TestInternalError(t *testing.T) {
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.Store = listFails{c.Store} }})
	resp, raw := h.call("GET", "/v1/connections", h.apiKey, nil, nil)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("%d %s, want 500", resp.StatusCode, raw)
	}
	e := wantErrorBody(t, resp, raw, "internal")
	id := resp.Header.Get("X-Request-Id")
	if !strings.Contains(e.Description, id) || strings.Contains(string(raw), "disk I/O") {
		t.Errorf("description %q: want the request id %s and no detail", e.Description, id)
	}
	var logged bool
	for _, line := range strings.Split(h.logs.String(), "\n") {
		logged = logged || strings.Contains(line, "disk I/O error at page 42") && strings.Contains(line, id)
	}
	if !logged {
		t.Error("the detail is not logged with the request id")
	}
}

// metricLines returns the scrape's sample lines for metric.
func metricLines(scrape, metric string) []string {
	var out []string
	for _, l := range strings.Split(scrape, "\n") {
		if strings.HasPrefix(l, metric+"{") || strings.HasPrefix(l, metric+" ") {
			out = append(out, l)
		}
	}
	return out
}

// metricValue returns the value of the sample metric{labels}, or -1.
func metricValue(scrape, sample string) float64 {
	for _, l := range strings.Split(scrape, "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

var labelRE = regexp.MustCompile(`route="([^"]*)"`)

func TestMetrics(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	sess := h.session("metrics-conn-1", nil, "")
	sessToken := strings.TrimPrefix(sess.URL, h.ts.URL+"/connect/")
	if r := flowGet(t, h.browser, sess.URL); r.Outcome != "connected" {
		t.Fatalf("connect: %q", r.Outcome)
	}
	h.token("metrics-conn-1")
	h.emu.Advance(time.Hour)
	h.token("metrics-conn-1")
	h.vend("missing-conn-2", nil)
	h.call("GET", "/v1/connections/metrics-conn-1", h.apiKey, nil, nil)
	h.call("GET", "/nope/metrics-conn-1", h.apiKey, nil, nil)
	flowGet(t, h.browser, sess.URL) // used: a second request with the session in the path

	resp, raw := h.call("GET", "/metrics", "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	scrape := string(raw)
	for sample, want := range map[string]float64{
		`spotoken_token_vends_total{outcome="ok"}`:                                              2,
		`spotoken_token_vends_total{outcome="not_found"}`:                                       1,
		`spotoken_refreshes_total{outcome="ok"}`:                                                1,
		`spotoken_connections{app="demo",state="active"}`:                                       1,
		`spotoken_http_requests_total{route="POST /v1/connections/{id}/token",status="200"}`:    2,
		`spotoken_http_requests_total{route="POST /v1/connections/{id}/token",status="404"}`:    1,
		`spotoken_http_requests_total{route="GET /connect/{session}",status="302"}`:             1,
		`spotoken_http_requests_total{route="GET /connect/{session}",status="400"}`:             1,
		`spotoken_http_requests_total{route="GET /callback",status="200"}`:                      1,
		`spotoken_http_requests_total{route="POST /v1/connect-sessions",status="201"}`:          1,
		`spotoken_http_requests_total{route="unmatched",status="404"}`:                          1,
		`spotoken_connect_flows_total{outcome="connected"}`:                                     1,
		`spotoken_connect_flows_total{outcome="session_used"}`:                                  1,
		`spotoken_http_request_duration_seconds_count{route="POST /v1/connections/{id}/token"}`: 3,
	} {
		if got := metricValue(scrape, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
	routes := map[string]bool{}
	for _, m := range labelRE.FindAllStringSubmatch(scrape, -1) {
		routes[m[1]] = true
	}
	var got []string
	for r := range routes {
		got = append(got, r)
	}
	sort.Strings(got)
	want := []string{
		"GET /callback", "GET /connect/{session}", "GET /v1/connections/{id}",
		"POST /v1/connect-sessions", "POST /v1/connections/{id}/token", "unmatched",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("route labels (-got +want):\n%s", diff)
	}
	for _, s := range []string{sessToken, "metrics-conn-1", "missing-conn-2", h.apiKey} {
		if strings.Contains(scrape, s) {
			t.Errorf("the scrape contains %q", s)
		}
	}
	if len(metricLines(scrape, "go_goroutines")) != 1 {
		t.Error("the Go collector is missing")
	}
}

// TestMetricsWithoutEngineStats: a server without EngineStats still serves
// its metrics.
func TestMetricsWithoutEngineStats(t *testing.T) {
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.EngineStats = nil }})
	h.connect("c1")
	_, raw := h.call("GET", "/metrics", "", nil, nil)
	scrape := string(raw)
	if len(metricLines(scrape, "spotoken_refreshes_total")) != 0 {
		t.Error("refresh counters without engine stats")
	}
	if got := metricValue(scrape, `spotoken_connections{app="demo",state="active"}`); got != 1 {
		t.Errorf("connections gauge %v, want 1", got)
	}
}

// TestServerConfig: New refuses what it cannot work with.
func TestServerConfig(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	base := server.Config{Store: h.store, Tokens: h.engine, PublicURL: "https://spotoken.example"}
	for _, tc := range []struct {
		name string
		edit func(*server.Config)
		ok   bool
	}{
		{"valid", func(*server.Config) {}, true},
		{"trailing slash", func(c *server.Config) { c.PublicURL += "/" }, true},
		{"trailing slashes", func(c *server.Config) { c.PublicURL += "//" }, true},
		{"no store", func(c *server.Config) { c.Store = nil }, false},
		{"no tokens", func(c *server.Config) { c.Tokens = nil }, false},
		{"no public URL", func(c *server.Config) { c.PublicURL = "" }, false},
		{"relative public URL", func(c *server.Config) { c.PublicURL = "/x" }, false},
		{"public URL with query", func(c *server.Config) { c.PublicURL += "?a=b" }, false},
		{"public URL with credentials", func(c *server.Config) { c.PublicURL = "https://u:p@spotoken.example" }, false},
		{"ftp accounts URL", func(c *server.Config) { c.AccountsURL = "ftp://x" }, false},
	} {
		cfg := base
		tc.edit(&cfg)
		s, err := server.New(cfg)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.name, err)
		}
		if strings.HasPrefix(tc.name, "trailing slash") && s != nil && s.CallbackURL() != "https://spotoken.example/callback" {
			t.Errorf("callback URL %s", s.CallbackURL())
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	resp, raw := h.call("GET", "/openapi.json", "", nil, nil)
	var doc map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &doc) != nil || doc["openapi"] == nil {
		t.Errorf("/openapi.json: %d %.80s", resp.StatusCode, raw)
	}
}

// TestRunDeletesExpiredPending: Run sweeps connect sessions past their
// expiry: an old link goes from expired (then used) to expired again, told
// by the expiry its token carries once its row is gone, while a fresh one
// stays.
func TestRunDeletesExpiredPending(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	old := h.session("old", nil, "")
	h.emu.Advance(server.DefaultSessionTTL + time.Second)
	fresh := h.session("fresh", nil, "")
	if r := flowGet(t, stayClient(nil), old.URL); r.Outcome != "session_expired" {
		t.Fatalf("old link before Run: %q", r.Outcome)
	}
	if r := flowGet(t, stayClient(nil), old.URL); r.Outcome != "session_used" {
		t.Fatalf("old link again before Run: %q", r.Outcome)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.srv.Run(ctx, 5*time.Millisecond) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if r := flowGet(t, stayClient(nil), old.URL); r.Outcome == "session_expired" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not delete the expired session")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if r := flowGet(t, stayClient(nil), fresh.URL); r.Status != http.StatusFound {
		t.Errorf("the fresh link after Run: %d %q", r.Status, r.Outcome)
	}
}

// countFails is a store whose connection count fails.
type countFails struct{ server.Store }

func (countFails) CountConnections(context.Context) ([]spotoken.ConnectionCount, error) {
	return nil, errors.New("database is down")
}

// TestMetricsWhileStoreFails: a failing count costs its own gauge, not the
// whole scrape: the other metrics matter most when the database is down.
func TestMetricsWhileStoreFails(t *testing.T) {
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.Store = countFails{c.Store} }})
	h.connect("c1")
	h.token("c1")
	resp, raw := h.call("GET", "/metrics", "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %.200s", resp.StatusCode, raw)
	}
	scrape := string(raw)
	if got := metricValue(scrape, `spotoken_token_vends_total{outcome="ok"}`); got != 1 {
		t.Errorf("vends %v, want 1", got)
	}
	if lines := metricLines(scrape, "spotoken_connections"); len(lines) != 0 {
		t.Errorf("connections gauge without a count: %v", lines)
	}
	if strings.Contains(scrape, "database is down") {
		t.Error("the scrape shows the store's error")
	}
	if !strings.Contains(h.logs.String(), "database is down") {
		t.Error("the collection error is not logged")
	}
}

// pausingStore holds the engine's next connection read, after it read the
// row, until released: a vend caught mid-flight.
type pausingStore struct {
	refresh.Store
	mu      sync.Mutex
	armed   bool
	read    chan struct{}
	release chan struct{}
}

func (s *pausingStore) arm() {
	s.mu.Lock()
	s.armed, s.read, s.release = true, make(chan struct{}), make(chan struct{})
	s.mu.Unlock()
}

func (s *pausingStore) Connection(ctx context.Context, key spotoken.ConnectionKey) (*spotoken.Connection, error) {
	c, err := s.Store.Connection(ctx, key)
	s.mu.Lock()
	armed := s.armed
	s.armed = false
	s.mu.Unlock()
	if armed {
		close(s.read)
		<-s.release
	}
	return c, err
}

// TestTokenInFlightDuringDelete: a vend that read the row before the
// connection was deleted (or re-authorized) may still answer with that
// token, but it must not make the engine serve it afterwards.
func TestTokenInFlightDuringDelete(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(h *harness)
		check  func(h *harness, old string) string // what is wrong, or ""
	}{
		{"delete", func(h *harness) {
			if resp, raw := h.call("DELETE", "/v1/connections/c1", h.apiKey, nil, nil); resp.StatusCode != http.StatusNoContent {
				h.t.Fatalf("delete: %d %s", resp.StatusCode, raw)
			}
		}, func(h *harness, old string) string {
			if resp, raw := h.vend("c1", nil); resp.StatusCode != http.StatusNotFound {
				return fmt.Sprintf("vend after delete: %d %.60s, want 404", resp.StatusCode, raw)
			}
			return ""
		}},
		{"re-connect", func(h *harness) { h.connect("c1", "user-top-read") }, func(h *harness, old string) string {
			tok, resp, _ := h.token("c1")
			if resp.StatusCode != http.StatusOK || tok.AccessToken == old || tok.Scope != "user-top-read" {
				return fmt.Sprintf("vend after re-connect: %d, old token %v, scope %q", resp.StatusCode, tok.AccessToken == old, tok.Scope)
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := &pausingStore{}
			h := newHarness(t, harnessOptions{engine: func(c *refresh.Config) { ps.Store = c.Store; c.Store = ps }})
			h.connect("c1")
			old := h.connection(appID, "c1").Token.AccessToken.Reveal()
			ps.arm()
			inflight := make(chan int)
			go func() {
				req, _ := http.NewRequest("POST", h.ts.URL+"/v1/connections/c1/token", nil)
				req.Header.Set("Authorization", "Bearer "+h.apiKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					inflight <- 0
					return
				}
				resp.Body.Close()
				inflight <- resp.StatusCode
			}()
			<-ps.read
			tc.change(h)
			close(ps.release)
			<-inflight
			if problem := tc.check(h, old); problem != "" {
				t.Errorf("a token read before the change outlived it in memory: %s", problem)
			}
		})
	}
}
