package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
)

const auditColumns = `id, version, at, action, app_id, connection_id, actor_type, actor_id, actor_label, client_ip,
	user_agent, request_id, method, route, status, upstream_status, outcome, fingerprint, detail`

// auditInsertColumns are auditColumns without the id, which the store assigns.
const auditInsertColumns = `version, at, action, app_id, connection_id, actor_type, actor_id, actor_label, client_ip,
	user_agent, request_id, method, route, status, upstream_status, outcome, fingerprint, detail`

// auditRowsPerInsert bounds one multi-row INSERT: 18 parameters a row, well
// under SQLite's limit on parameters.
const auditRowsPerInsert = 200

// auditInsert returns the INSERT of n audit records.
func auditInsert(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO audit_records (` + auditInsertColumns + `) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	}
	return b.String()
}

// fullAuditInsert is the INSERT of a full chunk, prepared once when the
// store opens (DB.auditInsert): parsing it costs as much as inserting a few
// dozen rows.
var fullAuditInsert = auditInsert(auditRowsPerInsert)

// insertAudit stores records in tx, stamping a zero At with now.
func (db *DB) insertAudit(ctx context.Context, tx *sql.Tx, now time.Time, records []spotoken.AuditRecord) error {
	for len(records) > 0 {
		n := min(len(records), auditRowsPerInsert)
		args := make([]any, 0, n*18)
		for _, r := range records[:n] {
			at := r.At
			if at.IsZero() {
				at = now
			}
			v := r.Version
			if v == 0 {
				v = spotoken.AuditVersion
			}
			detail, err := detailArg(r.Detail)
			if err != nil {
				return err
			}
			args = append(args, v, at.UnixMicro(), string(r.Action), r.AppID, r.ConnectionID, r.ActorType, r.ActorID, r.ActorLabel,
				r.ClientIP, r.UserAgent, r.RequestID, r.Method, r.Route, r.Status, r.UpstreamStatus, r.Outcome, r.Fingerprint, detail)
		}
		var err error
		if n == auditRowsPerInsert {
			_, err = tx.StmtContext(ctx, db.auditInsert).ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, auditInsert(n), args...)
		}
		if err != nil {
			return fmt.Errorf("insert audit records: %w", translate(err, "", ""))
		}
		records = records[n:]
	}
	return nil
}

// detailArg is a record's detail as stored: a JSON object.
func detailArg(d map[string]string) (string, error) {
	if len(d) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(d)
	return string(b), err
}

// AppendAudit stores records in one transaction.
func (db *DB) AppendAudit(ctx context.Context, records ...spotoken.AuditRecord) error {
	if len(records) == 0 {
		return nil
	}
	now := db.now()
	// Not through db.write: records attached to ctx are for a change, and
	// this is none.
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("append audit: begin: %w", err)
	}
	defer tx.Rollback()
	if err := db.insertAudit(ctx, tx, now, records); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("append audit: commit: %w", err)
	}
	return nil
}

// AuditRecords lists the records filter selects, ordered by (At, ID).
func (db *DB) AuditRecords(ctx context.Context, filter spotoken.AuditFilter) ([]*spotoken.AuditRecord, error) {
	q, args, err := auditQuery(filter)
	if err != nil {
		return nil, fmt.Errorf("audit records: %w", err)
	}
	return list(ctx, db, "audit records", scanAudit, q, args...)
}

// auditQuery is AuditRecords' query for filter and its arguments. It
// searches audit_connection for one connection's records, audit_app for one
// app's, audit_at for every app's.
func auditQuery(filter spotoken.AuditFilter) (string, []any, error) {
	if filter.ConnectionID != "" && filter.AppID == "" {
		return "", nil, spotoken.Errorf(spotoken.EInvalid, "a connection filter needs an app id")
	}
	limit, err := spotoken.PageLimit(filter.Limit)
	if err != nil {
		return "", nil, err
	}
	var where []string
	var args []any
	if filter.AppID != "" {
		where, args = append(where, "app_id = ?"), append(args, filter.AppID)
		if filter.ConnectionID != "" {
			where, args = append(where, "connection_id = ?"), append(args, filter.ConnectionID)
		}
	}
	if !filter.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, filter.Since.UnixMicro())
	}
	if !filter.Until.IsZero() {
		where, args = append(where, "at < ?"), append(args, filter.Until.UnixMicro())
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
		where, args = append(where, "(at, id) "+op+" (?, ?)"), append(args, filter.After.At.UnixMicro(), filter.After.ID)
	}
	q := `SELECT ` + auditColumns + ` FROM audit_records`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	return q + ` ORDER BY ` + order + ` LIMIT ?`, append(args, limit), nil
}

func scanAudit(r *sql.Rows) (*spotoken.AuditRecord, error) {
	var a spotoken.AuditRecord
	var action, detail string
	if err := r.Scan(&a.ID, &a.Version, timeCol{&a.At}, &action, &a.AppID, &a.ConnectionID, &a.ActorType, &a.ActorID,
		&a.ActorLabel, &a.ClientIP, &a.UserAgent, &a.RequestID, &a.Method, &a.Route, &a.Status, &a.UpstreamStatus,
		&a.Outcome, &a.Fingerprint, &detail); err != nil {
		return nil, err
	}
	a.Action = spotoken.AuditAction(action)
	if detail != "" && detail != "{}" {
		if err := json.Unmarshal([]byte(detail), &a.Detail); err != nil {
			return nil, fmt.Errorf("audit record %d detail: %w", a.ID, err)
		}
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
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM audit_records WHERE id IN
			(SELECT id FROM audit_records WHERE at < ? ORDER BY at, id LIMIT ?)`, before.UnixMicro(), limit)
		if err != nil {
			return err
		}
		if n, err = affected(res); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM audit_marks WHERE last_at < ?`, before.UnixMicro())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete audit records: %w", err)
	}
	return int(n), nil
}

const markColumns = `kind, app_id, subject, first_at, last_at`

// MarkAudit records that the mark was seen at m.LastAt and returns it as it
// was before. The write transaction holds SQLite's write lock from its
// first read, so no other writer gets in between the read and the write.
func (db *DB) MarkAudit(ctx context.Context, m spotoken.AuditMark) (spotoken.AuditMark, error) {
	if m.Kind == "" {
		return spotoken.AuditMark{}, fmt.Errorf("mark audit: %w", spotoken.Errorf(spotoken.EInvalid, "a mark needs a kind"))
	}
	at := m.LastAt
	if at.IsZero() {
		at = db.now()
	}
	var prev spotoken.AuditMark
	err := db.write(ctx, func(tx *sql.Tx) error {
		p, err := scanMark(tx.QueryRowContext(ctx, `SELECT `+markColumns+` FROM audit_marks WHERE kind = ? AND app_id = ? AND subject = ?`,
			m.Kind, m.AppID, m.Subject))
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			prev = p
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_marks (`+markColumns+`) VALUES (?1, ?2, ?3, ?4, ?4)
			ON CONFLICT (kind, app_id, subject) DO UPDATE SET last_at = max(last_at, excluded.last_at)`,
			m.Kind, m.AppID, m.Subject, at.UnixMicro())
		return err
	})
	if err != nil {
		return spotoken.AuditMark{}, fmt.Errorf("mark audit: %w", err)
	}
	return prev, nil
}

// AuditMark returns a mark; ErrNotFound if none.
func (db *DB) AuditMark(ctx context.Context, kind, appID, subject string) (spotoken.AuditMark, error) {
	m, err := scanMark(db.r.QueryRowContext(ctx, `SELECT `+markColumns+` FROM audit_marks WHERE kind = ? AND app_id = ? AND subject = ?`,
		kind, appID, subject))
	if errors.Is(err, sql.ErrNoRows) {
		return spotoken.AuditMark{}, spotoken.Errorf(spotoken.ENotFound, "no audit mark %s %s %s", kind, appID, subject)
	}
	if err != nil {
		return spotoken.AuditMark{}, fmt.Errorf("audit mark: %w", err)
	}
	return m, nil
}

func scanMark(row interface{ Scan(...any) error }) (spotoken.AuditMark, error) {
	var m spotoken.AuditMark
	err := row.Scan(&m.Kind, &m.AppID, &m.Subject, timeCol{&m.FirstAt}, timeCol{&m.LastAt})
	return m, err
}

// CountAuditMarks counts the marks of kind last seen at or after since, by app.
func (db *DB) CountAuditMarks(ctx context.Context, kind string, since time.Time) ([]spotoken.AuditMarkCount, error) {
	return queryAll(ctx, db.r, "count audit marks", func(r *sql.Rows) (spotoken.AuditMarkCount, error) {
		var c spotoken.AuditMarkCount
		err := r.Scan(&c.AppID, &c.Count)
		return c, err
	}, `SELECT app_id, count(*) FROM audit_marks WHERE kind = ? AND last_at >= ? GROUP BY app_id ORDER BY app_id`,
		kind, since.UnixMicro())
}
