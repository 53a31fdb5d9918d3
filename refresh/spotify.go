package refresh

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
)

// SpotifyRefresher is the Refresher that calls Spotify's accounts service
// (or the emulator), with one accounts.Client per app and client secret.
//
// While an app's client secret is being rotated (App.PreviousClientSecret
// is set), each request is made with the current secret first and, if
// Spotify refuses it as invalid_client, once more with the previous one
// (accounts.FirstAccepted), so no refresh fails whichever of the two
// Spotify accepts. Every replica reads the app from the store for each
// refresh, so a secret staged or retired through any replica is used by
// all of them from their next refresh on.
type SpotifyRefresher struct {
	// TokenURL is the token endpoint; empty means Spotify's.
	TokenURL string
	// HTTPClient makes the calls; nil means one with a 30-second timeout.
	HTTPClient *http.Client
	// Now computes expiries; default time.Now. Use the engine's clock.
	Now func() time.Time

	mu      sync.Mutex
	clients map[clientKey]*accounts.Client
}

type clientKey struct {
	app, clientID string
	secret        [32]byte // a changed secret gets a new client
}

// Refresh redeems refreshToken for app.
func (s *SpotifyRefresher) Refresh(ctx context.Context, app *spotoken.App, refreshToken spotoken.Secret) (*accounts.Grant, error) {
	return accounts.FirstAccepted(s.appClients(app), func(c *accounts.Client) (*accounts.Grant, error) {
		return c.Refresh(ctx, refreshToken)
	})
}

// ClientCredentials gets app's own access token (the client-credentials
// grant); app must have a client secret.
func (s *SpotifyRefresher) ClientCredentials(ctx context.Context, app *spotoken.App) (*accounts.Grant, error) {
	return accounts.FirstAccepted(s.appClients(app), func(c *accounts.Client) (*accounts.Grant, error) {
		return c.ClientCredentials(ctx)
	})
}

// appClients returns app's clients, one per secret to try, creating those
// it has not made yet and forgetting the app's clients of secrets it no
// longer has (a retired secret's).
func (s *SpotifyRefresher) appClients(app *spotoken.App) []*accounts.Client {
	secrets := app.ClientSecrets()
	if len(secrets) == 0 {
		secrets = []spotoken.Secret{""}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clients == nil {
		s.clients = make(map[clientKey]*accounts.Client)
	}
	out := make([]*accounts.Client, len(secrets))
	keys := make([]clientKey, len(secrets))
	created := false
	for i, secret := range secrets {
		keys[i] = clientKey{app: app.ID, clientID: app.ClientID, secret: sha256.Sum256([]byte(secret.Reveal()))}
		if out[i] = s.clients[keys[i]]; out[i] != nil {
			continue
		}
		hc := s.HTTPClient
		if hc == nil {
			hc = &http.Client{Timeout: 30 * time.Second}
		}
		out[i] = accounts.New(accounts.Config{ClientID: app.ClientID, ClientSecret: secret, TokenURL: s.TokenURL, HTTPClient: hc, Now: s.Now})
		s.clients[keys[i]] = out[i]
		created = true
	}
	if created { // the app's secrets or client id changed: drop its stale clients
		for k := range s.clients {
			if k.app == app.ID && !slices.Contains(keys, k) {
				delete(s.clients, k)
			}
		}
	}
	return out
}

// CheckClientSecret asks Spotify whether it accepts app's current client
// secret alone (a client-credentials request, without falling back to the
// previous secret): nil if it does, an error wrapping
// spotoken.ErrAppMisconfigured if Spotify refused it (invalid_client), and
// another error if Spotify could not be asked. It serves the check before
// a previous client secret is retired (admin.Config.CheckClientSecret).
func (s *SpotifyRefresher) CheckClientSecret(ctx context.Context, app *spotoken.App) error {
	if app.ClientSecret == "" {
		return fmt.Errorf("app %s has no client secret to check", app.ID)
	}
	_, err := s.appClients(app)[0].ClientCredentials(ctx)
	var ae *accounts.Error
	if errors.As(err, &ae) && ae.InvalidClient() {
		return fmt.Errorf("%w: %w", spotoken.ErrAppMisconfigured, err)
	}
	return err
}
