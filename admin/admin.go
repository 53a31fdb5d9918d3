// Package admin is the one place where operators change spotoken: apps and
// every one of their settings, the rotation of their client and webhook
// secrets, API keys, admin credentials, the redelivery of webhook events.
// The CLI and the admin HTTP API (package server) both go through a
// Service, so each change is checked the same way and recorded the same
// way: Config.Record sees every change, by whom, and the names of the
// settings it touched, never a value that could be a secret. By default
// the record is a log line; with Config.Audit each change's audit record
// is also written in the change's own transaction (fail closed: no record,
// no change).
//
// A Service also authenticates admin credentials (Authenticate) and
// answers the reads an operator's console needs, so that a console is a
// thin layer over it.
package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spotoken/spotoken"
)

// Store is what a Service needs of a store.
type Store interface {
	spotoken.AppStore
	CreateAPIKey(ctx context.Context, key *spotoken.APIKey) error
	APIKeys(ctx context.Context, appID string) ([]*spotoken.APIKey, error)
	RevokeAPIKey(ctx context.Context, appID, id string, at time.Time) error
	spotoken.AdminKeyStore
	spotoken.EventLog
	spotoken.ConnectionFinder
	CountConnections(ctx context.Context) ([]spotoken.ConnectionCount, error)
	spotoken.BrowserAppStore
}

var _ Store = spotoken.Store(nil)

// Config configures a Service. Store is required.
type Config struct {
	Store Store
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger gets the default record of each change; default: discard.
	Logger *slog.Logger
	// Record, when set, receives each change once it is made, instead of
	// the log line.
	Record func(ctx context.Context, c Change)
	// Audit writes each change's audit record (Change.AuditRecord) in the
	// same store transaction as the change: a change whose record cannot
	// be written is not made, and fails. Changes so recorded reach Record
	// with Recorded set.
	Audit bool
	// CheckClientSecret, when set, is asked before a previous client secret
	// is retired whether Spotify accepts the app's current one alone (for
	// example with a client-credentials request). An error stops the
	// retirement unless it is forced: a spotoken.ErrAppMisconfigured error
	// when Spotify refused the secret, another when it could not tell.
	CheckClientSecret func(ctx context.Context, app *spotoken.App) error
}

// Service makes and records operators' changes. It is safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger
}

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("admin: Config needs a Store")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: cfg.Logger}, nil
}

// Actor is who makes a change.
type Actor struct {
	// Kind is ActorCLI (an operator with access to the database and keys)
	// or ActorAdminKey (an admin credential, over the admin API).
	Kind string
	// ID is the admin key's id; empty for the CLI.
	ID string
	// Name is the admin key's name, or the CLI's operating-system user.
	Name string
}

// The kinds of actor.
const (
	ActorCLI      = "cli"
	ActorAdminKey = "admin_key"
)

// KeyActor is the actor of an admin key.
func KeyActor(k *spotoken.AdminKey) Actor { return Actor{Kind: ActorAdminKey, ID: k.ID, Name: k.Name} }

// Change is one change an operator made, as recorded: never a secret.
type Change struct {
	At    time.Time
	Actor Actor
	// Action names the change, e.g. "app.update" (see the Action constants).
	Action string
	// AppID is the app changed, or the app of what was changed; empty for
	// admin keys.
	AppID string
	// Target is the id of what was changed within the app (an API key, an
	// event, a connection) or the admin key; empty for the app itself.
	Target string
	// Fields names the settings an app.update changed, and the secrets it
	// staged or minted (client_secret, webhook_secret), never their values.
	Fields []string
	// Count is how many things a bulk change touched (events redelivered).
	Count int
	// Recorded is set when the change's audit record was written with it
	// (Config.Audit); a change made elsewhere and passed to Record is not.
	Recorded bool
}

// AuditRecord is c's record in the audit trail: never a secret.
func (c Change) AuditRecord() spotoken.AuditRecord {
	rec := spotoken.AuditRecord{Version: spotoken.AuditVersion, At: c.At, Action: spotoken.AuditAction(c.Action), AppID: c.AppID,
		ActorType: spotoken.ActorAdmin, ActorID: c.Actor.ID, ActorLabel: c.Actor.Kind + ":" + c.Actor.Name, Outcome: "ok",
		Detail: map[string]string{}}
	if rec.ActorID == "" {
		rec.ActorID = c.Actor.Name
	}
	if c.Target != "" {
		rec.Detail["target"] = c.Target
	}
	if len(c.Fields) > 0 {
		rec.Detail["fields"] = strings.Join(c.Fields, ",")
	}
	if c.Count > 0 {
		rec.Detail["count"] = strconv.Itoa(c.Count)
	}
	switch c.Action {
	case ActionConnectionDelete, ActionConnectionRefresh, ActionConnectLink:
		rec.ConnectionID = c.Target
	}
	return rec
}

// audited returns ctx carrying c's audit record, made when the store
// writes it (so that it has what c holds by then), for the one store write
// that makes the change; ctx as it is without Config.Audit. It stamps c's
// time.
func (s *Service) audited(ctx context.Context, c *Change) context.Context {
	if c.At.IsZero() {
		c.At = s.cfg.Now()
	}
	if !s.cfg.Audit {
		return ctx
	}
	return spotoken.WithAuditFunc(ctx, func() []spotoken.AuditRecord {
		c.Recorded = true
		return []spotoken.AuditRecord{c.AuditRecord()}
	})
}

// The actions of Change.
const (
	ActionAppCreate           = "app.create"
	ActionAppUpdate           = "app.update"
	ActionAppDelete           = "app.delete"
	ActionClientSecretRetire  = "app.client_secret.retire"
	ActionWebhookSecretRotate = "app.webhook_secret.rotate"
	ActionWebhookSecretRetire = "app.webhook_secret.retire"
	ActionAPIKeyCreate        = "api_key.create"
	ActionAPIKeyRevoke        = "api_key.revoke"
	ActionAdminKeyCreate      = "admin_key.create"
	ActionAdminKeyRevoke      = "admin_key.revoke"
	ActionEventRedeliver      = "event.redeliver"
	ActionConnectionDelete    = "connection.delete"
	ActionConnectionRefresh   = "connection.refresh"
	ActionConnectLink         = "connection.connect_link"
)

// Record records a change made elsewhere (the server's connection
// actions), stamping its time; changes made by the Service's own methods
// are recorded by them.
func (s *Service) Record(ctx context.Context, c Change) {
	if c.At.IsZero() {
		c.At = s.cfg.Now()
	}
	if s.cfg.Record != nil {
		s.cfg.Record(ctx, c)
		return
	}
	attrs := []any{"action", c.Action, "actor_kind", c.Actor.Kind, "actor", c.Actor.Name}
	if c.Actor.ID != "" {
		attrs = append(attrs, "actor_id", c.Actor.ID)
	}
	if c.AppID != "" {
		attrs = append(attrs, "app", c.AppID)
	}
	if c.Target != "" {
		attrs = append(attrs, "target", c.Target)
	}
	if len(c.Fields) > 0 {
		attrs = append(attrs, "fields", strings.Join(c.Fields, ","))
	}
	if c.Count > 0 {
		attrs = append(attrs, "count", c.Count)
	}
	s.log.InfoContext(ctx, "admin change", attrs...)
}

// NewApp is a new app's settings.
type NewApp struct {
	ID, ClientID string
	// ClientSecret is empty for a public (PKCE) app.
	ClientSecret    spotoken.Secret
	RedirectURIs    []string
	DefaultScopes   spotoken.Scopes
	ReturnToOrigins []string
	// WebhookURL, when set, gets a new webhook secret, returned once.
	WebhookURL string
}

// CreateApp checks and stores a new app. With a webhook URL, the app gets
// a new webhook secret, returned this once. ErrConflict if the id exists.
func (s *Service) CreateApp(ctx context.Context, by Actor, n NewApp) (*spotoken.App, spotoken.Secret, error) {
	if err := CheckAppID(n.ID); err != nil {
		return nil, "", err
	}
	app := &spotoken.App{ID: n.ID, ClientID: n.ClientID, ClientSecret: n.ClientSecret, RedirectURIs: slices.Clone(n.RedirectURIs),
		DefaultScopes: slices.Clone(n.DefaultScopes), ReturnToOrigins: slices.Clone(n.ReturnToOrigins), WebhookURL: n.WebhookURL}
	if err := CheckApp(app); err != nil {
		return nil, "", err
	}
	if app.WebhookURL != "" {
		app.WebhookSecret = spotoken.NewWebhookSecret()
	}
	c := Change{Actor: by, Action: ActionAppCreate, AppID: app.ID}
	if err := s.cfg.Store.CreateApp(s.audited(ctx, &c), app); err != nil {
		if errors.Is(err, spotoken.ErrConflict) {
			return nil, "", spotoken.Errorf(spotoken.EConflict, "an app with id %q already exists", app.ID)
		}
		return nil, "", fmt.Errorf("create app %s: %w", app.ID, err)
	}
	s.Record(ctx, c)
	return app, app.WebhookSecret, nil
}

// AppPatch changes some of an app's settings: a nil field is left as it is.
type AppPatch struct {
	ClientID *string
	// ClientSecret stages a new client secret: see UpdateApp.
	ClientSecret    *spotoken.Secret
	RedirectURIs    *[]string
	DefaultScopes   *spotoken.Scopes
	ReturnToOrigins *[]string
	// WebhookURL sets the webhook URL; "" removes it.
	WebhookURL *string
	// RotateWebhookSecret gives the app a new webhook secret; see UpdateApp.
	RotateWebhookSecret bool
	// BrowserApp changes the app's backend-for-frontend settings.
	BrowserApp *BrowserAppPatch
}

// Update is what UpdateApp did.
type Update struct {
	App *spotoken.App
	// Changed names the settings that changed (client_id, client_secret,
	// redirect_uris, default_scopes, return_to_origins, webhook_url,
	// webhook_secret, bff_origins, bff_scopes, bff_token_scopes), in that
	// order.
	Changed []string
	// WebhookSecret is the app's new webhook secret, to hand to the
	// receiver now: it is shown this once. Empty when none was made.
	WebhookSecret spotoken.Secret
	// Redelivered counts the failed events made due again because the
	// webhook URL or secret changed.
	Redelivered int
}

// UpdateApp applies patch to the app id atomically and records it.
//
// A new client secret is staged, not swapped: the secret it replaces
// becomes the previous one, which spotoken presents whenever Spotify
// refuses the new one (invalid_client), until RetireClientSecret. Staging
// again before retiring replaces the staged secret and keeps the previous
// one (the secret in use before the rotation began). A public app given a
// secret simply has it.
//
// The webhook secret: an app that gets a webhook URL and has no webhook
// secret gets one; RotateWebhookSecret makes a new one and keeps the
// current one as the previous, so that deliveries carry both signatures
// until RetireWebhookSecret (rotating again replaces the previous one with
// the current one). A new secret is returned in Update.WebhookSecret, once.
// When the webhook URL or secret changes, the app's failed events are
// made due again at once (given-up ones wait for RedeliverEvents).
func (s *Service) UpdateApp(ctx context.Context, by Actor, id string, patch AppPatch) (*Update, error) {
	if patch.ClientSecret != nil {
		if err := CheckClientSecret(*patch.ClientSecret); err != nil {
			return nil, err
		}
	}
	var bff *browserAppChange
	if patch.BrowserApp != nil {
		bp := *patch.BrowserApp
		if err := bp.check(); err != nil {
			return nil, err
		}
		var err error
		if bff, err = s.planBrowserApp(ctx, id, bp); err != nil {
			return nil, s.storeErr("update app", id, err)
		}
	}
	up := &Update{}
	// The app's settings and the BFF's are two writes, each with its own
	// record: the app's names the app's settings it changed (made after fn
	// ran), the BFF's the BFF's.
	c := Change{At: s.cfg.Now(), Actor: by, Action: ActionAppUpdate, AppID: id}
	actx := ctx
	if s.cfg.Audit {
		actx = spotoken.WithAuditFunc(ctx, func() []spotoken.AuditRecord {
			if len(up.Changed) == 0 && bff != nil {
				return nil // only the BFF changes: its write has the record
			}
			c.Fields, c.Recorded = slices.Clone(up.Changed), true
			return []spotoken.AuditRecord{c.AuditRecord()}
		})
	}
	app, err := s.cfg.Store.UpdateApp(actx, id, func(a *spotoken.App) error {
		*up = Update{} // fn may run again
		old := *a
		if v := patch.ClientID; v != nil {
			a.ClientID = *v
		}
		if v := patch.ClientSecret; v != nil && *v != a.ClientSecret {
			if a.ClientSecret != "" && a.PreviousClientSecret == "" {
				a.PreviousClientSecret = a.ClientSecret
			}
			a.ClientSecret = *v
			if a.PreviousClientSecret == a.ClientSecret { // the previous one staged again: no rotation
				a.PreviousClientSecret = ""
			}
		}
		if v := patch.RedirectURIs; v != nil {
			a.RedirectURIs = slices.Clone(*v)
		}
		if v := patch.DefaultScopes; v != nil {
			a.DefaultScopes = slices.Clone(*v)
		}
		if v := patch.ReturnToOrigins; v != nil {
			a.ReturnToOrigins = slices.Clone(*v)
		}
		if v := patch.WebhookURL; v != nil {
			a.WebhookURL = *v
		}
		if err := CheckApp(a); err != nil {
			return err
		}
		switch {
		case patch.RotateWebhookSecret:
			if a.WebhookURL == "" {
				return invalid("webhook_secret: app %s has no webhook URL to sign deliveries to", id)
			}
			if a.WebhookSecret != "" {
				a.PreviousWebhookSecret = a.WebhookSecret
			}
			a.WebhookSecret = spotoken.NewWebhookSecret()
			up.WebhookSecret = a.WebhookSecret
		case a.WebhookURL != "" && a.WebhookSecret == "":
			a.WebhookSecret = spotoken.NewWebhookSecret()
			up.WebhookSecret = a.WebhookSecret
		}
		for _, f := range []struct {
			name    string
			changed bool
		}{
			{"client_id", old.ClientID != a.ClientID},
			{"client_secret", old.ClientSecret != a.ClientSecret},
			{"redirect_uris", !slices.Equal(old.RedirectURIs, a.RedirectURIs)},
			{"default_scopes", !slices.Equal(old.DefaultScopes.Normalize(), a.DefaultScopes.Normalize())},
			{"return_to_origins", !slices.Equal(old.ReturnToOrigins, a.ReturnToOrigins)},
			{"webhook_url", old.WebhookURL != a.WebhookURL},
			{"webhook_secret", up.WebhookSecret != ""},
		} {
			if f.changed {
				up.Changed = append(up.Changed, f.name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.storeErr("update app", id, err)
	}
	up.App = app
	if bff != nil {
		// After the app's own settings, which are checked whole there; the
		// BFF's were checked before either was stored.
		bc := Change{Actor: by, Action: ActionAppUpdate, AppID: id, Fields: bff.changed()}
		if err := bff.apply(s.audited(ctx, &bc), s.cfg.Store); err != nil {
			return nil, s.storeErr("update app", id, err)
		}
		up.Changed = append(up.Changed, bc.Fields...)
		c.Recorded = c.Recorded || bc.Recorded
	}
	if slices.Contains(up.Changed, "webhook_url") || slices.Contains(up.Changed, "webhook_secret") {
		n, err := s.cfg.Store.RedeliverEvents(ctx, id, spotoken.EventFailed)
		if err != nil {
			s.log.WarnContext(ctx, "make failed events due after a webhook change", "app", id, "err", err)
		}
		up.Redelivered = n
	}
	c.Fields = up.Changed
	s.Record(ctx, c)
	return up, nil
}

// storeErr passes the domain errors callers branch on (not found, invalid,
// conflict) as they are, and wraps others with context.
func (s *Service) storeErr(op, id string, err error) error {
	var se *spotoken.Error
	if errors.As(err, &se) && se.Code != spotoken.EInternal {
		return err
	}
	return fmt.Errorf("%s %s: %w", op, id, err)
}

// DeleteApp deletes the app with everything it has (see
// spotoken.AppStore.DeleteApp).
func (s *Service) DeleteApp(ctx context.Context, by Actor, id string) error {
	c := Change{Actor: by, Action: ActionAppDelete, AppID: id}
	if err := s.cfg.Store.DeleteApp(s.audited(ctx, &c), id); err != nil {
		return s.storeErr("delete app", id, err)
	}
	s.Record(ctx, c)
	return nil
}

// RetireClientSecret ends the app's client-secret rotation: the previous
// secret is erased and only the current one is presented from then on.
// Unless force, Config.CheckClientSecret is asked first whether Spotify
// accepts the current secret, and the previous is kept if it does not (or
// cannot tell): retiring then would stop every refresh. ErrConflict when
// no rotation is under way.
func (s *Service) RetireClientSecret(ctx context.Context, by Actor, id string, force bool) (*spotoken.App, error) {
	app, err := s.cfg.Store.App(ctx, id)
	if err != nil {
		return nil, s.storeErr("retire client secret", id, err)
	}
	if app.PreviousClientSecret == "" {
		return nil, spotoken.Errorf(spotoken.EConflict, "app %s has no previous client secret to retire: no rotation is under way", id)
	}
	if !force && s.cfg.CheckClientSecret != nil {
		if err := s.cfg.CheckClientSecret(ctx, app); err != nil {
			if errors.Is(err, spotoken.ErrAppMisconfigured) {
				return nil, spotoken.Errorf(spotoken.EConflict, "Spotify refuses app %s's current client secret (invalid_client): "+
					"retiring the previous one would stop every refresh; stage the right secret, or force the retirement", id)
			}
			s.log.WarnContext(ctx, "check the current client secret", "app", id, "err", err)
			return nil, &spotoken.Error{Code: spotoken.EUnavailable, RetryAfter: 10 * time.Second,
				Message: fmt.Sprintf("could not check with Spotify that it accepts app %s's current client secret; try again, or force the retirement", id)}
		}
	}
	c := Change{Actor: by, Action: ActionClientSecretRetire, AppID: id}
	app, err = s.cfg.Store.UpdateApp(s.audited(ctx, &c), id, func(a *spotoken.App) error {
		a.PreviousClientSecret = ""
		return nil
	})
	if err != nil {
		return nil, s.storeErr("retire client secret", id, err)
	}
	s.Record(ctx, c)
	return app, nil
}

// RotateWebhookSecret gives the app a new webhook secret, returned this
// once; the current one signs deliveries too until RetireWebhookSecret.
// EInvalid for an app without a webhook URL.
func (s *Service) RotateWebhookSecret(ctx context.Context, by Actor, id string) (*spotoken.App, spotoken.Secret, error) {
	var secret spotoken.Secret
	c := Change{Actor: by, Action: ActionWebhookSecretRotate, AppID: id}
	app, err := s.cfg.Store.UpdateApp(s.audited(ctx, &c), id, func(a *spotoken.App) error {
		if a.WebhookURL == "" {
			return spotoken.Errorf(spotoken.EInvalid, "app %s has no webhook URL; set one first", id)
		}
		if a.WebhookSecret != "" {
			a.PreviousWebhookSecret = a.WebhookSecret
		}
		secret = spotoken.NewWebhookSecret()
		a.WebhookSecret = secret
		return nil
	})
	if err != nil {
		return nil, "", s.storeErr("rotate webhook secret", id, err)
	}
	if _, err := s.cfg.Store.RedeliverEvents(ctx, id, spotoken.EventFailed); err != nil {
		s.log.WarnContext(ctx, "make failed events due after a webhook change", "app", id, "err", err)
	}
	s.Record(ctx, c)
	return app, secret, nil
}

// RetireWebhookSecret ends the webhook-secret rotation: deliveries carry
// only the current secret's signature from then on. ErrConflict when no
// rotation is under way.
func (s *Service) RetireWebhookSecret(ctx context.Context, by Actor, id string) (*spotoken.App, error) {
	c := Change{Actor: by, Action: ActionWebhookSecretRetire, AppID: id}
	app, err := s.cfg.Store.UpdateApp(s.audited(ctx, &c), id, func(a *spotoken.App) error {
		if a.PreviousWebhookSecret == "" {
			return spotoken.Errorf(spotoken.EConflict, "app %s has no previous webhook secret to retire: no rotation is under way", id)
		}
		a.PreviousWebhookSecret = ""
		return nil
	})
	if err != nil {
		return nil, s.storeErr("retire webhook secret", id, err)
	}
	s.Record(ctx, c)
	return app, nil
}

// MaxKeyName bounds the name of an API key or admin key.
const MaxKeyName = 100

func checkKeyName(name string) error {
	switch {
	case len(name) > MaxKeyName:
		return invalid("name: at most %d characters", MaxKeyName)
	case strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return invalid("name: printable characters only")
	}
	return nil
}

// CreateAPIKey mints an API key for the app, returned this once (only its
// hash is stored).
func (s *Service) CreateAPIKey(ctx context.Context, by Actor, appID, name string) (spotoken.Secret, *spotoken.APIKey, error) {
	if err := checkKeyName(name); err != nil {
		return "", nil, err
	}
	key, rec := spotoken.NewAPIKey(appID, name, s.cfg.Now())
	c := Change{Actor: by, Action: ActionAPIKeyCreate, AppID: appID, Target: rec.ID}
	if err := s.cfg.Store.CreateAPIKey(s.audited(ctx, &c), rec); err != nil {
		return "", nil, s.storeErr("create api key of", appID, err)
	}
	s.Record(ctx, c)
	return key, rec, nil
}

// RevokeAPIKey revokes the app's API key id.
func (s *Service) RevokeAPIKey(ctx context.Context, by Actor, appID, id string) error {
	c := Change{Actor: by, Action: ActionAPIKeyRevoke, AppID: appID, Target: id}
	if err := s.cfg.Store.RevokeAPIKey(s.audited(ctx, &c), appID, id, c.At); err != nil {
		return s.storeErr("revoke api key of", appID, err)
	}
	s.Record(ctx, c)
	return nil
}

// CreateAdminKey mints an admin credential named name, returned this once
// (only its hash is stored).
func (s *Service) CreateAdminKey(ctx context.Context, by Actor, name string) (spotoken.Secret, *spotoken.AdminKey, error) {
	if name == "" {
		return "", nil, invalid("name: an admin key needs a name (whose it is)")
	}
	if err := checkKeyName(name); err != nil {
		return "", nil, err
	}
	key, rec := spotoken.NewAdminKey(name, s.cfg.Now())
	c := Change{Actor: by, Action: ActionAdminKeyCreate, Target: rec.ID}
	if err := s.cfg.Store.CreateAdminKey(s.audited(ctx, &c), rec); err != nil {
		return "", nil, fmt.Errorf("create admin key: %w", err)
	}
	s.Record(ctx, c)
	return key, rec, nil
}

// RevokeAdminKey revokes the admin key id; it stops working at once.
func (s *Service) RevokeAdminKey(ctx context.Context, by Actor, id string) error {
	c := Change{Actor: by, Action: ActionAdminKeyRevoke, Target: id}
	if err := s.cfg.Store.RevokeAdminKey(s.audited(ctx, &c), id, c.At); err != nil {
		return s.storeErr("revoke admin key", id, err)
	}
	s.Record(ctx, c)
	return nil
}

// RedeliverEvent makes the app's event id due again now, whatever its
// status, with a fresh schedule of attempts.
func (s *Service) RedeliverEvent(ctx context.Context, by Actor, appID string, id int64) error {
	c := Change{Actor: by, Action: ActionEventRedeliver, AppID: appID, Target: fmt.Sprint("evt_", id), Count: 1}
	if err := s.cfg.Store.RedeliverEvent(s.audited(ctx, &c), appID, id); err != nil {
		return s.storeErr("redeliver event of", appID, err)
	}
	s.Record(ctx, c)
	return nil
}

// RedeliverEvents makes every event of the app with status (failed or
// gave_up) due again now, and returns how many.
func (s *Service) RedeliverEvents(ctx context.Context, by Actor, appID string, status spotoken.EventStatus) (int, error) {
	if _, err := s.cfg.Store.App(ctx, appID); err != nil {
		return 0, s.storeErr("redeliver events of", appID, err)
	}
	// The count is known only once they are: the record has none.
	c := Change{Actor: by, Action: ActionEventRedeliver, AppID: appID, Target: string(status)}
	n, err := s.cfg.Store.RedeliverEvents(s.audited(ctx, &c), appID, status)
	if err != nil {
		return 0, s.storeErr("redeliver events of", appID, err)
	}
	c.Count = n
	s.Record(ctx, c)
	return n, nil
}

// The reads.

// App returns the app id; ErrNotFound if none.
func (s *Service) App(ctx context.Context, id string) (*spotoken.App, error) {
	return s.cfg.Store.App(ctx, id)
}

// Apps returns every app, ordered by id.
func (s *Service) Apps(ctx context.Context) ([]*spotoken.App, error) { return s.cfg.Store.Apps(ctx) }

// APIKeys lists the app's API keys, oldest first; ErrNotFound if no app has id.
func (s *Service) APIKeys(ctx context.Context, appID string) ([]*spotoken.APIKey, error) {
	if _, err := s.cfg.Store.App(ctx, appID); err != nil {
		return nil, err
	}
	return s.cfg.Store.APIKeys(ctx, appID)
}

// AdminKeys lists every admin key, oldest first.
func (s *Service) AdminKeys(ctx context.Context) ([]*spotoken.AdminKey, error) {
	return s.cfg.Store.AdminKeys(ctx)
}

// Events lists the app's events, newest first; ErrNotFound if no app has
// the filter's app id.
func (s *Service) Events(ctx context.Context, filter spotoken.EventFilter) ([]*spotoken.Event, error) {
	if _, err := s.cfg.Store.App(ctx, filter.AppID); err != nil {
		return nil, err
	}
	return s.cfg.Store.Events(ctx, filter)
}

// FindConnections searches connections across apps; see
// spotoken.ConnectionFinder.
func (s *Service) FindConnections(ctx context.Context, q spotoken.ConnectionQuery) ([]*spotoken.Connection, error) {
	return s.cfg.Store.FindConnections(ctx, q)
}

// CountConnections counts connections by app and state.
func (s *Service) CountConnections(ctx context.Context) ([]spotoken.ConnectionCount, error) {
	return s.cfg.Store.CountConnections(ctx)
}

// errInvalidAdminKey is every failure of an admin credential that was
// presented: the client learns no more.
var errInvalidAdminKey = &spotoken.Error{Code: "invalid_token", Message: "A valid admin credential is required: Authorization: Bearer " + spotoken.AdminKeyPrefix + "… (app API keys are not accepted here)"}

// ErrInvalidAdminKey is Authenticate's error for a missing, malformed,
// unknown or revoked admin credential (code invalid_token).
var ErrInvalidAdminKey error = errInvalidAdminKey

// maxAdminKey bounds what is hashed and looked up.
const maxAdminKey = 128

// touchEvery is how often an admin key's last use is written.
const touchEvery = time.Minute

// Authenticate returns the active admin key whose value is key, and
// records its use (at most once a minute). Anything else, an app's API key
// included, is ErrInvalidAdminKey.
func (s *Service) Authenticate(ctx context.Context, key spotoken.Secret) (*spotoken.AdminKey, error) {
	raw := key.Reveal()
	if !strings.HasPrefix(raw, spotoken.AdminKeyPrefix) || len(raw) > maxAdminKey {
		return nil, errInvalidAdminKey
	}
	hash := spotoken.HashAdminKey(key)
	k, err := s.cfg.Store.AdminKeyByHash(ctx, hash)
	if errors.Is(err, spotoken.ErrNotFound) {
		return nil, errInvalidAdminKey
	}
	if err != nil {
		return nil, fmt.Errorf("authenticate admin key: %w", err)
	}
	if subtle.ConstantTimeCompare(k.Hash[:], hash[:]) != 1 || k.Revoked() {
		return nil, errInvalidAdminKey
	}
	if now := s.cfg.Now(); now.Sub(k.LastUsedAt) >= touchEvery {
		if err := s.cfg.Store.TouchAdminKey(ctx, k.ID, now); err != nil {
			s.log.WarnContext(ctx, "record admin key use", "admin_key_id", k.ID, "err", err)
		}
	}
	return k, nil
}
