package dbguard

import (
	"context"
	"time"

	"github.com/spotoken/spotoken"
)

// AppendAudit calls the store's AppendAudit under the deadline, as
// background work (spotoken.Background): its one caller through a guard is
// the audit trail's batch writer, which no request waits for and which
// keeps and retries a batch that ran out of time, so a batch queued behind
// callers' writes does not make callers answer 503.
func (g *Guard) AppendAudit(ctx context.Context, records ...spotoken.AuditRecord) error {
	ctx = spotoken.Background(ctx)
	return g.do(ctx, func(ctx context.Context) error { return g.store.AppendAudit(ctx, records...) })
}

// AuditRecords calls the store's AuditRecords under the deadline.
func (g *Guard) AuditRecords(ctx context.Context, filter spotoken.AuditFilter) ([]*spotoken.AuditRecord, error) {
	return call(ctx, g, func(ctx context.Context) ([]*spotoken.AuditRecord, error) { return g.store.AuditRecords(ctx, filter) })
}

// DeleteAuditBefore calls the store's DeleteAuditBefore under the deadline.
func (g *Guard) DeleteAuditBefore(ctx context.Context, before time.Time, limit int) (int, error) {
	return call(ctx, g, func(ctx context.Context) (int, error) { return g.store.DeleteAuditBefore(ctx, before, limit) })
}

// MarkAudit calls the store's MarkAudit under the deadline.
func (g *Guard) MarkAudit(ctx context.Context, m spotoken.AuditMark) (spotoken.AuditMark, error) {
	return call(ctx, g, func(ctx context.Context) (spotoken.AuditMark, error) { return g.store.MarkAudit(ctx, m) })
}

// AuditMark calls the store's AuditMark under the deadline.
func (g *Guard) AuditMark(ctx context.Context, kind, appID, subject string) (spotoken.AuditMark, error) {
	return call(ctx, g, func(ctx context.Context) (spotoken.AuditMark, error) {
		return g.store.AuditMark(ctx, kind, appID, subject)
	})
}

// CountAuditMarks calls the store's CountAuditMarks under the deadline.
func (g *Guard) CountAuditMarks(ctx context.Context, kind string, since time.Time) ([]spotoken.AuditMarkCount, error) {
	return call(ctx, g, func(ctx context.Context) ([]spotoken.AuditMarkCount, error) {
		return g.store.CountAuditMarks(ctx, kind, since)
	})
}
