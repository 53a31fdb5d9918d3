package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/zmb3/spotify/v2"

	"github.com/spotoken/spotoken/client"
	"github.com/spotoken/spotoken/emulator"
)

// stubBroker answers every request with status and body; with echo, the
// body is followed by the request's Authorization header, as a careless
// proxy might.
func stubBroker(t *testing.T, status int, body string, echo bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
		if echo {
			io.WriteString(w, r.Header.Get("Authorization"))
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestErrorsHoldNoSecret provokes every error path and checks that no
// error message holds the API key, an access token or a connect link.
func TestErrorsHoldNoSecret(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, err := e.c.TokenSource(connID).Token()
	if err != nil {
		t.Fatal(err)
	}
	const stubToken = "stub-access-token"
	secrets := []string{e.b.APIKey, tok.AccessToken, stubToken, "/connect/"}
	withKey := func(url string) *client.Client {
		c, err := client.New(url, e.b.APIKey, client.WithClock(e.b.Now))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	downURL := func() string {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		return srv.URL
	}()

	type check struct {
		name string
		err  func() error
		// code is the *client.Error code expected; "-" for an error that is
		// not a *client.Error.
		code string
	}
	checks := []check{
		{"bad URL", func() error { _, err := client.New(e.b.APIKey, e.b.URL); return err }, "-"},
		{"key in URL", func() error { _, err := client.New("http://"+e.b.APIKey+"@127.0.0.1", e.b.APIKey); return err }, "-"},
		{"broker down", func() error { _, err := withKey(downURL).Token(ctx, connID); return err }, "-"},
		{"wrong key", func() error {
			c, err := client.New(e.b.URL, e.b.APIKey+"x")
			if err != nil {
				return err
			}
			_, err = c.Token(ctx, connID)
			return err
		}, client.CodeInvalidToken},
		{"not found", func() error { _, err := e.c.Token(ctx, "nobody"); return err }, client.CodeNotFound},
		{"bad min_ttl", func() error { _, err := e.c.Token(ctx, connID, client.MinTTL(time.Hour)); return err }, client.CodeInvalidRequest},
		{"500", func() error {
			_, err := withKey(stubBroker(t, 500, `{"error":"internal","error_description":"Internal error."}`, false)).Token(ctx, connID)
			return err
		}, client.CodeInternal},
		{"502 page echoing the key", func() error {
			_, err := withKey(stubBroker(t, 502, "<html>bad gateway ", true)).Token(ctx, connID)
			return err
		}, ""},
		{"invalid JSON", func() error {
			_, err := withKey(stubBroker(t, 200, `{"access_token":"`+stubToken+`","token_type":`, false)).Token(ctx, connID)
			return err
		}, "-"},
		{"wrong type", func() error {
			_, err := withKey(stubBroker(t, 200, `{"access_token":"`+stubToken+`","token_type":7}`, false)).Token(ctx, connID)
			return err
		}, "-"},
		{"not bearer", func() error {
			_, err := withKey(stubBroker(t, 200, `{"access_token":"`+stubToken+`","token_type":"mac","expires_at":"2030-01-01T00:00:00Z"}`, false)).Token(ctx, connID)
			return err
		}, "-"},
		{"no expiry", func() error {
			_, err := withKey(stubBroker(t, 200, `{"access_token":"`+stubToken+`","token_type":"Bearer"}`, false)).Token(ctx, connID)
			return err
		}, "-"},
		{"insufficient scope", func() error {
			_, err := withKey(stubBroker(t, 403, `{"error":"insufficient_scope","error_description":"needs playlist-modify-private",`+
				`"required_scopes":["playlist-modify-private"],"connect_url":"https://broker.example/connect/cs_x"}`, false)).Token(ctx, connID)
			return err
		}, client.CodeInsufficientScope},
		{"Spotify 401 twice through zmb3", func() error {
			e.faults(t, emulator.Faults{APIStatus: 401, APIMessage: "The access token expired", Count: 2})
			_, err := spotify.New(e.c.HTTPClient(connID), spotify.WithBaseURL(e.b.EmulatorURL+"/v1/")).CurrentUser(ctx)
			return err
		}, "-"},
		{"force_refresh limited", func() error {
			var err error
			for i := 0; i < 4 && err == nil; i++ {
				_, err = e.c.Token(ctx, connID, client.ForceRefresh())
			}
			return err
		}, client.CodeRateLimited},
		{"needs_reauth", func() error {
			e.b.RevokeGrant(t)
			e.b.Advance(2 * time.Hour)
			_, err := e.c.Token(ctx, connID)
			return err
		}, client.CodeNeedsReauth},
		{"needs_reauth through zmb3", func() error {
			_, err := spotify.New(e.c.HTTPClient(connID), spotify.WithBaseURL(e.b.EmulatorURL+"/v1/")).CurrentUser(ctx)
			return err
		}, client.CodeNeedsReauth},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			err := c.err()
			if err == nil {
				t.Fatal("no error")
			}
			var ce *client.Error
			switch {
			case c.code == "-" && errors.As(err, &ce):
				t.Errorf("%v: a *client.Error, want another error", err)
			case c.code != "-" && (!errors.As(err, &ce) || ce.Code != c.code):
				t.Errorf("%v: want a *client.Error with code %q", err, c.code)
			}
			// Every token the client got, including the forced refreshes'.
			for _, s := range append(secrets, e.calls.Tokens()...) {
				if strings.Contains(err.Error(), s) {
					t.Errorf("the error %q holds a secret (%.6s...)", err, s)
				}
			}
			t.Logf("%v", err)
		})
	}
}
