package main

import (
	"context"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/server"
)

// updatedApp is 'apps update --json' output.
type updatedApp struct {
	appDetail
	Changed       []string `json:"changed"`
	WebhookSecret string   `json:"webhook_secret"`
	Redelivered   int      `json:"redelivered"`
}

// TestAppsUpdate: every setting changes with 'apps update', what is not
// given stays, the app keeps its connections and keys, and the settings
// flags are never read from the environment.
func TestAppsUpdate(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	e.createApp("bot", "--scopes", "user-read-email", "--return-to", "https://bot.example")
	_, keyOut := e.ok("", "apikeys", "create", "--app", "bot")
	if !strings.Contains(keyOut, "Created API key") {
		t.Fatalf("apikeys create: %s", keyOut)
	}
	store := e.open()
	if err := store.CreateConnection(context.Background(), &spotoken.Connection{AppID: "bot", ID: "u1", State: spotoken.StateActive,
		Token: spotoken.Token{AccessToken: "at", RefreshToken: "rt", Expiry: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}

	t.Setenv("SPOTOKEN_SCOPES", "streaming") // must not leak into the update
	var up updatedApp
	e.okJSON(&up, "", "apps", "update", "bot", "--client-id", "bot-2", "--redirect-uri", "https://broker.example/callback",
		"--redirect-uri", "http://127.0.0.1:9000/callback", "--return-to", "", "--webhook-url", "https://bot.example/hooks")
	if !slices.Equal(up.Changed, []string{"client_id", "redirect_uris", "return_to_origins", "webhook_url", "webhook_secret"}) ||
		up.ClientID != "bot-2" || len(up.RedirectURIs) != 2 || len(up.ReturnToOrigins) != 0 || !slices.Equal(up.Scopes, spotoken.Scopes{"user-read-email"}) ||
		!strings.HasPrefix(up.WebhookSecret, spotoken.WebhookSecretPrefix) || !up.WebhookSecretSet {
		t.Errorf("apps update --json: %+v", up)
	}
	out, errOut := e.ok("", "apps", "update", "bot", "--scopes", "user-top-read,user-read-email")
	if !strings.Contains(out, "Updated app bot: default_scopes.") || strings.Contains(out+errOut, "whsec_") {
		t.Errorf("apps update --scopes:\n%s%s", out, errOut)
	}
	out, _ = e.ok("", "apps", "update", "bot", "--scopes", "user-read-email user-top-read")
	if !strings.Contains(out, "unchanged") {
		t.Errorf("the same scopes again:\n%s", out)
	}
	a, err := store.App(context.Background(), "bot")
	if err != nil || a.WebhookSecret.Reveal() != up.WebhookSecret || a.ClientID != "bot-2" {
		t.Fatalf("stored app: %v", err)
	}
	if c, err := store.Connection(context.Background(), spotoken.ConnectionKey{AppID: "bot", ID: "u1"}); err != nil || c.Token.RefreshToken != "rt" {
		t.Errorf("the connection did not survive the update: %v", err)
	}
	if keys, _ := store.APIKeys(context.Background(), "bot"); len(keys) != 1 || keys[0].Revoked() {
		t.Errorf("the API key did not survive the update: %v", keys)
	}

	// Rotating the webhook secret prints the new one once; get shows the rotation.
	out, errOut = e.ok("", "apps", "update", "bot", "--rotate-webhook-secret")
	m := regexp.MustCompile(`(?m)^webhook secret: (whsec_\S+)$`).FindStringSubmatch(out)
	if m == nil || m[1] == up.WebhookSecret || !strings.Contains(errOut, "secrets retire bot --webhook") {
		t.Errorf("rotate webhook secret:\n%s%s", out, errOut)
	}
	var got appDetail
	e.okJSON(&got, "", "apps", "get", "bot")
	if !got.WebhookSecretRotating || got.ClientSecretRotating {
		t.Errorf("apps get: %+v", got)
	}
	out, _ = e.ok("", "apps", "get", "bot")
	if !strings.Contains(out, "webhook secret rotation under way") || strings.Contains(out, "whsec_") {
		t.Errorf("apps get:\n%s", out)
	}
	e.ok("", "apps", "secrets", "retire", "bot", "--webhook")
	e.fails(exitFailure, "no previous webhook secret", "", "apps", "secrets", "retire", "bot", "--webhook")

	e.fails(exitUsage, "nothing to change", "", "apps", "update", "bot")
	e.fails(exitFailure, `no app named "nope"`, "", "apps", "update", "nope", "--webhook-url", "")
	e.fails(exitUsage, "unknown Spotify scope", "", "apps", "update", "bot", "--scopes", "root")
	e.fails(exitUsage, "--webhook-url", "", "apps", "update", "bot", "--webhook-url", "ftp://x")
	e.fails(exitUsage, "give the client secret once", "", "apps", "update", "bot", "--client-secret-stdin", "--client-secret-file", "x")
	e.fails(exitUsage, "is empty", "", "apps", "update", "bot", "--client-secret-stdin")
	e.fails(exitUsage, "NAME", "", "apps", "update", "--webhook-url", "")
	if a2, _ := store.App(context.Background(), "bot"); !slices.Equal(a2.DefaultScopes, spotoken.Scopes{"user-read-email", "user-top-read"}) {
		t.Errorf("a refused update changed the app: %v", a2.DefaultScopes)
	}
}

// TestAppsClientSecretRotation: a secret staged from standard input is
// tried first with the previous as fallback; 'apps secrets retire' asks
// Spotify (the emulator) first and keeps the previous while Spotify
// refuses the new one.
func TestAppsClientSecretRotation(t *testing.T) {
	emu, err := emulator.New(emulator.Config{Clients: []emulator.Client{{ID: "conf", Secret: "old-secret-1", RedirectURIs: []string{"http://127.0.0.1:8080/callback"}}}})
	if err != nil {
		t.Fatal(err)
	}
	emuSrv := httptest.NewServer(emu)
	t.Cleanup(emuSrv.Close)
	e := newAdminEnv(t, "sqlite")
	e.ok("old-secret-1\n", "apps", "create", "--name", "conf", "--client-id", "conf", "--redirect-uri", "http://127.0.0.1:8080/callback", "--client-secret-stdin")
	out, errOut := e.ok("new-secret-2\n", "apps", "update", "conf", "--client-secret-stdin")
	if !strings.Contains(out, "client_secret") || !strings.Contains(errOut, "spotoken apps secrets retire conf") {
		t.Errorf("stage:\n%s%s", out, errOut)
	}
	a, _ := e.open().App(context.Background(), "conf")
	if a.ClientSecret != "new-secret-2" || a.PreviousClientSecret != "old-secret-1" {
		t.Fatal("the new secret is not staged before the old one")
	}
	retire := []string{"apps", "secrets", "retire", "conf", "--accounts-url", emuSrv.URL}
	e.fails(exitFailure, "Spotify refuses app conf's current client secret", "", retire...)
	if a, _ := e.open().App(context.Background(), "conf"); a.PreviousClientSecret != "old-secret-1" {
		t.Error("a refused retirement erased the previous secret")
	}
	if err := emu.SetClientSecrets("conf", "new-secret-2"); err != nil {
		t.Fatal(err)
	}
	out, _ = e.ok("", retire...)
	if !strings.Contains(out, "Retired the previous client secret of app conf") {
		t.Errorf("retire:\n%s", out)
	}
	if a, _ := e.open().App(context.Background(), "conf"); a.PreviousClientSecret != "" || a.ClientSecret != "new-secret-2" {
		t.Error("not retired")
	}
	e.fails(exitFailure, "no previous client secret", "", retire...)
	e.ok("third-secret-3\n", "apps", "update", "conf", "--client-secret-stdin")
	e.ok("", "apps", "secrets", "retire", "conf", "--force", "--accounts-url", "http://127.0.0.1:1")
	e.fails(exitUsage, "--force applies to the client secret only", "", "apps", "secrets", "retire", "conf", "--webhook", "--force")
	for _, s := range []string{"old-secret-1", "new-secret-2", "third-secret-3"} {
		out, errOut := e.ok("", "apps", "get", "conf", "--json")
		if strings.Contains(out+errOut, s) {
			t.Errorf("apps get shows a client secret")
		}
	}
}

// TestAdmins: admin credentials are created once-shown, listed without the
// key, and revoked.
func TestAdmins(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	e.createApp("a")
	out, errOut := e.ok("", "admins", "create", "alice")
	key, _, _ := strings.Cut(out, "\n")
	if !regexp.MustCompile(`^sa_[A-Za-z0-9_-]{32}$`).MatchString(key) || !strings.Contains(errOut, "shown only this once") || strings.Contains(errOut, key) {
		t.Fatalf("admins create:\n%s%s", out, errOut)
	}
	rec, err := e.open().AdminKeyByHash(context.Background(), spotoken.HashAdminKey(spotoken.Secret(key)))
	if err != nil || rec.Name != "alice" {
		t.Fatalf("stored admin key: %v", err)
	}
	out, _ = e.ok("", "admins", "list")
	if !strings.Contains(out, rec.ID) || !strings.Contains(out, "alice") || strings.Contains(out, key) {
		t.Errorf("admins list:\n%s", out)
	}
	var keys []adminKeyView
	e.okJSON(&keys, "", "admins", "list")
	if len(keys) != 1 || keys[0].ID != rec.ID || keys[0].RevokedAt != nil {
		t.Errorf("admins list --json: %+v", keys)
	}
	e.ok("", "admins", "revoke", rec.ID)
	e.okJSON(&keys, "", "admins", "list")
	if keys[0].RevokedAt == nil {
		t.Error("not revoked")
	}
	e.fails(exitFailure, "no admin credential", "", "admins", "revoke", "adm_nope")
	e.fails(exitUsage, "takes 1 argument", "", "admins", "create")
}

// TestWebhooksCommands: an app's events listed with their status, and
// given-up ones sent again.
func TestWebhooksCommands(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	e.createApp("a", "--webhook-url", "https://a.example/hooks")
	store := e.open()
	ctx := context.Background()
	if err := store.AppendEvents(ctx, spotoken.Event{Type: spotoken.EventConnectionCreated, AppID: "a", ConnectionID: "c1"},
		spotoken.Event{Type: spotoken.EventConnectionRefreshed, AppID: "a", ConnectionID: "c2"}); err != nil {
		t.Fatal(err)
	}
	evs, _ := store.PendingEvents(ctx, time.Now(), 10)
	if err := store.MarkEventFailed(ctx, evs[0].ID, spotoken.EventGaveUpAt, "gave up after 20 attempts: status 500"); err != nil {
		t.Fatal(err)
	}
	out, _ := e.ok("", "webhooks", "list", "--app", "a")
	for _, want := range []string{"evt_1", "gave_up", "status 500", "evt_2", "pending", "connection.refreshed"} {
		if !strings.Contains(out, want) {
			t.Errorf("webhooks list lacks %q:\n%s", want, out)
		}
	}
	var views []server.EventView
	e.okJSON(&views, "", "webhooks", "list", "--app", "a", "--status", "gave_up")
	if len(views) != 1 || views[0].ID != "evt_1" {
		t.Errorf("webhooks list --status gave_up: %+v", views)
	}
	out, _ = e.ok("", "webhooks", "redeliver", "--app", "a", "--status", "gave_up")
	if !strings.Contains(out, "1 event of app a will be sent again") {
		t.Errorf("redeliver --status:\n%s", out)
	}
	e.okJSON(&views, "", "webhooks", "list", "--app", "a", "--status", "pending")
	if len(views) != 2 {
		t.Errorf("pending after redelivery: %+v", views)
	}
	out, _ = e.ok("", "webhooks", "redeliver", "--app", "a", "evt_2", "1")
	if !strings.Contains(out, "2 events") {
		t.Errorf("redeliver by id:\n%s", out)
	}
	e.fails(exitFailure, "has no event evt_99", "", "webhooks", "redeliver", "--app", "a", "evt_99")
	e.fails(exitUsage, "not both", "", "webhooks", "redeliver", "--app", "a", "--status", "gave_up", "evt_1")
	e.fails(exitUsage, "give the events", "", "webhooks", "redeliver", "--app", "a")
	e.fails(exitUsage, "want gave_up or failed", "", "webhooks", "redeliver", "--app", "a", "--status", "delivered")
	e.fails(exitUsage, "not an event id", "", "webhooks", "redeliver", "--app", "a", "x")
	e.fails(exitUsage, "--status", "", "webhooks", "list", "--app", "a", "--status", "lost")
	e.fails(exitFailure, `no app named "b"`, "", "webhooks", "list", "--app", "b")
}
