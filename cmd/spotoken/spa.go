package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/examples/spa"
)

// The example SPA that serve --emulator serves at /spa/, on the demo app's
// backend-for-frontend: same origin as spotoken, so a newcomer runs one
// command and opens one URL.

// demoSPAScopes are what the example asks at sign-in: who the user is,
// what they play, and starting playback (its "Play a track" button).
var demoSPAScopes = spotoken.Scopes{"user-modify-playback-state", "user-read-currently-playing", "user-read-email", "user-read-private"}

// setUpDemoSPA turns the demo app's BFF on for spotoken's own origin (the
// example SPA's), keeping any other origin an operator added with
// 'spotoken apps bff'.
func setUpDemoSPA(ctx context.Context, store spotoken.Store, publicURL string) error {
	self, err := spotoken.NormalizeOrigin(publicURL)
	if err != nil {
		return fmt.Errorf("the demo app's browser app: %w", err)
	}
	b, err := store.BrowserApp(ctx, demoAppID)
	switch {
	case errors.Is(err, spotoken.ErrNotFound):
		b = &spotoken.BrowserApp{AppID: demoAppID, Scopes: demoSPAScopes}
	case err != nil:
		return fmt.Errorf("the demo app's browser app: %w", err)
	}
	if !slices.Contains(b.Origins, self) {
		b.Origins = append([]string{self}, b.Origins...)
	}
	if err := store.PutBrowserApp(ctx, b); err != nil {
		return fmt.Errorf("the demo app's browser app: %w", err)
	}
	return nil
}

// mountExampleSPA serves examples/spa at /spa/.
func mountExampleSPA(m *http.ServeMux) { m.Handle("GET /spa/", spa.Handler("/spa/")) }
