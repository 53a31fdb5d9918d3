package client_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/zmb3/spotify/v2"

	"github.com/spotoken/spotoken/client/clienttest"
	"github.com/spotoken/spotoken/emulator"
)

// eras runs fn against a broker whose clock Advance does not move (so
// tokens expire at Spotify only), once with today's 401 message and once
// with the ones of before 2026-07.
func eras(t *testing.T, fn func(t *testing.T, e *env, message string)) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy 401 %v", legacy), func(t *testing.T) {
			t.Parallel()
			e := newEnvWith(t, []clienttest.Option{clienttest.FrozenBroker(), clienttest.EmulatorConfig(func(c *emulator.Config) {
				c.Legacy401 = legacy
			})})
			message := "Missing/invalid/expired access token"
			if legacy {
				message = "The access token expired"
			}
			fn(t, e, message)
		})
	}
}

// TestSDKRejectedTokenEras: an SDK call made after the access token expired
// at Spotify (the emulator's clock moved, the broker's and the client's did
// not) succeeds after exactly one refresh, and so do 300 concurrent such
// calls, with one refresh among them; in both eras of Spotify's 401.
func TestSDKRejectedTokenEras(t *testing.T) {
	eras(t, func(t *testing.T, e *env, message string) {
		hc := e.c.HTTPClient(connID)
		if status, body := e.get(t, hc, "/v1/me"); status != http.StatusOK {
			t.Fatalf("GET /v1/me: %d %s", status, body)
		}
		for round, callers := range []int{1, 300} {
			before, before401 := e.b.Refreshes(), e.apiResponses("401")
			e.b.Advance(2 * time.Hour)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range callers {
				wg.Go(func() {
					<-start
					if status, body := e.get(t, hc, "/v1/me"); status != http.StatusOK {
						t.Errorf("round %d, caller %d: %d %s", round, i, status, body)
					}
				})
			}
			close(start)
			wg.Wait()
			if got := e.b.Refreshes() - before; got != 1 {
				t.Errorf("round %d, %d callers: %d refreshes, want exactly 1", round, callers, got)
			}
			if got := e.apiResponses("401") - before401; got < 1 || got > int64(callers) {
				t.Errorf("round %d: %d 401s at the emulator", round, got)
			}
		}
	})
}

// TestZmb3RejectedTokenEras: github.com/zmb3/spotify/v2, unmodified, through
// the SDK's HTTP client, across tokens that expired at Spotify only: one
// refresh each, in both eras.
func TestZmb3RejectedTokenEras(t *testing.T) {
	eras(t, func(t *testing.T, e *env, message string) {
		ctx := context.Background()
		sp := spotify.New(e.c.HTTPClient(connID), spotify.WithBaseURL(e.b.EmulatorURL+"/v1/"))
		for i := range 3 {
			before := e.b.Refreshes()
			if i > 0 {
				e.b.Advance(2 * time.Hour)
			}
			u, err := sp.CurrentUser(ctx)
			if err != nil || u.ID != clienttest.User {
				t.Fatalf("expiry %d: CurrentUser: %v, %v", i, u, err)
			}
			if want := int64(min(i, 1)); e.b.Refreshes()-before != want {
				t.Errorf("expiry %d: %d refreshes, want %d", i, e.b.Refreshes()-before, want)
			}
		}
		// The 401 zmb3 would have seen is this era's.
		_, err := spotify.New(http.DefaultClient, spotify.WithBaseURL(e.b.EmulatorURL+"/v1/")).CurrentUser(ctx)
		want := message
		if message != "Missing/invalid/expired access token" {
			want = "No token provided" // the legacy message for no token at all
		}
		if se, ok := err.(spotify.Error); !ok || se.Status != 401 || se.Message != want {
			t.Errorf("without a token: %v, want 401 %q", err, want)
		}
	})
}
