package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/server"
)

// TestRateLimitWindowInCLI: while an app's rate-limit window at Spotify
// lasts, 'connections get', 'connections list' and 'apps list' show when it
// ends; other apps show none.
func TestRateLimitWindowInCLI(t *testing.T) {
	e := newAdminEnv(t, "sqlite")
	e.createApp("app")
	e.createApp("other")
	store := e.open()
	seedConnections(t, store, "app", map[string]spotoken.State{"c1": spotoken.StateActive})
	seedConnections(t, store, "other", map[string]spotoken.State{"c2": spotoken.StateActive})
	until := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	if _, err := store.ExtendRateLimit(context.Background(), "app", until); err != nil {
		t.Fatal(err)
	}

	var one server.ConnectionView
	e.okJSON(&one, "", "connections", "get", "--app", "app", "c1")
	var list server.ConnectionList
	e.okJSON(&list, "", "connections", "list", "--app", "app")
	var other server.ConnectionView
	e.okJSON(&other, "", "connections", "get", "--app", "other", "c2")
	var apps []appView
	e.okJSON(&apps, "", "apps", "list")
	for what, got := range map[string]*time.Time{"connections get": one.RateLimitedUntil, "connections list": list.Connections[0].RateLimitedUntil, "apps list": apps[0].RateLimitedUntil} {
		if got == nil || !got.Equal(until) {
			t.Errorf("%s: rate_limited_until %v, want %v", what, got, until)
		}
	}
	if other.RateLimitedUntil != nil || apps[1].RateLimitedUntil != nil {
		t.Errorf("app other shows a window: %v, %v", other.RateLimitedUntil, apps[1].RateLimitedUntil)
	}

	text, _ := e.ok("", "connections", "get", "--app", "app", "c1")
	if line := lineWith(text, "rate limited until"); !strings.Contains(line, until.Format(time.RFC3339)) {
		t.Errorf("connections get: %q, want the window's end", line)
	}
	for _, args := range [][]string{{"apps", "list"}, {"connections", "list", "--app", "app"}} {
		_, stderr := e.ok("", args...)
		if !strings.Contains(stderr, "rate-limiting app app's token requests until "+until.Format(time.RFC3339)) {
			t.Errorf("%s: stderr %q does not say it", strings.Join(args, " "), stderr)
		}
	}
}
