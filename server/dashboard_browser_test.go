package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/browsertest"
)

// The dashboard's browser test drives a real headless Chromium as a person
// would: type the API key, read the table, make a connect link, delete a
// connection with the mouse.
//
// It skips when no chromium is installed, unless SPOTOKEN_TEST_BROWSER is
// "required". SPOTOKEN_TEST_SCREENSHOT_DIR, when set, also receives the
// screenshots (dashboard-link.png, dashboard.png).

const dashBrowserTimeout = 60 * time.Second

// newDashBrowser starts a fresh headless Chromium (own profile, so no cookie
// from another test) and returns a tab context bounded by dashBrowserTimeout.
func newDashBrowser(t *testing.T) context.Context {
	t.Helper()
	return browsertest.New(t, dashBrowserTimeout, 1280, 900)
}

// dashShot writes a full-page screenshot to t.TempDir() and, when
// SPOTOKEN_TEST_SCREENSHOT_DIR is set, there too.
func dashShot(t *testing.T, ctx context.Context, name string) { browsertest.Screenshot(t, ctx, name) }

func rowOf(id string) chromedp.CSS { return chromedp.CSS(`tr[data-connection="` + id + `"]`) }

func TestDashboardBrowser(t *testing.T) {
	ctx := newDashBrowser(t) // first, so a missing chromium skips before anything else starts
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	h.connect("u2")
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	text := func(sel chromedp.CSS) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("browser: read %s: %v", sel, err)
		}
		return s
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatalf("browser: location: %v", err)
		}
		return loc
	}

	do("open the dashboard and land on the login page",
		chromedp.Navigate(h.ts.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("api_key")),
	)
	if loc := location(); loc != h.ts.URL+"/dashboard/login" {
		t.Fatalf("signed out, / took the browser to %s, want the login page", loc)
	}
	do("type a wrong key and sign in",
		chromedp.SendKeys(chromedp.ID("api_key"), "sk_not-a-key"),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("error")),
	)
	if got := text(chromedp.CSS("#error")); !strings.Contains(got, "not valid") {
		t.Errorf("after a wrong key the page says %q", got)
	}
	do("type the API key and sign in",
		chromedp.SendKeys(chromedp.ID("api_key"), h.apiKey),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("connections")),
	)
	row := text(rowOf("u1"))
	for _, want := range []string{"u1", "alice", "Active", "user-read-email"} {
		if !strings.Contains(row, want) {
			t.Errorf("u1's row %q lacks %q", row, want)
		}
	}

	do("make a connect link for a new user",
		chromedp.SendKeys(chromedp.ID("connection_id"), "u3"),
		chromedp.Click(chromedp.ID("create-link")),
		chromedp.WaitVisible(chromedp.ID("connect-link")),
	)
	link, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("connect-link")))
	if err != nil {
		t.Fatalf("browser: read the connect link: %v", err)
	}
	if !strings.HasPrefix(link, h.ts.URL+"/connect/cs_") {
		t.Fatalf("the connect link is %q", link)
	}
	dashShot(t, ctx, "dashboard-link.png")

	// The user opens the link (the emulator approves at once) and is connected.
	do("open the connect link",
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.CSS(`#result[data-outcome="connected"]`)),
	)
	do("back to the dashboard, which lists u3",
		chromedp.Navigate(h.ts.URL+"/"),
		chromedp.WaitVisible(rowOf("u3")),
	)

	do("delete u1 by clicking",
		chromedp.Click(chromedp.CSS(`tr[data-connection="u1"] summary`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-connection="u1"] button.danger`)),
		chromedp.Click(chromedp.CSS(`tr[data-connection="u1"] button.danger`)),
		chromedp.WaitVisible(chromedp.ID("notice")),
		chromedp.WaitNotPresent(rowOf("u1")),
	)
	if got := text(chromedp.CSS("#notice")); !strings.Contains(got, "Deleted connection u1") {
		t.Errorf("the notice says %q", got)
	}
	if h.exists(appID, "u1") || !h.exists(appID, "u2") || !h.exists(appID, "u3") {
		t.Error("after clicking Delete on u1: u1 is still stored, or u2 or u3 is gone")
	}
	if got := h.revokedEvents(); len(got) != 1 || got[0] != appID+"/u1" {
		t.Errorf("connection.revoked events %v, want [demo/u1]", got)
	}
	for _, id := range []string{"u2", "u3"} {
		c, err := h.store.Connection(context.Background(), spotoken.ConnectionKey{AppID: appID, ID: id})
		if err != nil {
			t.Fatal(err)
		}
		page, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(page, c.Token.AccessToken.Reveal()) || strings.Contains(page, c.Token.RefreshToken.Reveal()) {
			t.Errorf("the page shows %s's tokens", id)
		}
	}
	dashShot(t, ctx, "dashboard.png")

	do("sign out",
		chromedp.Click(chromedp.ID("sign-out")),
		chromedp.WaitVisible(chromedp.ID("api_key")),
	)
	do("the dashboard asks to sign in again",
		chromedp.Navigate(h.ts.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("api_key")),
	)
}
