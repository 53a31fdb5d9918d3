package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/rowseal"
)

const appColumns = `id, client_id, client_secret, redirect_uris, default_scopes, return_to_origins, webhook_url, webhook_secret,
	created_at, updated_at, previous_client_secret, previous_webhook_secret`

// sealApp seals an app's secrets.
func (db *DB) sealApp(app *spotoken.App) (rowseal.SealedApp, error) {
	var sa rowseal.SealedApp
	for _, s := range rowseal.AppSecrets(app, &sa) {
		var err error
		if *s.Sealed, err = db.codec.Seal(s.Field, *s.Secret); err != nil {
			return rowseal.SealedApp{}, err
		}
	}
	return sa, nil
}

// CreateApp stores a new app, setting its CreatedAt and UpdatedAt from the
// store's clock; ErrConflict if its ID exists.
func (db *DB) CreateApp(ctx context.Context, app *spotoken.App) error {
	now := db.now()
	sealed, err := db.sealApp(app)
	if err != nil {
		return fmt.Errorf("create app: %w", err)
	}
	redirects, err := listArg(app.RedirectURIs)
	if err != nil {
		return fmt.Errorf("create app: %w", err)
	}
	origins, err := listArg(app.ReturnToOrigins)
	if err != nil {
		return fmt.Errorf("create app: %w", err)
	}
	err = db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO apps (`+appColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			app.ID, app.ClientID, blobArg(sealed.Client), redirects, scopesArg(app.DefaultScopes), origins, app.WebhookURL,
			blobArg(sealed.Webhook), now.UnixMicro(), now.UnixMicro(), blobArg(sealed.PrevClient), blobArg(sealed.PrevWebhook))
		return translate(err, fmt.Sprintf("app %q already exists", app.ID), "")
	})
	if err != nil {
		return fmt.Errorf("create app: %w", err)
	}
	app.CreatedAt, app.UpdatedAt = now, now
	return nil
}

// App returns the app with id; ErrNotFound if none.
func (db *DB) App(ctx context.Context, id string) (*spotoken.App, error) {
	a, _, err := db.app(ctx, db.r, id)
	return a, err
}

// app reads and opens one app, returning its secrets' ciphertexts too.
func (db *DB) app(ctx context.Context, q queryer, id string) (*spotoken.App, rowseal.SealedApp, error) {
	a, sa, err := db.scanApp(q.QueryRowContext(ctx, `SELECT `+appColumns+` FROM apps WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, sa, spotoken.Errorf(spotoken.ENotFound, "app %q not found", id)
	}
	if err != nil {
		return nil, sa, fmt.Errorf("app %s: %w", id, err)
	}
	return a, sa, nil
}

// Apps returns every app, ordered by ID.
func (db *DB) Apps(ctx context.Context) ([]*spotoken.App, error) {
	return queryAll(ctx, db.r, "apps", func(r *sql.Rows) (*spotoken.App, error) {
		a, _, err := db.scanApp(r)
		return a, err
	}, `SELECT `+appColumns+` FROM apps ORDER BY id`)
}

// UpdateApp applies fn to the stored app and saves the result atomically,
// setting UpdatedAt from the store's clock. fn cannot change the ID or
// CreatedAt. An error from fn aborts the update and is returned as is.
func (db *DB) UpdateApp(ctx context.Context, id string, fn func(*spotoken.App) error) (*spotoken.App, error) {
	var out *spotoken.App
	err := db.write(ctx, func(tx *sql.Tx) error {
		old, sealed, err := db.app(ctx, tx, id)
		if err != nil {
			return fmt.Errorf("update app: %w", err)
		}
		a := *old
		a.RedirectURIs = slices.Clone(old.RedirectURIs)
		a.DefaultScopes = slices.Clone(old.DefaultScopes)
		a.ReturnToOrigins = slices.Clone(old.ReturnToOrigins)
		if err := fn(&a); err != nil {
			return err
		}
		a.ID, a.CreatedAt, a.UpdatedAt = old.ID, old.CreatedAt, db.now()

		// A secret fn left alone keeps its ciphertext.
		oldSecrets := rowseal.AppSecrets(old, &rowseal.SealedApp{})
		for i, s := range rowseal.AppSecrets(&a, &sealed) {
			if *s.Secret != *oldSecrets[i].Secret {
				if *s.Sealed, err = db.codec.Seal(s.Field, *s.Secret); err != nil {
					return fmt.Errorf("update app: %w", err)
				}
			}
		}
		redirects, err := listArg(a.RedirectURIs)
		if err != nil {
			return fmt.Errorf("update app: %w", err)
		}
		origins, err := listArg(a.ReturnToOrigins)
		if err != nil {
			return fmt.Errorf("update app: %w", err)
		}
		_, err = tx.ExecContext(ctx, `UPDATE apps SET client_id = ?, client_secret = ?, redirect_uris = ?,
			default_scopes = ?, return_to_origins = ?, webhook_url = ?, webhook_secret = ?, updated_at = ?,
			previous_client_secret = ?, previous_webhook_secret = ? WHERE id = ?`,
			a.ClientID, blobArg(sealed.Client), redirects, scopesArg(a.DefaultScopes), origins, a.WebhookURL,
			blobArg(sealed.Webhook), a.UpdatedAt.UnixMicro(), blobArg(sealed.PrevClient), blobArg(sealed.PrevWebhook), id)
		if err != nil {
			return fmt.Errorf("update app: %w", err)
		}
		out = &a
		return nil
	})
	return out, err
}

// DeleteApp deletes the app with its API keys, pending authorizations,
// connections and undelivered events, in one transaction. The cascade
// deletes the connection rows, secure_delete overwrites their sealed tokens
// in the file, and the log is checkpointed (DB.shred).
func (db *DB) DeleteApp(ctx context.Context, id string) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM apps WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := affected(res); err != nil {
			return err
		} else if n == 0 {
			return spotoken.Errorf(spotoken.ENotFound, "app %q not found", id)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM events WHERE app_id = ? AND delivered_at IS NULL`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete app: %w", err)
	}
	db.shred(ctx)
	return nil
}

// scanApp scans one row of appColumns and opens its secrets, returning
// their ciphertexts too.
func (db *DB) scanApp(row interface{ Scan(...any) error }) (*spotoken.App, rowseal.SealedApp, error) {
	var a spotoken.App
	var sa rowseal.SealedApp
	if err := row.Scan(&a.ID, &a.ClientID, &sa.Client, listCol{&a.RedirectURIs}, scopesCol{&a.DefaultScopes},
		listCol{&a.ReturnToOrigins}, &a.WebhookURL, &sa.Webhook, timeCol{&a.CreatedAt}, timeCol{&a.UpdatedAt},
		&sa.PrevClient, &sa.PrevWebhook); err != nil {
		return nil, sa, err
	}
	for _, s := range rowseal.AppSecrets(&a, &sa) {
		var err error
		if *s.Secret, err = db.codec.Open(s.Field, *s.Sealed); err != nil {
			return nil, sa, err
		}
	}
	return &a, sa, nil
}

const apiKeyColumns = `id, app_id, name, prefix, hash, created_at, last_used_at, revoked_at`

// CreateAPIKey stores a new key, setting its CreatedAt from the store's
// clock; ErrConflict if its ID or hash exists; ErrNotFound if its app does
// not exist.
func (db *DB) CreateAPIKey(ctx context.Context, key *spotoken.APIKey) error {
	now := db.now()
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (`+apiKeyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			key.ID, key.AppID, key.Name, key.Prefix, key.Hash[:], now.UnixMicro(), timeArg(key.LastUsedAt), timeArg(key.RevokedAt))
		return translate(err, "api key already exists", fmt.Sprintf("app %q not found", key.AppID))
	})
	if err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	key.CreatedAt = now
	return nil
}

// APIKeyByHash finds a key, revoked or not, by the SHA-256 of its value;
// ErrNotFound if none.
func (db *DB) APIKeyByHash(ctx context.Context, hash [32]byte) (*spotoken.APIKey, error) {
	k, err := scanAPIKey(db.r.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE hash = ?`, hash[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, spotoken.Errorf(spotoken.ENotFound, "api key not found")
	}
	if err != nil {
		return nil, fmt.Errorf("api key by hash: %w", err)
	}
	return k, nil
}

// APIKeys lists an app's keys, oldest first.
func (db *DB) APIKeys(ctx context.Context, appID string) ([]*spotoken.APIKey, error) {
	return queryAll(ctx, db.r, "api keys", func(r *sql.Rows) (*spotoken.APIKey, error) { return scanAPIKey(r) },
		`SELECT `+apiKeyColumns+` FROM api_keys WHERE app_id = ? ORDER BY created_at, rowid`, appID)
}

// RevokeAPIKey marks an app's key revoked at at; ErrNotFound if the app has
// no key with id. Revoking twice keeps the first time.
func (db *DB) RevokeAPIKey(ctx context.Context, appID, id string, at time.Time) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE app_id = ? AND id = ?`,
			at.UnixMicro(), appID, id)
		if err != nil {
			return err
		}
		if n, err := affected(res); err != nil {
			return err
		} else if n == 0 {
			return spotoken.Errorf(spotoken.ENotFound, "api key %q of app %q not found", id, appID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	return nil
}

// TouchAPIKey records that the key was used at at. The recorded time never
// goes back, whatever order concurrent touches land in; ErrNotFound if there
// is no key with id.
func (db *DB) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, ?1), ?1) WHERE id = ?2`,
			at.UnixMicro(), id)
		if err != nil {
			return err
		}
		if n, err := affected(res); err != nil {
			return err
		} else if n == 0 {
			return spotoken.Errorf(spotoken.ENotFound, "api key %q not found", id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("touch api key: %w", err)
	}
	return nil
}

// scanAPIKey scans one row of apiKeyColumns.
func scanAPIKey(row interface{ Scan(...any) error }) (*spotoken.APIKey, error) {
	var k spotoken.APIKey
	if err := row.Scan(&k.ID, &k.AppID, &k.Name, &k.Prefix, hashCol{&k.Hash},
		timeCol{&k.CreatedAt}, timeCol{&k.LastUsedAt}, timeCol{&k.RevokedAt}); err != nil {
		return nil, err
	}
	return &k, nil
}
