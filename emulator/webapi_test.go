package emulator_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken/emulator"
)

// The Web API tests hold the emulator to /work/shared/SPOTIFY.md: "Web API
// errors", "Rate limits", "Scopes" and "Endpoints the emulator serves, and the
// scopes they need".

// spotifyScopes is SPOTIFY.md's "Scopes" list, written out here rather than
// taken from emulator.Scopes so that the emulator is checked against the
// reference, not against itself.
var spotifyScopes = []string{
	"ugc-image-upload",
	"user-read-playback-state", "user-modify-playback-state", "user-read-currently-playing",
	"app-remote-control", "streaming",
	"playlist-read-private", "playlist-read-collaborative", "playlist-modify-private", "playlist-modify-public",
	"user-follow-modify", "user-follow-read",
	"user-read-playback-position", "user-top-read", "user-read-recently-played",
	"user-library-modify", "user-library-read",
	"user-read-email", "user-read-private",
	"user-soa-link", "user-soa-unlink", "soa-manage-entitlements", "soa-manage-partner", "soa-create-partner",
}

// scopesExcept is every Spotify scope but omit, space-separated.
func scopesExcept(omit string) string {
	var out []string
	for _, s := range spotifyScopes {
		if s != omit {
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}

// webAPIEndpoint is one row of SPOTIFY.md's endpoints table.
type webAPIEndpoint struct {
	name, method, path, body string
	scope                    string // the scope it needs; "" for none
	ok                       int    // the status with exactly that scope, as alice (Premium)
}

var webAPIEndpoints = []webAPIEndpoint{
	{"me", http.MethodGet, "/v1/me", "", "", http.StatusOK},
	{"currently-playing", http.MethodGet, "/v1/me/player/currently-playing", "", "user-read-currently-playing", http.StatusNoContent},
	{"my-playlists", http.MethodGet, "/v1/me/playlists", "", "playlist-read-private", http.StatusOK},
	{"create-public-playlist", http.MethodPost, "/v1/users/alice/playlists", `{"name":"Mix","public":true}`, "playlist-modify-public", http.StatusCreated},
	{"create-playlist-public-by-default", http.MethodPost, "/v1/users/alice/playlists", `{"name":"Mix"}`, "playlist-modify-public", http.StatusCreated},
	{"create-private-playlist", http.MethodPost, "/v1/users/alice/playlists", `{"name":"Mix","public":false}`, "playlist-modify-private", http.StatusCreated},
	{"create-my-public-playlist", http.MethodPost, "/v1/me/playlists", `{"name":"Mix"}`, "playlist-modify-public", http.StatusCreated},
	{"create-my-private-playlist", http.MethodPost, "/v1/me/playlists", `{"name":"Mix","public":false}`, "playlist-modify-private", http.StatusCreated},
	{"play", http.MethodPut, "/v1/me/player/play", "", "user-modify-playback-state", http.StatusNoContent},
	{"pause", http.MethodPut, "/v1/me/player/pause", "", "user-modify-playback-state", http.StatusNoContent},
	{"top-artists", http.MethodGet, "/v1/me/top/artists", "", "user-top-read", http.StatusOK},
	{"top-tracks", http.MethodGet, "/v1/me/top/tracks", "", "user-top-read", http.StatusOK},
}

// callAPI sends a Web API request with a raw Authorization header ("" sends
// none), for the cases env.api cannot express (non-Bearer schemes), and
// decodes its JSON answer.
func callAPI(t *testing.T, e *env, method, path, authorization, body string) apiResult {
	t.Helper()
	res := rawAPI(t, e, method, path, authorization, body)
	if len(res.Raw) > 0 {
		if err := json.Unmarshal([]byte(res.Raw), &res.Body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %q", method, path, res.Raw)
		}
	}
	return res
}

// rawAPI is callAPI for answers that are not JSON.
func rawAPI(t *testing.T, e *env, method, path, authorization, body string) apiResult {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return apiResult{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
}

// userToken authorizes userID for the public client with scope and returns
// the access token.
func userToken(e *env, userID, scope string) string {
	e.t.Helper()
	e.emu.SetAutoApprove(userID)
	tok := e.pkceGrant(scope).str("access_token")
	if tok == "" {
		e.t.Fatal("no access_token")
	}
	return tok
}

// wantAPIError is Spotify's Web API error object as encoding/json decodes it.
func wantAPIError(status int, message, reason string) map[string]any {
	obj := map[string]any{"status": float64(status), "message": message}
	if reason != "" {
		obj["reason"] = reason
	}
	return map[string]any{"error": obj}
}

// checkAPIError asserts that res is exactly Spotify's error answer: status,
// body {"error":{"status":N,"message":…[,"reason":…]}}, a JSON Content-Type,
// and WWW-Authenticate exactly wwwAuth ("" means the header must be absent).
func checkAPIError(t *testing.T, res apiResult, status int, message, reason, wwwAuth string) {
	t.Helper()
	if res.Status != status {
		t.Errorf("status = %d, want %d; body %s", res.Status, status, res.Raw)
	}
	if diff := cmp.Diff(res.Body, wantAPIError(status, message, reason)); diff != "" {
		t.Errorf("error body mismatch (-got +want):\n%s", diff)
	}
	checkJSONContentType(t, res.Header)
	got := res.Header.Values("WWW-Authenticate")
	switch {
	case wwwAuth == "" && len(got) != 0:
		t.Errorf("WWW-Authenticate = %q, want none", got)
	case wwwAuth != "" && !slices.Equal(got, []string{wwwAuth}):
		t.Errorf("WWW-Authenticate = %q, want exactly [%q]", got, wwwAuth)
	}
}

// checkAPIErrorShape is checkAPIError for errors whose message SPOTIFY.md
// does not fix: any non-empty message, no reason, no WWW-Authenticate.
func checkAPIErrorShape(t *testing.T, res apiResult, status int) {
	t.Helper()
	msg := "(a non-empty message)"
	if inner, ok := res.Body["error"].(map[string]any); ok {
		if m, ok := inner["message"].(string); ok && m != "" {
			msg = m
		}
	}
	checkAPIError(t, res, status, msg, "", "")
}

// checkJSONContentType asserts Content-Type application/json (charset utf-8
// if a charset is given).
func checkJSONContentType(t *testing.T, h http.Header) {
	t.Helper()
	ct := h.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
		return
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		t.Errorf("Content-Type = %q, want charset utf-8", ct)
	}
}

// checkRetryAfter asserts an integer Retry-After of at least lo and at most
// hi seconds and returns it.
func checkRetryAfter(t *testing.T, h http.Header, lo, hi int) int {
	t.Helper()
	v := h.Get("Retry-After")
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		t.Errorf("Retry-After = %q, want an integer number of seconds in [%d, %d]", v, lo, hi)
	}
	return n
}

// sortedKeys lists m's keys in order.
func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// The 401 messages by era (SPOTIFY.md, "Web API errors"), written out here
// rather than taken from the emulator.
const (
	message2026    = "Missing/invalid/expired access token"
	challengeNone  = `Bearer realm="spotify"`
	invalidToken   = `Bearer realm="spotify", error="invalid_token", error_description="Invalid access token"`
	expiredToken   = `Bearer realm="spotify", error="invalid_token", error_description="The access token expired"`
	malformedToken = `Bearer realm="spotify", error="invalid_request", error_description="Only valid bearer authentication supported"`
)

// authCase is a way to present (or not) an access token, and what each era
// of Spotify answers to it.
type authCase struct {
	name          string
	authorization func(t *testing.T, e *env, ep webAPIEndpoint) string // "" sends no header
	status        int
	message       string // today's (and, for 400, both eras')
	legacy        string // before 2026-07
	legacyWWW     string // the legacy WWW-Authenticate; today's 401 has none
}

// expiredAuthorization grants ep's scope, checks the token works one second
// before expires_in and returns it one second after.
func expiredAuthorization(t *testing.T, e *env, ep webAPIEndpoint) string {
	tok := e.pkceGrant(ep.scope).str("access_token")
	e.emu.Advance(emulator.DefaultTokenTTL - time.Second)
	if res := e.api(ep.method, ep.path, tok, ep.body); res.Status != ep.ok {
		t.Fatalf("just before expiry: %d %s, want %d", res.Status, res.Raw, ep.ok)
	}
	e.emu.Advance(2 * time.Second)
	return "Bearer " + tok
}

var authCases = func() []authCase {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(confID+":"+confSecret))
	const bad = "Only valid bearer authentication supported"
	fixed := func(v string) func(*testing.T, *env, webAPIEndpoint) string {
		return func(*testing.T, *env, webAPIEndpoint) string { return v }
	}
	withToken := func(format string) func(*testing.T, *env, webAPIEndpoint) string {
		return func(t *testing.T, e *env, ep webAPIEndpoint) string {
			return strings.ReplaceAll(format, "TOKEN", e.pkceGrant(ep.scope).str("access_token"))
		}
	}
	return []authCase{
		{"no Authorization header", fixed(""), 401, message2026, "No token provided", challengeNone},
		{"empty bearer token", fixed("Bearer "), 401, message2026, "Invalid access token", invalidToken},
		{"unknown token", fixed("Bearer BQnot-a-token-the-emulator-issued"), 401, message2026, "Invalid access token", invalidToken},
		{"expired token", expiredAuthorization, 401, message2026, "The access token expired", expiredToken},
		{"Basic instead of Bearer", fixed(basic), 400, bad, bad, malformedToken},
		{"valid token under another scheme", withToken("Token TOKEN"), 400, bad, bad, malformedToken},
		{"stringified dict (spotipy#687)", withToken("Bearer {'access_token': 'TOKEN', 'token_type': 'Bearer'}"), 400, bad, bad, malformedToken},
		{"token with a space", withToken("Bearer TOKEN extra"), 400, bad, bad, malformedToken},
		{"quoted token", withToken(`Bearer "TOKEN"`), 400, bad, bad, malformedToken},
	}
}()

// TestWebAPIAuthErrors: the authentication rows of SPOTIFY.md's "Web API
// errors" table, on every endpoint the emulator serves, as Spotify answers
// them today (one 401 message for an expired, unknown or empty token, no
// WWW-Authenticate) and, with Legacy401, before 2026-07 (three messages,
// each with its challenge). A malformed Authorization is 400 in both eras.
func TestWebAPIAuthErrors(t *testing.T) {
	t.Parallel()
	for _, legacy := range []bool{false, true} {
		for _, ep := range webAPIEndpoints {
			for _, tc := range authCases {
				t.Run(fmt.Sprintf("legacy %v/%s/%s", legacy, ep.name, tc.name), func(t *testing.T) {
					t.Parallel()
					e := newEnv(t, func(c *emulator.Config) { c.Legacy401 = legacy })
					res := callAPI(t, e, ep.method, ep.path, tc.authorization(t, e, ep), ep.body)
					switch {
					case tc.status == 400:
						checkAPIError(t, res, 400, tc.message, "", malformedToken)
					case legacy:
						checkAPIError(t, res, 401, tc.legacy, "", tc.legacyWWW)
					default:
						checkAPIError(t, res, 401, tc.message, "", "")
					}
				})
			}
		}
	}
}

// TestWebAPIScopes: "endpoint without the needed scope" for every row of the
// endpoints table. A token holding every other scope is refused, by a player
// endpoint (/v1/me/player…) with 401 Permissions missing, by any other with
// 403 Insufficient client scope; a token holding only the needed scope is
// served.
func TestWebAPIScopes(t *testing.T) {
	t.Parallel()
	for _, ep := range webAPIEndpoints {
		t.Run(ep.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			if ep.scope != "" {
				res := e.api(ep.method, ep.path, e.pkceGrant(scopesExcept(ep.scope)).str("access_token"), ep.body)
				if strings.HasPrefix(ep.path, "/v1/me/player") {
					checkAPIError(t, res, http.StatusUnauthorized, "Permissions missing", "", "")
				} else {
					checkAPIError(t, res, http.StatusForbidden, "Insufficient client scope", "", "")
				}
			}
			res := e.api(ep.method, ep.path, e.pkceGrant(ep.scope).str("access_token"), ep.body)
			if res.Status != ep.ok {
				t.Errorf("with only %q: %d %s, want %d", ep.scope, res.Status, res.Raw, ep.ok)
			}
		})
	}
}

// TestWebAPIErrors: the remaining rows of SPOTIFY.md's "Web API errors"
// table (the authentication rows are TestWebAPIAuthErrors, the scope row
// TestWebAPIScopes).
func TestWebAPIErrors(t *testing.T) {
	t.Parallel()

	t.Run("user not on a development-mode app's allowlist", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(c *emulator.Config) {
			for i := range c.Clients {
				if c.Clients[i].ID == pubID {
					c.Clients[i].Allowlist = []string{"carol"}
				}
			}
		})
		// alice can log in (the grant succeeds) but every endpoint refuses
		// her, in plain text: not Spotify's JSON error object.
		tok := userToken(e, "alice", strings.Join(spotifyScopes, " "))
		for _, ep := range webAPIEndpoints {
			t.Run(ep.name, func(t *testing.T) {
				res := rawAPI(t, e, ep.method, ep.path, "Bearer "+tok, ep.body)
				if res.Status != http.StatusForbidden || res.Raw != "User not registered in the Developer Dashboard" {
					t.Errorf("%d %q, want 403 with the plain text", res.Status, res.Raw)
				}
				if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("Content-Type %q, want text/plain", ct)
				}
			})
		}
		// carol is on the allowlist.
		if res := e.api("GET", "/v1/me", userToken(e, "carol", ""), ""); res.Status != http.StatusOK {
			t.Errorf("allowlisted user: %d %s, want 200", res.Status, res.Raw)
		}
	})

	t.Run("player command without Premium", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		if err := e.emu.AddUser(emulator.User{ID: "bob", Product: "free"}); err != nil {
			t.Fatal(err)
		}
		res := e.api("PUT", "/v1/me/player/play", userToken(e, "bob", "user-modify-playback-state"), "")
		checkAPIError(t, res, http.StatusForbidden, "Player command failed: Premium required", "PREMIUM_REQUIRED", "")
	})

	t.Run("rate limited", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, func(c *emulator.Config) { c.RateLimit = 1 })
		tok := e.pkceGrant("").str("access_token")
		if res := e.api("GET", "/v1/me", tok, ""); res.Status != http.StatusOK {
			t.Fatalf("first request: %d %s", res.Status, res.Raw)
		}
		res := e.api("GET", "/v1/me", tok, "")
		checkAPIError(t, res, http.StatusTooManyRequests, "API rate limit exceeded", "", "")
		checkRetryAfter(t, res.Header, 1, int(emulator.RateWindow/time.Second))
	})

	t.Run("development-mode quota exhausted", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		tok := e.pkceGrant("").str("access_token")
		if code, body := e.control("POST", "faults", `{"api_status":429,"api_message":"Too many requests","api_reason":"QUOTA_EXCEEDED","count":1}`); code != http.StatusNoContent {
			t.Fatalf("POST faults: %d %s", code, body)
		}
		res := e.api("GET", "/v1/me", tok, "")
		checkAPIError(t, res, http.StatusTooManyRequests, "Too many requests", "QUOTA_EXCEEDED", "")
		if res := e.api("GET", "/v1/me", tok, ""); res.Status != http.StatusOK {
			t.Errorf("after the one faulted request: %d %s, want 200", res.Status, res.Raw)
		}
	})

	t.Run("429 with an empty body and Retry-After 0", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		tok := e.pkceGrant("").str("access_token")
		if code, body := e.control("POST", "faults", `{"api_status":429,"empty_body":true,"retry_after":0,"count":1}`); code != http.StatusNoContent {
			t.Fatalf("POST faults: %d %s", code, body)
		}
		res := e.api("GET", "/v1/me", tok, "")
		if res.Status != http.StatusTooManyRequests || res.Raw != "" {
			t.Errorf("got %d %q, want 429 with an empty body", res.Status, res.Raw)
		}
		if got := res.Header.Values("Retry-After"); !slices.Equal(got, []string{"0"}) {
			t.Errorf("Retry-After = %q, want [\"0\"]", got)
		}
	})
}

// TestWebAPIRateLimit: "Rate limits" — per app, over a rolling 30-second
// window, 429 with an honest Retry-After.
func TestWebAPIRateLimit(t *testing.T) {
	t.Parallel()
	const limit = 3
	e := newEnv(t, func(c *emulator.Config) { c.RateLimit = limit })
	pub := e.pkceGrant("").str("access_token")
	conf := e.confGrant("").str("access_token")
	window := int(emulator.RateWindow / time.Second)

	for i := range limit {
		if res := e.api("GET", "/v1/me", pub, ""); res.Status != http.StatusOK {
			t.Fatalf("request %d of %d: %d %s", i+1, limit, res.Status, res.Raw)
		}
	}
	res := e.api("GET", "/v1/me", pub, "")
	checkAPIError(t, res, http.StatusTooManyRequests, "API rate limit exceeded", "", "")
	checkRetryAfter(t, res.Header, 1, window)

	// The limit is per app: the confidential client is not limited.
	if res := e.api("GET", "/v1/me", conf, ""); res.Status != http.StatusOK {
		t.Errorf("other client: %d %s, want 200", res.Status, res.Raw)
	}

	// Ten seconds on, the window still holds the three requests.
	e.emu.Advance(10 * time.Second)
	res = e.api("GET", "/v1/me", pub, "")
	checkAPIError(t, res, http.StatusTooManyRequests, "API rate limit exceeded", "", "")
	checkRetryAfter(t, res.Header, 1, window-10)

	// Thirty seconds after them, they have left the window.
	e.emu.Advance(20 * time.Second)
	if res := e.api("GET", "/v1/me", pub, ""); res.Status != http.StatusOK {
		t.Errorf("30 s later: %d %s (Retry-After %q), want 200", res.Status, res.Raw, res.Header.Get("Retry-After"))
	}
}

// TestWebAPIMe: GET /v1/me's user object, and which deprecated fields each
// scope and development mode allow.
func TestWebAPIMe(t *testing.T) {
	t.Parallel()
	private := []string{"country", "product", "explicit_content"}
	rows := []struct {
		name  string
		dev   bool
		scope string
		extra []string // fields beyond the base user object
	}{
		{"no scope", false, "", []string{"followers"}},
		{"user-read-email", false, "user-read-email", []string{"followers", "email"}},
		{"user-read-private", false, "user-read-private", append([]string{"followers"}, private...)},
		{"both", false, "user-read-email user-read-private", append([]string{"followers", "email"}, private...)},
		{"development mode, no scope", true, "", nil},
		{"development mode, both", true, "user-read-email user-read-private", nil},
		{"development mode, every scope", true, strings.Join(spotifyScopes, " "), nil},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *emulator.Config) { c.DevelopmentMode = tc.dev })
			if err := e.emu.AddUser(emulator.User{ID: "alice", DisplayName: "Alice Liddell", Email: "alice@wonderland.example", Country: "GB"}); err != nil {
				t.Fatal(err)
			}
			res := e.api("GET", "/v1/me", e.pkceGrant(tc.scope).str("access_token"), "")
			if res.Status != http.StatusOK {
				t.Fatalf("GET /v1/me: %d %s", res.Status, res.Raw)
			}
			checkJSONContentType(t, res.Header)

			base := []string{"account_id", "display_name", "external_urls", "href", "id", "images", "type", "uri"}
			if diff := cmp.Diff(sortedKeys(res.Body), slices.Sorted(slices.Values(append(base, tc.extra...)))); diff != "" {
				t.Errorf("fields (-got +want):\n%s", diff)
			}
			if id, _ := res.Body["account_id"].(string); id == "" {
				t.Errorf("account_id = %#v, want a non-empty string", res.Body["account_id"])
			}
			values := map[string]any{
				"display_name":  "Alice Liddell",
				"external_urls": map[string]any{"spotify": "https://open.spotify.com/user/alice"},
				"href":          e.srv.URL + "/v1/users/alice",
				"id":            "alice",
				"images":        []any{},
				"type":          "user",
				"uri":           "spotify:user:alice",
				"email":         "alice@wonderland.example",
				"country":       "GB",
				"product":       "premium",
			}
			got, want := map[string]any{}, map[string]any{}
			for k, v := range values {
				if slices.Contains(base, k) || slices.Contains(tc.extra, k) {
					want[k] = v
				}
				if g, ok := res.Body[k]; ok {
					got[k] = g
				}
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("values (-got +want):\n%s", diff)
			}
			if v, ok := res.Body["explicit_content"]; ok {
				ec, _ := v.(map[string]any)
				_, enabled := ec["filter_enabled"].(bool)
				_, locked := ec["filter_locked"].(bool)
				if !enabled || !locked {
					t.Errorf("explicit_content = %#v, want {filter_enabled: bool, filter_locked: bool}", v)
				}
			}
			if v, ok := res.Body["followers"]; ok {
				if f, _ := v.(map[string]any); f == nil || f["total"] == nil {
					t.Errorf("followers = %#v, want {href, total}", v)
				}
			}
		})
	}

	t.Run("account_id is per user", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		accountID := func(user string) any {
			res := e.api("GET", "/v1/me", userToken(e, user, ""), "")
			if res.Status != http.StatusOK {
				t.Fatalf("GET /v1/me as %s: %d %s", user, res.Status, res.Raw)
			}
			return res.Body["account_id"]
		}
		a1, a2, b := accountID("alice"), accountID("alice"), accountID("bob")
		if a1 != a2 {
			t.Errorf("alice's account_id changed between grants: %v, %v", a1, a2)
		}
		if a1 == b {
			t.Errorf("alice and bob share account_id %v", a1)
		}
	})

	t.Run("free user's product", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		if err := e.emu.AddUser(emulator.User{ID: "bob", Product: "free"}); err != nil {
			t.Fatal(err)
		}
		res := e.api("GET", "/v1/me", userToken(e, "bob", "user-read-private"), "")
		if res.Status != http.StatusOK || res.Body["product"] != "free" {
			t.Errorf("got %d product %v, want 200 free", res.Status, res.Body["product"])
		}
	})
}

// TestWebAPIPlayer: currently-playing is 204 with an empty body until PUT
// play starts something, then 200 with the playback object.
func TestWebAPIPlayer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.pkceGrant("user-read-currently-playing user-modify-playback-state").str("access_token")

	res := e.api("GET", "/v1/me/player/currently-playing", tok, "")
	if res.Status != http.StatusNoContent || res.Raw != "" {
		t.Fatalf("nothing playing: %d %q, want 204 with an empty body", res.Status, res.Raw)
	}

	res = e.api("PUT", "/v1/me/player/play", tok, "")
	if res.Status != http.StatusNoContent || res.Raw != "" {
		t.Fatalf("PUT play: %d %q, want 204 with an empty body", res.Status, res.Raw)
	}
	e.emu.Advance(5 * time.Second)

	current := func() map[string]any {
		t.Helper()
		res := e.api("GET", "/v1/me/player/currently-playing", tok, "")
		if res.Status != http.StatusOK {
			t.Fatalf("currently-playing: %d %s, want 200", res.Status, res.Raw)
		}
		checkJSONContentType(t, res.Header)
		want := []string{"actions", "context", "currently_playing_type", "is_playing", "item", "progress_ms", "timestamp"}
		if diff := cmp.Diff(sortedKeys(res.Body), want); diff != "" {
			t.Errorf("fields (-got +want):\n%s", diff)
		}
		if _, ok := res.Body["timestamp"].(float64); !ok {
			t.Errorf("timestamp = %#v, want a number", res.Body["timestamp"])
		}
		if d, _ := res.Body["actions"].(map[string]any); d == nil || d["disallows"] == nil {
			t.Errorf("actions = %#v, want {disallows: {…}}", res.Body["actions"])
		}
		return res.Body
	}
	body := current()
	item, _ := body["item"].(map[string]any)
	id, _ := item["id"].(string)
	got := map[string]any{"is_playing": body["is_playing"], "progress_ms": body["progress_ms"],
		"currently_playing_type": body["currently_playing_type"], "item.type": item["type"], "item.uri": item["uri"]}
	want := map[string]any{"is_playing": true, "progress_ms": float64(5000),
		"currently_playing_type": "track", "item.type": "track", "item.uri": "spotify:track:" + id}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("playback (-got +want):\n%s", diff)
	}
	if id == "" {
		t.Fatalf("item = %#v, want a track with an id", body["item"])
	}

	// Play that track from 1 s in.
	res = e.api("PUT", "/v1/me/player/play", tok, `{"uris":["spotify:track:`+id+`"],"position_ms":1000}`)
	if res.Status != http.StatusNoContent {
		t.Fatalf("PUT play with uris: %d %s", res.Status, res.Raw)
	}
	body = current()
	item, _ = body["item"].(map[string]any)
	if body["progress_ms"] != float64(1000) || item["id"] != id {
		t.Errorf("after play from 1000 ms: progress_ms %v item %v, want 1000 %s", body["progress_ms"], item["id"], id)
	}

	checkAPIErrorShape(t, e.api("PUT", "/v1/me/player/play", tok, `{"uris":["spotify:track:doesnotexist"]}`), http.StatusBadRequest)
	checkAPIErrorShape(t, e.api("PUT", "/v1/me/player/play", tok, `{"uris":`), http.StatusBadRequest)
}

// checkPaging asserts a Spotify paging object and returns its items.
func checkPaging(t *testing.T, body map[string]any, limit, offset, total int) []any {
	t.Helper()
	want := []string{"href", "items", "limit", "next", "offset", "previous", "total"}
	if diff := cmp.Diff(sortedKeys(body), want); diff != "" {
		t.Errorf("paging fields (-got +want):\n%s", diff)
	}
	items, ok := body["items"].([]any)
	if !ok {
		t.Errorf("items = %#v, want an array", body["items"])
	}
	got := map[string]any{"limit": body["limit"], "offset": body["offset"], "total": body["total"], "len(items)": len(items)}
	wantNums := map[string]any{"limit": float64(limit), "offset": float64(offset), "total": float64(total),
		"len(items)": max(0, min(limit, total-offset))}
	if diff := cmp.Diff(got, wantNums); diff != "" {
		t.Errorf("paging (-got +want):\n%s", diff)
	}
	return items
}

// checkLink asserts that link is an absolute URL on the emulator for path
// with exactly query q, or null when q is nil; it returns the request URI.
func checkLink(t *testing.T, e *env, name string, link any, path string, q url.Values) string {
	t.Helper()
	if q == nil {
		if link != nil {
			t.Errorf("%s = %#v, want null", name, link)
		}
		return ""
	}
	s, _ := link.(string)
	u, err := url.Parse(s)
	if err != nil || s == "" {
		t.Errorf("%s = %#v, want a URL", name, link)
		return ""
	}
	if u.Scheme+"://"+u.Host != e.srv.URL || u.Path != path {
		t.Errorf("%s = %q, want %s%s?…", name, s, e.srv.URL, path)
	}
	if diff := cmp.Diff(u.Query(), q); diff != "" {
		t.Errorf("%s query (-got +want):\n%s", name, diff)
	}
	return u.RequestURI()
}

// TestWebAPIPlaylists: GET /v1/me/playlists paging and POST
// /v1/users/{user_id}/playlists.
func TestWebAPIPlaylists(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.pkceGrant("playlist-read-private playlist-modify-public playlist-modify-private").str("access_token")
	const path = "/v1/me/playlists"

	list := func(query string) map[string]any {
		t.Helper()
		res := e.api("GET", path+query, tok, "")
		if res.Status != http.StatusOK {
			t.Fatalf("GET %s%s: %d %s", path, query, res.Status, res.Raw)
		}
		checkJSONContentType(t, res.Header)
		return res.Body
	}

	empty := list("")
	checkPaging(t, empty, 20, 0, 0)
	checkLink(t, e, "href", empty["href"], path, url.Values{"limit": {"20"}, "offset": {"0"}})
	checkLink(t, e, "next", empty["next"], path, nil)
	checkLink(t, e, "previous", empty["previous"], path, nil)

	created := map[string]bool{} // id → public
	for _, c := range []struct {
		body   string
		name   string
		public bool
	}{
		{`{"name":"First","description":"one","public":false}`, "First", false},
		{`{"name":"Second"}`, "Second", true},
		{`{"name":"Third","public":true}`, "Third", true},
	} {
		res := e.api("POST", "/v1/users/alice/playlists", tok, c.body)
		if res.Status != http.StatusCreated {
			t.Fatalf("create %s: %d %s, want 201", c.body, res.Status, res.Raw)
		}
		checkJSONContentType(t, res.Header)
		id, _ := res.Body["id"].(string)
		owner, _ := res.Body["owner"].(map[string]any)
		got := map[string]any{"name": res.Body["name"], "public": res.Body["public"], "collaborative": res.Body["collaborative"],
			"type": res.Body["type"], "uri": res.Body["uri"], "owner.id": owner["id"], "owner.type": owner["type"]}
		want := map[string]any{"name": c.name, "public": c.public, "collaborative": false,
			"type": "playlist", "uri": "spotify:playlist:" + id, "owner.id": "alice", "owner.type": "user"}
		if diff := cmp.Diff(got, want); diff != "" || id == "" {
			t.Errorf("created %s: id %q (-got +want):\n%s", c.body, id, diff)
		}
		created[id] = c.public
	}

	// Refused creations add nothing.
	t.Run("another user", func(t *testing.T) {
		res := callAPI(t, e, "POST", "/v1/users/bob/playlists", "Bearer "+tok, `{"name":"Not mine"}`)
		checkAPIError(t, res, http.StatusForbidden, "You cannot create a playlist for another user", "", "")
	})
	for _, body := range []string{`{}`, `{"public":false}`, `{"description":"no name"}`} {
		t.Run("missing name "+body, func(t *testing.T) {
			checkAPIErrorShape(t, callAPI(t, e, "POST", "/v1/users/alice/playlists", "Bearer "+tok, body), http.StatusBadRequest)
		})
	}
	t.Run("malformed JSON", func(t *testing.T) {
		checkAPIErrorShape(t, callAPI(t, e, "POST", "/v1/users/alice/playlists", "Bearer "+tok, `{"name":`), http.StatusBadRequest)
	})

	all := list("")
	items := checkPaging(t, all, 20, 0, len(created))
	listed := map[string]bool{}
	for _, it := range items {
		p, _ := it.(map[string]any)
		id, _ := p["id"].(string)
		public, _ := p["public"].(bool)
		listed[id] = public
	}
	if diff := cmp.Diff(listed, created); diff != "" {
		t.Errorf("listed playlists id→public (-got +want):\n%s", diff)
	}

	// Page through two at a time.
	first := list("?limit=2")
	checkPaging(t, first, 2, 0, 3)
	checkLink(t, e, "href", first["href"], path, url.Values{"limit": {"2"}, "offset": {"0"}})
	checkLink(t, e, "previous", first["previous"], path, nil)
	next := checkLink(t, e, "next", first["next"], path, url.Values{"limit": {"2"}, "offset": {"2"}})
	if next != "" {
		second := list(strings.TrimPrefix(next, path))
		checkPaging(t, second, 2, 2, 3)
		checkLink(t, e, "next", second["next"], path, nil)
		checkLink(t, e, "previous", second["previous"], path, url.Values{"limit": {"2"}, "offset": {"0"}})
	}
	for _, q := range []string{"?limit=1", "?limit=50", "?offset=3", "?limit=1&offset=1"} {
		list(q)
	}

	for _, tc := range []struct {
		query, message string
	}{
		{"?limit=0", "Invalid limit"},
		{"?limit=51", "Invalid limit"},
		{"?limit=-1", "Invalid limit"},
		{"?limit=ten", "Invalid limit"},
		{"?offset=-1", ""},
		{"?offset=x", ""},
	} {
		t.Run(tc.query, func(t *testing.T) {
			res := callAPI(t, e, "GET", path+tc.query, "Bearer "+tok, "")
			if tc.message == "" {
				checkAPIErrorShape(t, res, http.StatusBadRequest)
			} else {
				checkAPIError(t, res, http.StatusBadRequest, tc.message, "", "")
			}
		})
	}
}

// TestWebAPITop: GET /v1/me/top/{artists,tracks}.
func TestWebAPITop(t *testing.T) {
	t.Parallel()
	for _, kind := range []struct{ path, itemType string }{{"/v1/me/top/artists", "artist"}, {"/v1/me/top/tracks", "track"}} {
		t.Run(kind.itemType, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			tok := e.pkceGrant("user-top-read").str("access_token")
			get := func(query string) apiResult {
				t.Helper()
				return callAPI(t, e, "GET", kind.path+query, "Bearer "+tok, "")
			}

			res := get("")
			if res.Status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", kind.path, res.Status, res.Raw)
			}
			checkJSONContentType(t, res.Header)
			total, _ := res.Body["total"].(float64)
			if total < 2 {
				t.Fatalf("total = %v, want at least 2 items to page through", res.Body["total"])
			}
			for i, it := range checkPaging(t, res.Body, 20, 0, int(total)) {
				o, _ := it.(map[string]any)
				id, _ := o["id"].(string)
				if o["type"] != kind.itemType || id == "" || o["uri"] != "spotify:"+kind.itemType+":"+id {
					t.Errorf("item %d: type %v id %v uri %v, want a %s", i, o["type"], o["id"], o["uri"], kind.itemType)
				}
			}
			checkLink(t, e, "previous", res.Body["previous"], kind.path, nil)

			// Links keep the other query parameters.
			for _, tr := range []string{"short_term", "medium_term", "long_term"} {
				res := get("?time_range=" + tr + "&limit=1&offset=1")
				if res.Status != http.StatusOK {
					t.Errorf("time_range=%s: %d %s", tr, res.Status, res.Raw)
					continue
				}
				checkPaging(t, res.Body, 1, 1, int(total))
				checkLink(t, e, "previous", res.Body["previous"], kind.path, url.Values{"time_range": {tr}, "limit": {"1"}, "offset": {"0"}})
				wantNext := url.Values{"time_range": {tr}, "limit": {"1"}, "offset": {"2"}}
				if total <= 2 {
					wantNext = nil
				}
				checkLink(t, e, "next", res.Body["next"], kind.path, wantNext)
			}

			checkAPIErrorShape(t, get("?time_range=forever"), http.StatusBadRequest)
			checkAPIError(t, get("?limit=0"), http.StatusBadRequest, "Invalid limit", "", "")
			checkAPIError(t, get("?limit=51"), http.StatusBadRequest, "Invalid limit", "", "")
		})
	}

	t.Run("unknown type", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, nil)
		res := e.api("GET", "/v1/me/top/albums", e.pkceGrant("user-top-read").str("access_token"), "")
		checkAPIErrorShape(t, res, http.StatusNotFound)
	})
}

// TestWebAPIClientCredentials: a client-credentials token has no user, so the
// user endpoints refuse it. Spotify answers 401 "Unauthorized." (as reported
// in jwilsson/spotify-web-api-php#222); it is not an invalid_token error,
// since a new token would not cure it.
func TestWebAPIClientCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	cc := e.postToken(url.Values{"grant_type": {"client_credentials"}}, confID, confSecret)
	if cc.Status != http.StatusOK || cc.str("access_token") == "" {
		t.Fatalf("client credentials: %d %s", cc.Status, cc.Raw)
	}
	for _, path := range []string{"/v1/me", "/v1/me/playlists"} {
		t.Run(path, func(t *testing.T) {
			res := callAPI(t, e, "GET", path, "Bearer "+cc.str("access_token"), "")
			if res.Status != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401", res.Status)
			}
			if diff := cmp.Diff(res.Body, wantAPIError(http.StatusUnauthorized, "Unauthorized.", "")); diff != "" {
				t.Errorf("error body mismatch (-got +want):\n%s", diff)
			}
			checkJSONContentType(t, res.Header)
			if h := res.Header.Get("WWW-Authenticate"); strings.Contains(h, "invalid_token") {
				t.Errorf("WWW-Authenticate = %q: a client-credentials token is valid, not invalid_token", h)
			}
		})
	}
}

// TestWebAPIStats: GET /_emulator/stats counts Web API responses by status.
func TestWebAPIStats(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.pkceGrant("playlist-read-private").str("access_token")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(confID+":"+confSecret))

	e.api("GET", "/v1/me", tok, "")                          // 200
	e.api("GET", "/v1/me", tok, "")                          // 200
	e.api("GET", "/v1/me/playlists", tok, "")                // 200
	e.api("GET", "/v1/me", "", "")                           // 401
	callAPI(t, e, "GET", "/v1/me", basic, "")                // 400
	e.api("GET", "/v1/me/playlists?limit=0", tok, "")        // 400
	e.api("GET", "/v1/me/top/artists", tok, "")              // 403
	e.api("GET", "/v1/no-such-endpoint", tok, "")            // 404
	e.api("GET", "/v1/me/player/currently-playing", tok, "") // 401 Permissions missing
	if code, body := e.control("POST", "faults", `{"api_status":503,"count":1}`); code != http.StatusNoContent {
		t.Fatalf("POST faults: %d %s", code, body)
	}
	e.api("GET", "/v1/me", tok, "") // 503
	want := map[string]int64{"200": 3, "400": 2, "401": 2, "403": 1, "404": 1, "503": 1}

	code, raw := e.control("GET", "stats", "")
	if code != http.StatusOK {
		t.Fatalf("GET stats: %d %s", code, raw)
	}
	var stats struct {
		APIResponses map[string]int64 `json:"api_responses"`
	}
	if err := json.Unmarshal([]byte(raw), &stats); err != nil {
		t.Fatalf("stats body %q: %v", raw, err)
	}
	if diff := cmp.Diff(stats.APIResponses, want); diff != "" {
		t.Errorf("/_emulator/stats api_responses (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(e.emu.Stats().APIResponses, want); diff != "" {
		t.Errorf("Stats().APIResponses (-got +want):\n%s", diff)
	}

	if code, _ := e.control("DELETE", "stats", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE stats: %d", code)
	}
	if got := e.emu.Stats().APIResponses; len(got) != 0 {
		t.Errorf("after DELETE stats: %v, want no counts", got)
	}
}

// TestWebAPIFaults: injected Web API faults through /_emulator/faults.
func TestWebAPIFaults(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T, faults string) (*env, string) {
		e := newEnv(t, nil)
		tok := e.pkceGrant("").str("access_token")
		if code, body := e.control("POST", "faults", faults); code != http.StatusNoContent {
			t.Fatalf("POST faults %s: %d %s", faults, code, body)
		}
		return e, tok
	}

	t.Run("count limits the fault", func(t *testing.T) {
		t.Parallel()
		e, tok := setup(t, `{"api_status":503,"count":2}`)
		for i := range 2 {
			res := e.api("GET", "/v1/me", tok, "")
			checkAPIErrorShape(t, res, http.StatusServiceUnavailable)
			if t.Failed() {
				t.Fatalf("request %d", i+1)
			}
		}
		if res := e.api("GET", "/v1/me", tok, ""); res.Status != http.StatusOK {
			t.Errorf("third request: %d %s, want 200", res.Status, res.Raw)
		}
	})

	t.Run("429 defaults to the rate-limit answer", func(t *testing.T) {
		t.Parallel()
		e, tok := setup(t, `{"api_status":429,"retry_after":7,"count":1}`)
		res := e.api("GET", "/v1/me", tok, "")
		checkAPIError(t, res, http.StatusTooManyRequests, "API rate limit exceeded", "", "")
		if got := res.Header.Get("Retry-After"); got != "7" {
			t.Errorf("Retry-After = %q, want 7", got)
		}
	})

	t.Run("DELETE clears", func(t *testing.T) {
		t.Parallel()
		e, tok := setup(t, `{"api_status":500}`)
		for range 2 {
			checkAPIErrorShape(t, e.api("GET", "/v1/me", tok, ""), http.StatusInternalServerError)
		}
		if code, body := e.control("DELETE", "faults", ""); code != http.StatusNoContent {
			t.Fatalf("DELETE faults: %d %s", code, body)
		}
		if res := e.api("GET", "/v1/me", tok, ""); res.Status != http.StatusOK {
			t.Errorf("after DELETE: %d %s, want 200", res.Status, res.Raw)
		}
	})

	t.Run("outage", func(t *testing.T) {
		t.Parallel()
		e, tok := setup(t, `{"outage":true}`)
		for range 2 {
			checkAPIErrorShape(t, e.api("GET", "/v1/me", tok, ""), http.StatusServiceUnavailable)
		}
		if code, body := e.control("POST", "faults", `{"outage":false}`); code != http.StatusNoContent {
			t.Fatalf("POST faults outage false: %d %s", code, body)
		}
		if res := e.api("GET", "/v1/me", tok, ""); res.Status != http.StatusOK {
			t.Errorf("after the outage: %d %s, want 200", res.Status, res.Raw)
		}
		e.control("POST", "faults", `{"outage":true}`)
		if code, body := e.control("DELETE", "faults", ""); code != http.StatusNoContent {
			t.Fatalf("DELETE faults: %d %s", code, body)
		}
		if res := e.api("GET", "/v1/me", tok, ""); res.Status != http.StatusOK {
			t.Errorf("after DELETE: %d %s, want 200", res.Status, res.Raw)
		}
	})
}
