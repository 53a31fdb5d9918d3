package storetest

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
)

// testPendingGrants: a grant waiting for its app's confirmation is taken
// once, only for its own connection, not after it expired, is erased by
// DeleteExpiredPendingGrants, is sealed at rest and survives a reseal.
func testPendingGrants(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	now := h.clock.Now()
	grant := func(code, app, conn string, ttl time.Duration) *spotoken.PendingGrant {
		t.Helper()
		g := &spotoken.PendingGrant{CodeHash: sha256.Sum256([]byte(code)), AppID: app, ConnectionID: conn,
			SpotifyUserID: "spotify-" + conn, DisplayName: "User " + conn, Scopes: spotoken.Scopes{"user-read-email"},
			Token:     spotoken.Token{AccessToken: marker("pg-access", code), RefreshToken: marker("pg-refresh", code), Expiry: now.Add(time.Hour)},
			ExpiresAt: now.Add(ttl)}
		if err := h.store.CreatePendingGrant(ctx, g); err != nil {
			t.Fatalf("CreatePendingGrant(%s): %v", code, err)
		}
		return g
	}
	g1 := grant("code-1", "a", "c1", 10*time.Minute)
	if !g1.CreatedAt.Equal(now) {
		t.Errorf("CreatedAt %s, want the store's clock %s", g1.CreatedAt, now)
	}
	wantErr(t, "the same code again", h.store.CreatePendingGrant(ctx, &spotoken.PendingGrant{CodeHash: g1.CodeHash, AppID: "a", ConnectionID: "c9", ExpiresAt: now.Add(time.Minute)}), spotoken.ErrConflict)
	wantErr(t, "an unknown app", h.store.CreatePendingGrant(ctx, &spotoken.PendingGrant{CodeHash: sha256.Sum256([]byte("x")), AppID: "nope", ConnectionID: "c9", ExpiresAt: now.Add(time.Minute)}), spotoken.ErrNotFound)
	if err := h.store.CreatePendingGrant(ctx, &spotoken.PendingGrant{CodeHash: sha256.Sum256([]byte("y")), AppID: "a", ConnectionID: "c9"}); spotoken.ErrorCode(err) != spotoken.EInvalid {
		t.Errorf("no expiry: %v, want invalid_request", err)
	}

	// Another connection's, or another app's, key does not take it, and
	// leaves it in place.
	_, err := h.store.TakePendingGrant(ctx, spotoken.ConnectionKey{AppID: "a", ID: "c2"}, g1.CodeHash)
	wantErr(t, "take with another connection", err, spotoken.ErrNotFound)
	_, err = h.store.TakePendingGrant(ctx, spotoken.ConnectionKey{AppID: "b", ID: "c1"}, g1.CodeHash)
	wantErr(t, "take with another app", err, spotoken.ErrNotFound)
	n, err := h.store.CountPending(ctx, "a", now)
	if err != nil || n != 1 {
		t.Errorf("CountPending(a) = %d, %v; want 1", n, err)
	}
	got, err := h.store.TakePendingGrant(ctx, g1.Key(), g1.CodeHash)
	if err != nil {
		t.Fatalf("take: %v", err)
	}
	want := *g1
	if d := diff(got, &want); d != "" {
		t.Errorf("taken grant (-got +want):\n%s", d)
	}
	_, err = h.store.TakePendingGrant(ctx, g1.Key(), g1.CodeHash)
	wantErr(t, "take twice", err, spotoken.ErrNotFound)

	// Expired: not taken, erased all the same.
	g2 := grant("code-2", "a", "c2", time.Minute)
	h.clock.Advance(time.Minute)
	_, err = h.store.TakePendingGrant(ctx, g2.Key(), g2.CodeHash)
	wantErr(t, "take an expired grant", err, spotoken.ErrExpired)
	_, err = h.store.TakePendingGrant(ctx, g2.Key(), g2.CodeHash)
	wantErr(t, "take an expired grant again", err, spotoken.ErrNotFound)

	// The janitor erases what expired.
	now = h.clock.Now()
	grant("code-3", "a", "c3", time.Minute)
	g4 := grant("code-4", "a", "c4", time.Hour)
	h.clock.Advance(2 * time.Minute)
	if n, err := h.store.DeleteExpiredPendingGrants(ctx, h.clock.Now()); err != nil || n != 1 {
		t.Errorf("DeleteExpiredPendingGrants = %d, %v; want 1", n, err)
	}

	// Sealed at rest; readable after a key rotation and reseal.
	raw := h.backend.Dump(t)
	for _, s := range []spotoken.Secret{g4.Token.AccessToken, g4.Token.RefreshToken} {
		if containsSecret(raw, s) {
			t.Errorf("a pending grant's token is in the database in plaintext")
		}
	}
	s12 := h.open(t, h.ring12)
	if _, err := s12.Reseal(ctx, 1); err != nil {
		t.Fatalf("reseal: %v", err)
	}
	s2 := h.open(t, h.ring2)
	got, err = s2.TakePendingGrant(ctx, g4.Key(), g4.CodeHash)
	if err != nil || got.Token.RefreshToken != g4.Token.RefreshToken {
		t.Errorf("take after reseal under the new key alone: %v", err)
	}
}

// testCountPending: the per-app count of live pending authorizations and
// grants leaves out used, expired and other apps' ones.
func testCountPending(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	now := h.clock.Now()
	add := func(app, state string, ttl time.Duration, confirm bool) [32]byte {
		t.Helper()
		hash := sha256.Sum256([]byte(state))
		if err := h.store.CreatePending(ctx, &spotoken.PendingAuthorization{StateHash: hash, AppID: app, ConnectionID: "c",
			ExpiresAt: now.Add(ttl), RequireConfirmation: confirm, SkipDialog: !confirm, ReturnTo: "https://app.example/done"}); err != nil {
			t.Fatal(err)
		}
		return hash
	}
	used := add("a", "s1", time.Hour, true)
	add("a", "s2", time.Hour, false)
	add("a", "s3", time.Minute, false)
	add("b", "s4", time.Hour, false)
	p, err := h.store.ConsumePending(ctx, used)
	if err != nil {
		t.Fatal(err)
	}
	if !p.RequireConfirmation || p.SkipDialog || p.ReturnTo != "https://app.example/done" {
		t.Errorf("consumed %+v, want RequireConfirmation and not SkipDialog kept", p)
	}
	if n, err := h.store.CountPending(ctx, "a", now); err != nil || n != 2 {
		t.Errorf("CountPending(a) = %d, %v; want 2 (one used)", n, err)
	}
	if n, err := h.store.CountPending(ctx, "a", now.Add(2*time.Minute)); err != nil || n != 1 {
		t.Errorf("CountPending(a) later = %d, %v; want 1 (one expired)", n, err)
	}
	if n, err := h.store.CountPending(ctx, "nope", now); err != nil || n != 0 {
		t.Errorf("CountPending(nope) = %d, %v; want 0", n, err)
	}
}

// testRefreshUnknown: a connection keeps when a refresh's outcome became
// unknown, and an update can clear it.
func testRefreshUnknown(t *testing.T, h *harness) {
	h.newApp(t, "a")
	at := h.clock.Now().Add(-time.Minute)
	c := h.newConn(t, "a", "c1", func(c *spotoken.Connection) { c.RefreshUnknownAt = at })
	if got := h.get(t, c.Key()); !got.RefreshUnknownAt.Equal(at) {
		t.Errorf("RefreshUnknownAt after create %s, want %s", got.RefreshUnknownAt, at)
	}
	later := at.Add(30 * time.Second)
	if _, err := h.store.UpdateConnection(ctx, c.Key(), func(c *spotoken.Connection) ([]spotoken.Event, error) {
		c.RefreshUnknownAt = later
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := h.get(t, c.Key()); !got.RefreshUnknownAt.Equal(later) {
		t.Errorf("RefreshUnknownAt after update %s, want %s", got.RefreshUnknownAt, later)
	}
	if _, err := h.store.UpdateConnection(ctx, c.Key(), func(c *spotoken.Connection) ([]spotoken.Event, error) {
		c.RefreshUnknownAt = time.Time{}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := h.get(t, c.Key()); !got.RefreshUnknownAt.IsZero() {
		t.Errorf("RefreshUnknownAt after clearing %s, want zero", got.RefreshUnknownAt)
	}
}

func containsSecret(raw []byte, s spotoken.Secret) bool {
	return len(s) > 0 && bytes.Contains(raw, []byte(s.Reveal()))
}
