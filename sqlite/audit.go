package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/listing"
)

const auditColumns = `id, version, at, action, app_id, connection_id, actor_type, actor_id, actor_label, client_ip,
	user_agent, request_id, method, route, status, upstream_status, outcome, fingerprint, detail, rest`

// auditInsertColumns are auditColumns without the id, which the store assigns.
const auditInsertColumns = `version, at, action, app_id, connection_id, actor_type, actor_id, actor_label, client_ip,
	user_agent, request_id, method, route, status, upstream_status, outcome, fingerprint, detail`

// auditRowsPerInsert bounds one multi-row INSERT: 18 parameters a row (6
// packed), well under SQLite's limit on parameters.
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

// AppendAudit stores records in one transaction. It is the trail's batch
// write, once a second under load, so it goes through SQLite's C API on a
// connection of its own (auditwrite.go), and stores the records as groups
// (auditgroups.go): a row per run of one connection's records, whose body
// is built before the writer's gate is passed. The lifecycle records
// written with their change (insertAudit) keep a row each; AuditRecords
// reads both.
//
// The batch commits with synchronous=NORMAL: it does not wait for the disk
// (in WAL mode the commit is safe from a crash of the process, not from a
// power failure or an operating-system crash until the next commit that
// waits, which any other write does). The batch is already at risk in
// memory for a flush interval (fail open); every other write but
// MarkUsed's, leases' and the indexing's (auditindex.go) keeps
// synchronous=FULL.
func (db *DB) AppendAudit(ctx context.Context, records ...spotoken.AuditRecord) error {
	if len(records) == 0 {
		return nil
	}
	groups, err := groupAudit(db.now(), records)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	// After callers' writes (writer.go). Not through db.write: records
	// attached to ctx are for a change, and this is none.
	if err := db.gate.enter(spotoken.Background(ctx), true); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	err = db.auditW.write(ctx, groups)
	db.gate.leave()
	if err != nil {
		return fmt.Errorf("append audit: %w", translate(err, "", ""))
	}
	db.askIndex(len(groups)) // auditindex.go
	return nil
}

// packAudit appends the JSON array of r's columns that are not searched
// to b: [actor_type, actor_id, actor_label, client_ip, user_agent,
// request_id, method, route, status, upstream_status, outcome,
// fingerprint, detail]. With prev (the record before r in its group), a
// field equal to prev's is written null: a connection's records share
// their key, address, route and usually token, and a group's body is then
// about a third of its size. unpackAudit reads it.
func packAudit(b []byte, r, prev *spotoken.AuditRecord) ([]byte, error) {
	b = append(b, '[')
	var was [8]string
	if prev != nil {
		was = [...]string{prev.ActorType, prev.ActorID, prev.ActorLabel, prev.ClientIP, prev.UserAgent, prev.RequestID, prev.Method, prev.Route}
	}
	for i, v := range [...]string{r.ActorType, r.ActorID, r.ActorLabel, r.ClientIP, r.UserAgent, r.RequestID, r.Method, r.Route} {
		if i > 0 {
			b = append(b, ',')
		}
		if prev != nil && v == was[i] {
			b = append(b, "null"...)
			continue
		}
		b = appendJSONString(b, v)
	}
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(r.UpstreamStatus), 10)
	b = append(b, ',')
	if prev != nil && r.Outcome == prev.Outcome {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, r.Outcome)
	}
	b = append(b, ',')
	if prev != nil && r.Fingerprint == prev.Fingerprint {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, r.Fingerprint)
	}
	b = append(b, ',')
	switch {
	case len(r.Detail) == 0:
		b = append(b, '{', '}')
	case prev != nil && maps.Equal(r.Detail, prev.Detail):
		b = append(b, "null"...)
	default:
		d, err := json.Marshal(r.Detail)
		if err != nil {
			return b, err
		}
		b = append(b, d...)
	}
	return append(b, ']'), nil
}

// appendJSONString appends s to b as a JSON string. Bytes that are not
// valid UTF-8 are kept as they are; encoding/json reads them as U+FFFD, as
// it would have written them.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// unpackAudit fills a's columns from rest, packAudit's array; a null
// field is prev's (the record before a in its group).
func unpackAudit(a *spotoken.AuditRecord, rest string, prev *spotoken.AuditRecord) error {
	var f []json.RawMessage
	if err := json.Unmarshal([]byte(rest), &f); err != nil {
		return err
	}
	if len(f) != 13 {
		return fmt.Errorf("packed record of %d fields, want 13", len(f))
	}
	into := []any{&a.ActorType, &a.ActorID, &a.ActorLabel, &a.ClientIP, &a.UserAgent, &a.RequestID, &a.Method, &a.Route,
		&a.Status, &a.UpstreamStatus, &a.Outcome, &a.Fingerprint, &a.Detail}
	var from []any
	if prev != nil {
		from = []any{prev.ActorType, prev.ActorID, prev.ActorLabel, prev.ClientIP, prev.UserAgent, prev.RequestID, prev.Method, prev.Route,
			prev.Status, prev.UpstreamStatus, prev.Outcome, prev.Fingerprint, prev.Detail}
	}
	for i, v := range into {
		if string(f[i]) == "null" {
			if from == nil {
				return fmt.Errorf("packed record field %d is null with no record before it", i)
			}
			switch p := v.(type) {
			case *string:
				*p = from[i].(string)
			case *int:
				*p = from[i].(int)
			case *map[string]string:
				*p = maps.Clone(from[i].(map[string]string))
			}
			continue
		}
		if err := json.Unmarshal(f[i], v); err != nil {
			return err
		}
	}
	if len(a.Detail) == 0 {
		a.Detail = nil
	}
	return nil
}

// AuditRecords lists the records filter selects, ordered by (At, ID):
// the rows of audit_records (lifecycle records, and batches written before
// migration 0017) and the groups' records, merged.
func (db *DB) AuditRecords(ctx context.Context, filter spotoken.AuditFilter) ([]*spotoken.AuditRecord, error) {
	q, args, err := auditQuery(filter)
	if err != nil {
		return nil, fmt.Errorf("audit records: %w", err)
	}
	limit, _ := spotoken.PageLimit(filter.Limit) // auditQuery checked it
	gq, gargs := auditGroupQuery(filter)
	return listing.Within(ctx, db.listTimeout, func(ctx context.Context) ([]*spotoken.AuditRecord, error) {
		rows, err := db.stmts.lists.query(ctx, db.r, q, args...)
		recs, err := scanAll(rows, err, "audit records", scanAudit)
		if err != nil {
			return nil, err
		}
		grows, err := db.stmts.lists.query(ctx, db.r, gq, gargs...)
		if err != nil {
			return nil, fmt.Errorf("audit records: %w", err)
		}
		if recs, err = mergeAuditGroups(grows, recs, filter, limit); err != nil {
			return nil, fmt.Errorf("audit records: %w", err)
		}
		return recs, nil
	})
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
	where, args := auditScope(filter)
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

// auditScope is the condition, and its arguments, of filter's app and
// connection: both tables name them alike.
func auditScope(filter spotoken.AuditFilter) (where []string, args []any) {
	if filter.AppID != "" {
		where, args = append(where, "app_id = ?"), append(args, filter.AppID)
		if filter.ConnectionID != "" {
			where, args = append(where, "connection_id = ?"), append(args, filter.ConnectionID)
		}
	}
	return where, args
}

func scanAudit(r *sql.Rows) (*spotoken.AuditRecord, error) {
	var a spotoken.AuditRecord
	var action, detail, rest string
	if err := r.Scan(&a.ID, &a.Version, timeCol{&a.At}, &action, &a.AppID, &a.ConnectionID, &a.ActorType, &a.ActorID,
		&a.ActorLabel, &a.ClientIP, &a.UserAgent, &a.RequestID, &a.Method, &a.Route, &a.Status, &a.UpstreamStatus,
		&a.Outcome, &a.Fingerprint, &detail, &rest); err != nil {
		return nil, err
	}
	a.Action = spotoken.AuditAction(action)
	if rest != "" { // written packed (AppendAudit)
		if err := unpackAudit(&a, rest, nil); err != nil {
			return nil, fmt.Errorf("audit record %d: %w", a.ID, err)
		}
		return &a, nil
	}
	if detail != "" && detail != "{}" {
		if err := json.Unmarshal([]byte(detail), &a.Detail); err != nil {
			return nil, fmt.Errorf("audit record %d detail: %w", a.ID, err)
		}
	}
	return &a, nil
}

// DeleteAuditBefore deletes up to limit records older than before, oldest
// first (the rows of audit_records, then the groups'), and the marks last
// seen before it. A group goes whole, once its last record is older than
// before; when not even one row or group fits in limit, the oldest group
// goes anyway, so retention never stalls (a group holds 256 records at
// most).
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
		g, err := deleteAuditGroups(ctx, tx, before, limit-int(n), n == 0)
		if err != nil {
			return err
		}
		n += int64(g)
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
