package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken/client"
	"github.com/spotoken/spotoken/client/clienttest"
)

// TestAppTokenSource: the app's own token comes through an
// oauth2.TokenSource, cached until it nears its expiry; concurrent callers
// after the expiry share one call to the broker, which makes one
// client-credentials request.
func TestAppTokenSource(t *testing.T) {
	b := clienttest.NewBroker(t, clienttest.ClientSecret("app-secret-123"))
	c, err := client.New(b.URL, b.APIKey, client.WithClock(b.Now))
	if err != nil {
		t.Fatal(err)
	}
	requests := func() int64 { return b.Emulator.Stats().TokenRequests["client_credentials"] }
	ts := c.AppTokenSource()
	first, err := ts.Token()
	if err != nil || first.AccessToken == "" || first.TokenType != "Bearer" || !first.Expiry.After(b.Now()) {
		t.Fatalf("first: %+v, %v", first, err)
	}
	if again, err := ts.Token(); err != nil || again.AccessToken != first.AccessToken || requests() != 1 {
		t.Errorf("cached: %v, %d requests", err, requests())
	}
	b.Advance(time.Hour)
	var wg sync.WaitGroup
	got := make([]string, 50)
	for i := range got {
		wg.Go(func() {
			tok, err := ts.Token()
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = tok.AccessToken
		})
	}
	wg.Wait()
	if requests() != 2 {
		t.Errorf("%d client-credentials requests after the expiry, want 2 in all", requests())
	}
	for _, tok := range got {
		if tok == first.AccessToken || tok != got[0] {
			t.Fatal("after the expiry a caller got the old token, or another new one")
		}
	}
	if tok, err := c.AppToken(context.Background(), client.ForceRefresh()); err != nil || tok.AccessToken == got[0] {
		t.Errorf("AppToken with ForceRefresh: %v", err)
	}
}

// TestAppHTTPClient: requests through AppHTTPClient carry the app's token;
// a 401 refusing it gets a new one and one retry.
func TestAppHTTPClient(t *testing.T) {
	b := clienttest.NewBroker(t, clienttest.ClientSecret("app-secret-123"))
	c, err := client.New(b.URL, b.APIKey, client.WithClock(b.Now))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		n := len(seen)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spotify", error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"status":401,"message":"The access token expired"}}`)
			return
		}
		io.WriteString(w, `{"tracks":{}}`)
	}))
	t.Cleanup(api.Close)
	resp, err := c.AppHTTPClient().Get(api.URL + "/v1/search?q=x&type=track")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tok, err := c.AppTokenSource().Token()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || len(seen) != 2 || seen[0] == seen[1] || seen[1] != "Bearer "+tok.AccessToken {
		t.Errorf("status %d; upstream saw %d requests; the retry carried the current app token: %v", resp.StatusCode, len(seen), len(seen) == 2 && seen[1] == "Bearer "+tok.AccessToken)
	}
}

// TestAppTokenPublicApp: an app without a client secret gets a typed
// unauthorized_client error.
func TestAppTokenPublicApp(t *testing.T) {
	b := clienttest.NewBroker(t)
	c, err := client.New(b.URL, b.APIKey, client.WithClock(b.Now))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.AppTokenSource().Token()
	var e *client.Error
	if !errors.As(err, &e) || e.Code != client.CodeUnauthorizedClient || e.StatusCode != http.StatusBadRequest || e.ConnectionID != "" {
		t.Errorf("public app: %v", err)
	}
}
