// Package accounts is the client side of Spotify's accounts service
// (accounts.spotify.com): the authorization URL, PKCE, and the three grants
// spotoken uses at the token endpoint.
//
//   - The authorization code grant, RFC 6749 §4.1. A confidential client (one
//     with a secret) authenticates with HTTP Basic, RFC 6749 §2.3.1. A public
//     client sends its client_id and proves possession of the authorization
//     request with PKCE, RFC 7636, method S256 only; this is how native and
//     desktop apps must work (RFC 8252 §6, §8.1), with a loopback redirect
//     URI such as http://127.0.0.1:PORT/callback (RFC 8252 §7.3).
//   - Refreshing an access token, RFC 6749 §6. Spotify may return a new
//     refresh token (rotation) or none; [Grant.RefreshToken] is always the
//     one to keep, and an empty refresh token in a response never replaces
//     the old one.
//   - Client credentials, RFC 6749 §4.4: an app token, with no user and no
//     refresh token.
//
// A failure answered by the token endpoint is an [*Error] carrying the RFC 6749
// §5.2 fields and the Retry-After delay (RFC 9110 §10.2.3); [IsTransient]
// tells failures worth retrying (429, 5xx, timeouts, network errors) from
// dead grants ([Error.InvalidGrant]) and misconfigured apps
// ([Error.InvalidClient]).
//
// The protocol plumbing is golang.org/x/oauth2's: it builds the requests and
// reads response bodies through an io.LimitReader of 1 MiB. This package
// chooses the client authentication explicitly, so a failed request is never
// repeated in another style, computes expiry from expires_in with an
// injected clock, and turns failures into the classified errors above.
//
// Nothing here logs. Tokens, codes, verifiers and the client secret travel
// as [spotoken.Secret] where the API allows, and never appear in an error.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/spotoken/spotoken"
)

// Spotify's accounts service endpoints, the defaults for Config.AuthURL and
// Config.TokenURL.
const (
	DefaultAuthURL  = "https://accounts.spotify.com/authorize"
	DefaultTokenURL = "https://accounts.spotify.com/api/token"
)

// DefaultTimeout bounds every token request when Config.HTTPClient is nil.
const DefaultTimeout = 30 * time.Second

// Config describes a Spotify app as a client of the accounts service.
type Config struct {
	// ClientID is the app's Spotify client id.
	ClientID string
	// ClientSecret is the app's client secret. Empty makes a public client,
	// which must use PKCE (RFC 7636) and cannot use client credentials.
	ClientSecret spotoken.Secret
	// AuthURL and TokenURL are the accounts service's endpoints; empty means
	// DefaultAuthURL and DefaultTokenURL. Tests point them at the emulator.
	AuthURL, TokenURL string
	// HTTPClient sends the token requests; New uses a copy of it. Nil means
	// http.DefaultTransport with DefaultTimeout. Its Timeout, if any, bounds
	// each request as a context deadline would, body included, so that a
	// timeout is reported as context.DeadlineExceeded. Callers should still
	// pass contexts with deadlines.
	HTTPClient *http.Client
	// Now is the clock that turns expires_in into Grant.Expiry and an
	// HTTP-date Retry-After into Error.RetryAfter. Default time.Now.
	Now func() time.Time
}

// Client talks to Spotify's accounts service for one app. It is safe for
// concurrent use by multiple goroutines. Printing a Client does not reveal
// the client secret.
type Client struct {
	clientID string
	// secret sits behind a pointer: fmt prints the fields of an unexported
	// struct field without calling their String methods, but prints a
	// nested pointer as an address.
	secret            *spotoken.Secret
	authURL, tokenURL string
	hc                *http.Client
	timeout           time.Duration // hc's Timeout, applied by track
	now               func() time.Time
}

// New returns a Client for cfg, filling in the defaults.
func New(cfg Config) *Client {
	c := &Client{
		clientID: cfg.ClientID,
		secret:   new(cfg.ClientSecret),
		authURL:  cfg.AuthURL,
		tokenURL: cfg.TokenURL,
		now:      cfg.Now,
	}
	if c.authURL == "" {
		c.authURL = DefaultAuthURL
	}
	if c.tokenURL == "" {
		c.tokenURL = DefaultTokenURL
	}
	if c.now == nil {
		c.now = time.Now
	}
	hc := http.Client{Timeout: DefaultTimeout}
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	}
	hc.Transport = &observer{base: hc.Transport}
	// A body read cut short by http.Client.Timeout fails below the Client as
	// a bare "request canceled"; a context deadline keeps its type.
	c.timeout, hc.Timeout = hc.Timeout, 0
	c.hc = &hc
	return c
}

// Grant is what a successful token request returned.
type Grant struct {
	// AccessToken authorizes Web API calls until Expiry.
	AccessToken spotoken.Secret
	// RefreshToken is the refresh token to keep. After Refresh it is the
	// new one when Spotify rotated it, else the one presented: never empty.
	// After Exchange it is the grant's first refresh token; after
	// ClientCredentials it is empty.
	RefreshToken spotoken.Secret
	// Expiry is Config.Now at the response plus expires_in; zero when the
	// response had no positive expires_in.
	Expiry time.Time
	// Scopes are the scopes Spotify granted, which may be fewer than
	// requested; nil when the response had no scope parameter (RFC 6749
	// §5.1: unchanged; client credentials have none).
	Scopes spotoken.Scopes
	// Rotated reports whether a Refresh returned a refresh token different
	// from the one presented; the old one may no longer work.
	Rotated bool
}

// Token returns the grant's tokens.
func (g *Grant) Token() spotoken.Token {
	return spotoken.Token{AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, Expiry: g.Expiry}
}

// AuthCodeURL returns the /authorize URL that starts the authorization code
// grant (RFC 6749 §4.1.1) for redirectURI, which must be registered with
// Spotify exactly (for a loopback URI registered without a port, any port:
// RFC 8252 §7.3). state should be an unguessable value bound to the user's
// session (RFC 6749 §10.12). A non-empty verifier adds the PKCE challenge
// (RFC 7636 §4.3, S256); public clients must pass one, and Exchange needs it
// again. showDialog makes Spotify show the consent page even to a user who
// already approved these scopes.
func (c *Client) AuthCodeURL(state, redirectURI string, scopes spotoken.Scopes, verifier string, showDialog bool) string {
	conf := &oauth2.Config{ClientID: c.clientID, Endpoint: oauth2.Endpoint{AuthURL: c.authURL}, Scopes: scopes.Normalize()}
	var opts []oauth2.AuthCodeOption
	if redirectURI != "" {
		opts = append(opts, oauth2.SetAuthURLParam("redirect_uri", redirectURI))
	}
	if verifier != "" {
		opts = append(opts, oauth2.S256ChallengeOption(verifier))
	}
	if showDialog {
		opts = append(opts, oauth2.SetAuthURLParam("show_dialog", "true"))
	}
	return conf.AuthCodeURL(state, opts...)
}

// Exchange trades an authorization code for tokens (RFC 6749 §4.1.3).
// redirectURI must be the one given to AuthCodeURL. verifier is the PKCE
// code verifier given to AuthCodeURL, or "" if none was (RFC 7636 §4.5).
// A confidential client authenticates with HTTP Basic; a public one sends
// its client_id in the form.
//
// The code is single-use: whatever the outcome, do not present it again.
func (c *Client) Exchange(ctx context.Context, code, redirectURI, verifier string) (*Grant, error) {
	opts := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("redirect_uri", redirectURI)}
	if verifier != "" {
		opts = append(opts, oauth2.VerifierOption(verifier))
	}
	ctx, obs, cancel := c.track(ctx)
	defer cancel()
	tok, err := c.oauth2Config().Exchange(ctx, code, opts...)
	if err != nil {
		return nil, c.fail(ctx, "exchange", obs, err)
	}
	return c.grant(tok), nil
}

// Refresh trades a refresh token for a new access token (RFC 6749 §6). The
// grant's RefreshToken is the new refresh token if Spotify returned one
// (then Rotated is true) and refreshToken otherwise, never empty; store it
// before using the new access token. An *Error with InvalidGrant means the
// grant is dead: revoked by the user, rotated out, or past its lifetime.
func (c *Client) Refresh(ctx context.Context, refreshToken spotoken.Secret) (*Grant, error) {
	if refreshToken == "" {
		return nil, errors.New("accounts: refresh: empty refresh token")
	}
	ctx, obs, cancel := c.track(ctx)
	defer cancel()
	// A token without an access token is never valid, so the TokenSource
	// refreshes at once, exactly once.
	tok, err := c.oauth2Config().TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken.Reveal()}).Token()
	if err != nil {
		return nil, c.fail(ctx, "refresh", obs, err)
	}
	g := c.grant(tok)
	// x/oauth2 already keeps the old refresh token when the response has
	// none; this holds the guarantee whatever it does.
	if g.RefreshToken == "" {
		g.RefreshToken = refreshToken
	}
	g.Rotated = g.RefreshToken != refreshToken
	return g, nil
}

// ClientCredentials gets an app access token (RFC 6749 §4.4), with no user
// and no refresh token. It needs a client secret.
func (c *Client) ClientCredentials(ctx context.Context) (*Grant, error) {
	if *c.secret == "" {
		return nil, errors.New("accounts: client credentials: a public client has no secret to authenticate with")
	}
	conf := &clientcredentials.Config{
		ClientID:     c.clientID,
		ClientSecret: c.secret.Reveal(),
		TokenURL:     c.tokenURL,
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	ctx, obs, cancel := c.track(ctx)
	defer cancel()
	tok, err := conf.Token(ctx)
	if err != nil {
		return nil, c.fail(ctx, "client credentials", obs, err)
	}
	return c.grant(tok), nil
}

// oauth2Config is built for each request, so the secret is held only as a
// spotoken.Secret between requests.
func (c *Client) oauth2Config() *oauth2.Config {
	// The style is always explicit: with AuthStyleAutoDetect x/oauth2 retries
	// a failed request with the credentials moved, sending a code or refresh
	// token twice.
	style := oauth2.AuthStyleInHeader
	if *c.secret == "" {
		style = oauth2.AuthStyleInParams // client_id in the form, no secret
	}
	return &oauth2.Config{
		ClientID:     c.clientID,
		ClientSecret: c.secret.Reveal(),
		Endpoint:     oauth2.Endpoint{AuthURL: c.authURL, TokenURL: c.tokenURL, AuthStyle: style},
	}
}

// grant converts x/oauth2's token. Its Expiry was computed with time.Now,
// so it is recomputed here from expires_in with c.now.
func (c *Client) grant(tok *oauth2.Token) *Grant {
	g := &Grant{AccessToken: spotoken.Secret(tok.AccessToken), RefreshToken: spotoken.Secret(tok.RefreshToken)}
	if n := expiresIn(tok); n > 0 {
		g.Expiry = c.now().Add(time.Duration(n) * time.Second)
	}
	if s, ok := tok.Extra("scope").(string); ok {
		g.Scopes = spotoken.ParseScopes(s)
	}
	return g
}

// expiresIn returns the response's expires_in in seconds, or 0. x/oauth2
// sets Token.ExpiresIn for JSON answers to the code and refresh grants, but
// its clientcredentials package drops it, so the raw field is the fallback.
func expiresIn(tok *oauth2.Token) int64 {
	if tok.ExpiresIn != 0 {
		return tok.ExpiresIn
	}
	var n int64
	switch v := tok.Extra("expires_in").(type) {
	case float64: // JSON number
		if math.IsNaN(v) || v < 1 {
			return 0
		}
		n = int64(min(v, math.MaxInt32))
	case int64: // form-encoded answer, parsed by Extra
		n = v
	case string:
		n, _ = strconv.ParseInt(v, 10, 64)
	}
	return min(n, math.MaxInt32) // as x/oauth2 clamps it
}

// fail turns an error from x/oauth2 into this package's: an *Error for an
// error answer, a wrapped transport or read error, or ErrMalformedResponse.
// x/oauth2 formats body-read and parse failures with %v, losing their type,
// so obs tells them apart.
func (c *Client) fail(ctx context.Context, op string, obs *observation, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return c.newError(re)
	}
	var ue *url.Error // what http.Client.Do returns; x/oauth2 passes it through
	switch {
	case errors.As(err, &ue) || obs.status == 0:
		err = fmt.Errorf("accounts: %s: %w", op, err)
	case obs.readErr != nil:
		err = fmt.Errorf("accounts: %s: reading response: %w", op, obs.readErr)
	default:
		// x/oauth2's parse errors may quote bits of the body; leave them out.
		return fmt.Errorf("accounts: %s: %w (HTTP %d)", op, ErrMalformedResponse, obs.status)
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", err, cerr)
	}
	return err
}

// newError converts x/oauth2's RetrieveError, whose body has been read and
// closed but whose headers remain. A 429 with an empty body arrives here
// with no code: x/oauth2 reports a failure status as a RetrieveError even
// when the body does not parse.
func (c *Client) newError(re *oauth2.RetrieveError) *Error {
	e := &Error{Code: sanitize(re.ErrorCode), Description: sanitize(re.ErrorDescription)}
	if re.Response != nil {
		e.Status = re.Response.StatusCode
		e.RetryAfter = parseRetryAfter(re.Response.Header.Get("Retry-After"), c.now())
	}
	return e
}
