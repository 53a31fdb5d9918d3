package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotoken/spotoken"
)

const auditCols = `id, version, at, action, app_id, connection_id, actor_type, actor_id, actor_label, client_ip,
	user_agent, request_id, method, route, status, upstream_status, outcome, fingerprint, detail`

// auditCopyCols are the columns COPY writes: auditCols without the id.
var auditCopyCols = []string{"version", "at", "action", "app_id", "connection_id", "actor_type", "actor_id", "actor_label",
	"client_ip", "user_agent", "request_id", "method", "route", "status", "upstream_status", "outcome", "fingerprint", "detail"}

// insertAudit stores records through q (a transaction), stamping a zero At
// with now: one COPY, the cheapest way in for a batch.
func (db *DB) insertAudit(ctx context.Context, tx pgx.Tx, now time.Time, records []spotoken.AuditRecord) error {
	rows := make([][]any, len(records))
	for i, r := range records {
		at := r.At
		if at.IsZero() {
			at = now
		}
		v := r.Version
		if v == 0 {
			v = spotoken.AuditVersion
		}
		detail := r.Detail
		if detail == nil {
			detail = map[string]string{}
		}
		rows[i] = []any{int32(v), norm(at), string(r.Action), r.AppID, r.ConnectionID, r.ActorType, r.ActorID, r.ActorLabel,
			r.ClientIP, r.UserAgent, r.RequestID, r.Method, r.Route, int32(r.Status), int32(r.UpstreamStatus), r.Outcome,
			r.Fingerprint, detail}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_records"}, auditCopyCols, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("insert audit records: %w", err)
	}
	return nil
}

// AppendAudit stores records in one transaction.
func (db *DB) AppendAudit(ctx context.Context, records ...spotoken.AuditRecord) error {
	if len(records) == 0 {
		return nil
	}
	now := db.now()
	// Not through withTx: records attached to ctx are for a change, and
	// this is none.
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return db.insertAudit(ctx, tx, now, records) })
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

// AuditRecords lists the records filter selects, ordered by (At, ID).
func (db *DB) AuditRecords(ctx context.Context, filter spotoken.AuditFilter) ([]*spotoken.AuditRecord, error) {
	q, args, err := auditSQL(filter)
	if err != nil {
		return nil, fmt.Errorf("audit records: %w", err)
	}
	return list(ctx, db, "audit records", scanAudit, q, args...)
}

// auditSQL is AuditRecords' query for filter and its arguments. It reads
// audit_connection for one connection's records, audit_app for one app's,
// audit_at for every app's.
func auditSQL(filter spotoken.AuditFilter) (string, []any, error) {
	if filter.ConnectionID != "" && filter.AppID == "" {
		return "", nil, spotoken.Errorf(spotoken.EInvalid, "a connection filter needs an app id")
	}
	limit, err := spotoken.PageLimit(filter.Limit)
	if err != nil {
		return "", nil, err
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if filter.AppID != "" {
		where = append(where, "app_id = "+arg(filter.AppID))
		if filter.ConnectionID != "" {
			where = append(where, "connection_id = "+arg(filter.ConnectionID))
		}
	}
	if !filter.Since.IsZero() {
		where = append(where, "at >= "+arg(norm(filter.Since)))
	}
	if !filter.Until.IsZero() {
		where = append(where, "at < "+arg(norm(filter.Until)))
	}
	order := "at, id"
	if filter.Newest {
		order = "at DESC, id DESC"
	}
	if !filter.After.At.IsZero() || filter.After.ID != 0 {
		op := ">"
		if filter.Newest {
			op = "<"
		}
		where = append(where, "(at, id) "+op+" ("+arg(tstz(filter.After.At))+"::timestamptz, "+arg(filter.After.ID)+"::bigint)")
	}
	q := `SELECT ` + auditCols + ` FROM audit_records`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	return q + ` ORDER BY ` + order + ` LIMIT ` + arg(limit), args, nil
}

// scanAudit reads an audit_records row selected with auditCols.
func scanAudit(row pgx.CollectableRow) (*spotoken.AuditRecord, error) {
	var a spotoken.AuditRecord
	var action string
	var version, status, upstream int32
	if err := row.Scan(&a.ID, &version, &a.At, &action, &a.AppID, &a.ConnectionID, &a.ActorType, &a.ActorID,
		&a.ActorLabel, &a.ClientIP, &a.UserAgent, &a.RequestID, &a.Method, &a.Route, &status, &upstream,
		&a.Outcome, &a.Fingerprint, &a.Detail); err != nil {
		return nil, err
	}
	a.Version, a.Status, a.UpstreamStatus = int(version), int(status), int(upstream)
	a.At, a.Action = a.At.UTC(), spotoken.AuditAction(action)
	if len(a.Detail) == 0 {
		a.Detail = nil
	}
	return &a, nil
}

// DeleteAuditBefore deletes up to limit records older than before, oldest
// first, and the marks last seen before it.
func (db *DB) DeleteAuditBefore(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM audit_records WHERE id IN
			(SELECT id FROM audit_records WHERE at < $1 ORDER BY at, id LIMIT $2)`, norm(before), limit)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, `DELETE FROM audit_marks WHERE last_at < $1`, norm(before))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete audit records: %w", err)
	}
	return int(n), nil
}

const markCols = `kind, app_id, subject, first_at, last_at`

// MarkAudit records that the mark was seen at m.LastAt and returns it as it
// was before. The insert either creates the row (nothing before) or
// conflicts; then the row is locked and read, and moved forward, in the
// same transaction, so of concurrent callers exactly one sees no mark.
func (db *DB) MarkAudit(ctx context.Context, m spotoken.AuditMark) (spotoken.AuditMark, error) {
	if m.Kind == "" {
		return spotoken.AuditMark{}, fmt.Errorf("mark audit: %w", spotoken.Errorf(spotoken.EInvalid, "a mark needs a kind"))
	}
	at := norm(m.LastAt)
	if at.IsZero() {
		at = db.now()
	}
	var prev spotoken.AuditMark
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		prev = spotoken.AuditMark{}
		tag, err := tx.Exec(ctx, `INSERT INTO audit_marks (`+markCols+`) VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING`,
			m.Kind, m.AppID, m.Subject, at)
		if err != nil || tag.RowsAffected() == 1 {
			return err
		}
		if prev, err = scanMark(tx.QueryRow(ctx, `SELECT `+markCols+` FROM audit_marks
			WHERE kind = $1 AND app_id = $2 AND subject = $3 FOR UPDATE`, m.Kind, m.AppID, m.Subject)); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE audit_marks SET last_at = greatest(last_at, $4) WHERE kind = $1 AND app_id = $2 AND subject = $3`,
			m.Kind, m.AppID, m.Subject, at)
		return err
	})
	if err != nil {
		return spotoken.AuditMark{}, fmt.Errorf("mark audit: %w", err)
	}
	return prev, nil
}

// AuditMark returns a mark; ErrNotFound if none.
func (db *DB) AuditMark(ctx context.Context, kind, appID, subject string) (spotoken.AuditMark, error) {
	m, err := scanMark(db.pool.QueryRow(ctx, `SELECT `+markCols+` FROM audit_marks WHERE kind = $1 AND app_id = $2 AND subject = $3`,
		kind, appID, subject))
	if errors.Is(err, pgx.ErrNoRows) {
		return spotoken.AuditMark{}, spotoken.Errorf(spotoken.ENotFound, "no audit mark %s %s %s", kind, appID, subject)
	}
	if err != nil {
		return spotoken.AuditMark{}, fmt.Errorf("audit mark: %w", err)
	}
	return m, nil
}

func scanMark(row scanner) (spotoken.AuditMark, error) {
	var m spotoken.AuditMark
	if err := row.Scan(&m.Kind, &m.AppID, &m.Subject, &m.FirstAt, &m.LastAt); err != nil {
		return m, err
	}
	m.FirstAt, m.LastAt = m.FirstAt.UTC(), m.LastAt.UTC()
	return m, nil
}

// CountAuditMarks counts the marks of kind last seen at or after since, by app.
func (db *DB) CountAuditMarks(ctx context.Context, kind string, since time.Time) ([]spotoken.AuditMarkCount, error) {
	rows, err := db.pool.Query(ctx, `SELECT app_id, count(*) FROM audit_marks WHERE kind = $1 AND last_at >= $2
		GROUP BY app_id ORDER BY app_id`, kind, norm(since))
	if err != nil {
		return nil, fmt.Errorf("count audit marks: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (spotoken.AuditMarkCount, error) {
		var c spotoken.AuditMarkCount
		var n int64
		err := row.Scan(&c.AppID, &n)
		c.Count = int(n)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("count audit marks: %w", err)
	}
	return out, nil
}
