package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/server"
)

func TestAuthRefused(t *testing.T) {
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.AuthCacheTTL = -1 }})
	h.connect("c1")
	ctx := context.Background()

	revoked := h.newKey(appID)
	if resp, _ := h.call("GET", "/v1/connections", revoked, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("the key before revocation: %d", resp.StatusCode)
	}
	keys, err := h.store.APIKeys(ctx, appID)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if spotoken.HashAPIKey(spotoken.Secret(revoked)) == k.Hash {
			if err := h.store.RevokeAPIKey(ctx, appID, k.ID, h.emu.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	gone := h.otherKey
	if err := h.store.DeleteApp(ctx, otherAppID); err != nil {
		t.Fatal(err)
	}

	const challenge = `Bearer realm="spotoken", error="invalid_token"`
	for _, tc := range []struct {
		name, header string
		challenge    string // WWW-Authenticate
	}{
		{"no header", "", `Bearer realm="spotoken"`},
		{"wrong scheme", "Basic " + h.apiKey, `Bearer realm="spotoken"`},
		{"no scheme", h.apiKey, `Bearer realm="spotoken"`},
		{"scheme only", "Bearer", `Bearer realm="spotoken"`},
		{"empty key", "Bearer ", `Bearer realm="spotoken"`}, // the trailing space does not survive
		{"two spaces", "Bearer  " + h.apiKey, challenge},
		{"unknown key", "Bearer sk_" + strings.Repeat("A", 32), challenge},
		{"not an API key", "Bearer BQD" + strings.Repeat("x", 40), challenge},
		{"malformed key", "Bearer sk_\xff%%\"'<>", challenge},
		{"key with a suffix", "Bearer " + h.apiKey + "x", challenge},
		{"key cut short", "Bearer " + h.apiKey[:len(h.apiKey)-1], challenge},
		{"huge key", "Bearer sk_" + strings.Repeat("A", 4000), challenge},
		{"revoked key", "Bearer " + revoked, challenge},
		{"key of a deleted app", "Bearer " + gone, challenge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []struct{ method, path string }{
				{"GET", "/v1/connections"},
				{"GET", "/v1/connections/c1"},
				{"POST", "/v1/connections/c1/token"},
				{"DELETE", "/v1/connections/c1"},
				{"POST", "/v1/connect-sessions"},
			} {
				req, _ := http.NewRequest(r.method, h.ts.URL+r.path, nil)
				if tc.header != "" {
					req.Header["Authorization"] = []string{tc.header}
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s %s: %d %s, want 401", r.method, r.path, resp.StatusCode, raw)
					continue
				}
				e := wantErrorBody(t, resp, raw, "invalid_token")
				if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
					t.Errorf("%s %s: WWW-Authenticate %q, want %q", r.method, r.path, got, tc.challenge)
				}
				if strings.Contains(e.Description, "sk_A") || strings.Contains(string(raw), h.apiKey) {
					t.Errorf("the answer echoes the key: %s", raw)
				}
			}
		})
	}
	if h.connection(appID, "c1") == nil {
		t.Error("a refused DELETE deleted c1")
	}
	// The scheme is case-insensitive (RFC 9110 §11.1).
	req, _ := http.NewRequest("GET", h.ts.URL+"/v1/connections", nil)
	req.Header.Set("Authorization", "bearer "+h.apiKey)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("lower-case scheme: %v %v", resp.StatusCode, err)
	}
}

// TestAuthCache: with the default cache, a revoked key keeps working until
// the cache entry is AuthCacheTTL old on the server's clock, then stops.
func TestAuthCache(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	key := h.newKey(appID)
	if resp, _ := h.call("GET", "/v1/connections", key, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("new key: %d", resp.StatusCode)
	}
	keys, _ := h.store.APIKeys(ctx, appID)
	for _, k := range keys {
		if k.Hash == spotoken.HashAPIKey(spotoken.Secret(key)) {
			if err := h.store.RevokeAPIKey(ctx, appID, k.ID, h.emu.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if resp, _ := h.call("GET", "/v1/connections", key, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoked key within the cache TTL: %d, want 200 (cached)", resp.StatusCode)
	}
	h.emu.Advance(server.DefaultAuthCacheTTL - time.Millisecond)
	if resp, _ := h.call("GET", "/v1/connections", key, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoked key just before the TTL: %d, want 200 (cached)", resp.StatusCode)
	}
	h.emu.Advance(time.Millisecond)
	resp, raw := h.call("GET", "/v1/connections", key, nil, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked key after the TTL: %d %s, want 401", resp.StatusCode, raw)
	}
	wantErrorBody(t, resp, raw, "invalid_token")
	// It stays refused, and the other keys work.
	if resp, _ := h.call("GET", "/v1/connections", key, nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("revoked key again: %d", resp.StatusCode)
	}
	if resp, _ := h.call("GET", "/v1/connections", h.apiKey, nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("another key of the app: %d", resp.StatusCode)
	}
}

// TestAuthRecordsUse: a key's last use is written (off the request path).
func TestAuthRecordsUse(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.emu.Advance(time.Hour)
	h.call("GET", "/v1/connections", h.apiKey, nil, nil)
	want := h.emu.Now()
	deadline := time.Now().Add(5 * time.Second)
	for {
		keys, err := h.store.APIKeys(context.Background(), appID)
		if err != nil {
			t.Fatal(err)
		}
		if keys[0].LastUsedAt.Equal(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("last used %v, want %v", keys[0].LastUsedAt, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder is an HTTP transport that keeps every form value sent to and
// every JSON string received from Spotify: codes, verifiers, tokens.
type recorder struct {
	mu     sync.Mutex
	values map[string]string // value → where it was first seen
	kinds  map[string]int    // where → how many values were seen there
}

func (rec *recorder) add(v, where string) {
	if len(v) < 8 {
		return
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.values == nil {
		rec.values, rec.kinds = map[string]string{}, map[string]int{}
	}
	if _, ok := rec.values[v]; !ok {
		rec.values[v] = where
	}
	rec.kinds[where]++
}

func (rec *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		for k, vs := range form {
			if k == "grant_type" || k == "redirect_uri" || k == "client_id" {
				continue
			}
			for _, v := range vs {
				rec.add(v, "request "+k)
			}
		}
	}
	if a := r.Header.Get("Authorization"); a != "" {
		rec.add(strings.TrimPrefix(a, "Bearer "), "request Authorization")
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var fields map[string]any
	if json.Unmarshal(body, &fields) == nil {
		for _, k := range []string{"access_token", "refresh_token"} {
			if v, ok := fields[k].(string); ok {
				rec.add(v, "response "+k)
			}
		}
	}
	return resp, nil
}

// TestSecretsNeverLeak runs a connection through its life (connect,
// vend, refresh with rotation, force refresh, needs_reauth, delete) and
// then looks for every secret it saw in the log and in the database's
// files, byte for byte.
func TestSecretsNeverLeak(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, harnessOptions{
		emulator: func(c *emulator.Config) { c.Rotation = emulator.Rotation{Mode: emulator.RotateAlways} },
		server:   func(c *server.Config) { c.HTTPClient = &http.Client{Transport: rec} },
		engine: func(c *refresh.Config) {
			c.Refresher.(*refresh.SpotifyRefresher).HTTPClient = &http.Client{Transport: rec}
		},
	})
	const connID = "conn-7f3a-visible" // not a secret: it must show up
	secrets := map[string]string{"API key": h.apiKey, "other app's API key": h.otherKey}
	addURL := func(what, raw string, params ...string) {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range params {
			if v := u.Query().Get(p); v != "" {
				secrets[what+" "+p] = v
			}
		}
	}
	addStored := func(when string) {
		c := h.connection(appID, connID)
		if c == nil {
			t.Fatalf("%s: no connection", when)
		}
		secrets["stored access token "+when] = c.Token.AccessToken.Reveal()
		secrets["stored refresh token "+when] = c.Token.RefreshToken.Reveal()
	}

	// Connect, stopping at each redirect to collect state and code.
	sess := h.session(connID, []string{"user-read-email"}, "https://app.example/done")
	secrets["connect session"] = strings.TrimPrefix(sess.URL, h.ts.URL+"/connect/")
	f := h.startFlow(nil, sess.URL)
	addURL("authorize", f.authorizeURL, "state", "code_challenge")
	addURL("callback", f.callbackURL, "state", "code")
	if r := f.callback(t, f.callbackURL); r.Status != http.StatusFound || !strings.Contains(r.Location, "status=connected") {
		t.Fatalf("connect: %d %s", r.Status, r.Location)
	}
	h.call("GET", "/v1/connections", h.otherKey, nil, nil)
	addStored("after connect")

	// Vend, refresh (rotating), force refresh.
	vendTok := func(what string, body any) {
		var tok server.TokenResponse
		resp, raw := h.call("POST", "/v1/connections/"+connID+"/token", h.apiKey, body, &tok)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", what, resp.StatusCode, raw)
		}
		secrets["vended "+what] = tok.AccessToken
	}
	vendTok("first", nil)
	h.emu.Advance(time.Hour)
	vendTok("after expiry", nil)
	addStored("after refresh")
	vendTok("forced", map[string]any{"force_refresh": true})
	addStored("after force")
	if st := h.engine.Stats(); st.Rotations != 2 {
		t.Fatalf("%d rotations, want 2", st.Rotations)
	}

	// Fail: the grant is revoked; the answer carries a new connect link.
	if err := h.emu.RevokeGrant("alice", clientID); err != nil {
		t.Fatal(err)
	}
	var e server.ErrorResponse
	resp, raw := h.call("POST", "/v1/connections/"+connID+"/token", h.apiKey, map[string]any{"force_refresh": true}, &e)
	if resp.StatusCode != http.StatusConflict || e.ConnectURL == "" {
		t.Fatalf("after revocation: %d %s", resp.StatusCode, raw)
	}
	secrets["re-consent connect session"] = strings.TrimPrefix(e.ConnectURL, h.ts.URL+"/connect/")
	addStored("at needs_reauth")

	// A failed callback too: its code and state must not be logged either.
	f2 := h.startFlow(nil, h.session(connID+"-2", nil, "").URL)
	addURL("failed callback", f2.callbackURL, "state", "code")
	h.emu.SetFaults(emulator.Faults{TokenStatus: 400, TokenError: "invalid_grant", Count: 1})
	if r := f2.callback(t, f2.callbackURL); r.Outcome != "exchange_failed" {
		t.Fatalf("failed callback: %q", r.Outcome)
	}

	// Delete.
	if resp, raw := h.call("DELETE", "/v1/connections/"+connID, h.apiKey, nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", resp.StatusCode, raw)
	}

	rec.mu.Lock()
	for v, where := range rec.values {
		secrets["sent to or from Spotify: "+where+" "+v[:6]] = v
	}
	// What must have been seen: 2 codes (one failed), 3 refresh requests
	// (expiry, force, and the force that met the revoked grant), the tokens
	// of 1 exchange and 2 refreshes.
	for kind, n := range map[string]int{
		"request code_verifier": 2, "request code": 2, "request refresh_token": 3,
		"response access_token": 3, "response refresh_token": 3, "request Authorization": 1,
	} {
		if rec.kinds[kind] < n {
			t.Errorf("the recorder saw %d values of %s, want at least %d", rec.kinds[kind], kind, n)
		}
	}
	rec.mu.Unlock()

	logs := h.logs.String()
	var db []byte
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(h.dbPath + suffix)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		db = append(db, b...)
	}
	if len(db) == 0 || len(logs) == 0 {
		t.Fatal("nothing to search")
	}
	for what, s := range secrets {
		if len(s) < 16 {
			t.Errorf("%s: %q is too short to search for", what, s)
			continue
		}
		if strings.Contains(logs, s) {
			t.Errorf("the log holds the %s", what)
		}
		if bytes.Contains(db, []byte(s)) {
			t.Errorf("the database files hold the %s", what)
		}
	}
	// The search finds what is there: the connection id is in both.
	if !strings.Contains(logs, connID) {
		t.Errorf("the log does not hold the connection id %q: the search is broken", connID)
	}
	if !bytes.Contains(db, []byte(connID)) {
		t.Errorf("the database does not hold the connection id %q: the search is broken", connID)
	}
	t.Logf("searched for %d secrets in %d bytes of log and %d bytes of database", len(secrets), len(logs), len(db))
}

// TestSecurityHeadersOnFlowPages: the connect pages are not cached,
// framed or given a referrer.
func TestSecurityHeadersOnFlowPages(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	sess := h.session("c1", nil, "")
	resp, err := stayClient(nil).Get(sess.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k, v := range map[string]string{"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("/connect: %s %q, want %q", k, got, v)
		}
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, "spotoken_state_") {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/callback" || cookie.MaxAge != 600 {
		t.Errorf("state cookie %+v", cookie)
	}
	resp, err = http.Get(h.ts.URL + "/connect/cs_unknown")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k, v := range map[string]string{
		"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
		"Content-Type":            "text/html; charset=utf-8",
	} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("flow page: %s %q, want %q", k, got, v)
		}
	}
}

// TestCookieSecureOverHTTPS: over HTTPS the state cookie is Secure.
func TestCookieSecureOverHTTPS(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	srv, err := server.New(server.Config{Store: h.store, Tokens: h.engine, PublicURL: "https://spotoken.example",
		AccountsURL: h.emuSrv.URL, Now: h.emu.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := h.store.UpdateApp(ctx, appID, func(a *spotoken.App) error {
		a.RedirectURIs = append(a.RedirectURIs, srv.CallbackURL())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	req := httptestRequest("POST", "/v1/connect-sessions", `{"connection_id":"c1"}`, h.apiKey)
	w := newRecorder()
	srv.ServeHTTP(w, req)
	var sess server.ConnectSession
	if err := json.Unmarshal(w.Body.Bytes(), &sess); err != nil || w.Code != http.StatusCreated {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	u, _ := url.Parse(sess.URL)
	w = newRecorder()
	srv.ServeHTTP(w, httptestRequest("GET", u.Path, "", ""))
	cookies := (&http.Response{Header: w.Header()}).Cookies()
	if w.Code != http.StatusFound || len(cookies) != 1 || !cookies[0].Secure {
		t.Errorf("%d cookies %+v, want one Secure cookie", w.Code, cookies)
	}
}

// TestLogRedactsConnectLinks: however a connect link's path is spelled,
// its session token does not reach the log.
func TestLogRedactsConnectLinks(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, p := range []string{
		"/connect/%s", "//connect/%s", "/./connect/%s", "/connect/%s/", "/connect/%s/x/../..", "/x/../connect/%s",
	} {
		sess := h.session("c1", nil, "")
		token := strings.TrimPrefix(sess.URL, h.ts.URL+"/connect/")
		// Sent as written, as a browser sends a link's path: Go's client
		// would turn "//connect/…" into an absolute URL.
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.ts.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: spotoken\r\nConnection: close\r\n\r\n", strings.Replace(p, "%s", token, 1))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("GET %s: 200", p)
		}
		if strings.Contains(h.logs.String(), token) {
			t.Errorf("GET %s: the log holds the session token", p)
		}
	}
	if !strings.Contains(h.logs.String(), `"path":"/connect/[REDACTED]"`) {
		t.Error("no redacted connect path in the log: the requests were not logged")
	}
}
