package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

// fuzzClientSecret is the fuzzed app's client secret, which no answer may show.
const fuzzClientSecret = "fuzz-client-secret-7f3q"

// FuzzAdminAPI sends arbitrary bodies to the admin API's PATCH and POST of
// an app, and arbitrary query strings to its lists, through the real
// handler and a SQLite store: never a 5xx, every 4xx a JSON error with a
// code and a description, no answer holding the client secret, and the
// app, whatever was accepted, still one that admin.CheckApp accepts.
func FuzzAdminAPI(f *testing.F) {
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
	svc, err := admin.New(admin.Config{Store: store, Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: store, Tokens: fuzzTokens{}, PublicURL: "https://spotoken.example", Now: clock, Admin: svc})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	if err := store.CreateApp(ctx, &spotoken.App{ID: appID, ClientID: clientID, ClientSecret: fuzzClientSecret,
		RedirectURIs: []string{srv.CallbackURL()}}); err != nil {
		f.Fatal(err)
	}
	key, _, err := svc.CreateAdminKey(ctx, admin.Actor{Kind: admin.ActorCLI}, "fuzz")
	if err != nil {
		f.Fatal(err)
	}

	for _, s := range []struct {
		route uint8
		input string
	}{
		{0, `{"webhook_url":"https://app.example/hooks"}`},
		{0, `{"client_secret":"next-secret","rotate_webhook_secret":true}`},
		{0, `{"return_to_origins":["HTTPS://App.Example:443/"],"default_scopes":["user-read-email"]}`},
		{0, `{"redirect_uris":[]}`},
		{0, `{"webhook_url":null}`},
		{0, `{"client_id":""}`},
		{1, `{"id":"x","client_id":"c"}`},
		{1, `{"id":"_x","client_id":"c"}`},
		{2, `spotify_user_id=alice&limit=2`},
		{2, `cursor=demo/c1&state=active`},
		{3, `status=gave_up&cursor=evt_3`},
		{3, `limit=0`},
	} {
		f.Add(s.route, []byte(s.input))
	}
	f.Fuzz(func(t *testing.T, route uint8, input []byte) {
		var req *http.Request
		switch route % 4 {
		case 0:
			req = httptest.NewRequest("PATCH", "/admin/v1/apps/"+appID, strings.NewReader(string(input)))
		case 1:
			req = httptest.NewRequest("POST", "/admin/v1/apps", strings.NewReader(string(input)))
		case 2:
			req = httptest.NewRequest("GET", "/admin/v1/connections?"+url.PathEscape(string(input)), nil)
			req.URL.RawQuery = string(input)
		case 3:
			req = httptest.NewRequest("GET", "/admin/v1/apps/"+appID+"/events", nil)
			req.URL.RawQuery = string(input)
		}
		req.Header.Set("Authorization", "Bearer "+key.Reveal())
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		where := req.Method + " " + req.URL.Path
		switch {
		case w.Code >= 500:
			t.Fatalf("%s %q: %d %s", where, input, w.Code, w.Body)
		case w.Code >= 400:
			var e map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
				t.Fatalf("%s %q: %d body %q: %v", where, input, w.Code, w.Body, err)
			}
			code, _ := e["error"].(string)
			desc, _ := e["error_description"].(string)
			if code == "" || desc == "" || len(desc) > 1024 {
				t.Fatalf("%s %q: %d error %q description %q", where, input, w.Code, code, desc)
			}
		}
		if strings.Contains(w.Body.String(), fuzzClientSecret) {
			t.Fatalf("%s %q: the answer holds the client secret", where, input)
		}
		app, err := store.App(ctx, appID)
		if err != nil {
			t.Fatal(err)
		}
		if err := admin.CheckApp(app); err != nil {
			t.Fatalf("%s %q left an app that does not check: %v", where, input, err)
		}
	})
}
