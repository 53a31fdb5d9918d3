package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
)

// The helpers at the top of this file serve every admin command (apps,
// apikeys, connections): the --json switch, tables, argument checks and
// opening the store.

// jsonOutput reports whether the global --json flag is set.
func jsonOutput(cmd *cobra.Command) bool {
	v, _ := cmd.Flags().GetBool("json")
	return v
}

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable returns a tabwriter for a readable table; Flush it when done.
func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// fmtTime formats t for a table: UTC to the second, "-" for the zero time.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// optTime is t in UTC, or nil for the zero time (omitted from JSON).
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// orDash returns s, or "-" when s is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// nonNil returns s, or an empty slice for nil, so JSON shows [] not null.
func nonNil[S ~[]E, E any](s S) S {
	if s == nil {
		return S{}
	}
	return s
}

// exactArgs is cobra.ExactArgs as a usage error naming the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageError{fmt.Errorf("%s takes %d argument(s), %s; got %d", cmd.CommandPath(), len(names), strings.Join(names, " "), len(args))}
		}
		return nil
	}
}

// adminLogger is the logger of an admin command: text on standard error.
func adminLogger(ios *IOStreams) *slog.Logger { return slog.New(slog.NewTextHandler(ios.Err, nil)) }

// withStore opens the store named by o, runs fn with it and closes it.
// create makes the embedded database when it does not exist yet.
func withStore(ctx context.Context, ios *IOStreams, o *storeOptions, create bool, fn func(spotoken.Store) error) error {
	store, err := o.openStore(ctx, adminLogger(ios), create)
	if err != nil {
		return err
	}
	defer store.Close()
	return fn(store)
}

// findApp returns the app named name, or an error saying there is none.
func findApp(ctx context.Context, store spotoken.AppStore, name string) (*spotoken.App, error) {
	app, err := store.App(ctx, name)
	if errors.Is(err, spotoken.ErrNotFound) {
		return nil, fmt.Errorf("no app named %q (see 'spotoken apps list')", name)
	}
	if err != nil {
		return nil, fmt.Errorf("read app %q: %w", name, err)
	}
	return app, nil
}

// requireApp is the usage check of a required --app flag.
func requireApp(name string) error {
	if name == "" {
		return usageError{errors.New("--app is required: the name of the app (see 'spotoken apps list')")}
	}
	return nil
}

const maxAppName = 64

// validateAppName checks an app's name (its spotoken.App.ID): 1 to 64
// ASCII letters, digits, '-', '_' and '.', not starting with '_' (reserved).
func validateAppName(name string) error {
	if name == "" {
		return errors.New("--name is required: the app's name in spotoken (letters, digits, '-', '_', '.')")
	}
	if reservedAppName(name) {
		return fmt.Errorf("--name %q: names starting with '_' are reserved for spotoken's own apps (the profiles of 'spotoken login')", name)
	}
	if len(name) > maxAppName {
		return fmt.Errorf("--name: an app name has at most %d characters, got %d", maxAppName, len(name))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("--name %q: an app name may hold only letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// validateClientID checks a Spotify client id: present, printable, no spaces.
func validateClientID(id string) error {
	if id == "" {
		return errors.New("--client-id is required: the app's Spotify client ID (from the Spotify developer dashboard)")
	}
	return flagError("client_id", "--client-id", admin.CheckClientID(id))
}

// flagError rewrites an admin check's error, which names the setting as
// the admin API does (field), for the command line (flag); nil stays nil.
func flagError(field, flag string, err error) error {
	if err == nil {
		return nil
	}
	return errors.New(flag + strings.TrimPrefix(spotoken.ErrorMessage(err), field))
}

// parseHTTPURL parses an absolute http or https URL with a host and no
// fragment; flag names the flag in error messages.
func parseHTTPURL(flag, raw string) (*url.URL, error) {
	u, err := admin.CheckHTTPURL(flag, raw)
	if err != nil {
		return nil, errors.New(spotoken.ErrorMessage(err))
	}
	return u, nil
}

// loopbackHost reports whether host is a loopback IP literal, the only
// host Spotify accepts over plain http.
func loopbackHost(host string) bool { return admin.LoopbackHost(host) }

// normalizeOrigin checks and normalises a web origin of --return-to (see
// spotoken.NormalizeOrigin).
func normalizeOrigin(raw string) (string, error) {
	origin, err := admin.NormalizeOrigin(raw)
	return origin, flagError("return_to_origins", "--return-to", err)
}

// maxSecret bounds a client secret read from stdin or a file.
const maxSecret = 4096

// readSecret reads a secret from r: at most maxSecret bytes, one trailing
// newline (LF or CRLF) trimmed. The secret never appears in its errors.
func readSecret(r io.Reader, from string) (spotoken.Secret, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSecret+1))
	if err != nil {
		return "", fmt.Errorf("read the client secret from %s: %w", from, err)
	}
	if len(b) > maxSecret {
		return "", usageError{fmt.Errorf("the client secret from %s is longer than %d bytes", from, maxSecret)}
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return "", usageError{fmt.Errorf("the client secret from %s is empty", from)}
	}
	if bytes.IndexFunc(b, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return "", usageError{fmt.Errorf("the client secret from %s holds spaces, line breaks or control characters; give the secret alone", from)}
	}
	return spotoken.Secret(b), nil
}

func newAppsCmd(ios *IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apps",
		Short: "Manage the Spotify apps spotoken brokers for",
		Long: `Manage the Spotify apps spotoken brokers tokens for. An app is a Spotify app
registration (client ID, client secret unless it is a public PKCE client,
redirect URIs) under a name of your choosing, which the other admin commands
take as --app.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAppsCreateCmd(ios), newAppsListCmd(ios), newAppsDeleteCmd(ios),
		newAppsGetCmd(ios), newAppsUpdateCmd(ios), newAppsSecretsCmd(ios), newAppsBFFCmd(ios))
	return cmd
}

type appsCreateOptions struct {
	store            storeOptions
	Name             string
	ClientID         string
	RedirectURIs     []string
	Scopes           string
	ReturnTo         []string
	WebhookURL       string
	ClientSecretIn   bool
	ClientSecretFile string
}

func newAppsCreateCmd(ios *IOStreams) *cobra.Command {
	opts := &appsCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create --name NAME --client-id ID --redirect-uri URI [flags]",
		Short: "Register a Spotify app with spotoken",
		Long: `Register a Spotify app under NAME, which the other admin commands take as --app.

The client secret is read from standard input (--client-secret-stdin) or a
file (--client-secret-file), never from the command line, and stored sealed.
Without either, the app is a public client that authorizes with PKCE alone.

Each --redirect-uri must be registered, exactly, in the app's settings on
Spotify's developer dashboard; it is where Spotify sends users back to
spotoken's /callback. Spotify accepts plain http only for loopback IP
addresses (http://127.0.0.1:PORT, http://[::1]:PORT).

--scopes are requested when a connect session names none. --return-to lists
the web origins (scheme://host[:port]) a connect flow may send the user back
to. With --webhook-url, spotoken posts the app's events there, signed with a
new webhook secret that is printed once.

Creates the database (and, beside a SQLite database, its key file) if it
does not exist yet.`,
		Example: `  spotoken apps create --name playlist-sync --client-id 0123abcd... \
      --redirect-uri https://broker.example/callback --scopes "playlist-read-private playlist-modify-private" \
      --client-secret-file /run/secrets/spotify-client-secret
  pass show spotify/secret | spotoken apps create --name bot --client-id 0123abcd... \
      --redirect-uri https://broker.example/callback --client-secret-stdin \
      --webhook-url https://bot.example/hooks/spotoken --return-to https://bot.example`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return appsCreateRun(cmd.Context(), ios, opts, jsonOutput(cmd))
		},
	}
	f := cmd.Flags()
	opts.store.addFlags(f)
	f.StringVar(&opts.Name, "name", "", "the app's name in spotoken: 1-64 letters, digits, '-', '_', '.' (required)")
	f.StringVar(&opts.ClientID, "client-id", "", "the app's Spotify client ID (required)")
	f.StringArrayVar(&opts.RedirectURIs, "redirect-uri", nil, "a redirect URI registered with Spotify, ending in spotoken's /callback (required; repeatable)")
	f.StringVar(&opts.Scopes, "scopes", "", `default Spotify scopes, separated by spaces or commas, e.g. "user-read-private user-top-read"`)
	f.StringArrayVar(&opts.ReturnTo, "return-to", nil, "a web origin, scheme://host[:port], that connect flows may return users to (repeatable)")
	f.StringVar(&opts.WebhookURL, "webhook-url", "", "an http(s) URL that receives the app's events, signed with a new webhook secret")
	f.BoolVar(&opts.ClientSecretIn, "client-secret-stdin", false, "read the Spotify client secret from standard input")
	f.StringVar(&opts.ClientSecretFile, "client-secret-file", "", "read the Spotify client secret from this file")
	return cmd
}

// app validates the options (without the client secret) and returns the
// app they describe. Its errors are usage errors.
func (o *appsCreateOptions) app() (*spotoken.App, []string, error) {
	var warnings []string
	if err := validateAppName(o.Name); err != nil {
		return nil, nil, usageError{err}
	}
	if err := validateClientID(o.ClientID); err != nil {
		return nil, nil, usageError{err}
	}
	if len(o.RedirectURIs) == 0 {
		return nil, nil, usageError{errors.New("--redirect-uri is required: a redirect URI registered for the app with Spotify, e.g. https://broker.example/callback")}
	}
	app := &spotoken.App{ID: o.Name, ClientID: o.ClientID}
	for _, raw := range o.RedirectURIs {
		u, err := parseHTTPURL("--redirect-uri", raw)
		if err != nil {
			return nil, nil, usageError{err}
		}
		if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
			warnings = append(warnings, fmt.Sprintf("redirect URI %s: Spotify accepts http only for loopback IP addresses such as http://127.0.0.1:PORT; use https with the real Spotify", raw))
		}
		if !slices.Contains(app.RedirectURIs, raw) {
			app.RedirectURIs = append(app.RedirectURIs, raw)
		}
	}
	scopes, err := parseScopes(o.Scopes)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--scopes: %w", err)}
	}
	if len(scopes) > 0 {
		app.DefaultScopes = scopes
	}
	for _, raw := range o.ReturnTo {
		origin, err := normalizeOrigin(raw)
		if err != nil {
			return nil, nil, usageError{err}
		}
		if !slices.Contains(app.ReturnToOrigins, origin) {
			app.ReturnToOrigins = append(app.ReturnToOrigins, origin)
		}
	}
	if o.WebhookURL != "" {
		if _, err := parseHTTPURL("--webhook-url", o.WebhookURL); err != nil {
			return nil, nil, usageError{err}
		}
		app.WebhookURL = o.WebhookURL
	}
	if o.ClientSecretIn && o.ClientSecretFile != "" {
		return nil, nil, usageError{errors.New("give the client secret once: --client-secret-stdin or --client-secret-file, not both")}
	}
	return app, warnings, nil
}

// appView is an app as the CLI shows it: no secret, only whether it has one.
type appView struct {
	Name            string          `json:"name"`
	ClientID        string          `json:"client_id"`
	ClientType      string          `json:"client_type"` // "public" (PKCE) or "confidential" (client secret)
	RedirectURIs    []string        `json:"redirect_uris"`
	Scopes          spotoken.Scopes `json:"scopes"`
	ReturnToOrigins []string        `json:"return_to_origins"`
	WebhookURL      string          `json:"webhook_url,omitempty"`
	// RateLimitedUntil: while Spotify rate-limits the app's token requests,
	// when that window ends.
	RateLimitedUntil *time.Time `json:"rate_limited_until,omitempty"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
}

func newAppView(a *spotoken.App) appView {
	return appView{
		Name: a.ID, ClientID: a.ClientID, ClientType: clientType(a),
		RedirectURIs: nonNil(a.RedirectURIs), Scopes: nonNil(a.DefaultScopes), ReturnToOrigins: nonNil(a.ReturnToOrigins),
		WebhookURL: a.WebhookURL, CreatedAt: a.CreatedAt.UTC(), UpdatedAt: a.UpdatedAt.UTC(),
	}
}

func clientType(a *spotoken.App) string {
	if a.ClientSecret == "" {
		return "public"
	}
	return "confidential"
}

func appsCreateRun(ctx context.Context, ios *IOStreams, opts *appsCreateOptions, asJSON bool) error {
	app, warnings, err := opts.app()
	if err != nil {
		return err
	}
	switch {
	case opts.ClientSecretIn:
		if app.ClientSecret, err = readSecret(ios.In, "standard input"); err != nil {
			return err
		}
	case opts.ClientSecretFile != "":
		f, err := os.Open(opts.ClientSecretFile)
		if err != nil {
			return usageError{fmt.Errorf("--client-secret-file: %w", err)}
		}
		app.ClientSecret, err = readSecret(f, opts.ClientSecretFile)
		f.Close()
		if err != nil {
			return err
		}
	}
	err = withStore(ctx, ios, &opts.store, true, func(store spotoken.Store) error {
		svc, err := newAdmin(ios, store, nil, nil)
		if err != nil {
			return err
		}
		created, _, err := svc.CreateApp(ctx, cliActor(), admin.NewApp{ID: app.ID, ClientID: app.ClientID, ClientSecret: app.ClientSecret,
			RedirectURIs: app.RedirectURIs, DefaultScopes: app.DefaultScopes, ReturnToOrigins: app.ReturnToOrigins, WebhookURL: app.WebhookURL})
		if errors.Is(err, spotoken.ErrConflict) {
			return fmt.Errorf("an app named %q already exists; change it with 'spotoken apps update %s', or delete it first with 'spotoken apps delete %s'", app.ID, app.ID, app.ID)
		}
		if err != nil {
			return fmt.Errorf("create app %q: %s", app.ID, errorText(err))
		}
		app = created
		return nil
	})
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(ios.Err, "warning:", w)
	}
	if asJSON {
		out := struct {
			appView
			WebhookSecret string `json:"webhook_secret,omitempty"`
		}{newAppView(app), app.WebhookSecret.Reveal()}
		if err := writeJSON(ios.Out, out); err != nil {
			return err
		}
	} else {
		kind := "a public client (PKCE, no client secret)"
		if app.ClientSecret != "" {
			kind = "a confidential client (client secret stored sealed)"
		}
		fmt.Fprintf(ios.Out, "Created app %s, %s, Spotify client ID %s.\n", app.ID, kind, app.ClientID)
		if app.WebhookSecret != "" {
			fmt.Fprintf(ios.Out, "webhook secret: %s\n", app.WebhookSecret.Reveal())
		}
	}
	if app.WebhookSecret != "" {
		fmt.Fprintln(ios.Err, "The webhook secret is shown only this once: give it to the service at the webhook URL now, to verify the signatures of deliveries.")
	}
	fmt.Fprintf(ios.Err, "Next, create an API key for the app's service: spotoken apikeys create --app %s%s\n", app.ID, opts.store.flagsHint())
	return nil
}

type appsListOptions struct {
	store storeOptions
}

func newAppsListCmd(ios *IOStreams) *cobra.Command {
	opts := &appsListOptions{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the registered apps",
		Long: `List the registered apps: name, Spotify client ID, whether the app is a
public (PKCE) or confidential (client secret) client, redirect URIs, default
scopes and webhook URL. Secrets are never shown. The profiles of 'spotoken
login' (kept as apps under reserved names) are not listed: see 'spotoken
status'.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd.Context(), ios, &opts.store, false, func(store spotoken.Store) error {
				all, err := store.Apps(cmd.Context())
				if err != nil {
					return fmt.Errorf("list apps: %w", err)
				}
				// The profiles of 'spotoken login' are apps under reserved
				// names; 'spotoken status' lists them.
				apps := slices.DeleteFunc(all, func(a *spotoken.App) bool { return reservedAppName(a.ID) })
				limits, err := store.RateLimits(cmd.Context(), time.Now())
				if err != nil {
					return fmt.Errorf("list apps: %w", err)
				}
				return printApps(ios, apps, limits, jsonOutput(cmd))
			})
		},
	}
	opts.store.addFlags(cmd.Flags())
	return cmd
}

func printApps(ios *IOStreams, apps []*spotoken.App, limits []spotoken.AppRateLimit, asJSON bool) error {
	w := ios.Out
	limited := map[string]time.Time{}
	for _, l := range limits {
		limited[l.AppID] = l.Until
	}
	if asJSON {
		views := make([]appView, 0, len(apps))
		for _, a := range apps {
			v := newAppView(a)
			v.RateLimitedUntil = optTime(limited[a.ID])
			views = append(views, v)
		}
		return writeJSON(w, views)
	}
	defer func() {
		for _, a := range apps {
			if until, ok := limited[a.ID]; ok {
				fmt.Fprintf(ios.Err, "Spotify is rate-limiting app %s's token requests until %s: no token is refreshed before then.\n", a.ID, fmtTime(until))
			}
		}
	}()
	if len(apps) == 0 {
		_, err := fmt.Fprintln(w, "No apps yet; register one with 'spotoken apps create'.")
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tTYPE\tCLIENT ID\tREDIRECT URIS\tSCOPES\tWEBHOOK\tCREATED")
	for _, a := range apps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, clientType(a), a.ClientID,
			strings.Join(a.RedirectURIs, " "), orDash(a.DefaultScopes.String()), orDash(a.WebhookURL), fmtTime(a.CreatedAt))
	}
	return tw.Flush()
}

type appsDeleteOptions struct {
	store storeOptions
}

func newAppsDeleteCmd(ios *IOStreams) *cobra.Command {
	opts := &appsDeleteOptions{}
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an app with its API keys and connections",
		Long: `Delete the app NAME together with everything that belongs to it: its API keys
(which stop working at once), its connections, whose sealed tokens are erased,
pending authorizations and undelivered webhook events. It cannot be undone.

Spotify has no endpoint to revoke a grant: the users' authorizations stay
listed on their Spotify account until they remove them at
https://www.spotify.com/account/apps/ .`,
		Example: `  spotoken apps delete playlist-sync`,
		Args:    exactArgs("NAME"),
		RunE:    func(cmd *cobra.Command, args []string) error { return appsDeleteRun(cmd, ios, opts, args[0]) },
	}
	opts.store.addFlags(cmd.Flags())
	return cmd
}

func appsDeleteRun(cmd *cobra.Command, ios *IOStreams, opts *appsDeleteOptions, name string) error {
	ctx := cmd.Context()
	return withStore(ctx, ios, &opts.store, false, func(store spotoken.Store) error {
		if _, err := findApp(ctx, store, name); err != nil {
			return err
		}
		keys, err := store.APIKeys(ctx, name)
		if err != nil {
			return fmt.Errorf("list the API keys of app %q: %w", name, err)
		}
		counts, err := store.CountConnections(ctx)
		if err != nil {
			return fmt.Errorf("count the connections of app %q: %w", name, err)
		}
		conns := 0
		for _, c := range counts {
			if c.AppID == name {
				conns += c.Count
			}
		}
		svc, err := newAdmin(ios, store, nil, nil)
		if err != nil {
			return err
		}
		err = svc.DeleteApp(ctx, cliActor(), name)
		if errors.Is(err, spotoken.ErrNotFound) {
			return fmt.Errorf("no app named %q (see 'spotoken apps list')", name)
		}
		if err != nil {
			return fmt.Errorf("delete app %q: %w", name, err)
		}
		if jsonOutput(cmd) {
			return writeJSON(ios.Out, struct {
				Name        string `json:"name"`
				Deleted     bool   `json:"deleted"`
				APIKeys     int    `json:"api_keys"`
				Connections int    `json:"connections"`
			}{name, true, len(keys), conns})
		}
		fmt.Fprintf(ios.Out, "Deleted app %s with its %s and %s (their sealed tokens erased).\n", name, plural(len(keys), "API key"), plural(conns, "connection"))
		if conns > 0 {
			fmt.Fprintln(ios.Out, "Spotify has no revocation endpoint: users can remove the app's access at https://www.spotify.com/account/apps/ .")
		}
		return nil
	})
}

// plural formats n and noun, adding an "s" unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
