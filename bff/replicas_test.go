package bff_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/bff"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/internal/pgtest"
	"github.com/spotoken/spotoken/postgres"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
)

// TestReplicasOnPostgres: two replicas share one PostgreSQL database behind
// a load balancer that alternates between them. A sign-in started on one
// ends on the other (the callback finds the state, and the other replica's
// BFF starts the session); every call works on either; a sign-out on one
// ends the session on both; after an expiry, calls spread over both cost
// Spotify one refresh.
func TestReplicasOnPostgres(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "bff")
	emu, err := emulator.New(emulator.Config{
		Clients:     []emulator.Client{{ID: clientID, RedirectURIs: []string{"http://127.0.0.1/callback"}}},
		AutoApprove: "alice",
		Now:         func() time.Time { return time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{next: emu, grants: map[string]int{}}
	emuSrv := httptest.NewServer(rec)
	t.Cleanup(emuSrv.Close)
	ring, err := seal.GenerateKeyFile(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}

	var replicas [2]http.Handler
	var hits [2]atomic.Int64
	var next atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := next.Add(1) % 2
		hits[i].Add(1)
		replicas[i].ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	ctx := context.Background()
	var first *postgres.DB
	for i := range replicas {
		store, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Keys: ring, Now: emu.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		if first == nil {
			first = store
		}
		engine, err := refresh.New(refresh.Config{Store: store, Now: emu.Now, Logger: slog.New(slog.DiscardHandler),
			Refresher: &refresh.SpotifyRefresher{TokenURL: emuSrv.URL + "/api/token", Now: emu.Now}})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(server.Config{Store: store, Tokens: engine, PublicURL: front.URL,
			AccountsURL: emuSrv.URL, APIURL: emuSrv.URL, Now: emu.Now})
		if err != nil {
			t.Fatal(err)
		}
		b, err := bff.New(bff.Config{Store: store, Server: srv, Tokens: engine, PublicURL: front.URL, Now: emu.Now})
		if err != nil {
			t.Fatal(err)
		}
		srv.HandleLogins(bff.LoginKind, b)
		srv.MountPublic(b.Mount)
		replicas[i] = srv
	}
	const spa = "http://127.0.0.1:5173"
	if err := first.CreateApp(ctx, &spotoken.App{ID: appID, ClientID: clientID, RedirectURIs: []string{front.URL + "/callback"},
		DefaultScopes: appScopes}); err != nil {
		t.Fatal(err)
	}
	if err := first.PutBrowserApp(ctx, &spotoken.BrowserApp{AppID: appID, Origins: []string{spa}}); err != nil {
		t.Fatal(err)
	}

	h := &harness{t: t, ts: front}
	b := h.newBrowser(spa)
	// The sign-in: /login on one replica, /callback on the other (the
	// emulator's hops go elsewhere), and back to the SPA, which is not
	// served: stop there.
	b.c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Host == "127.0.0.1:5173" {
			return http.ErrUseLastResponse
		}
		return nil
	}
	before := [2]int64{hits[0].Load(), hits[1].Load()}
	resp, err := b.c.Get(front.URL + "/bff/demo/login?return_to=" + spa + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != spa+"/" {
		t.Fatalf("the sign-in ended with %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if hits[0].Load() == before[0] || hits[1].Load() == before[1] {
		t.Fatalf("the sign-in did not cross replicas: %v then %v", before, [2]int64{hits[0].Load(), hits[1].Load()})
	}
	for i := range 4 { // two calls on each replica
		if r := b.call(http.MethodGet, "/bff/demo/session", true, ""); r.Status != http.StatusOK {
			t.Fatalf("session call %d: %d %s", i, r.Status, r.Body)
		}
	}

	emu.Advance(2 * time.Hour)
	refreshes := rec.refreshes()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := b.call(http.MethodGet, "/bff/demo/api/v1/me", true, ""); r.Status != http.StatusOK {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of 20 calls after the expiry failed", failed.Load())
	}
	if n := rec.refreshes() - refreshes; n != 1 {
		t.Errorf("20 calls over two replicas after the expiry cost %d refreshes, want 1", n)
	}

	cookie := b.cookie()
	if r := b.call(http.MethodPost, "/bff/demo/logout", true, ""); r.Status != http.StatusNoContent {
		t.Fatalf("logout: %d", r.Status)
	}
	stale := h.newBrowser(spa)
	stale.setCookie(cookie)
	for i := range 2 {
		if r := stale.call(http.MethodGet, "/bff/demo/session", true, ""); r.Status != http.StatusUnauthorized {
			t.Errorf("the signed-out cookie, call %d: %d, want 401 on either replica", i, r.Status)
		}
	}
}
