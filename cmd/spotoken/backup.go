package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken/sqlite"
)

type backupOptions struct {
	DB    string
	To    string
	Force bool
}

func newBackupCmd(ios *IOStreams) *cobra.Command {
	opts := &backupOptions{}
	cmd := &cobra.Command{
		Use:   "backup --to FILE [--db DB] [--force]",
		Short: "Copy the SQLite database to a file, consistently, while the server runs",
		Long: `Write a consistent copy of the SQLite database to FILE while servers keep
using it: the copy is one snapshot (SQLite's VACUUM INTO, a read transaction
that blocks no writer), holding every transaction committed before the backup
started. It is written beside FILE first, checked with PRAGMA
integrity_check, synced, and then put in place in one step, readable by its
owner only (mode 0600). An existing FILE is left alone unless --force.

The copy holds the same sealed tokens and secrets as the database: they open
only with the key file the database uses, which is not in the backup. Back
the key file up separately (and keep every key version your backups were
sealed under until they are gone).

To restore: stop every process that uses the database, delete its -wal and
-shm files, and copy the backup into its place; see docs/deploy.md.

A PostgreSQL database is backed up with pg_dump instead (docs/deploy.md).`,
		Example: `  spotoken backup --to /var/backups/spotoken/spotoken-$(date +%F).db
  spotoken backup --db /var/lib/spotoken/spotoken.db --to /var/backups/spotoken/latest.db --force`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return backupRun(cmd.Context(), ios, opts, jsonOutput(cmd))
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DB, "db", "", "the SQLite database to back up (default: "+defaultDBPath()+")")
	f.StringVar(&opts.To, "to", "", "the backup file to write (required)")
	f.BoolVar(&opts.Force, "force", false, "replace FILE if it exists")
	return cmd
}

// backupView is backup's JSON output.
type backupView struct {
	Database      string  `json:"database"`
	To            string  `json:"to"`
	Bytes         int64   `json:"bytes"`
	SchemaVersion int     `json:"schema_version"`
	Seconds       float64 `json:"seconds"`
}

func backupRun(ctx context.Context, ios *IOStreams, opts *backupOptions, asJSON bool) error {
	if opts.To == "" {
		return usageError{errors.New("--to is required: the file to write the backup to")}
	}
	so := storeOptions{DB: opts.DB}
	db := opts.DB
	if db == "" {
		db = defaultDBPath()
	}
	if isPostgres(db) {
		return usageError{errors.New("backup copies a SQLite database; back up PostgreSQL with pg_dump (see docs/deploy.md)")}
	}
	if err := so.checkExists(db); err != nil {
		return err
	}
	start := time.Now()
	res, err := sqlite.Backup(ctx, db, opts.To, opts.Force)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists and was left as it was: pass --force to replace it, or choose another --to", opts.To)
	}
	if err != nil {
		return err
	}
	v := backupView{Database: db, To: opts.To, Bytes: res.Bytes, SchemaVersion: res.SchemaVersion, Seconds: time.Since(start).Seconds()}
	if asJSON {
		if err := writeJSON(ios.Out, v); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(ios.Out, "Backed up %s to %s: %d bytes, schema version %d, in %v.\n", db, opts.To, v.Bytes, v.SchemaVersion,
			time.Since(start).Round(time.Millisecond))
	}
	fmt.Fprintf(ios.Err, "The backup holds sealed tokens: it opens only with the database's key file (by default %s), which is not in it; back that up separately.\n",
		filepath.Join(filepath.Dir(db), "spotoken.keys"))
	return nil
}
