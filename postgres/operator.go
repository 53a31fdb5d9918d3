package postgres

// The operator's stores: admin credentials, apps' client-credentials tokens,
// the outbox as a delivery log, and the search of connections across apps.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/rowseal"
)

const adminKeyCols = `id, name, prefix, hash, created_at, last_used_at, revoked_at`

func scanAdminKey(row scanner) (*spotoken.AdminKey, error) {
	var (
		k                      spotoken.AdminKey
		hash                   []byte
		created, used, revoked pgtype.Timestamptz
	)
	if err := row.Scan(&k.ID, &k.Name, &k.Prefix, &hash, &created, &used, &revoked); err != nil {
		return nil, err
	}
	var err error
	if k.Hash, err = hash32(hash); err != nil {
		return nil, fmt.Errorf("admin key %s: %w", k.ID, err)
	}
	k.CreatedAt, k.LastUsedAt, k.RevokedAt = fromTstz(created), fromTstz(used), fromTstz(revoked)
	return &k, nil
}

// CreateAdminKey stores a new admin key, setting its CreatedAt from the
// store's clock; ErrConflict if its ID or hash exists.
func (db *DB) CreateAdminKey(ctx context.Context, key *spotoken.AdminKey) error {
	if key.ID == "" {
		return spotoken.Errorf(spotoken.EInvalid, "admin key id is required")
	}
	now := db.now()
	err := db.auditedWrite(ctx, func(q querier) error {
		_, err := q.Exec(ctx, `INSERT INTO admin_keys (`+adminKeyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			key.ID, key.Name, key.Prefix, key.Hash[:], now, tstz(key.LastUsedAt), tstz(key.RevokedAt))
		return err
	})
	if pgCode(err) == codeUniqueViolation {
		return spotoken.Errorf(spotoken.EConflict, "admin key %q or its hash already exists", key.ID)
	}
	if err != nil {
		return fmt.Errorf("create admin key: %w", err)
	}
	key.CreatedAt = now
	return nil
}

// AdminKeyByHash finds an admin key, revoked or not, by the SHA-256 of its
// value; ErrNotFound if none.
func (db *DB) AdminKeyByHash(ctx context.Context, hash [32]byte) (*spotoken.AdminKey, error) {
	k, err := scanAdminKey(db.pool.QueryRow(ctx, `SELECT `+adminKeyCols+` FROM admin_keys WHERE hash = $1`, hash[:]))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, spotoken.Errorf(spotoken.ENotFound, "admin key not found")
	}
	if err != nil {
		return nil, fmt.Errorf("get admin key: %w", err)
	}
	return k, nil
}

// AdminKeys lists every admin key, oldest first.
func (db *DB) AdminKeys(ctx context.Context) ([]*spotoken.AdminKey, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+adminKeyCols+` FROM admin_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list admin keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*spotoken.AdminKey, error) { return scanAdminKey(row) })
	if err != nil {
		return nil, fmt.Errorf("list admin keys: %w", err)
	}
	return keys, nil
}

// RevokeAdminKey marks the admin key revoked at at; ErrNotFound if no admin
// key has id. Revoking twice keeps the first time.
func (db *DB) RevokeAdminKey(ctx context.Context, id string, at time.Time) error {
	return db.execOne(ctx, "revoke admin key", spotoken.Errorf(spotoken.ENotFound, "admin key %q not found", id),
		`UPDATE admin_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1`, id, tstz(at))
}

// TouchAdminKey records that the admin key was used at at; the recorded time
// never moves backwards. ErrNotFound if no admin key has id.
func (db *DB) TouchAdminKey(ctx context.Context, id string, at time.Time) error {
	return db.execOne(ctx, "touch admin key", spotoken.Errorf(spotoken.ENotFound, "admin key %q not found", id),
		`UPDATE admin_keys SET last_used_at = greatest(last_used_at, $2) WHERE id = $1`, id, tstz(at))
}

// execOne runs one statement and answers missing when it changed no row;
// what names it in other errors.
func (db *DB) execOne(ctx context.Context, what string, missing error, sql string, args ...any) error {
	return db.auditedWrite(ctx, func(q querier) error {
		tag, err := q.Exec(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if tag.RowsAffected() == 0 {
			return missing
		}
		return nil
	})
}

const appTokenCols = `app_id, client_id, access_token, expires_at, version, lease_owner, lease_expires_at, updated_at`

// AppToken returns the app's token row; ErrNotFound if the app has none.
func (db *DB) AppToken(ctx context.Context, appID string) (*spotoken.AppToken, error) {
	var (
		t                         spotoken.AppToken
		sealed                    []byte
		owner                     pgtype.Text
		expiry, leaseExp, updated pgtype.Timestamptz
	)
	err := db.pool.QueryRow(ctx, `SELECT `+appTokenCols+` FROM app_tokens WHERE app_id = $1`, appID).Scan(
		&t.AppID, &t.ClientID, &sealed, &expiry, &t.Version, &owner, &leaseExp, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, spotoken.Errorf(spotoken.ENotFound, "app %q has no app token", appID)
	}
	if err != nil {
		return nil, fmt.Errorf("app token %s: %w", appID, err)
	}
	t.Expiry, t.UpdatedAt = fromTstz(expiry), fromTstz(updated)
	if owner.Valid {
		t.Lease = spotoken.Lease{Owner: owner.String, ExpiresAt: fromTstz(leaseExp)}
	}
	if t.AccessToken, err = db.codec.Open(rowseal.AppToken(appID), sealed); err != nil {
		return nil, fmt.Errorf("app token %s: %w", appID, err)
	}
	return &t, nil
}

// AcquireAppTokenLease gives owner the app token's lease for ttl from the
// store's clock if nobody holds it, the holder's lease expired, or owner
// holds it already; ErrLeaseHeld otherwise. It is one statement that makes
// the app's row if it has none, so replicas racing for it cannot both win;
// ErrNotFound if the app does not exist.
func (db *DB) AcquireAppTokenLease(ctx context.Context, appID, owner string, ttl time.Duration) (spotoken.Lease, error) {
	if owner == "" {
		return spotoken.Lease{}, spotoken.Errorf(spotoken.EInvalid, "lease owner is required")
	}
	now := db.now()
	lease := spotoken.Lease{Owner: owner, ExpiresAt: norm(now.Add(ttl))}
	tag, err := db.pool.Exec(ctx, `INSERT INTO app_tokens (app_id, lease_owner, lease_expires_at, updated_at)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (app_id) DO UPDATE SET lease_owner = $2, lease_expires_at = $3
		WHERE app_tokens.lease_owner IS NULL OR app_tokens.lease_owner = $2 OR app_tokens.lease_expires_at <= $4`,
		appID, owner, lease.ExpiresAt, now)
	if pgCode(err) == codeForeignKeyViolation {
		return spotoken.Lease{}, appNotFound(appID)
	}
	if err != nil {
		return spotoken.Lease{}, fmt.Errorf("acquire app token lease: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return spotoken.Lease{}, spotoken.Errorf(spotoken.ELeaseHeld, "lease on the app token of %s held by another owner", appID)
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
	return db.execOne(ctx, "save app token",
		spotoken.Errorf(spotoken.ELeaseLost, "lease on the app token of %s not held by %q", t.AppID, owner),
		`UPDATE app_tokens SET client_id = $3, access_token = $4, expires_at = $5, version = version + 1, updated_at = $6
			WHERE app_id = $1 AND lease_owner = $2 AND lease_expires_at > $6`,
		t.AppID, owner, t.ClientID, sealed, tstz(t.Expiry), now)
}

// ReleaseAppTokenLease gives up owner's unexpired lease; ErrLeaseLost if
// owner does not hold it, ErrNotFound if the app has no token row.
func (db *DB) ReleaseAppTokenLease(ctx context.Context, appID, owner string) error {
	tag, err := db.pool.Exec(ctx, `UPDATE app_tokens SET lease_owner = NULL, lease_expires_at = NULL
		WHERE app_id = $1 AND lease_owner = $2 AND lease_expires_at > $3`, appID, owner, db.now())
	if err != nil {
		return fmt.Errorf("release app token lease: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var exists bool
	if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM app_tokens WHERE app_id = $1)`, appID).Scan(&exists); err != nil {
		return fmt.Errorf("release app token lease: %w", err)
	}
	if !exists {
		return spotoken.Errorf(spotoken.ENotFound, "app %q has no app token", appID)
	}
	return spotoken.Errorf(spotoken.ELeaseLost, "lease on the app token of %s not held by %q", appID, owner)
}

// scanEvent reads an events row selected with eventCols.
func scanEvent(row pgx.CollectableRow) (*spotoken.Event, error) {
	var (
		e                        spotoken.Event
		typ                      string
		attempts                 int32
		created, next, delivered pgtype.Timestamptz
	)
	if err := row.Scan(&e.ID, &typ, &e.AppID, &e.ConnectionID, &e.Data, &created, &attempts, &next, &delivered, &e.LastError); err != nil {
		return nil, err
	}
	e.Type, e.Attempts = spotoken.EventType(typ), int(attempts)
	e.CreatedAt, e.NextAttemptAt, e.DeliveredAt = fromTstz(created), fromTstz(next), fromTstz(delivered)
	return &e, nil
}

// eventStatusSQL is the condition on an events row that status means; arg
// is the placeholder of the given-up time (spotoken.EventGaveUpAt).
func eventStatusSQL(status spotoken.EventStatus, arg string) (string, error) {
	switch status {
	case spotoken.EventDelivered:
		return `delivered_at IS NOT NULL`, nil
	case spotoken.EventGaveUp:
		return `delivered_at IS NULL AND next_attempt_at >= ` + arg, nil
	case spotoken.EventFailed:
		return `delivered_at IS NULL AND attempts > 0 AND (next_attempt_at IS NULL OR next_attempt_at < ` + arg + `)`, nil
	case spotoken.EventPending:
		return `delivered_at IS NULL AND attempts = 0 AND (next_attempt_at IS NULL OR next_attempt_at < ` + arg + `)`, nil
	}
	return "", spotoken.Errorf(spotoken.EInvalid, "event status %q is not pending, failed, gave_up or delivered", status)
}

// Events lists an app's events as filter selects, newest first.
func (db *DB) Events(ctx context.Context, filter spotoken.EventFilter) ([]*spotoken.Event, error) {
	query, args, err := eventsSQL(filter)
	if err != nil {
		return nil, err
	}
	return list(ctx, db, "list events", scanEvent, query, args...)
}

// eventsSQL is Events' query for filter and its arguments. It reads
// events_app, or events_connection for one connection's events.
func eventsSQL(filter spotoken.EventFilter) (string, []any, error) {
	if filter.AppID == "" {
		return "", nil, spotoken.Errorf(spotoken.EInvalid, "event filter needs an app id")
	}
	args := []any{filter.AppID}
	where := []string{`app_id = $1`}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if filter.ConnectionID != "" {
		add(`connection_id = ?`, filter.ConnectionID)
	}
	if filter.Status != "" {
		cond, err := eventStatusSQL(filter.Status, "?")
		if err != nil {
			return "", nil, err
		}
		if strings.Contains(cond, "?") {
			add(cond, tstz(spotoken.EventGaveUpAt))
		} else {
			where = append(where, cond)
		}
	}
	if filter.Before > 0 {
		add(`id < ?`, filter.Before)
	}
	limit, err := spotoken.PageLimit(filter.Limit)
	if err != nil {
		return "", nil, err
	}
	args = append(args, limit)
	return `SELECT ` + eventCols + ` FROM events WHERE ` + strings.Join(where, ` AND `) +
		` ORDER BY id DESC LIMIT $` + strconv.Itoa(len(args)), args, nil
}

// redeliverSet is what redelivery does to an event: due now, as if new.
const redeliverSet = `UPDATE events SET attempts = 0, next_attempt_at = NULL, delivered_at = NULL, last_error = ''`

// RedeliverEvent makes an app's event due again now, as if it were new;
// ErrNotFound if the app has no event id.
func (db *DB) RedeliverEvent(ctx context.Context, appID string, id int64) error {
	return db.execOne(ctx, "redeliver event", spotoken.Errorf(spotoken.ENotFound, "app %q has no event %d", appID, id),
		redeliverSet+` WHERE app_id = $1 AND id = $2`, appID, id)
}

// RedeliverEvents makes every failed or given-up (status) event of the app
// due again now, and returns how many.
func (db *DB) RedeliverEvents(ctx context.Context, appID string, status spotoken.EventStatus) (int, error) {
	if status != spotoken.EventFailed && status != spotoken.EventGaveUp {
		return 0, spotoken.Errorf(spotoken.EInvalid, "only failed or gave_up events are redelivered in bulk")
	}
	cond, _ := eventStatusSQL(status, "$2") // failed and gave_up both name $2
	var n int64
	err := db.auditedWrite(ctx, func(q querier) error {
		tag, err := q.Exec(ctx, redeliverSet+` WHERE app_id = $1 AND `+cond, appID, tstz(spotoken.EventGaveUpAt))
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("redeliver events: %w", err)
	}
	return int(n), nil
}

// FindConnections returns the connections q selects, ordered by app then
// id, without reading a token.
func (db *DB) FindConnections(ctx context.Context, q spotoken.ConnectionQuery) ([]*spotoken.Connection, error) {
	query, args, err := findSQL(q)
	if err != nil {
		return nil, fmt.Errorf("find connections: %w", err)
	}
	return list(ctx, db, "find connections", func(row pgx.CollectableRow) (*spotoken.Connection, error) {
		sc, err := scanConnection(row)
		return sc.c, err
	}, query, args...)
}

// findSQL is FindConnections' query for q and its arguments. By connection
// id it reads connections_id, by Spotify user connections_spotify_user, by
// state (with or without an app) connections_state, by app the primary key.
func findSQL(q spotoken.ConnectionQuery) (string, []any, error) {
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
			args = append(args, c.value)
			where = append(where, c.column+` = $`+strconv.Itoa(len(args)))
		}
	}
	switch {
	case q.After == (spotoken.ConnectionKey{}):
	case q.AppID != "" && q.After.AppID == q.AppID:
		// Within one app: a bound on the id, which an index searches.
		args = append(args, q.After.ID)
		where = append(where, `id > $`+strconv.Itoa(len(args)))
	default:
		args = append(args, q.After.AppID, q.After.ID)
		where = append(where, `(app_id, id) > ($`+strconv.Itoa(len(args)-1)+`, $`+strconv.Itoa(len(args))+`)`)
	}
	query := `SELECT ` + listCols + ` FROM connections`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	args = append(args, limit)
	return query + ` ORDER BY app_id, id LIMIT $` + strconv.Itoa(len(args)), args, nil
}
