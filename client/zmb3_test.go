package client_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/zmb3/spotify/v2"

	"github.com/spotoken/spotoken/client"
	"github.com/spotoken/spotoken/client/clienttest"
	"github.com/spotoken/spotoken/emulator"
)

// TestZmb3Acceptance drives github.com/zmb3/spotify/v2, unmodified, through
// client.HTTPClient against the broker and the emulator, with the refresh
// token rotated on every refresh: across forced expiries, a 401 for a token
// that Spotify calls expired, and a 429.
func TestZmb3Acceptance(t *testing.T) {
	e := newEnvWith(t, []clienttest.Option{clienttest.EmulatorConfig(func(c *emulator.Config) {
		c.Rotation = emulator.Rotation{Mode: emulator.RotateAlways}
	})})
	ctx := context.Background()
	sp := spotify.New(e.c.HTTPClient(connID), spotify.WithBaseURL(e.b.EmulatorURL+"/v1/"))

	me := func(step string) {
		t.Helper()
		u, err := sp.CurrentUser(ctx)
		if err != nil {
			t.Fatalf("%s: CurrentUser: %v", step, err)
		}
		if u.ID != clienttest.User {
			t.Fatalf("%s: CurrentUser is %q, want %q", step, u.ID, clienttest.User)
		}
	}
	me("first call")
	me("cached token")
	if n, r := e.calls.N(), e.b.Refreshes(); n != 1 || r != 0 {
		t.Fatalf("after two calls: broker calls %d, refreshes %d; want 1 and 0", n, r)
	}

	// Each expiry makes the broker refresh, and Spotify rotate the refresh
	// token; the old one dies at once, so a lost rotation would fail the
	// next refresh with invalid_grant.
	for i := 1; i <= 3; i++ {
		e.b.Advance(2 * time.Hour)
		me("after an expiry")
		if r := e.b.Refreshes(); r != int64(i) {
			t.Fatalf("expiry %d: refreshes = %d, want %d", i, r, i)
		}
	}
	if got := e.b.Engine.Stats().Rotations; got != 3 {
		t.Errorf("rotations = %d, want 3", got)
	}

	// Spotify says the token expired: one forced refresh, one retry.
	e.faults(t, emulator.Faults{APIStatus: http.StatusUnauthorized, APIMessage: "The access token expired", Count: 1})
	me("after a 401")
	if got := forceRefreshes(e.calls.Calls()); got != 1 {
		t.Errorf("force_refresh calls = %d, want 1", got)
	}
	if r := e.b.Refreshes(); r != 4 {
		t.Errorf("refreshes = %d, want 4", r)
	}

	// A 429 with Retry-After: 0 is waited out by the transport (zmb3's own
	// retry is off by default).
	e.faults(t, emulator.Faults{APIStatus: http.StatusTooManyRequests, RetryAfter: intp(0), Count: 1})
	me("after a 429")

	if got := e.b.Emulator.Stats().TokenErrors["invalid_grant"]; got != 0 {
		t.Errorf("invalid_grant answers = %d, want 0", got)
	}
	// The first call, one per expiry, the forced refresh; none for the 429.
	if got := e.calls.N(); got != 5 {
		t.Errorf("broker calls = %d, want 5", got)
	}
}

// TestZmb3Player reads what is playing through zmb3's player calls, which
// use its other request path (execute, with 204 as success).
func TestZmb3Player(t *testing.T) {
	e := newEnv(t, client.WithExpiryMargin(5*time.Minute))
	ctx := context.Background()
	sp := spotify.New(e.c.HTTPClient(connID), spotify.WithBaseURL(e.b.EmulatorURL+"/v1/"))
	cp, err := sp.PlayerCurrentlyPlaying(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Playing || cp.Item != nil {
		t.Fatalf("before play: playing %t, item %v", cp.Playing, cp.Item)
	}
	if err := sp.Play(ctx); err != nil {
		t.Fatal(err)
	}
	cp, err = sp.PlayerCurrentlyPlaying(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !cp.Playing || cp.Item == nil || cp.Item.Name == "" {
		t.Fatalf("after play: playing %t, item %v", cp.Playing, cp.Item)
	}
	if got := e.calls.Calls(); len(got) != 1 || got[0].Body["min_ttl"] != 300.0 {
		t.Errorf("broker calls %+v, want one with min_ttl 300", got)
	}
}
