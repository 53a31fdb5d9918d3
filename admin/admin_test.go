package admin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
)

var ctx = context.Background()

var cli = admin.Actor{Kind: admin.ActorCLI, Name: "ops"}

type env struct {
	store   *sqlite.DB
	svc     *admin.Service
	changes []admin.Change
	logs    bytes.Buffer
	check   error // what CheckClientSecret answers
	checked int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	keys, _ := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{3}}}, 1)
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "db"), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := &env{store: store}
	logged, err := admin.New(admin.Config{Store: store, Logger: slog.New(slog.NewTextHandler(&e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = admin.New(admin.Config{Store: store,
		Record: func(ctx context.Context, c admin.Change) {
			e.changes = append(e.changes, c)
			logged.Record(ctx, c) // the default record, to search for secrets
		},
		CheckClientSecret: func(context.Context, *spotoken.App) error { e.checked++; return e.check },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) last() admin.Change { return e.changes[len(e.changes)-1] }

func TestCreateApp(t *testing.T) {
	e := newEnv(t)
	app, wh, err := e.svc.CreateApp(ctx, cli, admin.NewApp{ID: "a", ClientID: "cid", ClientSecret: "s3cret-one",
		RedirectURIs:    []string{"https://b.example/callback", "https://b.example/callback"},
		DefaultScopes:   spotoken.Scopes{"user-top-read", "user-read-email"},
		ReturnToOrigins: []string{"HTTPS://App.Example:443/"}, WebhookURL: "https://app.example/hooks"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := spotoken.WebhookKey(wh); err != nil || app.WebhookSecret != wh {
		t.Errorf("webhook secret %v: %v", wh, err)
	}
	want := []string{"https://b.example/callback"}
	if d := cmp.Diff(app.RedirectURIs, want); d != "" || !slices.Equal(app.ReturnToOrigins, []string{"https://app.example"}) ||
		!slices.Equal(app.DefaultScopes, spotoken.Scopes{"user-read-email", "user-top-read"}) {
		t.Errorf("normalized settings: %+v", app)
	}
	if c := e.last(); c.Action != admin.ActionAppCreate || c.AppID != "a" || c.Actor != cli {
		t.Errorf("record: %+v", c)
	}
	for _, tt := range []struct {
		name string
		n    admin.NewApp
		want string
	}{
		{"duplicate", admin.NewApp{ID: "a", ClientID: "x"}, "already exists"},
		{"reserved id", admin.NewApp{ID: "_profile.x", ClientID: "x"}, "kept for spotoken"},
		{"no client id", admin.NewApp{ID: "b"}, "client_id"},
		{"bad redirect", admin.NewApp{ID: "b", ClientID: "x", RedirectURIs: []string{"ftp://x"}}, "redirect_uris"},
		{"bad scope", admin.NewApp{ID: "b", ClientID: "x", DefaultScopes: spotoken.Scopes{"root"}}, `unknown Spotify scope "root"`},
		{"bad origin", admin.NewApp{ID: "b", ClientID: "x", ReturnToOrigins: []string{"https://x.example/path"}}, "return_to_origins"},
		{"bad webhook", admin.NewApp{ID: "b", ClientID: "x", WebhookURL: "https://u:p@x.example/"}, "webhook_url"},
		{"spaced secret", admin.NewApp{ID: "b", ClientID: "x", ClientSecret: "two words"}, "client_secret"},
	} {
		_, _, err := e.svc.CreateApp(ctx, cli, tt.n)
		if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.name != "duplicate" && !errors.Is(err, spotoken.ErrConflict) && spotoken.ErrorCode(err) != spotoken.EInvalid) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
		if strings.Contains(fmt.Sprint(err), "two words") {
			t.Errorf("%s: the error quotes the secret", tt.name)
		}
	}
	if _, err := e.store.App(ctx, "b"); !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("a refused app was stored: %v", err)
	}
}

// TestUpdateAppStagesClientSecret: a new client secret is staged, the one
// it replaces kept as the previous; staging again keeps the first
// previous; retiring checks with Spotify first.
func TestUpdateAppStagesClientSecret(t *testing.T) {
	e := newEnv(t)
	if _, _, err := e.svc.CreateApp(ctx, cli, admin.NewApp{ID: "a", ClientID: "cid", ClientSecret: "old-secret"}); err != nil {
		t.Fatal(err)
	}
	stage := func(s spotoken.Secret) *admin.Update {
		t.Helper()
		up, err := e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{ClientSecret: &s})
		if err != nil {
			t.Fatal(err)
		}
		return up
	}
	up := stage("new-secret")
	if up.App.ClientSecret != "new-secret" || up.App.PreviousClientSecret != "old-secret" || !slices.Equal(up.Changed, []string{"client_secret"}) {
		t.Errorf("staged: %q %q %v", up.App.ClientSecret.Reveal(), up.App.PreviousClientSecret.Reveal(), up.Changed)
	}
	up = stage("fixed-secret")
	if up.App.ClientSecret != "fixed-secret" || up.App.PreviousClientSecret != "old-secret" {
		t.Errorf("staged again: %q %q; want the first previous kept", up.App.ClientSecret.Reveal(), up.App.PreviousClientSecret.Reveal())
	}
	if up := stage("fixed-secret"); len(up.Changed) != 0 {
		t.Errorf("the same secret again changed %v", up.Changed)
	}

	e.check = spotoken.ErrAppMisconfigured
	if _, err := e.svc.RetireClientSecret(ctx, cli, "a", false); !errors.Is(err, spotoken.ErrConflict) || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("retire while Spotify refuses the current secret: %v, want a conflict", err)
	}
	e.check = errors.New("connection refused")
	if _, err := e.svc.RetireClientSecret(ctx, cli, "a", false); spotoken.ErrorCode(err) != spotoken.EUnavailable {
		t.Errorf("retire while Spotify cannot be asked: %v, want temporarily_unavailable", err)
	}
	if a, _ := e.store.App(ctx, "a"); a.PreviousClientSecret != "old-secret" {
		t.Fatal("a refused retirement erased the previous secret")
	}
	e.check = nil
	app, err := e.svc.RetireClientSecret(ctx, cli, "a", false)
	if err != nil || app.PreviousClientSecret != "" || app.ClientSecret != "fixed-secret" || e.checked != 3 {
		t.Fatalf("retire: %+v, %v (checked %d times)", app, err, e.checked)
	}
	if c := e.last(); c.Action != admin.ActionClientSecretRetire {
		t.Errorf("record: %+v", c)
	}
	if _, err := e.svc.RetireClientSecret(ctx, cli, "a", false); !errors.Is(err, spotoken.ErrConflict) {
		t.Errorf("retire with no rotation: %v", err)
	}
	stage("third-secret")
	e.check = spotoken.ErrAppMisconfigured
	if app, err := e.svc.RetireClientSecret(ctx, cli, "a", true); err != nil || app.PreviousClientSecret != "" || e.checked != 3 {
		t.Errorf("forced retirement: %v (checked %d times; a forced one asks nobody)", err, e.checked)
	}
	if _, err := e.svc.RetireClientSecret(ctx, cli, "nope", true); !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("unknown app: %v", err)
	}
	for _, s := range []string{"old-secret", "new-secret", "fixed-secret", "third-secret"} {
		if strings.Contains(e.logs.String(), s) {
			t.Errorf("the record of changes holds secret %q:\n%s", s, e.logs.String())
		}
	}
}

// TestUpdateAppWebhook: a webhook URL on an app without a secret gets one;
// rotating keeps the current as previous; a webhook change makes failed
// events due at once.
func TestUpdateAppWebhook(t *testing.T) {
	e := newEnv(t)
	if _, _, err := e.svc.CreateApp(ctx, cli, admin.NewApp{ID: "a", ClientID: "cid"}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.AppendEvents(ctx, spotoken.Event{Type: spotoken.EventConnectionCreated, AppID: "a", ConnectionID: "c"}); err != nil {
		t.Fatal(err)
	}
	evs, _ := e.store.PendingEvents(ctx, time.Now(), 10)
	if err := e.store.MarkEventFailed(ctx, evs[0].ID, time.Now().Add(time.Hour), "app has no webhook secret"); err != nil {
		t.Fatal(err)
	}
	url := "https://app.example/hooks"
	up, err := e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{WebhookURL: &url})
	if err != nil {
		t.Fatal(err)
	}
	first := up.WebhookSecret
	if _, err := spotoken.WebhookKey(first); err != nil || up.App.WebhookSecret != first || up.Redelivered != 1 ||
		!slices.Equal(up.Changed, []string{"webhook_url", "webhook_secret"}) {
		t.Errorf("webhook URL set: secret %v (%v), redelivered %d, changed %v", first, err, up.Redelivered, up.Changed)
	}
	if due, _ := e.store.PendingEvents(ctx, time.Now(), 10); len(due) != 1 {
		t.Errorf("the failed event is not due after the webhook change: %v", due)
	}
	up, err = e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{RotateWebhookSecret: true})
	if err != nil || up.WebhookSecret == "" || up.WebhookSecret == first || up.App.PreviousWebhookSecret != first {
		t.Fatalf("rotate: %+v, %v", up, err)
	}
	if _, err := e.svc.RetireWebhookSecret(ctx, cli, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RetireWebhookSecret(ctx, cli, "a"); !errors.Is(err, spotoken.ErrConflict) {
		t.Errorf("retire twice: %v", err)
	}
	empty := ""
	if _, err := e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{WebhookURL: &empty}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.RotateWebhookSecret(ctx, cli, "a"); spotoken.ErrorCode(err) != spotoken.EInvalid {
		t.Errorf("rotate without a webhook URL: %v", err)
	}
	bad := []string{"not a url"}
	if _, err := e.svc.UpdateApp(ctx, cli, "a", admin.AppPatch{RedirectURIs: &bad}); spotoken.ErrorCode(err) != spotoken.EInvalid {
		t.Errorf("bad redirect URI: %v", err)
	}
	if _, err := e.svc.UpdateApp(ctx, cli, "nope", admin.AppPatch{}); !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("unknown app: %v", err)
	}
	for _, s := range []spotoken.Secret{first, up.WebhookSecret} {
		if strings.Contains(e.logs.String(), s.Reveal()) {
			t.Error("the record of changes holds a webhook secret")
		}
	}
}

// TestAuthenticate: admin keys authenticate; API keys, revoked and unknown
// keys do not.
func TestAuthenticate(t *testing.T) {
	e := newEnv(t)
	key, rec, err := e.svc.CreateAdminKey(ctx, cli, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key.Reveal(), spotoken.AdminKeyPrefix) || strings.Contains(e.logs.String(), key.Reveal()) {
		t.Errorf("admin key %s…, or logged", rec.Prefix)
	}
	got, err := e.svc.Authenticate(ctx, key)
	if err != nil || got.ID != rec.ID {
		t.Fatalf("Authenticate: %+v, %v", got, err)
	}
	if k, _ := e.store.AdminKeyByHash(ctx, rec.Hash); k.LastUsedAt.IsZero() {
		t.Error("use not recorded")
	}
	if _, _, err := e.svc.CreateApp(ctx, cli, admin.NewApp{ID: "a", ClientID: "cid"}); err != nil {
		t.Fatal(err)
	}
	apiKey, _, err := e.svc.CreateAPIKey(ctx, cli, "a", "svc")
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]spotoken.Secret{
		"an API key": apiKey, "unknown": spotoken.AdminKeyPrefix + "nope", "empty": "", "long": spotoken.Secret(spotoken.AdminKeyPrefix + strings.Repeat("x", 200)),
	} {
		if _, err := e.svc.Authenticate(ctx, k); !errors.Is(err, admin.ErrInvalidAdminKey) {
			t.Errorf("%s: %v, want ErrInvalidAdminKey", name, err)
		}
	}
	if err := e.svc.RevokeAdminKey(ctx, cli, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(ctx, key); !errors.Is(err, admin.ErrInvalidAdminKey) {
		t.Errorf("revoked: %v", err)
	}
	if _, _, err := e.svc.CreateAdminKey(ctx, cli, ""); spotoken.ErrorCode(err) != spotoken.EInvalid {
		t.Errorf("nameless admin key: %v", err)
	}
}
