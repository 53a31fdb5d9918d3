package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken/server"
)

func (h *harness) clientCredentials() int64 { return h.emu.Stats().TokenRequests["client_credentials"] }

// TestAppToken: POST /v1/app-token gives the app's client-credentials token,
// cached; 300 concurrent requests after it expired cause one
// client-credentials request to Spotify.
func TestAppToken(t *testing.T) {
	h := confidentialHarness(t, nil)
	var first server.TokenResponse
	resp, raw := h.call("POST", "/v1/app-token", h.apiKey, nil, &first)
	if resp.StatusCode != http.StatusOK || first.AccessToken == "" || first.TokenType != "Bearer" || !first.ExpiresAt.Equal(h.emu.Now().Add(time.Hour)) {
		t.Fatalf("app token: %d %s", resp.StatusCode, raw)
	}
	var again server.TokenResponse
	h.call("POST", "/v1/app-token", h.apiKey, map[string]any{"min_ttl": 600}, &again)
	if again.AccessToken != first.AccessToken || h.clientCredentials() != 1 {
		t.Errorf("a second call: another token or another request (%d)", h.clientCredentials())
	}

	h.emu.Advance(time.Hour)
	before := h.clientCredentials()
	tokens := make([]string, 300)
	var wg sync.WaitGroup
	start := make(chan struct{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 300}}
	for i := range tokens {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest("POST", h.ts.URL+"/v1/app-token", nil)
			req.Header.Set("Authorization", "Bearer "+h.apiKey)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var tok server.TokenResponse
			if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&tok) != nil {
				t.Errorf("caller %d: %d", i, resp.StatusCode)
			}
			tokens[i] = tok.AccessToken
		})
	}
	close(start)
	wg.Wait()
	if n := h.clientCredentials() - before; n != 1 {
		t.Errorf("%d client-credentials requests for 300 callers after expiry, want 1", n)
	}
	for i, tok := range tokens {
		if tok == first.AccessToken || tok != tokens[0] {
			t.Fatalf("caller %d got the expired token or another one", i)
		}
	}

	// force_refresh fetches a new one, three times in a row, then is limited.
	for i := range 4 {
		var tok server.TokenResponse
		resp, raw := h.call("POST", "/v1/app-token", h.apiKey, map[string]any{"force_refresh": true}, &tok)
		if i < 3 && (resp.StatusCode != http.StatusOK || tok.AccessToken == tokens[0]) {
			t.Errorf("force_refresh %d: %d %s", i, resp.StatusCode, raw)
		}
		if i == 3 && (resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "") {
			t.Errorf("the fourth force_refresh: %d %s", resp.StatusCode, raw)
		}
	}
	if strings.Contains(h.logs.String(), first.AccessToken) || strings.Contains(h.logs.String(), tokens[0]) {
		t.Error("an app token is in the log")
	}
}

// TestAppTokenRefusedForPublicApp: an app without a client secret is refused with
// unauthorized_client, and Spotify is not asked.
func TestAppTokenRefusedForPublicApp(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	var e server.ErrorResponse
	resp, raw := h.call("POST", "/v1/app-token", h.apiKey, nil, &e)
	if resp.StatusCode != http.StatusBadRequest || e.Error != "unauthorized_client" || !strings.Contains(e.Description, "no client secret") {
		t.Errorf("public app: %d %s", resp.StatusCode, raw)
	}
	if resp, raw := h.call("GET", "/v1/proxy/-/v1/tracks/x", h.apiKey, nil, &e); resp.StatusCode != http.StatusBadRequest || e.Error != "unauthorized_client" {
		t.Errorf("public app through the proxy: %d %s", resp.StatusCode, raw)
	}
	if n := h.clientCredentials(); n != 0 {
		t.Errorf("%d client-credentials requests", n)
	}
}

// TestAppProxy: /v1/proxy/-/{path} calls the Web API with the app's token,
// never with the API key; a 401 for the token gets a new one and one retry;
// user endpoints are refused; "-" is no connection id.
func TestAppProxy(t *testing.T) {
	var mu sync.Mutex
	var seen []string // Authorization headers upstream
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		n := len(seen)
		mu.Unlock()
		if n == 1 { // the first token is refused as expired
			w.Header().Set("WWW-Authenticate", `Bearer realm="spotify", error="invalid_token", error_description="The access token expired"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"status":401,"message":"The access token expired"}}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"` + strings.TrimPrefix(r.URL.Path, "/v1/tracks/") + `","q":"` + r.URL.Query().Get("q") + `"}`))
	}))
	t.Cleanup(upstream.Close)
	h := confidentialHarness(t, func(c *server.Config) { c.APIURL = upstream.URL })

	resp, raw := h.call("GET", "/v1/proxy/-/v1/tracks/abc?q=x", h.apiKey, nil, nil)
	if resp.StatusCode != http.StatusOK || string(raw) != `{"id":"abc","q":"x"}` {
		t.Fatalf("proxied: %d %s", resp.StatusCode, raw)
	}
	mu.Lock()
	got := append([]string(nil), seen...)
	mu.Unlock()
	if len(got) != 2 || got[0] == got[1] || !strings.HasPrefix(got[1], "Bearer BQ") {
		t.Errorf("upstream saw %d requests, want the refused token and a new one", len(got))
	}
	var tok server.TokenResponse
	h.call("POST", "/v1/app-token", h.apiKey, nil, &tok)
	if got[1] != "Bearer "+tok.AccessToken || h.clientCredentials() != 2 {
		t.Errorf("the retry did not carry the app's new token (%d client-credentials requests)", h.clientCredentials())
	}
	for _, a := range got {
		if strings.Contains(a, h.apiKey) {
			t.Error("the API key went upstream")
		}
	}

	var e server.ErrorResponse
	for _, path := range []string{"/v1/proxy/-/v1/me", "/v1/proxy/-/v1/me/player", "/v1/proxy/-/v2/x", "/v1/proxy/-/v1/../x"} {
		if resp, raw := h.call("GET", path, h.apiKey, nil, &e); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s", path, resp.StatusCode, raw)
		}
	}
	if resp, raw := h.call("POST", "/v1/connect-sessions", h.apiKey, map[string]any{"connection_id": "-"}, &e); resp.StatusCode != http.StatusBadRequest || !strings.Contains(e.Description, "app itself") {
		t.Errorf("connect session for -: %d %s", resp.StatusCode, raw)
	}
	if resp, _ := h.call("GET", "/v1/proxy/-/v1/tracks/abc", "", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without an API key: %d", resp.StatusCode)
	}
}
