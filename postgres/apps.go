package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/rowseal"
)

const appCols = `id, client_id, client_secret, redirect_uris, default_scopes, return_to_origins, webhook_url, webhook_secret,
	created_at, updated_at, previous_client_secret, previous_webhook_secret`

// scanApp reads an app row selected with appCols, returning its secrets
// unopened.
func scanApp(row scanner) (*spotoken.App, rowseal.SealedApp, error) {
	var (
		a                  spotoken.App
		sa                 rowseal.SealedApp
		redirects, origins []string
		scopes             []string
		created, updated   pgtype.Timestamptz
	)
	if err := row.Scan(&a.ID, &a.ClientID, &sa.Client, &redirects, &scopes, &origins, &a.WebhookURL, &sa.Webhook,
		&created, &updated, &sa.PrevClient, &sa.PrevWebhook); err != nil {
		return nil, rowseal.SealedApp{}, err
	}
	a.RedirectURIs = fromTextArray(redirects)
	a.DefaultScopes = spotoken.Scopes(fromTextArray(scopes))
	a.ReturnToOrigins = fromTextArray(origins)
	a.CreatedAt, a.UpdatedAt = fromTstz(created), fromTstz(updated)
	return &a, sa, nil
}

// openAppSecrets opens the secrets of a, an app scanned with sa.
func (db *DB) openAppSecrets(a *spotoken.App, sa rowseal.SealedApp) error {
	for _, s := range rowseal.AppSecrets(a, &sa) {
		var err error
		if *s.Secret, err = db.codec.Open(s.Field, *s.Sealed); err != nil {
			return fmt.Errorf("app %s: %w", a.ID, err)
		}
	}
	return nil
}

// openApp reads an app row and opens its secrets.
func (db *DB) openApp(row scanner) (*spotoken.App, error) {
	a, sa, err := scanApp(row)
	if err != nil {
		return nil, err
	}
	if err := db.openAppSecrets(a, sa); err != nil {
		return nil, err
	}
	return a, nil
}

func appNotFound(id string) error { return spotoken.Errorf(spotoken.ENotFound, "app %q not found", id) }

// CreateApp stores a new app, setting its CreatedAt and UpdatedAt from the
// store's clock; ErrConflict if its ID exists.
func (db *DB) CreateApp(ctx context.Context, app *spotoken.App) error {
	if app.ID == "" {
		return spotoken.Errorf(spotoken.EInvalid, "app id is required")
	}
	now := db.now()
	var sa rowseal.SealedApp
	for _, s := range rowseal.AppSecrets(app, &sa) {
		var err error
		if *s.Sealed, err = db.codec.Seal(s.Field, *s.Secret); err != nil {
			return fmt.Errorf("create app: %w", err)
		}
	}
	err := db.withTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO apps (`+appCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11)`,
			app.ID, app.ClientID, sa.Client, textArray(app.RedirectURIs), textArray(app.DefaultScopes),
			textArray(app.ReturnToOrigins), app.WebhookURL, sa.Webhook, now, sa.PrevClient, sa.PrevWebhook)
		return err
	})
	if pgCode(err) == codeUniqueViolation {
		return spotoken.Errorf(spotoken.EConflict, "app %q already exists", app.ID)
	}
	if err != nil {
		return fmt.Errorf("create app: %w", err)
	}
	app.CreatedAt, app.UpdatedAt = now, now
	return nil
}

// App returns the app with id; ErrNotFound if none.
func (db *DB) App(ctx context.Context, id string) (*spotoken.App, error) {
	a, err := db.openApp(db.pool.QueryRow(ctx, `SELECT `+appCols+` FROM apps WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, appNotFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("get app: %w", err)
	}
	return a, nil
}

// Apps returns every app, ordered by ID.
func (db *DB) Apps(ctx context.Context) ([]*spotoken.App, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+appCols+` FROM apps ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	apps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*spotoken.App, error) { return db.openApp(row) })
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	return apps, nil
}

// UpdateApp applies fn to a copy of the stored app and saves the result
// atomically, with UpdatedAt from the store's clock. fn cannot change the ID
// or CreatedAt. An error from fn aborts the update and is returned as is.
func (db *DB) UpdateApp(ctx context.Context, id string, fn func(*spotoken.App) error) (*spotoken.App, error) {
	var out *spotoken.App
	var fnErr error
	err := retry(ctx, func() error {
		return db.withTx(ctx, func(tx pgx.Tx) error {
			old, sealed, err := scanApp(tx.QueryRow(ctx, `SELECT `+appCols+` FROM apps WHERE id = $1 FOR UPDATE`, id))
			if errors.Is(err, pgx.ErrNoRows) {
				return appNotFound(id)
			}
			if err != nil {
				return err
			}
			if err := db.openAppSecrets(old, sealed); err != nil {
				return err
			}
			a := *old
			a.RedirectURIs = slices.Clone(old.RedirectURIs)
			a.DefaultScopes = slices.Clone(old.DefaultScopes)
			a.ReturnToOrigins = slices.Clone(old.ReturnToOrigins)
			if fnErr = fn(&a); fnErr != nil {
				return fnErr
			}
			a.ID, a.CreatedAt, a.UpdatedAt = old.ID, old.CreatedAt, db.now()
			oldSecrets := rowseal.AppSecrets(old, &rowseal.SealedApp{})
			for i, s := range rowseal.AppSecrets(&a, &sealed) {
				if *s.Sealed, err = db.sealIfChanged(s.Field, *oldSecrets[i].Secret, *s.Secret, *s.Sealed); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `UPDATE apps SET client_id = $2, client_secret = $3, redirect_uris = $4,
				default_scopes = $5, return_to_origins = $6, webhook_url = $7, webhook_secret = $8, updated_at = $9,
				previous_client_secret = $10, previous_webhook_secret = $11
				WHERE id = $1`,
				id, a.ClientID, sealed.Client, textArray(a.RedirectURIs), textArray(a.DefaultScopes),
				textArray(a.ReturnToOrigins), a.WebhookURL, sealed.Webhook, a.UpdatedAt, sealed.PrevClient, sealed.PrevWebhook); err != nil {
				return err
			}
			a.RedirectURIs = fromTextArray(a.RedirectURIs)
			a.DefaultScopes = spotoken.Scopes(fromTextArray(a.DefaultScopes))
			a.ReturnToOrigins = fromTextArray(a.ReturnToOrigins)
			out = &a
			return nil
		})
	})
	if fnErr != nil {
		return nil, fnErr
	}
	if spotoken.ErrorCode(err) == spotoken.ENotFound {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("update app: %w", err)
	}
	return out, nil
}

// DeleteApp deletes the app with its API keys, pending authorizations,
// connections (their sealed tokens with them) and undelivered events, in one
// transaction; ErrNotFound if none. Delivered events stay as history.
func (db *DB) DeleteApp(ctx context.Context, id string) error {
	err := db.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM events WHERE app_id = $1 AND delivered_at IS NULL`, id); err != nil {
			return err
		}
		// The foreign keys cascade to api_keys, pending_authorizations and
		// connections.
		tag, err := tx.Exec(ctx, `DELETE FROM apps WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return appNotFound(id)
		}
		return nil
	})
	if err != nil && spotoken.ErrorCode(err) != spotoken.ENotFound {
		return fmt.Errorf("delete app: %w", err)
	}
	return err
}

const apiKeyCols = `id, app_id, name, prefix, hash, created_at, last_used_at, revoked_at`

func scanAPIKey(row scanner) (*spotoken.APIKey, error) {
	var (
		k                      spotoken.APIKey
		hash                   []byte
		created, used, revoked pgtype.Timestamptz
	)
	if err := row.Scan(&k.ID, &k.AppID, &k.Name, &k.Prefix, &hash, &created, &used, &revoked); err != nil {
		return nil, err
	}
	var err error
	if k.Hash, err = hash32(hash); err != nil {
		return nil, fmt.Errorf("api key %s: %w", k.ID, err)
	}
	k.CreatedAt, k.LastUsedAt, k.RevokedAt = fromTstz(created), fromTstz(used), fromTstz(revoked)
	return &k, nil
}

// CreateAPIKey stores a new key, setting its CreatedAt from the store's
// clock; ErrConflict if its ID or hash exists, ErrNotFound if its app does
// not exist.
func (db *DB) CreateAPIKey(ctx context.Context, key *spotoken.APIKey) error {
	if key.ID == "" {
		return spotoken.Errorf(spotoken.EInvalid, "api key id is required")
	}
	now := db.now()
	err := db.withTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO api_keys (`+apiKeyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			key.ID, key.AppID, key.Name, key.Prefix, key.Hash[:], now, tstz(key.LastUsedAt), tstz(key.RevokedAt))
		return err
	})
	switch pgCode(err) {
	case codeUniqueViolation:
		return spotoken.Errorf(spotoken.EConflict, "api key %q or its hash already exists", key.ID)
	case codeForeignKeyViolation:
		return appNotFound(key.AppID)
	}
	if err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	key.CreatedAt = now
	return nil
}

// APIKeyByHash finds a key, revoked or not, by the SHA-256 of its value;
// ErrNotFound if none.
func (db *DB) APIKeyByHash(ctx context.Context, hash [32]byte) (*spotoken.APIKey, error) {
	k, err := scanAPIKey(db.pool.QueryRow(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE hash = $1`, hash[:]))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, spotoken.Errorf(spotoken.ENotFound, "api key not found")
	}
	if err != nil {
		return nil, fmt.Errorf("get api key: %w", err)
	}
	return k, nil
}

// APIKeys lists an app's keys, oldest first.
func (db *DB) APIKeys(ctx context.Context, appID string) ([]*spotoken.APIKey, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+apiKeyCols+` FROM api_keys WHERE app_id = $1 ORDER BY created_at, id`, appID)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*spotoken.APIKey, error) { return scanAPIKey(row) })
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey marks an app's key revoked at at; ErrNotFound if the app has
// no key with id. Revoking twice keeps the first time.
func (db *DB) RevokeAPIKey(ctx context.Context, appID, id string, at time.Time) error {
	err := db.withTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3) WHERE app_id = $1 AND id = $2`,
			appID, id, tstz(at))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return spotoken.Errorf(spotoken.ENotFound, "app %q has no api key %q", appID, id)
		}
		return nil
	})
	if err != nil && spotoken.ErrorCode(err) == spotoken.EInternal {
		return fmt.Errorf("revoke api key: %w", err)
	}
	return err
}

// TouchAPIKey records that the key was used at at. The recorded time never
// moves back, whatever order replicas report uses in. ErrNotFound if there
// is no key with id.
func (db *DB) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	tag, err := db.pool.Exec(ctx, `UPDATE api_keys SET last_used_at = greatest(last_used_at, $2) WHERE id = $1`, id, tstz(at))
	if err != nil {
		return fmt.Errorf("touch api key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return spotoken.Errorf(spotoken.ENotFound, "api key %q not found", id)
	}
	return nil
}

const pendingCols = `state_hash, app_id, connection_id, verifier, scopes, redirect_uri, return_to, created_at, expires_at, used_at,
	require_confirmation, skip_dialog, login`

// scanPending reads a pending authorization selected with pendingCols,
// returning the sealed verifier unopened.
func scanPending(row scanner) (*spotoken.PendingAuthorization, []byte, error) {
	var (
		p                      spotoken.PendingAuthorization
		hash, verifier         []byte
		scopes                 []string
		created, expires, used pgtype.Timestamptz
	)
	if err := row.Scan(&hash, &p.AppID, &p.ConnectionID, &verifier, &scopes, &p.RedirectURI, &p.ReturnTo, &created, &expires, &used,
		&p.RequireConfirmation, &p.SkipDialog, &p.Login); err != nil {
		return nil, nil, err
	}
	var err error
	if p.StateHash, err = hash32(hash); err != nil {
		return nil, nil, fmt.Errorf("pending authorization: %w", err)
	}
	p.Scopes = spotoken.Scopes(fromTextArray(scopes))
	p.CreatedAt, p.ExpiresAt, p.UsedAt = fromTstz(created), fromTstz(expires), fromTstz(used)
	return &p, verifier, nil
}

// CreatePending stores a pending authorization, setting its CreatedAt from
// the store's clock; ErrConflict if its state hash exists, ErrNotFound if
// its app does not exist.
func (db *DB) CreatePending(ctx context.Context, p *spotoken.PendingAuthorization) error {
	now := db.now()
	if err := db.insertPending(ctx, db.pool, p, now); err != nil {
		return fmt.Errorf("create pending authorization: %w", err)
	}
	p.CreatedAt, p.UsedAt = now, time.Time{}
	return nil
}

// insertPending inserts p, created at now, through q (the pool or a
// transaction).
func (db *DB) insertPending(ctx context.Context, q interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, p *spotoken.PendingAuthorization, now time.Time) error {
	verifier, err := db.codec.Seal(rowseal.Verifier(p.AppID, p.ConnectionID, p.StateHash), p.Verifier)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `INSERT INTO pending_authorizations (`+pendingCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, $12)`,
		p.StateHash[:], p.AppID, p.ConnectionID, verifier, textArray(p.Scopes), p.RedirectURI, p.ReturnTo, now, tstz(p.ExpiresAt),
		p.RequireConfirmation, p.SkipDialog, p.Login)
	switch pgCode(err) {
	case codeUniqueViolation:
		return spotoken.Errorf(spotoken.EConflict, "pending authorization already exists")
	case codeForeignKeyViolation:
		return appNotFound(p.AppID)
	}
	return err
}

// ConsumePending marks the pending authorization with stateHash used and
// returns it, atomically, so it can be consumed once: ErrNotFound if
// unknown, ErrAlreadyUsed if consumed before, ErrExpired if past its expiry
// (an expired one is consumed too). If its verifier cannot be opened, it is
// left unconsumed.
func (db *DB) ConsumePending(ctx context.Context, stateHash [32]byte) (*spotoken.PendingAuthorization, error) {
	now := db.now()
	var out *spotoken.PendingAuthorization
	var expired bool
	err := db.withTx(ctx, func(tx pgx.Tx) error {
		p, verifier, err := scanPending(tx.QueryRow(ctx, `UPDATE pending_authorizations SET used_at = $2
			WHERE state_hash = $1 AND used_at IS NULL RETURNING `+pendingCols, stateHash[:], now))
		if errors.Is(err, pgx.ErrNoRows) {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pending_authorizations WHERE state_hash = $1)`, stateHash[:]).Scan(&exists); err != nil {
				return err
			}
			if exists {
				return spotoken.Errorf(spotoken.EAlreadyUsed, "pending authorization already used")
			}
			return spotoken.Errorf(spotoken.ENotFound, "pending authorization not found")
		}
		if err != nil {
			return err
		}
		if !now.Before(p.ExpiresAt) {
			expired = true // commit: an expired authorization is consumed too
			return nil
		}
		if p.Verifier, err = db.codec.Open(rowseal.Verifier(p.AppID, p.ConnectionID, p.StateHash), verifier); err != nil {
			return fmt.Errorf("pending authorization of %s/%s: %w", p.AppID, p.ConnectionID, err)
		}
		out = p
		return nil
	})
	switch {
	case err != nil && spotoken.ErrorCode(err) == spotoken.EInternal:
		return nil, fmt.Errorf("consume pending authorization: %w", err)
	case err != nil:
		return nil, err
	case expired:
		return nil, spotoken.Errorf(spotoken.EExpired, "pending authorization expired")
	}
	return out, nil
}

// DeleteExpiredPending deletes pending authorizations, used or not, that
// expired before before and returns how many.
func (db *DB) DeleteExpiredPending(ctx context.Context, before time.Time) (int, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM pending_authorizations WHERE expires_at < $1`, tstz(before))
	if err != nil {
		return 0, fmt.Errorf("delete expired pending authorizations: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
