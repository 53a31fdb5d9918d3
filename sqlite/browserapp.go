package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/spotoken/spotoken"
)

const browserAppColumns = `app_id, origins, scopes, token_scopes, created_at, updated_at`

var _ spotoken.BrowserAppStore = (*DB)(nil)

// PutBrowserApp stores an app's backend-for-frontend settings, creating or
// replacing them, with CreatedAt kept on a replacement and UpdatedAt from
// the store's clock; ErrNotFound if the app does not exist, EInvalid if b
// does not validate.
func (db *DB) PutBrowserApp(ctx context.Context, b *spotoken.BrowserApp) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("put browser app: %w", err)
	}
	origins, err := listArg(b.Origins)
	if err != nil {
		return fmt.Errorf("put browser app: %w", err)
	}
	now := db.now()
	var created time.Time
	err = db.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO browser_apps (`+browserAppColumns+`) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (app_id) DO UPDATE SET origins = excluded.origins, scopes = excluded.scopes,
				token_scopes = excluded.token_scopes, updated_at = excluded.updated_at
			RETURNING created_at`,
			b.AppID, origins, scopesArg(b.Scopes.Normalize()), scopesArg(b.TokenScopes.Normalize()), now.UnixMicro(), now.UnixMicro()).Scan(timeCol{&created})
		return translate(err, "", fmt.Sprintf("app %q not found", b.AppID))
	})
	if err != nil {
		return fmt.Errorf("put browser app: %w", err)
	}
	b.CreatedAt, b.UpdatedAt = created, now
	return nil
}

// BrowserApp returns an app's backend-for-frontend settings; ErrNotFound if
// it has none.
func (db *DB) BrowserApp(ctx context.Context, appID string) (*spotoken.BrowserApp, error) {
	var b spotoken.BrowserApp
	err := db.r.QueryRowContext(ctx, `SELECT `+browserAppColumns+` FROM browser_apps WHERE app_id = ?`, appID).Scan(
		&b.AppID, listCol{&b.Origins}, scopesCol{&b.Scopes}, scopesCol{&b.TokenScopes}, timeCol{&b.CreatedAt}, timeCol{&b.UpdatedAt})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, spotoken.Errorf(spotoken.ENotFound, "app %q has no browser app settings", appID)
	}
	if err != nil {
		return nil, fmt.Errorf("browser app %s: %w", appID, err)
	}
	return &b, nil
}

// DeleteBrowserApp deletes an app's backend-for-frontend settings;
// ErrNotFound if it had none.
func (db *DB) DeleteBrowserApp(ctx context.Context, appID string) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM browser_apps WHERE app_id = ?`, appID)
		if err != nil {
			return err
		}
		if n, err := affected(res); err != nil || n == 1 {
			return err
		}
		return spotoken.Errorf(spotoken.ENotFound, "app %q has no browser app settings", appID)
	})
	if err != nil {
		return fmt.Errorf("delete browser app: %w", err)
	}
	return nil
}
