package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken"
)

// spotoken apps bff: an app's backend-for-frontend settings (package bff,
// docs/browser-apps.md).

type appsBFFOptions struct {
	store       storeOptions
	Origins     []string
	Scopes      string
	TokenScopes string
	Off         bool
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

--off turns the BFF off; sessions then get 404 until it is on again.
Without flags, the settings are shown. Settings not given are kept.`,
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
	f.StringArrayVar(&opts.Origins, "origin", nil, "an origin of the SPA, scheme://host[:port] (repeatable; replaces the list)")
	f.StringVar(&opts.Scopes, "scopes", "", `scopes asked at sign-in, separated by spaces or commas ("": the app's default scopes)`)
	f.StringVar(&opts.TokenScopes, "token-scopes", "", `turn on the token-mediating mode for grants within these scopes ("": off)`)
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
	f := cmd.Flags()
	changing := f.Changed("origin") || f.Changed("scopes") || f.Changed("token-scopes")
	if opts.Off && changing {
		return usageError{errors.New("--off turns the BFF off; give it alone")}
	}
	origins, err := spotoken.NormalizeOrigins(opts.Origins)
	if err != nil {
		return usageError{fmt.Errorf("--origin: %s", spotoken.ErrorMessage(err))}
	}
	if f.Changed("origin") && len(origins) == 0 {
		return usageError{errors.New("--origin: give at least one origin, or --off to turn the BFF off")}
	}
	scopes, err := parseScopes(opts.Scopes)
	if err != nil {
		return usageError{fmt.Errorf("--scopes: %w", err)}
	}
	tokenScopes, err := parseScopes(opts.TokenScopes)
	if err != nil {
		return usageError{fmt.Errorf("--token-scopes: %w", err)}
	}
	ctx := cmd.Context()
	return withStore(ctx, ios, &opts.store, false, func(store spotoken.Store) error {
		app, err := findApp(ctx, store, name)
		if err != nil {
			return err
		}
		b, err := browserApp(ctx, store, app.ID)
		if err != nil {
			return err
		}
		switch {
		case opts.Off:
			if b != nil {
				if err := store.DeleteBrowserApp(ctx, app.ID); err != nil && !errors.Is(err, spotoken.ErrNotFound) {
					return fmt.Errorf("turn off the BFF of app %q: %w", app.ID, err)
				}
			}
			b = nil
		case changing:
			if b == nil {
				if !f.Changed("origin") {
					return usageError{fmt.Errorf("app %s has no BFF yet: turn it on with --origin", app.ID)}
				}
				b = &spotoken.BrowserApp{AppID: app.ID}
			}
			if f.Changed("origin") {
				b.Origins = origins
			}
			if f.Changed("scopes") {
				b.Scopes = scopes
			}
			if f.Changed("token-scopes") {
				b.TokenScopes = tokenScopes
			}
			if err := store.PutBrowserApp(ctx, b); err != nil {
				return fmt.Errorf("set the BFF of app %q: %w", app.ID, err)
			}
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
	scopes := b.Scopes.String()
	if scopes == "" {
		scopes = "the app's default scopes (" + orDash(app.DefaultScopes.String()) + ")"
	}
	mode := "off (pages get no token)"
	if b.TokenMediating() {
		mode = "on, for grants within: " + b.TokenScopes.String()
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "app\t%s\n", app.ID)
	fmt.Fprintf(tw, "origins\t%s\n", strings.Join(b.Origins, " "))
	fmt.Fprintf(tw, "sign-in scopes\t%s\n", scopes)
	fmt.Fprintf(tw, "token-mediating mode\t%s\n", mode)
	fmt.Fprintf(tw, "routes\t/bff/%s/login, /session, /logout, /api/..., /token; the client: /bff/client.js\n", app.ID)
	tw.Flush()
}
