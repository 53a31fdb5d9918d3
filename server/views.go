package server

import (
	"encoding/json"
	"time"

	"github.com/spotoken/spotoken"
)

// ConnectionView is a connection as the API and the CLI show it: no token.
type ConnectionView struct {
	ID             string          `json:"id"`
	State          spotoken.State  `json:"state"`
	Scopes         spotoken.Scopes `json:"scopes"`
	SpotifyUserID  string          `json:"spotify_user_id,omitempty"`
	DisplayName    string          `json:"display_name,omitempty"`
	ExpiresAt      *time.Time      `json:"expires_at,omitempty"` // the access token's expiry
	LastRefreshAt  *time.Time      `json:"last_refresh_at,omitempty"`
	LastErrorCode  string          `json:"last_error_code,omitempty"`
	ConsentedAt    *time.Time      `json:"consented_at,omitempty"`
	GrantExpiresAt *time.Time      `json:"grant_expires_at,omitempty"`
	// RateLimitedUntil is when the app's rate-limit window at Spotify's
	// token endpoint ends, while it lasts: no refresh before it.
	RateLimitedUntil *time.Time `json:"rate_limited_until,omitempty"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
}

// RateLimitWindow is an app's window end as a view shows it: nil unless
// the window lasts beyond now.
func RateLimitWindow(until, now time.Time) *time.Time {
	if !until.After(now) {
		return nil
	}
	return optTime(until)
}

// NewConnectionView returns c's view.
func NewConnectionView(c *spotoken.Connection) ConnectionView {
	scopes := c.Scopes
	if scopes == nil {
		scopes = spotoken.Scopes{}
	}
	return ConnectionView{
		ID: c.ID, State: c.State, Scopes: scopes, SpotifyUserID: c.SpotifyUserID, DisplayName: c.DisplayName,
		ExpiresAt: optTime(c.Token.Expiry), LastRefreshAt: optTime(c.LastRefreshAt), LastErrorCode: c.LastErrorCode,
		ConsentedAt: optTime(c.ConsentedAt), GrantExpiresAt: optTime(c.GrantExpiresAt),
		CreatedAt: c.CreatedAt.UTC(), UpdatedAt: c.UpdatedAt.UTC(),
	}
}

// ConnectionList is a page of connections; NextCursor, when set, is the
// cursor parameter for the next page.
type ConnectionList struct {
	Connections []ConnectionView `json:"connections"`
	NextCursor  string           `json:"next_cursor,omitempty"`
}

// TokenResponse is the answer of POST /v1/connections/{id}/token.
type TokenResponse struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at"`
	Scope       string    `json:"scope"`
}

// MarshalJSON encodes t as encoding/json would encode its fields, byte for
// byte, without reflection: this is the answer the broker gives most.
func (t TokenResponse) MarshalJSON() ([]byte, error) {
	return t.appendJSON(make([]byte, 0, 128+len(t.AccessToken)+len(t.Scope))), nil
}

func (t TokenResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"access_token":`...)
	b = appendJSONString(b, t.AccessToken)
	b = append(b, `,"token_type":`...)
	b = appendJSONString(b, t.TokenType)
	b = append(b, `,"expires_at":"`...)
	b = t.ExpiresAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","scope":`...)
	b = appendJSONString(b, t.Scope)
	return append(b, '}')
}

// appendJSONString appends s as encoding/json would: quoted, with the
// characters it escapes (quotes, backslash, control characters, <, >, &,
// invalid UTF-8, U+2028 and U+2029) left to it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// ConnectSession is the answer of POST /v1/connect-sessions: a one-time
// link to hand the user.
type ConnectSession struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ErrorResponse is every error's body: an RFC 6749 / RFC 6750 code where
// one applies (invalid_request, invalid_token, insufficient_scope, ...) or
// one of ours (needs_reauth, not_found, rate_limited, ...).
type ErrorResponse struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	// RetryAfter, in seconds, for rate_limited and temporarily_unavailable
	// (also sent as the Retry-After header).
	RetryAfter int `json:"retry_after,omitempty"`
	// ConnectURL, for needs_reauth and insufficient_scope, is a fresh
	// one-time link that lets the user authorize (again, or more scopes).
	ConnectURL          string     `json:"connect_url,omitempty"`
	ConnectURLExpiresAt *time.Time `json:"connect_url_expires_at,omitempty"`
	// RequiredScopes, for insufficient_scope, are the scopes the request
	// needs that the connection lacks.
	RequiredScopes spotoken.Scopes `json:"required_scopes,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
