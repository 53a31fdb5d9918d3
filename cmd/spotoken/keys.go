package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
)

type keysOptions struct {
	KeyFile string
	Staged  bool
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
	cmd.AddCommand(newKeysGenerateCmd(ios), newKeysAddCmd(ios), newKeysPromoteCmd(ios), newKeysRotateCmd(ios))
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
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("key file %s already exists; it was left as it was: spotoken never overwrites a key file. To add a key to it, run 'spotoken keys add --key-file %s'", opts.KeyFile, shellQuote(opts.KeyFile))
	}
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
		Use:   "add --key-file PATH [--staged]",
		Short: "Add a new random key to a key file",
		Long: `Add a new random key to the key file at PATH, with the next version number,
and make it the primary key. The file is replaced atomically and keeps mode
0600.

Then restart every spotoken server that uses the file and run
'spotoken keys rotate' to re-seal stored rows under the new key. Keep the old
keys in the file until that is done.

With several replicas, a replica still running with the old file cannot open
what the others seal under the new key. To rotate without that window, add
the key with --staged (it opens, but does not seal yet), roll the file out to
every replica, then make it primary with 'spotoken keys promote' and roll the
file out again.`,
		Example: `  spotoken keys add --key-file keys.json
  spotoken keys add --key-file keys.json --staged && spotoken keys promote --key-file keys.json --version 2`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return keysAddRun(ios, opts) },
	}
	cmd.Flags().StringVar(&opts.KeyFile, "key-file", "", "path of the key file to add a key to (required)")
	cmd.Flags().BoolVar(&opts.Staged, "staged", false, "add the key without making it primary (promote it later)")
	return cmd
}

func keysAddRun(ios *IOStreams, opts *keysOptions) error {
	if opts.KeyFile == "" {
		return usageError{errors.New("--key-file is required")}
	}
	if opts.Staged {
		ring, err := seal.StageKey(opts.KeyFile)
		if err != nil {
			return err
		}
		added := slices.Max(ring.Versions())
		fmt.Fprintf(ios.Out, "Added key version %d to %s, staged; key version %d stays primary (versions %v).\n", added, opts.KeyFile, ring.Primary(), ring.Versions())
		fmt.Fprintf(ios.Out, "Restart every server with this file, then run `spotoken keys promote --key-file %s --version %d`.\n", opts.KeyFile, added)
		return nil
	}
	ring, err := seal.AddKey(opts.KeyFile)
	if err != nil {
		return err
	}
	fmt.Fprintf(ios.Out, "Added key version %d to %s; it is now the primary key (versions %v).\n", ring.Primary(), opts.KeyFile, ring.Versions())
	fmt.Fprintln(ios.Out, "Restart the servers that use this file, then run `spotoken keys rotate` to re-seal stored rows under the new key.")
	return nil
}

type keysPromoteOptions struct {
	KeyFile string
	Version uint32
}

func newKeysPromoteCmd(ios *IOStreams) *cobra.Command {
	opts := &keysPromoteOptions{}
	cmd := &cobra.Command{
		Use:   "promote --key-file PATH --version N",
		Short: "Make a staged key the primary key",
		Long: `Make key version N of the key file at PATH the primary key, which seals
everything new. Do it after every server has restarted with the file that
holds the staged key; then restart them again and run 'spotoken keys rotate'.`,
		Example: `  spotoken keys promote --key-file keys.json --version 2`,
		Args:    noArgs,
		RunE: func(*cobra.Command, []string) error {
			if opts.KeyFile == "" || opts.Version == 0 {
				return usageError{errors.New("--key-file and --version are required")}
			}
			ring, err := seal.PromoteKey(opts.KeyFile, opts.Version)
			if err != nil {
				return err
			}
			fmt.Fprintf(ios.Out, "Key version %d of %s is now the primary key (versions %v).\n", ring.Primary(), opts.KeyFile, ring.Versions())
			fmt.Fprintln(ios.Out, "Restart the servers that use this file, then run `spotoken keys rotate`.")
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.KeyFile, "key-file", "", "path of the key file (required)")
	cmd.Flags().Uint32Var(&opts.Version, "version", 0, "key version to make primary (required)")
	return cmd
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
	if err := store.AppendAudit(ctx, adminRecord(spotoken.AuditKeysRotate, "", "", map[string]string{"resealed": fmt.Sprint(n)})); err != nil {
		log.Warn("record the key rotation in the audit trail", "err", err)
	}
	fmt.Fprintf(ios.Out, "Re-sealed %d secrets under the primary key.\n", n)
	return nil
}
