// Package pgtest gives tests a PostgreSQL database of their own: the DSN
// from SPOTOKEN_TEST_POSTGRES (skipping with a clear message when it is
// unset) and a fresh schema per test, dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// EnvVar names the variable holding the test database's DSN.
const EnvVar = "SPOTOKEN_TEST_POSTGRES"

// DSN returns the test database's DSN, or skips the test when it is unset.
func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvVar)
	if dsn == "" {
		t.Skip(EnvVar + " is not set; set it to a PostgreSQL DSN such as " +
			"postgres://postgres@127.0.0.1:5432/test?sslmode=disable to run the PostgreSQL tests")
	}
	return dsn
}

// WithParam returns dsn with a run-time parameter set, in URL or key=value form.
func WithParam(dsn, name, value string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set(name, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " " + name + "=" + value
}

// FreshSchema creates an empty schema named prefix_<random>, dropped with
// everything in it when the test ends, and returns base with search_path
// selecting it.
func FreshSchema(t testing.TB, base, prefix string) string {
	t.Helper()
	var b [8]byte
	rand.Read(b[:])
	schema := prefix + "_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	exec := func(sql string) error {
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer admin.Close(ctx)
		_, err = admin.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if err := exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return WithParam(base, "search_path", schema)
}
