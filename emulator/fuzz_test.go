package emulator_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken/emulator"
)

// tokenErrorCodes are the only error codes /api/token may answer with when
// no fault is injected.
var tokenErrorCodes = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true, "unsupported_grant_type": true,
}

// FuzzTokenForm throws arbitrary bodies, content types and Authorization
// headers at /api/token. Whatever comes in, the answer is a 200 token or a
// 400 RFC 6749 error with the no-store headers, and the grant that existed
// before still refreshes: bad input loses nothing.
func FuzzTokenForm(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", "grant_type=refresh_token&refresh_token=AQx&client_id="+pubID, "")
	f.Add("application/x-www-form-urlencoded", "grant_type=client_credentials", "Basic Y29uZi1hcHA6Y29uZi1zZWNyZXQtdmFsdWU=")
	f.Add("application/x-www-form-urlencoded; charset=utf-8", "grant_type=authorization_code&code=AQ&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback&code_verifier=x", "")
	f.Add("application/json", `{"grant_type":"client_credentials"}`, "Bearer x")
	f.Add("multipart/form-data; boundary=x", "--x\r\n", "Basic !!")
	f.Add("application/x-www-form-urlencoded", "grant_type=%zz&&&=", "Basic Og==")
	f.Add("", "grant_type=refresh_token&grant_type=refresh_token", "basic Y29uZi1hcHA6")

	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, contentType, body, auth string) {
		req := httptest.NewRequest(http.MethodPost, "/api/token", strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		e.emu.ServeHTTP(rec, req)
		checkTokenAnswer(t, rec)
		// The grant made before fuzzing is intact.
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {e.refreshToken}, "client_id": {pubID}}
		req = httptest.NewRequest(http.MethodPost, "/api/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec = httptest.NewRecorder()
		e.emu.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("existing grant broken after fuzz input: %d %s", rec.Code, rec.Body)
		}
	})
}

type fuzzEnv struct {
	emu          *emulator.Emulator
	refreshToken string
}

// newFuzzEnv makes an emulator with one PKCE grant, driven without a network.
func newFuzzEnv(f *testing.F) *fuzzEnv {
	emu, err := emulator.New(emulator.Config{
		Clients: []emulator.Client{
			{ID: confID, Secret: confSecret, RedirectURIs: []string{confRedirect}},
			{ID: pubID, RedirectURIs: []string{pubRedirect}},
		},
		AutoApprove: "alice",
		Now:         (&fakeClock{now: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)}).Now,
	})
	if err != nil {
		f.Fatal(err)
	}
	rec := httptest.NewRecorder()
	emu.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/authorize?"+pkceQuery("user-read-email").Encode(), nil))
	loc, _ := url.Parse(rec.Header().Get("Location"))
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {pubRedirectP},
		"client_id": {pubID}, "code_verifier": {verifier}}
	req := httptest.NewRequest(http.MethodPost, "/api/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec = httptest.NewRecorder()
	emu.ServeHTTP(rec, req)
	var tok struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil || tok.RefreshToken == "" {
		f.Fatalf("setting up a grant: %d %s", rec.Code, rec.Body)
	}
	return &fuzzEnv{emu: emu, refreshToken: tok.RefreshToken}
}

func checkTokenAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", rec.Header())
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("status %d, body not JSON: %q", rec.Code, rec.Body)
	}
	switch rec.Code {
	case http.StatusOK:
		if body["access_token"] == "" || body["token_type"] != "Bearer" {
			t.Fatalf("200 without a token: %s", rec.Body)
		}
	case http.StatusBadRequest:
		code, _ := body["error"].(string)
		desc, _ := body["error_description"].(string)
		if !tokenErrorCodes[code] || desc == "" || len(body) != 2 {
			t.Fatalf("400 body %s is not an RFC 6749 error", rec.Body)
		}
		for _, r := range desc {
			if r < 0x20 || r > 0x7e {
				t.Fatalf("error_description echoes a control or non-ASCII character: %q", desc)
			}
		}
	default:
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
}

// FuzzParseClient: the --client flag parser never panics, accepts only
// clients that have an id and valid redirect URIs, and never puts the
// secret in an error.
func FuzzParseClient(f *testing.F) {
	f.Add("app", "s3cret-value", "https://app.example/cb")
	f.Add("cli", "", "http://127.0.0.1/callback,http://[::1]:8080/cb")
	f.Add("bad", "hunter2hunter2", "http://localhost:8080/cb")
	f.Add("", "topsecretvalue", "")
	f.Add("x y", "zzzzzzzzzz", "myapp://callback#frag")
	f.Fuzz(func(t *testing.T, id, secret, uris string) {
		spec := id + "=" + uris
		if secret != "" {
			spec = id + ":" + secret + "=" + uris
		}
		c, err := emulator.ParseClient(spec)
		if err != nil {
			distinctive := len(secret) >= 8 && !strings.ContainsAny(id, ":=") && !strings.Contains(secret, "=") &&
				!strings.Contains(id+uris, secret)
			if distinctive && strings.Contains(err.Error(), secret) {
				t.Fatalf("error leaks the secret: %v", err)
			}
			return
		}
		if c.ID == "" || len(c.RedirectURIs) == 0 {
			t.Fatalf("accepted %q as %+v", spec, c)
		}
		for _, u := range c.RedirectURIs {
			if strings.HasPrefix(u, "http://localhost") || strings.Contains(u, "#") {
				t.Fatalf("accepted an insecure or fragment redirect URI %q", u)
			}
		}
		if _, err := emulator.New(emulator.Config{Clients: []emulator.Client{c}}); err != nil {
			t.Fatalf("ParseClient accepted %q but New refuses it: %v", spec, err)
		}
	})
}

// FuzzParseRotation: the --rotation parser never panics and what it accepts
// formats back to an equal value.
func FuzzParseRotation(f *testing.F) {
	for _, s := range []string{"never", "always", "grace=30s", "grace=-1s", "reuse-detection", "grace=", "sometimes"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := emulator.ParseRotation(s)
		if err != nil {
			return
		}
		again, err := emulator.ParseRotation(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseRotation(%q) = %+v, formats as %q, reparses as %+v, %v", s, r, r.String(), again, err)
		}
	})
}

// FuzzParseAllowlist: the --allowlist parser never panics, and what it
// accepts is a list New takes (within MaxAllowlist).
func FuzzParseAllowlist(f *testing.F) {
	for _, s := range []string{"alice", "alice,bob", "my-app=alice, bob", "=alice", "my-app=", "a,,b", "a b", "x=y=z", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		client, users, err := emulator.ParseAllowlist(s)
		if err != nil {
			return
		}
		if len(users) == 0 || strings.ContainsAny(client, "=") {
			t.Fatalf("ParseAllowlist(%q) = %q, %q", s, client, users)
		}
		if len(users) > emulator.MaxAllowlist {
			return
		}
		if _, err := emulator.New(emulator.Config{Clients: []emulator.Client{{ID: "c", RedirectURIs: []string{pubRedirect}, Allowlist: users}}}); err != nil {
			t.Fatalf("ParseAllowlist(%q) accepted %q but New refuses it: %v", s, users, err)
		}
	})
}

// FuzzAPIAuthorization sends arbitrary Authorization headers to the Web
// API: only the emulator's own token is served; anything else is Spotify's
// 400 (not one well-formed bearer token) or 401, with its error object.
func FuzzAPIAuthorization(f *testing.F) {
	e := newFuzzEnv(f)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/api/token", strings.NewReader(url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {e.refreshToken}, "client_id": {pubID}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	e.emu.ServeHTTP(rec, req)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil || tok.AccessToken == "" {
		f.Fatalf("refresh: %d %s", rec.Code, rec.Body)
	}
	for _, a := range []string{"Bearer " + tok.AccessToken, "Bearer ", "Bearer", "bearer " + tok.AccessToken, "Basic Zm9vOmJhcg==",
		"Bearer {'access_token': 'x'}", "Bearer a b", `Bearer "x"`, "Bearer abc==", "Bearer =abc", "Bearer \t" + tok.AccessToken} {
		f.Add(a)
	}
	f.Fuzz(func(t *testing.T, auth string) {
		req := httptest.NewRequest(http.MethodGet, "/v1/me", nil)
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		e.emu.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			if auth != "Bearer "+tok.AccessToken && !strings.EqualFold(auth, "Bearer "+tok.AccessToken) {
				t.Fatalf("served %q", auth)
			}
			return
		case http.StatusBadRequest, http.StatusUnauthorized:
		default:
			t.Fatalf("%q: status %d", auth, rec.Code)
		}
		var body struct {
			Error struct {
				Status  int    `json:"status"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Status != rec.Code || body.Error.Message == "" {
			t.Fatalf("%q: %d %s", auth, rec.Code, rec.Body)
		}
	})
}
