package client_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/client"
	"github.com/spotoken/spotoken/client/clienttest"
)

func TestNewValidates(t *testing.T) {
	const key = "sk_0123456789abcdefghijklmnopqrstuv"
	tests := []struct {
		name, url, key string
		opts           []client.Option
	}{
		{"empty URL", "", key, nil},
		{"relative URL", "/broker", key, nil},
		{"no scheme", "broker.example", key, nil},
		{"ftp", "ftp://broker.example", key, nil},
		{"no host", "https://", key, nil},
		{"user info", "https://user:pass@broker.example", key, nil},
		{"query", "https://broker.example/?x=1", key, nil},
		{"fragment", "https://broker.example/#x", key, nil},
		{"unparsable", "https://broker.example/%zz", key, nil},
		{"arguments swapped", key, "https://broker.example", nil},
		{"key as URL", "https://" + key + "@broker.example", key, nil},
		{"no key", "https://broker.example", "", nil},
		{"key with newline", "https://broker.example", key + "\nX-Evil: 1", nil},
		{"negative margin", "https://broker.example", key, []client.Option{client.WithExpiryMargin(-time.Second)}},
		{"margin too long", "https://broker.example", key, []client.Option{client.WithExpiryMargin(time.Hour)}},
		{"negative retries", "https://broker.example", key, []client.Option{client.WithRetryPolicy(client.RetryPolicy{MaxRetries: -1})}},
		{"nil clock", "https://broker.example", key, []client.Option{client.WithClock(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.New(tt.url, tt.key, tt.opts...)
			if err == nil {
				t.Fatalf("New(%q, ...) = %v, nil; want an error", tt.url, c)
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("the error %q holds the API key", err)
			}
		})
	}
	for _, u := range []string{"http://127.0.0.1:8080", "https://broker.example/", "https://broker.example/prefix/"} {
		if _, err := client.New(u, key); err != nil {
			t.Errorf("New(%q): %v", u, err)
		}
	}
}

func TestToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, err := e.c.Token(ctx, connID)
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.TokenType != "Bearer" {
		t.Errorf("token type %q, access token empty: %t", tok.TokenType, tok.AccessToken == "")
	}
	if want := e.b.Now().Add(59 * time.Minute); !tok.Expiry.After(want) {
		t.Errorf("Expiry = %v, want after %v", tok.Expiry, want)
	}
	if diff := cmp.Diff(client.Scopes(tok), clienttest.DefaultScopes); diff != "" {
		t.Errorf("Scopes (-got +want):\n%s", diff)
	}

	// Token asks the broker every time; MinTTL and ForceRefresh reach it.
	again, err := e.c.Token(ctx, connID, client.MinTTL(10*time.Minute+time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if again.AccessToken != tok.AccessToken {
		t.Error("a second Token without a refresh returned another access token")
	}
	forced, err := e.c.Token(ctx, connID, client.ForceRefresh())
	if err != nil {
		t.Fatal(err)
	}
	if forced.AccessToken == tok.AccessToken {
		t.Error("ForceRefresh returned the same access token")
	}
	want := []brokerCall{
		{Path: "/v1/connections/user-42/token", Body: map[string]any{"min_ttl": 60.0}},
		{Path: "/v1/connections/user-42/token", Body: map[string]any{"min_ttl": 601.0}},
		{Path: "/v1/connections/user-42/token", Body: map[string]any{"min_ttl": 60.0, "force_refresh": true}},
	}
	if diff := cmp.Diff(e.calls.Calls(), want); diff != "" {
		t.Errorf("broker calls (-got +want):\n%s", diff)
	}
	if got := e.b.Refreshes(); got != 1 {
		t.Errorf("refreshes at Spotify = %d, want 1", got)
	}
}

func TestTokenEscapesConnectionID(t *testing.T) {
	e := newEnv(t)
	e.b.Connect(t, "a:b@c.d")
	if _, err := e.c.Token(context.Background(), "a:b@c.d"); err != nil {
		t.Fatal(err)
	}
	_, err := e.c.Token(context.Background(), "x/../../v1/connections")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.StatusCode != http.StatusNotFound && ce.StatusCode != http.StatusBadRequest {
		t.Errorf("Token of an id with slashes: %v, want a 400 or 404 *Error", err)
	}
	if _, err := e.c.Token(context.Background(), ""); err == nil {
		t.Error("Token of an empty id succeeded")
	}
}

func TestTokenSourceCaches(t *testing.T) {
	e := newEnv(t)
	ts := e.c.TokenSource(connID)
	first, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		tok, err := ts.Token()
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != first.AccessToken {
			t.Fatal("the token source changed tokens before expiry")
		}
	}
	// Another source, a transport and an HTTP client of the connection
	// share the cache.
	if _, err := e.c.TokenSource(connID).Token(); err != nil {
		t.Fatal(err)
	}
	if status, body := e.get(t, e.c.HTTPClient(connID), "/v1/me"); status != http.StatusOK {
		t.Fatalf("GET /v1/me: %d %s", status, body)
	}
	if n := e.calls.N(); n != 1 {
		t.Fatalf("broker calls = %d, want 1", n)
	}

	// 30 seconds before expiry the token is inside the one-minute margin:
	// the source asks again, and the broker refreshes.
	e.b.Advance(first.Expiry.Add(-30 * time.Second).Sub(e.b.Now()))
	next, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if next.AccessToken == first.AccessToken || !next.Expiry.After(first.Expiry) {
		t.Error("the token source kept the token inside the expiry margin")
	}
	if n, r := e.calls.N(), e.b.Refreshes(); n != 2 || r != 1 {
		t.Errorf("broker calls = %d, refreshes = %d; want 2 and 1", n, r)
	}
}

func TestTokenSourceMutatingCopyDoesNotLeak(t *testing.T) {
	e := newEnv(t)
	ts := e.c.TokenSource(connID)
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	orig := tok.AccessToken
	tok.AccessToken = "changed"
	again, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if again.AccessToken != orig {
		t.Error("changing a returned token changed the cached one")
	}
}

func TestTokenSourceConcurrentCallersShareOneCall(t *testing.T) {
	e := newEnv(t)
	gate := make(chan struct{})
	e.calls.gate = gate
	const n = 50
	var wg sync.WaitGroup
	tokens := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if i%2 == 0 {
				tok, terr := e.c.TokenSource(connID).Token()
				if terr == nil {
					tokens[i] = tok.AccessToken
				}
				err = terr
			} else {
				resp, derr := e.c.HTTPClient(connID).Get(e.b.EmulatorURL + "/v1/me")
				switch {
				case derr != nil:
					err = derr
				case resp.StatusCode != http.StatusOK:
					err = errors.New(resp.Status)
				}
				if derr == nil {
					resp.Body.Close()
				}
			}
			errs[i] = err
		}()
	}
	close(gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	if got := e.calls.N(); got != 1 {
		t.Errorf("broker calls = %d, want 1", got)
	}
	var distinct []string
	for _, tok := range tokens {
		if tok != "" && !slices.Contains(distinct, tok) {
			distinct = append(distinct, tok)
		}
	}
	if len(distinct) != 1 {
		t.Errorf("callers got %d distinct tokens, want 1", len(distinct))
	}
}

func TestTokenSourceWaiterCancels(t *testing.T) {
	e := newEnv(t)
	gate, started := make(chan struct{}), make(chan struct{}, 1)
	e.calls.gate, e.calls.started = gate, started

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.b.EmulatorURL+"/v1/me", nil)
		resp, err := e.c.HTTPClient(connID).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled request: %v, want context.Canceled", err)
	}

	// The abandoned call was cancelled; the next caller starts its own.
	e.calls.mu.Lock()
	e.calls.gate, e.calls.started = nil, nil
	e.calls.mu.Unlock()
	if _, err := e.c.TokenSource(connID).Token(); err != nil {
		t.Fatal(err)
	}
	if n := e.calls.N(); n != 2 {
		t.Errorf("broker calls = %d, want 2", n)
	}
	close(gate)
}

func TestTokenSourceDoesNotCacheErrors(t *testing.T) {
	e := newEnv(t)
	ts := e.c.TokenSource("nobody")
	for range 2 {
		_, err := ts.Token()
		if !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("Token of an unknown connection: %v, want not_found", err)
		}
	}
	if n := e.calls.N(); n != 2 {
		t.Errorf("broker calls = %d, want 2", n)
	}
}

func TestNeedsReauth(t *testing.T) {
	e := newEnv(t)
	if _, err := e.c.TokenSource(connID).Token(); err != nil {
		t.Fatal(err)
	}
	e.b.RevokeGrant(t)
	// The access token keeps working until it expires.
	if status, body := e.get(t, e.c.HTTPClient(connID), "/v1/me"); status != http.StatusOK {
		t.Fatalf("GET /v1/me after the revocation: %d %s", status, body)
	}
	e.b.Advance(2 * time.Hour)

	_, err := e.c.TokenSource(connID).Token()
	var ce *client.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Token after revocation and expiry: %v, want a *client.Error", err)
	}
	if ce.Code != client.CodeNeedsReauth || ce.StatusCode != http.StatusConflict || ce.ConnectionID != connID {
		t.Errorf("error = %+v, want needs_reauth, 409, %s", ce, connID)
	}
	if !strings.HasPrefix(ce.ConnectURL, e.b.URL+"/connect/") || !ce.ConnectURLExpiresAt.After(e.b.Now()) {
		t.Errorf("ConnectURL %q expiring %v: want a link to %s/connect/ in the future", ce.ConnectURL, ce.ConnectURLExpiresAt, e.b.URL)
	}
	if !errors.Is(err, client.ErrNeedsReauth) || !errors.Is(err, spotoken.ErrNeedsReauth) || errors.Is(err, client.ErrNotFound) {
		t.Errorf("errors.Is does not match the code alone: %v", err)
	}

	// Through the transport, the *Error comes wrapped in a *url.Error.
	req, _ := http.NewRequest(http.MethodGet, e.b.EmulatorURL+"/v1/me", nil)
	_, err = e.c.HTTPClient(connID).Do(req)
	if !errors.As(err, &ce) || ce.Code != client.CodeNeedsReauth || ce.ConnectURL == "" {
		t.Errorf("GET /v1/me through the transport: %v, want needs_reauth with a connect link", err)
	}

	// The user connects again: the same client works at once.
	e.b.Connect(t, connID)
	if status, body := e.get(t, e.c.HTTPClient(connID), "/v1/me"); status != http.StatusOK {
		t.Fatalf("GET /v1/me after reconnecting: %d %s", status, body)
	}
}

func TestForceRefreshRateLimited(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var err error
	for i := 0; i < 4 && err == nil; i++ {
		_, err = e.c.Token(ctx, connID, client.ForceRefresh())
	}
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != client.CodeRateLimited || ce.StatusCode != http.StatusTooManyRequests || ce.RetryAfter <= 0 {
		t.Fatalf("the fourth force_refresh in a row: %v (%+v), want rate_limited with RetryAfter", err, ce)
	}
	if !errors.Is(err, client.ErrRateLimited) {
		t.Error("errors.Is(err, ErrRateLimited) = false")
	}
}
