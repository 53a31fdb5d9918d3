package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken"
)

func newAPIKeysCmd(ios *IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apikeys",
		Short: "Manage the API keys an app's services use",
		Long: `Manage the API keys with which an app's services call spotoken's API
(Authorization: Bearer sk_...). A key belongs to one app and sees only that
app's connections. spotoken stores only a key's SHA-256 hash: a key is shown
once, when it is created, and cannot be shown again.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAPIKeysCreateCmd(ios), newAPIKeysListCmd(ios), newAPIKeysRevokeCmd(ios))
	return cmd
}

// apiKeyView is an API key as the CLI lists it: never the key or its hash.
type apiKeyView struct {
	ID         string     `json:"id"`
	App        string     `json:"app"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	Revoked    bool       `json:"revoked"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

func newAPIKeyView(k *spotoken.APIKey) apiKeyView {
	return apiKeyView{
		ID: k.ID, App: k.AppID, Name: k.Name, Prefix: k.Prefix, CreatedAt: k.CreatedAt.UTC(),
		LastUsedAt: optTime(k.LastUsedAt), Revoked: k.Revoked(), RevokedAt: optTime(k.RevokedAt),
	}
}

type apiKeysCreateOptions struct {
	store storeOptions
	App   string
	Name  string
}

const maxKeyLabel = 100

func newAPIKeysCreateCmd(ios *IOStreams) *cobra.Command {
	opts := &apiKeysCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create --app NAME [--name LABEL]",
		Short: "Create an API key for an app; the key is shown once",
		Long: `Create an API key for the app NAME. The key (sk_...) is printed alone on the
first line of standard output, so a script can capture it; it is shown this
once only, as spotoken keeps just its hash. --name labels the key in lists.`,
		Example: `  spotoken apikeys create --app playlist-sync --name "sync worker" > sync-worker.key
  KEY=$(spotoken apikeys create --app bot | head -n1)`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return apiKeysCreateRun(cmd.Context(), ios, opts, jsonOutput(cmd), time.Now)
		},
	}
	opts.store.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&opts.App, "app", "", "name of the app the key belongs to (required)")
	cmd.Flags().StringVar(&opts.Name, "name", "", fmt.Sprintf("a label for the key, up to %d characters", maxKeyLabel))
	return cmd
}

func apiKeysCreateRun(ctx context.Context, ios *IOStreams, opts *apiKeysCreateOptions, asJSON bool, now func() time.Time) error {
	if err := requireApp(opts.App); err != nil {
		return err
	}
	if len([]rune(opts.Name)) > maxKeyLabel {
		return usageError{fmt.Errorf("--name: a key label has at most %d characters", maxKeyLabel)}
	}
	if strings.IndexFunc(opts.Name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return usageError{fmt.Errorf("--name %q: a key label has no control characters", opts.Name)}
	}
	return withStore(ctx, ios, &opts.store, false, func(store spotoken.Store) error {
		if _, err := findApp(ctx, store, opts.App); err != nil {
			return err
		}
		svc, err := newAdmin(ios, store, nil, now)
		if err != nil {
			return err
		}
		key, rec, err := svc.CreateAPIKey(ctx, cliActor(), opts.App, opts.Name)
		if errors.Is(err, spotoken.ErrNotFound) {
			return fmt.Errorf("no app named %q (see 'spotoken apps list')", opts.App)
		}
		if err != nil {
			return fmt.Errorf("create an API key for app %q: %w", opts.App, err)
		}
		if asJSON {
			v := newAPIKeyView(rec)
			if err := writeJSON(ios.Out, struct {
				Key string `json:"key"`
				apiKeyView
			}{key.Reveal(), v}); err != nil {
				return err
			}
		} else if _, err := fmt.Fprintln(ios.Out, key.Reveal()); err != nil {
			return err
		}
		fmt.Fprintf(ios.Err, "Created API key %s (%s…) for app %s. The key is shown only this once: store it now; spotoken keeps only its hash.\n", rec.ID, rec.Prefix, opts.App)
		return nil
	})
}

type apiKeysListOptions struct {
	store storeOptions
	App   string
}

func newAPIKeysListCmd(ios *IOStreams) *cobra.Command {
	opts := &apiKeysListOptions{}
	cmd := &cobra.Command{
		Use:   "list --app NAME",
		Short: "List an app's API keys",
		Long: `List the API keys of the app NAME, oldest first: id, label, the key's first
characters, when it was created and last used, and whether it is revoked.
The keys themselves are never shown.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireApp(opts.App); err != nil {
				return err
			}
			ctx := cmd.Context()
			return withStore(ctx, ios, &opts.store, false, func(store spotoken.Store) error {
				if _, err := findApp(ctx, store, opts.App); err != nil {
					return err
				}
				keys, err := store.APIKeys(ctx, opts.App)
				if err != nil {
					return fmt.Errorf("list the API keys of app %q: %w", opts.App, err)
				}
				return printAPIKeys(ios.Out, opts.App, keys, jsonOutput(cmd))
			})
		},
	}
	opts.store.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&opts.App, "app", "", "name of the app (required)")
	return cmd
}

func printAPIKeys(w io.Writer, app string, keys []*spotoken.APIKey, asJSON bool) error {
	if asJSON {
		views := make([]apiKeyView, 0, len(keys))
		for _, k := range keys {
			views = append(views, newAPIKeyView(k))
		}
		return writeJSON(w, views)
	}
	if len(keys) == 0 {
		_, err := fmt.Fprintf(w, "App %s has no API keys; create one with 'spotoken apikeys create --app %s'.\n", app, app)
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tCREATED\tLAST USED\tREVOKED")
	for _, k := range keys {
		last := fmtTime(k.LastUsedAt)
		if k.LastUsedAt.IsZero() {
			last = "never"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\t%s\t%s\n", k.ID, orDash(k.Name), k.Prefix, fmtTime(k.CreatedAt), last, fmtTime(k.RevokedAt))
	}
	return tw.Flush()
}

type apiKeysRevokeOptions struct {
	store storeOptions
	App   string
}

func newAPIKeysRevokeCmd(ios *IOStreams) *cobra.Command {
	opts := &apiKeysRevokeOptions{}
	cmd := &cobra.Command{
		Use:   "revoke --app NAME KEY_ID",
		Short: "Revoke an API key",
		Long: `Revoke the API key KEY_ID (key_..., as 'spotoken apikeys list' shows it) of
the app NAME. Requests with the key fail from then on. Revoking is final; a
revoked key stays listed, marked with the time it was revoked.`,
		Example: `  spotoken apikeys revoke --app playlist-sync key_AbCdEfGhI`,
		Args:    exactArgs("KEY_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return apiKeysRevokeRun(cmd.Context(), ios, opts, args[0], jsonOutput(cmd), time.Now)
		},
	}
	opts.store.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&opts.App, "app", "", "name of the app the key belongs to (required)")
	return cmd
}

func apiKeysRevokeRun(ctx context.Context, ios *IOStreams, opts *apiKeysRevokeOptions, id string, asJSON bool, now func() time.Time) error {
	if err := requireApp(opts.App); err != nil {
		return err
	}
	return withStore(ctx, ios, &opts.store, false, func(store spotoken.Store) error {
		if _, err := findApp(ctx, store, opts.App); err != nil {
			return err
		}
		notFound := fmt.Errorf("app %s has no API key %q (see 'spotoken apikeys list --app %s')", opts.App, id, opts.App)
		svc, err := newAdmin(ios, store, nil, now)
		if err != nil {
			return err
		}
		err = svc.RevokeAPIKey(ctx, cliActor(), opts.App, id)
		if errors.Is(err, spotoken.ErrNotFound) {
			return notFound
		}
		if err != nil {
			return fmt.Errorf("revoke API key %q of app %q: %w", id, opts.App, err)
		}
		keys, err := store.APIKeys(ctx, opts.App)
		if err != nil {
			return fmt.Errorf("read API key %q of app %q: %w", id, opts.App, err)
		}
		var key *spotoken.APIKey
		for _, k := range keys {
			if k.ID == id {
				key = k
			}
		}
		if key == nil {
			return notFound
		}
		if asJSON {
			return writeJSON(ios.Out, newAPIKeyView(key))
		}
		_, err = fmt.Fprintf(ios.Out, "Revoked API key %s (%s…) of app %s at %s.\n", key.ID, key.Prefix, opts.App, fmtTime(key.RevokedAt))
		return err
	})
}
