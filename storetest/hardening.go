package storetest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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

// testPendingCap: CreatePendingWithin counts an app's pending
// authorizations neither used nor expired and its live pending grants,
// not another app's; refuses past the cap, storing nothing; lets another
// app go on while one is at its cap; and holds the cap exactly with many
// callers on two store handles (two replicas) at once.
func testPendingCap(t *testing.T, h *harness) {
	for _, app := range []string{"a", "b", "c", "d"} {
		h.newApp(t, app)
	}
	now := h.clock.Now()
	pending := func(app, state string, ttl time.Duration, confirm bool) *spotoken.PendingAuthorization {
		return &spotoken.PendingAuthorization{StateHash: sha256.Sum256([]byte(state)), AppID: app, ConnectionID: "c",
			ExpiresAt: now.Add(ttl), RequireConfirmation: confirm, SkipDialog: !confirm, ReturnTo: "https://app.example/done"}
	}
	create := func(store spotoken.Store, p *spotoken.PendingAuthorization, max int) error {
		return store.CreatePendingWithin(ctx, p, max)
	}
	const max = 3
	for _, p := range []*spotoken.PendingAuthorization{pending("a", "s1", time.Hour, true), pending("a", "s2", time.Hour, false), pending("a", "s3", time.Minute, false)} {
		if err := create(h.store, p, max); err != nil {
			t.Fatalf("create %x within the cap: %v", p.StateHash[:4], err)
		}
		if !p.CreatedAt.Equal(now) {
			t.Errorf("CreatedAt %s, want the store's clock", p.CreatedAt)
		}
	}
	p, err := h.store.ConsumePending(ctx, sha256.Sum256([]byte("s1")))
	if err != nil {
		t.Fatal(err)
	}
	if !p.RequireConfirmation || p.SkipDialog || p.ReturnTo != "https://app.example/done" {
		t.Errorf("consumed %+v, want RequireConfirmation and not SkipDialog kept", p)
	}
	// s1 used: two live; a grant awaiting confirmation makes three.
	if err := h.store.CreatePendingGrant(ctx, &spotoken.PendingGrant{CodeHash: sha256.Sum256([]byte("g1")), AppID: "a", ConnectionID: "c",
		ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	over := pending("a", "s4", time.Hour, false)
	wantErr(t, "a fourth for a, at its cap", create(h.store, over, max), spotoken.ErrLimitExceeded)
	_, err = h.store.ConsumePending(ctx, over.StateHash)
	wantErr(t, "the refused one", err, spotoken.ErrNotFound)

	// Another app is not held back by a's cap, nor a by b's.
	for i := range max {
		if err := create(h.store, pending("b", fmt.Sprint("b", i), time.Hour, false), max); err != nil {
			t.Fatalf("b's %d while a is at its cap: %v", i, err)
		}
	}
	wantErr(t, "b past its cap", create(h.store, pending("b", "b-over", time.Hour, false), max), spotoken.ErrLimitExceeded)
	wantErr(t, "a still at its cap", create(h.store, pending("a", "s5", time.Hour, false), max), spotoken.ErrLimitExceeded)

	// Expired ones free their place.
	h.clock.Advance(2 * time.Minute)
	if err := create(h.store, pending("a", "s6", time.Hour, false), max); err != nil {
		t.Errorf("after s3 expired: %v", err)
	}
	if err := create(h.store, pending("a", "s7", time.Hour, false), 0); spotoken.ErrorCode(err) != spotoken.EInvalid {
		t.Errorf("a cap of 0: %v, want invalid_request", err)
	}

	// Many at once, on two replicas: exactly the cap gets through, while
	// another app's creations all go on.
	stores := []spotoken.Store{h.store, h.open(t, h.ring1)}
	const callers, capC = 64, 10
	var ok, limited atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			err := create(stores[i%2], pending("c", fmt.Sprint("c", i), time.Hour, false), capC)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, spotoken.ErrLimitExceeded):
				limited.Add(1)
			default:
				t.Errorf("concurrent create: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			if err := create(stores[(i+1)%2], pending("d", fmt.Sprint("d", i), time.Hour, false), callers); err != nil {
				t.Errorf("d's create while c is full: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != capC || limited.Load() != callers-capC {
		t.Errorf("%d concurrent creates with a cap of %d: %d stored, %d refused; want exactly the cap stored", callers, capC, ok.Load(), limited.Load())
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
