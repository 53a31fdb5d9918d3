package storetest

import (
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
)

// testBrowserApps: an app's backend-for-frontend settings round-trip, are
// replaced whole (keeping CreatedAt), are refused when invalid or for an
// unknown app, are deleted, and go with their app.
func testBrowserApps(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	_, err := h.store.BrowserApp(ctx, "a")
	wantErr(t, "settings of an app with the BFF off", err, spotoken.ErrNotFound)
	wantErr(t, "delete settings never made", h.store.DeleteBrowserApp(ctx, "a"), spotoken.ErrNotFound)

	created := h.clock.Now()
	b := &spotoken.BrowserApp{AppID: "a", Origins: []string{"https://spa.example", "http://127.0.0.1:5173"},
		Scopes: spotoken.Scopes{"user-read-private", "streaming"}, TokenScopes: spotoken.Scopes{"streaming"}}
	if err := h.store.PutBrowserApp(ctx, b); err != nil {
		t.Fatal(err)
	}
	if !b.CreatedAt.Equal(created) || !b.UpdatedAt.Equal(created) {
		t.Errorf("PutBrowserApp set CreatedAt %v, UpdatedAt %v; want both %v", b.CreatedAt, b.UpdatedAt, created)
	}
	got, err := h.store.BrowserApp(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := &spotoken.BrowserApp{AppID: "a", Origins: []string{"https://spa.example", "http://127.0.0.1:5173"},
		Scopes: spotoken.Scopes{"streaming", "user-read-private"}, TokenScopes: spotoken.Scopes{"streaming"},
		CreatedAt: created, UpdatedAt: created}
	if d := diff(got, want); d != "" {
		t.Errorf("BrowserApp (-got +want):\n%s", d)
	}
	if !got.TokenMediating() || !got.AllowsOrigin("http://127.0.0.1:5173") || got.AllowsOrigin("http://127.0.0.1:5174") {
		t.Errorf("TokenMediating %v, AllowsOrigin(listed) %v, AllowsOrigin(other port) %v",
			got.TokenMediating(), got.AllowsOrigin("http://127.0.0.1:5173"), got.AllowsOrigin("http://127.0.0.1:5174"))
	}
	if _, err := h.store.BrowserApp(ctx, "b"); !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("another app's settings: %v, want not found", err)
	}

	// Replaced whole: the token-mediating mode off, one origin.
	h.clock.Advance(time.Minute)
	if err := h.store.PutBrowserApp(ctx, &spotoken.BrowserApp{AppID: "a", Origins: []string{"https://spa.example"}}); err != nil {
		t.Fatal(err)
	}
	got, err = h.store.BrowserApp(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	want = &spotoken.BrowserApp{AppID: "a", Origins: []string{"https://spa.example"}, CreatedAt: created, UpdatedAt: h.clock.Now()}
	if d := diff(got, want); d != "" {
		t.Errorf("BrowserApp after a replacement (-got +want):\n%s", d)
	}
	if got.TokenMediating() {
		t.Error("TokenMediating with no token scopes")
	}

	for _, bad := range []*spotoken.BrowserApp{
		{AppID: "a"},
		{AppID: "a", Origins: []string{"https://spa.example/path"}},
		{AppID: "a", Origins: []string{"HTTPS://SPA.example"}},
		{AppID: "a", Origins: []string{"https://spa.example:443"}},
		{AppID: "a", Origins: []string{"*"}},
	} {
		wantErr(t, "invalid settings "+bad.String(), h.store.PutBrowserApp(ctx, bad), &spotoken.Error{Code: spotoken.EInvalid})
	}
	wantErr(t, "settings of an unknown app", h.store.PutBrowserApp(ctx,
		&spotoken.BrowserApp{AppID: "nope", Origins: []string{"https://spa.example"}}), spotoken.ErrNotFound)
	if got, err := h.store.BrowserApp(ctx, "a"); err != nil || len(got.Origins) != 1 {
		t.Errorf("after refused puts: %v, %v; want the last good settings", got, err)
	}

	// Many writers at once: every put succeeds and one of them is kept whole.
	var wg sync.WaitGroup
	origins := []string{"https://one.example", "https://two.example", "https://three.example", "https://four.example"}
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := origins[i%len(origins)]
			if err := h.store.PutBrowserApp(ctx, &spotoken.BrowserApp{AppID: "b", Origins: []string{o}, TokenScopes: spotoken.Scopes{"streaming"}}); err != nil {
				t.Errorf("concurrent put: %v", err)
			}
		}()
	}
	wg.Wait()
	if got, err := h.store.BrowserApp(ctx, "b"); err != nil || len(got.Origins) != 1 || !got.TokenMediating() {
		t.Errorf("after concurrent puts: %+v, %v", got, err)
	}

	if err := h.store.DeleteBrowserApp(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	_, err = h.store.BrowserApp(ctx, "a")
	wantErr(t, "settings after delete", err, spotoken.ErrNotFound)

	if err := h.store.DeleteApp(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	_, err = h.store.BrowserApp(ctx, "b")
	wantErr(t, "settings of a deleted app", err, spotoken.ErrNotFound)
}

// testPendingLogin: a browser sign-in's kind round-trips with the pending
// authorization, and a connect link's is empty.
func testPendingLogin(t *testing.T, h *harness) {
	h.newApp(t, "a")
	now := h.clock.Now()
	login := &spotoken.PendingAuthorization{StateHash: sha256.Sum256([]byte("login")), AppID: "a", Login: "bff",
		Verifier: marker("verifier", "login"), Scopes: spotoken.Scopes{"user-read-private"},
		RedirectURI: "https://broker.example/callback", ReturnTo: "https://spa.example/", ExpiresAt: now.Add(time.Minute)}
	link := &spotoken.PendingAuthorization{StateHash: sha256.Sum256([]byte("link")), AppID: "a", ConnectionID: "c1",
		Verifier: marker("verifier", "link"), ExpiresAt: now.Add(time.Minute)}
	for _, p := range []*spotoken.PendingAuthorization{login, link} {
		if err := h.store.CreatePending(ctx, p); err != nil {
			t.Fatal(err)
		}
		got, err := h.store.ConsumePending(ctx, p.StateHash)
		if err != nil {
			t.Fatal(err)
		}
		want := *p
		want.CreatedAt, want.UsedAt = now, now
		if d := diff(got, &want); d != "" {
			t.Errorf("ConsumePending (-got +want):\n%s", d)
		}
	}

	// Browser sign-ins in progress do not count against the app's cap on
	// connect links: the BFF limits them itself.
	h.newApp(t, "b")
	for i := range 3 {
		if err := h.store.CreatePending(ctx, &spotoken.PendingAuthorization{StateHash: sha256.Sum256([]byte{'l', byte(i)}), AppID: "b",
			Login: "bff", ExpiresAt: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.store.CreatePendingWithin(ctx, &spotoken.PendingAuthorization{StateHash: sha256.Sum256([]byte("b-link")), AppID: "b",
		ConnectionID: "c1", ExpiresAt: now.Add(time.Minute)}, 1); err != nil {
		t.Errorf("a connect link with three sign-ins in progress and a cap of 1: %v", err)
	}
	wantErr(t, "a second connect link past the cap of 1", h.store.CreatePendingWithin(ctx, &spotoken.PendingAuthorization{
		StateHash: sha256.Sum256([]byte("b-link-2")), AppID: "b", ConnectionID: "c2", ExpiresAt: now.Add(time.Minute)}, 1), spotoken.ErrLimitExceeded)
}
