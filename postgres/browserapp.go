package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/spotoken/spotoken"
)

const browserAppCols = `app_id, origins, scopes, token_scopes, created_at, updated_at`

var _ spotoken.BrowserAppStore = (*DB)(nil)

// PutBrowserApp stores an app's backend-for-frontend settings, creating or
// replacing them, with CreatedAt kept on a replacement and UpdatedAt from
// the store's clock; ErrNotFound if the app does not exist, EInvalid if b
// does not validate.
func (db *DB) PutBrowserApp(ctx context.Context, b *spotoken.BrowserApp) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("put browser app: %w", err)
	}
	now := db.now()
	var created pgtype.Timestamptz
	err := db.auditedWrite(ctx, func(q querier) error {
		return q.QueryRow(ctx, `INSERT INTO browser_apps (`+browserAppCols+`) VALUES ($1, $2, $3, $4, $5, $5)
			ON CONFLICT (app_id) DO UPDATE SET origins = excluded.origins, scopes = excluded.scopes,
				token_scopes = excluded.token_scopes, updated_at = excluded.updated_at
			RETURNING created_at`,
			b.AppID, textArray(b.Origins), textArray(b.Scopes.Normalize()), textArray(b.TokenScopes.Normalize()), now).Scan(&created)
	})
	switch pgCode(err) {
	case codeForeignKeyViolation:
		return fmt.Errorf("put browser app: %w", appNotFound(b.AppID))
	case codeCheckViolation:
		return fmt.Errorf("put browser app: %w", spotoken.Errorf(spotoken.EInvalid, "invalid value"))
	}
	if err != nil {
		return fmt.Errorf("put browser app: %w", err)
	}
	b.CreatedAt, b.UpdatedAt = fromTstz(created), now
	return nil
}

// BrowserApp returns an app's backend-for-frontend settings; ErrNotFound if
// it has none.
func (db *DB) BrowserApp(ctx context.Context, appID string) (*spotoken.BrowserApp, error) {
	var (
		b                        spotoken.BrowserApp
		origins, scopes, tscopes []string
		created, updated         pgtype.Timestamptz
	)
	err := db.pool.QueryRow(ctx, `SELECT `+browserAppCols+` FROM browser_apps WHERE app_id = $1`, appID).Scan(
		&b.AppID, &origins, &scopes, &tscopes, &created, &updated)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, spotoken.Errorf(spotoken.ENotFound, "app %q has no browser app settings", appID)
	}
	if err != nil {
		return nil, fmt.Errorf("browser app %s: %w", appID, err)
	}
	b.Origins = fromTextArray(origins)
	b.Scopes, b.TokenScopes = spotoken.Scopes(fromTextArray(scopes)), spotoken.Scopes(fromTextArray(tscopes))
	b.CreatedAt, b.UpdatedAt = fromTstz(created), fromTstz(updated)
	return &b, nil
}

// DeleteBrowserApp deletes an app's backend-for-frontend settings;
// ErrNotFound if it had none.
func (db *DB) DeleteBrowserApp(ctx context.Context, appID string) error {
	return db.auditedWrite(ctx, func(q querier) error {
		tag, err := q.Exec(ctx, `DELETE FROM browser_apps WHERE app_id = $1`, appID)
		if err != nil {
			return fmt.Errorf("delete browser app: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return spotoken.Errorf(spotoken.ENotFound, "app %q has no browser app settings", appID)
		}
		return nil
	})
}
