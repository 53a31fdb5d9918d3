package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Defaults of the options.
const (
	// DefaultExpiryMargin is how long before its expiry a cached token is
	// no longer used, and the least lifetime asked of the broker.
	DefaultExpiryMargin = time.Minute
	// DefaultMaxRetries is how many times the transport sends a request
	// again after a 429.
	DefaultMaxRetries = 2
	// DefaultMaxWait is the longest Retry-After the transport waits out.
	DefaultMaxWait = 10 * time.Second
	// DefaultTimeout bounds one call to the broker when WithHTTPClient is
	// not given.
	DefaultTimeout = 30 * time.Second
	// maxMinTTL is the broker's largest min_ttl: 55 minutes.
	maxMinTTL = 3300 * time.Second
)

// TokenProvider is where a Client gets access tokens: the broker's HTTP API
// (New), or anything else (NewWithProvider), such as the embedded refresh
// engine (package client/local). Implementations must be safe for
// concurrent use and must keep tokens out of their error messages.
type TokenProvider interface {
	// FetchToken returns an access token for connectionID as req asks,
	// with TokenType "Bearer", its Expiry, and its granted scopes,
	// space-separated, as Extra("scope"). Errors that the caller may act
	// on are *Error.
	FetchToken(ctx context.Context, connectionID string, req TokenRequest) (*oauth2.Token, error)
}

// TokenRequest is what a caller asks of a TokenProvider.
type TokenRequest struct {
	// MinTTL is the least lifetime the token must have left.
	MinTTL time.Duration
	// ForceRefresh asks for a new token from Spotify even if the current
	// one looks valid.
	ForceRefresh bool
	// Rejected, with ForceRefresh, is the access token Spotify just
	// refused, so that a provider that can tell (local mode) refreshes
	// only if it is still the current one. The broker's API has no such
	// field: the broker is sent force_refresh alone.
	Rejected string
}

// String describes r without the rejected token.
func (r TokenRequest) String() string {
	s := fmt.Sprintf("min_ttl=%s force_refresh=%t", r.MinTTL, r.ForceRefresh)
	if r.Rejected != "" {
		s += " rejected=REDACTED"
	}
	return s
}

// LogValue describes r for log/slog without the rejected token.
func (r TokenRequest) LogValue() slog.Value { return slog.StringValue(r.String()) }

// TokenOption changes one Client.Token request.
type TokenOption func(*TokenRequest)

// MinTTL asks for a token that stays valid for at least d (the broker
// accepts up to 55 minutes); the default is the client's expiry margin.
func MinTTL(d time.Duration) TokenOption {
	return func(r *TokenRequest) { r.MinTTL = d }
}

// ForceRefresh asks the broker to refresh the token with Spotify even if
// the current one is valid. The broker limits it per connection (three in a
// row, then one every 10 seconds by default) and answers rate_limited past
// that.
func ForceRefresh() TokenOption {
	return func(r *TokenRequest) { r.ForceRefresh = true }
}

// RetryPolicy bounds how the transport retries requests that Spotify
// answered 429 Too Many Requests.
type RetryPolicy struct {
	// MaxRetries is how many times one request is sent again; zero never
	// retries.
	MaxRetries int
	// MaxWait is the longest Retry-After waited out: a 429 that asks for
	// longer, or that has no Retry-After, is returned to the caller at once.
	MaxWait time.Duration
}

// Option configures a Client.
type Option func(*options)

type options struct {
	httpClient *http.Client
	margin     time.Duration
	retry      RetryPolicy
	now        func() time.Time
	log        *slog.Logger
}

// WithHTTPClient makes the client call the broker with hc (its transport,
// timeout, proxy settings). It is not used for calls to Spotify: give
// Transport a base RoundTripper for those. Default: an *http.Client with
// a DefaultTimeout timeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) { o.httpClient = hc }
}

// WithExpiryMargin sets how long before its expiry a cached token stops
// being used (and the least lifetime asked of the broker): long enough for
// a request to reach Spotify. Default DefaultExpiryMargin; at most 55
// minutes.
func WithExpiryMargin(d time.Duration) Option {
	return func(o *options) { o.margin = d }
}

// WithRetryPolicy sets how the transport retries after a 429 from Spotify.
// Default: DefaultMaxRetries retries, each waiting at most DefaultMaxWait.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(o *options) { o.retry = p }
}

// WithClock sets the clock that token expiries are compared with. Default
// time.Now. Tests that move the broker's clock give the client the same.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithLogger makes the client log, at debug level, each token refresh after
// a 401 and each wait after a 429; never a token or the API key. Default:
// discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

// Client gets access tokens for an app's connections from a spotoken
// broker (or another TokenProvider) and hands them out as tokens, token
// sources and HTTP transports. It is safe for concurrent use.
//
// A Client keeps one cached token per connection id it is asked about, so
// that every TokenSource, Transport and HTTPClient of a connection share
// one token and one broker call at a time; entries whose tokens have
// expired are dropped as new ones are added.
type Client struct {
	provider TokenProvider
	opts     options

	mu        sync.Mutex
	sources   map[string]*source
	app       *source // the app's own token; see AppTokenSource
	nextSweep int
}

// New returns a client of the broker at serverURL (such as
// "https://broker.example"), authenticating with the app's API key
// ("sk_..."). serverURL must be an absolute http or https URL without user
// information, query or fragment; neither it nor the key is echoed in any
// error.
func New(serverURL, apiKey string, opts ...Option) (*Client, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" ||
		u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(serverURL, "#") {
		return nil, errors.New("client: the server URL must be an absolute http or https URL without user information, query or fragment")
	}
	if apiKey == "" {
		return nil, errors.New("client: no API key")
	}
	if strings.ContainsFunc(apiKey, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, errors.New("client: the API key contains spaces or control characters")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	c, err := NewWithProvider(nil, opts...)
	if err != nil {
		return nil, err
	}
	hc := c.opts.httpClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	c.provider = &broker{base: u, key: apiKey, http: hc}
	return c, nil
}

// NewWithProvider returns a client that gets its tokens from p instead of
// a broker over HTTP: for local mode (package client/local) and for tests.
// WithHTTPClient has no effect on it.
func NewWithProvider(p TokenProvider, opts ...Option) (*Client, error) {
	o := options{margin: DefaultExpiryMargin, retry: RetryPolicy{MaxRetries: DefaultMaxRetries, MaxWait: DefaultMaxWait},
		now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, fn := range opts {
		fn(&o)
	}
	switch {
	case o.margin < 0 || o.margin > maxMinTTL:
		return nil, fmt.Errorf("client: expiry margin %v: want 0 to %v", o.margin, maxMinTTL)
	case o.retry.MaxRetries < 0 || o.retry.MaxWait < 0:
		return nil, errors.New("client: the retry policy's MaxRetries and MaxWait must not be negative")
	case o.now == nil || o.log == nil:
		return nil, errors.New("client: WithClock and WithLogger need a non-nil argument")
	}
	return &Client{provider: p, opts: o, sources: make(map[string]*source)}, nil
}

// Token asks the broker for an access token for connectionID, valid for at
// least the expiry margin (or MinTTL), and returns it with TokenType
// "Bearer", its Expiry and its scopes as Extra("scope") (see Scopes). It
// calls the broker every time: use TokenSource or HTTPClient to reuse a
// token until it nears its expiry.
//
// The broker's error answers are *Error.
func (c *Client) Token(ctx context.Context, connectionID string, opts ...TokenOption) (*oauth2.Token, error) {
	req := TokenRequest{MinTTL: c.opts.margin}
	for _, fn := range opts {
		fn(&req)
	}
	return c.provider.FetchToken(ctx, connectionID, req)
}

// Scopes returns the scopes granted with t, as Client.Token and the token
// sources return them in Extra("scope").
func Scopes(t *oauth2.Token) []string {
	if t == nil {
		return nil
	}
	s, _ := t.Extra("scope").(string)
	return strings.Fields(s)
}

// source returns the shared token cache of connectionID.
func (c *Client) source(connectionID string) *source {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.sources[connectionID]; s != nil {
		return s
	}
	if len(c.sources) >= c.nextSweep {
		now := c.opts.now()
		for id, s := range c.sources {
			if s.idle(now) {
				delete(c.sources, id)
			}
		}
		c.nextSweep = max(2*len(c.sources), 64)
	}
	s := &source{c: c, id: connectionID}
	c.sources[connectionID] = s
	return s
}
