package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/rowseal"
)

// sealedTable describes a table with sealed columns, for Reseal.
type sealedTable struct {
	name    string
	key     []string // the primary key: Reseal's cursor
	extra   []string // other columns the fields' associated data names
	columns []string // the sealed columns
	// field names one sealed column of a row, given the row's key values
	// followed by its extra values, as the driver returns them.
	field func(vals []any, column string) (rowseal.Field, error)
}

// sealedTables are every table with secret columns.
var sealedTables = []sealedTable{
	{
		name: "apps", key: []string{"id"},
		columns: []string{"client_secret", "webhook_secret", "previous_client_secret", "previous_webhook_secret"},
		field: func(v []any, column string) (rowseal.Field, error) {
			id, ok := v[0].(string)
			if !ok {
				return rowseal.Field{}, fmt.Errorf("apps.id holds %T", v[0])
			}
			f, ok := rowseal.AppField(id, column)
			if !ok {
				return rowseal.Field{}, fmt.Errorf("apps.%s holds no secret", column)
			}
			return f, nil
		},
	},
	{
		name: "app_tokens", key: []string{"app_id"}, columns: []string{"access_token"},
		field: func(v []any, _ string) (rowseal.Field, error) {
			id, ok := v[0].(string)
			if !ok {
				return rowseal.Field{}, fmt.Errorf("app_tokens.app_id holds %T", v[0])
			}
			return rowseal.AppToken(id), nil
		},
	},
	{
		name: "connections", key: []string{"app_id", "id"}, columns: []string{"access_token", "refresh_token"},
		field: func(v []any, column string) (rowseal.Field, error) {
			app, ok1 := v[0].(string)
			id, ok2 := v[1].(string)
			if !ok1 || !ok2 {
				return rowseal.Field{}, fmt.Errorf("connections key holds %T, %T", v[0], v[1])
			}
			k := spotoken.ConnectionKey{AppID: app, ID: id}
			if column == "access_token" {
				return rowseal.AccessToken(k), nil
			}
			return rowseal.RefreshToken(k), nil
		},
	},
	{
		name: "pending_authorizations", key: []string{"state_hash"}, extra: []string{"app_id", "connection_id"},
		columns: []string{"verifier"},
		field: func(v []any, _ string) (rowseal.Field, error) {
			hash, ok1 := v[0].([]byte)
			app, ok2 := v[1].(string)
			conn, ok3 := v[2].(string)
			if !ok1 || !ok2 || !ok3 || len(hash) != 32 {
				return rowseal.Field{}, fmt.Errorf("pending_authorizations row holds %T, %T, %T", v[0], v[1], v[2])
			}
			return rowseal.Verifier(app, conn, [32]byte(hash)), nil
		},
	},
	{
		name: "pending_grants", key: []string{"code_hash"}, extra: []string{"app_id", "connection_id"},
		columns: []string{"access_token", "refresh_token"},
		field: func(v []any, column string) (rowseal.Field, error) {
			hash, ok1 := v[0].([]byte)
			app, ok2 := v[1].(string)
			conn, ok3 := v[2].(string)
			if !ok1 || !ok2 || !ok3 || len(hash) != 32 {
				return rowseal.Field{}, fmt.Errorf("pending_grants row holds %T, %T, %T", v[0], v[1], v[2])
			}
			return rowseal.PendingGrantToken(app, conn, [32]byte(hash), column), nil
		},
	},
	{
		name: "web_sessions", key: []string{"id_hash"}, extra: []string{"scope", "app_id", "subject"},
		columns: []string{"csrf", "data"},
		field: func(v []any, column string) (rowseal.Field, error) {
			hash, ok1 := v[0].([]byte)
			scope, ok2 := v[1].(string)
			app, ok3 := v[2].(string) // NULL (nil): no app
			subject, ok4 := v[3].(string)
			if !ok1 || !ok2 || (!ok3 && v[2] != nil) || !ok4 || len(hash) != 32 {
				return rowseal.Field{}, fmt.Errorf("web_sessions row holds %T, %T, %T, %T", v[0], v[1], v[2], v[3])
			}
			s := &spotoken.WebSession{IDHash: [32]byte(hash), Scope: scope, AppID: app, Subject: subject}
			if column == "csrf" {
				return rowseal.WebSessionCSRF(s), nil
			}
			return rowseal.WebSessionData(s), nil
		},
	},
}

// defaultBatch is Reseal's batch size when the caller gives none.
const defaultBatch = 100

// Reseal re-seals under the key ring's primary key every secret sealed
// under another key and returns how many it re-sealed. It walks each table
// with sealed columns in primary-key order, batch rows (100 if not
// positive) per write transaction, so other writers get in between batches.
// Each re-sealed column is written back only if it still holds the
// ciphertext that was read, so a concurrent change is never overwritten.
// Connection versions do not change: the secrets are the same.
func (db *DB) Reseal(ctx context.Context, batch int) (int, error) {
	if batch <= 0 {
		batch = defaultBatch
	}
	total := 0
	defer func() {
		if total > 0 {
			db.shred(ctx) // the log's copies of the old ciphertexts
		}
	}()
	for _, t := range sealedTables {
		var cursor []any
		for {
			n, next, err := db.resealBatch(ctx, t, cursor, batch)
			total += n
			if err != nil {
				return total, fmt.Errorf("reseal %s: %w", t.name, err)
			}
			if next == nil {
				break
			}
			cursor = next
		}
	}
	// Everything is under the primary key now: older keys can go.
	return total, db.dropOldKeyChecks(ctx)
}

// resealBatch re-seals up to batch rows of t after cursor (the key of the
// last row done; nil to start) in one write transaction. It returns how many
// secrets it re-sealed and the cursor for the next batch, nil when the table
// is done.
func (db *DB) resealBatch(ctx context.Context, t sealedTable, cursor []any, batch int) (int, []any, error) {
	nk, nx := len(t.key), len(t.extra)
	keys := strings.Join(t.key, ", ")
	query := `SELECT ` + strings.Join(append(append(append([]string{}, t.key...), t.extra...), t.columns...), ", ") +
		` FROM ` + t.name
	args := append([]any{}, cursor...)
	if cursor != nil {
		query += ` WHERE (` + keys + `) > (` + placeholders(nk) + `)`
	}
	query += ` ORDER BY ` + keys + ` LIMIT ?`
	args = append(args, batch)

	var n int
	var next []any
	err := db.write(ctx, func(tx *sql.Tx) error {
		n, next = 0, nil
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		var all [][]any
		for rows.Next() {
			vals := make([]any, nk+nx+len(t.columns))
			ptrs := make([]any, len(vals))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return err
			}
			all = append(all, vals)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}

		where := make([]string, nk)
		for i, k := range t.key {
			where[i] = k + ` = ?`
		}
		for _, vals := range all {
			for i, column := range t.columns {
				old, _ := vals[nk+nx+i].([]byte) // nil for NULL: nothing sealed
				f, err := t.field(vals, column)
				if err != nil {
					return err
				}
				ct, changed, err := db.codec.Reseal(f, old)
				if err != nil {
					return err
				}
				if !changed {
					continue
				}
				res, err := tx.ExecContext(ctx, `UPDATE `+t.name+` SET `+column+` = ? WHERE `+
					strings.Join(where, ` AND `)+` AND `+column+` = ?`,
					append(append([]any{ct}, vals[:nk]...), old)...)
				if err != nil {
					return err
				}
				k, err := affected(res)
				if err != nil {
					return err
				}
				n += int(k)
			}
		}
		if len(all) == batch {
			next = all[len(all)-1][:nk]
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return n, next, nil
}

// placeholders returns n comma-separated question marks.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
