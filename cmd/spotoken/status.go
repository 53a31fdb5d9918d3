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
	store   storeOptions
	Profile string
}

func newStatusCmd(ios *IOStreams) *cobra.Command {
	opts := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [--profile P]",
		Short: "Show the profiles logged in with 'spotoken login'",
		Long: `Show the local profiles: for each, its state (active, or needs_reauth once
Spotify refused its grant), the Spotify user, the granted scopes, when the
access token expires (token refreshes it) and when the grant itself expires
(six months after consent: log in again before then). Tokens are never shown.

With --profile, only that profile, and exit status 4 if it does not exist.`,
		Example: `  spotoken status
  spotoken status --profile work --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return statusRun(cmd.Context(), ios, opts, jsonOutput(cmd))
		},
	}
	opts.store.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&opts.Profile, "profile", "", "show only this profile")
	return cmd
}

func statusRun(ctx context.Context, ios *IOStreams, opts *statusOptions, asJSON bool) error {
	if opts.Profile != "" {
		if err := validateProfile(opts.Profile); err != nil {
			return err
		}
	}
	lo := &localOptions{store: opts.store}
	store, err := lo.openLocal(ctx, ios)
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
		_, err := fmt.Fprintln(ios.Out, "Not logged in: no profiles yet; log in with 'spotoken login'.")
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
		out = append(out, newProfile(app, c))
	}
	return out, nil
}
