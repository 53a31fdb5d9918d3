package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/spotoken/spotoken"
)

// BrowserAppPatch changes an app's backend-for-frontend settings (package
// bff, docs/browser-apps.md): a nil field is left as it is. Origins given
// as an empty list turns the BFF off; a BFF that is off is turned on by
// giving origins.
type BrowserAppPatch struct {
	// Origins are the SPA's origins, normalized (NormalizeOrigin).
	Origins *[]string
	// Scopes are asked at sign-in; empty for the app's default scopes.
	Scopes *spotoken.Scopes
	// TokenScopes turn on the token-mediating mode; empty turns it off.
	TokenScopes *spotoken.Scopes
}

// check normalizes the patch's origins and checks its scopes.
func (p *BrowserAppPatch) check() error {
	if p.Origins != nil {
		origins := make([]string, 0, len(*p.Origins))
		for _, raw := range *p.Origins {
			o, err := spotoken.NormalizeOrigin(raw)
			if err != nil {
				return invalid("bff.origins%s", trimField(err))
			}
			if !slices.Contains(origins, o) {
				origins = append(origins, o)
			}
		}
		p.Origins = &origins
	}
	for _, s := range []*spotoken.Scopes{p.Scopes, p.TokenScopes} {
		if s != nil {
			if err := CheckScopes(*s); err != nil {
				return err
			}
			*s = s.Normalize()
		}
	}
	return nil
}

// trimField is err's message without NormalizeOrigin's leading "origin".
func trimField(err error) string {
	msg := spotoken.ErrorMessage(err)
	if len(msg) >= len(spotoken.OriginField) && msg[:len(spotoken.OriginField)] == spotoken.OriginField {
		return msg[len(spotoken.OriginField):]
	}
	return ": " + msg
}

// BrowserApp returns the app's backend-for-frontend settings, nil when its
// BFF is off.
func (s *Service) BrowserApp(ctx context.Context, appID string) (*spotoken.BrowserApp, error) {
	b, err := s.cfg.Store.BrowserApp(ctx, appID)
	if errors.Is(err, spotoken.ErrNotFound) {
		return nil, nil
	}
	return b, err
}

// browserAppChange is a BrowserAppPatch worked out against the app's
// current settings, ready to store.
type browserAppChange struct {
	appID    string
	was, now spotoken.BrowserApp // now has no origins: the BFF turned off
	off      bool                // was on, and is turned off
}

// planBrowserApp works p out against the app's settings, and refuses what
// cannot be stored, before anything is changed.
func (s *Service) planBrowserApp(ctx context.Context, appID string, p BrowserAppPatch) (*browserAppChange, error) {
	old, err := s.BrowserApp(ctx, appID)
	if err != nil {
		return nil, err
	}
	c := &browserAppChange{appID: appID}
	if old != nil {
		c.was = *old
	}
	c.now = c.was
	c.now.AppID = appID
	if p.Origins != nil {
		c.now.Origins = *p.Origins
	}
	if p.Scopes != nil {
		c.now.Scopes = *p.Scopes
	}
	if p.TokenScopes != nil {
		c.now.TokenScopes = *p.TokenScopes
	}
	if len(c.now.Origins) == 0 {
		if old == nil {
			return nil, invalid("bff.origins: the app's BFF is off; give the SPA's origins to turn it on")
		}
		c.off, c.now = true, spotoken.BrowserApp{}
	} else if err := c.now.Validate(); err != nil {
		return nil, invalid("bff.%s", spotoken.ErrorMessage(err))
	}
	return c, nil
}

// apply stores the change.
func (c *browserAppChange) apply(ctx context.Context, store spotoken.BrowserAppStore) error {
	if c.off {
		if err := store.DeleteBrowserApp(ctx, c.appID); err != nil && !errors.Is(err, spotoken.ErrNotFound) {
			return fmt.Errorf("turn off the BFF of app %s: %w", c.appID, err)
		}
	} else if err := store.PutBrowserApp(ctx, &c.now); err != nil {
		return fmt.Errorf("set the BFF of app %s: %w", c.appID, err)
	}
	return nil
}

// changed names the settings the change changes (bff_origins, bff_scopes,
// bff_token_scopes).
func (c *browserAppChange) changed() []string {
	var changed []string
	for _, f := range []struct {
		name    string
		changed bool
	}{
		{"bff_origins", !slices.Equal(c.was.Origins, c.now.Origins)},
		{"bff_scopes", !slices.Equal(c.was.Scopes.Normalize(), c.now.Scopes.Normalize())},
		{"bff_token_scopes", !slices.Equal(c.was.TokenScopes.Normalize(), c.now.TokenScopes.Normalize())},
	} {
		if f.changed {
			changed = append(changed, f.name)
		}
	}
	return changed
}
