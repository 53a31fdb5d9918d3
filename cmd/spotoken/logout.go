package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken"
)

func newLogoutCmd(ios *IOStreams) *cobra.Command {
	opts := &localOptions{}
	cmd := &cobra.Command{
		Use:   "logout [--profile P]",
		Short: "Erase a profile's grant from this machine",
		Long: `Erase the profile's grant from the local database: its sealed tokens and the
app's client secret, if any, are deleted.

Spotify has no revocation endpoint: the app keeps its place on your Spotify
account until you remove its access at ` + spotifyAccountApps + ` .

Exit status 4 when there is no such profile.`,
		Example: `  spotoken logout
  spotoken logout --profile work`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return logoutRun(cmd.Context(), ios, opts, jsonOutput(cmd))
		},
	}
	opts.addFlags(cmd.Flags())
	return cmd
}

func logoutRun(ctx context.Context, ios *IOStreams, opts *localOptions, asJSON bool) error {
	name := opts.Profile
	if err := validateProfile(name); err != nil {
		return err
	}
	store, err := opts.openLocal(ctx, ios, false)
	if err != nil {
		return err
	}
	if store == nil {
		return noProfileToLogOut(name)
	}
	defer store.Close()
	err = store.DeleteApp(ctx, profileKey(name).AppID)
	if errors.Is(err, spotoken.ErrNotFound) {
		return noProfileToLogOut(name)
	}
	if err != nil {
		return fmt.Errorf("log out of profile %q: %w", name, err)
	}
	note := "Spotify has no revocation endpoint: remove the app's access to your account at " + spotifyAccountApps + " ."
	if asJSON {
		if err := writeJSON(ios.Out, struct {
			Profile   string `json:"profile"`
			LoggedOut bool   `json:"logged_out"`
		}{name, true}); err != nil {
			return err
		}
		_, err = fmt.Fprintln(ios.Err, note)
		return err
	}
	fmt.Fprintf(ios.Out, "Logged out of profile %s: its tokens are erased from this machine.\n", name)
	_, err = fmt.Fprintln(ios.Out, note)
	return err
}

func noProfileToLogOut(name string) error {
	return needsLoginError{fmt.Errorf("not logged in: no profile %q (see 'spotoken status')", name)}
}
