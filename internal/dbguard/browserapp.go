package dbguard

import (
	"context"

	"github.com/spotoken/spotoken"
)

// PutBrowserApp calls the store's PutBrowserApp under the deadline.
func (g *Guard) PutBrowserApp(ctx context.Context, b *spotoken.BrowserApp) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.PutBrowserApp(ctx, b) })
}

// BrowserApp calls the store's BrowserApp under the deadline.
func (g *Guard) BrowserApp(ctx context.Context, appID string) (*spotoken.BrowserApp, error) {
	return call(ctx, g, func(ctx context.Context) (*spotoken.BrowserApp, error) { return g.store.BrowserApp(ctx, appID) })
}

// DeleteBrowserApp calls the store's DeleteBrowserApp under the deadline.
func (g *Guard) DeleteBrowserApp(ctx context.Context, appID string) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.DeleteBrowserApp(ctx, appID) })
}
