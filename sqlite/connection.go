package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/rowseal"
)

const connectionColumns = `app_id, id, spotify_user_id, display_name, scopes, state, access_token, refresh_token,
	access_expires_at, version, lease_owner, lease_expires_at, last_refresh_at, consecutive_failures,
	next_attempt_at, last_error_code, consented_at, grant_expires_at, expiry_warned_at, created_at, updated_at,
	refresh_unknown_at`

// sealedToken is a connection's two token ciphertexts as stored.
type sealedToken struct{ access, refresh []byte }

// CreateConnection stores a new connection with Version 1, no lease, and
// CreatedAt and UpdatedAt from the store's clock, and its events, in one
// transaction; ErrConflict if the key exists, ErrNotFound if the app does
// not.
func (db *DB) CreateConnection(ctx context.Context, c *spotoken.Connection, events ...spotoken.Event) error {
	if !c.State.Valid() {
		return fmt.Errorf("create connection: %w", spotoken.Errorf(spotoken.EInvalid, "invalid connection state %q", c.State))
	}
	now := db.now()
	access, refresh, err := db.codec.SealToken(c.Key(), c.Token)
	if err != nil {
		return fmt.Errorf("create connection: %w", err)
	}
	err = db.write(ctx, func(tx *sql.Tx) error {
		// A new connection counts as used: its user just authorized it.
		_, err := tx.ExecContext(ctx, `INSERT INTO connections (`+connectionColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.AppID, c.ID, c.SpotifyUserID, c.DisplayName, scopesArg(c.Scopes), string(c.State), blobArg(access), blobArg(refresh),
			timeArg(c.Token.Expiry), timeArg(c.LastRefreshAt), c.ConsecutiveFailures,
			timeArg(c.NextAttemptAt), c.LastErrorCode, timeArg(c.ConsentedAt), timeArg(c.GrantExpiresAt), timeArg(c.ExpiryWarnedAt),
			now.UnixMicro(), now.UnixMicro(), timeArg(c.RefreshUnknownAt))
		if err != nil {
			return translate(err, fmt.Sprintf("connection %s already exists", c.Key()), fmt.Sprintf("app %q not found", c.AppID))
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO connection_uses (app_id, id, last_used_at) VALUES (?, ?, ?)`,
			c.AppID, c.ID, now.UnixMicro()); err != nil {
			return err
		}
		return db.insertEvents(ctx, tx, now, events)
	})
	if err != nil {
		return fmt.Errorf("create connection: %w", err)
	}
	c.Version, c.Lease, c.CreatedAt, c.UpdatedAt = 1, spotoken.Lease{}, now, now
	return nil
}

// Connection returns the connection with key; ErrNotFound if none. It
// reads through db.point (see pointReader).
func (db *DB) Connection(ctx context.Context, key spotoken.ConnectionKey) (*spotoken.Connection, error) {
	c, st, found, err := db.point.read(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("connection %s: %w", key, err)
	}
	if !found {
		return nil, notFound(key)
	}
	if c.Token.AccessToken, c.Token.RefreshToken, err = db.codec.OpenToken(key, st.access, st.refresh); err != nil {
		return nil, err
	}
	return c, nil
}

// connection reads and opens one connection with stmt (connectionQuery,
// prepared), returning its ciphertexts too.
func (db *DB) connection(ctx context.Context, stmt *sql.Stmt, key spotoken.ConnectionKey) (*spotoken.Connection, sealedToken, error) {
	c, st, err := db.scanConnection(stmt.QueryRowContext(ctx, key.AppID, key.ID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, st, notFound(key)
	}
	return c, st, err
}

func notFound(key spotoken.ConnectionKey) error {
	return spotoken.Errorf(spotoken.ENotFound, "connection %s not found", key)
}

// UpdateConnection reads the connection, calls fn with a copy and writes
// fn's result with fn's events, in one write transaction, guarded by
// compare-and-swap on Version, which it increments. fn cannot change the
// key, Version, Lease or CreatedAt; UpdatedAt is set from the store's clock.
// A token that fn leaves as it was keeps its ciphertext; an emptied one is
// erased (NULL, and the log checkpointed: see DB.shred). An error from fn
// aborts the update and is returned as is.
//
// The transaction holds SQLite's write lock from its first read, so no
// other writer, in this process or another, can get in between: fn runs
// once. Under spotoken.ReleasingLease(ctx, owner) the same UPDATE clears
// owner's lease if owner holds it: a refresh's commit and its release are
// one write (one fsync) instead of two.
func (db *DB) UpdateConnection(ctx context.Context, key spotoken.ConnectionKey, fn func(c *spotoken.Connection) ([]spotoken.Event, error)) (*spotoken.Connection, error) {
	owner := spotoken.LeaseToRelease(ctx)
	var out *spotoken.Connection
	var erased bool // a stored token was emptied
	err := db.write(ctx, func(tx *sql.Tx) error {
		old, sealed, err := db.connection(ctx, tx.StmtContext(ctx, db.stmts.wConnection), key)
		if err != nil {
			return fmt.Errorf("update connection: %w", err)
		}
		c := *old
		c.Scopes = slices.Clone(old.Scopes)
		events, err := fn(&c)
		if err != nil {
			return err
		}
		c.AppID, c.ID, c.Version, c.Lease, c.CreatedAt = old.AppID, old.ID, old.Version, old.Lease, old.CreatedAt
		// The write lock is held since the read: the lease read is the
		// lease written over.
		release := owner != "" && old.Lease.Owner == owner
		if release {
			c.Lease = spotoken.Lease{}
		}
		c.UpdatedAt = db.now()
		if !c.State.Valid() {
			return fmt.Errorf("update connection %s: %w", key, spotoken.Errorf(spotoken.EInvalid, "invalid connection state %q", c.State))
		}
		access, refresh, err := db.resealChanged(key, old.Token, c.Token, sealed)
		if err != nil {
			return fmt.Errorf("update connection: %w", err)
		}
		res, err := tx.StmtContext(ctx, db.stmts.update).ExecContext(ctx,
			c.SpotifyUserID, c.DisplayName, scopesArg(c.Scopes), string(c.State),
			blobArg(access), blobArg(refresh), timeArg(c.Token.Expiry), timeArg(c.LastRefreshAt), c.ConsecutiveFailures,
			timeArg(c.NextAttemptAt), c.LastErrorCode, timeArg(c.ConsentedAt), timeArg(c.GrantExpiresAt), timeArg(c.ExpiryWarnedAt), c.UpdatedAt.UnixMicro(),
			timeArg(c.RefreshUnknownAt), release, release, key.AppID, key.ID, old.Version)
		if err != nil {
			return fmt.Errorf("update connection %s: %w", key, err)
		}
		if n, err := affected(res); err != nil {
			return fmt.Errorf("update connection %s: %w", key, err)
		} else if n != 1 {
			// Cannot happen while the transaction holds the write lock; if
			// it does, refuse rather than overwrite another writer's work.
			return fmt.Errorf("update connection %s: %w", key,
				spotoken.Errorf(spotoken.EConflict, "connection %s changed during the update", key))
		}
		if err := db.insertEvents(ctx, tx, c.UpdatedAt, events); err != nil {
			return fmt.Errorf("update connection %s: %w", key, err)
		}
		c.Version = old.Version + 1
		// Return what is stored: times at the store's precision, in UTC.
		for _, t := range []*time.Time{&c.Token.Expiry, &c.LastRefreshAt, &c.NextAttemptAt, &c.ConsentedAt, &c.GrantExpiresAt, &c.ExpiryWarnedAt, &c.RefreshUnknownAt} {
			*t = stored(*t)
		}
		out = &c
		erased = (len(sealed.access) > 0 && len(access) == 0) || (len(sealed.refresh) > 0 && len(refresh) == 0)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if erased {
		db.shred(ctx)
	}
	return out, nil
}

// updateQuery is UpdateConnection's compare-and-swap.
const updateQuery = `UPDATE connections SET spotify_user_id = ?, display_name = ?, scopes = ?, state = ?,
		access_token = ?, refresh_token = ?, access_expires_at = ?, last_refresh_at = ?, consecutive_failures = ?,
		next_attempt_at = ?, last_error_code = ?, consented_at = ?, grant_expires_at = ?, expiry_warned_at = ?, updated_at = ?,
		refresh_unknown_at = ?, version = version + 1,
		lease_owner = CASE WHEN ? THEN NULL ELSE lease_owner END,
		lease_expires_at = CASE WHEN ? THEN NULL ELSE lease_expires_at END
	WHERE app_id = ? AND id = ? AND version = ?`

// resealChanged returns the ciphertexts for token next: the stored one for
// a secret that did not change, a fresh one for a secret that did, nil for
// an empty one.
func (db *DB) resealChanged(key spotoken.ConnectionKey, prev, next spotoken.Token, kept sealedToken) (access, refresh []byte, err error) {
	access, refresh = kept.access, kept.refresh
	if next.AccessToken != prev.AccessToken {
		if access, err = db.codec.Seal(rowseal.AccessToken(key), next.AccessToken); err != nil {
			return nil, nil, err
		}
	}
	if next.RefreshToken != prev.RefreshToken {
		if refresh, err = db.codec.Seal(rowseal.RefreshToken(key), next.RefreshToken); err != nil {
			return nil, nil, err
		}
	}
	return access, refresh, nil
}

// DeleteConnection deletes the connection and stores events, in one
// transaction; ErrNotFound if none. secure_delete overwrites the deleted
// row, sealed tokens included, and the log is checkpointed (DB.shred).
func (db *DB) DeleteConnection(ctx context.Context, key spotoken.ConnectionKey, events ...spotoken.Event) error {
	now := db.now()
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM connections WHERE app_id = ? AND id = ?`, key.AppID, key.ID)
		if err != nil {
			return err
		}
		if n, err := affected(res); err != nil {
			return err
		} else if n == 0 {
			return notFound(key)
		}
		return db.insertEvents(ctx, tx, now, events)
	})
	if err != nil {
		return fmt.Errorf("delete connection: %w", err)
	}
	db.shred(ctx)
	return nil
}

// connectionsQuery lists an app's connections by id from the primary key;
// connectionsStateQuery those in one state from connections_app_state.
const (
	connectionsQuery = `SELECT ` + connectionColumns + ` FROM connections
		WHERE app_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3`
	connectionsStateQuery = `SELECT ` + connectionColumns + ` FROM connections
		WHERE app_id = ?1 AND state = ?4 AND id > ?2 ORDER BY id LIMIT ?3`
)

// Connections lists an app's connections by ID, after filter.After, at most
// filter.Limit (see spotoken.PageLimit); EInvalid without filter.AppID.
// Each reads an index in id order: the primary key, or
// connections_app_state for one state.
func (db *DB) Connections(ctx context.Context, filter spotoken.ConnectionFilter) ([]*spotoken.Connection, error) {
	if filter.AppID == "" {
		return nil, fmt.Errorf("connections: %w", spotoken.Errorf(spotoken.EInvalid, "connection filter has no app id"))
	}
	limit, err := spotoken.PageLimit(filter.Limit)
	if err != nil {
		return nil, fmt.Errorf("connections: %w", err)
	}
	query, args := connectionsQuery, []any{filter.AppID, filter.After, limit}
	if filter.State != "" {
		query, args = connectionsStateQuery, append(args, string(filter.State))
	}
	return list(ctx, db, "connections", func(r *sql.Rows) (*spotoken.Connection, error) {
		c, _, err := db.scanConnection(r)
		return c, err
	}, query, args...)
}

// countQuery counts connections by app and state. It scans the covering
// index connections_app_state in GROUP BY order: no sort, no table read.
const countQuery = `SELECT app_id, state, count(*) FROM connections GROUP BY app_id, state ORDER BY app_id, state`

// CountConnections counts connections by app and state, ordered by app then
// state; pairs with no connection are left out. It opens no token.
func (db *DB) CountConnections(ctx context.Context) ([]spotoken.ConnectionCount, error) {
	return queryAll(ctx, db.r, "count connections", func(r *sql.Rows) (n spotoken.ConnectionCount, err error) {
		var state string
		err = r.Scan(&n.AppID, &state, &n.Count)
		n.State = spotoken.State(state)
		return n, err
	}, countQuery)
}

// dueQuery selects Due's connections. It reads the partial, covering index
// connections_due alone (state = 'active' must stay a literal for SQLite to
// use a partial index) and no token column.
const dueQuery = `SELECT app_id, id, access_expires_at, version FROM connections
	WHERE state = 'active' AND access_expires_at < ?1 AND (next_attempt_at IS NULL OR next_attempt_at <= ?2)
	ORDER BY access_expires_at, app_id, id LIMIT ?3`

// Due returns up to limit active connections whose access token expires
// before before and that are not in backoff (NextAttemptAt not after the
// store's clock), soonest expiry first, and none if limit is not positive.
// It reads the connections_due index, not the table, and opens no token.
func (db *DB) Due(ctx context.Context, before time.Time, limit int) ([]spotoken.DueConnection, error) {
	if limit <= 0 {
		return nil, nil
	}
	return queryAll(ctx, db.r, "due", func(r *sql.Rows) (d spotoken.DueConnection, err error) {
		err = r.Scan(&d.Key.AppID, &d.Key.ID, timeCol{&d.Expiry}, &d.Version)
		return d, err
	}, dueQuery, before.UnixMicro(), db.now().UnixMicro(), limit)
}

// dueUsedQuery selects DueUsed's connections from connections_due, from
// the cursor on (the row value compares in the index's order), each looked
// up in connection_uses by key. INDEXED BY: without statistics the planner
// may prefer an index on state, then sort every active row; CROSS JOIN
// keeps connections_due the outer loop, in its order.
const dueUsedQuery = `SELECT c.app_id, c.id, c.access_expires_at, c.version FROM connections AS c INDEXED BY connections_due
	CROSS JOIN connection_uses AS u ON u.app_id = c.app_id AND u.id = c.id
	WHERE c.state = 'active' AND (c.access_expires_at, c.app_id, c.id) > (?1, ?2, ?3) AND c.access_expires_at < ?4
		AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= ?5) AND u.last_used_at >= ?6
	ORDER BY c.access_expires_at, c.app_id, c.id LIMIT ?7`

// dueAnyQuery is dueUsedQuery for a zero UsedSince: used or not.
const dueAnyQuery = `SELECT app_id, id, access_expires_at, version FROM connections INDEXED BY connections_due
	WHERE state = 'active' AND (access_expires_at, app_id, id) > (?1, ?2, ?3) AND access_expires_at < ?4
		AND (next_attempt_at IS NULL OR next_attempt_at <= ?5)
	ORDER BY access_expires_at, app_id, id LIMIT ?6`

// DueUsed returns up to q.Limit active connections not in backoff whose
// access token expires before q.Before, used since q.UsedSince (any with a
// zero one), after the cursor q.After, soonest expiry first. It reads the
// connections_due index from the cursor on, and connection_uses by key for
// each candidate when q.UsedSince is set; it opens no token.
func (db *DB) DueUsed(ctx context.Context, q spotoken.DueQuery) ([]spotoken.DueConnection, error) {
	if q.Limit <= 0 {
		return nil, nil
	}
	args, used := db.dueArgs(q)
	query := dueAnyQuery
	if used {
		query = dueUsedQuery
	}
	return queryAll(ctx, db.r, "due", func(r *sql.Rows) (d spotoken.DueConnection, err error) {
		err = r.Scan(&d.Key.AppID, &d.Key.ID, timeCol{&d.Expiry}, &d.Version)
		return d, err
	}, query, append(args, q.Limit)...)
}

// countDueUsedQuery and countDueAnyQuery count what dueUsedQuery and
// dueAnyQuery select, from the same index.
const (
	countDueUsedQuery = `SELECT count(*) FROM connections AS c INDEXED BY connections_due
	CROSS JOIN connection_uses AS u ON u.app_id = c.app_id AND u.id = c.id
	WHERE c.state = 'active' AND (c.access_expires_at, c.app_id, c.id) > (?1, ?2, ?3) AND c.access_expires_at < ?4
		AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= ?5) AND u.last_used_at >= ?6`
	countDueAnyQuery = `SELECT count(*) FROM connections INDEXED BY connections_due
	WHERE state = 'active' AND (access_expires_at, app_id, id) > (?1, ?2, ?3) AND access_expires_at < ?4
		AND (next_attempt_at IS NULL OR next_attempt_at <= ?5)`
)

// CountDue counts what DueUsed(q) would return without q.Limit, reading the
// connections_due index (and connection_uses, as DueUsed does).
func (db *DB) CountDue(ctx context.Context, q spotoken.DueQuery) (int, error) {
	args, used := db.dueArgs(q)
	query := countDueAnyQuery
	if used {
		query = countDueUsedQuery
	}
	var n int
	if err := db.r.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count due: %w", err)
	}
	return n, nil
}

// dueArgs are the arguments of the due queries but the limit; used tells
// the query with last_used_at.
func (db *DB) dueArgs(q spotoken.DueQuery) (args []any, used bool) {
	after := int64(math.MinInt64)
	if !q.After.Expiry.IsZero() {
		after = q.After.Expiry.UnixMicro()
	}
	args = []any{after, q.After.Key.AppID, q.After.Key.ID, q.Before.UnixMicro(), db.now().UnixMicro()}
	if !q.UsedSince.IsZero() {
		args = append(args, q.UsedSince.UnixMicro())
	}
	return args, !q.UsedSince.IsZero()
}

// markUsedBatch is how many uses one statement of MarkUsed records (three
// parameters each, well under SQLite's 32,766).
const markUsedBatch = 1000

// MarkUsed records callers' uses of connections in connection_uses
// (migration 0018): a connection's last use becomes the later of the
// stored one and each use's time; unknown connections are skipped. The
// connection's row, its version and updated_at are not touched.
//
// It writes as background work, after callers' writes, one statement per
// markUsedBatch uses, each its own transaction: a statement that is a
// whole transaction needs no statement journal, which in a transaction of
// several cost as much as the write itself at a million connections. The
// statements commit with synchronous=NORMAL (see AppendAudit): a use
// lost to a power cut makes the scheduler think a connection idle for one
// window, and its next caller refreshes it on demand.
func (db *DB) MarkUsed(ctx context.Context, uses []spotoken.ConnectionUse) error {
	if len(uses) == 0 {
		return nil
	}
	err := db.backgroundNormalWrite(ctx, func(c rawConn) error {
		for chunk := range slices.Chunk(uses, markUsedBatch) {
			query, args := markUsedStatement(chunk)
			if _, err := c.ExecContext(ctx, query, args); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark connections used: %w", translate(err, "", ""))
	}
	return nil
}

// markUsedStatement is the upsert of uses into connection_uses, with its
// arguments.
func markUsedStatement(uses []spotoken.ConnectionUse) (string, []driver.NamedValue) {
	var b strings.Builder
	b.WriteString(`WITH u(app_id, id, at) AS (VALUES `)
	args := make([]driver.NamedValue, 0, 3*len(uses))
	for i, u := range uses {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?)")
		for _, v := range [...]any{u.Key.AppID, u.Key.ID, u.At.UnixMicro()} {
			args = append(args, driver.NamedValue{Ordinal: len(args) + 1, Value: v})
		}
	}
	// max per key first: an upsert may not meet its row twice. The WHERE
	// skips unknown connections (and keeps the upsert from being read as
	// the SELECT's join).
	b.WriteString(`), m AS (SELECT app_id, id, max(at) AS at FROM u GROUP BY app_id, id)
		INSERT INTO connection_uses (app_id, id, last_used_at)
		SELECT m.app_id, m.id, m.at FROM m
		WHERE EXISTS (SELECT 1 FROM connections AS c WHERE c.app_id = m.app_id AND c.id = m.id)
		ON CONFLICT (app_id, id) DO UPDATE SET last_used_at = max(last_used_at, excluded.last_used_at)`)
	return b.String(), args
}

// expiringQuery selects ExpiringGrants' connections from the partial index
// connections_unwarned alone (its WHERE repeats the index's, literally).
const expiringQuery = `SELECT app_id, id, grant_expires_at, version FROM connections
	WHERE state = 'active' AND expiry_warned_at IS NULL AND grant_expires_at < ?1
	ORDER BY grant_expires_at, app_id, id LIMIT ?2`

// ExpiringGrants returns up to limit active connections whose grant
// expires before before and that were not warned about yet, soonest first,
// with Expiry set to GrantExpiresAt; none if limit is not positive. It
// reads the connections_unwarned index and opens no token.
func (db *DB) ExpiringGrants(ctx context.Context, before time.Time, limit int) ([]spotoken.DueConnection, error) {
	if limit <= 0 {
		return nil, nil
	}
	return queryAll(ctx, db.r, "expiring grants", func(r *sql.Rows) (d spotoken.DueConnection, err error) {
		err = r.Scan(&d.Key.AppID, &d.Key.ID, timeCol{&d.Expiry}, &d.Version)
		return d, err
	}, expiringQuery, before.UnixMicro(), limit)
}

// CountExpiringGrants counts, by app, the active connections whose grant
// expires before before, from the connections_grant_expiry index.
func (db *DB) CountExpiringGrants(ctx context.Context, before time.Time) ([]spotoken.ConnectionCount, error) {
	return queryAll(ctx, db.r, "count expiring grants", func(r *sql.Rows) (n spotoken.ConnectionCount, err error) {
		err = r.Scan(&n.AppID, &n.Count)
		n.State = spotoken.StateActive
		return n, err
	}, `SELECT app_id, count(*) FROM connections WHERE state = 'active' AND grant_expires_at < ?1
		GROUP BY app_id ORDER BY app_id`, before.UnixMicro())
}

// The lease updates: AcquireLease's takes a lease that is free, expired or
// owner's; RenewLease's extends owner's unexpired lease; ReleaseLease's
// gives it up.
const (
	acquireQuery = `UPDATE connections SET lease_owner = ?1, lease_expires_at = ?2
		WHERE app_id = ?3 AND id = ?4 AND (lease_owner IS NULL OR lease_owner = ?1 OR lease_expires_at <= ?5)`
	renewQuery = `UPDATE connections SET lease_expires_at = ?1
		WHERE app_id = ?2 AND id = ?3 AND lease_owner = ?4 AND lease_expires_at > ?5`
	releaseQuery = `UPDATE connections SET lease_owner = NULL, lease_expires_at = NULL
		WHERE app_id = ?1 AND id = ?2 AND lease_owner = ?3 AND lease_expires_at > ?4`
)

// AcquireLease gives owner the connection's lease for ttl from the store's
// clock if nobody holds it, the holder's lease expired, or owner holds it
// already (which extends it); ErrLeaseHeld otherwise, ErrNotFound if there
// is no such connection. One conditional UPDATE takes it; the version does
// not change.
func (db *DB) AcquireLease(ctx context.Context, key spotoken.ConnectionKey, owner string, ttl time.Duration) (spotoken.Lease, error) {
	if owner == "" {
		return spotoken.Lease{}, fmt.Errorf("acquire lease: %w", spotoken.Errorf(spotoken.EInvalid, "lease owner is empty"))
	}
	now := db.now()
	lease := spotoken.Lease{Owner: owner, ExpiresAt: stored(now.Add(ttl))}
	err := db.updateLease(ctx, key, spotoken.ELeaseHeld, "held by another owner", db.stmts.acquire,
		owner, lease.ExpiresAt.UnixMicro(), key.AppID, key.ID, now.UnixMicro())
	if err != nil {
		return spotoken.Lease{}, fmt.Errorf("acquire lease: %w", err)
	}
	return lease, nil
}

// RenewLease extends owner's unexpired lease to ttl from the store's clock;
// ErrLeaseLost if owner does not hold it, ErrNotFound if there is no such
// connection.
func (db *DB) RenewLease(ctx context.Context, key spotoken.ConnectionKey, owner string, ttl time.Duration) (spotoken.Lease, error) {
	now := db.now()
	lease := spotoken.Lease{Owner: owner, ExpiresAt: stored(now.Add(ttl))}
	err := db.updateLease(ctx, key, spotoken.ELeaseLost, "not held by this owner", db.stmts.renew,
		lease.ExpiresAt.UnixMicro(), key.AppID, key.ID, owner, now.UnixMicro())
	if err != nil {
		return spotoken.Lease{}, fmt.Errorf("renew lease: %w", err)
	}
	return lease, nil
}

// ReleaseLease gives up owner's unexpired lease; ErrLeaseLost if owner does
// not hold it (an expired lease is no longer held), ErrNotFound if there is
// no such connection.
func (db *DB) ReleaseLease(ctx context.Context, key spotoken.ConnectionKey, owner string) error {
	now := db.now()
	err := db.updateLease(ctx, key, spotoken.ELeaseLost, "not held by this owner", db.stmts.release,
		key.AppID, key.ID, owner, now.UnixMicro())
	if err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}

// exists returns ErrNotFound if there is no connection with key.
func (db *DB) exists(ctx context.Context, q queryer, key spotoken.ConnectionKey) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM connections WHERE app_id = ? AND id = ?`, key.AppID, key.ID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound(key)
	}
	return err
}

// scanConnection scans one row of connectionColumns and opens its tokens.
func (db *DB) scanConnection(row interface{ Scan(...any) error }) (*spotoken.Connection, sealedToken, error) {
	var c spotoken.Connection
	var st sealedToken
	var state string
	if err := row.Scan(&c.AppID, &c.ID, &c.SpotifyUserID, &c.DisplayName, scopesCol{&c.Scopes}, &state,
		&st.access, &st.refresh, timeCol{&c.Token.Expiry}, &c.Version,
		nullString{&c.Lease.Owner}, timeCol{&c.Lease.ExpiresAt}, timeCol{&c.LastRefreshAt}, &c.ConsecutiveFailures,
		timeCol{&c.NextAttemptAt}, &c.LastErrorCode, timeCol{&c.ConsentedAt}, timeCol{&c.GrantExpiresAt}, timeCol{&c.ExpiryWarnedAt},
		timeCol{&c.CreatedAt}, timeCol{&c.UpdatedAt}, timeCol{&c.RefreshUnknownAt}); err != nil {
		return nil, st, err
	}
	c.State = spotoken.State(state)
	var err error
	if c.Token.AccessToken, c.Token.RefreshToken, err = db.codec.OpenToken(c.Key(), st.access, st.refresh); err != nil {
		return nil, st, err
	}
	return &c, st, nil
}
