package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsUnavailable reports whether err means the database cannot serve now,
// as opposed to a fault in the request: the connection could not be made
// or was lost, or the server is shutting down, starting up or out of
// connections (SQLSTATE class 08, 57P01–57P03, 53300).
func IsUnavailable(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.Timeout(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case len(pe.Code) == 5 && pe.Code[:2] == "08", pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", pe.Code == "53300":
			return true
		}
	}
	return false
}
