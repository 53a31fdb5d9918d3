package server

// Grant expiry: Spotify's refresh tokens die six months after the user's
// consent, however often they are used. The janitor warns each app ahead of
// time with a connection.expiring event (once per grant), and webhooks that
// ask the user to act carry a fresh connect link.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spotoken/spotoken"
)

// DefaultExpiryWarning is how long before a grant expires that
// connection.expiring is sent.
const DefaultExpiryWarning = 14 * 24 * time.Hour

// DefaultLinkTTL is how long the connect link in a webhook stays valid.
const DefaultLinkTTL = 72 * time.Hour

// expiryBatch is how many expiring grants one query reads.
const expiryBatch = 100

// errAlreadyWarned aborts a warning another replica (or a new consent) made
// unnecessary.
var errAlreadyWarned = errors.New("grant already warned about or replaced")

// WarnExpiring records a connection.expiring event for every active
// connection whose grant expires within Config.ExpiryWarning and that was
// not warned about yet, and returns how many it warned about. Each grant is
// warned about once, whichever replica gets there first; a new consent
// starts a new grant, which is warned about in its turn. Run calls it every
// interval; it does nothing when ExpiryWarning is negative.
func (s *Server) WarnExpiring(ctx context.Context) (int, error) {
	if s.cfg.ExpiryWarning < 0 {
		return 0, nil
	}
	warned := 0
	for range 1000 { // bounded: every pass marks or skips what it read
		now := s.cfg.Now()
		due, err := s.cfg.Store.ExpiringGrants(ctx, now.Add(s.cfg.ExpiryWarning), expiryBatch)
		if err != nil {
			return warned, fmt.Errorf("warn of expiring grants: %w", err)
		}
		for _, d := range due {
			_, err := s.cfg.Store.UpdateConnection(ctx, d.Key, func(c *spotoken.Connection) ([]spotoken.Event, error) {
				if c.State != spotoken.StateActive || !c.ExpiryWarnedAt.IsZero() || !c.GrantExpiresAt.Equal(d.Expiry) {
					return nil, errAlreadyWarned
				}
				c.ExpiryWarnedAt = now
				return []spotoken.Event{spotoken.NewEvent(spotoken.EventConnectionExpiring, d.Key, now, map[string]any{
					"grant_expires_at": c.GrantExpiresAt.UTC(),
					"consented_at":     c.ConsentedAt.UTC(),
					"spotify_user_id":  c.SpotifyUserID,
					"scopes":           c.Scopes,
				})}, nil
			})
			switch {
			case err == nil:
				warned++
				s.log.Info("grant expires soon: app warned", "connection", d.Key.String(), "grant_expires_at", d.Expiry)
			case errors.Is(err, errAlreadyWarned), errors.Is(err, spotoken.ErrNotFound):
			default:
				return warned, fmt.Errorf("warn of expiring grant %s: %w", d.Key, err)
			}
		}
		if len(due) < expiryBatch {
			break
		}
	}
	return warned, nil
}

// ConnectLink mints a connect link for the connection's user to authorize
// again, for the connection's scopes, valid for Config.LinkTTL. Webhooks
// puts one in every connection.expiring and connection.needs_reauth event
// it delivers (see Webhooks.ConnectLink): the link is made at delivery, so
// it is never stored in plaintext.
func (s *Server) ConnectLink(ctx context.Context, key spotoken.ConnectionKey) (ConnectSession, error) {
	app, err := s.cfg.Store.App(ctx, key.AppID)
	if err != nil {
		return ConnectSession{}, err
	}
	var scopes spotoken.Scopes
	if c, err := s.cfg.Store.Connection(ctx, key); err == nil {
		scopes = c.Scopes
	} else if !errors.Is(err, spotoken.ErrNotFound) {
		return ConnectSession{}, err
	}
	return s.mintSession(ctx, app, key.ID, scopes, "", s.cfg.LinkTTL)
}

// linkEvents are the events whose webhook carries a connect link.
var linkEvents = map[spotoken.EventType]bool{
	spotoken.EventConnectionExpiring:    true,
	spotoken.EventConnectionNeedsReauth: true,
}

// withConnectLink returns e's data with connect_url and
// connect_url_expires_at added, for the events that ask the user to act.
func (w *Webhooks) withConnectLink(ctx context.Context, s *webhookSettings, e *spotoken.Event) *spotoken.Event {
	if w.ConnectLink == nil || !linkEvents[e.Type] || e.ConnectionID == "" {
		return e
	}
	data := map[string]any{}
	if len(e.Data) > 0 {
		if err := json.Unmarshal(e.Data, &data); err != nil {
			return e // webhookBody reports it
		}
	}
	sess, err := w.ConnectLink(ctx, spotoken.ConnectionKey{AppID: e.AppID, ID: e.ConnectionID})
	if err != nil {
		s.log.Warn("webhook: no connect link for the event", "app", e.AppID, "event", webhookID(e.ID), "type", string(e.Type), "err", err)
		return e
	}
	data["connect_url"], data["connect_url_expires_at"] = sess.URL, sess.ExpiresAt.UTC()
	b, err := json.Marshal(data)
	if err != nil {
		return e
	}
	out := *e
	out.Data = b
	return &out
}
