package server

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/spotoken/spotoken"
)

// The admin API's answers. Like every view, they hold no token and no
// secret, except the once-shown new ones (a webhook secret, an API key)
// in the answers that create them.

// ConnectionCounts counts an app's connections by state.
type ConnectionCounts struct {
	Active      int `json:"active"`
	NeedsReauth int `json:"needs_reauth"`
	Revoked     int `json:"revoked"`
}

// AppView is an app as the admin API shows it: whether it has secrets and
// whether their rotation is under way, never the secrets.
type AppView struct {
	ID       string `json:"id"`
	ClientID string `json:"client_id"`
	// ClientType is "confidential" (a client secret) or "public" (PKCE alone).
	ClientType string `json:"client_type"`
	// ClientSecretRotating: a previous client secret is kept as the
	// fallback until it is retired.
	ClientSecretRotating bool            `json:"client_secret_rotating"`
	RedirectURIs         []string        `json:"redirect_uris"`
	DefaultScopes        spotoken.Scopes `json:"default_scopes"`
	ReturnToOrigins      []string        `json:"return_to_origins"`
	WebhookURL           string          `json:"webhook_url"`
	WebhookSecretSet     bool            `json:"webhook_secret_set"`
	// WebhookSecretRotating: deliveries carry a second signature, under the
	// previous webhook secret, until it is retired.
	WebhookSecretRotating bool             `json:"webhook_secret_rotating"`
	Connections           ConnectionCounts `json:"connections"`
	// RateLimitedUntil is when the app's rate-limit window at Spotify's
	// token endpoint ends, while it lasts.
	RateLimitedUntil *time.Time `json:"rate_limited_until,omitempty"`
	// BFF is the app's backend-for-frontend, when it is on.
	BFF       *BrowserAppView `json:"bff,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// BrowserAppView is an app's backend-for-frontend settings (see
// docs/browser-apps.md).
type BrowserAppView struct {
	// Origins are the SPA's origins.
	Origins []string `json:"origins"`
	// Scopes are asked at sign-in; empty for the app's default scopes.
	Scopes spotoken.Scopes `json:"scopes"`
	// TokenScopes, when not empty, turn on the token-mediating mode.
	TokenScopes spotoken.Scopes `json:"token_scopes"`
}

// NewBrowserAppView returns b's view; nil for nil (the BFF is off).
func NewBrowserAppView(b *spotoken.BrowserApp) *BrowserAppView {
	if b == nil {
		return nil
	}
	return &BrowserAppView{Origins: nonNilList(b.Origins), Scopes: spotoken.Scopes(nonNilList(b.Scopes)),
		TokenScopes: spotoken.Scopes(nonNilList(b.TokenScopes))}
}

// NewAppView returns a's view with its connection counts.
func NewAppView(a *spotoken.App, counts ConnectionCounts) AppView {
	typ := "public"
	if a.ClientSecret != "" {
		typ = "confidential"
	}
	return AppView{
		ID: a.ID, ClientID: a.ClientID, ClientType: typ, ClientSecretRotating: a.PreviousClientSecret != "",
		RedirectURIs: nonNilList(a.RedirectURIs), DefaultScopes: spotoken.Scopes(nonNilList(a.DefaultScopes)),
		ReturnToOrigins: nonNilList(a.ReturnToOrigins), WebhookURL: a.WebhookURL, WebhookSecretSet: a.WebhookSecret != "",
		WebhookSecretRotating: a.PreviousWebhookSecret != "", Connections: counts,
		CreatedAt: a.CreatedAt.UTC(), UpdatedAt: a.UpdatedAt.UTC(),
	}
}

func nonNilList[S ~[]string](s S) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// AppList is every app.
type AppList struct {
	Apps []AppView `json:"apps"`
}

// AppChange answers the admin calls that change an app: the app as it is
// now and, when one was made, its new webhook secret, shown this once.
type AppChange struct {
	App AppView `json:"app"`
	// WebhookSecret is the app's new webhook secret ("whsec_…"): give it
	// to the webhook's receiver now; it is not shown again.
	WebhookSecret string `json:"webhook_secret,omitempty"`
	// Changed names the settings the call changed.
	Changed []string `json:"changed,omitempty"`
	// Redelivered counts failed events made due at once because the
	// webhook URL or secret changed.
	Redelivered int `json:"redelivered,omitempty"`
}

// APIKeyView is an API key as listed: never the key or its hash.
type APIKeyView struct {
	ID         string     `json:"id"`
	AppID      string     `json:"app_id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// NewAPIKeyView returns k's view.
func NewAPIKeyView(k *spotoken.APIKey) APIKeyView {
	return APIKeyView{ID: k.ID, AppID: k.AppID, Name: k.Name, Prefix: k.Prefix, CreatedAt: k.CreatedAt.UTC(),
		LastUsedAt: optTime(k.LastUsedAt), RevokedAt: optTime(k.RevokedAt)}
}

// APIKeyList is an app's API keys, oldest first.
type APIKeyList struct {
	APIKeys []APIKeyView `json:"api_keys"`
}

// NewAPIKey answers the creation of an API key: the key itself, shown
// this once.
type NewAPIKey struct {
	APIKey APIKeyView `json:"api_key"`
	Key    string     `json:"key"`
}

// AdminKeyView is an admin key as listed: never the key or its hash.
type AdminKeyView struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// AdminKeyList is every admin key, oldest first.
type AdminKeyList struct {
	AdminKeys []AdminKeyView `json:"admin_keys"`
}

// EventView is an event of the outbox and where its delivery stands.
type EventView struct {
	// ID is the event's webhook-id, "evt_" and a number.
	ID           string               `json:"id"`
	Type         spotoken.EventType   `json:"type"`
	ConnectionID string               `json:"connection_id,omitempty"`
	Status       spotoken.EventStatus `json:"status"`
	// Attempts counts delivery attempts, and rounds held back behind an
	// earlier failed event of the app.
	Attempts      int        `json:"attempts"`
	CreatedAt     time.Time  `json:"created_at"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	// Data is the event's payload as delivered (no connect link: those are
	// minted for each delivery).
	Data map[string]any `json:"data"`
}

// NewEventView returns e's view.
func NewEventView(e *spotoken.Event) EventView {
	data := map[string]any{}
	if len(e.Data) > 0 {
		_ = json.Unmarshal(e.Data, &data)
	}
	v := EventView{ID: webhookID(e.ID), Type: e.Type, ConnectionID: e.ConnectionID, Status: e.Status(), Attempts: e.Attempts,
		CreatedAt: e.CreatedAt.UTC(), DeliveredAt: optTime(e.DeliveredAt), LastError: e.LastError, Data: data}
	if v.Status == spotoken.EventPending || v.Status == spotoken.EventFailed {
		v.NextAttemptAt = optTime(e.NextAttemptAt)
		if v.NextAttemptAt == nil {
			c := e.CreatedAt.UTC()
			v.NextAttemptAt = &c // due since it was made
		}
	}
	return v
}

// parseEventID reads an event id as the admin API takes it: "evt_N" (the
// webhook-id) or N.
func parseEventID(s string) (int64, bool) {
	if len(s) > 4 && s[:4] == "evt_" {
		s = s[4:]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

// EventList is a page of an app's events, newest first; NextCursor, when
// set, is the cursor parameter of the next page.
type EventList struct {
	Events     []EventView `json:"events"`
	NextCursor string      `json:"next_cursor,omitempty"`
}

// Redelivery answers a redelivery: how many events were made due again.
type Redelivery struct {
	Redelivered int `json:"redelivered"`
}

// AdminConnectionView is a connection as the admin API shows it: its app,
// and its refresh state; never a token.
type AdminConnectionView struct {
	AppID          string          `json:"app_id"`
	ID             string          `json:"id"`
	State          spotoken.State  `json:"state"`
	Scopes         spotoken.Scopes `json:"scopes"`
	SpotifyUserID  string          `json:"spotify_user_id,omitempty"`
	DisplayName    string          `json:"display_name,omitempty"`
	ExpiresAt      *time.Time      `json:"expires_at,omitempty"`
	LastRefreshAt  *time.Time      `json:"last_refresh_at,omitempty"`
	LastErrorCode  string          `json:"last_error_code,omitempty"`
	ConsentedAt    *time.Time      `json:"consented_at,omitempty"`
	GrantExpiresAt *time.Time      `json:"grant_expires_at,omitempty"`
	// ConsecutiveFailures counts transient refresh failures since the
	// last success; NextAttemptAt, when set, is when refreshing resumes.
	ConsecutiveFailures int        `json:"consecutive_failures"`
	NextAttemptAt       *time.Time `json:"next_attempt_at,omitempty"`
	// RateLimitedUntil is when the app's rate-limit window at Spotify's
	// token endpoint ends, while it lasts: no refresh before it.
	RateLimitedUntil *time.Time `json:"rate_limited_until,omitempty"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
}

// NewAdminConnectionView returns c's view.
func NewAdminConnectionView(c *spotoken.Connection) AdminConnectionView {
	v := NewConnectionView(c)
	return AdminConnectionView{
		AppID: c.AppID, ID: v.ID, State: v.State, Scopes: v.Scopes, SpotifyUserID: v.SpotifyUserID, DisplayName: v.DisplayName,
		ExpiresAt: v.ExpiresAt, LastRefreshAt: v.LastRefreshAt, LastErrorCode: v.LastErrorCode, ConsentedAt: v.ConsentedAt,
		GrantExpiresAt: v.GrantExpiresAt, ConsecutiveFailures: c.ConsecutiveFailures, NextAttemptAt: optTime(c.NextAttemptAt),
		CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt,
	}
}

// AdminConnectionList is a page of connections across apps.
type AdminConnectionList struct {
	Connections []AdminConnectionView `json:"connections"`
	NextCursor  string                `json:"next_cursor,omitempty"`
}
