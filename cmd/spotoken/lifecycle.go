package main

// The app's life cycle at the command line: apps get and update, the
// retirement of rotated secrets, admin credentials, and webhook deliveries.
// Every change goes through package admin, as the admin API's do.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/server"
)

// cliActor is the operator at the command line, named by the system user.
func cliActor() admin.Actor {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return admin.Actor{Kind: admin.ActorCLI, Name: name}
}

// newAdmin returns the admin service of a command on store. Its warnings go
// to standard error; each change is a log line at info level (not shown
// here) and an audit record written in the change's transaction.
func newAdmin(ios *IOStreams, store spotoken.Store, check func(context.Context, *spotoken.App) error, now func() time.Time) (*admin.Service, error) {
	log := slog.New(slog.NewTextHandler(ios.Err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return admin.New(admin.Config{Store: store, CheckClientSecret: check, Now: now, Logger: log, Audit: true,
		Record: auditAdminChanges(store, log, true)})
}

// withAdmin opens the store named by o and runs fn with an admin service on it.
func withAdmin(ctx context.Context, ios *IOStreams, o *storeOptions, check func(context.Context, *spotoken.App) error, fn func(*admin.Service, spotoken.Store) error) error {
	return withStore(ctx, ios, o, false, func(store spotoken.Store) error {
		svc, err := newAdmin(ios, store, check, nil)
		if err != nil {
			return err
		}
		return fn(svc, store)
	})
}

// noEnvAnnotation marks a flag that is never read from the environment:
// the settings of 'apps update', which a stray SPOTOKEN_SCOPES would change.
const noEnvAnnotation = "spotoken/no-env"

// appDetail is an app as 'apps get' and 'apps update' show it.
type appDetail struct {
	appView
	// ClientSecretRotating: a previous client secret is kept as the
	// fallback until it is retired.
	ClientSecretRotating bool `json:"client_secret_rotating"`
	WebhookSecretSet     bool `json:"webhook_secret_set"`
	// WebhookSecretRotating: deliveries carry a second signature, under the
	// previous webhook secret, until it is retired.
	WebhookSecretRotating bool `json:"webhook_secret_rotating"`
}

func newAppDetail(a *spotoken.App) appDetail {
	return appDetail{appView: newAppView(a), ClientSecretRotating: a.PreviousClientSecret != "",
		WebhookSecretSet: a.WebhookSecret != "", WebhookSecretRotating: a.PreviousWebhookSecret != ""}
}

func printAppDetail(w io.Writer, a *spotoken.App) {
	d := newAppDetail(a)
	tw := newTable(w)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("name", d.Name)
	row("client id", d.ClientID)
	secret := d.ClientType
	if d.ClientSecretRotating {
		secret += " (client secret rotation under way: the previous secret is the fallback until retired)"
	}
	row("client type", secret)
	row("redirect URIs", orDash(strings.Join(d.RedirectURIs, " ")))
	row("default scopes", orDash(d.Scopes.String()))
	row("return-to origins", orDash(strings.Join(d.ReturnToOrigins, " ")))
	hook := orDash(d.WebhookURL)
	switch {
	case d.WebhookURL != "" && !d.WebhookSecretSet:
		hook += " (no webhook secret: nothing is delivered)"
	case d.WebhookSecretRotating:
		hook += " (webhook secret rotation under way: deliveries carry both signatures until the previous is retired)"
	}
	row("webhook", hook)
	row("created", fmtTime(a.CreatedAt))
	row("updated", fmtTime(a.UpdatedAt))
	tw.Flush()
}

func newAppsGetCmd(ios *IOStreams) *cobra.Command {
	var o storeOptions
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show an app's settings and the state of its secrets",
		Long: `Show the app NAME: its settings, whether it has a client secret and a webhook
secret, and whether a rotation of either is under way. Secrets are never shown.`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd.Context(), ios, &o, false, func(store spotoken.Store) error {
				app, err := findApp(cmd.Context(), store, args[0])
				if err != nil {
					return err
				}
				b, err := browserApp(cmd.Context(), store, app.ID)
				if err != nil {
					return err
				}
				if jsonOutput(cmd) {
					var bff *bffView
					if b != nil {
						v := newBFFView(app.ID, b)
						bff = &v
					}
					return writeJSON(ios.Out, struct {
						appDetail
						BFF *bffView `json:"bff,omitempty"`
					}{newAppDetail(app), bff})
				}
				printAppDetail(ios.Out, app)
				if b != nil {
					tw := newTable(ios.Out)
					for _, row := range bffRows(app, b) {
						fmt.Fprintf(tw, "bff %s:\t%s\n", row[0], row[1])
					}
					tw.Flush()
				}
				return nil
			})
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

type appsUpdateOptions struct {
	store               storeOptions
	ClientID            string
	RedirectURIs        []string
	Scopes              string
	ReturnTo            []string
	WebhookURL          string
	ClientSecretIn      bool
	ClientSecretFile    string
	RotateWebhookSecret bool
	bff                 bffFlags
}

func newAppsUpdateCmd(ios *IOStreams) *cobra.Command {
	opts := &appsUpdateOptions{}
	cmd := &cobra.Command{
		Use:   "update NAME [flags]",
		Short: "Change an app's settings, or stage a new client secret, without touching its users",
		Long: `Change the settings of the app NAME; what is not given stays as it is, and its
connections and API keys are kept. A list flag replaces the whole list
(repeat it for several values); given once with "" it empties the list, as
--webhook-url "" removes the webhook. These flags are read from the command
line only, never from SPOTOKEN_* variables.

A new client secret (--client-secret-stdin or --client-secret-file) is
staged, not swapped: spotoken presents it first and, whenever Spotify refuses
it (invalid_client), the secret it replaced, so no refresh fails whether
Spotify has the new secret yet or only the old one. Once Spotify has the new
one, end the rotation with 'spotoken apps secrets retire NAME'. Staging again
before that replaces the staged secret and keeps the previous one.

An app that gets a webhook URL and has no webhook secret gets one, printed
once. --rotate-webhook-secret makes a new webhook secret, printed once, and
keeps the current one: deliveries carry a signature under each until
'spotoken apps secrets retire NAME --webhook'. When the webhook URL or
secret changes, events that failed are sent again at once; events given up
are sent again by 'spotoken webhooks redeliver'.

Changing --client-id points the app at another Spotify app: its connections'
refresh tokens belong to the old one and stop refreshing.

--bff-origin, --bff-scopes and --bff-token-scopes change the app's
backend-for-frontend for a single-page app, as 'spotoken apps bff' does
(--bff-origin "" turns it off); see docs/browser-apps.md.`,
		Example: `  pass show spotify/new-secret | spotoken apps update playlist-sync --client-secret-stdin
  spotoken apps update bot --webhook-url https://bot.example/hooks/v2
  spotoken apps update bot --redirect-uri https://broker.example/callback --redirect-uri http://127.0.0.1:8080/callback
  spotoken apps update bot --scopes "user-read-email user-top-read" --return-to ""
  spotoken apps update bot --rotate-webhook-secret`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return appsUpdateRun(cmd, ios, opts, args[0])
		},
	}
	f := cmd.Flags()
	opts.store.addFlags(f)
	f.StringVar(&opts.ClientID, "client-id", "", "the app's Spotify client ID")
	f.StringArrayVar(&opts.RedirectURIs, "redirect-uri", nil, "a redirect URI registered with Spotify (repeatable; replaces the list)")
	f.StringVar(&opts.Scopes, "scopes", "", `default Spotify scopes, separated by spaces or commas ("" for none)`)
	f.StringArrayVar(&opts.ReturnTo, "return-to", nil, "a web origin connect flows may return users to (repeatable; replaces the list)")
	f.StringVar(&opts.WebhookURL, "webhook-url", "", `the URL that receives the app's events ("" removes it)`)
	f.BoolVar(&opts.ClientSecretIn, "client-secret-stdin", false, "stage a new Spotify client secret read from standard input")
	f.StringVar(&opts.ClientSecretFile, "client-secret-file", "", "stage a new Spotify client secret read from this file")
	f.BoolVar(&opts.RotateWebhookSecret, "rotate-webhook-secret", false, "make a new webhook secret; the current one also signs until retired")
	opts.bff.addFlags(f, "bff-")
	for _, name := range []string{"client-id", "redirect-uri", "scopes", "return-to", "webhook-url", "client-secret-stdin", "client-secret-file", "rotate-webhook-secret",
		"bff-origin", "bff-scopes", "bff-token-scopes"} {
		f.SetAnnotation(name, noEnvAnnotation, []string{"true"})
	}
	return cmd
}

// emptied reports whether a list flag was given once, as "".
func emptied(values []string) bool { return len(values) == 1 && values[0] == "" }

// patch builds the admin patch of the flags given, with their warnings.
func (o *appsUpdateOptions) patch(cmd *cobra.Command, ios *IOStreams) (admin.AppPatch, []string, error) {
	var p admin.AppPatch
	var warnings []string
	given := func(name string) bool { return cmd.Flags().Changed(name) }
	if given("client-id") {
		if err := validateClientID(o.ClientID); err != nil {
			return p, nil, usageError{err}
		}
		p.ClientID = &o.ClientID
	}
	if given("redirect-uri") {
		uris := []string{}
		if !emptied(o.RedirectURIs) {
			for _, raw := range o.RedirectURIs {
				u, err := parseHTTPURL("--redirect-uri", raw)
				if err != nil {
					return p, nil, usageError{err}
				}
				if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
					warnings = append(warnings, fmt.Sprintf("redirect URI %s: Spotify accepts http only for loopback IP addresses such as http://127.0.0.1:PORT; use https with the real Spotify", raw))
				}
				uris = append(uris, raw)
			}
		}
		p.RedirectURIs = &uris
	}
	if given("scopes") {
		scopes, err := parseScopes(o.Scopes)
		if err != nil {
			return p, nil, usageError{fmt.Errorf("--scopes: %w", err)}
		}
		p.DefaultScopes = &scopes
	}
	if given("return-to") {
		origins := []string{}
		if !emptied(o.ReturnTo) {
			for _, raw := range o.ReturnTo {
				origin, err := normalizeOrigin(raw)
				if err != nil {
					return p, nil, usageError{err}
				}
				origins = append(origins, origin)
			}
		}
		p.ReturnToOrigins = &origins
	}
	if given("webhook-url") {
		if o.WebhookURL != "" {
			if _, err := parseHTTPURL("--webhook-url", o.WebhookURL); err != nil {
				return p, nil, usageError{err}
			}
		}
		p.WebhookURL = &o.WebhookURL
	}
	if o.ClientSecretIn && o.ClientSecretFile != "" {
		return p, nil, usageError{errors.New("give the client secret once: --client-secret-stdin or --client-secret-file, not both")}
	}
	var secret spotoken.Secret
	var err error
	switch {
	case o.ClientSecretIn:
		secret, err = readSecret(ios.In, "standard input")
	case o.ClientSecretFile != "":
		f, ferr := os.Open(o.ClientSecretFile)
		if ferr != nil {
			return p, nil, usageError{fmt.Errorf("--client-secret-file: %w", ferr)}
		}
		secret, err = readSecret(f, o.ClientSecretFile)
		f.Close()
	}
	if err != nil {
		return p, nil, err
	}
	if secret != "" {
		p.ClientSecret = &secret
	}
	p.RotateWebhookSecret = o.RotateWebhookSecret
	if p.BrowserApp, err = o.bff.patch(cmd, "bff-"); err != nil {
		return p, nil, err
	}
	if p == (admin.AppPatch{}) {
		return p, nil, usageError{errors.New("nothing to change: give at least one setting (see 'spotoken apps update --help')")}
	}
	return p, warnings, nil
}

func appsUpdateRun(cmd *cobra.Command, ios *IOStreams, opts *appsUpdateOptions, name string) error {
	ctx := cmd.Context()
	patch, warnings, err := opts.patch(cmd, ios)
	if err != nil {
		return err
	}
	return withAdmin(ctx, ios, &opts.store, nil, func(svc *admin.Service, _ spotoken.Store) error {
		up, err := svc.UpdateApp(ctx, cliActor(), name, patch)
		if errors.Is(err, spotoken.ErrNotFound) {
			return fmt.Errorf("no app named %q (see 'spotoken apps list')", name)
		}
		if err != nil {
			return fmt.Errorf("update app %q: %s", name, errorText(err))
		}
		for _, w := range warnings {
			fmt.Fprintln(ios.Err, "warning:", w)
		}
		if jsonOutput(cmd) {
			return writeJSON(ios.Out, struct {
				appDetail
				Changed       []string `json:"changed"`
				WebhookSecret string   `json:"webhook_secret,omitempty"`
				Redelivered   int      `json:"redelivered"`
			}{newAppDetail(up.App), nonNil(up.Changed), up.WebhookSecret.Reveal(), up.Redelivered})
		}
		if len(up.Changed) == 0 {
			fmt.Fprintf(ios.Out, "App %s is unchanged: it already has these settings.\n", name)
		} else {
			fmt.Fprintf(ios.Out, "Updated app %s: %s.\n", name, strings.Join(up.Changed, ", "))
		}
		if up.WebhookSecret != "" {
			fmt.Fprintf(ios.Out, "webhook secret: %s\n", up.WebhookSecret.Reveal())
		}
		if up.Redelivered > 0 {
			fmt.Fprintf(ios.Out, "%s that failed will be sent again at once.\n", plural(up.Redelivered, "event"))
		}
		if patch.ClientSecret != nil && up.App.PreviousClientSecret != "" {
			fmt.Fprintf(ios.Err, "The new client secret is staged: spotoken presents it first and the previous one whenever Spotify refuses it.\n"+
				"Once Spotify has the new secret, end the rotation: spotoken apps secrets retire %s\n", name)
		}
		if up.WebhookSecret != "" {
			fmt.Fprintln(ios.Err, "The webhook secret is shown only this once: give it to the service at the webhook URL now.")
			if up.App.PreviousWebhookSecret != "" {
				fmt.Fprintf(ios.Err, "Deliveries carry a signature under each secret until you retire the old one: spotoken apps secrets retire %s --webhook\n", name)
			}
		}
		return nil
	})
}

// errorText is an error's client-safe message when it is the domain's,
// the whole error otherwise.
func errorText(err error) string {
	var se *spotoken.Error
	if errors.As(err, &se) && se.Code != spotoken.EInternal {
		return se.Message
	}
	return err.Error()
}

func newAppsSecretsCmd(ios *IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "End the rotation of an app's client or webhook secret",
		Long: `Rotated secrets: 'spotoken apps update NAME --client-secret-stdin' stages a new
client secret beside the previous one, and 'spotoken apps update NAME
--rotate-webhook-secret' makes a new webhook secret beside the previous one.
'spotoken apps secrets retire' erases the previous secret once it is no
longer needed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAppsSecretsRetireCmd(ios))
	return cmd
}

type appsSecretsRetireOptions struct {
	store       storeOptions
	Webhook     bool
	Force       bool
	AccountsURL string
}

func newAppsSecretsRetireCmd(ios *IOStreams) *cobra.Command {
	opts := &appsSecretsRetireOptions{}
	cmd := &cobra.Command{
		Use:   "retire NAME [--webhook]",
		Short: "Erase an app's previous client (or webhook) secret, ending its rotation",
		Long: `Erase the previous client secret of the app NAME: from then on spotoken
presents only the new one. Do it once Spotify has the new secret. First it
asks Spotify (a client-credentials request to --accounts-url) whether it
accepts the new secret alone, and keeps the previous one if it does not or
cannot tell: retiring then would stop every refresh. --force skips the check.

With --webhook, erase the previous webhook secret instead: deliveries carry
only the new secret's signature from then on. Do it once every receiver has
the new secret.`,
		Example: `  spotoken apps secrets retire playlist-sync
  spotoken apps secrets retire bot --webhook`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return appsSecretsRetireRun(cmd, ios, opts, args[0])
		},
	}
	f := cmd.Flags()
	opts.store.addFlags(f)
	f.BoolVar(&opts.Webhook, "webhook", false, "retire the previous webhook secret instead of the previous client secret")
	f.BoolVar(&opts.Force, "force", false, "retire the previous client secret without asking Spotify whether it accepts the new one")
	f.StringVar(&opts.AccountsURL, "accounts-url", server.SpotifyAccountsURL, "Spotify accounts service, asked before a client secret is retired")
	return cmd
}

func appsSecretsRetireRun(cmd *cobra.Command, ios *IOStreams, opts *appsSecretsRetireOptions, name string) error {
	ctx := cmd.Context()
	if opts.Webhook && opts.Force {
		return usageError{errors.New("--force applies to the client secret only: a webhook secret is retired without a check")}
	}
	if _, err := parseHTTPURL("--accounts-url", opts.AccountsURL); err != nil {
		return usageError{err}
	}
	check := (&refresh.SpotifyRefresher{TokenURL: strings.TrimSuffix(opts.AccountsURL, "/") + "/api/token"}).CheckClientSecret
	return withAdmin(ctx, ios, &opts.store, check, func(svc *admin.Service, _ spotoken.Store) error {
		var app *spotoken.App
		var err error
		what := "client secret"
		if opts.Webhook {
			what = "webhook secret"
			app, err = svc.RetireWebhookSecret(ctx, cliActor(), name)
		} else {
			app, err = svc.RetireClientSecret(ctx, cliActor(), name, opts.Force)
		}
		if errors.Is(err, spotoken.ErrNotFound) {
			return fmt.Errorf("no app named %q (see 'spotoken apps list')", name)
		}
		if err != nil {
			return fmt.Errorf("retire the previous %s of app %q: %s", what, name, errorText(err))
		}
		if jsonOutput(cmd) {
			return writeJSON(ios.Out, newAppDetail(app))
		}
		fmt.Fprintf(ios.Out, "Retired the previous %s of app %s; only the current one is used from now on.\n", what, name)
		return nil
	})
}

func newAdminsCmd(ios *IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admins",
		Short: "Manage operators' admin credentials for the admin API",
		Long: `Manage the admin credentials (sa_...) with which operators call the admin API
(/admin/v1/, see docs/api.md) and sign in to the console: they see and change
every app. They are not API keys: the app API refuses them, and the admin API
refuses API keys. spotoken keeps only a credential's SHA-256 hash: it is shown
once, when it is created. Only this command creates them.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAdminsCreateCmd(ios), newAdminsListCmd(ios), newAdminsRevokeCmd(ios))
	return cmd
}

// adminKeyView is an admin key as the CLI lists it: never the key or its hash.
type adminKeyView = server.AdminKeyView

func newAdminKeyView(k *spotoken.AdminKey) adminKeyView {
	return adminKeyView{ID: k.ID, Name: k.Name, Prefix: k.Prefix, CreatedAt: k.CreatedAt.UTC(),
		LastUsedAt: optTime(k.LastUsedAt), RevokedAt: optTime(k.RevokedAt)}
}

func newAdminsCreateCmd(ios *IOStreams) *cobra.Command {
	var o storeOptions
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an admin credential; it is shown once",
		Long: `Create an admin credential for the operator NAME. The credential (sa_...) is
printed alone on the first line of standard output, so a script can capture
it; it is shown this once only, as spotoken keeps just its hash.`,
		Example: `  spotoken admins create alice > alice.admin-key`,
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return withAdmin(ctx, ios, &o, nil, func(svc *admin.Service, _ spotoken.Store) error {
				key, rec, err := svc.CreateAdminKey(ctx, cliActor(), args[0])
				if err != nil {
					return fmt.Errorf("create an admin credential: %s", errorText(err))
				}
				if jsonOutput(cmd) {
					if err := writeJSON(ios.Out, struct {
						Key string `json:"key"`
						adminKeyView
					}{key.Reveal(), newAdminKeyView(rec)}); err != nil {
						return err
					}
				} else {
					fmt.Fprintln(ios.Out, key.Reveal())
				}
				fmt.Fprintf(ios.Err, "Created admin credential %s (%s…) for %s. It is shown only this once: store it now; spotoken keeps only its hash.\n", rec.ID, rec.Prefix, rec.Name)
				return nil
			})
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func newAdminsListCmd(ios *IOStreams) *cobra.Command {
	var o storeOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the admin credentials",
		Long:  `List the admin credentials, oldest first: id, name, first characters, when created and last used, and whether revoked.`,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd.Context(), ios, &o, false, func(store spotoken.Store) error {
				keys, err := store.AdminKeys(cmd.Context())
				if err != nil {
					return fmt.Errorf("list admin credentials: %w", err)
				}
				if jsonOutput(cmd) {
					views := make([]adminKeyView, 0, len(keys))
					for _, k := range keys {
						views = append(views, newAdminKeyView(k))
					}
					return writeJSON(ios.Out, views)
				}
				if len(keys) == 0 {
					fmt.Fprintln(ios.Out, "No admin credentials yet; create one with 'spotoken admins create NAME'.")
					return nil
				}
				tw := newTable(ios.Out)
				fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tCREATED\tLAST USED\tREVOKED")
				for _, k := range keys {
					last := fmtTime(k.LastUsedAt)
					if k.LastUsedAt.IsZero() {
						last = "never"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, fmtTime(k.CreatedAt), last, fmtTime(k.RevokedAt))
				}
				return tw.Flush()
			})
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func newAdminsRevokeCmd(ios *IOStreams) *cobra.Command {
	var o storeOptions
	cmd := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke an admin credential",
		Long:    `Revoke the admin credential ID (adm_..., as 'spotoken admins list' shows it). Requests with it fail from then on.`,
		Example: `  spotoken admins revoke adm_AbCdEfGhI`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return withAdmin(ctx, ios, &o, nil, func(svc *admin.Service, _ spotoken.Store) error {
				err := svc.RevokeAdminKey(ctx, cliActor(), args[0])
				if errors.Is(err, spotoken.ErrNotFound) {
					return fmt.Errorf("no admin credential %q (see 'spotoken admins list')", args[0])
				}
				if err != nil {
					return fmt.Errorf("revoke admin credential %q: %w", args[0], err)
				}
				if jsonOutput(cmd) {
					return writeJSON(ios.Out, struct {
						ID      string `json:"id"`
						Revoked bool   `json:"revoked"`
					}{args[0], true})
				}
				fmt.Fprintf(ios.Out, "Revoked admin credential %s.\n", args[0])
				return nil
			})
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func newWebhooksCmd(ios *IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "webhooks",
		Short: "See an app's webhook deliveries and send events again",
		Long: `See the events spotoken delivers to an app's webhook URL and where each
delivery stands (pending, failed and waiting for a retry, gave_up, delivered),
and send failed or given-up events again.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newWebhooksListCmd(ios), newWebhooksRedeliverCmd(ios))
	return cmd
}

type webhooksListOptions struct {
	store      storeOptions
	App        string
	Status     string
	Connection string
	Limit      int
}

func newWebhooksListCmd(ios *IOStreams) *cobra.Command {
	opts := &webhooksListOptions{}
	cmd := &cobra.Command{
		Use:   "list --app NAME [--status STATUS] [--connection ID]",
		Short: "List an app's events and their delivery status, newest first",
		Long: `List the events of the app NAME, newest first: id (the webhook-id), type,
connection, status, attempts, and the last error. --status selects pending,
failed, gave_up or delivered.`,
		Example: `  spotoken webhooks list --app bot --status gave_up`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireApp(opts.App); err != nil {
				return err
			}
			status := spotoken.EventStatus(opts.Status)
			if status != "" && !status.Valid() {
				return usageError{fmt.Errorf("--status %q: want pending, failed, gave_up or delivered", opts.Status)}
			}
			if opts.Limit < 1 || opts.Limit > 1000 {
				return usageError{errors.New("--limit must be from 1 to 1000")}
			}
			ctx := cmd.Context()
			return withAdmin(ctx, ios, &opts.store, nil, func(svc *admin.Service, _ spotoken.Store) error {
				events, err := svc.Events(ctx, spotoken.EventFilter{AppID: opts.App, Status: status, ConnectionID: opts.Connection, Limit: opts.Limit})
				if errors.Is(err, spotoken.ErrNotFound) {
					return fmt.Errorf("no app named %q (see 'spotoken apps list')", opts.App)
				}
				if err != nil {
					return fmt.Errorf("list the events of app %q: %w", opts.App, err)
				}
				return printEvents(ios.Out, events, jsonOutput(cmd))
			})
		},
	}
	f := cmd.Flags()
	opts.store.addFlags(f)
	f.StringVar(&opts.App, "app", "", "name of the app (required)")
	f.StringVar(&opts.Status, "status", "", "only events with this status: pending, failed, gave_up, delivered")
	f.StringVar(&opts.Connection, "connection", "", "only events of this connection")
	f.IntVar(&opts.Limit, "limit", 50, "at most this many events (1 to 1000)")
	return cmd
}

func printEvents(w io.Writer, events []*spotoken.Event, asJSON bool) error {
	if asJSON {
		views := make([]server.EventView, 0, len(events))
		for _, e := range events {
			views = append(views, server.NewEventView(e))
		}
		return writeJSON(w, views)
	}
	if len(events) == 0 {
		_, err := fmt.Fprintln(w, "No events.")
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tTYPE\tCONNECTION\tSTATUS\tATTEMPTS\tCREATED\tLAST ERROR")
	for _, e := range events {
		v := server.NewEventView(e)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", v.ID, v.Type, orDash(v.ConnectionID), v.Status, v.Attempts, fmtTime(e.CreatedAt), orDash(v.LastError))
	}
	return tw.Flush()
}

type webhooksRedeliverOptions struct {
	store  storeOptions
	App    string
	Status string
}

func newWebhooksRedeliverCmd(ios *IOStreams) *cobra.Command {
	opts := &webhooksRedeliverOptions{}
	cmd := &cobra.Command{
		Use:   "redeliver --app NAME (EVENT_ID... | --status gave_up|failed)",
		Short: "Send an app's events again",
		Long: `Make the events EVENT_ID... of the app NAME (evt_N, as 'spotoken webhooks list'
shows them) due again at once, whatever their status, with a fresh schedule
of attempts; or, with --status, every event that gave up (gave_up) or waits
for a retry (failed). A running 'spotoken serve' sends them within a second,
under their original webhook-id, so a receiver that already has one can tell.`,
		Example: `  spotoken webhooks redeliver --app bot evt_42
  spotoken webhooks redeliver --app bot --status gave_up`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return webhooksRedeliverRun(cmd, ios, opts, args)
		},
	}
	f := cmd.Flags()
	opts.store.addFlags(f)
	f.StringVar(&opts.App, "app", "", "name of the app (required)")
	f.StringVar(&opts.Status, "status", "", "redeliver every event with this status: gave_up or failed")
	return cmd
}

func webhooksRedeliverRun(cmd *cobra.Command, ios *IOStreams, opts *webhooksRedeliverOptions, args []string) error {
	if err := requireApp(opts.App); err != nil {
		return err
	}
	status := spotoken.EventStatus(opts.Status)
	switch {
	case status != "" && len(args) > 0:
		return usageError{errors.New("give event ids or --status, not both")}
	case status == "" && len(args) == 0:
		return usageError{errors.New("give the events to send again (evt_N...), or --status gave_up or --status failed")}
	case status != "" && status != spotoken.EventGaveUp && status != spotoken.EventFailed:
		return usageError{fmt.Errorf("--status %q: want gave_up or failed", opts.Status)}
	}
	ids := make([]int64, len(args))
	for i, a := range args {
		n, err := strconv.ParseInt(strings.TrimPrefix(a, "evt_"), 10, 64)
		if err != nil || n <= 0 {
			return usageError{fmt.Errorf("%q is not an event id (evt_N, as 'spotoken webhooks list' shows)", a)}
		}
		ids[i] = n
	}
	ctx := cmd.Context()
	return withAdmin(ctx, ios, &opts.store, nil, func(svc *admin.Service, _ spotoken.Store) error {
		n := 0
		if status != "" {
			var err error
			if n, err = svc.RedeliverEvents(ctx, cliActor(), opts.App, status); err != nil {
				if errors.Is(err, spotoken.ErrNotFound) {
					return fmt.Errorf("no app named %q (see 'spotoken apps list')", opts.App)
				}
				return fmt.Errorf("redeliver the events of app %q: %w", opts.App, err)
			}
		}
		for i, id := range ids {
			if err := svc.RedeliverEvent(ctx, cliActor(), opts.App, id); err != nil {
				if errors.Is(err, spotoken.ErrNotFound) {
					return fmt.Errorf("app %s has no event %s (see 'spotoken webhooks list --app %s'); %d sent again before it", opts.App, args[i], opts.App, n)
				}
				return fmt.Errorf("redeliver event %s of app %q: %w", args[i], opts.App, err)
			}
			n++
		}
		if jsonOutput(cmd) {
			return writeJSON(ios.Out, server.Redelivery{Redelivered: n})
		}
		fmt.Fprintf(ios.Out, "%s of app %s will be sent again at once.\n", plural(n, "event"), opts.App)
		return nil
	})
}
