package emulator_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken/emulator"
)

// checkTokenHeaders asserts the headers Spotify sends on every token answer.
func checkTokenHeaders(t *testing.T, h http.Header) {
	t.Helper()
	want := map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
}

// TestTokenErrors holds /api/token to every error row of SPOTIFY.md.
func TestTokenErrors(t *testing.T) {
	t.Parallel()
	codeForm := func(code string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {pubRedirectP},
			"client_id": {pubID}, "code_verifier": {verifier}}
	}
	type request struct {
		contentType, body, user, pass string
	}
	form := func(v url.Values) request {
		return request{contentType: "application/x-www-form-urlencoded", body: v.Encode()}
	}
	basic := func(v url.Values, user, pass string) request {
		r := form(v)
		r.user, r.pass = user, pass
		return r
	}
	tests := []struct {
		name       string
		mutate     func(*emulator.Config)
		setup      func(e *env) request
		status     int
		code       string
		desc       string
		afterwards func(t *testing.T, e *env)
	}{
		{
			name:   "unknown code",
			setup:  func(e *env) request { return form(codeForm("AQnot-a-code")) },
			status: 400, code: "invalid_grant", desc: "Invalid authorization code",
		},
		{
			name: "used code",
			setup: func(e *env) request {
				c := e.code(pkceQuery("user-read-email"))
				if r := e.postToken(codeForm(c), "", ""); r.Status != 200 {
					e.t.Fatalf("first exchange: %d %s", r.Status, r.Raw)
				}
				return form(codeForm(c))
			},
			status: 400, code: "invalid_grant", desc: "Invalid authorization code",
		},
		{
			name: "code exchanged too late",
			setup: func(e *env) request {
				c := e.code(pkceQuery("user-read-email"))
				e.emu.Advance(emulator.DefaultCodeTTL)
				return form(codeForm(c))
			},
			status: 400, code: "invalid_grant", desc: "Authorization code expired",
		},
		{
			name: "code had a challenge, no verifier sent",
			setup: func(e *env) request {
				v := codeForm(e.code(pkceQuery("")))
				v.Del("code_verifier")
				return form(v)
			},
			status: 400, code: "invalid_request", desc: "code_verifier required",
		},
		{
			name: "challenge with a confidential client's secret but no verifier",
			setup: func(e *env) request {
				q := confQuery("")
				q.Set("code_challenge_method", "S256")
				q.Set("code_challenge", challenge)
				return basic(url.Values{"grant_type": {"authorization_code"}, "code": {e.code(q)}, "redirect_uri": {confRedirect}}, confID, confSecret)
			},
			status: 400, code: "invalid_request", desc: "code_verifier required",
		},
		{
			name: "PKCE verifier does not match",
			setup: func(e *env) request {
				v := codeForm(e.code(pkceQuery("")))
				v.Set("code_verifier", strings.Repeat("x", 43))
				return form(v)
			},
			status: 400, code: "invalid_grant", desc: "code_verifier was incorrect",
		},
		{
			name: "PKCE verifier too short",
			setup: func(e *env) request {
				v := codeForm(e.code(pkceQuery("")))
				v.Set("code_verifier", verifier[:42])
				return form(v)
			},
			status: 400, code: "invalid_grant", desc: "code_verifier was incorrect",
		},
		{
			name: "redirect_uri differs from /authorize",
			setup: func(e *env) request {
				v := codeForm(e.code(pkceQuery("")))
				v.Set("redirect_uri", "http://127.0.0.1:9999/callback")
				return form(v)
			},
			status: 400, code: "invalid_grant", desc: "Invalid redirect URI",
		},
		{
			name: "redirect_uri with a trailing slash",
			setup: func(e *env) request {
				v := codeForm(e.code(pkceQuery("")))
				v.Set("redirect_uri", pubRedirectP+"/")
				return form(v)
			},
			status: 400, code: "invalid_grant", desc: "Invalid redirect URI",
		},
		{
			name:   "refresh token past its six-month life",
			mutate: func(c *emulator.Config) { c.RefreshLifetime = 24 * time.Hour },
			setup: func(e *env) request {
				rt := e.pkceGrant("").str("refresh_token")
				e.emu.Advance(24 * time.Hour)
				return form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pubID}})
			},
			status: 400, code: "invalid_grant", desc: "Refresh token expired",
		},
		{
			// Users report this answer too (felix-hilden/tekore#349).
			name: "refresh token past its six-month life, answered as revoked",
			mutate: func(c *emulator.Config) {
				c.RefreshLifetime = 24 * time.Hour
				c.ExpiredGrantDescription = "Refresh token revoked"
			},
			setup: func(e *env) request {
				rt := e.pkceGrant("").str("refresh_token")
				e.emu.Advance(24*time.Hour - time.Second)
				if r := e.refreshPublic(rt); r.Status != http.StatusOK {
					e.t.Fatalf("a second before the grant expires: %d %s", r.Status, r.Raw)
				}
				e.emu.Advance(time.Second)
				return form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pubID}})
			},
			status: 400, code: "invalid_grant", desc: "Refresh token revoked",
		},
		{
			name: "unknown refresh token",
			setup: func(e *env) request {
				return form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"AQbogus"}, "client_id": {pubID}})
			},
			status: 400, code: "invalid_grant", desc: "Invalid refresh token",
		},
		{
			name: "another client's refresh token",
			setup: func(e *env) request {
				rt := e.confGrant("").str("refresh_token")
				return form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pubID}})
			},
			status: 400, code: "invalid_grant", desc: "Invalid refresh token",
		},
		{
			name: "refresh token revoked by the user",
			setup: func(e *env) request {
				rt := e.pkceGrant("").str("refresh_token")
				if err := e.emu.RevokeGrant("alice", pubID); err != nil {
					e.t.Fatal(err)
				}
				return form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pubID}})
			},
			status: 400, code: "invalid_grant", desc: "Refresh token revoked",
		},
		{
			name: "refresh token killed by a password change",
			setup: func(e *env) request {
				rt := e.confGrant("").str("refresh_token")
				if err := e.emu.ChangePassword("alice"); err != nil {
					e.t.Fatal(err)
				}
				return basic(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, confID, confSecret)
			},
			status: 400, code: "invalid_grant", desc: "Refresh token revoked",
		},
		{
			name:   "rotated-out refresh token",
			mutate: func(c *emulator.Config) { c.Rotation = emulator.Rotation{Mode: emulator.RotateAlways} },
			setup: func(e *env) request {
				rt := e.pkceGrant("").str("refresh_token")
				if r := e.refreshPublic(rt); r.Status != 200 {
					e.t.Fatalf("first refresh: %d %s", r.Status, r.Raw)
				}
				return form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {pubID}})
			},
			status: 400, code: "invalid_grant", desc: "Refresh token revoked",
		},
		{
			name: "unknown client",
			setup: func(e *env) request {
				return form(url.Values{"grant_type": {"client_credentials"}, "client_id": {"nobody"}, "client_secret": {"x"}})
			},
			status: 400, code: "invalid_client", desc: "Invalid client",
		},
		{
			name:   "unknown client via Basic",
			setup:  func(e *env) request { return basic(url.Values{"grant_type": {"client_credentials"}}, "nobody", "x") },
			status: 400, code: "invalid_client", desc: "Invalid client",
		},
		{
			name:   "wrong secret",
			setup:  func(e *env) request { return basic(url.Values{"grant_type": {"client_credentials"}}, confID, "wrong") },
			status: 400, code: "invalid_client", desc: "Invalid client secret",
		},
		{
			name: "wrong secret in the form",
			setup: func(e *env) request {
				return form(url.Values{"grant_type": {"client_credentials"}, "client_id": {confID}, "client_secret": {"wrong"}})
			},
			status: 400, code: "invalid_client", desc: "Invalid client secret",
		},
		{
			name: "no client authentication at all",
			setup: func(e *env) request {
				return form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"AQx"}})
			},
			status: 400, code: "invalid_client", desc: "Invalid client",
		},
		{
			name: "client credentials for a public client",
			setup: func(e *env) request {
				return form(url.Values{"grant_type": {"client_credentials"}, "client_id": {pubID}})
			},
			status: 400, code: "invalid_client", desc: "Invalid client",
		},
		{
			name: "confidential refresh without the secret",
			setup: func(e *env) request {
				rt := e.confGrant("").str("refresh_token")
				return form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {confID}})
			},
			status: 400, code: "invalid_client", desc: "Invalid client",
		},
		{
			name: "malformed Authorization header",
			setup: func(e *env) request {
				r := form(url.Values{"grant_type": {"client_credentials"}})
				r.user = "\x00" // replaced below by a raw header
				return r
			},
			status: 400, code: "invalid_client", desc: "Invalid client",
		},
		{
			name:   "missing grant_type",
			setup:  func(e *env) request { return form(url.Values{"client_id": {pubID}}) },
			status: 400, code: "unsupported_grant_type", desc: "grant_type parameter is missing",
		},
		{
			name: "JSON body instead of a form",
			setup: func(e *env) request {
				return request{contentType: "application/json", body: `{"grant_type":"client_credentials"}`, user: confID, pass: confSecret}
			},
			status: 400, code: "unsupported_grant_type", desc: "grant_type parameter is missing",
		},
		{
			name: "no Content-Type",
			setup: func(e *env) request {
				return request{body: "grant_type=client_credentials", user: confID, pass: confSecret}
			},
			status: 400, code: "unsupported_grant_type", desc: "grant_type parameter is missing",
		},
		{
			name:   "unknown grant_type",
			setup:  func(e *env) request { return basic(url.Values{"grant_type": {"password"}}, confID, confSecret) },
			status: 400, code: "unsupported_grant_type", desc: "grant_type must be client_credentials, authorization_code or refresh_token",
		},
		{
			name: "missing code",
			setup: func(e *env) request {
				return form(url.Values{"grant_type": {"authorization_code"}, "redirect_uri": {pubRedirectP}, "client_id": {pubID}, "code_verifier": {verifier}})
			},
			status: 400, code: "invalid_request", desc: "code must be supplied",
		},
		{
			name: "missing redirect_uri",
			setup: func(e *env) request {
				v := codeForm(e.code(pkceQuery("")))
				v.Del("redirect_uri")
				return form(v)
			},
			status: 400, code: "invalid_request", desc: "redirect_uri must be supplied",
		},
		{
			name:   "missing refresh_token",
			setup:  func(e *env) request { return form(url.Values{"grant_type": {"refresh_token"}, "client_id": {pubID}}) },
			status: 400, code: "invalid_request", desc: "refresh_token must be supplied",
		},
		{
			name: "repeated parameter",
			setup: func(e *env) request {
				return request{contentType: "application/x-www-form-urlencoded", body: "grant_type=client_credentials&grant_type=client_credentials", user: confID, pass: confSecret}
			},
			status: 400, code: "invalid_request", desc: "Parameter grant_type must not be repeated",
		},
		{
			name: "malformed form encoding",
			setup: func(e *env) request {
				return request{contentType: "application/x-www-form-urlencoded", body: "grant_type=%zz", user: confID, pass: confSecret}
			},
			status: 400, code: "invalid_request", desc: "Malformed application/x-www-form-urlencoded body",
		},
		{
			name: "body too large",
			setup: func(e *env) request {
				return request{contentType: "application/x-www-form-urlencoded", body: "grant_type=client_credentials&pad=" + strings.Repeat("a", 20<<10), user: confID, pass: confSecret}
			},
			status: 400, code: "invalid_request", desc: "Request body too large",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tt.mutate)
			r := tt.setup(e)
			var res tokenResult
			if r.user == "\x00" {
				req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/token", strings.NewReader(r.body))
				req.Header.Set("Content-Type", r.contentType)
				req.Header.Set("Authorization", "Basic !!!not-base64")
				resp, err := testClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				res = tokenResult{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
			} else {
				res = e.postTokenRaw(r.contentType, r.body, r.user, r.pass)
			}
			want := `{"error":"` + tt.code + `","error_description":"` + tt.desc + `"}` + "\n"
			if res.Status != tt.status || res.Raw != want {
				t.Errorf("got %d %s\nwant %d %s", res.Status, res.Raw, tt.status, want)
			}
			checkTokenHeaders(t, res.Header)
			if got := e.emu.Stats().TokenErrors[tt.code]; got != 1 {
				t.Errorf("stats token_errors[%s] = %d, want 1", tt.code, got)
			}
		})
	}
}

var tokenPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{40,}$`)

// TestTokenSuccessShapes checks each grant's 200 answer field by field.
func TestTokenSuccessShapes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)

	check := func(name string, res tokenResult, wantKeys []string, scope string) {
		t.Helper()
		if res.Status != 200 {
			t.Fatalf("%s: %d %s", name, res.Status, res.Raw)
		}
		checkTokenHeaders(t, res.Header)
		var keys []string
		for k := range res.Body {
			keys = append(keys, k)
		}
		if diff := cmp.Diff(keys, wantKeys, sortStrings); diff != "" {
			t.Errorf("%s: fields (-got +want):\n%s", name, diff)
		}
		if res.Body["token_type"] != "Bearer" || res.Body["expires_in"] != float64(3600) {
			t.Errorf("%s: token_type %v, expires_in %v; want Bearer, 3600", name, res.Body["token_type"], res.Body["expires_in"])
		}
		if !tokenPattern.MatchString(res.str("access_token")) {
			t.Errorf("%s: access_token %q is not an opaque base64url token", name, res.str("access_token"))
		}
		if _, ok := res.Body["scope"]; ok && res.str("scope") != scope {
			t.Errorf("%s: scope %q, want %q", name, res.str("scope"), scope)
		}
	}
	all := []string{"access_token", "token_type", "scope", "expires_in", "refresh_token"}
	pk := e.pkceGrant("user-read-email user-read-private")
	check("PKCE exchange", pk, all, "user-read-email user-read-private")
	cf := e.confGrant("playlist-read-private")
	check("confidential exchange", cf, all, "playlist-read-private")
	// Default rotation "never": no refresh_token on refresh, the old one keeps working.
	for i := 0; i < 2; i++ {
		check("PKCE refresh", e.refreshPublic(pk.str("refresh_token")), all[:4], "user-read-email user-read-private")
	}
	check("confidential refresh", e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cf.str("refresh_token")}}, confID, confSecret),
		all[:4], "playlist-read-private")
	check("client credentials (Basic)", e.postToken(url.Values{"grant_type": {"client_credentials"}}, confID, confSecret),
		[]string{"access_token", "token_type", "expires_in"}, "")
	check("client credentials (form)", e.postToken(url.Values{"grant_type": {"client_credentials"}, "client_id": {confID}, "client_secret": {confSecret}}, "", ""),
		[]string{"access_token", "token_type", "expires_in"}, "")

	// The confidential client may also use PKCE with its secret.
	q := confQuery("")
	q.Set("code_challenge_method", "S256")
	q.Set("code_challenge", s256(verifier))
	res := e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {e.code(q)}, "redirect_uri": {confRedirect},
		"code_verifier": {verifier}}, confID, confSecret)
	check("confidential PKCE exchange", res, all, "")

	st := e.emu.Stats()
	wantReq := map[string]int64{"authorization_code": 3, "refresh_token": 3, "client_credentials": 2}
	if diff := cmp.Diff(st.TokenRequests, wantReq); diff != "" {
		t.Errorf("token_requests (-got +want):\n%s", diff)
	}
}

var sortStrings = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

// TestCodeReplayRevokesGrant: RFC 6749 §4.1.2, a replayed code revokes the
// tokens it produced.
func TestCodeReplayRevokesGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.code(pkceQuery(""))
	form := url.Values{"grant_type": {"authorization_code"}, "code": {c}, "redirect_uri": {pubRedirectP}, "client_id": {pubID}, "code_verifier": {verifier}}
	first := e.postToken(form, "", "")
	if first.Status != 200 {
		t.Fatalf("exchange: %d %s", first.Status, first.Raw)
	}
	if r := e.postToken(form, "", ""); r.str("error") != "invalid_grant" {
		t.Fatalf("replay: %d %s, want invalid_grant", r.Status, r.Raw)
	}
	if r := e.refreshPublic(first.str("refresh_token")); r.str("error_description") != "Refresh token revoked" {
		t.Errorf("refresh after replay: %d %s, want Refresh token revoked", r.Status, r.Raw)
	}
}

// TestRotationModes checks what each mode does to the old and new refresh tokens.
func TestRotationModes(t *testing.T) {
	t.Parallel()
	type step struct {
		token   string // "old" or "new"
		advance time.Duration
		want    string // "ok" or an error_description
	}
	tests := []struct {
		mode  string
		steps []step
		// newReturned says whether the first refresh returns a refresh_token.
		newReturned bool
	}{
		{mode: "never", newReturned: false, steps: []step{{token: "old", want: "ok"}, {token: "old", want: "ok"}}},
		{mode: "always", newReturned: true, steps: []step{{token: "old", want: "Refresh token revoked"}, {token: "new", want: "ok"}}},
		{mode: "grace=1m", newReturned: true, steps: []step{{token: "old", advance: 59 * time.Second, want: "ok"}, {token: "old", advance: 2 * time.Minute, want: "Refresh token revoked"}}},
		{mode: "reuse-detection", newReturned: true, steps: []step{{token: "old", want: "Refresh token revoked"}, {token: "new", want: "Refresh token revoked"}}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			rot, err := emulator.ParseRotation(tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, func(c *emulator.Config) { c.Rotation = rot })
			old := e.pkceGrant("").str("refresh_token")
			first := e.refreshPublic(old)
			if first.Status != 200 {
				t.Fatalf("first refresh: %d %s", first.Status, first.Raw)
			}
			newRT := first.str("refresh_token")
			if (newRT != "") != tt.newReturned {
				t.Fatalf("first refresh returned refresh_token %v, want %v", newRT != "", tt.newReturned)
			}
			if newRT == old {
				t.Fatal("rotated refresh token equals the old one")
			}
			for i, s := range tt.steps {
				e.emu.Advance(s.advance)
				rt := old
				if s.token == "new" {
					rt = newRT
				}
				res := e.refreshPublic(rt)
				got := "ok"
				if res.Status != 200 {
					got = res.str("error_description")
					if res.Status != 400 || res.str("error") != "invalid_grant" {
						t.Errorf("step %d: %d %s, want 400 invalid_grant", i, res.Status, res.Raw)
					}
				}
				if got != s.want {
					t.Errorf("step %d (%s token after %v): got %q, want %q", i, s.token, s.advance, got, s.want)
				}
			}
		})
	}
}

// TestAuthorizeConfigurationErrors: configuration errors show the emulator's
// own page and never redirect (SPOTIFY.md, GET /authorize).
func TestAuthorizeConfigurationErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *emulator.Config) {
		c.Clients = append(c.Clients, emulator.Client{ID: "exact", Secret: "s", RedirectURIs: []string{"https://app.example/Callback"}})
	})
	with := func(q url.Values, k, v string) url.Values {
		out := url.Values{}
		for kk, vv := range q {
			out[kk] = vv
		}
		out.Set(k, v)
		return out
	}
	tests := []struct {
		name string
		q    url.Values
		want string
	}{
		{"unknown client", with(pkceQuery(""), "client_id", "nobody"), "INVALID_CLIENT: Invalid client"},
		{"missing client", with(pkceQuery(""), "client_id", ""), "Missing required parameter: client_id"},
		{"unregistered redirect", with(pkceQuery(""), "redirect_uri", "https://evil.example/callback"), "INVALID_CLIENT: Invalid redirect URI"},
		{"missing redirect", with(pkceQuery(""), "redirect_uri", ""), "Missing required parameter: redirect_uri"},
		{"missing both", with(with(pkceQuery(""), "redirect_uri", ""), "client_id", ""), "Missing required parameter: client_id"},
		{"missing redirect, unknown client", with(with(pkceQuery(""), "redirect_uri", ""), "client_id", "nobody"), "Missing required parameter: redirect_uri"},
		{"trailing slash", with(confQuery(""), "redirect_uri", confRedirect+"/"), "INVALID_CLIENT: Invalid redirect URI"},
		{"case differs", with(with(confQuery(""), "client_id", "exact"), "redirect_uri", "https://app.example/callback"), "INVALID_CLIENT: Invalid redirect URI"},
		{"loopback other path", with(pkceQuery(""), "redirect_uri", "http://127.0.0.1:5000/other"), "INVALID_CLIENT: Invalid redirect URI"},
		{"localhost", with(pkceQuery(""), "redirect_uri", "http://localhost:8080/callback"), "INVALID_CLIENT: Insecure redirect URI"},
		{"plain http", with(pkceQuery(""), "redirect_uri", "http://app.example/callback"), "INVALID_CLIENT: Insecure redirect URI"},
		{"illegal scope", with(pkceQuery(""), "scope", "user-read-email user-read-everything"), "Illegal scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.authorize(tt.q)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
				t.Errorf("status %d, Location %q; want 400 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
			}
			if !strings.Contains(string(body), `<p id="error">`+tt.want+`</p>`) {
				t.Errorf("page does not show %q:\n%s", tt.want, body)
			}
		})
	}
}

// TestAuthorizeRedirects: approval, request errors once the redirect URI is
// trusted, and loopback ports (RFC 8252).
func TestAuthorizeRedirects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tests := []struct {
		name      string
		q         url.Values
		wantBase  string
		wantQuery url.Values // code is checked for presence only
	}{
		{"PKCE approve, loopback dynamic port", pkceQuery("user-read-email"), pubRedirectP,
			url.Values{"code": {"*"}, "state": {"st4te"}}},
		{"confidential approve", confQuery(""), confRedirect, url.Values{"code": {"*"}, "state": {"st4te"}}},
		{"no state", func() url.Values { q := confQuery(""); q.Del("state"); return q }(), confRedirect, url.Values{"code": {"*"}}},
		{"unknown response_type", func() url.Values { q := confQuery(""); q.Set("response_type", "id_token"); return q }(), confRedirect,
			url.Values{"error": {"unsupported_response_type"}, "error_description": {"response_type must be code"}, "state": {"st4te"}}},
		{"missing response_type", func() url.Values { q := confQuery(""); q.Del("response_type"); return q }(), confRedirect,
			url.Values{"error": {"invalid_request"}, "error_description": {"response_type must be supplied"}, "state": {"st4te"}}},
		{"plain PKCE method", func() url.Values { q := pkceQuery(""); q.Set("code_challenge_method", "plain"); return q }(), pubRedirectP,
			url.Values{"error": {"invalid_request"}, "error_description": {"code_challenge_method must be S256"}, "state": {"st4te"}}},
		{"malformed challenge", func() url.Values { q := pkceQuery(""); q.Set("code_challenge", "short"); return q }(), pubRedirectP,
			url.Values{"error": {"invalid_request"}, "error_description": {"code_challenge must be 43 base64url characters (S256)"}, "state": {"st4te"}}},
		{"public client without PKCE", func() url.Values {
			q := pkceQuery("")
			q.Del("code_challenge")
			q.Del("code_challenge_method")
			return q
		}(), pubRedirectP,
			url.Values{"error": {"invalid_request"}, "error_description": {"code_challenge required: this client has no secret and must use PKCE"}, "state": {"st4te"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.authorize(tt.q)
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302", resp.StatusCode)
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			got := loc.Query()
			base := *loc
			base.RawQuery = ""
			if base.String() != tt.wantBase {
				t.Errorf("redirected to %s, want %s", base.String(), tt.wantBase)
			}
			if got.Get("code") != "" && tt.wantQuery.Get("code") == "*" {
				got.Set("code", "*")
			}
			if diff := cmp.Diff(got, tt.wantQuery); diff != "" {
				t.Errorf("redirect query (-got +want):\n%s", diff)
			}
		})
	}
}

// TestAuthorizeImplicitGrant: response_type=token, the implicit grant
// removed on 2025-11-27, is refused in the redirect's fragment, where the
// implicit grant's answers always went (kaaes/albums-availability#9); the
// query carries nothing, and no code is issued.
func TestAuthorizeImplicitGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name, state string
		q           url.Values
		base        string
	}{
		{"confidential", "st4te", confQuery("user-read-email"), confRedirect},
		{"public, no state", "", pkceQuery(""), pubRedirectP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			q.Set("response_type", "token")
			if tc.state == "" {
				q.Del("state")
			}
			resp := e.authorize(q)
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302", resp.StatusCode)
			}
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			if loc.RawQuery != "" {
				t.Errorf("query %q, want none: the error goes in the fragment", loc.RawQuery)
			}
			frag, err := url.ParseQuery(loc.Fragment)
			if err != nil {
				t.Fatal(err)
			}
			want := url.Values{"error": {"unsupported_response_type"}}
			if tc.state != "" {
				want.Set("state", tc.state)
			}
			if diff := cmp.Diff(frag, want); diff != "" {
				t.Errorf("fragment (-got +want):\n%s", diff)
			}
			loc.Fragment = ""
			if loc.String() != tc.base {
				t.Errorf("redirected to %s, want %s", loc, tc.base)
			}
		})
	}
	if got := e.emu.Stats().TokenRequests["authorization_code"]; got != 0 {
		t.Errorf("token requests: %d", got)
	}
}

// TestConsentForm drives the consent page's form over plain HTTP: deny,
// partial grant, replay of an answered page, and the remembered session.
func TestConsentForm(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *emulator.Config) { c.AutoApprove = "" })
	requestID := func(q url.Values) string {
		resp := e.authorize(q)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("consent page: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("no request id in consent page:\n%s", body)
		}
		return string(m[1])
	}
	post := func(v url.Values, cookie *http.Cookie) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/authorize/consent", strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	// Cancel: access_denied with the state, and no code.
	resp := post(url.Values{"request": {requestID(pkceQuery("user-read-email"))}, "action": {"cancel"}}, nil)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if diff := cmp.Diff(loc.Query(), url.Values{"error": {"access_denied"}, "state": {"st4te"}}); diff != "" {
		t.Errorf("cancel redirect (-got +want):\n%s", diff)
	}

	// Agree as a new user, unticking one scope.
	id := requestID(pkceQuery("user-read-email playlist-read-private"))
	resp = post(url.Values{"request": {id}, "action": {"agree"}, "new_user": {"bob"}, "scope": {"user-read-email"}}, nil)
	loc, _ = url.Parse(resp.Header.Get("Location"))
	res := e.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {pubRedirectP},
		"client_id": {pubID}, "code_verifier": {verifier}}, "", "")
	if res.Status != 200 || res.str("scope") != "user-read-email" {
		t.Errorf("partial grant: %d %s, want scope user-read-email", res.Status, res.Raw)
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "emulator_user" {
			session = c
		}
	}
	if session == nil || session.Value != "bob" {
		t.Fatalf("no emulator_user=bob session cookie after consent")
	}

	// A consent page answers once.
	if resp := post(url.Values{"request": {id}, "action": {"agree"}, "new_user": {"bob"}}, nil); resp.StatusCode != 400 {
		t.Errorf("replayed consent: status %d, want 400", resp.StatusCode)
	}
	// A missing or invalid user id shows the form again and keeps the
	// request usable: the person can correct it.
	fixID := requestID(pkceQuery(""))
	for _, bad := range []url.Values{{}, {"new_user": {"no spaces"}}} {
		bad.Set("request", fixID)
		bad.Set("action", "agree")
		if resp := post(bad, nil); resp.StatusCode != 400 {
			t.Errorf("bad user %v: status %d, want 400 with the form", bad, resp.StatusCode)
		}
	}
	if resp := post(url.Values{"request": {fixID}, "action": {"agree"}, "new_user": {"carol"}}, nil); resp.StatusCode != http.StatusFound {
		t.Errorf("corrected consent: status %d, want 302", resp.StatusCode)
	}

	// With bob's session, scopes already granted skip the page; show_dialog=true forces it.
	get := func(q url.Values) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/authorize?"+q.Encode(), nil)
		req.AddCookie(session)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get(pkceQuery("user-read-email")); resp.StatusCode != http.StatusFound {
		t.Errorf("already granted: status %d, want 302 without the page", resp.StatusCode)
	}
	q := pkceQuery("user-read-email")
	q.Set("show_dialog", "true")
	if resp := get(q); resp.StatusCode != http.StatusOK {
		t.Errorf("show_dialog=true: status %d, want the consent page", resp.StatusCode)
	}
	if resp := get(pkceQuery("user-read-email playlist-read-private")); resp.StatusCode != http.StatusOK {
		t.Errorf("new scope: status %d, want the consent page", resp.StatusCode)
	}
}

// TestTokenFaults: injected token-endpoint failures, counted and cleared.
func TestTokenFaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	rt := e.pkceGrant("").str("refresh_token")
	if code, body := e.control("POST", "faults", `{"token_status":503,"count":2}`); code != 204 {
		t.Fatalf("POST faults: %d %s", code, body)
	}
	for i := 0; i < 2; i++ {
		res := e.refreshPublic(rt)
		if res.Status != 503 || res.str("error") != "server_error" {
			t.Errorf("faulted refresh %d: %d %s, want 503 server_error", i, res.Status, res.Raw)
		}
		checkTokenHeaders(t, res.Header)
	}
	if res := e.refreshPublic(rt); res.Status != 200 {
		t.Errorf("after the count: %d %s, want 200", res.Status, res.Raw)
	}
	if code, body := e.control("POST", "faults", `{"token_status":429,"retry_after":7}`); code != 204 {
		t.Fatalf("POST faults: %d %s", code, body)
	}
	for i := 0; i < 3; i++ {
		res := e.refreshPublic(rt)
		if res.Status != 429 || res.Header.Get("Retry-After") != "7" || res.Raw != "" {
			t.Errorf("429 fault: %d Retry-After %q body %q", res.Status, res.Header.Get("Retry-After"), res.Raw)
		}
	}
	if code, _ := e.control("DELETE", "faults", ""); code != 204 {
		t.Fatalf("DELETE faults: %d", code)
	}
	if res := e.refreshPublic(rt); res.Status != 200 {
		t.Errorf("after clearing: %d %s", res.Status, res.Raw)
	}
	if code, _ := e.control("POST", "faults", `{"outage":true}`); code != 204 {
		t.Fatal("outage")
	}
	// An outage answers before the token endpoint runs: a plain-text 503,
	// not OAuth JSON, as a load balancer in front of Spotify would.
	resp, err := testClient.Post(e.srv.URL+"/api/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("outage: %d, want 503", resp.StatusCode)
	}
	e.emu.ClearFaults()
	st := e.emu.Stats()
	if diff := cmp.Diff(st.TokenErrors, map[string]int64{"server_error": 2, "http_429": 3}); diff != "" {
		t.Errorf("token_errors (-got +want):\n%s", diff)
	}
}

// TestSweepRetention: the emulator forgets state only once it is unusable
// and past its retention, and says so the way Spotify would then.
func TestSweepRetention(t *testing.T) {
	t.Parallel()
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy 401 %v", legacy), func(t *testing.T) {
			t.Parallel()
			sweepRetention(t, legacy)
		})
	}
}

func sweepRetention(t *testing.T, legacy bool) {
	e := newEnv(t, func(c *emulator.Config) {
		c.Rotation = emulator.Rotation{Mode: emulator.RotateAlways}
		c.Legacy401 = legacy
	})
	first := e.pkceGrant("")
	second := e.refreshPublic(first.str("refresh_token")) // rotates first's refresh token out
	if second.Status != 200 {
		t.Fatalf("refresh: %d %s", second.Status, second.Raw)
	}
	sweep := func() { // any token request sweeps once per virtual minute
		if r := e.postToken(url.Values{"grant_type": {"client_credentials"}}, confID, confSecret); r.Status != 200 {
			t.Fatalf("client credentials: %d %s", r.Status, r.Raw)
		}
	}
	me := func(tok string) string {
		return e.api("GET", "/v1/me", tok, "").Body["error"].(map[string]any)["message"].(string)
	}
	if !legacy {
		// Today one message covers both, so the sweep shows only in the
		// legacy wording; the refresh tokens below tell it in both.
		me = func(tok string) string {
			if got := e.api("GET", "/v1/me", tok, "").Body["error"].(map[string]any)["message"].(string); got != "Missing/invalid/expired access token" {
				return got
			}
			return ""
		}
	}
	wantExpired, wantInvalid := "The access token expired", "Invalid access token"
	if !legacy {
		wantExpired, wantInvalid = "", ""
	}

	e.emu.Advance(90 * time.Minute) // expired 30 minutes ago: still known
	sweep()
	if got := me(first.str("access_token")); got != wantExpired {
		t.Errorf("30 min after expiry: %q", got)
	}
	e.emu.Advance(time.Hour) // 90 minutes after expiry: forgotten
	sweep()
	if got := me(first.str("access_token")); got != wantInvalid {
		t.Errorf("90 min after expiry: %q", got)
	}
	if r := e.refreshPublic(first.str("refresh_token")); r.str("error_description") != "Refresh token revoked" {
		t.Errorf("rotated out 2.5 h ago: %s", r.Raw)
	}
	e.emu.Advance(24 * time.Hour)
	sweep()
	if r := e.refreshPublic(first.str("refresh_token")); r.str("error_description") != "Invalid refresh token" {
		t.Errorf("rotated out a day ago: %s", r.Raw)
	}
	if r := e.refreshPublic(second.str("refresh_token")); r.Status != 200 {
		t.Errorf("the current refresh token was swept: %s", r.Raw)
	}
}
