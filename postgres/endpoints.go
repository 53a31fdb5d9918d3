package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/spotoken/spotoken"
)

// SetAppEndpoints records app appID's endpoints, replacing any recorded
// before; ErrNotFound if the app does not exist.
func (db *DB) SetAppEndpoints(ctx context.Context, appID string, e spotoken.Endpoints) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO app_endpoints (app_id, accounts_url, api_url) VALUES ($1, $2, $3)
		ON CONFLICT (app_id) DO UPDATE SET accounts_url = excluded.accounts_url, api_url = excluded.api_url`,
		appID, e.AccountsURL, e.APIURL)
	if pgCode(err) == codeForeignKeyViolation {
		return appNotFound(appID)
	}
	if err != nil {
		return fmt.Errorf("set app endpoints: %w", err)
	}
	return nil
}

// AppEndpoints returns app appID's endpoints; ErrNotFound if none were recorded.
func (db *DB) AppEndpoints(ctx context.Context, appID string) (spotoken.Endpoints, error) {
	var e spotoken.Endpoints
	err := db.pool.QueryRow(ctx, `SELECT accounts_url, api_url FROM app_endpoints WHERE app_id = $1`, appID).
		Scan(&e.AccountsURL, &e.APIURL)
	if errors.Is(err, pgx.ErrNoRows) {
		return spotoken.Endpoints{}, spotoken.Errorf(spotoken.ENotFound, "app %q has no endpoints recorded", appID)
	}
	if err != nil {
		return spotoken.Endpoints{}, fmt.Errorf("app endpoints: %w", err)
	}
	return e, nil
}
