package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotoken/spotoken"
)

// insertEvents stores events created at now; the store assigns their IDs.
// Attempts, DeliveredAt and LastError start empty; a NextAttemptAt the
// caller set holds the first delivery back.
func (db *DB) insertEvents(ctx context.Context, q querier, now time.Time, events []spotoken.Event) error {
	for _, e := range events {
		if _, err := q.Exec(ctx, `INSERT INTO events (type, app_id, connection_id, data, created_at, next_attempt_at)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			string(e.Type), e.AppID, e.ConnectionID, e.Data, now, tstz(e.NextAttemptAt)); err != nil {
			return fmt.Errorf("insert event: %w", err)
		}
	}
	return nil
}

// AppendEvents stores events outside a connection change, in one
// transaction, with CreatedAt from the store's clock.
func (db *DB) AppendEvents(ctx context.Context, events ...spotoken.Event) error {
	if len(events) == 0 {
		return nil
	}
	now := db.now()
	if err := db.withTx(ctx, func(tx pgx.Tx) error { return db.insertEvents(ctx, tx, now, events) }); err != nil {
		return fmt.Errorf("append events: %w", err)
	}
	return nil
}

const eventCols = `id, type, app_id, connection_id, data, created_at, attempts, next_attempt_at, delivered_at, last_error`

// PendingEvents returns up to limit undelivered events whose NextAttemptAt
// is not after now, oldest first.
func (db *DB) PendingEvents(ctx context.Context, now time.Time, limit int) ([]*spotoken.Event, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT `+eventCols+` FROM events
		WHERE delivered_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at <= $1)
		ORDER BY id LIMIT $2`, tstz(now), limit)
	if err != nil {
		return nil, fmt.Errorf("pending events: %w", err)
	}
	events, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("pending events: %w", err)
	}
	return events, nil
}

// MarkEventDelivered records a successful delivery attempt at at;
// ErrNotFound if there is no event with id.
func (db *DB) MarkEventDelivered(ctx context.Context, id int64, at time.Time) error {
	tag, err := db.pool.Exec(ctx, `UPDATE events SET delivered_at = $2, attempts = attempts + 1 WHERE id = $1`, id, tstz(at))
	if err != nil {
		return fmt.Errorf("mark event delivered: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return spotoken.Errorf(spotoken.ENotFound, "event %d not found", id)
	}
	return nil
}

// MarkEventFailed records a failed attempt, its error, and when to try
// again; ErrNotFound if there is no event with id.
func (db *DB) MarkEventFailed(ctx context.Context, id int64, next time.Time, lastError string) error {
	tag, err := db.pool.Exec(ctx, `UPDATE events SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 WHERE id = $1`,
		id, tstz(next), lastError)
	if err != nil {
		return fmt.Errorf("mark event failed: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return spotoken.Errorf(spotoken.ENotFound, "event %d not found", id)
	}
	return nil
}
