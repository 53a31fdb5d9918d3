package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken"
)

type statusOptions struct {
	store      storeOptions
	Profile    string
	Server     string
	Connection string
}

func newStatusCmd(ios *IOStreams) *cobra.Command {
	opts := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [--profile P] | --server URL [--connection ID]",
		Short: "Show the profiles logged in with 'spotoken login' (or a broker's connections)",
		Long: `Show the local profiles: for each, its state (active, or needs_reauth once
Spotify refused its grant), the Spotify user, the granted scopes, when the
access token expires (token refreshes it) and when the grant itself expires
(six months after consent: log in again before then). Tokens are never shown.

With --profile, only that profile, and exit status 4 if it does not exist.

With --server, the connections of a spotoken broker instead (those of the app
whose API key is in $` + envAPIKey + `, never a flag): state, Spotify user,
scopes, token and grant expiry, last error. With --connection, only that one,
and exit status 4 if the broker has no such connection.`,
		Example: `  spotoken status
  spotoken status --profile work --json
  SPOTOKEN_API_KEY=sk_... spotoken status --server https://broker.example --connection user-42`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return statusRun(cmd.Context(), ios, opts, jsonOutput(cmd))
		},
	}
	opts.store.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&opts.Profile, "profile", "", "show only this profile")
	cmd.Flags().StringVar(&opts.Server, "server", "", "show the connections at the spotoken broker at this URL instead (API key in $"+envAPIKey+")")
	cmd.Flags().StringVar(&opts.Connection, "connection", "", "with --server: show only this connection")
	return cmd
}

func statusRun(ctx context.Context, ios *IOStreams, opts *statusOptions, asJSON bool) error {
	switch {
	case opts.Server != "" && opts.Profile != "":
		return usageError{errors.New("--profile is a local profile; --server shows a broker's connections: give one of them")}
	case opts.Server != "":
		return brokerStatus(ctx, ios, opts, asJSON)
	case opts.Connection != "":
		return usageError{errors.New("--connection goes with --server: a local profile is chosen with --profile")}
	}
	if opts.Profile != "" {
		if err := validateProfile(opts.Profile); err != nil {
			return err
		}
	}
	lo := &localOptions{store: opts.store}
	store, err := lo.openLocal(ctx, ios, false)
	if err != nil {
		return err
	}
	var profiles []profile
	if store != nil {
		defer store.Close()
		if profiles, err = listProfiles(ctx, store, opts.Profile); err != nil {
			return err
		}
	}
	if opts.Profile != "" && len(profiles) == 0 {
		return noProfile(opts.Profile)
	}
	if asJSON {
		return writeJSON(ios.Out, nonNil(profiles))
	}
	if len(profiles) == 0 {
		_, err := fmt.Fprintln(ios.Out, "Not logged in: no profiles yet; log in with 'spotoken login --scopes SCOPES'.")
		return err
	}
	tw := newTable(ios.Out)
	fmt.Fprintln(tw, "PROFILE\tSTATE\tSPOTIFY USER\tSCOPES\tTOKEN EXPIRES\tGRANT EXPIRES")
	for _, p := range profiles {
		user := orDash(p.SpotifyUserID)
		if p.DisplayName != "" && p.DisplayName != p.SpotifyUserID {
			user += " (" + p.DisplayName + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Profile, p.State, user, orDash(p.Scopes.String()),
			fmtOptTime(p.ExpiresAt), fmtOptTime(p.GrantExpiresAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range profiles {
		if p.AccountsURL != "" && p.AccountsURL != defaultAccountsURL {
			fmt.Fprintf(ios.Out, "Profile %s refreshes at %s, not at Spotify.\n", p.Profile, p.AccountsURL)
		}
	}
	for _, p := range profiles {
		if p.State == spotoken.StateNeedsReauth {
			fmt.Fprintf(ios.Err, "Profile %s needs a new login: %s.\n", p.Profile, loginHint(p.Profile))
		}
	}
	return nil
}

// listProfiles returns the profiles, by name; only the one named only, if set.
func listProfiles(ctx context.Context, store spotoken.Store, only string) ([]profile, error) {
	apps, err := store.Apps(ctx)
	if err != nil {
		return nil, fmt.Errorf("list profiles: %w", err)
	}
	var out []profile
	for _, app := range apps {
		name, ok := strings.CutPrefix(app.ID, profileAppPrefix)
		if !ok || (only != "" && name != only) {
			continue
		}
		c, err := store.Connection(ctx, profileKey(name))
		if errors.Is(err, spotoken.ErrNotFound) {
			continue // a login rolled back, or in progress
		}
		if err != nil {
			return nil, fmt.Errorf("read profile %q: %w", name, err)
		}
		e, err := profileEndpoints(ctx, store, name)
		if err != nil {
			return nil, err
		}
		out = append(out, newProfile(app, e, c))
	}
	return out, nil
}
