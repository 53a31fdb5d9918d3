package console_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
)

// seed stores n connections of app, c-0000 on, with Spotify users
// spotify-0000 on: every 97th needs re-authorization (its access token
// still "expiring in 59 min"), every 50th is backing off, grants expire a
// few hours apart.
func (h *harness) seed(app string, n int) {
	h.t.Helper()
	now := h.emu.Now()
	for i := range n {
		c := &spotoken.Connection{AppID: app, ID: fmt.Sprintf("c-%04d", i), SpotifyUserID: fmt.Sprintf("spotify-%04d", i),
			DisplayName: fmt.Sprintf("Listener %d", i), State: spotoken.StateActive,
			Scopes: spotoken.Scopes{"playlist-read-private", "user-read-email", "user-read-private", "user-top-read"},
			Token: spotoken.Token{AccessToken: spotoken.Secret(fmt.Sprintf("seed-access-%04d-secret", i)),
				RefreshToken: spotoken.Secret(fmt.Sprintf("seed-refresh-%04d-secret", i)), Expiry: now.Add(59 * time.Minute)},
			ConsentedAt: now.Add(-time.Duration(i) * time.Hour), GrantExpiresAt: now.Add(4380*time.Hour - time.Duration(i)*4*time.Hour),
			LastRefreshAt: now.Add(-time.Minute)}
		if i%97 == 0 && i > 0 {
			c.State, c.LastErrorCode, c.ConsecutiveFailures = spotoken.StateNeedsReauth, "invalid_grant", 1
		}
		if i%50 == 0 && c.State == spotoken.StateActive {
			c.NextAttemptAt, c.ConsecutiveFailures, c.LastErrorCode = now.Add(10*time.Minute), 3, "server_error"
		}
		if err := h.store.CreateConnection(ctx, c); err != nil {
			h.t.Fatal(err)
		}
	}
}

// longID is a connection id as long as one may be, with a Spotify user id
// and a display name as long, to show that nothing long widens a page.
var longID = "c-0000-" + strings.Repeat("a1b2c3d4", 15) + "z"

// seedLong stores the connection longID of app.
func (h *harness) seedLong(app string) {
	h.t.Helper()
	now := h.emu.Now()
	c := &spotoken.Connection{AppID: app, ID: longID, SpotifyUserID: strings.Repeat("spotify", 18), State: spotoken.StateActive,
		DisplayName:   strings.Repeat("Verylongdisplayname", 5),
		Scopes:        spotoken.Scopes{"user-read-email"},
		Token:         spotoken.Token{AccessToken: "long-access-secret", RefreshToken: "long-refresh-secret", Expiry: now.Add(time.Hour)},
		LastErrorCode: strings.Repeat("server_error_", 6), GrantExpiresAt: now.Add(time.Hour * 4000)}
	if err := h.store.CreateConnection(ctx, c); err != nil {
		h.t.Fatal(err)
	}
}

// story gives the demo app's connection id a history: connected (as
// alice), refreshed, a 503, a 429, refreshed again.
func (h *harness) story(id string) {
	h.t.Helper()
	h.connect(id)
	key := spotoken.ConnectionKey{AppID: appID, ID: id}
	retry := 60
	for _, f := range []*emulator.Faults{nil, {TokenStatus: 503, Count: 1}, {TokenStatus: 429, RetryAfter: &retry, Count: 1}, nil} {
		h.emu.Advance(2 * time.Hour) // past the token's expiry, the backoff and any window
		if f != nil {
			if err := h.emu.SetFaults(*f); err != nil {
				h.t.Fatal(err)
			}
		}
		h.engine.Refresh(ctx, key) // failures are the point
		if err := h.emu.SetFaults(emulator.Faults{}); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := h.tally.Flush(ctx); err != nil {
		h.t.Fatal(err)
	}
}

// TestBrowserOperator is issue 15's acceptance, in Chromium: an operator
// signs in, finds a connection by Spotify user among 1,000, opens its page,
// sees its refresh and failure history, mints a connect link, and revokes
// an API key; and on the way uses the filters and sorts, creates an API
// key (shown once), edits the settings, stages and retires a client
// secret, rotates the webhook secret, refreshes and deletes a connection,
// and signs out. Every page is measured at 1280 and 390 px: nothing may
// stick out, and each is kept as a screenshot.
func TestBrowserOperator(t *testing.T) {
	b := newBrowser(t)
	h := newHarness(t, harnessOptions{audit: true})
	h.story("listener-42")
	// A vend, for the audit trail the connection's page shows.
	if resp, raw := h.call("POST", "/v1/connections/listener-42/token", h.apiKey, map[string]any{}, nil); resp.StatusCode != 200 {
		t.Fatalf("vend: %d %s", resp.StatusCode, raw)
	}
	if err := h.trail.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h.seed(appID, 1000)
	h.seedLong(appID)
	t.Logf("1,000 connections stored in %v", time.Since(start).Round(time.Millisecond))
	total := 1002

	b.do("open the console and land on the sign-in page",
		chromedp.Navigate(h.ts.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("credential")),
	)
	if loc := b.location(); loc != h.ts.URL+"/console/login" {
		t.Fatalf("signed out, / took the browser to %s, want the sign-in page", loc)
	}
	b.checkWidths("login")
	b.do("sign in with the admin credential",
		chromedp.SendKeys(chromedp.ID("credential"), h.adminKey),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("apps")),
	)
	row := b.text(`tr[data-app="demo"]`)
	for _, want := range []string{"demo", fmt.Sprint(total), "10", "20"} { // 10 need re-authorization, 20 back off (the long one has only an error)
		if !strings.Contains(row, want) {
			t.Errorf("the apps list's demo row %q lacks %q", row, want)
		}
	}
	b.checkWidths("apps")

	// Find the connection by its Spotify user, among 1,001.
	b.do("search for alice",
		chromedp.SendKeys(chromedp.ID("q"), "alice"),
		chromedp.Click(chromedp.ID("search-button")),
		chromedp.WaitVisible(chromedp.ID("connections")),
	)
	if got := rows(b.html()); fmt.Sprint(got) != "[listener-42]" {
		t.Fatalf("searching alice found %v, want [listener-42]", got)
	}
	b.checkWidths("search")
	b.do("open its page",
		chromedp.Click(chromedp.CSS(`tr[data-connection="listener-42"] a.conn-id`)),
		chromedp.WaitVisible(chromedp.ID("timeline")),
	)
	if loc := b.location(); loc != h.ts.URL+"/console/apps/demo/connections/listener-42" {
		t.Errorf("the connection's page is %s", loc)
	}
	timeline := b.text("#timeline")
	for _, want := range []string{"Connected", "Refreshed", "Refresh failed", "server_error", "rate_limited", "attempt 1", "attempt 2"} {
		if !strings.Contains(timeline, want) {
			t.Errorf("the timeline lacks %q:\n%s", want, timeline)
		}
	}
	if n := strings.Count(b.html(), `data-type="connection.refreshed"`); n != 2 {
		t.Errorf("the timeline shows %d refreshes, want 2", n)
	}
	if !strings.Contains(b.text("#not-shown"), "never hands out a refresh token") {
		t.Error("the page does not say what it cannot show")
	}
	if audit := b.text("#audit"); !strings.Contains(audit, "token.vend") || !strings.Contains(audit, "connection.connect") {
		t.Errorf("the audit trail on the page lacks the vend or the connect:\n%s", audit)
	}
	b.checkWidths("connection")

	b.do("mint a connect link",
		chromedp.Click(chromedp.ID("make-link")),
		chromedp.WaitVisible(chromedp.ID("connect-link")),
	)
	link := b.value("#connect-link")
	if !strings.HasPrefix(link, h.ts.URL+"/connect/cs_") {
		t.Fatalf("the connect link is %q", link)
	}
	b.shot("console-connection-link-1280.png")
	b.navigate("reload: the link is shown once", "#timeline", chromedp.Reload())
	if b.has("#connect-link") {
		t.Error("the connect link is shown again after a reload")
	}

	b.navigate("force a refresh", "#notice", chromedp.Click(chromedp.ID("force-refresh")))
	if got := b.text("#notice"); !strings.Contains(got, "Refreshed") {
		t.Errorf("after Refresh now the page says %q", got)
	}
	if n := strings.Count(b.html(), `data-type="connection.refreshed"`); n != 3 {
		t.Errorf("after Refresh now the timeline shows %d refreshes, want 3", n)
	}

	// The connections list: a needs_reauth row says nothing of an access
	// token expiring; the filters and orders.
	b.do("go to the app's connections",
		chromedp.Click(chromedp.CSS(`nav.tabs a[href="/console/apps/demo"]`)),
		chromedp.WaitVisible(chromedp.ID("connections")),
	)
	if got := rows(b.html()); len(got) != 50 || got[1] != longID {
		t.Errorf("the first page shows %d connections, want 50, the long id second", len(got))
	}
	b.checkWidths("app")
	b.do("filter: needs re-authorization",
		chromedp.SetValue(chromedp.ID("f-state"), "needs_reauth"),
		chromedp.Click(chromedp.ID("apply")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-connection="c-0097"]`)),
	)
	if got := rows(b.html()); len(got) != 10 || got[0] != "c-0097" {
		t.Errorf("needs_reauth shows %v, want the 10 of them", got)
	}
	reauth := b.text(`tr[data-connection="c-0097"]`)
	if strings.Contains(reauth, "59 min") || !strings.Contains(reauth, "not served") {
		t.Errorf("a needs_reauth row says %q: it must not show an access token expiring", reauth)
	}
	if !b.has(`tr[data-connection="c-0097"] button[aria-label="Make a connect link for c-0097"]`) {
		t.Error("a needs_reauth row offers no connect link")
	}
	b.checkWidths("app-needs-reauth")
	b.navigate("filter: backing off", "#order",
		chromedp.SetValue(chromedp.ID("f-state"), ""),
		chromedp.Click(chromedp.ID("f-backoff")),
		chromedp.Click(chromedp.ID("apply")),
	)
	if got := rows(b.html()); len(got) != 20 || got[0] != "c-0000" {
		t.Errorf("backing off shows %v, want the 20 of them", got)
	}
	if !strings.Contains(b.text(`tr[data-connection="c-0050"]`), "retry in 10 min") {
		t.Errorf("a row backing off does not say when it is retried: %q", b.text(`tr[data-connection="c-0050"]`))
	}
	b.navigate("filter: grants expiring within 30 days, soonest first", "#order",
		chromedp.Click(chromedp.ID("f-backoff")),
		chromedp.SetValue(chromedp.ID("f-expiring"), "30"),
		chromedp.Click(chromedp.ID("apply")),
	)
	// Grants end 4380h - 4h·i from now: within 30 days (720h) for i from
	// 916 to 999, less c-0970, which needs re-authorization: 83.
	if got := rows(b.html()); len(got) != 50 || got[0] != "c-0999" || got[1] != "c-0998" {
		t.Errorf("expiring within 30 days shows %v…, want c-0999, c-0998 first", got[:min(3, len(got))])
	}
	b.do("the next page",
		chromedp.Click(chromedp.ID("next-page")),
		chromedp.WaitVisible(chromedp.ID("first-page")),
	)
	if got := rows(b.html()); len(got) != 83-50 || got[0] != "c-0948" {
		t.Errorf("the second page of expiring grants shows %d from %v, want 33 from c-0948", len(got), got[:min(1, len(got))])
	}
	b.do("order by id, all",
		chromedp.Navigate(h.ts.URL+"/console/apps/demo?sort=id"),
		chromedp.WaitVisible(chromedp.ID("next-page")),
		chromedp.Click(chromedp.ID("next-page")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-connection="c-0050"]`)),
	)

	// API keys: create one (shown once), revoke the team's.
	b.do("open the API keys",
		chromedp.Click(chromedp.ID("tab-keys")),
		chromedp.WaitVisible(chromedp.ID("keys")),
	)
	b.do("create an API key",
		chromedp.SendKeys(chromedp.ID("key-name"), "ci-bot"),
		chromedp.Click(chromedp.ID("create-key")),
		chromedp.WaitVisible(chromedp.ID("secret-value")),
	)
	newKey := b.value("#secret-value")
	rec, err := h.store.APIKeyByHash(ctx, spotoken.HashAPIKey(spotoken.Secret(newKey)))
	if err != nil || rec.Name != "ci-bot" || rec.AppID != appID {
		t.Fatalf("the key shown (%q…) is not a stored key of demo named ci-bot: %+v %v", newKey[:min(6, len(newKey))], rec, err)
	}
	b.checkWidths("keys-created")
	b.navigate("reload: the key is shown once", "#keys", chromedp.Reload())
	if b.has("#secret-value") || strings.Contains(b.html(), newKey) {
		t.Error("the new API key is shown again after a reload")
	}
	team, err := h.store.APIKeyByHash(ctx, spotoken.HashAPIKey(spotoken.Secret(h.apiKey)))
	if err != nil {
		t.Fatal(err)
	}
	b.do("open the team key's Revoke…",
		chromedp.Click(chromedp.CSS(`tr[data-key="`+team.ID+`"] summary`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-key="`+team.ID+`"] button.danger`)),
	)
	b.checkWidths("keys-revoke-open")
	b.do("revoke the team's key",
		chromedp.Click(chromedp.CSS(`tr[data-key="`+team.ID+`"] button.danger`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-key="`+team.ID+`"][data-status="revoked"]`)),
	)
	if got, _ := h.store.APIKeyByHash(ctx, team.Hash); got == nil || !got.Revoked() {
		t.Error("the team's key is not revoked in the store")
	}
	if resp, _ := h.call("GET", "/v1/connections", h.apiKey, nil, nil); resp.StatusCode != 401 {
		t.Errorf("the API with the revoked key: %d, want 401", resp.StatusCode)
	}
	b.checkWidths("keys")

	// Settings: every setting, the client secret, the webhook secret.
	b.do("open the settings",
		chromedp.Click(chromedp.ID("tab-settings")),
		chromedp.WaitVisible(chromedp.ID("settings")),
	)
	b.checkWidths("settings")
	b.do("give the app a webhook URL and another default scope",
		chromedp.SetValue(chromedp.ID("s-webhook"), "https://hooks.example/spotoken"),
		chromedp.SetValue(chromedp.ID("s-scopes"), "user-read-email user-top-read"),
		chromedp.SetValue(chromedp.ID("s-origins"), "https://app.example\nhttps://beta.app.example"),
		chromedp.Click(chromedp.ID("save-settings")),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	if got := b.text("#notice"); !strings.Contains(got, "default_scopes, return_to_origins, webhook_url") {
		t.Errorf("after saving the page says %q", got)
	}
	webhookSecret := b.value("#secret-value")
	app, err := h.store.App(ctx, appID)
	if err != nil {
		t.Fatal(err)
	}
	if app.WebhookURL != "https://hooks.example/spotoken" || app.DefaultScopes.String() != "user-read-email user-top-read" ||
		len(app.ReturnToOrigins) != 2 || app.WebhookSecret.Reveal() != webhookSecret {
		t.Errorf("after saving, the app is %+v (webhook secret shown matches: %v)", app, app.WebhookSecret.Reveal() == webhookSecret)
	}
	b.do("a setting that is not valid",
		chromedp.SetValue(chromedp.ID("s-webhook"), "ftp://nope"),
		chromedp.Click(chromedp.ID("save-settings")),
		chromedp.WaitVisible(chromedp.ID("error")),
	)
	if got := b.value("#s-webhook"); got != "ftp://nope" {
		t.Errorf("the refused form lost what was typed: %q", got)
	}
	if a, _ := h.store.App(ctx, appID); a.WebhookURL != "https://hooks.example/spotoken" {
		t.Error("a refused form changed the webhook URL")
	}
	b.checkWidths("settings-error")
	b.do("back to the settings", chromedp.Navigate(h.ts.URL+"/console/apps/demo/settings"), chromedp.WaitVisible(chromedp.ID("s-secret")))
	b.navigate("stage a client secret (a public app gets one)", "#notice",
		chromedp.SendKeys(chromedp.ID("s-secret"), "first-client-secret-0123456789"),
		chromedp.Click(chromedp.ID("stage-secret")),
	)
	b.navigate("stage another: a rotation", "#retire-secret",
		chromedp.SendKeys(chromedp.ID("s-secret"), "second-client-secret-0123456789"),
		chromedp.Click(chromedp.ID("stage-secret")),
	)
	if a, _ := h.store.App(ctx, appID); a.ClientSecret.Reveal() != "second-client-secret-0123456789" || a.PreviousClientSecret.Reveal() != "first-client-secret-0123456789" {
		t.Errorf("after staging twice: current %v, previous %v", a.ClientSecret != "", a.PreviousClientSecret != "")
	}
	b.navigate("retire the previous client secret, forced (the emulator knows neither)", "#notice",
		chromedp.Click(chromedp.CSS(`input[name="force"]`)),
		chromedp.Click(chromedp.ID("retire-secret")),
	)
	if a, _ := h.store.App(ctx, appID); a.PreviousClientSecret != "" {
		t.Error("the previous client secret was not retired")
	}
	b.do("rotate the webhook secret",
		chromedp.Click(chromedp.ID("rotate-webhook-secret")),
		chromedp.WaitVisible(chromedp.ID("secret-value")),
	)
	rotated := b.value("#secret-value")
	if a, _ := h.store.App(ctx, appID); a.WebhookSecret.Reveal() != rotated || a.PreviousWebhookSecret.Reveal() != webhookSecret {
		t.Error("the rotated webhook secret shown is not the app's, or the previous one was not kept")
	}
	b.navigate("retire the previous webhook secret", "#notice", chromedp.Click(chromedp.ID("retire-webhook-secret")))
	if a, _ := h.store.App(ctx, appID); a.PreviousWebhookSecret != "" {
		t.Error("the previous webhook secret was not retired")
	}

	// Deliveries and the charts.
	b.do("open the deliveries",
		chromedp.Click(chromedp.CSS(`nav.tabs a[href="/console/apps/demo/deliveries"]`)),
		chromedp.WaitVisible(chromedp.ID("deliveries")),
	)
	b.checkWidths("deliveries")
	b.do("back to the app page", chromedp.Navigate(h.ts.URL+"/console/apps/demo"), chromedp.WaitVisible(chromedp.ID("chart-refreshed")))
	for id, want := range map[string]string{"refreshed": "2", "failed": "1", "rate_limited": "1"} {
		got, err := chromedp.Run(b.ctx, chromedp.AttributeValue(chromedp.ID("chart-"+id), "data-total"))
		if err != nil || got.Value != want {
			t.Errorf("chart %s totals %q (%v), want %s (the story refreshes, flushed before the page)", id, got.Value, err, want)
		}
	}

	// Delete a connection, then sign out.
	b.do("delete listener-42",
		chromedp.Navigate(h.ts.URL+"/console/apps/demo/connections/listener-42"),
		chromedp.WaitVisible(chromedp.CSS("#delete summary")),
		chromedp.Click(chromedp.CSS("#delete summary")),
		chromedp.WaitVisible(chromedp.ID("confirm-delete")),
	)
	b.checkWidths("connection-delete-open")
	b.do("confirm the deletion",
		chromedp.Click(chromedp.ID("confirm-delete")),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	if h.exists(appID, "listener-42") {
		t.Error("listener-42 was not deleted")
	}
	b.do("sign out",
		chromedp.Click(chromedp.ID("sign-out")),
		chromedp.WaitVisible(chromedp.ID("credential")),
	)
	b.do("the console asks to sign in again",
		chromedp.Navigate(h.ts.URL+"/console/apps/demo"),
		chromedp.WaitVisible(chromedp.ID("credential")),
	)
}
