package console_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserAppTeam: an app's team signs in with one of its API keys and
// sees that app only: its connections (searching them, a connect link for
// a new user, which connects in the same browser, a deletion), never
// another app's, never its keys or settings.
func TestBrowserAppTeam(t *testing.T) {
	b := newBrowser(t)
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	h.connect("u2")
	h.connectAs(h.otherKey, "theirs")

	b.do("sign in with the app's API key",
		chromedp.Navigate(h.ts.URL+"/dashboard/login"),
		chromedp.WaitVisible(chromedp.ID("credential")),
		chromedp.SendKeys(chromedp.ID("credential"), h.apiKey),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("connections")),
	)
	if loc := b.location(); loc != h.ts.URL+"/console/apps/demo" {
		t.Errorf("an app team lands on %s, want its app's page", loc)
	}
	if b.has("#tab-keys") || b.has("#tab-settings") || b.has(`a.up`) {
		t.Error("an app team is offered the keys, the settings, or the list of apps")
	}
	if got := rows(b.html()); strings.Join(got, " ") != "u1 u2" {
		t.Errorf("demo's team sees %v, want u1 u2", got)
	}
	b.checkWidths("team-app")

	b.navigate("search: alice is demo's and the other app's user", "#connections",
		chromedp.SendKeys(chromedp.ID("q"), "alice"), chromedp.Click(chromedp.ID("search-button")))
	if got := rows(b.html()); strings.Join(got, " ") != "u1 u2" {
		t.Errorf("searching alice, demo's team finds %v, want u1 u2 and not the other app's", got)
	}
	b.navigate("search another app's connection id", "#no-connections",
		chromedp.SetValue(chromedp.ID("q"), "theirs"), chromedp.Click(chromedp.ID("search-button")))

	b.navigate("make a connect link for a new user", "#connect-link",
		chromedp.Navigate(h.ts.URL+"/console/apps/demo"),
		chromedp.WaitVisible(chromedp.ID("connection_id")),
		chromedp.SendKeys(chromedp.ID("connection_id"), "u3"),
		chromedp.Click(chromedp.ID("create-link")),
	)
	link := b.value("#connect-link")
	if !strings.HasPrefix(link, h.ts.URL+"/connect/cs_") {
		t.Fatalf("the connect link is %q", link)
	}
	b.checkWidths("team-link")
	b.do("the user opens the link (the emulator approves at once)",
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.CSS(`#result[data-outcome="connected"]`)),
	)
	b.navigate("back to the console, which lists u3", `tr[data-connection="u3"]`, chromedp.Navigate(h.ts.URL+"/console/apps/demo"))

	b.navigate("open u1", "#delete", chromedp.Click(chromedp.CSS(`tr[data-connection="u1"] a.conn-id`)))
	if b.has(`#timeline button`) {
		t.Error("an app team is offered redelivery")
	}
	b.navigate("delete u1", "#notice",
		chromedp.Click(chromedp.CSS("#delete summary")),
		chromedp.WaitVisible(chromedp.ID("confirm-delete")),
		chromedp.Click(chromedp.ID("confirm-delete")),
	)
	if h.exists(appID, "u1") || !h.exists(appID, "u2") {
		t.Error("u1 is not deleted, or u2 is")
	}
	if got := h.revokedEvents(); strings.Join(got, " ") != "demo/u1" {
		t.Errorf("connection.revoked events %v, want demo/u1", got)
	}

	b.navigate("another app's page", "#problem", chromedp.Navigate(h.ts.URL+"/console/apps/other"))
	if got := b.text("#error"); !strings.Contains(got, `no app "other", or it is not yours`) {
		t.Errorf("another app's page says %q", got)
	}
	b.checkWidths("team-not-yours")
	b.navigate("the keys", "#problem", chromedp.Navigate(h.ts.URL+"/console/apps/demo/keys"))
	if got := b.text("#error"); !strings.Contains(got, "Only operators") {
		t.Errorf("the keys page says %q to an app team", got)
	}
	page := b.html()
	for _, id := range []string{"u2", "u3"} {
		c := h.conn(appID, id)
		if strings.Contains(page, c.Token.AccessToken.Reveal()) || strings.Contains(page, c.Token.RefreshToken.Reveal()) {
			t.Errorf("a page shows %s's tokens", id)
		}
	}
	b.navigate("sign out", "#credential", chromedp.Click(chromedp.ID("sign-out")))
}
