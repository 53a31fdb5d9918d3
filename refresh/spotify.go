package refresh

import (
	"context"
	"crypto/sha256"
	"net/http"
	"sync"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
)

// SpotifyRefresher is the Refresher that calls Spotify's accounts service
// (or the emulator), with one accounts.Client per app.
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
	return s.client(app).Refresh(ctx, refreshToken)
}

func (s *SpotifyRefresher) client(app *spotoken.App) *accounts.Client {
	k := clientKey{app: app.ID, clientID: app.ClientID, secret: sha256.Sum256([]byte(app.ClientSecret.Reveal()))}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clients[k]; c != nil {
		return c
	}
	if s.clients == nil {
		s.clients = make(map[clientKey]*accounts.Client)
	}
	hc := s.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	c := accounts.New(accounts.Config{ClientID: app.ClientID, ClientSecret: app.ClientSecret, TokenURL: s.TokenURL, HTTPClient: hc, Now: s.Now})
	s.clients[k] = c
	return c
}
