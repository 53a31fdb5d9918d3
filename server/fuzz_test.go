package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

func httptestRequest(method, path, body, key string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, path, rd)
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	return r
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

// fuzzTokens hands out one fixed token for connection c1 of the demo app.
type fuzzTokens struct{}

func (fuzzTokens) Token(_ context.Context, key spotoken.ConnectionKey, _ time.Duration) (refresh.AccessToken, error) {
	if key != (spotoken.ConnectionKey{AppID: appID, ID: "c1"}) {
		return refresh.AccessToken{}, spotoken.Errorf(spotoken.ENotFound, "no connection %s", key)
	}
	return refresh.AccessToken{Token: "BQfuzz", Expiry: fuzzNow.Add(time.Hour), Scopes: spotoken.Scopes{"user-read-email"}}, nil
}

func (t fuzzTokens) Refresh(ctx context.Context, key spotoken.ConnectionKey) (refresh.AccessToken, error) {
	return t.Token(ctx, key, 0)
}

func (t fuzzTokens) Invalidate(ctx context.Context, key spotoken.ConnectionKey, _ spotoken.Secret) (refresh.AccessToken, error) {
	return t.Token(ctx, key, 0)
}

func (fuzzTokens) Forget(spotoken.ConnectionKey) {}

var fuzzNow = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

// FuzzAPIBody sends arbitrary bodies to the two JSON endpoints, POST
// /v1/connect-sessions and POST /v1/connections/{id}/token, through the
// real handler and a SQLite store: never a 5xx, and every 4xx is a JSON
// error with a code and a short description.
func FuzzAPIBody(f *testing.F) {
	ring, err := seal.GenerateKeyFile(filepath.Join(f.TempDir(), "keys"))
	if err != nil {
		f.Fatal(err)
	}
	clock := func() time.Time { return fuzzNow }
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(f.TempDir(), "fuzz.db"), Keys: ring, Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	srv, err := server.New(server.Config{Store: store, Tokens: fuzzTokens{}, PublicURL: "https://spotoken.example", Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	if err := store.CreateApp(ctx, &spotoken.App{ID: appID, ClientID: clientID, RedirectURIs: []string{srv.CallbackURL()},
		ReturnToOrigins: []string{"https://app.example"}}); err != nil {
		f.Fatal(err)
	}
	key, rec := spotoken.NewAPIKey(appID, "fuzz", fuzzNow)
	if err := store.CreateAPIKey(ctx, rec); err != nil {
		f.Fatal(err)
	}

	for _, s := range []struct {
		route uint8
		body  string
	}{
		{0, `{"connection_id":"c1"}`},
		{0, `{"connection_id":"c1","scopes":["user-read-email"],"return_to":"https://app.example/x"}`},
		{0, `{"connection_id":"c1","return_to":"https://evil.example"}`},
		{0, `{"connection_id":"c1","scopes":null}`},
		{0, `{"connection_id":1}`},
		{1, `{"min_ttl":60}`},
		{1, `{"min_ttl":60,"force_refresh":true}`},
		{1, `{"min_ttl":-1}`},
		{1, `{"min_ttl":1e400}`},
		{1, `{"MIN_TTL":1}`},
		{1, `{}}`},
		{1, ``},
	} {
		f.Add(s.route, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		path := "/v1/connect-sessions"
		if route%2 == 1 {
			path = "/v1/connections/c1/token"
		}
		req := httptest.NewRequest("POST", path, strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+key.Reveal())
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		switch {
		case w.Code >= 500:
			t.Fatalf("%s %q: %d %s", path, body, w.Code, w.Body)
		case w.Code >= 400:
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("%s %q: %d with Content-Type %q", path, body, w.Code, ct)
			}
			var e map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
				t.Fatalf("%s %q: %d body %q: %v", path, body, w.Code, w.Body, err)
			}
			code, _ := e["error"].(string)
			desc, _ := e["error_description"].(string)
			if code == "" || desc == "" || len(desc) > 300 {
				t.Fatalf("%s %q: %d error %q description %q", path, body, w.Code, code, desc)
			}
		case w.Code != http.StatusOK && w.Code != http.StatusCreated:
			t.Fatalf("%s %q: %d", path, body, w.Code)
		}
	})
}
