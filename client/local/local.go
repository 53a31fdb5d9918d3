// Package local runs package client's token sources and transports on
// spotoken's refresh engine in the same process, without a broker over HTTP:
// for a single-process program that embeds the store and the engine (a
// desktop tool, a small service with one replica).
//
//	engine, _ := refresh.New(refresh.Config{Store: db, Refresher: ...})
//	c, _ := local.NewClient(engine, "myapp")
//	sp := spotify.New(c.HTTPClient("user-42"))
//
// The engine gives the same guarantees as behind a broker: one refresh at a
// time per connection, rotation committed before a token is handed out,
// invalid_grant moving the connection to needs_reauth. What local mode
// lacks is the broker's HTTP layer: no API key (the program holds the
// store's keys itself), no force_refresh rate limit, and a needs_reauth
// *client.Error carries no ConnectURL, since minting connect links is the
// server's job.
package local

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/client"
	"github.com/spotoken/spotoken/refresh"
)

// Engine is what a Provider needs of a *refresh.Engine.
type Engine interface {
	Token(ctx context.Context, key spotoken.ConnectionKey, minTTL time.Duration) (refresh.AccessToken, error)
	Refresh(ctx context.Context, key spotoken.ConnectionKey) (refresh.AccessToken, error)
	Invalidate(ctx context.Context, key spotoken.ConnectionKey, token spotoken.Secret) (refresh.AccessToken, error)
}

var _ Engine = (*refresh.Engine)(nil)

// Provider is a client.TokenProvider backed by a refresh engine, for the
// connections of one app. It is safe for concurrent use.
type Provider struct {
	engine Engine
	appID  string
}

var _ client.TokenProvider = (*Provider)(nil)

// New returns a provider of appID's connections' tokens from engine.
func New(engine Engine, appID string) *Provider {
	return &Provider{engine: engine, appID: appID}
}

// NewClient returns a client whose tokens come from engine for appID's
// connections. Give it the engine's clock with client.WithClock when the
// engine does not use time.Now. client.WithHTTPClient has no effect.
func NewClient(engine Engine, appID string, opts ...client.Option) (*client.Client, error) {
	return client.NewWithProvider(New(engine, appID), opts...)
}

// FetchToken implements client.TokenProvider: Engine.Token, or with
// ForceRefresh, Engine.Invalidate of the rejected token (which refreshes
// only if it is still the current one) or Engine.Refresh. The engine's
// errors become *client.Error with the status the broker would answer.
func (p *Provider) FetchToken(ctx context.Context, connectionID string, req client.TokenRequest) (*oauth2.Token, error) {
	if connectionID == "" {
		return nil, errors.New("local: empty connection id")
	}
	key := spotoken.ConnectionKey{AppID: p.appID, ID: connectionID}
	var (
		at  refresh.AccessToken
		err error
	)
	switch {
	case req.ForceRefresh && req.Rejected != "":
		at, err = p.engine.Invalidate(ctx, key, spotoken.Secret(req.Rejected))
	case req.ForceRefresh:
		at, err = p.engine.Refresh(ctx, key)
	default:
		at, err = p.engine.Token(ctx, key, req.MinTTL)
	}
	if err != nil {
		return nil, clientError(connectionID, err)
	}
	if at.Token == "" {
		return nil, &client.Error{ConnectionID: connectionID, StatusCode: http.StatusInternalServerError,
			Code: client.CodeInternal, Description: "the engine returned no token"}
	}
	tok := &oauth2.Token{AccessToken: at.Token.Reveal(), TokenType: "Bearer", Expiry: at.Expiry}
	return tok.WithExtra(map[string]any{"scope": at.Scopes.String()}), nil
}

// statuses are the broker's HTTP statuses for the engine's error codes
// (docs/api.md, "Errors").
var statuses = map[string]int{
	spotoken.ENotFound:         http.StatusNotFound,
	spotoken.ENeedsReauth:      http.StatusConflict,
	spotoken.ERateLimited:      http.StatusTooManyRequests,
	spotoken.EUnavailable:      http.StatusServiceUnavailable,
	spotoken.EAppMisconfigured: http.StatusBadGateway,
	spotoken.EInvalid:          http.StatusBadRequest,
}

// clientError turns an engine error into a *client.Error. A context's
// error is returned wrapped as it is, for errors.Is.
func clientError(connectionID string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("local: connection %q: %w", connectionID, err)
	}
	code := spotoken.ErrorCode(err)
	status, ok := statuses[code]
	if !ok {
		code, status = client.CodeInternal, http.StatusInternalServerError
	}
	e := &client.Error{ConnectionID: connectionID, StatusCode: status, Code: code, Description: spotoken.ErrorMessage(err)}
	var se *spotoken.Error
	if errors.As(err, &se) {
		e.RetryAfter = se.RetryAfter
	}
	return e
}
