package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/server"
)

// TestAdminAuth: the admin API takes admin credentials only; app API keys
// never reach it, and admin credentials never reach the app API.
func TestAdminAuth(t *testing.T) {
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.AuthCacheTTL = -1 }})
	revoked, rec, err := h.admin.CreateAdminKey(context.Background(), operator, "gone")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.admin.RevokeAdminKey(context.Background(), operator, rec.ID); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, key, challenge string
	}{
		{"no credentials", "", `Bearer realm="spotoken-admin"`},
		{"an app's API key", h.apiKey, `Bearer realm="spotoken-admin", error="invalid_token"`},
		{"a revoked admin key", revoked.Reveal(), `Bearer realm="spotoken-admin", error="invalid_token"`},
		{"an unknown admin key", spotoken.AdminKeyPrefix + "nope", `Bearer realm="spotoken-admin", error="invalid_token"`},
	} {
		var e server.ErrorResponse
		resp, raw := h.call("GET", "/admin/v1/apps", tt.key, nil, &e)
		if resp.StatusCode != http.StatusUnauthorized || e.Error != "invalid_token" || resp.Header.Get("WWW-Authenticate") != tt.challenge {
			t.Errorf("%s: %d %s %q", tt.name, resp.StatusCode, raw, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if resp, raw := h.adminCall("GET", "/admin/v1/apps", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("admin key: %d %s", resp.StatusCode, raw)
	}
	for _, path := range []string{"/v1/connections", "/v1/app-token"} {
		method := "GET"
		if path == "/v1/app-token" {
			method = "POST"
		}
		if resp, raw := h.call(method, path, h.adminKey, nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("admin key on %s: %d %s", path, resp.StatusCode, raw)
		}
	}
}

// TestAdminApps: create, list, get, patch every setting, delete, over the
// admin API; each change is recorded without a secret.
func TestAdminApps(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	var created server.AppChange
	resp, raw := h.adminCall("POST", "/admin/v1/apps", map[string]any{
		"id": "shop", "client_id": "shop-client", "client_secret": "shop-secret-1", "redirect_uris": []string{h.srv.CallbackURL()},
		"default_scopes": []string{"user-read-email"}, "webhook_url": "https://shop.example/hooks",
	}, &created)
	if resp.StatusCode != http.StatusCreated || created.App.ClientType != "confidential" || !strings.HasPrefix(created.WebhookSecret, "whsec_") {
		t.Fatalf("create: %d %s", resp.StatusCode, raw)
	}
	if resp, raw := h.adminCall("POST", "/admin/v1/apps", map[string]any{"id": "shop", "client_id": "x"}, nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("create twice: %d %s", resp.StatusCode, raw)
	}
	if resp, raw := h.adminCall("POST", "/admin/v1/apps", map[string]any{"id": "bad", "client_id": "x", "default_scopes": []string{"root"}}, nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(raw), "default_scopes") {
		t.Errorf("bad scope: %d %s", resp.StatusCode, raw)
	}

	var list server.AppList
	h.adminCall("GET", "/admin/v1/apps", nil, &list)
	var ids []string
	for _, a := range list.Apps {
		ids = append(ids, a.ID)
	}
	if !slices.Equal(ids, []string{appID, otherAppID, "shop"}) {
		t.Errorf("apps: %v", ids)
	}

	h.connect("c1")
	var got server.AppView
	h.adminCall("GET", "/admin/v1/apps/"+appID, nil, &got)
	if got.Connections.Active != 1 || got.ClientType != "public" {
		t.Errorf("get: %+v", got)
	}

	var changed server.AppChange
	resp, raw = h.adminCall("PATCH", "/admin/v1/apps/shop", map[string]any{
		"client_id": "shop-client-2", "client_secret": "shop-secret-2", "redirect_uris": []string{h.srv.CallbackURL(), "https://b.example/callback"},
		"default_scopes": []string{"user-top-read"}, "return_to_origins": []string{"HTTPS://Shop.Example/"}, "webhook_url": "https://shop.example/v2",
		"rotate_webhook_secret": true,
	}, &changed)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("patch: %d %s", resp.StatusCode, raw)
	}
	a := changed.App
	if a.ClientID != "shop-client-2" || !a.ClientSecretRotating || len(a.RedirectURIs) != 2 || !slices.Equal(a.DefaultScopes, spotoken.Scopes{"user-top-read"}) ||
		!slices.Equal(a.ReturnToOrigins, []string{"https://shop.example"}) || a.WebhookURL != "https://shop.example/v2" || !a.WebhookSecretRotating ||
		changed.WebhookSecret == "" || changed.WebhookSecret == created.WebhookSecret {
		t.Errorf("after patch: %s", raw)
	}
	wantChanged := []string{"client_id", "client_secret", "redirect_uris", "default_scopes", "return_to_origins", "webhook_url", "webhook_secret"}
	if !slices.Equal(changed.Changed, wantChanged) {
		t.Errorf("changed %v, want %v", changed.Changed, wantChanged)
	}
	stored, _ := h.store.App(context.Background(), "shop")
	if stored.ClientSecret != "shop-secret-2" || stored.PreviousClientSecret != "shop-secret-1" {
		t.Error("the new client secret is not staged before the old one")
	}
	for _, tt := range []struct{ name, body, want string }{
		{"null", `{"webhook_url": null}`, "webhook_url is null"},
		{"unknown field", `{"secret": "x"}`, `unknown field \"secret\"`},
		{"wrong type", `{"redirect_uris": "https://x.example/cb"}`, "redirect_uris must be an array of strings"},
		{"bad URL", `{"webhook_url": "ftp://x.example"}`, "webhook_url"},
	} {
		resp, raw := h.adminCall("PATCH", "/admin/v1/apps/shop", tt.body, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(raw), tt.want) {
			t.Errorf("patch with %s: %d %s", tt.name, resp.StatusCode, raw)
		}
	}
	if after, _ := h.store.App(context.Background(), "shop"); after.WebhookURL != "https://shop.example/v2" {
		t.Error("a refused patch changed the app")
	}
	if resp, _ := h.adminCall("PATCH", "/admin/v1/apps/nope", map[string]any{"webhook_url": ""}, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("patch an unknown app: %d", resp.StatusCode)
	}
	// Webhook secret: retire the previous one; a second retirement conflicts.
	if resp, raw := h.adminCall("POST", "/admin/v1/apps/shop/webhook-secret/retire", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("retire webhook secret: %d %s", resp.StatusCode, raw)
	}
	if resp, _ := h.adminCall("POST", "/admin/v1/apps/shop/webhook-secret/retire", nil, nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("retire webhook secret twice: %d", resp.StatusCode)
	}
	var rotated server.AppChange
	if resp, raw := h.adminCall("POST", "/admin/v1/apps/shop/webhook-secret/rotate", nil, &rotated); resp.StatusCode != http.StatusOK ||
		!rotated.App.WebhookSecretRotating || !strings.HasPrefix(rotated.WebhookSecret, "whsec_") {
		t.Errorf("rotate webhook secret: %d %s", resp.StatusCode, raw)
	}
	// The client secret: shop-client-2 is unknown to the emulator, so the
	// check refuses the retirement unless forced.
	if resp, raw := h.adminCall("POST", "/admin/v1/apps/shop/client-secret/retire", nil, nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("retire a secret Spotify refuses: %d %s", resp.StatusCode, raw)
	}
	if resp, raw := h.adminCall("POST", "/admin/v1/apps/shop/client-secret/retire", map[string]any{"force": true}, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("forced retirement: %d %s", resp.StatusCode, raw)
	}

	if resp, _ := h.adminCall("DELETE", "/admin/v1/apps/shop", nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("delete: %d", resp.StatusCode)
	}
	if resp, _ := h.adminCall("GET", "/admin/v1/apps/shop", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("get after delete: %d", resp.StatusCode)
	}
	logs := h.logs.String()
	for _, action := range []string{"app.create", "app.update", "app.webhook_secret.retire", "app.webhook_secret.rotate", "app.client_secret.retire", "app.delete"} {
		if !strings.Contains(logs, `"action":"`+action+`"`) {
			t.Errorf("no record of %s in the log", action)
		}
	}
	for _, secret := range []string{"shop-secret-1", "shop-secret-2", created.WebhookSecret, changed.WebhookSecret, rotated.WebhookSecret, h.adminKey} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret is in the log: %.10s…", secret)
		}
	}
}

// TestAdminAPIKeys: an API key created over the admin API works once, is
// listed without its value, and stops working when revoked.
func TestAdminAPIKeys(t *testing.T) {
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.AuthCacheTTL = -1 }})
	var created server.NewAPIKey
	resp, raw := h.adminCall("POST", "/admin/v1/apps/"+appID+"/api-keys", map[string]any{"name": "worker"}, &created)
	if resp.StatusCode != http.StatusCreated || !strings.HasPrefix(created.Key, spotoken.APIKeyPrefix) || created.APIKey.Name != "worker" {
		t.Fatalf("create: %d %s", resp.StatusCode, raw)
	}
	if resp, raw := h.call("GET", "/v1/connections", created.Key, nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("the new key: %d %s", resp.StatusCode, raw)
	}
	var list server.APIKeyList
	_, raw = h.adminCall("GET", "/admin/v1/apps/"+appID+"/api-keys", nil, &list)
	if len(list.APIKeys) != 2 || strings.Contains(string(raw), created.Key) {
		t.Errorf("list: %s", raw)
	}
	if resp, _ := h.adminCall("POST", "/admin/v1/apps/"+appID+"/api-keys/"+created.APIKey.ID+"/revoke", nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("revoke: %d", resp.StatusCode)
	}
	if resp, _ := h.call("GET", "/v1/connections", created.Key, nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the revoked key: %d", resp.StatusCode)
	}
	if resp, _ := h.adminCall("POST", "/admin/v1/apps/"+otherAppID+"/api-keys/"+created.APIKey.ID+"/revoke", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("revoke through another app: %d", resp.StatusCode)
	}
	if resp, _ := h.adminCall("GET", "/admin/v1/apps/nope/api-keys", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("keys of an unknown app: %d", resp.StatusCode)
	}
	var admins server.AdminKeyList
	h.adminCall("GET", "/admin/v1/admin-keys", nil, &admins)
	if len(admins.AdminKeys) != 1 || admins.AdminKeys[0].Name != "tester" || admins.AdminKeys[0].LastUsedAt == nil {
		t.Errorf("admin keys: %+v", admins)
	}
	if resp, _ := h.adminCall("POST", "/admin/v1/admin-keys/"+admins.AdminKeys[0].ID+"/revoke", nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("revoke own admin key: %d", resp.StatusCode)
	}
	if resp, _ := h.adminCall("GET", "/admin/v1/apps", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after revoking itself: %d", resp.StatusCode)
	}
}

// TestAdminConnections: connections across apps, found by Spotify user, by
// id or state, page by page, and their actions: get, refresh, connect link,
// delete; never a token in an answer.
func TestAdminConnections(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connectAll("a1", "a2", "a3")
	var list server.AdminConnectionList
	_, raw := h.adminCall("GET", "/admin/v1/connections?spotify_user_id=alice&limit=2", nil, &list)
	if len(list.Connections) != 2 || list.NextCursor != appID+"/a2" || list.Connections[0].AppID != appID {
		t.Fatalf("page 1: %s", raw)
	}
	cursor := list.NextCursor
	list = server.AdminConnectionList{}
	h.adminCall("GET", "/admin/v1/connections?spotify_user_id=alice&limit=2&cursor="+cursor, nil, &list)
	if len(list.Connections) != 1 || list.Connections[0].ID != "a3" || list.NextCursor != "" {
		t.Errorf("page 2: %+v", list)
	}
	for query, want := range map[string]int{"connection_id=a2": 1, "spotify_user_id=bob": 0, "state=needs_reauth": 0, "app=" + otherAppID: 0, "app=" + appID + "&state=active": 3} {
		list = server.AdminConnectionList{}
		h.adminCall("GET", "/admin/v1/connections?"+query, nil, &list)
		if len(list.Connections) != want {
			t.Errorf("%s: %d connections, want %d", query, len(list.Connections), want)
		}
	}
	for _, query := range []string{"state=lost", "limit=0", "cursor=nope", "q=alice", "app=a&app=b"} {
		if resp, raw := h.adminCall("GET", "/admin/v1/connections?"+query, nil, nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s", query, resp.StatusCode, raw)
		}
	}

	var c server.AdminConnectionView
	before := h.refreshes()
	resp, raw := h.adminCall("POST", "/admin/v1/apps/"+appID+"/connections/a1/refresh", nil, &c)
	if resp.StatusCode != http.StatusOK || h.refreshes() != before+1 || c.LastRefreshAt == nil {
		t.Errorf("refresh: %d %s", resp.StatusCode, raw)
	}
	var sess server.ConnectSession
	if resp, raw := h.adminCall("POST", "/admin/v1/apps/"+appID+"/connections/a1/connect-link", nil, &sess); resp.StatusCode != http.StatusCreated || !strings.Contains(sess.URL, "/connect/") {
		t.Errorf("connect link: %d %s", resp.StatusCode, raw)
	}
	if resp, _ := h.adminCall("POST", "/admin/v1/apps/"+appID+"/connections/-/connect-link", nil, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("connect link for -: %d", resp.StatusCode)
	}
	if resp, _ := h.adminCall("DELETE", "/admin/v1/apps/"+appID+"/connections/a1", nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("delete: %d", resp.StatusCode)
	}
	if resp, _ := h.adminCall("GET", "/admin/v1/apps/"+appID+"/connections/a1", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("get after delete: %d", resp.StatusCode)
	}
	c2 := h.connection(appID, "a2")
	for _, s := range []spotoken.Secret{c2.Token.AccessToken, c2.Token.RefreshToken} {
		_, raw := h.adminCall("GET", "/admin/v1/connections", nil, nil)
		_, one := h.adminCall("GET", "/admin/v1/apps/"+appID+"/connections/a2", nil, nil)
		if strings.Contains(string(raw), s.Reveal()) || strings.Contains(string(one), s.Reveal()) {
			t.Error("a token is in an admin answer")
		}
	}
	for _, action := range []string{"connection.refresh", "connection.connect_link", "connection.delete"} {
		if !strings.Contains(h.logs.String(), `"action":"`+action+`"`) {
			t.Errorf("no record of %s", action)
		}
	}
	if strings.Contains(h.logs.String(), sess.URL) {
		t.Error("the connect link is in the log")
	}
}

// TestAdminEvents: an app's events listed with their status, filtered and
// paged, and redelivered one by one or in bulk.
func TestAdminEvents(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connectAll("a1", "a2", "a3") // three connection.created events
	pending, _ := h.store.PendingEvents(context.Background(), h.emu.Now(), 10)
	if len(pending) != 3 {
		t.Fatalf("%d pending events", len(pending))
	}
	if err := h.store.MarkEventFailed(context.Background(), pending[0].ID, spotoken.EventGaveUpAt, "gave up after 20 attempts: status 500"); err != nil {
		t.Fatal(err)
	}
	if err := h.store.MarkEventFailed(context.Background(), pending[1].ID, h.emu.Now().Add(time.Hour), "status 500"); err != nil {
		t.Fatal(err)
	}
	var list server.EventList
	_, raw := h.adminCall("GET", "/admin/v1/apps/"+appID+"/events?limit=2", nil, &list)
	if len(list.Events) != 2 || list.Events[0].Status != spotoken.EventPending || list.Events[1].Status != spotoken.EventFailed || list.NextCursor == "" {
		t.Fatalf("page 1: %s", raw)
	}
	if list.Events[0].Data["connection_id"] != "a3" || list.Events[0].Type != spotoken.EventConnectionCreated {
		t.Errorf("event view: %+v", list.Events[0])
	}
	cursor := list.NextCursor
	list = server.EventList{}
	h.adminCall("GET", "/admin/v1/apps/"+appID+"/events?cursor="+cursor, nil, &list)
	if len(list.Events) != 1 || list.Events[0].Status != spotoken.EventGaveUp || list.Events[0].NextAttemptAt != nil {
		t.Errorf("page 2: %+v", list)
	}
	gaveUp := list.Events[0].ID
	list = server.EventList{}
	h.adminCall("GET", "/admin/v1/apps/"+appID+"/events?status=failed&connection_id=a2", nil, &list)
	if len(list.Events) != 1 || list.Events[0].LastError != "status 500" {
		t.Errorf("failed of a2: %+v", list)
	}
	var redone server.Redelivery
	if resp, raw := h.adminCall("POST", "/admin/v1/apps/"+appID+"/events/"+gaveUp+"/redeliver", nil, &redone); resp.StatusCode != http.StatusAccepted || redone.Redelivered != 1 {
		t.Errorf("redeliver %s: %d %s", gaveUp, resp.StatusCode, raw)
	}
	if resp, raw := h.adminCall("POST", "/admin/v1/apps/"+appID+"/events/redeliver", map[string]any{"status": "failed"}, &redone); resp.StatusCode != http.StatusAccepted || redone.Redelivered != 1 {
		t.Errorf("redeliver failed: %d %s", resp.StatusCode, raw)
	}
	list = server.EventList{}
	h.adminCall("GET", "/admin/v1/apps/"+appID+"/events?status=pending", nil, &list)
	if len(list.Events) != 3 {
		t.Errorf("pending after redelivery: %+v", list)
	}
	for path, want := range map[string]int{
		"/admin/v1/apps/" + otherAppID + "/events/" + gaveUp + "/redeliver": http.StatusNotFound,
		"/admin/v1/apps/" + appID + "/events/evt_x/redeliver":               http.StatusNotFound,
		"/admin/v1/apps/nope/events/redeliver":                              http.StatusBadRequest, // no status: the body is checked first
	} {
		if resp, raw := h.adminCall("POST", path, nil, nil); resp.StatusCode != want {
			t.Errorf("%s: %d %s, want %d", path, resp.StatusCode, raw, want)
		}
	}
	if resp, _ := h.adminCall("POST", "/admin/v1/apps/"+appID+"/events/redeliver", map[string]any{"status": "delivered"}, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bulk redelivery of delivered events: %d", resp.StatusCode)
	}
	if resp, _ := h.adminCall("GET", "/admin/v1/apps/"+appID+"/events?status=lost", nil, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown status: %d", resp.StatusCode)
	}
}

// TestAdminAPIOnTheAdminListener: with a separate admin listener the admin
// API is served there only; the public listener does not know it.
func TestAdminAPIOnTheAdminListener(t *testing.T) {
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.SeparateAdmin = true }})
	if resp, raw := h.adminCall("GET", "/admin/v1/apps", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the admin API on the public listener: %d %s", resp.StatusCode, raw)
	}
	adminTS := httptest.NewServer(h.srv.AdminHandler())
	t.Cleanup(adminTS.Close)
	req, _ := http.NewRequest("GET", adminTS.URL+"/admin/v1/apps", nil)
	req.Header.Set("Authorization", "Bearer "+h.adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the admin API on the admin listener: %d", resp.StatusCode)
	}
}

// The app's backend-for-frontend through the admin API: PATCH turns it on
// and changes it (kept when not given), the views show it, [] turns it off.
func TestAdminAppBFF(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	var got server.AppView
	if resp, raw := h.adminCall("GET", "/admin/v1/apps/"+appID, nil, &got); resp.StatusCode != http.StatusOK || got.BFF != nil || strings.Contains(string(raw), `"bff"`) {
		t.Fatalf("an app with the BFF off: %d %s", resp.StatusCode, raw)
	}
	var changed server.AppChange
	resp, raw := h.adminCall("PATCH", "/admin/v1/apps/"+appID, map[string]any{
		"bff": map[string]any{"origins": []string{"HTTPS://SPA.Example:443/"}, "token_scopes": []string{"streaming"}}}, &changed)
	if resp.StatusCode != http.StatusOK || !slices.Equal(changed.Changed, []string{"bff_origins", "bff_token_scopes"}) ||
		changed.App.BFF == nil || !slices.Equal(changed.App.BFF.Origins, []string{"https://spa.example"}) {
		t.Fatalf("turn the BFF on: %d %s", resp.StatusCode, raw)
	}
	resp, raw = h.adminCall("PATCH", "/admin/v1/apps/"+appID, map[string]any{"bff": map[string]any{"scopes": []string{"user-read-private"}}}, &changed)
	if resp.StatusCode != http.StatusOK || len(changed.App.BFF.Origins) != 1 || changed.App.BFF.TokenScopes.String() != "streaming" ||
		changed.App.BFF.Scopes.String() != "user-read-private" {
		t.Errorf("change the sign-in scopes: %d %s", resp.StatusCode, raw)
	}
	var list server.AppList
	h.adminCall("GET", "/admin/v1/apps", nil, &list)
	if list.Apps[0].ID != appID || list.Apps[0].BFF == nil || list.Apps[1].BFF != nil {
		t.Errorf("the list shows the BFF of %+v", list.Apps)
	}
	for _, body := range []string{`{"bff": {"origins": ["https://spa.example/app"]}}`, `{"bff": {"tokens": []}}`, `{"bff": {"scopes": ["nope"]}}`,
		`{"client_id": "changed", "bff": {"origins": ["*"]}}`} {
		if resp, raw := h.adminCall("PATCH", "/admin/v1/apps/"+appID, body, nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("patch %s: %d %s", body, resp.StatusCode, raw)
		}
	}
	if app, _ := h.store.App(context.Background(), appID); app.ClientID != clientID {
		t.Error("a patch refused for its BFF part changed the app")
	}
	var off server.AppChange
	resp, raw = h.adminCall("PATCH", "/admin/v1/apps/"+appID, map[string]any{"bff": map[string]any{"origins": []string{}}}, &off)
	if resp.StatusCode != http.StatusOK || off.App.BFF != nil {
		t.Errorf("turn the BFF off: %d %s", resp.StatusCode, raw)
	}
}
