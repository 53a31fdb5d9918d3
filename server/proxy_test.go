package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

// proxyUpstream is the server's Config.APIURL in proxy tests: it records
// every request that reaches it and hands it to the emulator, unless fake
// answers it first.
type proxyUpstream struct {
	url, host string

	mu   sync.Mutex
	reqs []upstreamRequest
	emu  http.Handler
	// fake, when set, may answer a request itself (returning true).
	fake func(w http.ResponseWriter, r *http.Request, n int) bool
}

type upstreamRequest struct {
	Method, Host, Path, EscapedPath, RawQuery string
	ContentLength                             int64
	Header                                    http.Header
	Body                                      []byte
}

func (u *proxyUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	u.mu.Lock()
	u.reqs = append(u.reqs, upstreamRequest{
		Method: r.Method, Host: r.Host, Path: r.URL.Path, EscapedPath: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery,
		ContentLength: r.ContentLength, Header: r.Header.Clone(), Body: body,
	})
	n, fake, emu := len(u.reqs), u.fake, u.emu
	u.mu.Unlock()
	if fake != nil && fake(w, r, n) {
		return
	}
	emu.ServeHTTP(w, r)
}

// count returns how many requests reached the upstream.
func (u *proxyUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// since returns the requests after the first n.
func (u *proxyUpstream) since(n int) []upstreamRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]upstreamRequest(nil), u.reqs[n:]...)
}

func (u *proxyUpstream) setFake(f func(w http.ResponseWriter, r *http.Request, n int) bool) {
	u.mu.Lock()
	u.fake = f
	u.mu.Unlock()
}

// newProxyHarness is a harness whose Web API goes through a proxyUpstream.
func newProxyHarness(t *testing.T, opts harnessOptions) (*harness, *proxyUpstream) {
	t.Helper()
	up := &proxyUpstream{}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	up.url, up.host = srv.URL, srv.Listener.Addr().String()
	inner := opts.server
	opts.server = func(c *server.Config) {
		c.APIURL = srv.URL
		if inner != nil {
			inner(c)
		}
	}
	h := newHarness(t, opts)
	up.mu.Lock()
	up.emu = h.emu
	up.mu.Unlock()
	return h, up
}

// apiResponses counts the emulator's Web API responses.
func apiResponses(h *harness) int64 {
	var n int64
	for _, v := range h.emu.Stats().APIResponses {
		n += v
	}
	return n
}

// proxyDo sends a request to the server with the demo app's key, extra
// headers and body, and returns the response with its body read.
func proxyDo(t *testing.T, h *harness, method, path string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, h.ts.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.apiKey)
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// wantProxyError checks that the answer is spotoken's JSON error with code.
func wantProxyError(t *testing.T, resp *http.Response, raw []byte, status int, code string) server.ErrorResponse {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e server.ErrorResponse
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatalf("body %s: %v", raw, err)
	}
	if e.Error != code || e.Description == "" {
		t.Errorf("error %q (%q), want code %q and a description", e.Error, e.Description, code)
	}
	return e
}

// spotifyMessage returns the message of a Spotify error body.
func spotifyMessage(t *testing.T, raw []byte) string {
	t.Helper()
	var e struct {
		Error struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &e); err != nil || e.Error.Status == 0 {
		t.Fatalf("not a Spotify error body: %s (%v)", raw, err)
	}
	return e.Error.Message
}

func TestProxyForwardsToWebAPI(t *testing.T) {
	h, up := newProxyHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email", "user-top-read")
	tok, resp, raw := h.token("u1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %s", resp.StatusCode, raw)
	}

	// What the Web API answers when called directly with the token.
	direct, _ := http.NewRequest("GET", up.url+"/v1/me", nil)
	direct.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	dresp, err := http.DefaultClient.Do(direct)
	if err != nil {
		t.Fatal(err)
	}
	wantBody, _ := io.ReadAll(dresp.Body)
	dresp.Body.Close()

	n := up.count()
	resp, raw = proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me", nil, map[string]string{
		"Host":                "evil.example",
		"Cookie":              "session=s3cret",
		"X-Forwarded-For":     "203.0.113.9",
		"X-Forwarded-Host":    "evil.example",
		"X-Forwarded-Proto":   "http",
		"Forwarded":           "for=203.0.113.9;host=evil.example",
		"X-Real-Ip":           "203.0.113.9",
		"X-Request-Id":        "req-proxy-1",
		"Proxy-Authorization": "Basic Zm9vOmJhcg==",
		"Connection":          "X-Hop",
		"X-Hop":               "hop",
		"X-Custom":            "custom",
		"User-Agent":          "caller/1.0",
		"Accept":              "application/json",
		"Accept-Language":     "sv-SE",
		"If-None-Match":       `"etag-1"`,
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/me through the proxy: %d %s", resp.StatusCode, raw)
	}
	if diff := cmp.Diff(string(raw), string(wantBody)); diff != "" {
		t.Errorf("body (-got +want):\n%s", diff)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "req-proxy-1" {
		t.Errorf("X-Request-Id %q, want the caller's", got)
	}
	reqs := up.since(n)
	if len(reqs) != 1 {
		t.Fatalf("%d requests reached the Web API, want 1", len(reqs))
	}
	got := reqs[0]
	if got.Method != "GET" || got.Path != "/v1/me" || got.RawQuery != "" || got.Host != up.host {
		t.Errorf("upstream got %s %s?%s on host %s, want GET /v1/me on %s", got.Method, got.Path, got.RawQuery, got.Host, up.host)
	}
	if a := got.Header.Get("Authorization"); a != "Bearer "+tok.AccessToken {
		t.Errorf("upstream Authorization %q, want the connection's access token", a)
	}
	allowed := map[string]bool{"Authorization": true, "Accept": true, "Accept-Language": true, "If-None-Match": true, "Accept-Encoding": true}
	for k, v := range got.Header {
		if !allowed[k] {
			t.Errorf("header %s: %q reached the Web API", k, v)
		}
	}
	for _, k := range []string{"Accept", "Accept-Language", "If-None-Match"} {
		if got.Header.Get(k) == "" {
			t.Errorf("header %s was not forwarded", k)
		}
	}
	if strings.Contains(fmt.Sprint(got.Header), h.apiKey) || strings.Contains(fmt.Sprint(got.Header), "sk_") {
		t.Error("the API key reached the Web API")
	}

	// The query string passes as it is.
	n = up.count()
	resp, raw = proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me/top/artists?time_range=short_term&limit=5&x=%2F..%2F", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET top artists: %d %s", resp.StatusCode, raw)
	}
	if reqs := up.since(n); len(reqs) != 1 || reqs[0].Path != "/v1/me/top/artists" || reqs[0].RawQuery != "time_range=short_term&limit=5&x=%2F..%2F" {
		t.Errorf("upstream got %+v", reqs)
	}
	if strings.Contains(h.logs.String(), tok.AccessToken) || strings.Contains(h.logs.String(), "time_range") {
		t.Error("the log has the access token or a query string")
	}
}

// The request line's authority and the Host header play no part in where
// the request goes.
func TestProxyAbsoluteFormRequest(t *testing.T) {
	h, up := newProxyHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email")
	n := up.count()
	status, _, body := rawRequest(t, h, "GET", "http://evil.example/v1/proxy/u1/v1/me", "evil.example")
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if reqs := up.since(n); len(reqs) != 1 || reqs[0].Host != up.host || reqs[0].Path != "/v1/me" {
		t.Errorf("upstream got %+v, want GET /v1/me on %s", reqs, up.host)
	}
}

// rawRequest writes a request line as it is, which an http.Client would
// normalize, and reads the answer.
func rawRequest(t *testing.T, h *harness, method, target, host string) (int, http.Header, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", h.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if host == "" {
		host = h.ts.Listener.Addr().String()
	}
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", method, target, host, h.apiKey)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %q: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// Path tricks never reach the Web API: spotoken refuses them (400), or the
// router redirects to a cleaned path that spotoken then refuses (400) or
// does not know (404).
func TestProxyPathTricks(t *testing.T) {
	h, up := newProxyHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email")
	n, api := up.count(), apiResponses(h)
	tricks := []string{
		"/v1/proxy/u1/https://evil.example/v1/me",
		"/v1/proxy/u1/http:%2F%2Fevil.example%2Fv1%2Fme",
		"/v1/proxy/u1//evil.example/v1/me",
		"/v1/proxy/u1///evil.example/v1/me",
		"/v1/proxy/u1/@evil.example/v1/me",
		"/v1/proxy/u1/v1@evil.example/me",
		"/v1/proxy/u1/v1/me@evil.example",
		"/v1/proxy/u1/v1/../../../_emulator/stats",
		"/v1/proxy/u1/v1/../../../api/token",
		"/v1/proxy/u1/v1/%2e%2e/%2e%2e/_emulator/stats",
		"/v1/proxy/u1/v1/%2E%2E/api/token",
		"/v1/proxy/u1/v1/me/%2e",
		"/v1/proxy/u1/v1/.%2e/api/token",
		"/v1/proxy/u1/v1/...",
		"/v1/proxy/u1/v1/..%2f..%2fapi%2ftoken",
		"/v1/proxy/u1/v1/me%2F..%2F..%2F_emulator%2Fstats",
		"/v1/proxy/u1/v1/me%5c..%5c..%5capi%5ctoken",
		`/v1/proxy/u1/v1\..\..\api\token`,
		`/v1/proxy/u1/v1/me\..\..\_emulator\stats`,
		"/v1/proxy/u1/v1/..;/api/token",
		"/v1/proxy/u1/v1/me;x=1",
		"/v1/proxy/u1/v1/me%00",
		"/v1/proxy/u1/v1/me%0d%0aX-Injected:%20yes",
		"/v1/proxy/u1/v1/me%09",
		"/v1/proxy/u1/v1/%252e%252e/api/token",
		"/v1/proxy/u1/v1/%c0%ae%c0%ae/api/token",
		"/v1/proxy/u1/v1/%ef%bc%8e%ef%bc%8e/api/token",
		"/v1/proxy/u1/v1/me%zz",
		"/v1/proxy/u1/v1/./../api/token",
		"/v1/proxy/u1/v1/me/",
		"/v1/proxy/u1/v1",
		"/v1/proxy/u1/",
		"/v1/proxy/u1",
		"/v1/proxy/u1/v2/me",
		"/v1/proxy/u1/V1/me",
		"/v1/proxy/u1/%76%31/me",
		"/v1/proxy/u1/api/token",
		"/v1/proxy/u1/_emulator/stats",
		"/v1/proxy/u1/authorize",
		"/v1/proxy/..%2fu1/v1/me",
		"/v1/proxy/u1%2f..%2fu2/v1/me",
		"/v1/proxy/u1/v1/" + strings.Repeat("a/", 1100) + "me",
	}
	for _, target := range tricks {
		t.Run(target[:min(len(target), 60)], func(t *testing.T) {
			cur := target
			for hop := 0; ; hop++ {
				status, hdr, body := rawRequest(t, h, "GET", cur, "")
				if status == http.StatusMovedPermanently || status == http.StatusTemporaryRedirect || status == http.StatusPermanentRedirect {
					if hop == 3 {
						t.Fatalf("too many redirects, at %s", cur)
					}
					loc, err := url.Parse(hdr.Get("Location"))
					if err != nil || loc.Host != "" {
						t.Fatalf("redirect to %q", hdr.Get("Location"))
					}
					cur = loc.RequestURI()
					continue
				}
				if status == http.StatusBadRequest && string(body) == "400 Bad Request" {
					return // net/http refused the request line before any handler
				}
				var e server.ErrorResponse
				if err := json.Unmarshal(body, &e); err != nil {
					t.Fatalf("%s: status %d, body %q is not JSON", cur, status, body)
				}
				switch {
				case status == http.StatusBadRequest && e.Error == spotoken.EInvalid:
				case status == http.StatusNotFound && e.Error == spotoken.ENotFound:
				default:
					t.Errorf("%s: %d %s, want 400 invalid_request or 404 not_found", cur, status, body)
				}
				return
			}
		})
	}
	// Dot segments and empty segments that stay inside the Web API are
	// cleaned by the router with a redirect, not forwarded.
	for target, want := range map[string]string{
		"/v1/proxy/u1/v1/./me":          "/v1/proxy/u1/v1/me",
		"/v1/proxy/u1/v1//me":           "/v1/proxy/u1/v1/me",
		"/v1/proxy/u1/v1/me/../me?x=1":  "/v1/proxy/u1/v1/me?x=1",
		"/v1/proxy/u1/v1/x/../../v1/me": "/v1/proxy/u1/v1/me",
	} {
		status, hdr, body := rawRequest(t, h, "GET", target, "")
		if status != http.StatusTemporaryRedirect || hdr.Get("Location") != want {
			t.Errorf("%s: %d to %q (%s), want 307 to %s", target, status, hdr.Get("Location"), body, want)
		}
	}
	if got := up.since(n); len(got) != 0 {
		t.Errorf("%d requests reached the Web API; the first: %+v", len(got), got[0])
	}
	if got := apiResponses(h); got != api {
		t.Errorf("the emulator answered %d Web API requests", got-api)
	}
}

func TestProxyInsufficientScope(t *testing.T) {
	h, up := newProxyHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email")
	n, api := up.count(), apiResponses(h)

	resp, raw := proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me/player/currently-playing?market=SE", nil, nil)
	e := wantProxyError(t, resp, raw, http.StatusForbidden, server.EInsufficientScope)
	wantChallenge := `Bearer realm="spotoken", error="insufficient_scope", scope="user-read-currently-playing"`
	if got := resp.Header.Get("WWW-Authenticate"); got != wantChallenge {
		t.Errorf("WWW-Authenticate %q, want %q", got, wantChallenge)
	}
	if diff := cmp.Diff([]string(e.RequiredScopes), []string{"user-read-currently-playing"}); diff != "" {
		t.Errorf("required_scopes (-got +want):\n%s", diff)
	}
	if !strings.HasPrefix(e.ConnectURL, h.ts.URL+"/connect/") || e.ConnectURLExpiresAt == nil {
		t.Errorf("connect_url %q (expires %v), want a connect link", e.ConnectURL, e.ConnectURLExpiresAt)
	}
	if !strings.Contains(e.Description, "user-read-currently-playing (or user-read-playback-state)") {
		t.Errorf("description %q does not name the alternatives", e.Description)
	}
	if up.count() != n || apiResponses(h) != api {
		t.Fatal("the request reached the Web API")
	}

	// The link asks for the missing scope on top of those granted.
	br, err := h.browser.Get(e.ConnectURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(br.Body)
	br.Body.Close()
	if !strings.Contains(string(page), `data-outcome="connected"`) {
		t.Fatalf("re-consent: %d %s", br.StatusCode, page)
	}
	var view server.ConnectionView
	h.call("GET", "/v1/connections/u1", h.apiKey, nil, &view)
	if diff := cmp.Diff([]string(view.Scopes), []string{"user-read-currently-playing", "user-read-email"}); diff != "" {
		t.Errorf("scopes after re-consent (-got +want):\n%s", diff)
	}
	resp, raw = proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me/player/currently-playing", nil, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("with the scope: %d %s, want the emulator's 204 (nothing playing)", resp.StatusCode, raw)
	}
}

// The scope table, checked through the handler against a fake Web API that
// answers 200 to everything.
func TestProxyScopeTable(t *testing.T) {
	h, up := newProxyHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email", "user-read-playback-state")
	up.setFake(func(w http.ResponseWriter, r *http.Request, _ int) bool {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
		return true
	})
	tests := []struct {
		method, path string
		want         []string // required_scopes; nil: forwarded
	}{
		{"GET", "/v1/me", nil},
		{"GET", "/v1/me/playlists", nil},
		{"GET", "/v1/users/alice/playlists", nil},
		{"GET", "/v1/playlists/p1/tracks", nil},
		{"GET", "/v1/albums/a1", nil}, // not in the table: Spotify decides
		{"GET", "/v1/me/player", nil},
		{"GET", "/v1/me/player/devices", nil},
		{"GET", "/v1/me/player/currently-playing", nil}, // user-read-playback-state is an alternative
		{"GET", "/v1/me/player/queue", nil},
		{"PUT", "/v1/me/player", []string{"user-modify-playback-state"}},
		{"PUT", "/v1/me/player/play", []string{"user-modify-playback-state"}},
		{"PUT", "/v1/me/player/pause", []string{"user-modify-playback-state"}},
		{"POST", "/v1/me/player/next", []string{"user-modify-playback-state"}},
		{"POST", "/v1/me/player/previous", []string{"user-modify-playback-state"}},
		{"PUT", "/v1/me/player/seek", []string{"user-modify-playback-state"}},
		{"PUT", "/v1/me/player/volume", []string{"user-modify-playback-state"}},
		{"PUT", "/v1/me/player/repeat", []string{"user-modify-playback-state"}},
		{"PUT", "/v1/me/player/shuffle", []string{"user-modify-playback-state"}},
		{"POST", "/v1/me/player/queue", []string{"user-modify-playback-state"}},
		{"GET", "/v1/me/player/recently-played", []string{"user-read-recently-played"}},
		{"GET", "/v1/me/top/tracks", []string{"user-top-read"}},
		{"POST", "/v1/users/alice/playlists", []string{"playlist-modify-public"}},
		{"POST", "/v1/playlists/p1/tracks", []string{"playlist-modify-public"}},
		{"PUT", "/v1/playlists/p1/items", []string{"playlist-modify-public"}},
		{"DELETE", "/v1/playlists/p1/tracks", []string{"playlist-modify-public"}},
		{"PUT", "/v1/playlists/p1/images", []string{"playlist-modify-public", "ugc-image-upload"}},
		{"GET", "/v1/me/tracks", []string{"user-library-read"}},
		{"HEAD", "/v1/me/albums", []string{"user-library-read"}},
		{"PUT", "/v1/me/shows", []string{"user-library-modify"}},
		{"DELETE", "/v1/me/episodes", []string{"user-library-modify"}},
		{"GET", "/v1/me/audiobooks/contains", []string{"user-library-read"}},
		{"GET", "/v1/me/following", []string{"user-follow-read"}},
		{"PUT", "/v1/me/following", []string{"user-follow-modify"}},
		{"DELETE", "/v1/me/following", []string{"user-follow-modify"}},
		{"GET", "/v1/me/following/contains", []string{"user-follow-read"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			n := up.count()
			resp, raw := proxyDo(t, h, tt.method, "/v1/proxy/u1"+tt.path, nil, nil)
			if tt.want == nil {
				if resp.StatusCode != http.StatusOK || up.count() != n+1 {
					t.Errorf("%d %s, want it forwarded", resp.StatusCode, raw)
				}
				return
			}
			if up.count() != n {
				t.Error("the request reached the Web API")
			}
			if tt.method == "HEAD" {
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("HEAD: %d, want 403", resp.StatusCode)
				}
				return
			}
			e := wantProxyError(t, resp, raw, http.StatusForbidden, server.EInsufficientScope)
			if diff := cmp.Diff([]string(e.RequiredScopes), tt.want); diff != "" {
				t.Errorf("required_scopes (-got +want):\n%s", diff)
			}
			if want := `scope="` + strings.Join(tt.want, " ") + `"`; !strings.Contains(resp.Header.Get("WWW-Authenticate"), want) {
				t.Errorf("WWW-Authenticate %q, want %s", resp.Header.Get("WWW-Authenticate"), want)
			}
		})
	}
}

// The access token expired: the engine refreshes it before the call, and
// Spotify never sees the expired one.
func TestProxyRefreshesExpiredToken(t *testing.T) {
	h, up := newProxyHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email")
	refreshes, n := h.refreshes(), up.count()
	h.emu.Advance(2 * time.Hour)
	resp, raw := proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	if got := h.refreshes() - refreshes; got != 1 {
		t.Errorf("%d refreshes, want 1", got)
	}
	if got := len(up.since(n)); got != 1 {
		t.Errorf("%d requests reached the Web API, want 1", got)
	}
	if got := h.emu.Stats().APIResponses["401"]; got != 0 {
		t.Errorf("the emulator answered 401 %d times", got)
	}
}

// Spotify's 401s: every one earns a refresh and one retry, whatever it says,
// except Permissions missing (insufficient_scope, no refresh); a 403 and a
// second refusal pass through.
func TestProxyRetryOnRefusedToken(t *testing.T) {
	one := 1
	tests := []struct {
		name     string
		faults   emulator.Faults
		fake     func(w http.ResponseWriter, r *http.Request, n int) bool
		status   int
		message  string // Spotify's message, for an error passed through
		code     string // spotoken's error code, for spotoken's own answer
		upstream int
		refresh  int64
	}{
		{name: "2026", faults: emulator.Faults{APIStatus: 401, APIMessage: "Missing/invalid/expired access token", Count: 1},
			status: 200, upstream: 2, refresh: 1},
		{name: "expired", faults: emulator.Faults{APIStatus: 401, APIMessage: "The access token expired", Count: 1},
			status: 200, upstream: 2, refresh: 1},
		{name: "invalid", faults: emulator.Faults{APIStatus: 401, APIMessage: "Invalid access token", Count: 1},
			status: 200, upstream: 2, refresh: 1},
		{name: "a wording not seen yet", faults: emulator.Faults{APIStatus: 401, APIMessage: "Token not accepted", Count: 1},
			status: 200, upstream: 2, refresh: 1},
		{name: "empty 401", faults: emulator.Faults{APIStatus: 401, EmptyBody: true, Count: 1},
			status: 200, upstream: 2, refresh: 1},
		{name: "invalid_token challenge, empty body", fake: func(w http.ResponseWriter, r *http.Request, n int) bool {
			if n > 1 {
				return false
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="spotify", error="invalid_token", error_description="The access token expired"`)
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}, status: 200, upstream: 2, refresh: 1},
		{name: "refused twice", faults: emulator.Faults{APIStatus: 401, APIMessage: "Missing/invalid/expired access token", Count: 2},
			status: 401, message: "Missing/invalid/expired access token", upstream: 2, refresh: 1},
		{name: "permissions missing", faults: emulator.Faults{APIStatus: 401, APIMessage: "Permissions missing", Count: 1},
			status: 403, code: "insufficient_scope", upstream: 1},
		{name: "permissions missing after a refresh", fake: func(w http.ResponseWriter, r *http.Request, n int) bool {
			msg := map[int]string{1: "Missing/invalid/expired access token", 2: "Permissions missing"}[n]
			if msg == "" {
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"status":401,"message":"`+msg+`"}}`)
			return true
		}, status: 403, code: "insufficient_scope", upstream: 2, refresh: 1},
		{name: "no token provided", fake: func(w http.ResponseWriter, r *http.Request, n int) bool {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spotify"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"status":401,"message":"No token provided"}}`)
			return true
		}, status: 401, message: "No token provided", upstream: 2, refresh: 1},
		{name: "insufficient client scope", faults: emulator.Faults{APIStatus: 403, APIMessage: "Insufficient client scope", Count: 1},
			status: 403, message: "Insufficient client scope", upstream: 1},
		{name: "rate limited", faults: emulator.Faults{APIStatus: 429, RetryAfter: &one, Count: 1},
			status: 429, message: "API rate limit exceeded", upstream: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, up := newProxyHarness(t, harnessOptions{})
			h.connect("u1", "user-read-email")
			tok, _, _ := h.token("u1")
			refreshes, n := h.refreshes(), up.count()
			if tt.fake != nil {
				up.setFake(func(w http.ResponseWriter, r *http.Request, i int) bool { return tt.fake(w, r, i-n) })
			} else if err := h.emu.SetFaults(tt.faults); err != nil {
				t.Fatal(err)
			}
			resp, raw := proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me", nil, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, raw)
			}
			if tt.message != "" {
				if got := spotifyMessage(t, raw); got != tt.message {
					t.Errorf("message %q, want Spotify's %q", got, tt.message)
				}
			}
			if tt.code != "" {
				e := wantProxyError(t, resp, raw, tt.status, tt.code)
				if !strings.HasPrefix(e.ConnectURL, h.ts.URL+"/connect/") {
					t.Errorf("connect_url %q, want a connect link", e.ConnectURL)
				}
			}
			reqs := up.since(n)
			if len(reqs) != tt.upstream {
				t.Errorf("%d requests reached the Web API, want %d", len(reqs), tt.upstream)
			}
			if got := h.refreshes() - refreshes; got != tt.refresh {
				t.Errorf("%d refreshes, want %d", got, tt.refresh)
			}
			if len(reqs) == 2 {
				first, second := reqs[0].Header.Get("Authorization"), reqs[1].Header.Get("Authorization")
				if first != "Bearer "+tok.AccessToken || second == first || !strings.HasPrefix(second, "Bearer ") {
					t.Errorf("Authorization %q then %q, want the refused token then a new one", first, second)
				}
			}
			if strings.Contains(h.logs.String(), tok.AccessToken) {
				t.Error("the log has the access token")
			}
		})
	}
}

// A 429 passes through with its Retry-After, at once, without a retry.
func TestProxyRateLimitPassesThrough(t *testing.T) {
	for _, empty := range []bool{false, true} {
		t.Run(fmt.Sprintf("empty body %v", empty), func(t *testing.T) {
			h, up := newProxyHarness(t, harnessOptions{})
			h.connect("u1", "user-read-email")
			n, refreshes := up.count(), h.refreshes()
			wait := 3600
			if err := h.emu.SetFaults(emulator.Faults{APIStatus: 429, RetryAfter: &wait, EmptyBody: empty, Count: 1}); err != nil {
				t.Fatal(err)
			}
			resp, raw := proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me", nil, nil)
			if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "3600" {
				t.Fatalf("%d, Retry-After %q; want 429 with Spotify's Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			if empty && len(raw) != 0 {
				t.Errorf("body %q, want Spotify's empty one", raw)
			}
			if !empty && spotifyMessage(t, raw) != "API rate limit exceeded" {
				t.Errorf("body %s, want Spotify's", raw)
			}
			if got := len(up.since(n)); got != 1 {
				t.Errorf("%d requests reached the Web API, want 1", got)
			}
			if h.refreshes() != refreshes {
				t.Error("a 429 caused a refresh")
			}
		})
	}
}

func TestProxyConnectionErrors(t *testing.T) {
	t.Run("other app's connection looks missing", func(t *testing.T) {
		h, up := newProxyHarness(t, harnessOptions{})
		h.connect("shared", "user-read-email")
		n := up.count()
		req, _ := http.NewRequest("GET", h.ts.URL+"/v1/proxy/shared/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+h.otherKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		other, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantProxyError(t, resp, other, http.StatusNotFound, spotoken.ENotFound)

		if resp, raw := h.call("DELETE", "/v1/connections/shared", h.apiKey, nil, nil); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("delete: %d %s", resp.StatusCode, raw)
		}
		resp, missing := proxyDo(t, h, "GET", "/v1/proxy/shared/v1/me", nil, nil)
		wantProxyError(t, resp, missing, http.StatusNotFound, spotoken.ENotFound)
		if !bytes.Equal(other, missing) {
			t.Errorf("another app's connection: %s\na missing one: %s\nwant the same answer", other, missing)
		}
		if up.count() != n {
			t.Error("a request reached the Web API")
		}
	})
	t.Run("bad connection id", func(t *testing.T) {
		h, _ := newProxyHarness(t, harnessOptions{})
		resp, raw := proxyDo(t, h, "GET", "/v1/proxy/no%20spaces/v1/me", nil, nil)
		wantProxyError(t, resp, raw, http.StatusBadRequest, spotoken.EInvalid)
	})
	t.Run("needs reauth", func(t *testing.T) {
		h, up := newProxyHarness(t, harnessOptions{})
		h.connect("u1", "user-read-email")
		n := up.count()
		if err := h.emu.RevokeGrant("alice", clientID); err != nil {
			t.Fatal(err)
		}
		h.emu.Advance(2 * time.Hour) // the access token expires; refreshing fails
		resp, raw := proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me", nil, nil)
		e := wantProxyError(t, resp, raw, http.StatusConflict, spotoken.ENeedsReauth)
		if !strings.HasPrefix(e.ConnectURL, h.ts.URL+"/connect/") {
			t.Errorf("connect_url %q, want a connect link", e.ConnectURL)
		}
		if up.count() != n {
			t.Error("a request reached the Web API")
		}
	})
	t.Run("refused token and a revoked grant", func(t *testing.T) {
		h, up := newProxyHarness(t, harnessOptions{})
		h.connect("u1", "user-read-email")
		n := up.count()
		if err := h.emu.RevokeGrant("alice", clientID); err != nil {
			t.Fatal(err)
		}
		if err := h.emu.SetFaults(emulator.Faults{APIStatus: 401, APIMessage: "Invalid access token", Count: 1}); err != nil {
			t.Fatal(err)
		}
		resp, raw := proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me", nil, nil)
		e := wantProxyError(t, resp, raw, http.StatusConflict, spotoken.ENeedsReauth)
		if !strings.HasPrefix(e.ConnectURL, h.ts.URL+"/connect/") {
			t.Errorf("connect_url %q, want a connect link", e.ConnectURL)
		}
		if got := len(up.since(n)); got != 1 {
			t.Errorf("%d requests reached the Web API, want 1", got)
		}
	})
}

func TestProxyBody(t *testing.T) {
	h, up := newProxyHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email", "playlist-modify-private")
	h.connect("player", "user-modify-playback-state")

	t.Run("forwarded intact", func(t *testing.T) {
		n := up.count()
		body := `{"name": "Road trip \u00e5\u00e4\u00f6", "public": false, "description": "a\nb"}`
		resp, raw := proxyDo(t, h, "POST", "/v1/proxy/u1/v1/users/alice/playlists", strings.NewReader(body),
			map[string]string{"Content-Type": "application/json; charset=utf-8"})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%d %s, want the emulator's 201", resp.StatusCode, raw)
		}
		reqs := up.since(n)
		if len(reqs) != 1 {
			t.Fatalf("%d requests reached the Web API, want 1", len(reqs))
		}
		got := reqs[0]
		if string(got.Body) != body || got.ContentLength != int64(len(body)) || got.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("upstream got body %q (length %d, %q), want %q", got.Body, got.ContentLength, got.Header.Get("Content-Type"), body)
		}
	})
	t.Run("forwarded intact on the retry", func(t *testing.T) {
		n := up.count()
		if err := h.emu.SetFaults(emulator.Faults{APIStatus: 401, APIMessage: "The access token expired", Count: 1}); err != nil {
			t.Fatal(err)
		}
		body := `{"name": "Again", "public": false}`
		resp, raw := proxyDo(t, h, "POST", "/v1/proxy/u1/v1/users/alice/playlists", strings.NewReader(body), nil)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%d %s", resp.StatusCode, raw)
		}
		reqs := up.since(n)
		if len(reqs) != 2 || string(reqs[0].Body) != body || string(reqs[1].Body) != body {
			t.Errorf("upstream got %d requests, want 2 with the body", len(reqs))
		}
	})
	t.Run("empty PUT sends Content-Length 0", func(t *testing.T) {
		up.setFake(func(w http.ResponseWriter, r *http.Request, _ int) bool {
			w.WriteHeader(http.StatusNoContent)
			return true
		})
		defer up.setFake(nil)
		n := up.count()
		resp, raw := proxyDo(t, h, "PUT", "/v1/proxy/player/v1/me/player/pause", nil, nil)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%d %s", resp.StatusCode, raw)
		}
		if reqs := up.since(n); len(reqs) != 1 || reqs[0].ContentLength != 0 || len(reqs[0].Body) != 0 {
			t.Errorf("upstream got %+v", reqs)
		}
	})
	t.Run("at the limit", func(t *testing.T) {
		up.setFake(func(w http.ResponseWriter, r *http.Request, _ int) bool {
			w.WriteHeader(http.StatusCreated)
			return true
		})
		defer up.setFake(nil)
		n := up.count()
		body := bytes.Repeat([]byte("x"), 1<<20)
		resp, raw := proxyDo(t, h, "POST", "/v1/proxy/u1/v1/users/alice/playlists", bytes.NewReader(body), nil)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%d %s", resp.StatusCode, raw)
		}
		if reqs := up.since(n); len(reqs) != 1 || len(reqs[0].Body) != len(body) {
			t.Errorf("upstream did not get the whole body")
		}
	})
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("over the limit, chunked %v", chunked), func(t *testing.T) {
			n := up.count()
			var rd io.Reader = bytes.NewReader(bytes.Repeat([]byte("x"), 1<<20+1))
			if chunked {
				rd = io.MultiReader(rd) // no known length: sent chunked
			}
			resp, raw := proxyDo(t, h, "POST", "/v1/proxy/u1/v1/users/alice/playlists", rd, nil)
			wantProxyError(t, resp, raw, http.StatusRequestEntityTooLarge, server.ETooLarge)
			if up.count() != n {
				t.Error("the request reached the Web API")
			}
		})
	}
}

func TestProxyResponseHeaders(t *testing.T) {
	h, up := newProxyHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email")
	up.setFake(func(w http.ResponseWriter, r *http.Request, _ int) bool {
		w.Header().Set("Set-Cookie", "sp_t=abc; Path=/")
		w.Header().Add("Set-Cookie", "sp_landing=x")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Cache-Control", "private, max-age=0")
		w.Header().Set("X-Spotify-Thing", "kept")
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, `{"ok":true}`)
		return true
	})
	resp, raw := proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me", nil, nil)
	if resp.StatusCode != http.StatusOK || string(raw) != `{"ok":true}` {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	if v := resp.Header.Values("Set-Cookie"); len(v) != 0 {
		t.Errorf("Set-Cookie passed through: %q", v)
	}
	for k, want := range map[string]string{"Etag": `"v1"`, "Cache-Control": "private, max-age=0", "X-Spotify-Thing": "kept", "Content-Type": "application/json; charset=utf-8"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s %q, want %q", k, got, want)
		}
	}
}

func TestProxyUpstreamUnreachable(t *testing.T) {
	h, up := newProxyHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email")
	tok, _, _ := h.token("u1")
	up.setFake(func(w http.ResponseWriter, r *http.Request, _ int) bool {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	})
	resp, raw := proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me?secret=shh", nil, map[string]string{"X-Request-Id": "req-down"})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d (Retry-After %q) %s, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), raw)
	}
	var e server.ErrorResponse
	if err := json.Unmarshal(raw, &e); err != nil || e.Error != spotoken.EUnavailable || e.Description == "" {
		t.Errorf("body %s, want a temporarily_unavailable error", raw)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "proxy: calling Spotify failed") || !strings.Contains(logs, "req-down") {
		t.Errorf("no warning with the request id in the log:\n%s", logs)
	}
	for _, secret := range []string{tok.AccessToken, "secret=shh", "shh"} {
		if strings.Contains(logs, secret) || strings.Contains(string(raw), secret) {
			t.Errorf("%q leaked into the log or the answer", secret)
		}
	}
}

func TestProxyMethods(t *testing.T) {
	h, up := newProxyHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email")
	n := up.count()
	for _, m := range []string{"OPTIONS", "TRACE", "PROPFIND"} {
		resp, raw := proxyDo(t, h, m, "/v1/proxy/u1/v1/me", nil, nil)
		wantProxyError(t, resp, raw, http.StatusMethodNotAllowed, server.EMethodNotAllowed)
		if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "PATCH") {
			t.Errorf("%s: Allow %q", m, allow)
		}
	}
	if resp, _ := proxyDo(t, h, "HEAD", "/v1/proxy/u1/v1/me", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD: %d", resp.StatusCode)
	}
	if got := up.count() - n; got != 1 {
		t.Errorf("%d requests reached the Web API, want 1 (the HEAD)", got)
	}
}

func TestProxyMetrics(t *testing.T) {
	h, _ := newProxyHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email")
	one := 1
	proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me", nil, nil)
	proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me", nil, nil)
	proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me/top/artists", nil, nil)
	proxyDo(t, h, "GET", "/v1/proxy/u1/v2/me", nil, nil)
	proxyDo(t, h, "GET", "/v1/proxy/nobody/v1/me", nil, nil)
	h.emu.SetFaults(emulator.Faults{APIStatus: 429, RetryAfter: &one, Count: 1})
	proxyDo(t, h, "GET", "/v1/proxy/u1/v1/me", nil, nil)

	resp, err := http.Get(h.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for label, want := range map[string]int{"200": 2, "insufficient_scope": 1, "invalid_request": 1, "not_found": 1, "429": 1} {
		line := fmt.Sprintf(`spotoken_proxy_requests_total{upstream_status=%q} %d`, label, want)
		if !strings.Contains(string(scrape), line+"\n") {
			t.Errorf("no %s in the metrics:\n%s", line, grepLines(string(scrape), "spotoken_proxy_requests_total"))
		}
	}
	if !strings.Contains(string(scrape), `spotoken_upstream_request_duration_seconds_count{service="api",status="200"}`) {
		t.Error("the proxy's calls to Spotify are not timed")
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// pathFuzzTokens hands out one token, with every scope the table knows, for
// any connection of the demo app.
type pathFuzzTokens struct{ now time.Time }

func (p pathFuzzTokens) Token(_ context.Context, key spotoken.ConnectionKey, _ time.Duration) (refresh.AccessToken, error) {
	if key.AppID != appID {
		return refresh.AccessToken{}, spotoken.Errorf(spotoken.ENotFound, "no connection %s", key)
	}
	return refresh.AccessToken{Token: "BQpathfuzz", Expiry: p.now.Add(time.Hour), Scopes: spotoken.ParseScopes(
		"user-read-playback-state user-modify-playback-state user-read-currently-playing user-read-recently-played user-top-read " +
			"user-library-read user-library-modify user-follow-read user-follow-modify playlist-modify-public playlist-modify-private ugc-image-upload")}, nil
}

func (p pathFuzzTokens) Refresh(ctx context.Context, key spotoken.ConnectionKey) (refresh.AccessToken, error) {
	return p.Token(ctx, key, 0)
}

func (p pathFuzzTokens) Invalidate(ctx context.Context, key spotoken.ConnectionKey, _ spotoken.Secret) (refresh.AccessToken, error) {
	return p.Token(ctx, key, 0)
}

func (pathFuzzTokens) Forget(spotoken.ConnectionKey) {}

// upstreamLog is a RoundTripper that answers 200 to everything and keeps
// the URLs it was asked for.
type upstreamLog struct {
	mu   sync.Mutex
	urls []*url.URL
}

func (l *upstreamLog) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	u := *r.URL
	l.mu.Lock()
	l.urls = append(l.urls, &u)
	l.mu.Unlock()
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader("{}")), ContentLength: 2, Request: r}, nil
}

func (l *upstreamLog) take() []*url.URL {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.urls
	l.urls = nil
	return out
}

// FuzzProxyPath sends arbitrary paths after /v1/proxy/u1/ through the whole
// handler (router, authentication, path check, reverse proxy) and checks
// every URL that reaches the upstream transport: the configured scheme and
// host, a path under /v1/ with no empty, . or .. segment, no encoded slash
// or backslash, no ; and no escape that decodes to any of these.
func FuzzProxyPath(f *testing.F) {
	for _, seed := range []string{
		"v1/me", "v1/me/player/currently-playing", "v1/me/top/artists?limit=5", "v1/users/wizzler/playlists",
		"v1/playlists/3cEYpjA9oz9GiPac4AsH4n/tracks", "v1/me/tracks/contains?ids=a,b", "v1/search?q=a%2Fb&type=track",
		"v1/artists/0OdUWJ0sBjDrqHygGUXeCF", "v1/users/a.b_c-d~e", "v1/me%2Fplayer",
		"https://evil.example/v1/me", "//evil.example/v1/me", "@evil.example/v1/me", "v1@evil.example/me",
		"v1/../../_emulator/stats", "v1/%2e%2e/%2e%2e/api/token", "v1/%2E%2e/x", "v1/.%2E/x", "v1/me/%2e",
		"v1/..%2f..%2fapi", "v1/me%5c..%5capi", `v1\..\api`, "v1/..;/api/token", "v1/me;x=1", "v1/me%00",
		"v1/%252e%252e/api", "v1/%c0%ae%c0%ae/api", "v1//me", "v1/me/", "v1", "", "v2/me", "%76%31/me",
		"v1/...", "v1/me#frag", "v1/me?x=/../../", "v1/%zz", "v1/me%20x", "v1/\x00", "v1/é",
	} {
		f.Add(seed)
	}
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ring, err := seal.GenerateKeyFile(filepath.Join(f.TempDir(), "keys"))
	if err != nil {
		f.Fatal(err)
	}
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(f.TempDir(), "fuzz.db"), Keys: ring, Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	upstream := &upstreamLog{}
	const apiURL = "https://api.spotify.test"
	srv, err := server.New(server.Config{
		Store: store, Tokens: pathFuzzTokens{now}, PublicURL: "https://spotoken.example", APIURL: apiURL, Now: clock,
		HTTPClient: &http.Client{Transport: upstream}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	if err := store.CreateApp(ctx, &spotoken.App{ID: appID, ClientID: clientID, RedirectURIs: []string{srv.CallbackURL()}}); err != nil {
		f.Fatal(err)
	}
	key, rec := spotoken.NewAPIKey(appID, "fuzz", now)
	if err := store.CreateAPIKey(ctx, rec); err != nil {
		f.Fatal(err)
	}
	api, _ := url.Parse(apiURL)

	f.Fuzz(func(t *testing.T, p string) {
		u, err := url.ParseRequestURI("/v1/proxy/u1/" + p)
		if err != nil {
			return // the server refuses such a request line before any handler
		}
		req := httptest.NewRequest("GET", "https://spotoken.example/", nil)
		req.URL, req.RequestURI = u, u.RequestURI()
		req.Header.Set("Authorization", "Bearer "+key.Reveal())
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		urls := upstream.take()
		if len(urls) > 1 {
			t.Fatalf("%q: %d upstream calls", p, len(urls))
		}
		if w.Code == http.StatusOK && len(urls) == 0 {
			t.Fatalf("%q: 200 without calling the upstream", p)
		}
		if len(urls) == 0 {
			if w.Code < 300 || w.Code >= 500 {
				t.Fatalf("%q: %d without calling the upstream: %s", p, w.Code, w.Body)
			}
			return
		}
		got := urls[0]
		if got.Scheme != api.Scheme || got.Host != api.Host || got.User != nil {
			t.Fatalf("%q: upstream URL %s left %s", p, got, apiURL)
		}
		if !strings.HasPrefix(got.Path, "/v1/") || !strings.HasPrefix(got.EscapedPath(), "/v1/") {
			t.Fatalf("%q: upstream path %q (escaped %q) is not under /v1/", p, got.Path, got.EscapedPath())
		}
		for _, seg := range strings.Split(got.Path[1:], "/") {
			if seg == "" || strings.Trim(seg, ".") == "" || strings.ContainsAny(seg, `\;%@`) {
				t.Fatalf("%q: upstream path %q has segment %q", p, got.Path, seg)
			}
		}
		esc := strings.ToLower(got.EscapedPath())
		for _, bad := range []string{"//", "%2f", "%5c", "%25", "\\"} {
			if strings.Contains(esc, bad) {
				t.Fatalf("%q: upstream path %q has %q", p, got.EscapedPath(), bad)
			}
		}
		if want, _ := url.PathUnescape(got.EscapedPath()); want != got.Path {
			t.Fatalf("%q: upstream path %q is not its escaped form %q decoded", p, got.Path, got.EscapedPath())
		}
		// The query passes as sent, unless it does not parse (a ";", a bad
		// escape): then ReverseProxy re-encodes it, dropping what does not
		// parse, so that Spotify and spotoken cannot read it differently.
		wantQuery := u.RawQuery
		if _, err := url.ParseQuery(wantQuery); err != nil {
			v, _ := url.ParseQuery(wantQuery)
			wantQuery = v.Encode()
		}
		if got.RawQuery != wantQuery {
			t.Fatalf("%q: upstream query %q, want %q", p, got.RawQuery, wantQuery)
		}
	})
}

// TestProxyAbortedStreamIsLogged: when Spotify's answer breaks off after
// its headers, the proxy aborts the response (the client sees a cut
// connection, not a truncated 200 it could trust) and the request still
// gets its one log line, marked aborted.
func TestProxyAbortedStreamIsLogged(t *testing.T) {
	h, up := newProxyHarness(t, harnessOptions{})
	h.connect("u1", "user-read-email")
	up.setFake(func(w http.ResponseWriter, r *http.Request, _ int) bool {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"partial":`)
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	})
	req, _ := http.NewRequest("GET", h.ts.URL+"/v1/proxy/u1/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+h.apiKey)
	req.Header.Set("X-Request-Id", "req-aborted")
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("reading the aborted answer succeeded; want an error (a cut connection)")
	}
	var line map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for line == nil && time.Now().Before(deadline) {
		for _, l := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(l, `"msg":"request"`) && strings.Contains(l, "req-aborted") {
				json.Unmarshal([]byte(l), &line)
			}
		}
		if line == nil {
			time.Sleep(10 * time.Millisecond) // the handler finishes after the client sees the cut
		}
	}
	if line == nil {
		t.Fatalf("no request line for the aborted request in:\n%s", h.logs)
	}
	if line["aborted"] != true || line["route"] != "/v1/proxy/{id}/{path...}" {
		t.Errorf("request line %v, want aborted=true on the proxy route", line)
	}
}
