package emulator_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/zmb3/spotify/v2"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/spotoken/spotoken/emulator"
)

// oauth2Config is an unmodified golang.org/x/oauth2 client for the public
// test client, pointed at the emulator.
func (e *env) oauth2Config(scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:    pubID,
		RedirectURL: pubRedirectP,
		Scopes:      scopes,
		Endpoint:    oauth2.Endpoint{AuthURL: e.srv.URL + "/authorize", TokenURL: e.srv.URL + "/api/token"},
	}
}

// oauth2Login runs the PKCE flow with x/oauth2 and returns its token.
func (e *env) oauth2Login(ctx context.Context, conf *oauth2.Config) *oauth2.Token {
	e.t.Helper()
	v := oauth2.GenerateVerifier()
	resp, err := noRedirect.Get(conf.AuthCodeURL("csrf-state", oauth2.S256ChallengeOption(v)))
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("state") != "csrf-state" {
		e.t.Fatalf("authorize redirect: %d, state %q", resp.StatusCode, loc.Query().Get("state"))
	}
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		e.t.Fatalf("x/oauth2 Exchange: %v", err)
	}
	return tok
}

// refreshWith asks x/oauth2 to refresh an expired copy of tok.
func refreshWith(ctx context.Context, conf *oauth2.Config, refreshToken string) (*oauth2.Token, error) {
	expired := &oauth2.Token{AccessToken: "stale", RefreshToken: refreshToken, Expiry: time.Now().Add(-time.Minute)}
	return conf.TokenSource(ctx, expired).Token()
}

func wantInvalidGrant(t *testing.T, what string, err error) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusBadRequest || re.ErrorCode != "invalid_grant" {
		t.Errorf("%s: got %v, want 400 invalid_grant", what, err)
	}
}

// TestOAuth2Library drives the PKCE exchange and a refresh with
// golang.org/x/oauth2, unmodified, in every rotation mode.
func TestOAuth2Library(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"never", "always", "grace=10m", "reuse-detection"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rot, _ := emulator.ParseRotation(mode)
			e := newEnv(t, func(c *emulator.Config) { c.Rotation = rot })
			conf := e.oauth2Config("user-read-email", "user-read-private")
			tok := e.oauth2Login(ctx, conf)
			if tok.RefreshToken == "" || tok.TokenType != "Bearer" || tok.Extra("scope") != "user-read-email user-read-private" {
				t.Fatalf("exchange: refresh token %v, type %q, scope %v", tok.RefreshToken != "", tok.TokenType, tok.Extra("scope"))
			}
			if until := time.Until(tok.Expiry); until < 59*time.Minute || until > 61*time.Minute {
				t.Errorf("expiry in %v, want about an hour (expires_in 3600)", until)
			}

			e.emu.Advance(time.Hour)
			if r := e.api("GET", "/v1/me", tok.AccessToken, ""); r.Status != 401 {
				t.Errorf("old access token after an hour: %d, want 401", r.Status)
			}
			fresh, err := refreshWith(ctx, conf, tok.RefreshToken)
			if err != nil {
				t.Fatalf("x/oauth2 refresh: %v", err)
			}
			if r := e.api("GET", "/v1/me", fresh.AccessToken, ""); r.Status != 200 {
				t.Errorf("refreshed access token: %d %s", r.Status, r.Raw)
			}
			rotated := fresh.RefreshToken != tok.RefreshToken
			if rotated != (mode != "never") {
				t.Fatalf("refresh token rotated = %v in mode %s", rotated, mode)
			}

			_, oldErr := refreshWith(ctx, conf, tok.RefreshToken)
			switch mode {
			case "never", "grace=10m":
				if oldErr != nil {
					t.Errorf("old refresh token in %s mode: %v, want it to still work", mode, oldErr)
				}
			case "always":
				wantInvalidGrant(t, "old refresh token after rotation", oldErr)
				if _, err := refreshWith(ctx, conf, fresh.RefreshToken); err != nil {
					t.Errorf("new refresh token: %v", err)
				}
			case "reuse-detection":
				wantInvalidGrant(t, "reuse of the rotated-out token", oldErr)
				_, newErr := refreshWith(ctx, conf, fresh.RefreshToken)
				wantInvalidGrant(t, "new refresh token after reuse was detected", newErr)
			}
		})
	}
}

// TestOAuth2ConfidentialClient: x/oauth2 with a client secret, auto-detecting
// the auth style, and golang.org/x/oauth2/clientcredentials for the
// client-credentials grant.
func TestOAuth2ConfidentialClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, nil)
	conf := &oauth2.Config{ClientID: confID, ClientSecret: confSecret, RedirectURL: confRedirect, Scopes: []string{"playlist-read-private"},
		Endpoint: oauth2.Endpoint{AuthURL: e.srv.URL + "/authorize", TokenURL: e.srv.URL + "/api/token"}}
	resp, err := noRedirect.Get(conf.AuthCodeURL("s"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"))
	if err != nil {
		t.Fatalf("confidential Exchange: %v", err)
	}
	if _, err := refreshWith(ctx, conf, tok.RefreshToken); err != nil {
		t.Errorf("confidential refresh: %v", err)
	}
	cc := clientcredentials.Config{ClientID: confID, ClientSecret: confSecret, TokenURL: e.srv.URL + "/api/token"}
	appTok, err := cc.Token(ctx)
	if err != nil || appTok.RefreshToken != "" || appTok.AccessToken == "" {
		t.Errorf("client credentials: %v (refresh token present: %v)", err, appTok != nil && appTok.RefreshToken != "")
	}
	bad := *conf
	bad.ClientSecret = "wrong"
	var re *oauth2.RetrieveError
	if _, err := refreshWith(ctx, &bad, tok.RefreshToken); !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
		t.Errorf("wrong secret: %v, want invalid_client", err)
	}
}

// TestZmbSpotify calls the Web API through github.com/zmb3/spotify/v2,
// unmodified, pointed at the emulator.
func TestZmbSpotify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, nil)
	conf := e.oauth2Config("user-read-email", "user-read-private", "user-read-currently-playing",
		"user-modify-playback-state", "playlist-read-private", "playlist-modify-private", "user-top-read")
	tok := e.oauth2Login(ctx, conf)
	client := spotify.New(conf.Client(ctx, tok), spotify.WithBaseURL(e.srv.URL+"/v1/"))

	me, err := client.CurrentUser(ctx)
	if err != nil {
		t.Fatalf("CurrentUser: %v", err)
	}
	if me.ID != "alice" || me.DisplayName != "alice" || me.URI != "spotify:user:alice" || me.Email != "alice@example.com" || me.Product != "premium" {
		t.Errorf("CurrentUser = %+v", me)
	}

	playing, err := client.PlayerCurrentlyPlaying(ctx)
	if err != nil {
		t.Fatalf("PlayerCurrentlyPlaying (nothing playing): %v", err)
	}
	if playing.Playing || playing.Item != nil {
		t.Errorf("nothing should be playing: %+v", playing)
	}
	if err := client.Play(ctx); err != nil {
		t.Fatalf("Play: %v", err)
	}
	playing, err = client.PlayerCurrentlyPlaying(ctx)
	if err != nil || !playing.Playing || playing.Item == nil || playing.Item.Name == "" {
		t.Fatalf("PlayerCurrentlyPlaying after Play: %+v, %v", playing, err)
	}

	pl, err := client.CreatePlaylistForUser(ctx, me.ID, "Road trip", "for the drive", false, false)
	if err != nil {
		t.Fatalf("CreatePlaylistForUser: %v", err)
	}
	page, err := client.CurrentUsersPlaylists(ctx)
	if err != nil || page.Total != 1 || page.Playlists[0].ID != pl.ID || page.Playlists[0].Name != "Road trip" {
		t.Fatalf("CurrentUsersPlaylists: %+v, %v", page, err)
	}
	top, err := client.CurrentUsersTopTracks(ctx, spotify.Limit(5))
	if err != nil || len(top.Tracks) != 5 || top.Tracks[0].Artists[0].Name == "" {
		t.Fatalf("CurrentUsersTopTracks: %+v, %v", top, err)
	}
	artists, err := client.CurrentUsersTopArtists(ctx)
	if err != nil || len(artists.Artists) == 0 {
		t.Fatalf("CurrentUsersTopArtists: %+v, %v", artists, err)
	}

	// Spotify's error object comes through as zmb3's spotify.Error.
	_, err = spotify.New(testClient, spotify.WithBaseURL(e.srv.URL+"/v1/")).CurrentUser(ctx)
	var se spotify.Error
	if !errors.As(err, &se) || se.Status != 401 || se.Message != "Missing/invalid/expired access token" {
		t.Errorf("no token: %v, want spotify.Error 401 Missing/invalid/expired access token", err)
	}
}
