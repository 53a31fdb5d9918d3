package console_test

import (
	"bytes"
	"html"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/admin"
	"github.com/spotoken/spotoken/internal/websession"
)

// posts are every form the console accepts, with a form that would
// change something if it were accepted.
func posts(h *harness, keyID string, eventID string) []struct {
	path string
	form url.Values
} {
	return []struct {
		path string
		form url.Values
	}{
		{"/console/logout", url.Values{}},
		{"/dashboard/logout", url.Values{}},
		{"/console/apps/demo/connect-link", url.Values{"connection_id": {"u9"}}},
		{"/dashboard/connect-link", url.Values{"connection_id": {"u9"}}},
		{"/console/apps/demo/connections/u1/connect-link", url.Values{}},
		{"/console/apps/demo/connections/u1/refresh", url.Values{}},
		{"/console/apps/demo/connections/u1/delete", url.Values{}},
		{"/dashboard/connections/u1/delete", url.Values{}},
		{"/console/apps/demo/deliveries/redeliver", url.Values{"status": {"gave_up"}}},
		{"/console/apps/demo/deliveries/" + eventID + "/redeliver", url.Values{}},
		{"/console/apps/demo/keys", url.Values{"name": {"forged"}}},
		{"/console/apps/demo/keys/" + keyID + "/revoke", url.Values{}},
		{"/console/apps/demo/settings", url.Values{"client_id": {"forged"}, "webhook_url": {"https://evil.example/"}}},
		{"/console/apps/demo/client-secret", url.Values{"client_secret": {"forged-secret-0123456789"}}},
		{"/console/apps/demo/client-secret/retire", url.Values{"force": {"1"}}},
		{"/console/apps/demo/webhook-secret/rotate", url.Values{}},
		{"/console/apps/demo/webhook-secret/retire", url.Values{}},
	}
}

// snapshot is what a forged POST must leave as it was.
func (h *harness) snapshot() string {
	h.t.Helper()
	app, err := h.store.App(ctx, appID)
	if err != nil {
		h.t.Fatal(err)
	}
	keys, _ := h.store.APIKeys(ctx, appID)
	evs, _ := h.store.Events(ctx, spotoken.EventFilter{AppID: appID, Limit: 1000})
	conns, _ := h.store.Connections(ctx, spotoken.ConnectionFilter{AppID: appID})
	var b strings.Builder
	b.WriteString(app.ClientID + app.WebhookURL + app.ClientSecret.Reveal() + app.WebhookSecret.Reveal() + app.PreviousWebhookSecret.Reveal())
	for _, k := range keys {
		b.WriteString(k.ID + k.RevokedAt.String())
	}
	for _, e := range evs {
		b.WriteString(string(e.Type) + string(e.Status()))
	}
	for _, c := range conns {
		b.WriteString(c.ID + c.Token.AccessToken.Reveal())
	}
	return b.String()
}

// TestForgedPosts: every form of the console refuses a POST without the
// session's CSRF token, with another session's, and with the right one
// from another origin; nothing changes, and the person stays signed in.
// The right token from the console's origin is accepted (the actions
// themselves are tested elsewhere).
func TestForgedPosts(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	wh := "https://hooks.example/x"
	if _, err := h.admin.UpdateApp(ctx, admin.Actor{Kind: admin.ActorCLI}, appID, admin.AppPatch{WebhookURL: &wh, RotateWebhookSecret: true}); err != nil {
		t.Fatal(err)
	}
	evs, err := h.store.Events(ctx, spotoken.EventFilter{AppID: appID})
	if err != nil || len(evs) == 0 {
		t.Fatalf("events: %v %v", evs, err)
	}
	key, _ := h.store.APIKeyByHash(ctx, spotoken.HashAPIKey(spotoken.Secret(h.apiKey)))

	for _, who := range []struct{ name, credential string }{{"operator", h.adminKey}, {"app team", h.apiKey}} {
		t.Run(who.name, func(t *testing.T) {
			u := newUser(h)
			u.login(who.credential)
			token := u.csrf()
			other := newUser(h)
			other.login(who.credential)
			otherToken := other.csrf()
			before := h.snapshot()
			for _, p := range posts(h, key.ID, "evt_"+strconv.FormatInt(evs[0].ID, 10)) {
				for _, tc := range []struct {
					name   string
					token  string
					header map[string]string
				}{
					{"no token", "", nil},
					{"a wrong token", token[:len(token)-2] + "xx", nil},
					{"another session's token", otherToken, nil},
					{"the right token from another origin", token, map[string]string{"Origin": "http://evil.example"}},
					{"the right token from the emulator's port", token, map[string]string{"Origin": h.emuSrv.URL}},
					{"the right token, cross-site", token, map[string]string{"Sec-Fetch-Site": "cross-site"}},
					{"the right token, same-site", token, map[string]string{"Sec-Fetch-Site": "same-site"}},
					{"the right token, a foreign referer", token, map[string]string{"Referer": "https://evil.example/page"}},
				} {
					form := url.Values{}
					for k, v := range p.form {
						form[k] = v
					}
					if tc.token != "" {
						form.Set("csrf_token", tc.token)
					}
					resp, body := u.do(u.stay, http.MethodPost, p.path, form, tc.header)
					if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Nothing was changed") {
						t.Errorf("POST %s with %s: %d, want 403:\n%.300s", p.path, tc.name, resp.StatusCode, body)
					}
					wantHeaders(t, "403", resp)
				}
			}
			if after := h.snapshot(); after != before {
				t.Error("a refused POST changed something")
			}
			if !strings.Contains(u.page("/console/apps/demo"), `<tr data-connection="u1"`) {
				t.Error("after refused POSTs: not signed in, or u1 gone")
			}
			// The right token from the console's own origin is accepted.
			resp, _ := u.do(u.stay, http.MethodPost, "/console/apps/demo/connections/u1/connect-link", url.Values{"csrf_token": {token}},
				map[string]string{"Origin": h.ts.URL, "Referer": h.ts.URL + "/console/apps/demo", "Sec-Fetch-Site": "same-origin"})
			if resp.StatusCode != http.StatusSeeOther {
				t.Errorf("a connect link with the token from the same origin: %d, want 303", resp.StatusCode)
			}
		})
	}
}

var keyShownRE = regexp.MustCompile(`id="secret-value" type="text" readonly value="([^"]+)"`)

// TestSecretsNeverLeak: everything secret an operator handles in the
// console (the credential, the session cookie and CSRF token, a new API
// key, a webhook secret, a staged client secret, a connect link) and the
// connections' tokens are nowhere in the database files or the log; the
// once-shown ones are shown once: not on the next page, not in the page
// of any other route.
func TestSecretsNeverLeak(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	u := newUser(h)
	u.login(h.adminKey)
	token := u.csrf()

	once := func(path string, form url.Values, re *regexp.Regexp, next string) string {
		t.Helper()
		form.Set("csrf_token", token)
		resp, body := u.post(path, form)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d\n%s", path, resp.StatusCode, body)
		}
		m := re.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("POST %s showed no secret:\n%s", path, body)
		}
		secret := html.UnescapeString(m[1])
		if again := u.page(next); strings.Contains(again, secret) {
			t.Errorf("the secret of POST %s is shown again on %s", path, next)
		}
		return secret
	}
	apiKey := once("/console/apps/demo/keys", url.Values{"name": {"ci"}}, keyShownRE, "/console/apps/demo/keys")
	webhook := "https://hooks.example/x"
	if _, err := h.admin.UpdateApp(ctx, admin.Actor{Kind: admin.ActorCLI}, appID, admin.AppPatch{WebhookURL: &webhook}); err != nil {
		t.Fatal(err)
	}
	webhookSecret := once("/console/apps/demo/webhook-secret/rotate", url.Values{}, keyShownRE, "/console/apps/demo/settings")
	link := once("/console/apps/demo/connections/u1/connect-link", url.Values{}, linkRE, "/console/apps/demo/connections/u1")
	clientSecret := "staged-client-secret-9f8e7d6c5b4a"
	if resp, body := u.post("/console/apps/demo/client-secret", url.Values{"csrf_token": {token}, "client_secret": {clientSecret}}); resp.StatusCode != http.StatusOK ||
		strings.Contains(body, clientSecret) {
		t.Fatalf("staging a client secret: %d, or the page shows it", resp.StatusCode)
	}
	if a, _ := h.store.App(ctx, appID); a.ClientSecret.Reveal() != clientSecret {
		t.Fatal("the client secret was not staged")
	}
	// Every page, afterwards, shows none of them.
	c := h.conn(appID, "u1")
	secrets := map[string]string{
		"admin credential": h.adminKey, "API key": h.apiKey, "new API key": apiKey, "webhook secret": webhookSecret,
		"client secret": clientSecret, "connect link": strings.TrimPrefix(link, h.ts.URL+"/connect/"),
		"session cookie": u.cookie().Value, "access token": c.Token.AccessToken.Reveal(), "refresh token": c.Token.RefreshToken.Reveal(),
	}
	for _, page := range []string{"/console/", "/console/apps/demo", "/console/apps/demo/connections/u1", "/console/apps/demo/deliveries",
		"/console/apps/demo/keys", "/console/apps/demo/settings", "/console/search?q=alice"} {
		body := u.page(page)
		for what, s := range secrets {
			if strings.Contains(body, s) || strings.Contains(body, html.EscapeString(s)) {
				t.Errorf("%s shows the %s", page, what)
			}
		}
	}
	secrets["CSRF token"] = token
	var db []byte
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(h.dbPath + suffix)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		db = append(db, b...)
	}
	if !bytes.Contains(db, []byte("dashboard")) && !bytes.Contains(db, []byte("connection.created")) {
		t.Fatal("the database files hold none of the known plaintext: the search would prove nothing")
	}
	for what, s := range secrets {
		if len(s) < 16 {
			t.Fatalf("the %s %q is too short to search for", what, s)
		}
		if bytes.Contains(db, []byte(s)) {
			t.Errorf("the database files hold the %s", what)
		}
		if strings.Contains(h.logs.String(), s) {
			t.Errorf("the log holds the %s", what)
		}
	}
	// The session's scope is in the clear (it is no secret); its CSRF
	// token and data are sealed.
	if _, err := h.store.WebSession(ctx, websession.IDHash(u.cookie().Value)); err != nil {
		t.Fatalf("the session is not stored: %v", err)
	}
}
