package main

import (
	"errors"
	"fmt"

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
	cmd.AddCommand(newKeysGenerateCmd(ios), newKeysAddCmd(ios))
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
