package accounts_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
	"github.com/spotoken/spotoken/emulator"
)

var scopes = spotoken.Scopes{"user-read-email", "user-read-private"}

// ignoreTokens compares grants without their random tokens.
var ignoreTokens = cmpopts.IgnoreFields(accounts.Grant{}, "AccessToken", "RefreshToken")

// apiStatus calls GET /v1/me with an access token and returns the status.
func (e *env) apiStatus(token spotoken.Secret) int {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+token.Reveal())
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("GET /v1/me: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// wantError checks that err is an *accounts.Error equal to want.
func wantError(t *testing.T, err error, want *accounts.Error) {
	t.Helper()
	var ae *accounts.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T), want *accounts.Error %v", err, err, want)
	}
	if diff := cmp.Diff(ae, want); diff != "" {
		t.Errorf("error (-got +want):\n%s", diff)
	}
}

var refreshRevoked = &accounts.Error{Status: 400, Code: "invalid_grant", Description: "Refresh token revoked"}

// TestPublicRotation runs the PKCE flow and refreshes in every rotation mode.
func TestPublicRotation(t *testing.T) {
	t.Parallel()
	const grace = 10 * time.Minute
	tests := []struct {
		name        string
		rotation    emulator.Rotation
		wantRotated bool
		// oldToken checks what the rotated-out (or kept) refresh token
		// does next; fresh is the one the refresh returned.
		oldToken func(t *testing.T, e *env, c *accounts.Client, old, fresh spotoken.Secret)
	}{
		{
			name: "never", rotation: emulator.Rotation{Mode: emulator.RotateNever},
			oldToken: func(t *testing.T, e *env, c *accounts.Client, old, _ spotoken.Secret) {
				g, err := c.Refresh(context.Background(), old)
				if err != nil {
					t.Fatalf("refresh with the kept token: %v", e.err(err))
				}
				e.grant(g)
				if g.RefreshToken != old || g.Rotated {
					t.Errorf("second refresh: Rotated %v, same token %v; want the same token, not rotated", g.Rotated, g.RefreshToken == old)
				}
			},
		},
		{
			name: "always", rotation: emulator.Rotation{Mode: emulator.RotateAlways}, wantRotated: true,
			oldToken: func(t *testing.T, e *env, c *accounts.Client, old, fresh spotoken.Secret) {
				_, err := c.Refresh(context.Background(), old)
				wantError(t, e.err(err), refreshRevoked)
				if accounts.IsTransient(err) || !errors.As(err, new(*accounts.Error)) {
					t.Errorf("IsTransient(%v) = true", err)
				}
				g, err := c.Refresh(context.Background(), fresh)
				if err != nil {
					t.Fatalf("refresh with the new token: %v", e.err(err))
				}
				e.grant(g)
				if !g.Rotated || g.RefreshToken == fresh {
					t.Errorf("refresh with the new token: not rotated")
				}
			},
		},
		{
			name: "grace", rotation: emulator.Rotation{Mode: emulator.RotateGrace, Grace: grace}, wantRotated: true,
			oldToken: func(t *testing.T, e *env, c *accounts.Client, old, _ spotoken.Secret) {
				g, err := c.Refresh(context.Background(), old)
				if err != nil {
					t.Fatalf("refresh with the old token inside the grace period: %v", e.err(err))
				}
				e.grant(g)
				if !g.Rotated {
					t.Errorf("refresh inside the grace period: not rotated")
				}
				e.clk.Advance(grace + time.Second)
				_, err = c.Refresh(context.Background(), old)
				wantError(t, e.err(err), refreshRevoked)
			},
		},
		{
			name: "reuse detection", rotation: emulator.Rotation{Mode: emulator.RotateReuseDetection}, wantRotated: true,
			oldToken: func(t *testing.T, e *env, c *accounts.Client, old, fresh spotoken.Secret) {
				_, err := c.Refresh(context.Background(), old)
				wantError(t, e.err(err), refreshRevoked)
				// RFC 9700 §4.14.2: the reuse revoked the whole grant.
				_, err = c.Refresh(context.Background(), fresh)
				wantError(t, e.err(err), refreshRevoked)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *emulator.Config) { c.Rotation = tt.rotation })
			c := e.public()
			g1 := e.pkceGrant(c, scopes)
			if diff := cmp.Diff(g1, &accounts.Grant{Expiry: t0.Add(3600 * time.Second), Scopes: scopes}, ignoreTokens); diff != "" {
				t.Errorf("exchange grant (-got +want):\n%s", diff)
			}
			if g1.AccessToken == "" || g1.RefreshToken == "" {
				t.Fatalf("exchange: empty access or refresh token")
			}
			if got := e.apiStatus(g1.AccessToken); got != http.StatusOK {
				t.Errorf("GET /v1/me with the access token: %d", got)
			}

			e.clk.Advance(30 * time.Minute)
			g2, err := c.Refresh(context.Background(), g1.RefreshToken)
			if err != nil {
				t.Fatalf("Refresh: %v", e.err(err))
			}
			e.grant(g2)
			want := &accounts.Grant{Expiry: t0.Add(30*time.Minute + 3600*time.Second), Scopes: scopes, Rotated: tt.wantRotated}
			if diff := cmp.Diff(g2, want, ignoreTokens); diff != "" {
				t.Errorf("refresh grant (-got +want):\n%s", diff)
			}
			switch {
			case g2.RefreshToken == "":
				t.Errorf("refresh: empty refresh token")
			case tt.wantRotated && g2.RefreshToken == g1.RefreshToken:
				t.Errorf("refresh: rotation expected, same refresh token returned")
			case !tt.wantRotated && g2.RefreshToken != g1.RefreshToken:
				t.Errorf("refresh: no rotation expected, refresh token changed")
			}
			if g2.AccessToken == g1.AccessToken {
				t.Errorf("refresh: same access token")
			}
			if got := e.apiStatus(g2.AccessToken); got != http.StatusOK {
				t.Errorf("GET /v1/me with the refreshed access token: %d", got)
			}
			tt.oldToken(t, e, c, g1.RefreshToken, g2.RefreshToken)
		})
	}
}

// TestConfidential runs the confidential code flow, a refresh and client
// credentials.
func TestConfidential(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.confidential()
	g := e.confGrant(c, spotoken.Scopes{"playlist-read-private"})
	if diff := cmp.Diff(g, &accounts.Grant{Expiry: t0.Add(time.Hour), Scopes: spotoken.Scopes{"playlist-read-private"}}, ignoreTokens); diff != "" {
		t.Errorf("exchange grant (-got +want):\n%s", diff)
	}
	if g.RefreshToken == "" {
		t.Fatal("exchange: no refresh token")
	}

	e.clk.Advance(time.Hour)
	r, err := c.Refresh(context.Background(), g.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh: %v", e.err(err))
	}
	e.grant(r)
	want := &accounts.Grant{RefreshToken: g.RefreshToken, Expiry: t0.Add(2 * time.Hour), Scopes: spotoken.Scopes{"playlist-read-private"}}
	if diff := cmp.Diff(r, want, cmpopts.IgnoreFields(accounts.Grant{}, "AccessToken")); diff != "" {
		t.Errorf("refresh grant (-got +want):\n%s", diff)
	}

	cc, err := c.ClientCredentials(context.Background())
	if err != nil {
		t.Fatalf("ClientCredentials: %v", e.err(err))
	}
	e.grant(cc)
	if diff := cmp.Diff(cc, &accounts.Grant{Expiry: t0.Add(2 * time.Hour)}, cmpopts.IgnoreFields(accounts.Grant{}, "AccessToken")); diff != "" {
		t.Errorf("client credentials grant (-got +want):\n%s", diff)
	}
	if cc.AccessToken == "" {
		t.Error("client credentials: no access token")
	}
	if diff := cmp.Diff(e.emu.Stats().TokenRequests, map[string]int64{"authorization_code": 1, "refresh_token": 1, "client_credentials": 1}); diff != "" {
		t.Errorf("token requests (-got +want):\n%s", diff)
	}
}

// TestExpiryFollowsClock: Expiry is Config.Now plus expires_in, to the
// nanosecond, on the clock the emulator runs on.
func TestExpiryFollowsClock(t *testing.T) {
	t.Parallel()
	for _, ttl := range []time.Duration{0, 10 * time.Minute} {
		t.Run(ttl.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *emulator.Config) { c.TokenTTL = ttl })
			if ttl == 0 {
				ttl = 3600 * time.Second // Spotify's and the emulator's default
			}
			c := e.confidential()
			e.clk.Advance(1234567 * time.Microsecond) // not a whole second
			g := e.confGrant(c, nil)
			if want := t0.Add(1234567*time.Microsecond + ttl); !g.Expiry.Equal(want) {
				t.Errorf("exchange: Expiry %v, want %v", g.Expiry, want)
			}
			e.clk.Advance(59 * time.Minute)
			r, err := c.Refresh(context.Background(), g.RefreshToken)
			if err != nil {
				t.Fatalf("Refresh: %v", e.err(err))
			}
			e.grant(r)
			if want := e.clk.Now().Add(ttl); !r.Expiry.Equal(want) {
				t.Errorf("refresh: Expiry %v, want %v", r.Expiry, want)
			}
			e.clk.Advance(3 * time.Hour)
			cc, err := c.ClientCredentials(context.Background())
			if err != nil {
				t.Fatalf("ClientCredentials: %v", e.err(err))
			}
			e.grant(cc)
			if want := e.clk.Now().Add(ttl); !cc.Expiry.Equal(want) {
				t.Errorf("client credentials: Expiry %v, want %v", cc.Expiry, want)
			}
			if !e.emu.Now().Equal(e.clk.Now()) {
				t.Errorf("emulator clock %v, test clock %v", e.emu.Now(), e.clk.Now())
			}
		})
	}
}

// TestEmulatorErrors: every failure the emulator produces becomes the
// right *accounts.Error, classified.
func TestEmulatorErrors(t *testing.T) {
	t.Parallel()
	type class struct{ Transient, InvalidGrant, InvalidClient bool }
	three, seven := 3, 7
	on := true
	ctx := context.Background()
	tests := []struct {
		name string
		call func(e *env) error
		want *accounts.Error // nil: not an *accounts.Error
		cls  class
	}{
		{
			name: "wrong secret, exchange",
			call: func(e *env) error {
				e.secret("wrong-secret-6b1e")
				c := accounts.New(e.config("wrong-secret-6b1e"))
				_, err := c.Exchange(ctx, e.code(c, confRedirect, "", scopes), confRedirect, "")
				return err
			},
			want: &accounts.Error{Status: 400, Code: "invalid_client", Description: "Invalid client secret"},
			cls:  class{InvalidClient: true},
		},
		{
			name: "wrong secret, refresh",
			call: func(e *env) error {
				g := e.confGrant(e.confidential(), scopes)
				e.secret("wrong-secret-6b1e")
				_, err := accounts.New(e.config("wrong-secret-6b1e")).Refresh(ctx, g.RefreshToken)
				return err
			},
			want: &accounts.Error{Status: 400, Code: "invalid_client", Description: "Invalid client secret"},
			cls:  class{InvalidClient: true},
		},
		{
			name: "wrong secret, client credentials",
			call: func(e *env) error {
				e.secret("wrong-secret-6b1e")
				_, err := accounts.New(e.config("wrong-secret-6b1e")).ClientCredentials(ctx)
				return err
			},
			want: &accounts.Error{Status: 400, Code: "invalid_client", Description: "Invalid client secret"},
			cls:  class{InvalidClient: true},
		},
		{
			name: "unknown client",
			call: func(e *env) error {
				cfg := e.config(confSecret)
				cfg.ClientID = "nobody"
				_, err := accounts.New(cfg).ClientCredentials(ctx)
				return err
			},
			want: &accounts.Error{Status: 400, Code: "invalid_client", Description: "Invalid client"},
			cls:  class{InvalidClient: true},
		},
		{
			name: "unknown code",
			call: func(e *env) error {
				v := accounts.GenerateVerifier()
				e.secret(v, "AQnot-a-code-0123")
				_, err := e.public().Exchange(ctx, "AQnot-a-code-0123", pubRedirectP, v)
				return err
			},
			want: &accounts.Error{Status: 400, Code: "invalid_grant", Description: "Invalid authorization code"},
			cls:  class{InvalidGrant: true},
		},
		{
			name: "code used twice",
			call: func(e *env) error {
				c := e.confidential()
				code := e.code(c, confRedirect, "", scopes)
				g, err := c.Exchange(ctx, code, confRedirect, "")
				if err != nil {
					e.t.Fatalf("first exchange: %v", e.err(err))
				}
				e.grant(g)
				_, err = c.Exchange(ctx, code, confRedirect, "")
				return err
			},
			want: &accounts.Error{Status: 400, Code: "invalid_grant", Description: "Invalid authorization code"},
			cls:  class{InvalidGrant: true},
		},
		{
			name: "code expired",
			call: func(e *env) error {
				c := e.confidential()
				code := e.code(c, confRedirect, "", scopes)
				e.clk.Advance(emulator.DefaultCodeTTL)
				_, err := c.Exchange(ctx, code, confRedirect, "")
				return err
			},
			want: &accounts.Error{Status: 400, Code: "invalid_grant", Description: "Authorization code expired"},
			cls:  class{InvalidGrant: true},
		},
		{
			name: "wrong verifier",
			call: func(e *env) error {
				c := e.public()
				v1, v2 := accounts.GenerateVerifier(), accounts.GenerateVerifier()
				e.secret(v1, v2)
				_, err := c.Exchange(ctx, e.code(c, pubRedirectP, v1, scopes), pubRedirectP, v2)
				return err
			},
			want: &accounts.Error{Status: 400, Code: "invalid_grant", Description: "code_verifier was incorrect"},
			cls:  class{InvalidGrant: true},
		},
		{
			name: "verifier missing",
			call: func(e *env) error {
				c := e.public()
				v := accounts.GenerateVerifier()
				e.secret(v)
				_, err := c.Exchange(ctx, e.code(c, pubRedirectP, v, scopes), pubRedirectP, "")
				return err
			},
			want: &accounts.Error{Status: 400, Code: "invalid_request", Description: "code_verifier required"},
		},
		{
			name: "redirect URI differs",
			call: func(e *env) error {
				c := e.public()
				v := accounts.GenerateVerifier()
				e.secret(v)
				_, err := c.Exchange(ctx, e.code(c, pubRedirectP, v, scopes), "http://127.0.0.1:9999/callback", v)
				return err
			},
			want: &accounts.Error{Status: 400, Code: "invalid_grant", Description: "Invalid redirect URI"},
			cls:  class{InvalidGrant: true},
		},
		{
			name: "unknown refresh token",
			call: func(e *env) error {
				e.secret("AQunknown-refresh-token")
				_, err := e.public().Refresh(ctx, "AQunknown-refresh-token")
				return err
			},
			want: &accounts.Error{Status: 400, Code: "invalid_grant", Description: "Invalid refresh token"},
			cls:  class{InvalidGrant: true},
		},
		{
			name: "grant revoked by the user",
			call: func(e *env) error {
				c := e.public()
				g := e.pkceGrant(c, scopes)
				if err := e.emu.RevokeGrant(user, pubID); err != nil {
					e.t.Fatal(err)
				}
				_, err := c.Refresh(ctx, g.RefreshToken)
				return err
			},
			want: refreshRevoked,
			cls:  class{InvalidGrant: true},
		},
		{
			name: "password change",
			call: func(e *env) error {
				c := e.confidential()
				g := e.confGrant(c, scopes)
				if err := e.emu.ChangePassword(user); err != nil {
					e.t.Fatal(err)
				}
				_, err := c.Refresh(ctx, g.RefreshToken)
				return err
			},
			want: refreshRevoked,
			cls:  class{InvalidGrant: true},
		},
		{
			name: "refresh token past its lifetime",
			call: func(e *env) error {
				c := e.public()
				g := e.pkceGrant(c, scopes)
				e.clk.Advance(emulator.DefaultRefreshLifetime)
				_, err := c.Refresh(ctx, g.RefreshToken)
				return err
			},
			want: &accounts.Error{Status: 400, Code: "invalid_grant", Description: "Refresh token expired"},
			cls:  class{InvalidGrant: true},
		},
		{
			name: "injected 429, empty body",
			call: func(e *env) error {
				c := e.public()
				g := e.pkceGrant(c, scopes)
				if err := e.emu.SetFaults(emulator.Faults{TokenStatus: 429, RetryAfter: &three, Count: 1}); err != nil {
					e.t.Fatal(err)
				}
				_, err := c.Refresh(ctx, g.RefreshToken)
				return err
			},
			want: &accounts.Error{Status: 429, RetryAfter: 3 * time.Second},
			cls:  class{Transient: true},
		},
		{
			name: "injected 503",
			call: func(e *env) error {
				c := e.confidential()
				if err := e.emu.SetFaults(emulator.Faults{TokenStatus: 503, Count: 1}); err != nil {
					e.t.Fatal(err)
				}
				_, err := c.Exchange(ctx, e.code(c, confRedirect, "", scopes), confRedirect, "")
				return err
			},
			want: &accounts.Error{Status: 503, Code: "server_error", Description: "Service Unavailable"},
			cls:  class{Transient: true},
		},
		{
			name: "injected 500 with Retry-After",
			call: func(e *env) error {
				if err := e.emu.SetFaults(emulator.Faults{TokenStatus: 500, RetryAfter: &seven}); err != nil {
					e.t.Fatal(err)
				}
				_, err := e.confidential().ClientCredentials(ctx)
				return err
			},
			want: &accounts.Error{Status: 500, Code: "server_error", Description: "Internal Server Error", RetryAfter: 7 * time.Second},
			cls:  class{Transient: true},
		},
		{
			name: "injected invalid_grant",
			call: func(e *env) error {
				c := e.public()
				g := e.pkceGrant(c, scopes)
				err := e.emu.SetFaults(emulator.Faults{TokenStatus: 400, TokenError: "invalid_grant", TokenErrorDescription: "Refresh token expired", Count: 1})
				if err != nil {
					e.t.Fatal(err)
				}
				_, err = c.Refresh(ctx, g.RefreshToken)
				return err
			},
			want: &accounts.Error{Status: 400, Code: "invalid_grant", Description: "Refresh token expired"},
			cls:  class{InvalidGrant: true},
		},
		{
			name: "outage",
			call: func(e *env) error {
				c := e.public()
				g := e.pkceGrant(c, scopes)
				if err := e.emu.SetFaults(emulator.Faults{Outage: &on}); err != nil {
					e.t.Fatal(err)
				}
				_, err := c.Refresh(ctx, g.RefreshToken)
				return err
			},
			want: &accounts.Error{Status: 503},
			cls:  class{Transient: true},
		},
		{
			name: "server down",
			call: func(e *env) error {
				c := e.public()
				g := e.pkceGrant(c, scopes)
				e.srv.Close()
				_, err := c.Refresh(ctx, g.RefreshToken)
				return err
			},
			cls: class{Transient: true},
		},
		{
			name: "client credentials without a secret",
			call: func(e *env) error {
				_, err := e.public().ClientCredentials(ctx)
				if n := e.emu.Stats().TokenRequests["client_credentials"]; n != 0 {
					e.t.Errorf("%d client credentials requests sent, want none", n)
				}
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			err := e.err(tt.call(e))
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil {
				wantError(t, err, tt.want)
			} else if errors.As(err, new(*accounts.Error)) {
				t.Errorf("error %v is an *accounts.Error", err)
			}
			var got class
			if ae := (*accounts.Error)(nil); errors.As(err, &ae) {
				got = class{ae.Transient(), ae.InvalidGrant(), ae.InvalidClient()}
			}
			got.Transient = accounts.IsTransient(err)
			if diff := cmp.Diff(got, tt.cls); diff != "" {
				t.Errorf("classification of %v (-got +want):\n%s", err, diff)
			}
		})
	}
}

// TestRateLimitedThenRecovers: a 429 is one failed request, not a broken
// client; the next request succeeds.
func TestRateLimitedThenRecovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *emulator.Config) { c.Rotation = emulator.Rotation{Mode: emulator.RotateAlways} })
	c := e.public()
	g := e.pkceGrant(c, scopes)
	three := 3
	if err := e.emu.SetFaults(emulator.Faults{TokenStatus: 429, RetryAfter: &three, Count: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Refresh(context.Background(), g.RefreshToken)
	wantError(t, e.err(err), &accounts.Error{Status: 429, RetryAfter: 3 * time.Second})
	// The 429 came before the emulator looked at the token: it is still current.
	r, err := c.Refresh(context.Background(), g.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh after the 429: %v", e.err(err))
	}
	e.grant(r)
	if !r.Rotated {
		t.Error("Refresh after the 429: not rotated")
	}
	if got := e.emu.Stats().TokenErrors["http_429"]; got != 1 {
		t.Errorf("emulator counted %d bodiless 429s, want 1", got)
	}
}

// TestConcurrentRefresh shares one Client between goroutines (run with -race).
func TestConcurrentRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.public()
	grants := make([]*accounts.Grant, 8)
	for i := range grants {
		grants[i] = e.pkceGrant(c, scopes)
	}
	var wg sync.WaitGroup
	for _, g := range grants {
		for range 4 {
			wg.Go(func() {
				r, err := c.Refresh(context.Background(), g.RefreshToken)
				if err != nil {
					t.Errorf("Refresh: %v", e.err(err))
					return
				}
				e.grant(r)
				if r.RefreshToken != g.RefreshToken || r.Rotated {
					t.Errorf("Refresh: refresh token changed in rotation mode never")
				}
			})
		}
	}
	wg.Wait()
	if got := e.emu.Stats().TokenRequests["refresh_token"]; got != 32 {
		t.Errorf("emulator saw %d refreshes, want 32", got)
	}
}
