package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken/seal"
)

type keysOptions struct {
	KeyFile string
}

func newKeysCmd(ios *IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the keys that seal tokens and secrets at rest",
		Long: `Manage the key file whose keys seal refresh tokens, client secrets and PKCE
verifiers at rest (AES-256-GCM). A key file holds numbered key versions, one of
them the primary key, which seals everything new; older versions still open
what they sealed.

Keep the key file safe and backed up: without it, stored tokens cannot be
opened. It must be readable by its owner only (chmod 600). spotoken never
prints key material.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newKeysGenerateCmd(ios), newKeysAddCmd(ios), newKeysRotateCmd(ios))
	return cmd
}

func newKeysGenerateCmd(ios *IOStreams) *cobra.Command {
	opts := &keysOptions{}
	cmd := &cobra.Command{
		Use:   "generate --key-file PATH",
		Short: "Create a key file with one new random key",
		Long: `Create a key file at PATH holding one new random key, version 1, as the
primary key, readable by its owner only (mode 0600). It never overwrites an
existing file.`,
		Example: `  spotoken keys generate --key-file ~/.config/spotoken/keys.json
  spotoken serve --key-file ~/.config/spotoken/keys.json`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return keysGenerateRun(ios, opts) },
	}
	cmd.Flags().StringVar(&opts.KeyFile, "key-file", "", "path of the key file to create (required)")
	return cmd
}

func keysGenerateRun(ios *IOStreams, opts *keysOptions) error {
	if opts.KeyFile == "" {
		return usageError{errors.New("--key-file is required")}
	}
	ring, err := seal.GenerateKeyFile(opts.KeyFile)
	if err != nil {
		return err
	}
	fmt.Fprintf(ios.Out, "Created key file %s with key version %d (primary).\n", opts.KeyFile, ring.Primary())
	fmt.Fprintln(ios.Out, "Back it up and keep it secret: without it, sealed tokens cannot be opened.")
	return nil
}

func newKeysAddCmd(ios *IOStreams) *cobra.Command {
	opts := &keysOptions{}
	cmd := &cobra.Command{
		Use:   "add --key-file PATH",
		Short: "Add a new random key to a key file and make it the primary key",
		Long: `Add a new random key to the key file at PATH, with the next version number,
and make it the primary key. The file is replaced atomically and keeps mode
0600.

Then restart every spotoken server that uses the file, so that all of them
seal with the new key and can open what the others seal, and run
'spotoken keys rotate' to re-seal stored rows under it. Keep the old keys in
the file until that is done.`,
		Example: `  spotoken keys add --key-file ~/.config/spotoken/keys.json`,
		Args:    noArgs,
		RunE:    func(*cobra.Command, []string) error { return keysAddRun(ios, opts) },
	}
	cmd.Flags().StringVar(&opts.KeyFile, "key-file", "", "path of the key file to add a key to (required)")
	return cmd
}

func keysAddRun(ios *IOStreams, opts *keysOptions) error {
	if opts.KeyFile == "" {
		return usageError{errors.New("--key-file is required")}
	}
	ring, err := seal.AddKey(opts.KeyFile)
	if err != nil {
		return err
	}
	fmt.Fprintf(ios.Out, "Added key version %d to %s; it is now the primary key (versions %v).\n", ring.Primary(), opts.KeyFile, ring.Versions())
	fmt.Fprintln(ios.Out, "Restart the servers that use this file, then run `spotoken keys rotate` to re-seal stored rows under the new key.")
	return nil
}

type keysRotateOptions struct {
	store storeOptions
	batch int
}

func newKeysRotateCmd(ios *IOStreams) *cobra.Command {
	opts := &keysRotateOptions{}
	cmd := &cobra.Command{
		Use:   "rotate [--db DB] [--key-file PATH]",
		Short: "Re-seal every stored secret under the primary key, online",
		Long: `Re-seal every stored token, client secret and PKCE verifier that is sealed
under an older key version with the key file's primary key, in batches, while
servers keep running. Run it after 'spotoken keys add' once every server has
restarted with the new key file; when it reports nothing left, the old key
versions can be removed from the file.`,
		Example: `  spotoken keys add --key-file keys.json
  # restart every server with the new key file, then:
  spotoken keys rotate --db postgres://spotoken@db/spotoken --key-file keys.json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return keysRotateRun(cmd.Context(), ios, opts) },
	}
	opts.store.addFlags(cmd.Flags())
	cmd.Flags().IntVar(&opts.batch, "batch", 500, "rows re-sealed per transaction")
	return cmd
}

func keysRotateRun(ctx context.Context, ios *IOStreams, opts *keysRotateOptions) error {
	if opts.batch <= 0 {
		return usageError{errors.New("--batch must be positive")}
	}
	log := slog.New(slog.NewTextHandler(ios.Err, nil))
	store, err := opts.store.openStore(ctx, log, false)
	if err != nil {
		return err
	}
	defer store.Close()
	n, err := store.Reseal(ctx, opts.batch)
	if err != nil {
		return fmt.Errorf("re-seal after %d secrets: %w", n, err)
	}
	fmt.Fprintf(ios.Out, "Re-sealed %d secrets under the primary key.\n", n)
	return nil
}
