package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/server"
)

// spotifyAccountApps is where a Spotify user removes an app's access:
// Spotify has no revocation endpoint (RFC 7009).
const spotifyAccountApps = "https://www.spotify.com/account/apps/"

func newConnectionsCmd(ios *IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "connections",
		Short: "Inspect and delete an app's connections",
		Long: `Inspect and delete the connections of an app: one per Spotify user who
authorized it, under the id the app chose for that user. Tokens are never
shown.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newConnectionsListCmd(ios), newConnectionsGetCmd(ios), newConnectionsDeleteCmd(ios))
	return cmd
}

type connectionsListOptions struct {
	store  storeOptions
	App    string
	State  string
	Limit  int
	Cursor string
	Sort   string
}

const maxConnectionsLimit = 1000

// The orders of connections list --sort.
const (
	sortByID          = "id"
	sortByGrantExpiry = "grant_expires_at"
)

func newConnectionsListCmd(ios *IOStreams) *cobra.Command {
	opts := &connectionsListOptions{}
	cmd := &cobra.Command{
		Use:   "list --app NAME [--state STATE] [--limit N] [--cursor C] [--sort id|grant_expires_at]",
		Short: "List an app's connections, a page at a time",
		Long: `List the connections of the app NAME by id, a page of --limit at a time. When
there are more, the next page's cursor is printed (on standard error, or as
next_cursor with --json); pass it as --cursor.

--sort grant_expires_at lists the --limit connections whose grants expire
soonest instead (Spotify's grants die six months after the user's consent;
these users must authorize again first). It reads every connection of the
app, so it takes no --cursor.`,
		Example: `  spotoken connections list --app playlist-sync --state needs_reauth
  spotoken connections list --app playlist-sync --json --limit 500 --cursor user-0500
  spotoken connections list --app playlist-sync --state active --sort grant_expires_at --limit 20`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return connectionsListRun(cmd.Context(), ios, opts, jsonOutput(cmd))
		},
	}
	f := cmd.Flags()
	opts.store.addFlags(f)
	f.StringVar(&opts.App, "app", "", "name of the app (required)")
	f.StringVar(&opts.State, "state", "", "only connections in this state: active, needs_reauth or revoked")
	f.IntVar(&opts.Limit, "limit", 100, fmt.Sprintf("connections per page, 1 to %d", maxConnectionsLimit))
	f.StringVar(&opts.Cursor, "cursor", "", "the cursor of the page to show, from the previous page")
	f.StringVar(&opts.Sort, "sort", sortByID, "order: id (pages with --cursor) or grant_expires_at (soonest first)")
	return cmd
}

func connectionsListRun(ctx context.Context, ios *IOStreams, opts *connectionsListOptions, asJSON bool) error {
	if err := requireApp(opts.App); err != nil {
		return err
	}
	state := spotoken.State(opts.State)
	if state != "" && !state.Valid() {
		return usageError{fmt.Errorf("--state %q: want active, needs_reauth or revoked", opts.State)}
	}
	if opts.Limit < 1 || opts.Limit > maxConnectionsLimit {
		return usageError{fmt.Errorf("--limit %d: want 1 to %d", opts.Limit, maxConnectionsLimit)}
	}
	switch opts.Sort {
	case sortByID:
	case sortByGrantExpiry:
		if opts.Cursor != "" {
			return usageError{errors.New("--cursor pages the list by id; it does not go with --sort grant_expires_at")}
		}
	default:
		return usageError{fmt.Errorf("--sort %q: want id or grant_expires_at", opts.Sort)}
	}
	return withStore(ctx, ios, &opts.store, false, func(store spotoken.Store) error {
		if _, err := findApp(ctx, store, opts.App); err != nil {
			return err
		}
		var conns []*spotoken.Connection
		var err error
		if opts.Sort == sortByGrantExpiry {
			conns, err = soonestGrants(ctx, store, opts.App, state, opts.Limit)
		} else {
			// One more than a page tells whether there is a next one.
			conns, err = store.Connections(ctx, spotoken.ConnectionFilter{AppID: opts.App, State: state, After: opts.Cursor, Limit: opts.Limit + 1})
		}
		if err != nil {
			return fmt.Errorf("list the connections of app %q: %w", opts.App, err)
		}
		window, err := rateLimitWindow(ctx, store, opts.App)
		if err != nil {
			return err
		}
		list := server.ConnectionList{Connections: make([]server.ConnectionView, 0, min(len(conns), opts.Limit))}
		if len(conns) > opts.Limit {
			conns = conns[:opts.Limit]
			list.NextCursor = conns[len(conns)-1].ID
		}
		for _, c := range conns {
			v := server.NewConnectionView(c)
			v.RateLimitedUntil = window
			list.Connections = append(list.Connections, v)
		}
		if asJSON {
			return writeJSON(ios.Out, list)
		}
		return printConnections(ios, opts, list)
	})
}

// soonestGrants returns the limit connections of app (in state, if set)
// whose grants expire soonest, unknown expiries last, reading every page.
func soonestGrants(ctx context.Context, store spotoken.Store, app string, state spotoken.State, limit int) ([]*spotoken.Connection, error) {
	var all []*spotoken.Connection
	after := ""
	for {
		page, err := store.Connections(ctx, spotoken.ConnectionFilter{AppID: app, State: state, After: after, Limit: maxConnectionsLimit})
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < maxConnectionsLimit {
			break
		}
		after = page[len(page)-1].ID
	}
	slices.SortStableFunc(all, func(a, b *spotoken.Connection) int {
		switch {
		case a.GrantExpiresAt.IsZero() != b.GrantExpiresAt.IsZero():
			if a.GrantExpiresAt.IsZero() {
				return 1
			}
			return -1
		}
		return a.GrantExpiresAt.Compare(b.GrantExpiresAt)
	})
	return all[:min(len(all), limit)], nil
}

func printConnections(ios *IOStreams, opts *connectionsListOptions, list server.ConnectionList) error {
	if len(list.Connections) == 0 {
		what := "no connections"
		if opts.State != "" {
			what = "no " + opts.State + " connections"
		}
		if opts.Cursor != "" {
			what += " after " + opts.Cursor
		}
		_, err := fmt.Fprintf(ios.Out, "App %s has %s.\n", opts.App, what)
		return err
	}
	tw := newTable(ios.Out)
	fmt.Fprintln(tw, "ID\tSTATE\tSPOTIFY USER\tSCOPES\tTOKEN EXPIRES\tGRANT EXPIRES\tLAST REFRESH\tLAST ERROR")
	for _, c := range list.Connections {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.State, orDash(c.SpotifyUserID), orDash(c.Scopes.String()),
			fmtOptTime(c.ExpiresAt), fmtOptTime(c.GrantExpiresAt), fmtOptTime(c.LastRefreshAt), orDash(c.LastErrorCode))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if list.NextCursor != "" {
		fmt.Fprintf(ios.Err, "More connections: pass --cursor %s for the next page.\n", list.NextCursor)
	}
	if w := list.Connections[0].RateLimitedUntil; w != nil {
		fmt.Fprintf(ios.Err, "Spotify is rate-limiting app %s's token requests until %s: no token is refreshed before then.\n", opts.App, fmtTime(*w))
	}
	return nil
}

// rateLimitWindow is app's rate-limit window at Spotify's token endpoint,
// as the views show it: nil unless it lasts beyond now.
func rateLimitWindow(ctx context.Context, store spotoken.RateLimitStore, app string) (*time.Time, error) {
	until, err := store.RateLimitedUntil(ctx, app)
	if err != nil {
		return nil, fmt.Errorf("read the rate-limit window of app %q: %w", app, err)
	}
	return server.RateLimitWindow(until, time.Now()), nil
}

func fmtOptTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return fmtTime(*t)
}

// connectionOptions are the options of the commands on one connection.
type connectionOptions struct {
	store storeOptions
	App   string
}

func (o *connectionOptions) addFlags(cmd *cobra.Command) {
	o.store.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.App, "app", "", "name of the app (required)")
}

// noConnection is the error for a connection that does not exist.
func noConnection(app, id string) error {
	return fmt.Errorf("app %s has no connection %q (see 'spotoken connections list --app %s')", app, id, app)
}

func newConnectionsGetCmd(ios *IOStreams) *cobra.Command {
	opts := &connectionOptions{}
	cmd := &cobra.Command{
		Use:     "get --app NAME ID",
		Short:   "Show one connection",
		Long:    `Show the connection ID of the app NAME: its state, Spotify user, scopes and token times. Tokens are never shown.`,
		Example: `  spotoken connections get --app playlist-sync user-42 --json`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireApp(opts.App); err != nil {
				return err
			}
			ctx, id := cmd.Context(), args[0]
			return withStore(ctx, ios, &opts.store, false, func(store spotoken.Store) error {
				if _, err := findApp(ctx, store, opts.App); err != nil {
					return err
				}
				c, err := store.Connection(ctx, spotoken.ConnectionKey{AppID: opts.App, ID: id})
				if errors.Is(err, spotoken.ErrNotFound) {
					return noConnection(opts.App, id)
				}
				if err != nil {
					return fmt.Errorf("read connection %q of app %q: %w", id, opts.App, err)
				}
				v := server.NewConnectionView(c)
				if v.RateLimitedUntil, err = rateLimitWindow(ctx, store, opts.App); err != nil {
					return err
				}
				if jsonOutput(cmd) {
					return writeJSON(ios.Out, v)
				}
				return printConnection(ios.Out, opts.App, v)
			})
		},
	}
	opts.addFlags(cmd)
	return cmd
}

func printConnection(w io.Writer, app string, c server.ConnectionView) error {
	user := orDash(c.SpotifyUserID)
	if c.DisplayName != "" {
		user += " (" + c.DisplayName + ")"
	}
	tw := newTable(w)
	for _, row := range [][2]string{
		{"app", app},
		{"id", c.ID},
		{"state", string(c.State)},
		{"spotify user", user},
		{"scopes", orDash(c.Scopes.String())},
		{"token expires", fmtOptTime(c.ExpiresAt)},
		{"last refresh", fmtOptTime(c.LastRefreshAt)},
		{"last error", orDash(c.LastErrorCode)},
		{"consented", fmtOptTime(c.ConsentedAt)},
		{"grant expires", fmtOptTime(c.GrantExpiresAt)},
		{"rate limited until", fmtOptTime(c.RateLimitedUntil)},
		{"created", fmtTime(c.CreatedAt)},
		{"updated", fmtTime(c.UpdatedAt)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

func newConnectionsDeleteCmd(ios *IOStreams) *cobra.Command {
	opts := &connectionOptions{}
	cmd := &cobra.Command{
		Use:   "delete --app NAME ID",
		Short: "Delete a connection and erase its tokens",
		Long: `Delete the connection ID of the app NAME, erasing its sealed tokens, and queue
a connection.revoked event for the app's webhook. It cannot be undone: the
user must authorize again.

Spotify has no revocation endpoint: the grant stays listed on the user's
Spotify account until they remove it at ` + spotifyAccountApps + ` .`,
		Example: `  spotoken connections delete --app playlist-sync user-42`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return connectionsDeleteRun(cmd.Context(), ios, opts, args[0], jsonOutput(cmd), time.Now)
		},
	}
	opts.addFlags(cmd)
	return cmd
}

func connectionsDeleteRun(ctx context.Context, ios *IOStreams, opts *connectionOptions, id string, asJSON bool, now func() time.Time) error {
	if err := requireApp(opts.App); err != nil {
		return err
	}
	return withStore(ctx, ios, &opts.store, false, func(store spotoken.Store) error {
		if _, err := findApp(ctx, store, opts.App); err != nil {
			return err
		}
		key := spotoken.ConnectionKey{AppID: opts.App, ID: id}
		err := store.DeleteConnection(adminAudit(ctx, spotoken.AuditConnectionDelete, key.AppID, key.ID, nil), key, spotoken.NewEvent(spotoken.EventConnectionRevoked, key, now(), map[string]any{"reason": "deleted"}))
		if errors.Is(err, spotoken.ErrNotFound) {
			return noConnection(opts.App, id)
		}
		if err != nil {
			return fmt.Errorf("delete connection %q of app %q: %w", id, opts.App, err)
		}
		note := "Spotify has no revocation endpoint: the user can remove the app's access at " + spotifyAccountApps + " ."
		if asJSON {
			if err := writeJSON(ios.Out, struct {
				App     string `json:"app"`
				ID      string `json:"id"`
				Deleted bool   `json:"deleted"`
			}{opts.App, id, true}); err != nil {
				return err
			}
			fmt.Fprintln(ios.Err, note)
			return nil
		}
		fmt.Fprintf(ios.Out, "Deleted connection %s of app %s; its tokens are erased.\n", id, opts.App)
		_, err = fmt.Fprintln(ios.Out, note)
		return err
	})
}
