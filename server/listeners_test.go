package server_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/server"
)

// get fetches url with client and returns the status, a header and the body.
func get(t *testing.T, client *http.Client, method, url string, header http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// adminListener starts a listener for the admin side before the server
// exists (its URL goes into the config) and returns it with the function
// that gives it its handler.
func adminListener(t *testing.T) (*httptest.Server, func(http.Handler)) {
	var handler http.Handler
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(ts.Close)
	return ts, func(h http.Handler) { handler = h }
}

// TestSeparateAdmin: with SeparateAdmin, the public handler serves the API,
// connect, callback and health, and nothing of the admin side (metrics, the
// dashboard, what MountAdmin adds); the admin handler serves those and
// health, and none of the API.
func TestSeparateAdmin(t *testing.T) {
	admin, setAdmin := adminListener(t)
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.SeparateAdmin, c.AdminURL = true, admin.URL }})
	setAdmin(h.srv.AdminHandler())
	h.srv.MountAdmin(func(m *http.ServeMux) {
		m.HandleFunc("GET /admin/v1/ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pong") })
	})
	auth := http.Header{"Authorization": {"Bearer " + h.apiKey}}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	for _, tt := range []struct {
		base, method, path string
		header             http.Header
		want               int
	}{
		// The public side: the API and health, no admin route.
		{h.ts.URL, "GET", "/v1/connections", auth, 200},
		{h.ts.URL, "GET", "/healthz", nil, 200},
		{h.ts.URL, "GET", "/readyz", nil, 200},
		{h.ts.URL, "GET", "/openapi.json", nil, 200},
		{h.ts.URL, "GET", "/metrics", nil, 404},
		{h.ts.URL, "GET", "/", nil, 404},
		{h.ts.URL, "GET", "/dashboard/login", nil, 404},
		{h.ts.URL, "POST", "/dashboard/login", nil, 404},
		{h.ts.URL, "GET", "/admin/v1/ping", nil, 404},
		// The admin side: metrics, the dashboard, mounted routes, health; no API.
		{admin.URL, "GET", "/metrics", nil, 200},
		{admin.URL, "GET", "/", nil, 303},
		{admin.URL, "GET", "/dashboard/login", nil, 200},
		{admin.URL, "GET", "/admin/v1/ping", nil, 200},
		{admin.URL, "GET", "/healthz", nil, 200},
		{admin.URL, "GET", "/readyz", nil, 200},
		{admin.URL, "GET", "/v1/connections", auth, 404},
		{admin.URL, "POST", "/v1/connections/u1/token", auth, 404},
		{admin.URL, "GET", "/connect/cs_x", nil, 404},
		{admin.URL, "GET", "/callback", nil, 404},
	} {
		status, _, body := get(t, noRedirect, tt.method, tt.base+tt.path, tt.header)
		side := "public"
		if tt.base == admin.URL {
			side = "admin"
		}
		if status != tt.want {
			t.Errorf("%s %s on the %s side: %d, want %d: %s", tt.method, tt.path, side, status, tt.want, body)
		}
		if status == 404 && !strings.Contains(body, `"error":"not_found"`) {
			t.Errorf("%s %s on the %s side: 404 is not the JSON error: %s", tt.method, tt.path, side, body)
		}
	}

	// The dashboard works on its own origin: a sign-in posted from the
	// admin origin succeeds; one claiming the public origin is refused.
	form := url.Values{"api_key": {h.apiKey}}.Encode()
	post := func(origin string) int {
		req, _ := http.NewRequest("POST", admin.URL+"/dashboard/login", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(admin.URL); got != http.StatusSeeOther {
		t.Errorf("dashboard sign-in from the admin origin: %d, want 303", got)
	}
	if got := post(h.ts.URL); got != http.StatusForbidden {
		t.Errorf("dashboard sign-in claiming the public origin: %d, want 403", got)
	}
}

// TestCombinedListener: without SeparateAdmin one handler serves both sides,
// as before, and AdminHandler is that handler.
func TestCombinedListener(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.srv.MountAdmin(func(m *http.ServeMux) {
		m.HandleFunc("GET /admin/v1/ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pong") })
	})
	for _, path := range []string{"/metrics", "/dashboard/login", "/admin/v1/ping", "/healthz"} {
		if status, _, body := get(t, http.DefaultClient, "GET", h.ts.URL+path, nil); status != 200 {
			t.Errorf("GET %s: %d %s", path, status, body)
		}
	}
	// AdminHandler serves the same routes, the API included.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/v1/connections", nil)
	req.Header.Set("Authorization", "Bearer "+h.apiKey)
	h.srv.AdminHandler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("AdminHandler without SeparateAdmin: GET /v1/connections: %d %s", rec.Code, rec.Body)
	}
}

// TestHSTS: Strict-Transport-Security on every HTTPS response (TLS, or an
// https base URL behind a proxy), none over plain HTTP, none when disabled.
func TestHSTS(t *testing.T) {
	const oneYear = "max-age=31536000"
	h := newHarness(t, harnessOptions{})
	tlsSrv := httptest.NewTLSServer(h.srv.Handler())
	defer tlsSrv.Close()
	for _, path := range []string{"/healthz", "/v1/connections", "/nope", "/dashboard/login", "/connect/cs_unknown"} {
		_, hdr, _ := get(t, tlsSrv.Client(), "GET", tlsSrv.URL+path, nil)
		if got := hdr.Get("Strict-Transport-Security"); got != oneYear {
			t.Errorf("GET %s over TLS: Strict-Transport-Security %q, want %q", path, got, oneYear)
		}
	}
	if _, hdr, _ := get(t, http.DefaultClient, "GET", h.ts.URL+"/healthz", nil); hdr.Get("Strict-Transport-Security") != "" {
		t.Errorf("plain HTTP with an http public URL got Strict-Transport-Security %q", hdr.Get("Strict-Transport-Security"))
	}

	// TLS ended by a proxy: the public URL is https.
	proxied := newHarness(t, harnessOptions{server: func(c *server.Config) { c.PublicURL = "https://broker.example" }})
	if _, hdr, _ := get(t, http.DefaultClient, "GET", proxied.ts.URL+"/healthz", nil); hdr.Get("Strict-Transport-Security") != oneYear {
		t.Errorf("behind a TLS proxy: Strict-Transport-Security %q, want %q", hdr.Get("Strict-Transport-Security"), oneYear)
	}

	// Disabled, or another max-age.
	for _, tt := range []struct {
		maxAge time.Duration
		want   string
	}{{-1, ""}, {10 * time.Minute, "max-age=600"}} {
		h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.HSTSMaxAge = tt.maxAge }})
		srv := httptest.NewUnstartedServer(h.srv.Handler())
		srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		srv.StartTLS()
		_, hdr, _ := get(t, srv.Client(), "GET", srv.URL+"/healthz", nil)
		srv.Close()
		if got := hdr.Get("Strict-Transport-Security"); got != tt.want {
			t.Errorf("HSTSMaxAge %v: Strict-Transport-Security %q, want %q", tt.maxAge, got, tt.want)
		}
	}
}

// TestMetricsAccess: /metrics behind a bearer token, or not served at all.
func TestMetricsAccess(t *testing.T) {
	const token = "mt_0123456789abcdef"
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.MetricsToken = spotoken.Secret(token) }})
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", token, "Basic " + token} {
		status, hdr, body := get(t, http.DefaultClient, "GET", h.ts.URL+"/metrics", http.Header{"Authorization": {auth}})
		if status != http.StatusUnauthorized || !strings.Contains(hdr.Get("WWW-Authenticate"), "Bearer") || strings.Contains(body, "spotoken_") {
			t.Errorf("/metrics with Authorization %q: %d %q %s", auth, status, hdr.Get("WWW-Authenticate"), body)
		}
		if strings.Contains(body, token) {
			t.Errorf("the refusal shows the token: %s", body)
		}
	}
	status, _, body := get(t, http.DefaultClient, "GET", h.ts.URL+"/metrics", http.Header{"Authorization": {"Bearer " + token}})
	if status != 200 || !strings.Contains(body, "spotoken_http_requests_total") {
		t.Errorf("/metrics with the token: %d %.200s", status, body)
	}
	if strings.Contains(h.logs.String(), token) {
		t.Error("the log holds the metrics token")
	}

	off := newHarness(t, harnessOptions{server: func(c *server.Config) { c.NoMetrics = true }})
	status, _, body = get(t, http.DefaultClient, "GET", off.ts.URL+"/metrics", nil)
	if status != 404 || !strings.Contains(body, "--admin-addr") || strings.Contains(body, "spotoken_") {
		t.Errorf("/metrics with NoMetrics: %d %s", status, body)
	}
}
