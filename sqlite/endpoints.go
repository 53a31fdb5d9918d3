package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/spotoken/spotoken"
)

// SetAppEndpoints records app appID's endpoints, replacing any recorded
// before; ErrNotFound if the app does not exist.
func (db *DB) SetAppEndpoints(ctx context.Context, appID string, e spotoken.Endpoints) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO app_endpoints (app_id, accounts_url, api_url) VALUES (?, ?, ?)
			ON CONFLICT (app_id) DO UPDATE SET accounts_url = excluded.accounts_url, api_url = excluded.api_url`,
			appID, e.AccountsURL, e.APIURL)
		return translate(err, "", fmt.Sprintf("app %q not found", appID))
	})
	if err != nil {
		return fmt.Errorf("set app endpoints: %w", err)
	}
	return nil
}

// AppEndpoints returns app appID's endpoints; ErrNotFound if none were recorded.
func (db *DB) AppEndpoints(ctx context.Context, appID string) (spotoken.Endpoints, error) {
	var e spotoken.Endpoints
	err := db.r.QueryRowContext(ctx, `SELECT accounts_url, api_url FROM app_endpoints WHERE app_id = ?`, appID).
		Scan(&e.AccountsURL, &e.APIURL)
	if errors.Is(err, sql.ErrNoRows) {
		return spotoken.Endpoints{}, spotoken.Errorf(spotoken.ENotFound, "app %q has no endpoints recorded", appID)
	}
	if err != nil {
		return spotoken.Endpoints{}, fmt.Errorf("app endpoints: %w", err)
	}
	return e, nil
}
