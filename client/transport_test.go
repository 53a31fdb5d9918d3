package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken/client"
	"github.com/spotoken/spotoken/emulator"
)

func TestTransportSetsBearer(t *testing.T) {
	e := newEnv(t)
	tok, err := e.c.TokenSource(connID).Token()
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen = append(seen, r.Header.Get("Authorization"))
		return http.DefaultTransport.RoundTrip(r)
	})
	hc := &http.Client{Transport: e.c.Transport(connID, base)}
	req, _ := http.NewRequest(http.MethodGet, e.b.EmulatorURL+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer caller's own")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(seen) != 1 || seen[0] != "Bearer "+tok.AccessToken {
		t.Errorf("status %d; Authorization sent: %d headers, want the access token's", resp.StatusCode, len(seen))
	}
	if req.Header.Get("Authorization") != "Bearer caller's own" {
		t.Error("the transport changed the caller's request")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestTransportRetries401 covers Spotify's 401s: every one, in either era's
// wording or one nobody has seen yet, gets a forced refresh and one retry,
// except Permissions missing, which a new token does not cure.
func TestTransportRetries401(t *testing.T) {
	tests := []struct {
		name        string
		message     string
		count       int
		wantStatus  int
		wantForced  int
		wantAPI401s int64
	}{
		{"2026", "Missing/invalid/expired access token", 1, http.StatusOK, 1, 1},
		{"legacy expired", "The access token expired", 1, http.StatusOK, 1, 1},
		{"legacy invalid", "Invalid access token", 1, http.StatusOK, 1, 1},
		{"legacy no token provided", "No token provided", 1, http.StatusOK, 1, 1},
		{"a wording not seen yet", "Token not accepted", 1, http.StatusOK, 1, 1},
		{"permissions missing", "Permissions missing", 1, http.StatusUnauthorized, 0, 1},
		{"refused twice", "Missing/invalid/expired access token", 2, http.StatusUnauthorized, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.faults(t, emulator.Faults{APIStatus: http.StatusUnauthorized, APIMessage: tt.message, Count: tt.count})
			status, body := e.get(t, e.c.HTTPClient(connID), "/v1/me")
			if status != tt.wantStatus {
				t.Fatalf("GET /v1/me: %d %s, want %d", status, body, tt.wantStatus)
			}
			if status == http.StatusUnauthorized && !strings.Contains(body, tt.message) {
				t.Errorf("Spotify's 401 body was not passed on: %s", body)
			}
			calls := e.calls.Calls()
			if got := forceRefreshes(calls); got != tt.wantForced || len(calls) != 1+tt.wantForced {
				t.Errorf("broker calls %d, force_refresh %d; want %d and %d", len(calls), got, 1+tt.wantForced, tt.wantForced)
			}
			if got := e.apiResponses("401"); got != tt.wantAPI401s {
				t.Errorf("401s at the emulator = %d, want %d", got, tt.wantAPI401s)
			}
		})
	}
}

// TestTransportRetriesRealExpiry lets the token really expire at Spotify
// while the client's clock says it is fresh (clock skew): Spotify's 401
// leads to a refresh through the broker.
func TestTransportRetriesRealExpiry(t *testing.T) {
	e := newEnv(t)
	frozen := e.b.Now()
	c, err := client.New(e.b.URL, e.b.APIKey, client.WithClock(func() time.Time { return frozen }),
		client.WithHTTPClient(&http.Client{Transport: e.calls}))
	if err != nil {
		t.Fatal(err)
	}
	hc := c.HTTPClient(connID)
	if status, body := e.get(t, hc, "/v1/me"); status != http.StatusOK {
		t.Fatalf("GET /v1/me: %d %s", status, body)
	}
	e.b.Advance(2 * time.Hour)
	if status, body := e.get(t, hc, "/v1/me"); status != http.StatusOK {
		t.Fatalf("GET /v1/me after the token expired: %d %s", status, body)
	}
	if got := e.apiResponses("401"); got != 1 {
		t.Errorf("401s at the emulator = %d, want 1", got)
	}
	if calls := e.calls.Calls(); len(calls) != 2 || forceRefreshes(calls) != 1 {
		t.Errorf("broker calls %+v, want one plain and one force_refresh", calls)
	}
	if got := e.b.Refreshes(); got != 1 {
		t.Errorf("refreshes = %d, want 1", got)
	}
}

func TestTransportReplaysBody(t *testing.T) {
	e := newEnv(t)
	e.b.Connect(t, "maker", "playlist-modify-public")
	hc := e.c.HTTPClient("maker")
	e.faults(t, emulator.Faults{APIStatus: http.StatusUnauthorized, APIMessage: "The access token expired", Count: 1})

	// http.NewRequest sets GetBody for a *bytes.Reader: replayed.
	req, _ := http.NewRequest(http.MethodPost, e.b.EmulatorURL+"/v1/users/alice/playlists", bytes.NewReader([]byte(`{"name":"Road trip"}`)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var pl struct{ Name string }
	json.NewDecoder(resp.Body).Decode(&pl)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || pl.Name != "Road trip" {
		t.Fatalf("POST after a 401: %d, playlist %q; want 201 Road trip", resp.StatusCode, pl.Name)
	}

	// A body that cannot be read twice is not sent again: Spotify's 401 stands.
	e.faults(t, emulator.Faults{APIStatus: http.StatusUnauthorized, APIMessage: "The access token expired", Count: 1})
	req, _ = http.NewRequest(http.MethodPost, e.b.EmulatorURL+"/v1/users/alice/playlists", io.MultiReader(strings.NewReader(`{"name":"Once"}`)))
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST with a one-shot body after a 401: %d, want 401", resp.StatusCode)
	}
	if got := forceRefreshes(e.calls.Calls()); got != 1 {
		t.Errorf("force_refresh calls = %d, want 1", got)
	}
}

func TestTransport429(t *testing.T) {
	tests := []struct {
		name       string
		faults     emulator.Faults
		policy     *client.RetryPolicy
		wantStatus int
		want429s   int64
	}{
		{"retried", emulator.Faults{APIStatus: 429, RetryAfter: intp(0), Count: 2}, nil, http.StatusOK, 2},
		{"retries exhausted", emulator.Faults{APIStatus: 429, RetryAfter: intp(0), Count: 3}, nil, http.StatusTooManyRequests, 3},
		{"wait too long", emulator.Faults{APIStatus: 429, RetryAfter: intp(3600), Count: 1}, nil, http.StatusTooManyRequests, 1},
		{"no Retry-After", emulator.Faults{APIStatus: 429, EmptyBody: true, Count: 1}, nil, http.StatusTooManyRequests, 1},
		{"retries off", emulator.Faults{APIStatus: 429, RetryAfter: intp(0), Count: 1}, &client.RetryPolicy{}, http.StatusTooManyRequests, 1},
		{"more retries", emulator.Faults{APIStatus: 429, RetryAfter: intp(0), Count: 4}, &client.RetryPolicy{MaxRetries: 4, MaxWait: time.Second}, http.StatusOK, 4},
		{"waits one second", emulator.Faults{APIStatus: 429, RetryAfter: intp(1), Count: 1}, nil, http.StatusOK, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []client.Option
			if tt.policy != nil {
				opts = append(opts, client.WithRetryPolicy(*tt.policy))
			}
			e := newEnv(t, opts...)
			e.faults(t, tt.faults)
			status, body := e.get(t, e.c.HTTPClient(connID), "/v1/me")
			if status != tt.wantStatus {
				t.Errorf("GET /v1/me: %d %s, want %d", status, body, tt.wantStatus)
			}
			if got := e.apiResponses("429"); got != tt.want429s {
				t.Errorf("429s at the emulator = %d, want %d", got, tt.want429s)
			}
			if n := e.calls.N(); n != 1 {
				t.Errorf("broker calls = %d, want 1", n)
			}
		})
	}
}

func TestTransport429RespectsContext(t *testing.T) {
	e := newEnv(t)
	e.faults(t, emulator.Faults{APIStatus: 429, RetryAfter: intp(5), Count: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && resp.StatusCode == http.StatusTooManyRequests {
			cancel() // the caller gives up while the transport would wait
		}
		return resp, err
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.b.EmulatorURL+"/v1/me", nil)
	_, err := (&http.Client{Transport: e.c.Transport(connID, base)}).Do(req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("GET /v1/me: %v, want context.Canceled", err)
	}
	if got := e.apiResponses("429"); got != 1 {
		t.Errorf("429s at the emulator = %d, want 1", got)
	}
}

func TestTransportBrokerErrorClosesBody(t *testing.T) {
	e := newEnv(t)
	body := &closeRecorder{Reader: strings.NewReader("{}")}
	req, _ := http.NewRequest(http.MethodPost, e.b.EmulatorURL+"/v1/users/alice/playlists", body)
	_, err := e.c.HTTPClient("nobody").Do(req)
	if !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("POST for an unknown connection: %v, want not_found", err)
	}
	if !body.closed {
		t.Error("the request body was not closed")
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }
