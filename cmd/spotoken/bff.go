package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
)

// spotoken apps bff: an app's backend-for-frontend settings (package bff,
// docs/browser-apps.md). Changes go through package admin, as those of
// 'apps update' (whose --bff-* flags are these) and the admin API do.

// bffFlags are the flags that change an app's BFF.
type bffFlags struct {
	Origins     []string
	Scopes      string
	TokenScopes string
}

// addFlags adds the flags, their names starting with prefix.
func (b *bffFlags) addFlags(f *pflag.FlagSet, prefix string) {
	f.StringArrayVar(&b.Origins, prefix+"origin", nil, `an origin of the app's SPA, scheme://host[:port] (repeatable; replaces the list; "" turns the BFF off)`)
	f.StringVar(&b.Scopes, prefix+"scopes", "", `scopes the SPA's sign-in asks, separated by spaces or commas ("": the app's default scopes)`)
	f.StringVar(&b.TokenScopes, prefix+"token-scopes", "", `turn on the BFF's token-mediating mode for grants within these scopes ("": off)`)
}

// patch is the admin patch of the flags given, nil when none was.
func (b *bffFlags) patch(cmd *cobra.Command, prefix string) (*admin.BrowserAppPatch, error) {
	given := func(name string) bool { return cmd.Flags().Changed(prefix + name) }
	if !given("origin") && !given("scopes") && !given("token-scopes") {
		return nil, nil
	}
	p := &admin.BrowserAppPatch{}
	if given("origin") {
		origins := []string{}
		if !emptied(b.Origins) {
			for _, raw := range b.Origins {
				o, err := spotoken.NormalizeOrigin(raw)
				if err != nil {
					return nil, usageError{fmt.Errorf("--%sorigin: %s", prefix, spotoken.ErrorMessage(err))}
				}
				origins = append(origins, o)
			}
		}
		p.Origins = &origins
	}
	for _, f := range []struct {
		name string
		raw  string
		to   **spotoken.Scopes
	}{{"scopes", b.Scopes, &p.Scopes}, {"token-scopes", b.TokenScopes, &p.TokenScopes}} {
		if given(f.name) {
			scopes, err := parseScopes(f.raw)
			if err != nil {
				return nil, usageError{fmt.Errorf("--%s%s: %w", prefix, f.name, err)}
			}
			*f.to = &scopes
		}
	}
	return p, nil
}

type appsBFFOptions struct {
	store storeOptions
	flags bffFlags
	Off   bool
}

func newAppsBFFCmd(ios *IOStreams) *cobra.Command {
	opts := &appsBFFOptions{}
	cmd := &cobra.Command{
		Use:   "bff NAME [--origin ORIGIN]... [--scopes SCOPES] [--token-scopes SCOPES] [--off]",
		Short: "Show or change an app's backend-for-frontend for a browser app (SPA)",
		Long: `Show or change the backend-for-frontend (BFF) of the app NAME: the /bff/NAME/
routes through which a single-page app signs its users in with Spotify and calls
the Web API holding only an HttpOnly session cookie, never a token. It is off
until it has an origin. See docs/browser-apps.md.

--origin lists the SPA's origins, scheme://host[:port] (repeatable; given, it
replaces the list): CORS answers only them, with credentials, and sign-ins
return only to them. The SPA must share spotoken's site (registrable domain),
as the session cookie is SameSite=Strict.

--scopes are asked at sign-in ("" for the app's default scopes).
--token-scopes turns on the token-mediating mode: POST /bff/NAME/token hands
the page the session's access token (never the refresh token), and only while
every scope the grant carries is among these; "" turns it off. Use it only for
what must call Spotify from the page, such as the Web Playback SDK.

--off turns the BFF off; its routes then answer 404 until it is on again.
Without flags, the settings are shown. Settings not given are kept.
'spotoken apps update NAME --bff-origin ...' does the same.`,
		Example: `  spotoken apps bff my-app --origin https://app.example
  spotoken apps bff my-app --token-scopes "streaming user-read-email user-read-private"
  spotoken apps bff my-app --off`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return appsBFFRun(cmd, ios, opts, args[0])
		},
	}
	f := cmd.Flags()
	opts.store.addFlags(f)
	opts.flags.addFlags(f, "")
	f.BoolVar(&opts.Off, "off", false, "turn the app's BFF off")
	return cmd
}

// bffView is an app's BFF settings as the CLI shows them.
type bffView struct {
	App            string          `json:"app"`
	Enabled        bool            `json:"enabled"`
	Origins        []string        `json:"origins"`
	Scopes         spotoken.Scopes `json:"scopes"`
	TokenMediating bool            `json:"token_mediating"`
	TokenScopes    spotoken.Scopes `json:"token_scopes"`
	UpdatedAt      *time.Time      `json:"updated_at,omitempty"`
}

func newBFFView(app string, b *spotoken.BrowserApp) bffView {
	if b == nil {
		return bffView{App: app, Origins: []string{}, Scopes: spotoken.Scopes{}, TokenScopes: spotoken.Scopes{}}
	}
	return bffView{App: app, Enabled: true, Origins: nonNil(b.Origins), Scopes: nonNil(b.Scopes),
		TokenMediating: b.TokenMediating(), TokenScopes: nonNil(b.TokenScopes), UpdatedAt: optTime(b.UpdatedAt)}
}

func appsBFFRun(cmd *cobra.Command, ios *IOStreams, opts *appsBFFOptions, name string) error {
	patch, err := opts.flags.patch(cmd, "")
	if err != nil {
		return err
	}
	switch {
	case opts.Off && patch != nil:
		return usageError{errors.New("--off turns the BFF off; give it alone")}
	case opts.Off:
		patch = &admin.BrowserAppPatch{Origins: &[]string{}}
	case patch != nil && patch.Origins != nil && len(*patch.Origins) == 0:
		return usageError{errors.New("--origin: give at least one origin, or --off to turn the BFF off")}
	}
	ctx := cmd.Context()
	return withAdmin(ctx, ios, &opts.store, nil, func(svc *admin.Service, store spotoken.Store) error {
		app, err := findApp(ctx, store, name)
		if err != nil {
			return err
		}
		if opts.Off {
			if b, err := svc.BrowserApp(ctx, app.ID); err != nil {
				return err
			} else if b == nil {
				patch = nil // off already
			}
		}
		if patch != nil {
			if _, err := svc.UpdateApp(ctx, cliActor(), app.ID, admin.AppPatch{BrowserApp: patch}); err != nil {
				if spotoken.ErrorCode(err) == spotoken.EInvalid {
					return usageError{errors.New(errorText(err))}
				}
				return fmt.Errorf("set the BFF of app %q: %s", app.ID, errorText(err))
			}
		}
		b, err := svc.BrowserApp(ctx, app.ID)
		if err != nil {
			return fmt.Errorf("read the BFF of app %q: %w", app.ID, err)
		}
		if jsonOutput(cmd) {
			return writeJSON(ios.Out, newBFFView(app.ID, b))
		}
		printBFF(ios.Out, app, b)
		return nil
	})
}

// browserApp returns the app's settings, nil when its BFF is off.
func browserApp(ctx context.Context, store spotoken.BrowserAppStore, appID string) (*spotoken.BrowserApp, error) {
	b, err := store.BrowserApp(ctx, appID)
	if errors.Is(err, spotoken.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the BFF of app %q: %w", appID, err)
	}
	return b, nil
}

func printBFF(w io.Writer, app *spotoken.App, b *spotoken.BrowserApp) {
	if b == nil {
		fmt.Fprintf(w, "The BFF of app %s is off. Turn it on with: spotoken apps bff %s --origin https://your-spa.example\n", app.ID, app.ID)
		return
	}
	tw := newTable(w)
	for _, row := range bffRows(app, b) {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	tw.Flush()
}

// bffRows are the BFF's settings as rows of a table.
func bffRows(app *spotoken.App, b *spotoken.BrowserApp) [][2]string {
	scopes := b.Scopes.String()
	if scopes == "" {
		scopes = "the app's default scopes (" + orDash(app.DefaultScopes.String()) + ")"
	}
	mode := "off (pages get no token)"
	if b.TokenMediating() {
		mode = "on, for grants within: " + b.TokenScopes.String()
	}
	return [][2]string{
		{"origins", strings.Join(b.Origins, " ")},
		{"sign-in scopes", scopes},
		{"token-mediating mode", mode},
		{"routes", "/bff/" + app.ID + "/login, /session, /logout, /api/..., /token; the client: /bff/client.js"},
	}
}
