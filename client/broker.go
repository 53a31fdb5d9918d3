package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/oauth2"
)

// maxResponse bounds how much of a broker's answer is read.
const maxResponse = 1 << 20

// broker is the TokenProvider of a spotoken server's HTTP API.
type broker struct {
	base *url.URL // no trailing slash
	key  string
	http *http.Client
}

// tokenResponse is the broker's TokenResponse (server/views.go).
type tokenResponse struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresAt   time.Time `json:"expires_at"`
	Scope       string    `json:"scope"`
}

// errorResponse is the broker's ErrorResponse (server/views.go).
type errorResponse struct {
	Error               string     `json:"error"`
	Description         string     `json:"error_description"`
	RetryAfter          int        `json:"retry_after"`
	ConnectURL          string     `json:"connect_url"`
	ConnectURLExpiresAt *time.Time `json:"connect_url_expires_at"`
	RequiredScopes      []string   `json:"required_scopes"`
}

// FetchToken calls POST /v1/connections/{id}/token.
func (b *broker) FetchToken(ctx context.Context, connectionID string, req TokenRequest) (*oauth2.Token, error) {
	if connectionID == "" {
		return nil, errors.New("client: empty connection id")
	}
	return b.fetch(ctx, connectionID, req)
}

// FetchAppToken calls POST /v1/app-token.
func (b *broker) FetchAppToken(ctx context.Context, req TokenRequest) (*oauth2.Token, error) {
	return b.fetch(ctx, "", req)
}

// subject names what a token request was for in error messages: a
// connection, or (connectionID "") the app itself.
func subject(connectionID string) string {
	if connectionID == "" {
		return "app token"
	}
	return fmt.Sprintf("connection %q", connectionID)
}

// fetch asks the broker for connectionID's token, or the app's own token
// when connectionID is "".
func (b *broker) fetch(ctx context.Context, connectionID string, req TokenRequest) (*oauth2.Token, error) {
	body := map[string]any{}
	if req.MinTTL > 0 {
		body["min_ttl"] = int64((req.MinTTL + time.Second - 1) / time.Second) // rounded up
	}
	if req.ForceRefresh {
		body["force_refresh"] = true
	}
	raw, _ := json.Marshal(body)
	u := *b.base
	if connectionID == "" {
		u.Path += "/v1/app-token"
		u.RawPath = b.base.EscapedPath() + "/v1/app-token"
	} else {
		u.Path += "/v1/connections/" + connectionID + "/token"
		u.RawPath = b.base.EscapedPath() + "/v1/connections/" + url.PathEscape(connectionID) + "/token"
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("client: %s: building the token request: %w", subject(connectionID), err)
	}
	hreq.Header.Set("Authorization", "Bearer "+b.key)
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	resp, err := b.http.Do(hreq)
	if err != nil {
		// A *url.Error names the method and the URL, which hold neither the
		// key nor a token.
		return nil, fmt.Errorf("client: %s: asking the broker for a token: %w", subject(connectionID), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("client: %s: reading the broker's answer: %w", subject(connectionID), err)
	}
	if len(data) > maxResponse {
		return nil, fmt.Errorf("client: %s: the broker's answer is larger than %d bytes", subject(connectionID), maxResponse)
	}
	return decodeTokenAnswer(connectionID, resp, data)
}

// decodeTokenAnswer reads the broker's answer to a token request for
// connectionID ("" for the app's own token): a token on 200, an *Error
// otherwise. No error it returns holds the token.
func decodeTokenAnswer(connectionID string, resp *http.Response, data []byte) (*oauth2.Token, error) {
	if resp.StatusCode != http.StatusOK {
		return nil, brokerError(connectionID, resp, data)
	}
	var tr tokenResponse
	if err := json.Unmarshal(data, &tr); err != nil {
		// encoding/json's messages name a type or a character, never a value.
		return nil, fmt.Errorf("client: %s: decoding the broker's token answer: %w", subject(connectionID), err)
	}
	switch {
	case tr.AccessToken == "":
		return nil, fmt.Errorf("client: %s: the broker's answer has no access_token", subject(connectionID))
	case !strings.EqualFold(tr.TokenType, "Bearer"):
		return nil, fmt.Errorf("client: %s: the broker's answer has token_type %q, want Bearer", subject(connectionID), truncate(tr.TokenType, 20))
	case tr.ExpiresAt.IsZero():
		return nil, fmt.Errorf("client: %s: the broker's answer has no expires_at", subject(connectionID))
	}
	tok := &oauth2.Token{AccessToken: tr.AccessToken, TokenType: "Bearer", Expiry: tr.ExpiresAt}
	return tok.WithExtra(map[string]any{"scope": tr.Scope}), nil
}

// brokerError turns a broker's error answer into an *Error. An answer that
// is not the broker's JSON (a load balancer's page, say) gives an *Error
// without a code; its body is left out, since it could echo anything.
func brokerError(connectionID string, resp *http.Response, data []byte) *Error {
	e := &Error{ConnectionID: connectionID, StatusCode: resp.StatusCode}
	var er errorResponse
	if json.Unmarshal(data, &er) == nil && er.Error != "" {
		e.Code = truncate(er.Error, 64)
		e.Description = truncate(er.Description, 1024)
		e.RetryAfter = time.Duration(er.RetryAfter) * time.Second
		e.ConnectURL = er.ConnectURL
		if er.ConnectURLExpiresAt != nil {
			e.ConnectURLExpiresAt = *er.ConnectURLExpiresAt
		}
		e.RequiredScopes = er.RequiredScopes
	}
	if e.RetryAfter == 0 {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return e
}

// truncate shortens s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
