package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
)

var ctx = context.Background()

// timeEqual compares times as instants, whatever their location.
var timeEqual = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

func diff(got, want any) string { return cmp.Diff(got, want, timeEqual) }

// marker makes a distinctive plaintext that the raw-database search looks for.
func marker(kind, id string) spotoken.Secret {
	return spotoken.Secret("PLAINTEXT-" + kind + "-" + id + "-7f3q")
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

func (h *harness) newApp(t *testing.T, id string) *spotoken.App {
	t.Helper()
	a := &spotoken.App{
		ID: id, ClientID: "client-" + id, ClientSecret: marker("client-secret", id),
		RedirectURIs:    []string{"https://broker.example/callback", "http://127.0.0.1/callback"},
		DefaultScopes:   spotoken.Scopes{"user-read-email", "user-read-private"},
		ReturnToOrigins: []string{"https://app.example"},
		WebhookURL:      "https://app.example/hooks",
		WebhookSecret:   marker("webhook-secret", id),
	}
	if err := h.store.CreateApp(ctx, a); err != nil {
		t.Fatalf("CreateApp(%s): %v", id, err)
	}
	return a
}

func (h *harness) newConn(t *testing.T, appID, id string, mutate func(*spotoken.Connection)) *spotoken.Connection {
	t.Helper()
	now := h.clock.Now()
	c := &spotoken.Connection{
		AppID: appID, ID: id, SpotifyUserID: "spotify-" + id, DisplayName: "User " + id,
		Scopes: spotoken.Scopes{"playlist-read-private", "user-read-email"}, State: spotoken.StateActive,
		Token: spotoken.Token{AccessToken: marker("access", appID+id), RefreshToken: marker("refresh", appID+id),
			Expiry: now.Add(time.Hour)},
		ConsentedAt: now, GrantExpiresAt: now.Add(4380 * time.Hour),
	}
	if mutate != nil {
		mutate(c)
	}
	if err := h.store.CreateConnection(ctx, c); err != nil {
		t.Fatalf("CreateConnection(%s/%s): %v", appID, id, err)
	}
	return c
}

func (h *harness) get(t *testing.T, key spotoken.ConnectionKey) *spotoken.Connection {
	t.Helper()
	c, err := h.store.Connection(ctx, key)
	if err != nil {
		t.Fatalf("Connection(%s): %v", key, err)
	}
	return c
}

func testApps(t *testing.T, h *harness) {
	a := h.newApp(t, "app1")
	now := h.clock.Now()
	want := *a
	want.CreatedAt, want.UpdatedAt = now, now
	got, err := h.store.App(ctx, "app1")
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(got, &want); d != "" {
		t.Errorf("App round trip (-got +want):\n%s", d)
	}
	wantErr(t, "CreateApp duplicate", h.store.CreateApp(ctx, &spotoken.App{ID: "app1", ClientID: "x"}), spotoken.ErrConflict)
	_, err = h.store.App(ctx, "nope")
	wantErr(t, "App unknown", err, spotoken.ErrNotFound)

	public := &spotoken.App{ID: "app0-public", ClientID: "pub"}
	if err := h.store.CreateApp(ctx, public); err != nil {
		t.Fatal(err)
	}
	apps, err := h.store.Apps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range apps {
		ids = append(ids, a.ID)
	}
	if d := diff(ids, []string{"app0-public", "app1"}); d != "" {
		t.Errorf("Apps order (-got +want):\n%s", d)
	}
	if apps[0].ClientSecret != "" || apps[0].WebhookSecret != "" || len(apps[0].RedirectURIs) != 0 {
		t.Errorf("public app round trip: %+v", apps[0])
	}
	if d := diff(apps[1], &want); d != "" {
		t.Errorf("Apps[1] (-got +want):\n%s", d)
	}
	// An empty secret is stored as no ciphertext at all; a set one as a
	// ciphertext that does not hold it.
	for _, column := range []string{"client_secret", "webhook_secret"} {
		if ct := h.backend.AppCiphertext(t, "app0-public", column); len(ct) != 0 {
			t.Errorf("public app: %s holds %d bytes, want none", column, len(ct))
		}
	}
	sealedClient := h.backend.AppCiphertext(t, "app1", "client_secret")
	sealedWebhook := h.backend.AppCiphertext(t, "app1", "webhook_secret")
	if len(sealedWebhook) == 0 || bytes.Contains(sealedWebhook, []byte(a.WebhookSecret.Reveal())) || bytes.Equal(sealedWebhook, sealedClient) {
		t.Errorf("app1: webhook_secret holds %q, want a ciphertext of its own", sealedWebhook)
	}

	// An update that leaves the secrets alone keeps their ciphertexts.
	if _, err := h.store.UpdateApp(ctx, "app1", func(a *spotoken.App) error {
		a.ClientID = "client-app1-renamed"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.backend.AppCiphertext(t, "app1", "client_secret"), sealedClient) ||
		!bytes.Equal(h.backend.AppCiphertext(t, "app1", "webhook_secret"), sealedWebhook) {
		t.Error("UpdateApp re-sealed secrets that fn did not change")
	}

	h.clock.Advance(time.Minute)
	updated, err := h.store.UpdateApp(ctx, "app1", func(a *spotoken.App) error {
		a.WebhookURL = "https://app.example/new-hooks"
		a.ClientSecret = marker("client-secret-2", "app1")
		a.WebhookSecret = marker("webhook-secret-2", "app1")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = h.store.App(ctx, "app1")
	if d := diff(got, updated); d != "" {
		t.Errorf("UpdateApp result differs from stored (-got +want):\n%s", d)
	}
	if got.WebhookURL != "https://app.example/new-hooks" || got.ClientSecret != marker("client-secret-2", "app1") ||
		got.WebhookSecret != marker("webhook-secret-2", "app1") || got.ClientID != "client-app1-renamed" ||
		!got.UpdatedAt.Equal(h.clock.Now()) || !got.CreatedAt.Equal(now) {
		t.Errorf("UpdateApp: %+v", got)
	}
	if bytes.Equal(h.backend.AppCiphertext(t, "app1", "webhook_secret"), sealedWebhook) {
		t.Error("UpdateApp kept the old webhook secret's ciphertext")
	}

	// Clearing the webhook secret leaves no ciphertext; setting it again works.
	if _, err := h.store.UpdateApp(ctx, "app1", func(a *spotoken.App) error { a.WebhookSecret = ""; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := h.store.App(ctx, "app1"); err != nil || got.WebhookSecret != "" || got.ClientSecret != marker("client-secret-2", "app1") {
		t.Errorf("after clearing the webhook secret: %+v, %v", got, err)
	}
	if ct := h.backend.AppCiphertext(t, "app1", "webhook_secret"); len(ct) != 0 {
		t.Errorf("cleared webhook secret: %d bytes stored, want none", len(ct))
	}
	if _, err := h.store.UpdateApp(ctx, "app1", func(a *spotoken.App) error { a.WebhookSecret = marker("webhook-secret-3", "app1"); return nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := h.store.App(ctx, "app1"); err != nil || got.WebhookSecret != marker("webhook-secret-3", "app1") {
		t.Errorf("after setting the webhook secret again: %+v, %v", got, err)
	}
	boom := errors.New("boom")
	if _, err := h.store.UpdateApp(ctx, "app1", func(a *spotoken.App) error { a.WebhookURL = "x"; return boom }); !errors.Is(err, boom) {
		t.Errorf("UpdateApp fn error: %v", err)
	}
	if got, _ := h.store.App(ctx, "app1"); got.WebhookURL != "https://app.example/new-hooks" {
		t.Errorf("failed UpdateApp changed the app: %q", got.WebhookURL)
	}
	_, err = h.store.UpdateApp(ctx, "nope", func(*spotoken.App) error { return nil })
	wantErr(t, "UpdateApp unknown", err, spotoken.ErrNotFound)

	// DeleteApp takes everything of the app with it.
	conn := h.newConn(t, "app1", "c1", nil)
	key := &spotoken.APIKey{ID: "key1", AppID: "app1", Name: "n", Prefix: "sk_ab", Hash: sha256.Sum256([]byte("sk_ab-key1"))}
	if err := h.store.CreateAPIKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := h.store.CreatePending(ctx, &spotoken.PendingAuthorization{StateHash: sha256.Sum256([]byte("st")), AppID: "app1",
		ConnectionID: "c2", Verifier: marker("verifier", "app1"), ExpiresAt: h.clock.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := h.store.AppendEvents(ctx,
		spotoken.Event{Type: spotoken.EventConnectionRefreshed, AppID: "app1", ConnectionID: "c1", Data: []byte(`{"n":1}`)},
		spotoken.Event{Type: spotoken.EventConnectionRefreshed, AppID: "app1", ConnectionID: "c1", Data: []byte(`{"n":2}`)},
	); err != nil {
		t.Fatal(err)
	}
	evs, err := h.store.PendingEvents(ctx, h.clock.Now(), 10)
	if err != nil || len(evs) != 2 {
		t.Fatalf("PendingEvents before DeleteApp: %v, %v", evs, err)
	}
	if err := h.store.MarkEventDelivered(ctx, evs[0].ID, h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := h.store.DeleteApp(ctx, "app1"); err != nil {
		t.Fatal(err)
	}
	if left, _ := h.store.PendingEvents(ctx, h.clock.Now().Add(time.Hour), 10); len(left) != 0 {
		t.Errorf("undelivered events survive DeleteApp: %v", left)
	}
	// The delivered one stays as history: marking it again still finds it.
	if err := h.store.MarkEventDelivered(ctx, evs[0].ID, h.clock.Now()); err != nil {
		t.Errorf("delivered event gone after DeleteApp: %v", err)
	}
	_, err = h.store.App(ctx, "app1")
	wantErr(t, "App after DeleteApp", err, spotoken.ErrNotFound)
	_, err = h.store.Connection(ctx, conn.Key())
	wantErr(t, "Connection after DeleteApp", err, spotoken.ErrNotFound)
	_, err = h.store.APIKeyByHash(ctx, key.Hash)
	wantErr(t, "APIKey after DeleteApp", err, spotoken.ErrNotFound)
	_, err = h.store.ConsumePending(ctx, sha256.Sum256([]byte("st")))
	wantErr(t, "Pending after DeleteApp", err, spotoken.ErrNotFound)
	wantErr(t, "DeleteApp unknown", h.store.DeleteApp(ctx, "app1"), spotoken.ErrNotFound)
}

func testAPIKeys(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	k1 := &spotoken.APIKey{ID: "k1", AppID: "a", Name: "sync job", Prefix: "sk_1111", Hash: sha256.Sum256([]byte("sk_1111-rest"))}
	if err := h.store.CreateAPIKey(ctx, k1); err != nil {
		t.Fatal(err)
	}
	want := *k1
	want.CreatedAt = h.clock.Now()
	got, err := h.store.APIKeyByHash(ctx, k1.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(got, &want); d != "" {
		t.Errorf("APIKey round trip (-got +want):\n%s", d)
	}
	wantErr(t, "duplicate hash", h.store.CreateAPIKey(ctx, &spotoken.APIKey{ID: "k9", AppID: "a", Hash: k1.Hash}), spotoken.ErrConflict)
	wantErr(t, "duplicate id", h.store.CreateAPIKey(ctx, &spotoken.APIKey{ID: "k1", AppID: "a", Hash: sha256.Sum256([]byte("other"))}), spotoken.ErrConflict)
	wantErr(t, "unknown app", h.store.CreateAPIKey(ctx, &spotoken.APIKey{ID: "k8", AppID: "zzz", Hash: sha256.Sum256([]byte("o2"))}), spotoken.ErrNotFound)
	_, err = h.store.APIKeyByHash(ctx, sha256.Sum256([]byte("unknown")))
	wantErr(t, "unknown hash", err, spotoken.ErrNotFound)

	h.clock.Advance(time.Second)
	k2 := &spotoken.APIKey{ID: "k2", AppID: "a", Name: "bot", Prefix: "sk_2222", Hash: sha256.Sum256([]byte("sk_2222-rest"))}
	if err := h.store.CreateAPIKey(ctx, k2); err != nil {
		t.Fatal(err)
	}
	keys, err := h.store.APIKeys(ctx, "a")
	if err != nil || len(keys) != 2 || keys[0].ID != "k1" || keys[1].ID != "k2" {
		t.Fatalf("APIKeys(a) = %v, %v; want k1, k2", keys, err)
	}
	if keys, _ := h.store.APIKeys(ctx, "b"); len(keys) != 0 {
		t.Errorf("APIKeys(b) = %v, want none", keys)
	}

	used := h.clock.Now().Add(time.Minute)
	if err := h.store.TouchAPIKey(ctx, "k1", used); err != nil {
		t.Fatal(err)
	}
	revoked := h.clock.Now().Add(2 * time.Minute)
	if err := h.store.RevokeAPIKey(ctx, "a", "k1", revoked); err != nil {
		t.Fatal(err)
	}
	if err := h.store.RevokeAPIKey(ctx, "a", "k1", revoked.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, _ = h.store.APIKeyByHash(ctx, k1.Hash)
	if !got.LastUsedAt.Equal(used) || !got.RevokedAt.Equal(revoked) || !got.Revoked() {
		t.Errorf("after touch and revoke: last used %v, revoked %v; want %v, %v", got.LastUsedAt, got.RevokedAt, used, revoked)
	}
	wantErr(t, "touch unknown key", h.store.TouchAPIKey(ctx, "k404", used), spotoken.ErrNotFound)
	if err := h.store.TouchAPIKey(ctx, "k1", used.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.store.APIKeyByHash(ctx, k1.Hash); !got.LastUsedAt.Equal(used) {
		t.Errorf("TouchAPIKey moved last use backwards to %v", got.LastUsedAt)
	}
	wantErr(t, "revoke another app's key", h.store.RevokeAPIKey(ctx, "b", "k2", revoked), spotoken.ErrNotFound)
	wantErr(t, "revoke unknown key", h.store.RevokeAPIKey(ctx, "a", "k404", revoked), spotoken.ErrNotFound)
	if got, _ := h.store.APIKeyByHash(ctx, k2.Hash); got.Revoked() {
		t.Error("k2 revoked by another app's call")
	}
}

func testPending(t *testing.T, h *harness) {
	h.newApp(t, "a")
	now := h.clock.Now()
	p := &spotoken.PendingAuthorization{
		StateHash: sha256.Sum256([]byte("state-1")), AppID: "a", ConnectionID: "c1",
		Verifier: marker("verifier", "p1"), Scopes: spotoken.Scopes{"user-read-email"},
		RedirectURI: "https://broker.example/callback", ReturnTo: "https://app.example/done",
		ExpiresAt: now.Add(10 * time.Minute),
	}
	if err := h.store.CreatePending(ctx, p); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "duplicate state", h.store.CreatePending(ctx, p), spotoken.ErrConflict)
	h.clock.Advance(time.Second)
	got, err := h.store.ConsumePending(ctx, p.StateHash)
	if err != nil {
		t.Fatal(err)
	}
	want := *p
	want.CreatedAt, want.UsedAt = now, h.clock.Now()
	if d := diff(got, &want); d != "" {
		t.Errorf("ConsumePending (-got +want):\n%s", d)
	}
	_, err = h.store.ConsumePending(ctx, p.StateHash)
	wantErr(t, "second consume", err, spotoken.ErrAlreadyUsed)
	_, err = h.store.ConsumePending(ctx, sha256.Sum256([]byte("never")))
	wantErr(t, "unknown state", err, spotoken.ErrNotFound)

	// Many concurrent callbacks with one state: exactly one wins.
	race := &spotoken.PendingAuthorization{StateHash: sha256.Sum256([]byte("race")), AppID: "a", ConnectionID: "c2",
		Verifier: marker("verifier", "race"), ExpiresAt: h.clock.Now().Add(time.Minute)}
	if err := h.store.CreatePending(ctx, race); err != nil {
		t.Fatal(err)
	}
	var wins, used atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.store.ConsumePending(ctx, race.StateHash)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, spotoken.ErrAlreadyUsed):
				used.Add(1)
			default:
				t.Errorf("concurrent consume: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || used.Load() != 19 {
		t.Errorf("concurrent consume: %d won, %d already used; want 1 and 19", wins.Load(), used.Load())
	}

	late := &spotoken.PendingAuthorization{StateHash: sha256.Sum256([]byte("late")), AppID: "a", ConnectionID: "c3",
		ExpiresAt: h.clock.Now().Add(10 * time.Minute)}
	if err := h.store.CreatePending(ctx, late); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(11 * time.Minute)
	_, err = h.store.ConsumePending(ctx, late.StateHash)
	wantErr(t, "expired", err, spotoken.ErrExpired)
	_, err = h.store.ConsumePending(ctx, late.StateHash)
	wantErr(t, "expired, again", err, spotoken.ErrAlreadyUsed)

	fresh := &spotoken.PendingAuthorization{StateHash: sha256.Sum256([]byte("fresh")), AppID: "a", ConnectionID: "c4",
		ExpiresAt: h.clock.Now().Add(10 * time.Minute)}
	if err := h.store.CreatePending(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	n, err := h.store.DeleteExpiredPending(ctx, h.clock.Now())
	if err != nil || n != 3 {
		t.Errorf("DeleteExpiredPending = %d, %v; want 3 (p, race, late)", n, err)
	}
	if _, err := h.store.ConsumePending(ctx, fresh.StateHash); err != nil {
		t.Errorf("unexpired pending deleted: %v", err)
	}
}

func testConnectionRoundTrip(t *testing.T, h *harness) {
	h.newApp(t, "a")
	now := h.clock.Now()
	c := h.newConn(t, "a", "c1", func(c *spotoken.Connection) {
		c.LastRefreshAt = now.Add(-time.Minute)
		c.ConsecutiveFailures = 2
		c.NextAttemptAt = now.Add(time.Minute)
		c.LastErrorCode = "server_error"
		c.ExpiryWarnedAt = now.Add(-time.Second)
		c.Version = 42                                                      // ignored
		c.Lease = spotoken.Lease{Owner: "x", ExpiresAt: now.Add(time.Hour)} // ignored
	})
	want := *c
	want.Version, want.Lease, want.CreatedAt, want.UpdatedAt = 1, spotoken.Lease{}, now, now
	got := h.get(t, c.Key())
	if d := diff(got, &want); d != "" {
		t.Errorf("Connection round trip (-got +want):\n%s", d)
	}
	wantErr(t, "duplicate", h.store.CreateConnection(ctx, c), spotoken.ErrConflict)
	wantErr(t, "unknown app", h.store.CreateConnection(ctx, &spotoken.Connection{AppID: "zzz", ID: "c1", State: spotoken.StateActive}), spotoken.ErrNotFound)
	_, err := h.store.Connection(ctx, spotoken.ConnectionKey{AppID: "a", ID: "nope"})
	wantErr(t, "unknown connection", err, spotoken.ErrNotFound)
	_, err = h.store.Connection(ctx, spotoken.ConnectionKey{AppID: "b", ID: "c1"})
	wantErr(t, "connection of another app", err, spotoken.ErrNotFound)

	// The same connection id in two apps is two connections.
	h.newApp(t, "b")
	h.newConn(t, "b", "c1", func(c *spotoken.Connection) { c.DisplayName = "other" })
	if got := h.get(t, c.Key()); got.DisplayName != "User c1" {
		t.Errorf("app a's c1 changed by app b's: %q", got.DisplayName)
	}

	// A connection without tokens (revoked) round-trips with empty tokens.
	bare := h.newConn(t, "a", "c2", func(c *spotoken.Connection) { c.State, c.Token = spotoken.StateRevoked, spotoken.Token{} })
	if got := h.get(t, bare.Key()); got.Token != (spotoken.Token{}) || got.State != spotoken.StateRevoked {
		t.Errorf("tokenless connection: %+v", got)
	}

	// Created with events, atomically.
	ev := spotoken.Event{Type: spotoken.EventConnectionCreated, AppID: "a", ConnectionID: "c3", Data: []byte(`{"connection_id":"c3"}`)}
	c3 := &spotoken.Connection{AppID: "a", ID: "c3", State: spotoken.StateActive}
	if err := h.store.CreateConnection(ctx, c3, ev); err != nil {
		t.Fatal(err)
	}
	events, err := h.store.PendingEvents(ctx, h.clock.Now(), 10)
	if err != nil || len(events) != 1 || events[0].Type != spotoken.EventConnectionCreated || string(events[0].Data) != string(ev.Data) {
		t.Errorf("events after CreateConnection: %v, %v", events, err)
	}
}

func testConnectionUpdate(t *testing.T, h *harness) {
	h.newApp(t, "a")
	c := h.newConn(t, "a", "c1", nil)
	h.clock.Advance(time.Minute)
	newTok := spotoken.Token{AccessToken: marker("access-2", "c1"), RefreshToken: marker("refresh-2", "c1"), Expiry: h.clock.Now().Add(time.Hour)}
	ev := spotoken.Event{Type: spotoken.EventConnectionRotated, AppID: "a", ConnectionID: "c1", Data: []byte(`{}`)}
	updated, err := h.store.UpdateConnection(ctx, c.Key(), func(c *spotoken.Connection) ([]spotoken.Event, error) {
		if c.Version != 1 {
			return nil, fmt.Errorf("fn saw version %d, want 1", c.Version)
		}
		c.Token = newTok
		c.LastRefreshAt = h.clock.Now()
		c.Scopes = spotoken.Scopes{"user-read-email"}
		c.ID, c.AppID, c.Version = "hijack", "hijack", 99 // ignored
		c.Lease = spotoken.Lease{Owner: "sneaky", ExpiresAt: h.clock.Now().Add(time.Hour)}
		return []spotoken.Event{ev}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := h.get(t, c.Key())
	if d := diff(got, updated); d != "" {
		t.Errorf("UpdateConnection result differs from stored (-got +want):\n%s", d)
	}
	if got.Version != 2 || got.Token != newTok || got.ID != "c1" || got.Lease.Owner != "" ||
		!got.UpdatedAt.Equal(h.clock.Now()) || got.Scopes.String() != "user-read-email" {
		t.Errorf("after update: %+v", got)
	}
	if events, _ := h.store.PendingEvents(ctx, h.clock.Now(), 10); len(events) != 1 || events[0].Type != spotoken.EventConnectionRotated {
		t.Errorf("events after UpdateConnection: %v", events)
	}

	boom := errors.New("boom")
	_, err = h.store.UpdateConnection(ctx, c.Key(), func(c *spotoken.Connection) ([]spotoken.Event, error) {
		c.DisplayName = "changed"
		return []spotoken.Event{ev}, boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("fn error: got %v", err)
	}
	if got := h.get(t, c.Key()); got.Version != 2 || got.DisplayName != "User c1" {
		t.Errorf("a failed update changed the connection: %+v", got)
	}
	if events, _ := h.store.PendingEvents(ctx, h.clock.Now(), 10); len(events) != 1 {
		t.Errorf("a failed update stored its events: %d events", len(events))
	}

	// Emptying the token erases it (revocation).
	if _, err := h.store.UpdateConnection(ctx, c.Key(), func(c *spotoken.Connection) ([]spotoken.Event, error) {
		c.State, c.Token = spotoken.StateRevoked, spotoken.Token{}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := h.get(t, c.Key()); got.Token != (spotoken.Token{}) || got.State != spotoken.StateRevoked || got.Version != 3 {
		t.Errorf("after revocation: %+v", got)
	}
	if raw := h.backend.Dump(t); bytes.Contains(raw, []byte(newTok.RefreshToken.Reveal())) {
		t.Error("revoked refresh token found in the database")
	}
	_, err = h.store.UpdateConnection(ctx, spotoken.ConnectionKey{AppID: "a", ID: "nope"}, func(*spotoken.Connection) ([]spotoken.Event, error) { return nil, nil })
	wantErr(t, "update unknown", err, spotoken.ErrNotFound)
}

func testConnectionList(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	for i, st := range []spotoken.State{spotoken.StateActive, spotoken.StateNeedsReauth, spotoken.StateActive, spotoken.StateRevoked, spotoken.StateActive} {
		h.newConn(t, "a", fmt.Sprintf("c%d", 5-i), func(c *spotoken.Connection) { c.State = st })
	}
	h.newConn(t, "b", "c0", nil)
	ids := func(f spotoken.ConnectionFilter) []string {
		t.Helper()
		cs, err := h.store.Connections(ctx, f)
		if err != nil {
			t.Fatalf("Connections(%+v): %v", f, err)
		}
		out := []string{}
		for _, c := range cs {
			if c.AppID != f.AppID {
				t.Errorf("Connections(%s) returned %s", f.AppID, c.Key())
			}
			out = append(out, c.ID)
		}
		return out
	}
	for _, tt := range []struct {
		f    spotoken.ConnectionFilter
		want []string
	}{
		{spotoken.ConnectionFilter{AppID: "a"}, []string{"c1", "c2", "c3", "c4", "c5"}},
		{spotoken.ConnectionFilter{AppID: "a", State: spotoken.StateActive}, []string{"c1", "c3", "c5"}},
		{spotoken.ConnectionFilter{AppID: "a", Limit: 2}, []string{"c1", "c2"}},
		{spotoken.ConnectionFilter{AppID: "a", After: "c2", Limit: 2}, []string{"c3", "c4"}},
		{spotoken.ConnectionFilter{AppID: "a", After: "c5"}, []string{}},
		{spotoken.ConnectionFilter{AppID: "b"}, []string{"c0"}},
		{spotoken.ConnectionFilter{AppID: "zzz"}, []string{}},
	} {
		if d := diff(ids(tt.f), tt.want); d != "" {
			t.Errorf("Connections(%+v) (-got +want):\n%s", tt.f, d)
		}
	}
}

// testConnectionCounts: CountConnections groups by app and state, in order,
// leaves out empty pairs and apps without connections, follows creates,
// updates and deletes, and opens no token.
func testConnectionCounts(t *testing.T, h *harness) {
	counts := func() []spotoken.ConnectionCount {
		t.Helper()
		got, err := h.store.CountConnections(ctx)
		if err != nil {
			t.Fatalf("CountConnections: %v", err)
		}
		if got == nil {
			got = []spotoken.ConnectionCount{}
		}
		return got
	}
	type cc = spotoken.ConnectionCount
	const (
		active  = spotoken.StateActive
		reauth  = spotoken.StateNeedsReauth
		revoked = spotoken.StateRevoked
	)
	if d := diff(counts(), []cc{}); d != "" {
		t.Errorf("CountConnections of an empty store (-got +want):\n%s", d)
	}
	// Created out of order, so that the order must come from the query.
	for _, id := range []string{"d", "b", "a", "c-empty"} {
		h.newApp(t, id)
	}
	for _, c := range []struct {
		app, id string
		state   spotoken.State
	}{
		{"d", "x", revoked}, {"a", "r1", revoked}, {"a", "n1", reauth}, {"a", "a1", active},
		{"b", "n1", reauth}, {"a", "r2", revoked}, {"d", "y", active}, {"a", "a2", active}, {"a", "r3", revoked},
	} {
		h.newConn(t, c.app, c.id, func(conn *spotoken.Connection) {
			conn.State = c.state
			if c.state == revoked {
				conn.Token = spotoken.Token{}
			}
		})
	}
	want := []cc{
		{AppID: "a", State: active, Count: 2}, {AppID: "a", State: reauth, Count: 1}, {AppID: "a", State: revoked, Count: 3},
		{AppID: "b", State: reauth, Count: 1},
		{AppID: "d", State: active, Count: 1}, {AppID: "d", State: revoked, Count: 1},
	}
	if d := diff(counts(), want); d != "" {
		t.Errorf("CountConnections (-got +want):\n%s", d)
	}

	// It reads no token: a connection whose sealed token cannot be opened
	// is counted all the same.
	h.backend.CorruptTokens(t, spotoken.ConnectionKey{AppID: "a", ID: "a1"})
	if _, err := h.store.Connection(ctx, spotoken.ConnectionKey{AppID: "a", ID: "a1"}); err == nil {
		t.Fatal("a corrupted token opened: the next check proves nothing")
	}
	if d := diff(counts(), want); d != "" {
		t.Errorf("CountConnections with a corrupted token (-got +want):\n%s", d)
	}

	// A state change moves a connection between counts; deleting the last
	// connection of a pair, or of an app, removes it.
	if _, err := h.store.UpdateConnection(ctx, spotoken.ConnectionKey{AppID: "a", ID: "a2"}, func(c *spotoken.Connection) ([]spotoken.Event, error) {
		c.State = reauth
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []spotoken.ConnectionKey{{AppID: "a", ID: "r1"}, {AppID: "b", ID: "n1"}, {AppID: "d", ID: "y"}} {
		if err := h.store.DeleteConnection(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	want = []cc{
		{AppID: "a", State: active, Count: 1}, {AppID: "a", State: reauth, Count: 2}, {AppID: "a", State: revoked, Count: 2},
		{AppID: "d", State: revoked, Count: 1},
	}
	if d := diff(counts(), want); d != "" {
		t.Errorf("CountConnections after an update and deletes (-got +want):\n%s", d)
	}
	if err := h.store.DeleteApp(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if d := diff(counts(), []cc{{AppID: "d", State: revoked, Count: 1}}); d != "" {
		t.Errorf("CountConnections after DeleteApp (-got +want):\n%s", d)
	}
}

// testConcurrentUpdates: 100 goroutines update one connection; no update is lost.
func testConcurrentUpdates(t *testing.T, h *harness) {
	h.newApp(t, "a")
	c := h.newConn(t, "a", "c1", nil)
	const writers = 100
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.store.UpdateConnection(ctx, c.Key(), func(c *spotoken.Connection) ([]spotoken.Event, error) {
				c.ConsecutiveFailures++
				c.Token.RefreshToken = spotoken.Secret(fmt.Sprintf("rotated-%d", i))
				return nil, nil
			})
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	got := h.get(t, c.Key())
	if got.ConsecutiveFailures != writers || got.Version != writers+1 {
		t.Errorf("after %d concurrent updates: failures %d, version %d; want %d, %d", writers, got.ConsecutiveFailures, got.Version, writers, writers+1)
	}
}

// testLeaseContention: 50 goroutines contend for one lease; at most one holds it at a time.
func testLeaseContention(t *testing.T, h *harness) {
	h.newApp(t, "a")
	c := h.newConn(t, "a", "c1", nil)
	const owners, rounds = 50, 10
	var holders, maxHolders, acquired atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < owners; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := fmt.Sprintf("replica-%d", i)
			for r := 0; r < rounds; r++ {
				lease, err := h.store.AcquireLease(ctx, c.Key(), owner, 30*time.Second)
				if errors.Is(err, spotoken.ErrLeaseHeld) {
					continue
				}
				if err != nil {
					t.Errorf("%s: AcquireLease: %v", owner, err)
					return
				}
				n := holders.Add(1)
				for m := maxHolders.Load(); n > m && !maxHolders.CompareAndSwap(m, n); m = maxHolders.Load() {
				}
				acquired.Add(1)
				if lease.Owner != owner {
					t.Errorf("%s got a lease owned by %q", owner, lease.Owner)
				}
				if _, err := h.store.UpdateConnection(ctx, c.Key(), func(c *spotoken.Connection) ([]spotoken.Event, error) {
					c.ConsecutiveFailures++
					return nil, nil
				}); err != nil {
					t.Errorf("%s: update under lease: %v", owner, err)
				}
				holders.Add(-1)
				if err := h.store.ReleaseLease(ctx, c.Key(), owner); err != nil {
					t.Errorf("%s: ReleaseLease: %v", owner, err)
				}
			}
		}()
	}
	wg.Wait()
	if maxHolders.Load() != 1 {
		t.Errorf("at most %d holders at once, want exactly 1", maxHolders.Load())
	}
	got := h.get(t, c.Key())
	if acquired.Load() == 0 || int32(got.ConsecutiveFailures) != acquired.Load() || got.Version != int64(acquired.Load())+1 {
		t.Errorf("%d acquisitions, %d updates, version %d: leases must not touch the version", acquired.Load(), got.ConsecutiveFailures, got.Version)
	}
	if got.Lease.Owner != "" {
		t.Errorf("lease still held by %q after every release", got.Lease.Owner)
	}
}

func testLeaseExpiry(t *testing.T, h *harness) {
	h.newApp(t, "a")
	c := h.newConn(t, "a", "c1", nil)
	key := c.Key()
	const ttl = 30 * time.Second
	l, err := h.store.AcquireLease(ctx, key, "A", ttl)
	if err != nil || l.Owner != "A" || !l.ExpiresAt.Equal(h.clock.Now().Add(ttl)) {
		t.Fatalf("AcquireLease A = %+v, %v", l, err)
	}
	if got := h.get(t, key); got.Lease.Owner != "A" || got.Version != 1 {
		t.Errorf("connection shows lease %+v, version %d", got.Lease, got.Version)
	}
	_, err = h.store.AcquireLease(ctx, key, "B", ttl)
	wantErr(t, "B while A holds", err, spotoken.ErrLeaseHeld)
	h.clock.Advance(10 * time.Second)
	if l, err := h.store.AcquireLease(ctx, key, "A", ttl); err != nil || !l.ExpiresAt.Equal(h.clock.Now().Add(ttl)) {
		t.Errorf("A re-acquires: %+v, %v", l, err)
	}
	h.clock.Advance(10 * time.Second)
	if l, err := h.store.RenewLease(ctx, key, "A", ttl); err != nil || !l.ExpiresAt.Equal(h.clock.Now().Add(ttl)) {
		t.Errorf("A renews: %+v, %v", l, err)
	}
	_, err = h.store.RenewLease(ctx, key, "B", ttl)
	wantErr(t, "B renews A's lease", err, spotoken.ErrLeaseLost)
	wantErr(t, "B releases A's lease", h.store.ReleaseLease(ctx, key, "B"), spotoken.ErrLeaseLost)

	h.clock.Advance(ttl) // A's lease has now expired
	_, err = h.store.RenewLease(ctx, key, "A", ttl)
	wantErr(t, "A renews an expired lease", err, spotoken.ErrLeaseLost)
	if l, err := h.store.AcquireLease(ctx, key, "B", ttl); err != nil || l.Owner != "B" {
		t.Fatalf("B after expiry: %+v, %v", l, err)
	}
	wantErr(t, "A releases B's lease", h.store.ReleaseLease(ctx, key, "A"), spotoken.ErrLeaseLost)
	if err := h.store.ReleaseLease(ctx, key, "B"); err != nil {
		t.Errorf("B releases: %v", err)
	}
	if l, err := h.store.AcquireLease(ctx, key, "A", ttl); err != nil || l.Owner != "A" {
		t.Errorf("A after B released: %+v, %v", l, err)
	}
	h.clock.Advance(ttl)
	wantErr(t, "A releases its own expired lease", h.store.ReleaseLease(ctx, key, "A"), spotoken.ErrLeaseLost)
	unknown := spotoken.ConnectionKey{AppID: "a", ID: "nope"}
	_, err = h.store.AcquireLease(ctx, unknown, "A", ttl)
	wantErr(t, "acquire on unknown connection", err, spotoken.ErrNotFound)
	_, err = h.store.RenewLease(ctx, unknown, "A", ttl)
	wantErr(t, "renew on unknown connection", err, spotoken.ErrNotFound)
	wantErr(t, "release on unknown connection", h.store.ReleaseLease(ctx, unknown, "A"), spotoken.ErrNotFound)
}

// testCommitReleasesLease: an UpdateConnection under ReleasingLease(owner)
// clears owner's lease in the same transaction (a refresh's commit), and
// only owner's: another owner's lease, or an aborted update, leaves the
// lease as it was.
func testCommitReleasesLease(t *testing.T, h *harness) {
	h.newApp(t, "a")
	key := h.newConn(t, "a", "c1", nil).Key()
	const ttl = 30 * time.Second
	if _, err := h.store.AcquireLease(ctx, key, "A", ttl); err != nil {
		t.Fatalf("AcquireLease A: %v", err)
	}
	tok := spotoken.Token{AccessToken: "at-2", RefreshToken: "rt-2", Expiry: h.clock.Now().Add(time.Hour)}
	setToken := func(c *spotoken.Connection) ([]spotoken.Event, error) {
		c.Token = tok
		return nil, nil
	}

	// Another owner's release leaves A's lease, and still updates.
	got, err := h.store.UpdateConnection(spotoken.ReleasingLease(ctx, "B"), key, setToken)
	if err != nil || got.Lease.Owner != "A" || got.Version != 2 {
		t.Fatalf("update releasing B's lease = %+v, %v; want A's lease kept, version 2", got, err)
	}
	if _, err := h.store.AcquireLease(ctx, key, "B", ttl); !errors.Is(err, spotoken.ErrLeaseHeld) {
		t.Fatalf("B takes the lease after an update releasing B's: %v, want ErrLeaseHeld", err)
	}

	// An update that fn aborts releases nothing.
	boom := errors.New("boom")
	if _, err := h.store.UpdateConnection(spotoken.ReleasingLease(ctx, "A"), key, func(*spotoken.Connection) ([]spotoken.Event, error) {
		return nil, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("aborted update = %v, want fn's error", err)
	}
	if got := h.get(t, key); got.Lease.Owner != "A" || got.Version != 2 {
		t.Fatalf("after an aborted update: lease %+v, version %d; want A's, 2", got.Lease, got.Version)
	}

	// A plain update keeps the lease.
	if got, err := h.store.UpdateConnection(ctx, key, setToken); err != nil || got.Lease.Owner != "A" {
		t.Fatalf("plain update = %+v, %v; want A's lease kept", got, err)
	}

	// The owner's commit releases it: the returned and the stored
	// connection have no lease, another owner takes it at once, and the
	// update itself is stored.
	tok = spotoken.Token{AccessToken: "at-3", RefreshToken: "rt-3", Expiry: h.clock.Now().Add(time.Hour)}
	got, err = h.store.UpdateConnection(spotoken.ReleasingLease(ctx, "A"), key, setToken)
	if err != nil || got.Lease != (spotoken.Lease{}) || got.Version != 4 || got.Token.RefreshToken != "rt-3" {
		t.Fatalf("commit releasing A's lease = %+v, %v; want no lease, version 4, the new token", got, err)
	}
	if stored := h.get(t, key); stored.Lease != (spotoken.Lease{}) || stored.Token.RefreshToken != "rt-3" || stored.Version != 4 {
		t.Fatalf("stored after the commit: lease %+v, version %d", stored.Lease, stored.Version)
	}
	wantErr(t, "A releases after its commit released", h.store.ReleaseLease(ctx, key, "A"), spotoken.ErrLeaseLost)
	if l, err := h.store.AcquireLease(ctx, key, "B", ttl); err != nil || l.Owner != "B" {
		t.Fatalf("B after A's commit: %+v, %v", l, err)
	}

	// The owner's expired lease is cleared too (nobody took it since).
	h.clock.Advance(2 * ttl)
	got, err = h.store.UpdateConnection(spotoken.ReleasingLease(ctx, "B"), key, setToken)
	if err != nil || got.Lease != (spotoken.Lease{}) {
		t.Fatalf("commit releasing B's expired lease = %+v, %v; want no lease", got, err)
	}
	if stored := h.get(t, key); stored.Lease != (spotoken.Lease{}) {
		t.Fatalf("stored after B's commit: lease %+v, want none", stored.Lease)
	}
}

func testDue(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	now := h.clock.Now()
	mk := func(app, id string, expiresIn time.Duration, mutate func(*spotoken.Connection)) {
		h.newConn(t, app, id, func(c *spotoken.Connection) {
			c.Token.Expiry = now.Add(expiresIn)
			if mutate != nil {
				mutate(c)
			}
		})
	}
	mk("a", "soon", time.Minute, nil)
	mk("b", "later", 3*time.Minute, nil)
	mk("a", "backoff", 2*time.Minute, func(c *spotoken.Connection) { c.NextAttemptAt = now.Add(time.Minute) })
	mk("a", "backoff-over", 4*time.Minute, func(c *spotoken.Connection) { c.NextAttemptAt = now.Add(-time.Minute) })
	mk("a", "reauth", time.Minute, func(c *spotoken.Connection) { c.State = spotoken.StateNeedsReauth })
	mk("a", "revoked", time.Minute, func(c *spotoken.Connection) { c.State, c.Token = spotoken.StateRevoked, spotoken.Token{} })
	mk("a", "far", 10*time.Minute, nil)
	mk("a", "expired", -time.Minute, nil)

	due := func(before time.Time, limit int) []string {
		t.Helper()
		ds, err := h.store.Due(ctx, before, limit)
		if err != nil {
			t.Fatalf("Due: %v", err)
		}
		out := []string{}
		for _, d := range ds {
			out = append(out, d.Key.String())
			if d.Version != 1 || d.Expiry.IsZero() {
				t.Errorf("Due entry %+v", d)
			}
		}
		return out
	}
	if d := diff(due(now.Add(5*time.Minute), 10), []string{"a/expired", "a/soon", "b/later", "a/backoff-over"}); d != "" {
		t.Errorf("Due (-got +want):\n%s", d)
	}
	if d := diff(due(now.Add(5*time.Minute), 2), []string{"a/expired", "a/soon"}); d != "" {
		t.Errorf("Due with limit (-got +want):\n%s", d)
	}
	if d := diff(due(now.Add(-2*time.Minute), 10), []string{}); d != "" {
		t.Errorf("Due before everything (-got +want):\n%s", d)
	}
	h.clock.Advance(90 * time.Second) // backoff over
	if d := diff(due(now.Add(150*time.Second), 10), []string{"a/expired", "a/soon", "a/backoff"}); d != "" {
		t.Errorf("Due after the backoff (-got +want):\n%s", d)
	}
}

func testExpiringGrants(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	now := h.clock.Now()
	day := 24 * time.Hour
	mk := func(app, id string, expiresIn time.Duration, mutate func(*spotoken.Connection)) {
		h.newConn(t, app, id, func(c *spotoken.Connection) {
			c.GrantExpiresAt = now.Add(expiresIn)
			if mutate != nil {
				mutate(c)
			}
		})
	}
	mk("a", "soon", 3*day, nil)
	mk("b", "later", 10*day, nil)
	mk("a", "warned", 2*day, func(c *spotoken.Connection) { c.ExpiryWarnedAt = now })
	mk("a", "reauth", day, func(c *spotoken.Connection) { c.State = spotoken.StateNeedsReauth })
	mk("a", "far", 100*day, nil)
	mk("a", "past", -day, nil)
	mk("a", "unknown", 0, func(c *spotoken.Connection) { c.GrantExpiresAt = time.Time{} })

	expiring := func(before time.Time, limit int) []string {
		t.Helper()
		ds, err := h.store.ExpiringGrants(ctx, before, limit)
		if err != nil {
			t.Fatalf("ExpiringGrants: %v", err)
		}
		out := []string{}
		for _, d := range ds {
			out = append(out, d.Key.String())
			c := h.get(t, d.Key)
			if d.Version != c.Version || !d.Expiry.Equal(c.GrantExpiresAt) {
				t.Errorf("ExpiringGrants entry %+v, connection has version %d, grant expiry %v", d, c.Version, c.GrantExpiresAt)
			}
		}
		return out
	}
	if d := diff(expiring(now.Add(14*day), 10), []string{"a/past", "a/soon", "b/later"}); d != "" {
		t.Errorf("ExpiringGrants (-got +want):\n%s", d)
	}
	if d := diff(expiring(now.Add(14*day), 1), []string{"a/past"}); d != "" {
		t.Errorf("ExpiringGrants with limit (-got +want):\n%s", d)
	}
	if d := diff(expiring(now.Add(14*day), 0), []string{}); d != "" {
		t.Errorf("ExpiringGrants with limit 0 (-got +want):\n%s", d)
	}
	// Marking one warned takes it out; clearing the mark (a new consent)
	// brings it back.
	key := spotoken.ConnectionKey{AppID: "a", ID: "soon"}
	warn := func(at time.Time) {
		t.Helper()
		if _, err := h.store.UpdateConnection(ctx, key, func(c *spotoken.Connection) ([]spotoken.Event, error) {
			c.ExpiryWarnedAt = at
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	warn(now)
	if got := h.get(t, key); !got.ExpiryWarnedAt.Equal(now) {
		t.Errorf("ExpiryWarnedAt after update = %v, want %v", got.ExpiryWarnedAt, now)
	}
	if d := diff(expiring(now.Add(14*day), 10), []string{"a/past", "b/later"}); d != "" {
		t.Errorf("ExpiringGrants after a warning (-got +want):\n%s", d)
	}
	warn(time.Time{})
	if d := diff(expiring(now.Add(14*day), 10), []string{"a/past", "a/soon", "b/later"}); d != "" {
		t.Errorf("ExpiringGrants after the warning was cleared (-got +want):\n%s", d)
	}

	count := func(before time.Time) []spotoken.ConnectionCount {
		t.Helper()
		n, err := h.store.CountExpiringGrants(ctx, before)
		if err != nil {
			t.Fatalf("CountExpiringGrants: %v", err)
		}
		if n == nil {
			n = []spotoken.ConnectionCount{}
		}
		return n
	}
	active := spotoken.StateActive
	// Warned grants count too; needs_reauth and unknown expiries do not.
	if d := diff(count(now.Add(7*day)), []spotoken.ConnectionCount{{AppID: "a", State: active, Count: 3}}); d != "" {
		t.Errorf("CountExpiringGrants within 7 days (-got +want):\n%s", d)
	}
	if d := diff(count(now.Add(30*day)), []spotoken.ConnectionCount{{AppID: "a", State: active, Count: 3}, {AppID: "b", State: active, Count: 1}}); d != "" {
		t.Errorf("CountExpiringGrants within 30 days (-got +want):\n%s", d)
	}
	if d := diff(count(now.Add(-2*day)), []spotoken.ConnectionCount{}); d != "" {
		t.Errorf("CountExpiringGrants before everything (-got +want):\n%s", d)
	}
}

func testDelete(t *testing.T, h *harness) {
	h.newApp(t, "a")
	c := h.newConn(t, "a", "c1", nil)
	ev := spotoken.Event{Type: spotoken.EventConnectionRevoked, AppID: "a", ConnectionID: "c1", Data: []byte(`{}`)}
	if err := h.store.DeleteConnection(ctx, c.Key(), ev); err != nil {
		t.Fatal(err)
	}
	_, err := h.store.Connection(ctx, c.Key())
	wantErr(t, "after delete", err, spotoken.ErrNotFound)
	wantErr(t, "delete twice", h.store.DeleteConnection(ctx, c.Key()), spotoken.ErrNotFound)
	if events, _ := h.store.PendingEvents(ctx, h.clock.Now(), 10); len(events) != 1 || events[0].Type != spotoken.EventConnectionRevoked {
		t.Errorf("events after delete: %v", events)
	}
	// The id can be used again, for a new grant.
	h.newConn(t, "a", "c1", nil)
}

func testEvents(t *testing.T, h *harness) {
	h.newApp(t, "a")
	now := h.clock.Now()
	var in []spotoken.Event
	for i := 0; i < 3; i++ {
		in = append(in, spotoken.Event{Type: spotoken.EventConnectionRefreshed, AppID: "a", ConnectionID: fmt.Sprint("c", i), Data: []byte(fmt.Sprintf(`{"n":%d}`, i))})
	}
	if err := h.store.AppendEvents(ctx, in...); err != nil {
		t.Fatal(err)
	}
	got, err := h.store.PendingEvents(ctx, now, 10)
	if err != nil || len(got) != 3 {
		t.Fatalf("PendingEvents = %v, %v", got, err)
	}
	for i, e := range got {
		if e.ConnectionID != in[i].ConnectionID || string(e.Data) != string(in[i].Data) || !e.CreatedAt.Equal(now) || e.Attempts != 0 ||
			(i > 0 && e.ID <= got[i-1].ID) {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	if two, _ := h.store.PendingEvents(ctx, now, 2); len(two) != 2 || two[0].ID != got[0].ID {
		t.Errorf("limit 2: %v", two)
	}
	if err := h.store.MarkEventFailed(ctx, got[0].ID, now.Add(time.Minute), "HTTP 500"); err != nil {
		t.Fatal(err)
	}
	if err := h.store.MarkEventDelivered(ctx, got[1].ID, now); err != nil {
		t.Fatal(err)
	}
	if left, _ := h.store.PendingEvents(ctx, now, 10); len(left) != 1 || left[0].ID != got[2].ID {
		t.Errorf("pending after one failure and one delivery: %v", left)
	}
	later, _ := h.store.PendingEvents(ctx, now.Add(time.Minute), 10)
	if len(later) != 2 || later[0].ID != got[0].ID || later[0].Attempts != 1 || later[0].LastError != "HTTP 500" {
		t.Errorf("pending a minute later: %+v", later)
	}
	wantErr(t, "deliver unknown", h.store.MarkEventDelivered(ctx, 987654, now), spotoken.ErrNotFound)
	wantErr(t, "fail unknown", h.store.MarkEventFailed(ctx, 987654, now, "x"), spotoken.ErrNotFound)
}

// readAll reads every sealed field of the fixtures used by testKeyRotation.
func readAll(store spotoken.Store, keys []spotoken.ConnectionKey) error {
	if _, err := store.App(ctx, "a"); err != nil {
		return err
	}
	for _, k := range keys {
		if _, err := store.Connection(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

func testKeyRotation(t *testing.T, h *harness) {
	h.newApp(t, "a")
	var keys []spotoken.ConnectionKey
	for i := 0; i < 7; i++ {
		keys = append(keys, h.newConn(t, "a", fmt.Sprint("c", i), nil).Key())
	}
	if err := h.store.CreatePending(ctx, &spotoken.PendingAuthorization{StateHash: sha256.Sum256([]byte("s")), AppID: "a",
		ConnectionID: "p", Verifier: marker("verifier", "rot"), ExpiresAt: h.clock.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	s12 := h.open(t, h.ring12) // v2 is primary now; v1 rows still readable
	if err := readAll(s12, keys); err != nil {
		t.Fatalf("old rows under the new ring: %v", err)
	}
	newer := &spotoken.Connection{AppID: "a", ID: "new", State: spotoken.StateActive,
		Token: spotoken.Token{AccessToken: "at-new", RefreshToken: "rt-new", Expiry: h.clock.Now().Add(time.Hour)}}
	if err := s12.CreateConnection(ctx, newer); err != nil {
		t.Fatal(err)
	}
	keys = append(keys, newer.Key())
	_, err := h.store.Connection(ctx, newer.Key())
	if !errors.Is(err, seal.ErrUnknownKeyVersion) || !strings.Contains(err.Error(), "key version 2") {
		t.Errorf("a v2 row under a v1-only ring: %v, want an unknown key version 2 error", err)
	}

	// Reseal while readers keep reading.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for i := 0; i < 4; i++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := readAll(s12, keys); err != nil {
					t.Errorf("read during reseal: %v", err)
					return
				}
			}
		}()
	}
	n, err := s12.Reseal(ctx, 3)
	close(stop)
	readers.Wait()
	if err != nil {
		t.Fatalf("Reseal: %v", err)
	}
	// 1 client secret + 1 webhook secret + 7×2 tokens + 1 verifier were under v1.
	if n != 17 {
		t.Errorf("Reseal re-sealed %d secrets, want 17", n)
	}
	if n, err := s12.Reseal(ctx, 3); n != 0 || err != nil {
		t.Errorf("second Reseal = %d, %v; want 0", n, err)
	}
	for _, k := range keys {
		c, err := s12.Connection(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if c.Version != 1 || !c.UpdatedAt.Equal(c.CreatedAt) {
			t.Errorf("%s after reseal: version %d, updated %v; Reseal must change neither", k, c.Version, c.UpdatedAt)
		}
	}
	s2 := h.open(t, h.ring2) // v1 is gone
	if err := readAll(s2, keys); err != nil {
		t.Errorf("after reseal, under a v2-only ring: %v", err)
	}
	if a, err := s2.App(ctx, "a"); err != nil || a.ClientSecret != marker("client-secret", "a") || a.WebhookSecret != marker("webhook-secret", "a") {
		t.Errorf("app after reseal, under a v2-only ring: %+v, %v", a, err)
	}
	if p, err := s2.ConsumePending(ctx, sha256.Sum256([]byte("s"))); err != nil || p.Verifier != marker("verifier", "rot") {
		t.Errorf("pending after reseal: %v", err)
	}
}

func testWrongKey(t *testing.T, h *harness) {
	h.newApp(t, "a")
	c := h.newConn(t, "a", "c1", nil)

	// Opening with another key under the same version fails at once, naming it.
	wrong := mustRing(t, []seal.Key{{Version: 1, Material: [32]byte{0xde, 0xad}}}, 1)
	if s, err := h.backend.Open(t, h.clock.Now, wrong); err == nil {
		s.Close()
		t.Error("a store opened with the wrong key")
	} else if !errors.Is(err, seal.ErrDecrypt) || !strings.Contains(err.Error(), "key version 1") {
		t.Errorf("wrong key: %v, want a decryption error naming key version 1", err)
	}

	// So does a ring that lacks a version the data was sealed with.
	if s, err := h.backend.Open(t, h.clock.Now, h.ring2); err == nil {
		s.Close()
		t.Error("a store opened without key version 1, which sealed its data")
	} else if !errors.Is(err, seal.ErrUnknownKeyVersion) || !strings.Contains(err.Error(), "key version 1") {
		t.Errorf("missing key: %v, want an unknown key version 1 error", err)
	}

	// Nothing was touched: the right key still reads everything.
	if got := h.get(t, c.Key()); got.Token != c.Token {
		t.Errorf("data changed after failed opens")
	}
	h.open(t, h.ring1).Close()
}

func testTampering(t *testing.T, h *harness) {
	h.newApp(t, "a")
	c1 := h.newConn(t, "a", "c1", nil)
	c2 := h.newConn(t, "a", "c2", nil)
	h.backend.CopyTokens(t, c1.Key(), c2.Key())
	_, err := h.store.Connection(ctx, c2.Key())
	if !errors.Is(err, seal.ErrDecrypt) || !strings.Contains(err.Error(), "a/c2") {
		t.Errorf("tokens moved from c1 to c2: %v, want a decryption error naming a/c2", err)
	}
	if got := h.get(t, c1.Key()); got.Token != c1.Token {
		t.Error("c1 changed")
	}
	h.backend.CorruptTokens(t, c1.Key())
	_, err = h.store.Connection(ctx, c1.Key())
	if !errors.Is(err, seal.ErrDecrypt) && !errors.Is(err, seal.ErrCorrupt) {
		t.Errorf("corrupted ciphertext: %v, want a decryption error", err)
	}
}

// testAppTampering: an app's sealed secrets are bound to their app and
// their column. A ciphertext copied from another app, or from the app's
// other secret column, or corrupted, fails to open with an error naming the
// app and the column; every other app still opens.
func testAppTampering(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	h.newApp(t, "c")
	corrupt := func(ct []byte) []byte {
		out := bytes.Clone(ct)
		out[len(out)-1] ^= 1 // a bit of the GCM tag
		return out
	}
	for _, tt := range []struct {
		name, column string  // b's column that is overwritten
		ct           []byte  // with this
		want         []error // and then fails with one of these
	}{
		{"client secret of another app", "client_secret", h.backend.AppCiphertext(t, "a", "client_secret"), []error{seal.ErrDecrypt}},
		{"webhook secret of another app", "webhook_secret", h.backend.AppCiphertext(t, "a", "webhook_secret"), []error{seal.ErrDecrypt}},
		{"client secret as webhook secret", "webhook_secret", h.backend.AppCiphertext(t, "b", "client_secret"), []error{seal.ErrDecrypt}},
		{"webhook secret as client secret", "client_secret", h.backend.AppCiphertext(t, "b", "webhook_secret"), []error{seal.ErrDecrypt}},
		{"corrupted client secret", "client_secret", corrupt(h.backend.AppCiphertext(t, "b", "client_secret")), []error{seal.ErrDecrypt, seal.ErrCorrupt}},
		{"corrupted webhook secret", "webhook_secret", corrupt(h.backend.AppCiphertext(t, "b", "webhook_secret")), []error{seal.ErrDecrypt, seal.ErrCorrupt}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.ct) == 0 {
				t.Fatal("no ciphertext to tamper with")
			}
			orig := h.backend.AppCiphertext(t, "b", tt.column)
			h.backend.SetAppCiphertext(t, "b", tt.column, tt.ct)
			check := func(what string, err error) {
				t.Helper()
				known := false
				for _, target := range tt.want {
					known = known || errors.Is(err, target)
				}
				if !known || !strings.Contains(err.Error(), "apps."+tt.column+" of b") {
					t.Errorf("%s: %v, want one of %v naming apps.%s of b", what, err, tt.want, tt.column)
				}
			}
			_, err := h.store.App(ctx, "b")
			check("App", err)
			_, err = h.store.Apps(ctx)
			check("Apps", err)
			_, err = h.store.UpdateApp(ctx, "b", func(a *spotoken.App) error { a.WebhookURL = "https://evil.example"; return nil })
			check("UpdateApp", err)
			for _, id := range []string{"a", "c"} {
				if got, err := h.store.App(ctx, id); err != nil || got.ClientSecret != marker("client-secret", id) ||
					got.WebhookSecret != marker("webhook-secret", id) {
					t.Errorf("app %s, untouched: %+v, %v", id, got, err)
				}
			}
			h.backend.SetAppCiphertext(t, "b", tt.column, orig)
			if got, err := h.store.App(ctx, "b"); err != nil || got.WebhookURL != "https://app.example/hooks" ||
				got.ClientSecret != marker("client-secret", "b") || got.WebhookSecret != marker("webhook-secret", "b") {
				t.Errorf("app b, restored: %+v, %v", got, err)
			}
		})
	}
}

func testNoPlaintext(t *testing.T, h *harness) {
	h.newApp(t, "plain-app")
	c := h.newConn(t, "plain-app", "c1", nil)
	// Audit rows first, as the server writes them: a vend's record holds the
	// access token's fingerprint, never the token; a change's record rides
	// in the change's transaction.
	vend := auditRecord(h.clock.Now(), "plain-app", "c1", 1)
	vend.Fingerprint = auditFingerprint(c.Token.AccessToken)
	if err := h.store.AppendAudit(ctx, vend); err != nil {
		t.Fatal(err)
	}
	auditCtx := spotoken.WithAudit(ctx, spotoken.AuditRecord{Action: spotoken.AuditReconsent, AppID: "plain-app", ConnectionID: "c1",
		ActorType: spotoken.ActorUser, Fingerprint: auditFingerprint(marker("refresh-rotated", "c1"))})
	if err := h.store.CreatePending(ctx, &spotoken.PendingAuthorization{StateHash: sha256.Sum256([]byte("st")), AppID: "plain-app",
		ConnectionID: "c2", Verifier: marker("verifier", "plain"), ExpiresAt: h.clock.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	rotated := spotoken.Token{AccessToken: marker("access-rotated", "c1"), RefreshToken: marker("refresh-rotated", "c1"), Expiry: h.clock.Now().Add(time.Hour)}
	if _, err := h.store.UpdateConnection(auditCtx, c.Key(), func(c *spotoken.Connection) ([]spotoken.Event, error) {
		c.Token = rotated
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	h.newApp(t, "plain-app-2")
	if _, err := h.store.UpdateApp(ctx, "plain-app-2", func(a *spotoken.App) error {
		a.WebhookSecret = marker("webhook-secret-rotated", "plain-app-2")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sessionSecrets := h.writeWebSessions(t)
	raw := h.backend.Dump(t)
	// The dump must really hold the data, or the search below proves nothing.
	for _, visible := range []string{"plain-app", "spotify-c1", "https://app.example/hooks", "key-plain", vend.Fingerprint, string(spotoken.AuditReconsent)} {
		if !bytes.Contains(raw, []byte(visible)) {
			t.Fatalf("the dump (%d bytes) lacks the non-secret %q: Dump does not read the data", len(raw), visible)
		}
	}
	for name, s := range map[string]spotoken.Secret{
		"client secret": marker("client-secret", "plain-app"), "verifier": marker("verifier", "plain"),
		"webhook secret": marker("webhook-secret", "plain-app"), "replaced webhook secret": marker("webhook-secret", "plain-app-2"),
		"rotated webhook secret": marker("webhook-secret-rotated", "plain-app-2"),
		"access token":           c.Token.AccessToken, "refresh token": c.Token.RefreshToken,
		"rotated access token": rotated.AccessToken, "rotated refresh token": rotated.RefreshToken,
	} {
		if bytes.Contains(raw, []byte(s.Reveal())) {
			t.Errorf("the %s is in the database in plaintext", name)
		}
	}
	for name, s := range sessionSecrets {
		if bytes.Contains(raw, []byte(s.Reveal())) {
			t.Errorf("the %s is in the database in plaintext", name)
		}
	}
}

// testDueUsed: MarkUsed keeps the latest use of each connection, creation
// counts as one, and DueUsed selects the due connections used within the
// window, from a cursor, in Due's order.
func testDueUsed(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	start := h.clock.Now()
	now := start.Add(3 * time.Hour) // the clock when the queries run
	mk := func(app, id string, expiresIn time.Duration, mutate func(*spotoken.Connection)) spotoken.ConnectionKey {
		return h.newConn(t, app, id, func(c *spotoken.Connection) {
			c.Token.Expiry = now.Add(expiresIn)
			if mutate != nil {
				mutate(c)
			}
		}).Key()
	}
	used := mk("a", "used", time.Minute, nil)
	usedB := mk("b", "used", 2*time.Minute, nil)
	mk("a", "idle", time.Minute, nil) // used only at its creation, 3h before the queries
	regress := mk("a", "regress", 3*time.Minute, nil)
	expired := mk("a", "expired-long-ago", -2*time.Hour, nil)
	backoff := mk("a", "backoff", time.Minute, func(c *spotoken.Connection) { c.NextAttemptAt = now.Add(time.Minute) })
	reauth := mk("a", "reauth", time.Minute, func(c *spotoken.Connection) { c.State = spotoken.StateNeedsReauth })
	far := mk("a", "far", time.Hour, nil)
	h.clock.Advance(3 * time.Hour)
	mk("a", "created", 4*time.Minute, nil) // created now: used now

	before := h.get(t, used)
	uses := []spotoken.ConnectionUse{
		{Key: used, At: now.Add(-30 * time.Minute)},
		{Key: usedB, At: now.Add(-10 * time.Minute)},
		{Key: regress, At: now.Add(-20 * time.Minute)},
		{Key: expired, At: now.Add(-5 * time.Minute)},
		{Key: backoff, At: now}, {Key: reauth, At: now}, {Key: far, At: now},
		{Key: spotoken.ConnectionKey{AppID: "a", ID: "ghost"}, At: now}, // skipped
	}
	if err := h.store.MarkUsed(ctx, uses); err != nil {
		t.Fatalf("MarkUsed: %v", err)
	}
	// An older use, and one repeated in a batch, never move a last use back.
	if err := h.store.MarkUsed(ctx, []spotoken.ConnectionUse{{Key: regress, At: now.Add(-5 * time.Hour)}, {Key: regress, At: now.Add(-6 * time.Hour)}}); err != nil {
		t.Fatalf("MarkUsed (older): %v", err)
	}
	if err := h.store.MarkUsed(ctx, nil); err != nil {
		t.Fatalf("MarkUsed(nil): %v", err)
	}
	after := h.get(t, used)
	if after.Version != before.Version || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("MarkUsed changed version %d→%d or updated_at %v→%v", before.Version, after.Version, before.UpdatedAt, after.UpdatedAt)
	}

	dueUsed := func(q spotoken.DueQuery) []string {
		t.Helper()
		ds, err := h.store.DueUsed(ctx, q)
		if err != nil {
			t.Fatalf("DueUsed(%+v): %v", q, err)
		}
		out := []string{}
		for _, d := range ds {
			out = append(out, d.Key.String())
			if d.Version != 1 || d.Expiry.IsZero() {
				t.Errorf("DueUsed entry %+v", d)
			}
		}
		// CountDue counts what DueUsed returns without a limit.
		if n, err := h.store.CountDue(ctx, q); err != nil {
			t.Fatalf("CountDue(%+v): %v", q, err)
		} else if len(ds) < q.Limit && n != len(ds) {
			t.Errorf("CountDue(%+v) = %d, DueUsed returned %d", q, n, len(ds))
		} else if len(ds) == q.Limit && n <= len(ds) && q.Limit == 1 {
			t.Errorf("CountDue(%+v) = %d, want more than the limit %d", q, n, q.Limit)
		}
		return out
	}
	window := now.Add(-time.Hour)
	q := spotoken.DueQuery{Before: now.Add(5 * time.Minute), UsedSince: window, Limit: 10}
	if d := diff(dueUsed(q), []string{"a/expired-long-ago", "a/used", "b/used", "a/regress", "a/created"}); d != "" {
		t.Errorf("DueUsed (-got +want):\n%s", d)
	}
	// The scheduler starts its cursor at the window's start: a token that
	// expired before then has not been vended since.
	q.After = spotoken.DueConnection{Expiry: window}
	if d := diff(dueUsed(q), []string{"a/used", "b/used", "a/regress", "a/created"}); d != "" {
		t.Errorf("DueUsed from the window's start (-got +want):\n%s", d)
	}
	q.Limit = 1
	if d := diff(dueUsed(q), []string{"a/used"}); d != "" {
		t.Errorf("DueUsed with limit (-got +want):\n%s", d)
	}
	q.Limit, q.After = 10, spotoken.DueConnection{Key: used, Expiry: now.Add(time.Minute)}
	if d := diff(dueUsed(q), []string{"b/used", "a/regress", "a/created"}); d != "" {
		t.Errorf("DueUsed after a cursor (-got +want):\n%s", d)
	}
	q.After = spotoken.DueConnection{}
	q.UsedSince = now.Add(-15 * time.Minute)
	if d := diff(dueUsed(q), []string{"a/expired-long-ago", "b/used", "a/created"}); d != "" {
		t.Errorf("DueUsed, a shorter window (-got +want):\n%s", d)
	}
	q.UsedSince = time.Time{}
	if d := diff(dueUsed(q), []string{"a/expired-long-ago", "a/idle", "a/used", "b/used", "a/regress", "a/created"}); d != "" {
		t.Errorf("DueUsed, used or not (-got +want):\n%s", d)
	}
	if d := diff(dueUsed(spotoken.DueQuery{Before: now.Add(5 * time.Minute)}), []string{}); d != "" {
		t.Errorf("DueUsed without a limit (-got +want):\n%s", d)
	}
}
