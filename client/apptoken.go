package client

import (
	"context"
	"net/http"

	"golang.org/x/oauth2"
)

// App tokens: the app's own access token, from Spotify's client-credentials
// grant through the broker (POST /v1/app-token), for catalog calls that act
// for no user (search, tracks, albums, artists). The broker caches it and
// fetches a new one once for every replica; it refuses an app without a
// client secret with CodeUnauthorizedClient.

// AppTokenProvider is a TokenProvider that also gives the app's own token.
// The broker's HTTP API is one.
type AppTokenProvider interface {
	// FetchAppToken returns the app's own access token as req asks, with
	// TokenType "Bearer" and its Expiry. Errors that the caller may act on
	// are *Error.
	FetchAppToken(ctx context.Context, req TokenRequest) (*oauth2.Token, error)
}

var _ AppTokenProvider = (*broker)(nil)

// AppToken asks the broker for the app's own access token, valid for at
// least the expiry margin (or MinTTL). It calls the broker every time: use
// AppTokenSource or AppHTTPClient to reuse a token until it nears its expiry.
func (c *Client) AppToken(ctx context.Context, opts ...TokenOption) (*oauth2.Token, error) {
	req := TokenRequest{MinTTL: c.opts.margin}
	for _, fn := range opts {
		fn(&req)
	}
	return c.appSource().fetch(ctx, req)
}

// AppTokenSource returns an oauth2.TokenSource of the app's own access
// tokens, cached as TokenSource caches a connection's: one call to the
// broker at a time, a new token only near the old one's expiry.
func (c *Client) AppTokenSource() oauth2.TokenSource { return tokenSource{c.appSource()} }

// AppTransport is Transport with the app's own token: for Web API requests
// that act for no user. A 401 refusing the token gets a new one and one
// retry, as Transport does.
func (c *Client) AppTransport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{c: c, s: c.appSource(), base: base}
}

// AppHTTPClient returns an *http.Client whose requests carry the app's own
// token, through AppTransport(nil):
//
//	sp := spotify.New(c.AppHTTPClient())
//	results, err := sp.Search(ctx, "loopback", spotify.SearchTypeTrack)
func (c *Client) AppHTTPClient() *http.Client { return &http.Client{Transport: c.AppTransport(nil)} }

// appSource returns the shared cache of the app's own token.
func (c *Client) appSource() *source {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.app == nil {
		c.app = &source{c: c, id: "-", app: true}
	}
	return c.app
}
