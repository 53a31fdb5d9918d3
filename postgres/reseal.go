package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/rowseal"
)

// secretTable describes a table with sealed columns for Reseal.
type secretTable struct {
	name string
	// pk are the primary key columns, the cursor Reseal walks by.
	pk []string
	// extra are further columns that fields needs.
	extra []string
	// secrets are the sealed columns.
	secrets []string
	// fields names the sealed columns of a row, given the values of pk
	// then extra, one field per secret column.
	fields func(vals []any) ([]rowseal.Field, error)
}

// secretTables are every table holding a secret.
var secretTables = []secretTable{
	{
		name: "apps", pk: []string{"id"},
		secrets: []string{"client_secret", "webhook_secret", "previous_client_secret", "previous_webhook_secret"},
		fields: func(v []any) ([]rowseal.Field, error) {
			id, ok := v[0].(string)
			if !ok {
				return nil, fmt.Errorf("apps: id is %T", v[0])
			}
			return []rowseal.Field{rowseal.AppSecret(id), rowseal.WebhookSecret(id),
				rowseal.PreviousAppSecret(id), rowseal.PreviousWebhookSecret(id)}, nil
		},
	},
	{
		name: "app_tokens", pk: []string{"app_id"}, secrets: []string{"access_token"},
		fields: func(v []any) ([]rowseal.Field, error) {
			id, ok := v[0].(string)
			if !ok {
				return nil, fmt.Errorf("app_tokens: app_id is %T", v[0])
			}
			return []rowseal.Field{rowseal.AppToken(id)}, nil
		},
	},
	{
		name: "connections", pk: []string{"app_id", "id"}, secrets: []string{"access_token", "refresh_token"},
		fields: func(v []any) ([]rowseal.Field, error) {
			app, ok1 := v[0].(string)
			id, ok2 := v[1].(string)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("connections: key is %T, %T", v[0], v[1])
			}
			k := spotoken.ConnectionKey{AppID: app, ID: id}
			return []rowseal.Field{rowseal.AccessToken(k), rowseal.RefreshToken(k)}, nil
		},
	},
	{
		name: "pending_authorizations", pk: []string{"state_hash"}, extra: []string{"app_id", "connection_id"},
		secrets: []string{"verifier"},
		fields: func(v []any) ([]rowseal.Field, error) {
			b, ok1 := v[0].([]byte)
			app, ok2 := v[1].(string)
			conn, ok3 := v[2].(string)
			if !ok1 || !ok2 || !ok3 {
				return nil, fmt.Errorf("pending_authorizations: key is %T, %T, %T", v[0], v[1], v[2])
			}
			h, err := hash32(b)
			if err != nil {
				return nil, fmt.Errorf("pending_authorizations: %w", err)
			}
			return []rowseal.Field{rowseal.Verifier(app, conn, h)}, nil
		},
	},
	{
		name: "pending_grants", pk: []string{"code_hash"}, extra: []string{"app_id", "connection_id"},
		secrets: []string{"access_token", "refresh_token"},
		fields: func(v []any) ([]rowseal.Field, error) {
			b, ok1 := v[0].([]byte)
			app, ok2 := v[1].(string)
			conn, ok3 := v[2].(string)
			if !ok1 || !ok2 || !ok3 {
				return nil, fmt.Errorf("pending_grants: key is %T, %T, %T", v[0], v[1], v[2])
			}
			h, err := hash32(b)
			if err != nil {
				return nil, fmt.Errorf("pending_grants: %w", err)
			}
			return []rowseal.Field{rowseal.PendingGrantToken(app, conn, h, "access_token"), rowseal.PendingGrantToken(app, conn, h, "refresh_token")}, nil
		},
	},
	{
		name: "web_sessions", pk: []string{"id_hash"}, extra: []string{"scope", "app_id", "subject"},
		secrets: []string{"csrf", "data"},
		fields: func(v []any) ([]rowseal.Field, error) {
			b, ok1 := v[0].([]byte)
			scope, ok2 := v[1].(string)
			app, ok3 := v[2].(string) // NULL (nil): no app
			subject, ok4 := v[3].(string)
			if !ok1 || !ok2 || (!ok3 && v[2] != nil) || !ok4 {
				return nil, fmt.Errorf("web_sessions: row is %T, %T, %T, %T", v[0], v[1], v[2], v[3])
			}
			h, err := hash32(b)
			if err != nil {
				return nil, fmt.Errorf("web_sessions: %w", err)
			}
			s := &spotoken.WebSession{IDHash: h, Scope: scope, AppID: app, Subject: subject}
			return []rowseal.Field{rowseal.WebSessionCSRF(s), rowseal.WebSessionData(s)}, nil
		},
	},
}

// Reseal re-seals, batch rows per transaction (100 if batch is not
// positive), every secret sealed under a key other than the key ring's
// primary one, while the store stays in use, and returns how many secrets it
// re-sealed. It walks each table with secrets by primary key, locking a
// batch of rows at a time, and writes a column back only where it still
// holds the ciphertext it read, so a concurrent update is never
// overwritten. It does not change connection versions.
func (db *DB) Reseal(ctx context.Context, batch int) (int, error) {
	if batch <= 0 {
		batch = 100
	}
	total := 0
	for _, t := range secretTables {
		n, err := db.resealTable(ctx, t, batch)
		total += n
		if err != nil {
			return total, fmt.Errorf("reseal %s: %w", t.name, err)
		}
	}
	// Everything is under the primary key now: older keys can go.
	return total, db.dropOldKeyChecks(ctx)
}

// resealTable re-seals the secrets of one table, batch rows per transaction.
func (db *DB) resealTable(ctx context.Context, t secretTable, batch int) (int, error) {
	cols := strings.Join(append(append(append([]string{}, t.pk...), t.extra...), t.secrets...), ", ")
	pk := strings.Join(t.pk, ", ")
	// ($2, $3, ...): the cursor, the previous batch's last primary key.
	params := make([]string, len(t.pk))
	for i := range params {
		params[i] = fmt.Sprintf("$%d", i+2)
	}
	first := fmt.Sprintf(`SELECT %s FROM %s ORDER BY %s LIMIT $1 FOR UPDATE`, cols, t.name, pk)
	next := fmt.Sprintf(`SELECT %s FROM %s WHERE (%s) > (%s) ORDER BY %s LIMIT $1 FOR UPDATE`,
		cols, t.name, pk, strings.Join(params, ", "), pk)
	// UPDATE t SET col = $1 WHERE pk1 = $2 ... AND col = $n: only if the
	// column still holds what was read.
	where := make([]string, len(t.pk))
	for i, c := range t.pk {
		where[i] = fmt.Sprintf("%s = $%d", c, i+2)
	}
	update := func(col string) string {
		return fmt.Sprintf(`UPDATE %s SET %s = $1 WHERE %s AND %s = $%d`,
			t.name, col, strings.Join(where, " AND "), col, len(t.pk)+2)
	}

	total := 0
	var cursor []any
	for {
		var rows, resealed int
		err := db.withTx(ctx, func(tx pgx.Tx) error {
			n := 0
			var r pgx.Rows
			var err error
			if cursor == nil {
				r, err = tx.Query(ctx, first, batch)
			} else {
				r, err = tx.Query(ctx, next, append([]any{batch}, cursor...)...)
			}
			if err != nil {
				return err
			}
			all, err := pgx.CollectRows(r, func(row pgx.CollectableRow) ([]any, error) { return row.Values() })
			if err != nil {
				return err
			}
			for _, vals := range all {
				key := vals[:len(t.pk)]
				fields, err := t.fields(vals[:len(t.pk)+len(t.extra)])
				if err != nil {
					return err
				}
				for i, col := range t.secrets {
					old, _ := vals[len(t.pk)+len(t.extra)+i].([]byte)
					ct, changed, err := db.codec.Reseal(fields[i], old)
					if err != nil {
						return err
					}
					if !changed {
						continue
					}
					args := append(append([]any{ct}, key...), old)
					tag, err := tx.Exec(ctx, update(col), args...)
					if err != nil {
						return err
					}
					n += int(tag.RowsAffected())
				}
			}
			rows = len(all)
			if rows > 0 {
				cursor = all[rows-1][:len(t.pk)]
			}
			resealed = n
			return nil
		})
		if err != nil {
			return total, err
		}
		total += resealed
		if rows < batch {
			return total, nil
		}
	}
}
