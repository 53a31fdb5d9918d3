package dbguard

// The operator's console's reads and the refresh tallies, each under
// Guard.do (TestEveryMethodGuarded checks them too).

import (
	"context"
	"time"

	"github.com/spotoken/spotoken"
)

// BrowseConnections calls the store's BrowseConnections under the deadline.
func (g *Guard) BrowseConnections(ctx context.Context, q spotoken.BrowseQuery) ([]*spotoken.Connection, error) {
	return call(ctx, g, func(ctx context.Context) ([]*spotoken.Connection, error) { return g.store.BrowseConnections(ctx, q) })
}

// CountBackingOff calls the store's CountBackingOff under the deadline.
func (g *Guard) CountBackingOff(ctx context.Context, at time.Time) ([]spotoken.ConnectionCount, error) {
	return call(ctx, g, func(ctx context.Context) ([]spotoken.ConnectionCount, error) { return g.store.CountBackingOff(ctx, at) })
}

// CountUndelivered calls the store's CountUndelivered under the deadline.
func (g *Guard) CountUndelivered(ctx context.Context) ([]spotoken.AppEventCount, error) {
	return call(ctx, g, func(ctx context.Context) ([]spotoken.AppEventCount, error) { return g.store.CountUndelivered(ctx) })
}

// AddRefreshTallies calls the store's AddRefreshTallies under the deadline.
func (g *Guard) AddRefreshTallies(ctx context.Context, tallies ...spotoken.RefreshTally) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.AddRefreshTallies(ctx, tallies...) })
}

// RefreshTallies calls the store's RefreshTallies under the deadline.
func (g *Guard) RefreshTallies(ctx context.Context, appID string, since time.Time) ([]spotoken.RefreshTally, error) {
	return call(ctx, g, func(ctx context.Context) ([]spotoken.RefreshTally, error) {
		return g.store.RefreshTallies(ctx, appID, since)
	})
}

// DeleteRefreshTalliesBefore calls the store's DeleteRefreshTalliesBefore
// under the deadline.
func (g *Guard) DeleteRefreshTalliesBefore(ctx context.Context, before time.Time) (int, error) {
	return call(ctx, g, func(ctx context.Context) (int, error) { return g.store.DeleteRefreshTalliesBefore(ctx, before) })
}
