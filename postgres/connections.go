package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/rowseal"
)

const connCols = `app_id, id, spotify_user_id, display_name, scopes, state, access_token, refresh_token,
	access_expires_at, version, lease_owner, lease_expires_at, last_refresh_at, consecutive_failures,
	next_attempt_at, last_error_code, consented_at, grant_expires_at, expiry_warned_at, created_at, updated_at,
	refresh_unknown_at`

// sealedConnection is a connection row with its tokens still sealed.
type sealedConnection struct {
	c               *spotoken.Connection
	access, refresh []byte
}

// scanConnection reads a connection row selected with connCols.
func scanConnection(row scanner) (sealedConnection, error) {
	var (
		c                                    spotoken.Connection
		scopes                               []string
		state                                string
		access, refresh                      []byte
		leaseOwner                           pgtype.Text
		expiry, leaseExp, lastRefresh, next  pgtype.Timestamptz
		consented, grantExp, warned, created pgtype.Timestamptz
		update, unknown                      pgtype.Timestamptz
		failures                             int32
	)
	if err := row.Scan(&c.AppID, &c.ID, &c.SpotifyUserID, &c.DisplayName, &scopes, &state, &access, &refresh,
		&expiry, &c.Version, &leaseOwner, &leaseExp, &lastRefresh, &failures,
		&next, &c.LastErrorCode, &consented, &grantExp, &warned, &created, &update, &unknown); err != nil {
		return sealedConnection{}, err
	}
	c.Scopes = spotoken.Scopes(fromTextArray(scopes))
	c.State = spotoken.State(state)
	c.Token.Expiry = fromTstz(expiry)
	if leaseOwner.Valid {
		c.Lease = spotoken.Lease{Owner: leaseOwner.String, ExpiresAt: fromTstz(leaseExp)}
	}
	c.LastRefreshAt = fromTstz(lastRefresh)
	c.ConsecutiveFailures = int(failures)
	c.NextAttemptAt = fromTstz(next)
	c.ConsentedAt, c.GrantExpiresAt, c.ExpiryWarnedAt = fromTstz(consented), fromTstz(grantExp), fromTstz(warned)
	c.CreatedAt, c.UpdatedAt = fromTstz(created), fromTstz(update)
	c.RefreshUnknownAt = fromTstz(unknown)
	return sealedConnection{c: &c, access: access, refresh: refresh}, nil
}

// openConnection reads a connection row and opens its tokens.
func (db *DB) openConnection(row scanner) (*spotoken.Connection, error) {
	sc, err := scanConnection(row)
	if err != nil {
		return nil, err
	}
	c := sc.c
	if c.Token.AccessToken, c.Token.RefreshToken, err = db.codec.OpenToken(c.Key(), sc.access, sc.refresh); err != nil {
		return nil, err
	}
	return c, nil
}

func connNotFound(key spotoken.ConnectionKey) error {
	return spotoken.Errorf(spotoken.ENotFound, "connection %s not found", key)
}

func validState(s spotoken.State) error {
	if !s.Valid() {
		return spotoken.Errorf(spotoken.EInvalid, "invalid connection state %q", s)
	}
	return nil
}

// normConnection sets c's fields as the database returns them.
func normConnection(c *spotoken.Connection) {
	c.Scopes = spotoken.Scopes(fromTextArray(c.Scopes))
	c.Token.Expiry = norm(c.Token.Expiry)
	c.Lease.ExpiresAt = norm(c.Lease.ExpiresAt)
	c.LastRefreshAt = norm(c.LastRefreshAt)
	c.NextAttemptAt = norm(c.NextAttemptAt)
	c.ConsentedAt = norm(c.ConsentedAt)
	c.GrantExpiresAt = norm(c.GrantExpiresAt)
	c.ExpiryWarnedAt = norm(c.ExpiryWarnedAt)
	c.CreatedAt = norm(c.CreatedAt)
	c.UpdatedAt = norm(c.UpdatedAt)
	c.RefreshUnknownAt = norm(c.RefreshUnknownAt)
}

// CreateConnection stores a new connection with Version 1, no lease, and
// CreatedAt and UpdatedAt from the store's clock, with its events, in one
// transaction; ErrConflict if the key exists, ErrNotFound if the app does
// not.
func (db *DB) CreateConnection(ctx context.Context, c *spotoken.Connection, events ...spotoken.Event) error {
	if c.AppID == "" || c.ID == "" {
		return spotoken.Errorf(spotoken.EInvalid, "connection app id and id are required")
	}
	if err := validState(c.State); err != nil {
		return err
	}
	now := db.now()
	access, refresh, err := db.codec.SealToken(c.Key(), c.Token)
	if err != nil {
		return fmt.Errorf("create connection: %w", err)
	}
	err = db.withTx(ctx, func(tx pgx.Tx) error {
		// A new connection counts as used: its user just authorized it.
		_, err := tx.Exec(ctx, `INSERT INTO connections (`+connCols+`, last_used_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, NULL, NULL, $10, $11, $12, $13, $14, $15, $16, $17, $17, $18, $17)`,
			c.AppID, c.ID, c.SpotifyUserID, c.DisplayName, textArray(c.Scopes), string(c.State), access, refresh,
			tstz(c.Token.Expiry), tstz(c.LastRefreshAt), int32(c.ConsecutiveFailures),
			tstz(c.NextAttemptAt), c.LastErrorCode, tstz(c.ConsentedAt), tstz(c.GrantExpiresAt), tstz(c.ExpiryWarnedAt), now, tstz(c.RefreshUnknownAt))
		switch pgCode(err) {
		case codeUniqueViolation:
			return spotoken.Errorf(spotoken.EConflict, "connection %s already exists", c.Key())
		case codeForeignKeyViolation:
			return appNotFound(c.AppID)
		}
		if err != nil {
			return err
		}
		return db.insertEvents(ctx, tx, now, events)
	})
	if err != nil {
		if spotoken.ErrorCode(err) != spotoken.EInternal {
			return err
		}
		return fmt.Errorf("create connection: %w", err)
	}
	c.Version, c.Lease = 1, spotoken.Lease{}
	c.CreatedAt, c.UpdatedAt = now, now
	return nil
}

// Connection returns the connection with key; ErrNotFound if none.
func (db *DB) Connection(ctx context.Context, key spotoken.ConnectionKey) (*spotoken.Connection, error) {
	c, err := db.openConnection(db.pool.QueryRow(ctx, `SELECT `+connCols+` FROM connections WHERE app_id = $1 AND id = $2`,
		key.AppID, key.ID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, connNotFound(key)
	}
	if err != nil {
		return nil, fmt.Errorf("get connection: %w", err)
	}
	return c, nil
}

// UpdateConnection reads the connection, calls fn with a copy, and writes
// fn's result with the events fn returns, in one transaction, guarded by
// compare-and-swap on Version, which it increments; UpdatedAt comes from the
// store's clock. The transaction is retried, running fn again, after a
// serialization failure, a deadlock or a lost compare-and-swap. An error
// from fn aborts the update and is returned as is. fn cannot change the
// key, Version, Lease or CreatedAt. Emptying Token writes NULLs over the
// sealed tokens. Under spotoken.ReleasingLease(ctx, owner) the UPDATE also
// clears owner's lease if owner holds it (the row is locked FOR UPDATE, so
// the lease read is the one cleared): a refresh's commit and its release
// in one statement.
func (db *DB) UpdateConnection(ctx context.Context, key spotoken.ConnectionKey, fn func(c *spotoken.Connection) ([]spotoken.Event, error)) (*spotoken.Connection, error) {
	owner := spotoken.LeaseToRelease(ctx)
	var out *spotoken.Connection
	var fnErr error
	err := retry(ctx, func() error {
		fnErr = nil
		return db.withTx(ctx, func(tx pgx.Tx) error {
			sc, err := scanConnection(tx.QueryRow(ctx, `SELECT `+connCols+` FROM connections
				WHERE app_id = $1 AND id = $2 FOR UPDATE`, key.AppID, key.ID))
			if errors.Is(err, pgx.ErrNoRows) {
				return connNotFound(key)
			}
			if err != nil {
				return err
			}
			old := sc.c
			if old.Token.AccessToken, old.Token.RefreshToken, err = db.codec.OpenToken(key, sc.access, sc.refresh); err != nil {
				return err
			}
			c := *old
			c.Scopes = slices.Clone(old.Scopes)
			events, err := fn(&c)
			if err != nil {
				fnErr = err
				return err
			}
			c.AppID, c.ID, c.Version, c.Lease, c.CreatedAt = old.AppID, old.ID, old.Version+1, old.Lease, old.CreatedAt
			// The row is locked: the lease read is the lease written over.
			release := owner != "" && old.Lease.Owner == owner
			if release {
				c.Lease = spotoken.Lease{}
			}
			c.UpdatedAt = db.now()
			if err := validState(c.State); err != nil {
				fnErr = err
				return err
			}
			access, refresh, err := db.sealChanged(key, old.Token, c.Token, sc.access, sc.refresh)
			if err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `UPDATE connections SET spotify_user_id = $3, display_name = $4, scopes = $5,
				state = $6, access_token = $7, refresh_token = $8, access_expires_at = $9, version = version + 1,
				last_refresh_at = $10, consecutive_failures = $11, next_attempt_at = $12, last_error_code = $13,
				consented_at = $14, grant_expires_at = $15, updated_at = $16, expiry_warned_at = $18, refresh_unknown_at = $19,
				lease_owner = CASE WHEN $20 THEN NULL ELSE lease_owner END,
				lease_expires_at = CASE WHEN $20 THEN NULL ELSE lease_expires_at END
				WHERE app_id = $1 AND id = $2 AND version = $17`,
				key.AppID, key.ID, c.SpotifyUserID, c.DisplayName, textArray(c.Scopes), string(c.State), access, refresh,
				tstz(c.Token.Expiry), tstz(c.LastRefreshAt), int32(c.ConsecutiveFailures), tstz(c.NextAttemptAt),
				c.LastErrorCode, tstz(c.ConsentedAt), tstz(c.GrantExpiresAt), c.UpdatedAt, old.Version, tstz(c.ExpiryWarnedAt), tstz(c.RefreshUnknownAt),
				release)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return errVersionConflict
			}
			if err := db.insertEvents(ctx, tx, c.UpdatedAt, events); err != nil {
				return err
			}
			normConnection(&c)
			out = &c
			return nil
		})
	})
	switch {
	case fnErr != nil:
		return nil, fnErr
	case errors.Is(err, errVersionConflict):
		return nil, spotoken.Errorf(spotoken.EConflict, "connection %s changed concurrently; gave up after %d attempts", key, maxAttempts)
	case err != nil && spotoken.ErrorCode(err) != spotoken.EInternal:
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("update connection: %w", err)
	}
	return out, nil
}

// sealChanged seals the tokens of next that differ from old; a token that
// did not change keeps its ciphertext, re-sealed only if it was sealed under
// an older key. An empty token seals to nil, written as NULL.
func (db *DB) sealChanged(key spotoken.ConnectionKey, old, next spotoken.Token, oldAccess, oldRefresh []byte) (access, refresh []byte, err error) {
	if access, err = db.sealIfChanged(rowseal.AccessToken(key), old.AccessToken, next.AccessToken, oldAccess); err != nil {
		return nil, nil, err
	}
	if refresh, err = db.sealIfChanged(rowseal.RefreshToken(key), old.RefreshToken, next.RefreshToken, oldRefresh); err != nil {
		return nil, nil, err
	}
	return access, refresh, nil
}

func (db *DB) sealIfChanged(f rowseal.Field, old, next spotoken.Secret, oldCT []byte) ([]byte, error) {
	if next == old {
		ct, _, err := db.codec.Reseal(f, oldCT)
		return ct, err
	}
	return db.codec.Seal(f, next)
}

// DeleteConnection deletes the connection, and with its row its sealed
// tokens, and stores events, in one transaction; ErrNotFound if none.
func (db *DB) DeleteConnection(ctx context.Context, key spotoken.ConnectionKey, events ...spotoken.Event) error {
	now := db.now()
	err := db.withTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM connections WHERE app_id = $1 AND id = $2`, key.AppID, key.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return connNotFound(key)
		}
		return db.insertEvents(ctx, tx, now, events)
	})
	if err != nil && spotoken.ErrorCode(err) == spotoken.EInternal {
		return fmt.Errorf("delete connection: %w", err)
	}
	return err
}

// Connections lists an app's connections by ID, after filter.After, in
// filter.State if set, at most filter.Limit (see spotoken.PageLimit).
func (db *DB) Connections(ctx context.Context, filter spotoken.ConnectionFilter) ([]*spotoken.Connection, error) {
	if filter.AppID == "" {
		return nil, spotoken.Errorf(spotoken.EInvalid, "connection filter needs an app id")
	}
	limit, err := spotoken.PageLimit(filter.Limit)
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	query, args := connectionsSQL, []any{filter.AppID, filter.After, limit}
	if filter.State != "" {
		query, args = connectionsStateSQL, append(args, string(filter.State))
	}
	return list(ctx, db, "list connections", func(row pgx.CollectableRow) (*spotoken.Connection, error) { return db.openConnection(row) },
		query, args...)
}

// connectionsSQL lists an app's connections by id from the primary key;
// connectionsStateSQL those in one state from connections_state.
const (
	connectionsSQL      = `SELECT ` + connCols + ` FROM connections WHERE app_id = $1 AND id > $2 ORDER BY id LIMIT $3`
	connectionsStateSQL = `SELECT ` + connCols + ` FROM connections
		WHERE state = $4 AND app_id = $1 AND id > $2 ORDER BY id LIMIT $3`
)

// countSQL counts connections by app and state, in the order of the
// connections_app_state index.
const countSQL = `SELECT app_id, state, count(*) FROM connections GROUP BY app_id, state ORDER BY app_id, state`

// CountConnections counts connections by app and state, ordered by app then
// state; pairs with no connection are left out. It reads no token column.
func (db *DB) CountConnections(ctx context.Context) ([]spotoken.ConnectionCount, error) {
	rows, err := db.pool.Query(ctx, countSQL)
	if err != nil {
		return nil, fmt.Errorf("count connections: %w", err)
	}
	counts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (spotoken.ConnectionCount, error) {
		var n spotoken.ConnectionCount
		var state string
		var count int64
		err := row.Scan(&n.AppID, &state, &count)
		n.State, n.Count = spotoken.State(state), int(count)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("count connections: %w", err)
	}
	return counts, nil
}

// dueSQL selects due connections from the connections_due index alone.
const dueSQL = `SELECT app_id, id, access_expires_at, version FROM connections
	WHERE state = 'active' AND access_expires_at < $1 AND (next_attempt_at IS NULL OR next_attempt_at <= $2)
	ORDER BY access_expires_at, app_id, id LIMIT $3`

// Due returns up to limit active connections whose access token expires
// before before and that are not in backoff (NextAttemptAt not after the
// store's clock), soonest expiry first. It reads the connections_due index
// and no token column.
func (db *DB) Due(ctx context.Context, before time.Time, limit int) ([]spotoken.DueConnection, error) {
	if limit <= 0 {
		return nil, nil
	}
	return db.queryDue(ctx, "due connections", dueSQL, tstz(before), db.now(), limit)
}

// queryDue runs a query selecting app_id, id, an expiry and version.
func (db *DB) queryDue(ctx context.Context, what, sql string, args ...any) ([]spotoken.DueConnection, error) {
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	due, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (spotoken.DueConnection, error) {
		var d spotoken.DueConnection
		var expiry pgtype.Timestamptz
		err := row.Scan(&d.Key.AppID, &d.Key.ID, &expiry, &d.Version)
		d.Expiry = fromTstz(expiry)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return due, nil
}

// dueUsedSQL selects DueUsed's connections from connections_due, from the
// cursor on (the row comparison follows the index's order).
const dueUsedSQL = `SELECT app_id, id, access_expires_at, version FROM connections
	WHERE state = 'active' AND (access_expires_at, app_id, id) > ($1, $2, $3) AND access_expires_at < $4
		AND (next_attempt_at IS NULL OR next_attempt_at <= $5) AND ($6::timestamptz IS NULL OR last_used_at >= $6)
	ORDER BY access_expires_at, app_id, id LIMIT $7`

// DueUsed returns up to q.Limit active connections not in backoff whose
// access token expires before q.Before, used since q.UsedSince (any with a
// zero one), after the cursor q.After, soonest expiry first. It reads the
// connections_due index from the cursor on and opens no token.
func (db *DB) DueUsed(ctx context.Context, q spotoken.DueQuery) ([]spotoken.DueConnection, error) {
	if q.Limit <= 0 {
		return nil, nil
	}
	return db.queryDue(ctx, "due connections", dueUsedSQL, append(db.dueArgs(q), q.Limit)...)
}

// dueArgs are the arguments of dueUsedSQL and countDueSQL but the limit.
func (db *DB) dueArgs(q spotoken.DueQuery) []any {
	after := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	if !q.After.Expiry.IsZero() {
		after = tstz(q.After.Expiry)
	}
	return []any{after, q.After.Key.AppID, q.After.Key.ID, tstz(q.Before), db.now(), tstz(q.UsedSince)}
}

// countDueSQL counts what dueUsedSQL selects, from the same index.
const countDueSQL = `SELECT count(*) FROM connections
	WHERE state = 'active' AND (access_expires_at, app_id, id) > ($1, $2, $3) AND access_expires_at < $4
		AND (next_attempt_at IS NULL OR next_attempt_at <= $5) AND ($6::timestamptz IS NULL OR last_used_at >= $6)`

// CountDue counts what DueUsed(q) would return without q.Limit.
func (db *DB) CountDue(ctx context.Context, q spotoken.DueQuery) (int, error) {
	var n int
	if err := db.pool.QueryRow(ctx, countDueSQL, db.dueArgs(q)...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count due: %w", err)
	}
	return n, nil
}

// MarkUsed records callers' uses of connections in one statement:
// last_used_at becomes the later of the stored one and each use's time,
// without touching version or updated_at; unknown connections are skipped.
func (db *DB) MarkUsed(ctx context.Context, uses []spotoken.ConnectionUse) error {
	if len(uses) == 0 {
		return nil
	}
	apps, ids, ats := make([]string, len(uses)), make([]string, len(uses)), make([]time.Time, len(uses))
	for i, u := range uses {
		apps[i], ids[i], ats[i] = u.Key.AppID, u.Key.ID, norm(u.At)
	}
	// max per key first: UPDATE ... FROM updates a row once, with any one
	// of its matches.
	_, err := db.pool.Exec(ctx, `UPDATE connections c SET last_used_at = GREATEST(c.last_used_at, u.at)
		FROM (SELECT app_id, id, max(at) AS at FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS x(app_id, id, at)
			GROUP BY app_id, id) u
		WHERE c.app_id = u.app_id AND c.id = u.id`, apps, ids, ats)
	if err != nil {
		return fmt.Errorf("mark connections used: %w", err)
	}
	return nil
}

// expiringSQL selects ExpiringGrants' connections from the partial index
// connections_unwarned.
const expiringSQL = `SELECT app_id, id, grant_expires_at, version FROM connections
	WHERE state = 'active' AND expiry_warned_at IS NULL AND grant_expires_at < $1
	ORDER BY grant_expires_at, app_id, id LIMIT $2`

// ExpiringGrants returns up to limit active connections whose grant
// expires before before and that were not warned about yet, soonest first,
// with Expiry set to GrantExpiresAt; none if limit is not positive. It
// reads the connections_unwarned index and opens no token.
func (db *DB) ExpiringGrants(ctx context.Context, before time.Time, limit int) ([]spotoken.DueConnection, error) {
	if limit <= 0 {
		return nil, nil
	}
	return db.queryDue(ctx, "expiring grants", expiringSQL, tstz(before), limit)
}

// CountExpiringGrants counts, by app, the active connections whose grant
// expires before before, from the connections_grant_expiry index.
func (db *DB) CountExpiringGrants(ctx context.Context, before time.Time) ([]spotoken.ConnectionCount, error) {
	return db.countActive(ctx, "count expiring grants", `SELECT app_id, count(*) FROM connections
		WHERE state = 'active' AND grant_expires_at < $1 GROUP BY app_id ORDER BY app_id`, tstz(before))
}

// countActive runs query, which counts active connections by app (rows of
// app id and count), and returns the counts; what names it in errors.
func (db *DB) countActive(ctx context.Context, what, query string, args ...any) ([]spotoken.ConnectionCount, error) {
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	counts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (spotoken.ConnectionCount, error) {
		n := spotoken.ConnectionCount{State: spotoken.StateActive}
		var count int64
		err := row.Scan(&n.AppID, &count)
		n.Count = int(count)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return counts, nil
}

// leaseMiss explains why a lease statement changed no row: errIfExists if
// the connection exists, ErrNotFound if not.
func (db *DB) leaseMiss(ctx context.Context, key spotoken.ConnectionKey, errIfExists error) error {
	var exists bool
	if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM connections WHERE app_id = $1 AND id = $2)`,
		key.AppID, key.ID).Scan(&exists); err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	if !exists {
		return connNotFound(key)
	}
	return errIfExists
}

// AcquireLease gives owner the connection's lease for ttl from the store's
// clock if nobody holds it, or the holder's lease expired, or owner holds it
// already (then it is extended); ErrLeaseHeld otherwise, ErrNotFound if
// there is no such connection. It is one conditional UPDATE, so replicas
// racing for a lease cannot both win; it does not change the Version.
func (db *DB) AcquireLease(ctx context.Context, key spotoken.ConnectionKey, owner string, ttl time.Duration) (spotoken.Lease, error) {
	if owner == "" {
		return spotoken.Lease{}, spotoken.Errorf(spotoken.EInvalid, "lease owner is required")
	}
	now := db.now()
	lease := spotoken.Lease{Owner: owner, ExpiresAt: norm(now.Add(ttl))}
	tag, err := db.pool.Exec(ctx, `UPDATE connections SET lease_owner = $3, lease_expires_at = $4
		WHERE app_id = $1 AND id = $2 AND (lease_owner IS NULL OR lease_owner = $3 OR lease_expires_at <= $5)`,
		key.AppID, key.ID, owner, lease.ExpiresAt, now)
	if err != nil {
		return spotoken.Lease{}, fmt.Errorf("acquire lease: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return spotoken.Lease{}, db.leaseMiss(ctx, key, spotoken.Errorf(spotoken.ELeaseHeld, "lease on %s held by another owner", key))
	}
	return lease, nil
}

// RenewLease extends owner's unexpired lease to ttl from the store's clock;
// ErrLeaseLost if owner does not hold it.
func (db *DB) RenewLease(ctx context.Context, key spotoken.ConnectionKey, owner string, ttl time.Duration) (spotoken.Lease, error) {
	now := db.now()
	lease := spotoken.Lease{Owner: owner, ExpiresAt: norm(now.Add(ttl))}
	tag, err := db.pool.Exec(ctx, `UPDATE connections SET lease_expires_at = $4
		WHERE app_id = $1 AND id = $2 AND lease_owner = $3 AND lease_expires_at > $5`,
		key.AppID, key.ID, owner, lease.ExpiresAt, now)
	if err != nil {
		return spotoken.Lease{}, fmt.Errorf("renew lease: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return spotoken.Lease{}, db.leaseMiss(ctx, key, spotoken.Errorf(spotoken.ELeaseLost, "lease on %s not held by %q", key, owner))
	}
	return lease, nil
}

// ReleaseLease gives up owner's unexpired lease; ErrLeaseLost if owner does
// not hold it (an expired lease is no longer held).
func (db *DB) ReleaseLease(ctx context.Context, key spotoken.ConnectionKey, owner string) error {
	tag, err := db.pool.Exec(ctx, `UPDATE connections SET lease_owner = NULL, lease_expires_at = NULL
		WHERE app_id = $1 AND id = $2 AND lease_owner = $3 AND lease_expires_at > $4`,
		key.AppID, key.ID, owner, db.now())
	if err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return db.leaseMiss(ctx, key, spotoken.Errorf(spotoken.ELeaseLost, "lease on %s not held by %q", key, owner))
	}
	return nil
}
