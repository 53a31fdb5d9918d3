package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/spotoken/spotoken"
)

const eventColumns = `id, type, app_id, connection_id, data, created_at, attempts, next_attempt_at, delivered_at, last_error`

// insertEvents stores events, undelivered and created at now, in tx. The
// store assigns ID, CreatedAt, Attempts, DeliveredAt and LastError; a
// NextAttemptAt holds the first delivery back until then.
func (db *DB) insertEvents(ctx context.Context, tx execer, now time.Time, events []spotoken.Event) error {
	for _, e := range events {
		_, err := tx.ExecContext(ctx, `INSERT INTO events (type, app_id, connection_id, data, created_at, next_attempt_at)
			VALUES (?, ?, ?, ?, ?, ?)`,
			string(e.Type), e.AppID, e.ConnectionID, blobArg(e.Data), now.UnixMicro(), timeArg(e.NextAttemptAt))
		if err != nil {
			return fmt.Errorf("insert event %s: %w", e.Type, translate(err, "", ""))
		}
	}
	return nil
}

// AppendEvents stores events outside a connection change, in one
// transaction, created at the store's clock.
func (db *DB) AppendEvents(ctx context.Context, events ...spotoken.Event) error {
	if len(events) == 0 {
		return nil
	}
	now := db.now()
	err := db.write(ctx, func(tx *sql.Tx) error { return db.insertEvents(ctx, tx, now, events) })
	if err != nil {
		return fmt.Errorf("append events: %w", err)
	}
	return nil
}

// PendingEvents returns up to limit undelivered events whose NextAttemptAt
// is not after now, oldest first, and none if limit is not positive.
func (db *DB) PendingEvents(ctx context.Context, now time.Time, limit int) ([]*spotoken.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	return queryAll(ctx, db.r, "pending events", scanEvent, `SELECT `+eventColumns+` FROM events
		WHERE delivered_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?`, now.UnixMicro(), limit)
}

// MarkEventDelivered records a successful delivery at at; ErrNotFound if
// there is no event id. A second delivery keeps the first time.
func (db *DB) MarkEventDelivered(ctx context.Context, id int64, at time.Time) error {
	err := db.updateEvent(ctx, id, `UPDATE events SET delivered_at = coalesce(delivered_at, ?) WHERE id = ?`, at.UnixMicro(), id)
	if err != nil {
		return fmt.Errorf("mark event delivered: %w", err)
	}
	return nil
}

// MarkEventFailed records a failed attempt and when to try again;
// ErrNotFound if there is no event id.
func (db *DB) MarkEventFailed(ctx context.Context, id int64, next time.Time, lastError string) error {
	err := db.updateEvent(ctx, id, `UPDATE events SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?`,
		timeArg(next), lastError, id)
	if err != nil {
		return fmt.Errorf("mark event failed: %w", err)
	}
	return nil
}

// updateEvent runs an UPDATE of event id; ErrNotFound if it changed no row.
func (db *DB) updateEvent(ctx context.Context, id int64, query string, args ...any) error {
	return db.updateOne(ctx, spotoken.Errorf(spotoken.ENotFound, "event %d not found", id), query, args...)
}
