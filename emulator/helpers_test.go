package emulator_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken/emulator"
)

// Test fixtures: a confidential client, a public (PKCE) client, and the
// RFC 7636 Appendix B verifier and challenge.
const (
	confID       = "conf-app"
	confSecret   = "conf-secret-value"
	confRedirect = "https://app.example/callback"
	pubID        = "pub-app"
	pubRedirect  = "http://127.0.0.1/callback" // loopback without a port: any port matches
	pubRedirectP = "http://127.0.0.1:43123/callback"
)

// verifier is the RFC 7636 Appendix B code_verifier; challenge is its S256.
var (
	verifier  = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
)

// fakeClock is the base clock handed to the emulator; tests move time with
// Emulator.Advance, so this only has to be fixed.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// env is one emulator behind an httptest server.
type env struct {
	t   *testing.T
	emu *emulator.Emulator
	srv *httptest.Server
}

func newEnv(t *testing.T, mutate func(*emulator.Config)) *env {
	t.Helper()
	cfg := emulator.Config{
		Clients: []emulator.Client{
			{ID: confID, Secret: confSecret, RedirectURIs: []string{confRedirect}},
			{ID: pubID, RedirectURIs: []string{pubRedirect}},
		},
		AutoApprove: "alice",
		Now:         (&fakeClock{now: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)}).Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	emu, err := emulator.New(cfg)
	if err != nil {
		t.Fatalf("emulator.New: %v", err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	return &env{t: t, emu: emu, srv: srv}
}

// testClient is the tests' HTTP client, on a transport of their own:
// httptest.Server.Close closes http.DefaultTransport's idle connections,
// and a parallel test's request that had just taken one failed with
// "connection broken: CloseIdleConnections called".
var testClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{Transport: testClient.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// authorize calls /authorize with q and returns the response (not followed).
func (e *env) authorize(q url.Values) *http.Response {
	e.t.Helper()
	resp, err := noRedirect.Get(e.srv.URL + "/authorize?" + q.Encode())
	if err != nil {
		e.t.Fatalf("GET /authorize: %v", err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// pkceQuery is a valid /authorize query for the public client.
func pkceQuery(scope string) url.Values {
	return url.Values{"client_id": {pubID}, "response_type": {"code"}, "redirect_uri": {pubRedirectP},
		"state": {"st4te"}, "scope": {scope}, "code_challenge_method": {"S256"}, "code_challenge": {challenge}}
}

// confQuery is a valid /authorize query for the confidential client.
func confQuery(scope string) url.Values {
	return url.Values{"client_id": {confID}, "response_type": {"code"}, "redirect_uri": {confRedirect},
		"state": {"st4te"}, "scope": {scope}}
}

// code runs an auto-approved /authorize and returns the code from the redirect.
func (e *env) code(q url.Values) string {
	e.t.Helper()
	resp := e.authorize(q)
	if resp.StatusCode != http.StatusFound {
		body, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("/authorize: status %d, want 302; body %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatalf("Location: %v", err)
	}
	c := loc.Query().Get("code")
	if c == "" {
		e.t.Fatalf("no code in redirect %s", loc.Redacted())
	}
	return c
}

// tokenResult is a decoded /api/token answer.
type tokenResult struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

func (r tokenResult) str(k string) string { s, _ := r.Body[k].(string); return s }

// postToken posts form to /api/token, with HTTP Basic when user is not empty.
func (e *env) postToken(form url.Values, user, pass string) tokenResult {
	e.t.Helper()
	return e.postTokenRaw("application/x-www-form-urlencoded", form.Encode(), user, pass)
}

func (e *env) postTokenRaw(contentType, body, user, pass string) tokenResult {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/token", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		e.t.Fatalf("POST /api/token: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	res := tokenResult{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &res.Body); err != nil {
			e.t.Fatalf("/api/token body is not JSON: %q", raw)
		}
	}
	return res
}

// pkceGrant runs the whole PKCE flow for the public client and returns the token answer.
func (e *env) pkceGrant(scope string) tokenResult {
	e.t.Helper()
	res := e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {e.code(pkceQuery(scope))},
		"redirect_uri": {pubRedirectP}, "client_id": {pubID}, "code_verifier": {verifier}}, "", "")
	if res.Status != http.StatusOK {
		e.t.Fatalf("PKCE exchange: %d %s", res.Status, res.Raw)
	}
	return res
}

// confGrant runs the confidential code flow and returns the token answer.
func (e *env) confGrant(scope string) tokenResult {
	e.t.Helper()
	res := e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {e.code(confQuery(scope))},
		"redirect_uri": {confRedirect}}, confID, confSecret)
	if res.Status != http.StatusOK {
		e.t.Fatalf("confidential exchange: %d %s", res.Status, res.Raw)
	}
	return res
}

// refreshPublic refreshes a public client's token.
func (e *env) refreshPublic(rt string) tokenResult {
	e.t.Helper()
	return e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pubID}}, "", "")
}

// apiResult is a decoded Web API answer.
type apiResult struct {
	Status int
	Header http.Header
	Raw    string
	Body   map[string]any
}

// api calls the Web API with an optional bearer token.
func (e *env) api(method, path, token, body string) apiResult {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := testClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	res := apiResult{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &res.Body); err != nil {
			e.t.Fatalf("%s %s: body is not JSON: %q", method, path, raw)
		}
	}
	return res
}

// control calls an /_emulator/ endpoint.
func (e *env) control(method, path, body string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+"/_emulator/"+path, strings.NewReader(body))
	resp, err := testClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s /_emulator/%s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// s256 computes an RFC 7636 S256 challenge, independently of the emulator.
func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
