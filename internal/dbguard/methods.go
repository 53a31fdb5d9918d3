// One method per method of spotoken.Store, each under Guard.do
// (TestEveryMethodGuarded checks them all).

package dbguard

import (
	"context"
	"time"

	"github.com/spotoken/spotoken"
)

var _ spotoken.Store = (*Guard)(nil)

// call is do for a store method with a result.
func call[T any](ctx context.Context, g *Guard, f func(context.Context) (T, error)) (T, error) {
	var out T
	err := g.do(ctx, func(ctx context.Context) (err error) { out, err = f(ctx); return err })
	return out, err
}

// CreateApp calls the store's CreateApp under the deadline.
func (g *Guard) CreateApp(ctx context.Context, app *spotoken.App) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.CreateApp(ctx, app) })
}

// App calls the store's App under the deadline.
func (g *Guard) App(ctx context.Context, id string) (*spotoken.App, error) {
	return call(ctx, g, func(ctx context.Context) (*spotoken.App, error) { return g.store.App(ctx, id) })
}

// Apps calls the store's Apps under the deadline.
func (g *Guard) Apps(ctx context.Context) ([]*spotoken.App, error) {
	return call(ctx, g, func(ctx context.Context) ([]*spotoken.App, error) { return g.store.Apps(ctx) })
}

// UpdateApp calls the store's UpdateApp under the deadline.
func (g *Guard) UpdateApp(ctx context.Context, id string, fn func(*spotoken.App) error) (*spotoken.App, error) {
	return call(ctx, g, func(ctx context.Context) (*spotoken.App, error) { return g.store.UpdateApp(ctx, id, fn) })
}

// DeleteApp calls the store's DeleteApp under the deadline.
func (g *Guard) DeleteApp(ctx context.Context, id string) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.DeleteApp(ctx, id) })
}

// CreateAPIKey calls the store's CreateAPIKey under the deadline.
func (g *Guard) CreateAPIKey(ctx context.Context, key *spotoken.APIKey) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.CreateAPIKey(ctx, key) })
}

// APIKeyByHash calls the store's APIKeyByHash under the deadline.
func (g *Guard) APIKeyByHash(ctx context.Context, hash [32]byte) (*spotoken.APIKey, error) {
	return call(ctx, g, func(ctx context.Context) (*spotoken.APIKey, error) { return g.store.APIKeyByHash(ctx, hash) })
}

// APIKeys calls the store's APIKeys under the deadline.
func (g *Guard) APIKeys(ctx context.Context, appID string) ([]*spotoken.APIKey, error) {
	return call(ctx, g, func(ctx context.Context) ([]*spotoken.APIKey, error) { return g.store.APIKeys(ctx, appID) })
}

// RevokeAPIKey calls the store's RevokeAPIKey under the deadline.
func (g *Guard) RevokeAPIKey(ctx context.Context, appID, id string, at time.Time) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.RevokeAPIKey(ctx, appID, id, at) })
}

// TouchAPIKey calls the store's TouchAPIKey under the deadline.
func (g *Guard) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.TouchAPIKey(ctx, id, at) })
}

// CreatePending calls the store's CreatePending under the deadline.
func (g *Guard) CreatePending(ctx context.Context, p *spotoken.PendingAuthorization) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.CreatePending(ctx, p) })
}

// ConsumePending calls the store's ConsumePending under the deadline.
func (g *Guard) ConsumePending(ctx context.Context, stateHash [32]byte) (*spotoken.PendingAuthorization, error) {
	return call(ctx, g, func(ctx context.Context) (*spotoken.PendingAuthorization, error) {
		return g.store.ConsumePending(ctx, stateHash)
	})
}

// DeleteExpiredPending calls the store's DeleteExpiredPending under the deadline.
func (g *Guard) DeleteExpiredPending(ctx context.Context, before time.Time) (int, error) {
	return call(ctx, g, func(ctx context.Context) (int, error) { return g.store.DeleteExpiredPending(ctx, before) })
}

// CreateConnection calls the store's CreateConnection under the deadline.
func (g *Guard) CreateConnection(ctx context.Context, c *spotoken.Connection, events ...spotoken.Event) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.CreateConnection(ctx, c, events...) })
}

// Connection calls the store's Connection under the deadline.
func (g *Guard) Connection(ctx context.Context, key spotoken.ConnectionKey) (*spotoken.Connection, error) {
	return call(ctx, g, func(ctx context.Context) (*spotoken.Connection, error) { return g.store.Connection(ctx, key) })
}

// UpdateConnection calls the store's UpdateConnection under the deadline.
func (g *Guard) UpdateConnection(ctx context.Context, key spotoken.ConnectionKey, fn func(c *spotoken.Connection) ([]spotoken.Event, error)) (*spotoken.Connection, error) {
	return call(ctx, g, func(ctx context.Context) (*spotoken.Connection, error) { return g.store.UpdateConnection(ctx, key, fn) })
}

// DeleteConnection calls the store's DeleteConnection under the deadline.
func (g *Guard) DeleteConnection(ctx context.Context, key spotoken.ConnectionKey, events ...spotoken.Event) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.DeleteConnection(ctx, key, events...) })
}

// Connections calls the store's Connections under the deadline.
func (g *Guard) Connections(ctx context.Context, filter spotoken.ConnectionFilter) ([]*spotoken.Connection, error) {
	return call(ctx, g, func(ctx context.Context) ([]*spotoken.Connection, error) { return g.store.Connections(ctx, filter) })
}

// CountConnections calls the store's CountConnections under the deadline.
func (g *Guard) CountConnections(ctx context.Context) ([]spotoken.ConnectionCount, error) {
	return call(ctx, g, func(ctx context.Context) ([]spotoken.ConnectionCount, error) { return g.store.CountConnections(ctx) })
}

// Due calls the store's Due under the deadline.
func (g *Guard) Due(ctx context.Context, before time.Time, limit int) ([]spotoken.DueConnection, error) {
	return call(ctx, g, func(ctx context.Context) ([]spotoken.DueConnection, error) { return g.store.Due(ctx, before, limit) })
}

// ExpiringGrants calls the store's ExpiringGrants under the deadline.
func (g *Guard) ExpiringGrants(ctx context.Context, before time.Time, limit int) ([]spotoken.DueConnection, error) {
	return call(ctx, g, func(ctx context.Context) ([]spotoken.DueConnection, error) {
		return g.store.ExpiringGrants(ctx, before, limit)
	})
}

// CountExpiringGrants calls the store's CountExpiringGrants under the deadline.
func (g *Guard) CountExpiringGrants(ctx context.Context, before time.Time) ([]spotoken.ConnectionCount, error) {
	return call(ctx, g, func(ctx context.Context) ([]spotoken.ConnectionCount, error) {
		return g.store.CountExpiringGrants(ctx, before)
	})
}

// AcquireLease calls the store's AcquireLease under the deadline.
func (g *Guard) AcquireLease(ctx context.Context, key spotoken.ConnectionKey, owner string, ttl time.Duration) (spotoken.Lease, error) {
	return call(ctx, g, func(ctx context.Context) (spotoken.Lease, error) { return g.store.AcquireLease(ctx, key, owner, ttl) })
}

// RenewLease calls the store's RenewLease under the deadline.
func (g *Guard) RenewLease(ctx context.Context, key spotoken.ConnectionKey, owner string, ttl time.Duration) (spotoken.Lease, error) {
	return call(ctx, g, func(ctx context.Context) (spotoken.Lease, error) { return g.store.RenewLease(ctx, key, owner, ttl) })
}

// ReleaseLease calls the store's ReleaseLease under the deadline.
func (g *Guard) ReleaseLease(ctx context.Context, key spotoken.ConnectionKey, owner string) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.ReleaseLease(ctx, key, owner) })
}

// AppendEvents calls the store's AppendEvents under the deadline.
func (g *Guard) AppendEvents(ctx context.Context, events ...spotoken.Event) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.AppendEvents(ctx, events...) })
}

// PendingEvents calls the store's PendingEvents under the deadline.
func (g *Guard) PendingEvents(ctx context.Context, now time.Time, limit int) ([]*spotoken.Event, error) {
	return call(ctx, g, func(ctx context.Context) ([]*spotoken.Event, error) { return g.store.PendingEvents(ctx, now, limit) })
}

// MarkEventDelivered calls the store's MarkEventDelivered under the deadline.
func (g *Guard) MarkEventDelivered(ctx context.Context, id int64, at time.Time) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.MarkEventDelivered(ctx, id, at) })
}

// MarkEventFailed calls the store's MarkEventFailed under the deadline.
func (g *Guard) MarkEventFailed(ctx context.Context, id int64, next time.Time, lastError string) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.MarkEventFailed(ctx, id, next, lastError) })
}

// CreatePendingGrant calls the store's CreatePendingGrant under the deadline.
func (g *Guard) CreatePendingGrant(ctx context.Context, pg *spotoken.PendingGrant) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.CreatePendingGrant(ctx, pg) })
}

// TakePendingGrant calls the store's TakePendingGrant under the deadline.
func (g *Guard) TakePendingGrant(ctx context.Context, key spotoken.ConnectionKey, codeHash [32]byte) (*spotoken.PendingGrant, error) {
	return call(ctx, g, func(ctx context.Context) (*spotoken.PendingGrant, error) {
		return g.store.TakePendingGrant(ctx, key, codeHash)
	})
}

// DeleteExpiredPendingGrants calls the store's DeleteExpiredPendingGrants under the deadline.
func (g *Guard) DeleteExpiredPendingGrants(ctx context.Context, before time.Time) (int, error) {
	return call(ctx, g, func(ctx context.Context) (int, error) { return g.store.DeleteExpiredPendingGrants(ctx, before) })
}

// CreatePendingWithin calls the store's CreatePendingWithin under the deadline.
func (g *Guard) CreatePendingWithin(ctx context.Context, p *spotoken.PendingAuthorization, max int) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.CreatePendingWithin(ctx, p, max) })
}

// CreateWebSession calls the store's CreateWebSession under the deadline.
func (g *Guard) CreateWebSession(ctx context.Context, s *spotoken.WebSession, limits spotoken.WebSessionLimits) (int, error) {
	return call(ctx, g, func(ctx context.Context) (int, error) { return g.store.CreateWebSession(ctx, s, limits) })
}

// WebSession calls the store's WebSession under the deadline.
func (g *Guard) WebSession(ctx context.Context, idHash [32]byte) (*spotoken.WebSession, error) {
	return call(ctx, g, func(ctx context.Context) (*spotoken.WebSession, error) { return g.store.WebSession(ctx, idHash) })
}

// TouchWebSession calls the store's TouchWebSession under the deadline.
func (g *Guard) TouchWebSession(ctx context.Context, idHash [32]byte, at time.Time) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.TouchWebSession(ctx, idHash, at) })
}

// UpdateWebSession calls the store's UpdateWebSession under the deadline.
func (g *Guard) UpdateWebSession(ctx context.Context, idHash [32]byte, fn func(s *spotoken.WebSession) error) (*spotoken.WebSession, error) {
	return call(ctx, g, func(ctx context.Context) (*spotoken.WebSession, error) {
		return g.store.UpdateWebSession(ctx, idHash, fn)
	})
}

// DeleteWebSession calls the store's DeleteWebSession under the deadline.
func (g *Guard) DeleteWebSession(ctx context.Context, idHash [32]byte) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.DeleteWebSession(ctx, idHash) })
}

// DeleteWebSessions calls the store's DeleteWebSessions under the deadline.
func (g *Guard) DeleteWebSessions(ctx context.Context, scope, subject string) (int, error) {
	return call(ctx, g, func(ctx context.Context) (int, error) { return g.store.DeleteWebSessions(ctx, scope, subject) })
}

// DeleteExpiredWebSessions calls the store's DeleteExpiredWebSessions under the deadline.
func (g *Guard) DeleteExpiredWebSessions(ctx context.Context, before time.Time) (int, error) {
	return call(ctx, g, func(ctx context.Context) (int, error) { return g.store.DeleteExpiredWebSessions(ctx, before) })
}

// SetAppEndpoints calls the store's SetAppEndpoints under the deadline.
func (g *Guard) SetAppEndpoints(ctx context.Context, appID string, e spotoken.Endpoints) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.SetAppEndpoints(ctx, appID, e) })
}

// AppEndpoints calls the store's AppEndpoints under the deadline.
func (g *Guard) AppEndpoints(ctx context.Context, appID string) (spotoken.Endpoints, error) {
	return call(ctx, g, func(ctx context.Context) (spotoken.Endpoints, error) { return g.store.AppEndpoints(ctx, appID) })
}

// RateLimitedUntil calls the store's RateLimitedUntil under the deadline.
func (g *Guard) RateLimitedUntil(ctx context.Context, appID string) (time.Time, error) {
	return call(ctx, g, func(ctx context.Context) (time.Time, error) { return g.store.RateLimitedUntil(ctx, appID) })
}

// ExtendRateLimit calls the store's ExtendRateLimit under the deadline.
func (g *Guard) ExtendRateLimit(ctx context.Context, appID string, until time.Time) (time.Time, error) {
	return call(ctx, g, func(ctx context.Context) (time.Time, error) { return g.store.ExtendRateLimit(ctx, appID, until) })
}

// RateLimits calls the store's RateLimits under the deadline.
func (g *Guard) RateLimits(ctx context.Context, after time.Time) ([]spotoken.AppRateLimit, error) {
	return call(ctx, g, func(ctx context.Context) ([]spotoken.AppRateLimit, error) { return g.store.RateLimits(ctx, after) })
}

// CreateAdminKey calls the store's CreateAdminKey under the deadline.
func (g *Guard) CreateAdminKey(ctx context.Context, key *spotoken.AdminKey) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.CreateAdminKey(ctx, key) })
}

// AdminKeyByHash calls the store's AdminKeyByHash under the deadline.
func (g *Guard) AdminKeyByHash(ctx context.Context, hash [32]byte) (*spotoken.AdminKey, error) {
	return call(ctx, g, func(ctx context.Context) (*spotoken.AdminKey, error) { return g.store.AdminKeyByHash(ctx, hash) })
}

// AdminKeys calls the store's AdminKeys under the deadline.
func (g *Guard) AdminKeys(ctx context.Context) ([]*spotoken.AdminKey, error) {
	return call(ctx, g, func(ctx context.Context) ([]*spotoken.AdminKey, error) { return g.store.AdminKeys(ctx) })
}

// RevokeAdminKey calls the store's RevokeAdminKey under the deadline.
func (g *Guard) RevokeAdminKey(ctx context.Context, id string, at time.Time) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.RevokeAdminKey(ctx, id, at) })
}

// TouchAdminKey calls the store's TouchAdminKey under the deadline.
func (g *Guard) TouchAdminKey(ctx context.Context, id string, at time.Time) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.TouchAdminKey(ctx, id, at) })
}

// AppToken calls the store's AppToken under the deadline.
func (g *Guard) AppToken(ctx context.Context, appID string) (*spotoken.AppToken, error) {
	return call(ctx, g, func(ctx context.Context) (*spotoken.AppToken, error) { return g.store.AppToken(ctx, appID) })
}

// AcquireAppTokenLease calls the store's AcquireAppTokenLease under the deadline.
func (g *Guard) AcquireAppTokenLease(ctx context.Context, appID, owner string, ttl time.Duration) (spotoken.Lease, error) {
	return call(ctx, g, func(ctx context.Context) (spotoken.Lease, error) {
		return g.store.AcquireAppTokenLease(ctx, appID, owner, ttl)
	})
}

// SaveAppToken calls the store's SaveAppToken under the deadline.
func (g *Guard) SaveAppToken(ctx context.Context, owner string, t *spotoken.AppToken) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.SaveAppToken(ctx, owner, t) })
}

// ReleaseAppTokenLease calls the store's ReleaseAppTokenLease under the deadline.
func (g *Guard) ReleaseAppTokenLease(ctx context.Context, appID, owner string) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.ReleaseAppTokenLease(ctx, appID, owner) })
}

// Events calls the store's Events under the deadline.
func (g *Guard) Events(ctx context.Context, filter spotoken.EventFilter) ([]*spotoken.Event, error) {
	return call(ctx, g, func(ctx context.Context) ([]*spotoken.Event, error) { return g.store.Events(ctx, filter) })
}

// RedeliverEvent calls the store's RedeliverEvent under the deadline.
func (g *Guard) RedeliverEvent(ctx context.Context, appID string, id int64) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.RedeliverEvent(ctx, appID, id) })
}

// RedeliverEvents calls the store's RedeliverEvents under the deadline.
func (g *Guard) RedeliverEvents(ctx context.Context, appID string, status spotoken.EventStatus) (int, error) {
	return call(ctx, g, func(ctx context.Context) (int, error) { return g.store.RedeliverEvents(ctx, appID, status) })
}

// FindConnections calls the store's FindConnections under the deadline.
func (g *Guard) FindConnections(ctx context.Context, q spotoken.ConnectionQuery) ([]*spotoken.Connection, error) {
	return call(ctx, g, func(ctx context.Context) ([]*spotoken.Connection, error) { return g.store.FindConnections(ctx, q) })
}

// DueUsed calls the store's DueUsed under the deadline.
func (g *Guard) DueUsed(ctx context.Context, q spotoken.DueQuery) ([]spotoken.DueConnection, error) {
	return call(ctx, g, func(ctx context.Context) ([]spotoken.DueConnection, error) { return g.store.DueUsed(ctx, q) })
}

// MarkUsed calls the store's MarkUsed under the deadline.
func (g *Guard) MarkUsed(ctx context.Context, uses []spotoken.ConnectionUse) error {
	return g.do(ctx, func(ctx context.Context) error { return g.store.MarkUsed(ctx, uses) })
}

// CountDue calls the store's CountDue under the deadline.
func (g *Guard) CountDue(ctx context.Context, q spotoken.DueQuery) (int, error) {
	return call(ctx, g, func(ctx context.Context) (int, error) { return g.store.CountDue(ctx, q) })
}
