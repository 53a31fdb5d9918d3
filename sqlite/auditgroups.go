package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
)

// The trail's batches are stored as groups (migration 0017): a row of
// audit_groups per run of one connection's records, so that a batch
// writes an index entry per connection it touched rather than per record.
// With a row per record, a thousand connections vending made the batch
// write five times as costly as one connection did: each record's entry
// in audit_connection landed on a page of its own (docs/BENCHMARKS.md,
// issue 16).
const (
	// groupMaxRecords bounds a group's records (and its body, about 300
	// bytes a record).
	groupMaxRecords = 256
	// groupMaxSpan bounds the time between a group's first and last
	// records, in microseconds. AuditRecords relies on it: a group that
	// starts more than this before a time holds no record at or after it.
	groupMaxSpan = int64(time.Second / time.Microsecond)
)

// auditGroup is a run of one connection's records as stored: its first
// record gets ID id, the next id+1, and so on.
type auditGroup struct {
	id                  int64
	appID, connectionID string
	firstAt, lastAt     int64
	n                   int
	body                []byte // groupBody's JSON
}

// stampedAudit is a record of a batch with its time and version as stored.
type stampedAudit struct {
	r       *spotoken.AuditRecord
	at      int64 // unix microseconds
	version int
}

// groupAudit checks records and cuts them into groups: by app and
// connection, in time order (a zero At taken as now, a zero Version as the
// current one), a new group when one would hold more than groupMaxRecords
// or span more than groupMaxSpan. Each connection's groups come together
// and in time order, the connections in (app, connection) order, or in
// the order of their first records when the batch came clustered so
// (clustered); their bodies are written, their IDs not set. records are
// not changed.
func groupAudit(now time.Time, records []spotoken.AuditRecord) ([]auditGroup, error) {
	recs := make([]stampedAudit, len(records))
	for i := range records {
		r := &records[i]
		if r.Action == "" {
			return nil, spotoken.Errorf(spotoken.EInvalid, "audit record %d of the batch has no action", i)
		}
		s := stampedAudit{r: r, at: r.At.UnixMicro(), version: r.Version}
		if r.At.IsZero() {
			s.at = now.UnixMicro()
		}
		if s.version == 0 {
			s.version = spotoken.AuditVersion
		}
		recs[i] = s
	}
	if !clustered(recs) {
		slices.SortStableFunc(recs, func(a, b stampedAudit) int {
			return cmp.Or(strings.Compare(a.r.AppID, b.r.AppID), strings.Compare(a.r.ConnectionID, b.r.ConnectionID), cmp.Compare(a.at, b.at))
		})
	}
	var groups []auditGroup
	var buf []byte // the bodies, one after the other
	for start := 0; start < len(recs); {
		f := recs[start]
		end := start + 1
		for end < len(recs) && end-start < groupMaxRecords && recs[end].r.AppID == f.r.AppID &&
			recs[end].r.ConnectionID == f.r.ConnectionID && recs[end].at-f.at <= groupMaxSpan {
			end++
		}
		var err error
		from := len(buf)
		if buf, err = groupBody(buf, recs[start:end]); err != nil {
			return nil, fmt.Errorf("audit record of connection %s: %w", f.r.ConnectionID, err)
		}
		// The body stays where it is: buf grows into new arrays, and each
		// body keeps the one it was written in.
		groups = append(groups, auditGroup{appID: f.r.AppID, connectionID: f.r.ConnectionID, firstAt: f.at,
			lastAt: recs[end-1].at, n: end - start, body: buf[from:len(buf):len(buf)]})
		start = end
	}
	return groups, nil
}

// clustered reports whether recs already come as groupAudit cuts them,
// but for the order of the connections: each connection's records
// together and in time order. The trail hands its batches so
// (audit.clusterByConnection), and then they need no sort.
func clustered(recs []stampedAudit) bool {
	type key struct{ app, conn string }
	seen := make(map[key]struct{})
	for i := range recs {
		r := recs[i].r
		if i > 0 {
			p := recs[i-1].r
			if r.AppID == p.AppID && r.ConnectionID == p.ConnectionID {
				if recs[i].at < recs[i-1].at {
					return false
				}
				continue
			}
		}
		k := key{r.AppID, r.ConnectionID}
		if _, ok := seen[k]; ok {
			return false // this connection's records are not together
		}
		seen[k] = struct{}{}
	}
	return true
}

// groupBody appends a group's body column to b: a JSON array with an
// element per record. A record that repeats the one before it but for its
// time and request id (a service vending the same token again) is
// [Δat, request_id], Δat in microseconds since that record; any other is
// [version, at, action, rest], rest being packAudit's array. Short
// elements are a third of the size of full ones, and the group's row,
// its WAL frames and its checkpoint shrink with them (migration 0020).
func groupBody(b []byte, recs []stampedAudit) ([]byte, error) {
	b = append(b, '[')
	for i, s := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		if i > 0 && repeats(s, recs[i-1]) {
			b = strconv.AppendInt(b, s.at-recs[i-1].at, 10)
			b = append(b, ',')
			b = appendJSONString(b, s.r.RequestID)
			b = append(b, ']')
			continue
		}
		b = strconv.AppendInt(b, int64(s.version), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, s.at, 10)
		b = append(b, ',')
		b = appendJSONString(b, string(s.r.Action))
		b = append(b, ',')
		var err error
		var prev *spotoken.AuditRecord
		if i > 0 {
			prev = recs[i-1].r
		}
		if b, err = packAudit(b, s.r, prev); err != nil {
			return b, err
		}
		b = append(b, ']')
	}
	return append(b, ']'), nil
}

// repeats reports whether s is p again but for its time (not earlier) and
// request id: a short element in groupBody.
func repeats(s, p stampedAudit) bool {
	r, q := s.r, p.r
	return s.at >= p.at && s.version == p.version && r.Action == q.Action && r.ActorType == q.ActorType && r.ActorID == q.ActorID &&
		r.ActorLabel == q.ActorLabel && r.ClientIP == q.ClientIP && r.UserAgent == q.UserAgent && r.Method == q.Method &&
		r.Route == q.Route && r.Status == q.Status && r.UpstreamStatus == q.UpstreamStatus && r.Outcome == q.Outcome &&
		r.Fingerprint == q.Fingerprint && maps.Equal(r.Detail, q.Detail)
}

// readGroup returns the records of the group stored as id, app, conn and
// body, their IDs id, id+1, ...
func readGroup(id int64, app, conn, body string) ([]*spotoken.AuditRecord, error) {
	var elems [][4]json.RawMessage
	if err := json.Unmarshal([]byte(body), &elems); err != nil {
		return nil, fmt.Errorf("audit group %d: %w", id, err)
	}
	out := make([]*spotoken.AuditRecord, len(elems))
	for i, e := range elems {
		var prev *spotoken.AuditRecord
		if i > 0 {
			prev = out[i-1]
		}
		if e[2] == nil && e[3] == nil { // [Δat, request_id]: prev again
			var delta int64
			if prev == nil || e[1] == nil || json.Unmarshal(e[0], &delta) != nil || delta < 0 {
				return nil, fmt.Errorf("audit group %d, record %d: a short element needs a record before it, a time step and a request id", id, i)
			}
			a := *prev
			a.ID, a.At, a.RequestID, a.Detail = id+int64(i), prev.At.Add(time.Duration(delta)*time.Microsecond), "", maps.Clone(prev.Detail)
			if err := json.Unmarshal(e[1], &a.RequestID); err != nil {
				return nil, fmt.Errorf("audit group %d, record %d request id: %w", id, i, err)
			}
			out[i] = &a
			continue
		}
		a := &spotoken.AuditRecord{ID: id + int64(i), AppID: app, ConnectionID: conn}
		var at int64
		var action string
		if err := json.Unmarshal(e[0], &a.Version); err != nil {
			return nil, fmt.Errorf("audit group %d, record %d version: %w", id, i, err)
		}
		if err := json.Unmarshal(e[1], &at); err != nil {
			return nil, fmt.Errorf("audit group %d, record %d time: %w", id, i, err)
		}
		if err := json.Unmarshal(e[2], &action); err != nil {
			return nil, fmt.Errorf("audit group %d, record %d action: %w", id, i, err)
		}
		a.At, a.Action = time.UnixMicro(at).UTC(), spotoken.AuditAction(action)
		if err := unpackAudit(a, string(e[3]), prev); err != nil {
			return nil, fmt.Errorf("audit group %d, record %d: %w", id, i, err)
		}
		out[i] = a
	}
	return out, nil
}

// auditGroupQuery is the query of the groups that may hold records filter
// selects, in the order AuditRecords lists them (first_at, then id). The
// bounds on first_at are widened by groupMaxSpan where a group starting
// before a bound may hold records after it; mergeAuditGroups applies the
// exact bounds to each record. A connection's groups are found in two
// places (migration 0019), read in one statement, so in one snapshot: the
// index by connection, and the tail's index after indexed_id for those not
// in the index yet.
func auditGroupQuery(filter spotoken.AuditFilter) (string, []any) {
	after := !filter.After.At.IsZero() || filter.After.ID != 0
	lower, upper := !filter.Since.IsZero(), !filter.Until.IsZero()
	var lo, hi int64
	if lower {
		lo = filter.Since.UnixMicro()
	}
	if upper {
		hi = filter.Until.UnixMicro()
	}
	if after {
		at := filter.After.At.UnixMicro()
		if filter.Newest { // records at or before the cursor's time
			if !upper || at+1 < hi {
				upper, hi = true, at+1
			}
		} else if !lower || at > lo { // records at or after it
			lower, lo = true, at
		}
	}
	// where is an arm's condition on first_at, its columns named with p.
	where := func(cond []string, args []any, p string) ([]string, []any) {
		if lower {
			cond, args = append(cond, p+"first_at >= ?"), append(args, lo-groupMaxSpan)
		}
		if upper {
			cond, args = append(cond, p+"first_at < ?"), append(args, hi)
		}
		return cond, args
	}
	order := ` ORDER BY first_at, id`
	if filter.Newest {
		order = ` ORDER BY first_at DESC, id DESC`
	}
	if filter.AppID != "" && filter.ConnectionID != "" {
		scope := []any{filter.AppID, filter.ConnectionID}
		indexed, args := where([]string{"x.app_id = ?", "x.connection_id = ?"}, scope, "x.")
		// A group of the tail may be in the index already, while an
		// indexing is under way (auditindex.go): it is read from there.
		tail, targs := where([]string{"id > (SELECT indexed_id FROM audit_index_state)", "app_id = ?", "connection_id = ?",
			"NOT EXISTS (SELECT 1 FROM audit_group_index i WHERE i.app_id = g.app_id AND i.connection_id = g.connection_id AND i.first_at = g.first_at AND i.id = g.id)"},
			scope, "")
		return `SELECT x.id AS id, g.app_id, g.connection_id, x.first_at AS first_at, g.body
			FROM audit_group_index x CROSS JOIN audit_groups g ON g.id = x.id WHERE ` + strings.Join(indexed, " AND ") + `
			UNION ALL
			SELECT id, app_id, connection_id, first_at, body FROM audit_groups g INDEXED BY audit_groups_tail
			WHERE ` + strings.Join(tail, " AND ") + order, append(args, targs...)
	}
	cond, args := auditScope(filter)
	cond, args = where(cond, args, "")
	q := `SELECT id, app_id, connection_id, first_at, body FROM audit_groups`
	if len(cond) > 0 {
		q += ` WHERE ` + strings.Join(cond, " AND ")
	}
	return q + order, args
}

// auditBefore reports whether a comes before b in (At, ID) order.
func auditBefore(a, b *spotoken.AuditRecord) bool {
	if c := a.At.Compare(b.At); c != 0 {
		return c < 0
	}
	return a.ID < b.ID
}

// auditInFilter reports whether r lies within filter's time bounds and
// after its cursor.
func auditInFilter(r *spotoken.AuditRecord, filter spotoken.AuditFilter) bool {
	if !filter.Since.IsZero() && r.At.Before(filter.Since) || !filter.Until.IsZero() && !r.At.Before(filter.Until) {
		return false
	}
	if filter.After.At.IsZero() && filter.After.ID == 0 {
		return true
	}
	cur := &spotoken.AuditRecord{At: filter.After.At, ID: filter.After.ID}
	if filter.Newest {
		return auditBefore(r, cur)
	}
	return auditBefore(cur, r)
}

// mergeAuditGroups adds the grouped records filter selects to recs (the
// rows audit_records answered, in order, at most limit) and returns the
// first limit of them all in the listing's order. It reads groups in
// order of their first record's time and stops at the first group that
// cannot hold a record among the first limit: one starting after the
// limit-th record so far (oldest first), or ending, at the latest
// groupMaxSpan after its start, before it (newest first).
func mergeAuditGroups(rows *sql.Rows, recs []*spotoken.AuditRecord, filter spotoken.AuditFilter, limit int) ([]*spotoken.AuditRecord, error) {
	defer rows.Close()
	first := func(a, b *spotoken.AuditRecord) int { // the listing's order
		c := cmp.Or(a.At.Compare(b.At), cmp.Compare(a.ID, b.ID))
		if filter.Newest {
			return -c
		}
		return c
	}
	var bound *spotoken.AuditRecord // the limit-th record so far, once there are limit
	settle := func() {
		slices.SortFunc(recs, first)
		if len(recs) >= limit {
			recs, bound = recs[:limit], recs[limit-1]
		}
	}
	settle()
	for rows.Next() {
		var id, firstAt int64
		var app, conn, body string
		if err := rows.Scan(&id, &app, &conn, &firstAt, &body); err != nil {
			return nil, err
		}
		if bound != nil {
			b := bound.At.UnixMicro()
			if !filter.Newest && firstAt > b || filter.Newest && firstAt+groupMaxSpan < b {
				break
			}
		}
		grs, err := readGroup(id, app, conn, body)
		if err != nil {
			return nil, err
		}
		for _, r := range grs {
			if auditInFilter(r, filter) {
				recs = append(recs, r)
			}
		}
		if len(recs) >= 2*limit || bound == nil && len(recs) >= limit {
			settle()
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	settle()
	return recs, nil
}

// deleteAuditGroups deletes, in tx, the oldest groups that ended before
// before, whole, as long as their records number at most budget in all,
// and at least one if deleteOne (so that retention moves on even when
// budget is smaller than a group). It returns how many records went.
func deleteAuditGroups(ctx context.Context, tx *sql.Tx, before time.Time, budget int, deleteOne bool) (int, error) {
	if budget <= 0 {
		return 0, nil
	}
	b := before.UnixMicro()
	rows, err := tx.QueryContext(ctx, `SELECT id, n FROM audit_groups WHERE first_at < ? AND last_at < ? ORDER BY first_at, id LIMIT ?`, b, b, budget)
	if err != nil {
		return 0, err
	}
	var ids []int64
	total := 0
	for rows.Next() {
		var id int64
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return 0, err
		}
		if total+n > budget && !(deleteOne && len(ids) == 0) {
			break
		}
		ids, total = append(ids, id), total+n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `DELETE FROM audit_groups WHERE id = ?`, id); err != nil {
			return 0, err
		}
	}
	return total, nil
}
