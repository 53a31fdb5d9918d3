package sqlite

// The operator's stores: admin credentials, apps' client-credentials tokens,
// the outbox as a delivery log, and the search of connections across apps.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/rowseal"
)

const adminKeyColumns = `id, name, prefix, hash, created_at, last_used_at, revoked_at`

// CreateAdminKey stores a new admin key, setting its CreatedAt from the
// store's clock; ErrConflict if its ID or hash exists.
func (db *DB) CreateAdminKey(ctx context.Context, key *spotoken.AdminKey) error {
	now := db.now()
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO admin_keys (`+adminKeyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			key.ID, key.Name, key.Prefix, key.Hash[:], now.UnixMicro(), timeArg(key.LastUsedAt), timeArg(key.RevokedAt))
		return translate(err, "admin key already exists", "")
	})
	if err != nil {
		return fmt.Errorf("create admin key: %w", err)
	}
	key.CreatedAt = now
	return nil
}

// AdminKeyByHash finds an admin key, revoked or not, by the SHA-256 of its
// value; ErrNotFound if none.
func (db *DB) AdminKeyByHash(ctx context.Context, hash [32]byte) (*spotoken.AdminKey, error) {
	k, err := scanAdminKey(db.r.QueryRowContext(ctx, `SELECT `+adminKeyColumns+` FROM admin_keys WHERE hash = ?`, hash[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, spotoken.Errorf(spotoken.ENotFound, "admin key not found")
	}
	if err != nil {
		return nil, fmt.Errorf("admin key by hash: %w", err)
	}
	return k, nil
}

// AdminKeys lists every admin key, oldest first.
func (db *DB) AdminKeys(ctx context.Context) ([]*spotoken.AdminKey, error) {
	return queryAll(ctx, db.r, "admin keys", func(r *sql.Rows) (*spotoken.AdminKey, error) { return scanAdminKey(r) },
		`SELECT `+adminKeyColumns+` FROM admin_keys ORDER BY created_at, rowid`)
}

// RevokeAdminKey marks the admin key revoked at at; ErrNotFound if no admin
// key has id. Revoking twice keeps the first time.
func (db *DB) RevokeAdminKey(ctx context.Context, id string, at time.Time) error {
	err := db.updateOne(ctx, spotoken.Errorf(spotoken.ENotFound, "admin key %q not found", id),
		`UPDATE admin_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?`, at.UnixMicro(), id)
	if err != nil {
		return fmt.Errorf("revoke admin key: %w", err)
	}
	return nil
}

// TouchAdminKey records that the admin key was used at at; the recorded time
// never moves backwards. ErrNotFound if no admin key has id.
func (db *DB) TouchAdminKey(ctx context.Context, id string, at time.Time) error {
	err := db.updateOne(ctx, spotoken.Errorf(spotoken.ENotFound, "admin key %q not found", id),
		`UPDATE admin_keys SET last_used_at = max(coalesce(last_used_at, ?1), ?1) WHERE id = ?2`, at.UnixMicro(), id)
	if err != nil {
		return fmt.Errorf("touch admin key: %w", err)
	}
	return nil
}

// updateOne runs an UPDATE in a write transaction and answers missing when
// it changed no row.
func (db *DB) updateOne(ctx context.Context, missing error, query string, args ...any) error {
	return db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		if n, err := affected(res); err != nil {
			return err
		} else if n == 0 {
			return missing
		}
		return nil
	})
}

func scanAdminKey(row interface{ Scan(...any) error }) (*spotoken.AdminKey, error) {
	var k spotoken.AdminKey
	if err := row.Scan(&k.ID, &k.Name, &k.Prefix, hashCol{&k.Hash},
		timeCol{&k.CreatedAt}, timeCol{&k.LastUsedAt}, timeCol{&k.RevokedAt}); err != nil {
		return nil, err
	}
	return &k, nil
}

const appTokenColumns = `app_id, client_id, access_token, expires_at, version, lease_owner, lease_expires_at, updated_at`

// AppToken returns the app's token row; ErrNotFound if the app has none.
func (db *DB) AppToken(ctx context.Context, appID string) (*spotoken.AppToken, error) {
	var t spotoken.AppToken
	var sealed []byte
	err := db.r.QueryRowContext(ctx, `SELECT `+appTokenColumns+` FROM app_tokens WHERE app_id = ?`, appID).Scan(
		&t.AppID, &t.ClientID, &sealed, timeCol{&t.Expiry}, &t.Version,
		nullString{&t.Lease.Owner}, timeCol{&t.Lease.ExpiresAt}, timeCol{&t.UpdatedAt})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, spotoken.Errorf(spotoken.ENotFound, "app %q has no app token", appID)
	}
	if err != nil {
		return nil, fmt.Errorf("app token %s: %w", appID, err)
	}
	if t.AccessToken, err = db.codec.Open(rowseal.AppToken(appID), sealed); err != nil {
		return nil, fmt.Errorf("app token %s: %w", appID, err)
	}
	return &t, nil
}

// AcquireAppTokenLease gives owner the app token's lease for ttl from the
// store's clock if nobody holds it, the holder's lease expired, or owner
// holds it already; ErrLeaseHeld otherwise. The app's row is made if it has
// none; ErrNotFound if the app does not exist.
func (db *DB) AcquireAppTokenLease(ctx context.Context, appID, owner string, ttl time.Duration) (spotoken.Lease, error) {
	if owner == "" {
		return spotoken.Lease{}, fmt.Errorf("acquire app token lease: %w", spotoken.Errorf(spotoken.EInvalid, "lease owner is empty"))
	}
	now := db.now()
	lease := spotoken.Lease{Owner: owner, ExpiresAt: stored(now.Add(ttl))}
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO app_tokens (app_id, lease_owner, lease_expires_at, updated_at)
			VALUES (?1, ?2, ?3, ?4)
			ON CONFLICT (app_id) DO UPDATE SET lease_owner = ?2, lease_expires_at = ?3
			WHERE lease_owner IS NULL OR lease_owner = ?2 OR lease_expires_at <= ?4`,
			appID, owner, lease.ExpiresAt.UnixMicro(), now.UnixMicro())
		if err != nil {
			return translate(err, "", fmt.Sprintf("app %q not found", appID))
		}
		if n, err := affected(res); err != nil || n == 1 {
			return err
		}
		return spotoken.Errorf(spotoken.ELeaseHeld, "lease on the app token of %s held by another owner", appID)
	})
	if err != nil {
		return spotoken.Lease{}, fmt.Errorf("acquire app token lease: %w", err)
	}
	return lease, nil
}

// SaveAppToken stores t as its app's token and increments the row's
// version, if owner holds the app token's unexpired lease; ErrLeaseLost
// otherwise.
func (db *DB) SaveAppToken(ctx context.Context, owner string, t *spotoken.AppToken) error {
	sealed, err := db.codec.Seal(rowseal.AppToken(t.AppID), t.AccessToken)
	if err != nil {
		return fmt.Errorf("save app token: %w", err)
	}
	now := db.now()
	err = db.updateOne(ctx, spotoken.Errorf(spotoken.ELeaseLost, "lease on the app token of %s not held by this owner", t.AppID),
		`UPDATE app_tokens SET client_id = ?, access_token = ?, expires_at = ?, version = version + 1, updated_at = ?
			WHERE app_id = ? AND lease_owner = ? AND lease_expires_at > ?`,
		t.ClientID, blobArg(sealed), timeArg(t.Expiry), now.UnixMicro(), t.AppID, owner, now.UnixMicro())
	if err != nil {
		return fmt.Errorf("save app token: %w", err)
	}
	return nil
}

// ReleaseAppTokenLease gives up owner's unexpired lease; ErrLeaseLost if
// owner does not hold it, ErrNotFound if the app has no token row.
func (db *DB) ReleaseAppTokenLease(ctx context.Context, appID, owner string) error {
	now := db.now()
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE app_tokens SET lease_owner = NULL, lease_expires_at = NULL
			WHERE app_id = ? AND lease_owner = ? AND lease_expires_at > ?`, appID, owner, now.UnixMicro())
		if err != nil {
			return err
		}
		if n, err := affected(res); err != nil || n == 1 {
			return err
		}
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM app_tokens WHERE app_id = ?`, appID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return spotoken.Errorf(spotoken.ENotFound, "app %q has no app token", appID)
		} else if err != nil {
			return err
		}
		return spotoken.Errorf(spotoken.ELeaseLost, "lease on the app token of %s not held by this owner", appID)
	})
	if err != nil {
		return fmt.Errorf("release app token lease: %w", err)
	}
	return nil
}

// eventStatusSQL is the condition on an events row that status means.
func eventStatusSQL(status spotoken.EventStatus) (string, error) {
	gaveUp := fmt.Sprint(spotoken.EventGaveUpAt.UnixMicro())
	switch status {
	case spotoken.EventDelivered:
		return `delivered_at IS NOT NULL`, nil
	case spotoken.EventGaveUp:
		return `delivered_at IS NULL AND next_attempt_at >= ` + gaveUp, nil
	case spotoken.EventFailed:
		return `delivered_at IS NULL AND attempts > 0 AND (next_attempt_at IS NULL OR next_attempt_at < ` + gaveUp + `)`, nil
	case spotoken.EventPending:
		return `delivered_at IS NULL AND attempts = 0 AND (next_attempt_at IS NULL OR next_attempt_at < ` + gaveUp + `)`, nil
	}
	return "", spotoken.Errorf(spotoken.EInvalid, "event status %q is not pending, failed, gave_up or delivered", status)
}

// Events lists an app's events as filter selects, newest first.
func (db *DB) Events(ctx context.Context, filter spotoken.EventFilter) ([]*spotoken.Event, error) {
	query, args, err := eventsQuery(filter)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return list(ctx, db, "events", scanEvent, query, args...)
}

// eventsQuery is Events' query for filter and its arguments. It searches
// events_app, or events_connection for one connection's events.
func eventsQuery(filter spotoken.EventFilter) (string, []any, error) {
	if filter.AppID == "" {
		return "", nil, spotoken.Errorf(spotoken.EInvalid, "event filter has no app id")
	}
	where, args := []string{`app_id = ?`}, []any{filter.AppID}
	if filter.ConnectionID != "" {
		where, args = append(where, `connection_id = ?`), append(args, filter.ConnectionID)
	}
	if filter.Status != "" {
		cond, err := eventStatusSQL(filter.Status)
		if err != nil {
			return "", nil, err
		}
		where = append(where, cond)
	}
	if filter.Before > 0 {
		where, args = append(where, `id < ?`), append(args, filter.Before)
	}
	limit, err := spotoken.PageLimit(filter.Limit)
	if err != nil {
		return "", nil, err
	}
	return `SELECT ` + eventColumns + ` FROM events WHERE ` + strings.Join(where, ` AND `) + ` ORDER BY id DESC LIMIT ?`,
		append(args, limit), nil
}

// scanEvent scans one row of eventColumns.
func scanEvent(r *sql.Rows) (*spotoken.Event, error) {
	var e spotoken.Event
	var typ string
	err := r.Scan(&e.ID, &typ, &e.AppID, &e.ConnectionID, &e.Data, timeCol{&e.CreatedAt}, &e.Attempts,
		timeCol{&e.NextAttemptAt}, timeCol{&e.DeliveredAt}, &e.LastError)
	e.Type = spotoken.EventType(typ)
	return &e, err
}

// redeliverSet is what redelivery does to an event: due now, as if new.
const redeliverSet = `UPDATE events SET attempts = 0, next_attempt_at = NULL, delivered_at = NULL, last_error = ''`

// RedeliverEvent makes an app's event due again now, as if it were new;
// ErrNotFound if the app has no event id.
func (db *DB) RedeliverEvent(ctx context.Context, appID string, id int64) error {
	err := db.updateOne(ctx, spotoken.Errorf(spotoken.ENotFound, "app %q has no event %d", appID, id),
		redeliverSet+` WHERE app_id = ? AND id = ?`, appID, id)
	if err != nil {
		return fmt.Errorf("redeliver event: %w", err)
	}
	return nil
}

// RedeliverEvents makes every failed or given-up (status) event of the app
// due again now, and returns how many.
func (db *DB) RedeliverEvents(ctx context.Context, appID string, status spotoken.EventStatus) (int, error) {
	if status != spotoken.EventFailed && status != spotoken.EventGaveUp {
		return 0, fmt.Errorf("redeliver events: %w", spotoken.Errorf(spotoken.EInvalid, "only failed or gave_up events are redelivered in bulk"))
	}
	cond, _ := eventStatusSQL(status)
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, redeliverSet+` WHERE app_id = ? AND `+cond, appID)
		if err != nil {
			return err
		}
		n, err = affected(res)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("redeliver events: %w", err)
	}
	return int(n), nil
}

// connectionListColumns are connectionColumns without the tokens, which a
// listing never opens.
var connectionListColumns = strings.Replace(connectionColumns, "access_token, refresh_token", "NULL, NULL", 1)

// FindConnections returns the connections q selects, ordered by app then
// id, without opening a token.
//
// By state alone after a cursor it reads the rest of the cursor's app
// first, then the apps after it, so that both are searches from the
// cursor on (SQLite searches an IN list's values one by one, without the
// cursor's id).
func (db *DB) FindConnections(ctx context.Context, q spotoken.ConnectionQuery) ([]*spotoken.Connection, error) {
	var head []*spotoken.Connection
	if stateOnly(q) && q.After != (spotoken.ConnectionKey{}) {
		first := q
		first.AppID = q.After.AppID
		cs, err := db.findConnections(ctx, first)
		if err != nil {
			return nil, err
		}
		limit, _ := spotoken.PageLimit(q.Limit)
		if len(cs) >= limit {
			return cs, nil
		}
		head, q.Limit, q.After = cs, limit-len(cs), spotoken.ConnectionKey{AppID: q.After.AppID + "\x00"}
	}
	cs, err := db.findConnections(ctx, q)
	if err != nil {
		return nil, err
	}
	return append(head, cs...), nil
}

// stateOnly reports whether q selects by state alone.
func stateOnly(q spotoken.ConnectionQuery) bool {
	return q.State != "" && q.AppID == "" && q.ID == "" && q.SpotifyUserID == ""
}

func (db *DB) findConnections(ctx context.Context, q spotoken.ConnectionQuery) ([]*spotoken.Connection, error) {
	query, args, err := findQuery(q)
	if err != nil {
		return nil, fmt.Errorf("find connections: %w", err)
	}
	return list(ctx, db, "find connections", func(r *sql.Rows) (*spotoken.Connection, error) {
		c, _, err := db.scanConnection(r)
		return c, err
	}, query, args...)
}

// findQuery is FindConnections' query for q and its arguments. By
// connection id it searches connections_id, by Spotify user
// connections_spotify_user, by state (with or without an app)
// connections_app_state, by app the primary key.
func findQuery(q spotoken.ConnectionQuery) (string, []any, error) {
	limit, err := spotoken.PageLimit(q.Limit)
	if err != nil {
		return "", nil, err
	}
	var where []string
	var args []any
	for _, c := range []struct{ column, value string }{
		{"app_id", q.AppID}, {"id", q.ID}, {"spotify_user_id", q.SpotifyUserID}, {"state", string(q.State)},
	} {
		if c.value != "" {
			where, args = append(where, c.column+` = ?`), append(args, c.value)
		}
	}
	switch {
	case q.After == (spotoken.ConnectionKey{}):
	case q.AppID != "" && q.After.AppID == q.AppID:
		// Within one app: a bound on the id, which an index searches.
		where, args = append(where, `id > ?`), append(args, q.After.ID)
	default:
		where, args = append(where, `(app_id, id) > (?, ?)`), append(args, q.After.AppID, q.After.ID)
	}
	if stateOnly(q) {
		// By state alone: app by app (apps are few), each app's rows in
		// that state from connections_app_state in id order.
		where, args = append(where, `app_id IN (SELECT id FROM apps WHERE id >= ?)`), append(args, q.After.AppID)
	}
	query := `SELECT ` + connectionListColumns + ` FROM connections`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	return query + ` ORDER BY app_id, id LIMIT ?`, append(args, limit), nil
}
