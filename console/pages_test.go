package console_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/console"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/sqlite"
)

// TestPages: every page renders for whom it is for, with the console's
// headers, as HTML; an app team gets 404 for another app and 403 for an
// operator's page; malformed queries get 400 with the reason.
func TestPages(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	h.connectAs(h.otherKey, "theirs")
	op, team := newUser(h), newUser(h)
	op.login(h.adminKey)
	team.login(h.apiKey)
	for _, tc := range []struct {
		who          *user
		path         string
		status       int
		says, absent string
	}{
		{op, "/console/", 200, `<tr data-app="other">`, ""},
		{op, "/console/apps/demo", 200, `<tr data-connection="u1"`, "theirs"},
		{op, "/console/apps/other", 200, `<tr data-connection="theirs"`, ""},
		{op, "/console/apps/demo/connections/u1", 200, `id="timeline"`, ""},
		{op, "/console/apps/other/connections/theirs", 200, `id="timeline"`, ""},
		{op, "/console/apps/demo/deliveries", 200, `id="deliveries"`, ""},
		{op, "/console/apps/demo/deliveries?status=gave_up", 200, `id="no-events"`, ""},
		{op, "/console/apps/demo/keys", 200, `id="keys"`, ""},
		{op, "/console/apps/demo/settings", 200, `id="settings"`, ""},
		{op, "/console/search?q=theirs", 200, `<tr data-connection="theirs"`, ""},
		{op, "/console/search?q=alice", 200, `<tr data-connection="u1"`, ""},
		{op, "/console/apps/nope", 404, `There is no app &#34;nope&#34;`, ""},
		{op, "/console/apps/demo/connections/nobody", 404, `no connection &#34;nobody&#34;`, ""},
		{op, "/console/apps/demo/connections/bad%20id", 400, "The connection ID must be", ""},
		{op, "/console/apps/demo?state=bogus", 400, "The state filter must be", ""},
		{op, "/console/apps/demo?state=active&state=revoked", 400, "The parameter state is repeated", ""},
		{op, "/console/apps/demo?expiring=0", 400, "number of days from 1 to 3650", ""},
		{op, "/console/apps/demo?sort=fastest", 400, "The order must be", ""},
		{op, "/console/apps/demo?cursor=" + url.QueryEscape("not a cursor!"), 400, "not one this console made", ""},
		{op, "/console/apps/demo?expiring=7&cursor=abc", 400, "not one this console made", ""},
		{op, "/console/apps/demo/deliveries?status=lost", 400, "The status must be", ""},
		{op, "/console/apps/demo/deliveries?cursor=-3", 400, "not one this console made", ""},
		{op, "/console/apps/demo/connections/u1?before=x", 400, "not one this console made", ""},
		{op, "/console/search?q=", 400, "Type a connection ID", ""},
		{op, "/console/search?q=" + url.QueryEscape("a\x01b"), 400, "at most 128 printable", ""},
		{op, "/console/search?q=" + strings.Repeat("x", 200), 400, "at most 128 printable", ""},
		{team, "/console/", 200, `<tr data-connection="u1"`, "theirs"}, // to its app
		{team, "/console/apps/demo", 200, `<tr data-connection="u1"`, `id="tab-keys"`},
		{team, "/console/apps/demo/connections/u1", 200, `id="timeline"`, "Redeliver"},
		{team, "/console/apps/demo/deliveries", 200, `id="deliveries"`, "Redeliver"},
		{team, "/console/search?q=theirs", 200, `id="no-connections"`, `data-connection="theirs"`},
		{team, "/console/apps/other", 404, `There is no app &#34;other&#34;, or it is not yours to see.`, ""},
		{team, "/console/apps/other/connections/theirs", 404, "not yours to see", ""},
		{team, "/console/apps/other/deliveries", 404, "not yours to see", ""},
		{team, "/console/apps/demo/keys", 403, "Only operators", ""},
		{team, "/console/apps/demo/settings", 403, "Only operators", ""},
	} {
		resp, body := tc.who.get(tc.path)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.says) || tc.absent != "" && strings.Contains(body, tc.absent) {
			t.Errorf("GET %s: %d, want %d with %q and without %q:\n%.2000s", tc.path, resp.StatusCode, tc.status, tc.says, tc.absent, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" || !strings.HasPrefix(body, "<!doctype html>") {
			t.Errorf("GET %s: %s", tc.path, ct)
		}
		wantHeaders(t, "GET "+tc.path, resp)
	}
	// The stylesheet is the console's own, served beside it, cacheable.
	resp, css := op.get("/console/static/console.css")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || !strings.Contains(css, ".list") ||
		resp.Header.Get("Cache-Control") != "public, max-age=3600" {
		t.Errorf("the stylesheet: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
	}
	// The API's answers stay JSON.
	resp, _ = op.get("/v1/connections")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusUnauthorized || ct != "application/json" {
		t.Errorf("GET /v1/connections: %d %s", resp.StatusCode, ct)
	}
}

// TestMalformedForms: bad forms get the reason, with the console's
// headers, and change nothing.
func TestMalformedForms(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	u := newUser(h)
	u.login(h.adminKey)
	token := u.csrf()
	before := h.snapshot()
	for _, tc := range []struct {
		name, path string
		body       any
		ctype      string
		status     int
		says       string
	}{
		{"bad connection id", "/console/apps/demo/connect-link", url.Values{"csrf_token": {token}, "connection_id": {"not valid!"}}, "", 400, "The connection ID must be"},
		{"empty connection id", "/console/apps/demo/connect-link", url.Values{"csrf_token": {token}, "connection_id": {""}}, "", 400, "The connection ID must be"},
		{"long connection id", "/console/apps/demo/connect-link", url.Values{"csrf_token": {token}, "connection_id": {strings.Repeat("a", 129)}}, "", 400, "The connection ID must be"},
		{"the app itself", "/console/apps/demo/connect-link", url.Values{"csrf_token": {token}, "connection_id": {"-"}}, "", 400, "names the app itself"},
		{"bad id in the path", "/console/apps/demo/connections/u1%20x/delete", url.Values{"csrf_token": {token}}, "", 400, "The connection ID must be"},
		{"nobody", "/console/apps/demo/connections/nobody/delete", url.Values{"csrf_token": {token}}, "", 404, "no connection &#34;nobody&#34;"},
		{"refresh nobody", "/console/apps/demo/connections/nobody/refresh", url.Values{"csrf_token": {token}}, "", 404, "no connection"},
		{"no such app", "/console/apps/nope/keys", url.Values{"csrf_token": {token}, "name": {"x"}}, "", 404, "not found"},
		{"bad escape", "/console/apps/demo/connections/u1/delete", "csrf_token=" + token + "&x=%zz", "", 400, "The form is malformed"},
		{"repeated field", "/console/apps/demo/connections/u1/delete", url.Values{"csrf_token": {token, token}}, "", 400, "The form field csrf_token is repeated"},
		{"unknown field", "/console/apps/demo/connections/u1/delete", url.Values{"csrf_token": {token}, "confirm": {"yes"}}, "", 400, "unknown field &#34;confirm&#34;"},
		{"JSON", "/console/apps/demo/connections/u1/delete", `{"csrf_token":"` + token + `"}`, "application/json", 400, "application/x-www-form-urlencoded"},
		{"too large", "/console/apps/demo/connect-link", url.Values{"csrf_token": {token}, "connection_id": {strings.Repeat("a", 20000)}}, "", 413, "The form is over 16384 bytes"},
		{"login too large", "/console/login", url.Values{"credential": {strings.Repeat("a", 20000)}}, "", 413, "The form is over"},
		{"login unknown field", "/console/login", url.Values{"credential": {h.apiKey}, "remember": {"1"}}, "", 400, "unknown field"},
		{"bad key name", "/console/apps/demo/keys", url.Values{"csrf_token": {token}, "name": {"bell\x07"}}, "", 400, "printable"},
		{"revoke no key", "/console/apps/demo/keys/key_nope/revoke", url.Values{"csrf_token": {token}}, "", 404, "not found"},
		{"no event", "/console/apps/demo/deliveries/evt_999/redeliver", url.Values{"csrf_token": {token}}, "", 404, "has no event evt_999"},
		{"not an event", "/console/apps/demo/deliveries/evt_x/redeliver", url.Values{"csrf_token": {token}}, "", 404, "There is no event"},
		{"redeliver pending", "/console/apps/demo/deliveries/redeliver", url.Values{"csrf_token": {token}, "status": {"pending"}}, "", 400, "Only failed or given-up"},
		{"empty client secret", "/console/apps/demo/client-secret", url.Values{"csrf_token": {token}, "client_secret": {" "}}, "", 400, "Paste the new client secret"},
		{"retire without rotation", "/console/apps/demo/client-secret/retire", url.Values{"csrf_token": {token}}, "", 409, "no rotation is under way"},
		{"rotate without a webhook", "/console/apps/demo/webhook-secret/rotate", url.Values{"csrf_token": {token}}, "", 400, "no webhook URL"},
		{"retire webhook without rotation", "/console/apps/demo/webhook-secret/retire", url.Values{"csrf_token": {token}}, "", 409, "no rotation is under way"},
		{"invalid settings", "/console/apps/demo/settings", url.Values{"csrf_token": {token}, "client_id": {""}, "redirect_uris": {""}}, "", 400, "Nothing was changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.ctype != "" {
				hdr["Content-Type"] = tc.ctype
			}
			resp, body := u.do(u.stay, http.MethodPost, tc.path, tc.body, hdr)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.says) || !strings.Contains(body, `role="alert"`) {
				t.Errorf("%d, want %d saying %q:\n%.1500s", resp.StatusCode, tc.status, tc.says, body)
			}
			wantHeaders(t, tc.name, resp)
		})
	}
	if h.snapshot() != before {
		t.Error("a malformed form changed something")
	}
}

// TestConnectLinkMisconfiguredApp: an app without this server's redirect
// URI gets no link, and the page says why.
func TestConnectLinkMisconfiguredApp(t *testing.T) {
	h := newHarness(t, harnessOptions{app: func(a *spotoken.App) { a.RedirectURIs = []string{"https://elsewhere.example/callback"} }})
	u := newUser(h)
	u.login(h.apiKey)
	resp, body := u.post("/console/apps/demo/connect-link", url.Values{"csrf_token": {u.csrf()}, "connection_id": {"u2"}})
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "has no redirect URI") || linkRE.MatchString(body) {
		t.Errorf("connect link for a misconfigured app: %d, want 502 saying why:\n%s", resp.StatusCode, body)
	}
}

// TestDeleteOtherApp: an app team cannot delete, refresh or send a link
// for another app's connection, through the console's URLs or the
// dashboard's.
func TestDeleteOtherApp(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	u := newUser(h)
	u.login(h.otherKey)
	token := u.csrf()
	for _, path := range []string{"/console/apps/demo/connections/u1/delete", "/console/apps/demo/connections/u1/refresh",
		"/console/apps/demo/connections/u1/connect-link", "/dashboard/connections/u1/delete"} {
		resp, _ := u.post(path, url.Values{"csrf_token": {token}})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST %s by the other app: %d, want 404", path, resp.StatusCode)
		}
	}
	if !h.exists(appID, "u1") || len(h.revokedEvents()) != 0 {
		t.Fatal("the other app deleted demo's u1")
	}
}

// TestDashboardForms: the dashboard's forms, from a page loaded before the
// console, still work for an app team.
func TestDashboardForms(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	u := newUser(h)
	u.login(h.apiKey)
	token := u.csrf()
	resp, body := u.post("/dashboard/connect-link", url.Values{"csrf_token": {token}, "connection_id": {" u2 "}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/console/apps/demo" || !strings.Contains(body, "Connect link for u2") {
		t.Errorf("the dashboard's connect link form: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	resp, body = u.post("/dashboard/connections/u1/delete", url.Values{"csrf_token": {token}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Deleted connection u1") || h.exists(appID, "u1") {
		t.Errorf("the dashboard's delete form: %d", resp.StatusCode)
	}
	resp, body = u.post("/dashboard/logout", url.Values{"csrf_token": {token}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "You are signed out") {
		t.Errorf("the dashboard's sign-out form: %d", resp.StatusCode)
	}
	// An operator has no dashboard: those forms named no app.
	op := newUser(h)
	op.login(h.adminKey)
	if resp, _ := op.post("/dashboard/connect-link", url.Values{"csrf_token": {op.csrf()}, "connection_id": {"u3"}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the dashboard's connect link form for an operator: %d, want 404", resp.StatusCode)
	}
}

// TestPagination: 57 connections page by 50 by id, with the state filter
// and its cursor together.
func TestPagination(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	now := h.emu.Now()
	var ids []string
	for i := range 57 {
		id := fmt.Sprintf("p%03d", i)
		st := spotoken.StateActive
		if i%10 == 3 {
			st = spotoken.StateNeedsReauth
		}
		if err := h.store.CreateConnection(ctx, &spotoken.Connection{AppID: appID, ID: id, State: st, SpotifyUserID: "user" + id,
			Token:          spotoken.Token{AccessToken: spotoken.Secret("at-" + id), RefreshToken: spotoken.Secret("rt-" + id), Expiry: now.Add(time.Hour)},
			GrantExpiresAt: now.Add(time.Duration(100-i) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	u := newUser(h)
	first := u.login(h.apiKey)
	var seen []string
	page := first
	for n := 0; ; n++ {
		if n > 3 {
			t.Fatal("more pages than there should be")
		}
		seen = append(seen, rows(page)...)
		if strings.Contains(page, "at-p0") || strings.Contains(page, "rt-p0") {
			t.Fatal("a page shows a token")
		}
		next := regexp.MustCompile(`<a href="([^"]+)" rel="next"`).FindStringSubmatch(page)
		if next == nil {
			break
		}
		page = u.page(html.UnescapeString(next[1]))
		if !strings.Contains(page, "« First page") {
			t.Error("a later page has no link to the first")
		}
	}
	if fmt.Sprint(seen) != fmt.Sprint(ids) {
		t.Errorf("the pages showed %d connections %v, want %d", len(seen), seen, len(ids))
	}
	body := u.page("/console/apps/demo?state=needs_reauth")
	if got := rows(body); len(got) != 6 {
		t.Errorf("?state=needs_reauth shows %v, want 6", got)
	}
	if got := rows(u.page("/console/apps/demo?state=needs_reauth&cursor=p033")); fmt.Sprint(got) != "[p043 p053]" {
		t.Errorf("?state=needs_reauth&cursor=p033 shows %v, want p043 and p053", got)
	}
	// By grant expiry: the soonest (p056) first, paged by its own cursor.
	body = u.page("/console/apps/demo?sort=grant_expiry")
	got := rows(body)
	if len(got) != 50 || got[0] != "p056" || got[2] != "p054" || got[3] != "p052" { // p053, p043, ... need re-authorization
		t.Fatalf("by grant expiry: %v", got)
	}
	next := regexp.MustCompile(`<a href="([^"]+)" rel="next"`).FindStringSubmatch(body)
	if next == nil || !strings.Contains(next[1], "sort=grant_expiry") {
		t.Fatalf("no next page by grant expiry: %v", next)
	}
	if rest := rows(u.page(html.UnescapeString(next[1]))); len(rest) != 1 || rest[0] != "p000" {
		t.Errorf("the second page by grant expiry: %v, want p000", rest)
	}
	if body := u.page("/console/apps/demo?state=needs_reauth&expiring=30"); !strings.Contains(body, "Only active connections") {
		t.Error("needs_reauth with an expiry filter does not say why it is empty")
	}
}

// TestRateLimitWindowShown: while the app's rate-limit window lasts, the
// apps list, the app's page and its connections' pages say until when.
func TestRateLimitWindowShown(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	wait := 7200
	if err := h.emu.SetFaults(emulator.Faults{TokenStatus: 429, RetryAfter: &wait, Window: true}); err != nil {
		t.Fatal(err)
	}
	h.emu.Advance(2 * time.Hour)
	h.engine.Refresh(ctx, spotoken.ConnectionKey{AppID: appID, ID: "u1"})
	until := h.emu.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
	u := newUser(h)
	u.login(h.adminKey)
	if page := u.page("/console/"); !strings.Contains(page, "rate-limited until") || !strings.Contains(page, until) {
		t.Errorf("the apps list does not show the window:\n%s", page)
	}
	for _, path := range []string{"/console/apps/demo", "/console/apps/demo/connections/u1"} {
		if page := u.page(path); !strings.Contains(page, `id="rate-limited"`) || !strings.Contains(page, until) {
			t.Errorf("%s does not show the window until %s", path, until)
		}
	}
	if page := u.page("/console/apps/other"); strings.Contains(page, `id="rate-limited"`) {
		t.Error("the other app's page shows demo's window")
	}
	h.emu.Advance(2*time.Hour + time.Minute)
	u = newUser(h)
	u.login(h.adminKey)
	if page := u.page("/console/apps/demo"); strings.Contains(page, `id="rate-limited"`) {
		t.Error("the page still shows the window after it ended")
	}
}

// TestDashboardFindings: what the issue found wrong with the dashboard,
// each checked on the page: a needs_reauth row says nothing of an access
// token "expiring in 59 min" (nor does its page) and offers a connect
// link; the Revoked tile and filter, which deleting a connection can never
// fill, are shown only when some connection is in that state.
func TestDashboardFindings(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.seed(appID, 98) // c-0097 needs re-authorization, its token "expiring" in 59 min
	u := newUser(h)
	u.login(h.adminKey)
	body := u.page("/console/apps/demo?state=needs_reauth")
	row := body[strings.Index(body, `<tr data-connection="c-0097"`):]
	row = row[:strings.Index(row, "</tr>")]
	if strings.Contains(row, "59 min") || !strings.Contains(row, "not served: the user must authorize again") ||
		!strings.Contains(row, `action="/console/apps/demo/connections/c-0097/connect-link"`) {
		t.Errorf("the needs_reauth row:\n%s", row)
	}
	page := u.page("/console/apps/demo/connections/c-0097")
	if strings.Contains(page, "59 min") || !strings.Contains(page, "Spotify refused the refresh token (invalid_grant)") {
		t.Errorf("the needs_reauth connection's page:\n%s", page)
	}
	if strings.Contains(body, `data-tile="revoked"`) || strings.Contains(body, `<option value="revoked"`) {
		t.Error("the Revoked tile or filter is shown with no revoked connection")
	}
	if err := h.store.CreateConnection(ctx, &spotoken.Connection{AppID: appID, ID: "gone", State: spotoken.StateRevoked}); err != nil {
		t.Fatal(err)
	}
	body = u.page("/console/apps/demo")
	if !strings.Contains(body, `data-tile="revoked"`) || !strings.Contains(body, `<option value="revoked"`) {
		t.Error("a revoked connection is not counted")
	}
}

// countingStore counts the console's counts of connections by state.
type countingStore struct {
	*sqlite.DB
	counts atomic.Int64
}

func (s *countingStore) CountConnections(ctx context.Context) ([]spotoken.ConnectionCount, error) {
	s.counts.Add(1)
	return s.DB.CountConnections(ctx)
}

// TestHealthReused: the apps' health figures are counted once for every
// page and person within HealthTTL (21 pages, 20 of them at once, count
// twice: once, and once more 11 s later), counted again after it, and at
// once after the console's own changes. (Whether 20 pages arriving on a
// cold cache wait for one count, singleflight's promise, is not forced
// here: the pages rarely overlap on so small a table.)
func TestHealthReused(t *testing.T) {
	var store *countingStore
	h := newHarness(t, harnessOptions{console: func(c *console.Config) {
		c.HealthTTL = 10 * time.Second
		store = &countingStore{DB: c.Store.(*sqlite.DB)}
		c.Store = store
	}})
	u := newUser(h)
	u.login(h.adminKey) // lands on the apps list: the first count
	h.emu.Advance(11 * time.Second)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := u.do(u.c, http.MethodGet, "/console/apps/demo", nil, nil)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET /console/apps/demo: %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	if n := store.counts.Load(); n != 2 {
		t.Errorf("a page, then 20 at once 11s later, counted connections %d times, want 2", n)
	}
	tile := regexp.MustCompile(`<li class="tile"><a href="/console/apps/demo"><span class="n">(\d+)</span>`)
	total := func() string {
		m := tile.FindStringSubmatch(u.page("/console/apps/demo"))
		if m == nil {
			t.Fatal("no total tile")
		}
		return m[1]
	}
	h.connect("u1")
	if got := total(); got != "0" {
		t.Errorf("within 10s of the count the page shows %s connections, want the 0 counted", got)
	}
	h.emu.Advance(11 * time.Second)
	if got := total(); got != "1" {
		t.Errorf("11s later the page shows %s connections, want 1", got)
	}
	h.connect("u2")
	if resp, _ := u.post("/console/apps/demo/keys", url.Values{"csrf_token": {u.csrf()}, "name": {"k"}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("create a key: %d", resp.StatusCode)
	}
	if got := total(); got != "2" {
		t.Errorf("after a change made in the console the page shows %s connections, want 2 (counted again)", got)
	}
}

// TestAuditTrail: a connection's page shows its audit records (the API
// key that vended its token, from where, the token only as a fingerprint),
// and a deletion made in the console is recorded as made by the person
// signed in, "(console)"; without the trail the page says it is off. The
// dashboard's audit URL leads to the connection's page.
func TestAuditTrail(t *testing.T) {
	h := newHarness(t, harnessOptions{audit: true})
	h.connect("u1")
	h.connect("u2")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp, raw := h.call("POST", "/v1/connections/u1/token", h.apiKey, map[string]any{}, &tok); resp.StatusCode != 200 {
		t.Fatalf("vend: %d %s", resp.StatusCode, raw)
	}
	if err := h.trail.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	team := newUser(h)
	team.login(h.apiKey)
	page := team.page("/console/apps/demo/connections/u1")
	i := strings.Index(page, `id="audit"`)
	if i < 0 {
		t.Fatalf("u1's page has no audit records:\n%s", page)
	}
	rows := page[i:]
	for _, want := range []string{`data-action="token.vend"`, "api_key", "team (sk_", "127.0.0.1", "POST /v1/connections/{id}/token", `data-action="connection.connect"`} {
		if !strings.Contains(rows, want) {
			t.Errorf("u1's audit records lack %q:\n%s", want, rows)
		}
	}
	if strings.Contains(page, tok.AccessToken) {
		t.Error("the page shows the access token vended")
	}
	if strings.Contains(rows, "u2") {
		t.Error("u1's audit records show u2's")
	}
	resp, _ := team.do(team.stay, http.MethodGet, "/dashboard/connections/u1/audit", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/apps/demo/connections/u1#audit-heading" {
		t.Errorf("the dashboard's audit page: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	for _, who := range []struct {
		u    *user
		conn string
		want spotoken.AuditRecord
	}{
		{team, "u2", spotoken.AuditRecord{ActorType: spotoken.ActorAPIKey, ActorLabel: " (console)"}},
	} {
		if resp, _ := who.u.post("/console/apps/demo/connections/"+who.conn+"/delete", url.Values{"csrf_token": {who.u.csrf()}}); resp.StatusCode != 200 {
			t.Fatalf("delete %s: %d", who.conn, resp.StatusCode)
		}
		recs, err := h.trail.Records(ctx, spotoken.AuditFilter{AppID: appID, ConnectionID: who.conn})
		if err != nil {
			t.Fatal(err)
		}
		var del *spotoken.AuditRecord
		for _, r := range recs {
			if r.Action == spotoken.AuditConnectionDelete {
				del = r
			}
		}
		if del == nil || del.ActorType != who.want.ActorType || !strings.HasSuffix(del.ActorLabel, who.want.ActorLabel) || del.ClientIP != "127.0.0.1" {
			t.Errorf("the deletion of %s is recorded as %+v, want by %s …%s from 127.0.0.1", who.conn, del, who.want.ActorType, who.want.ActorLabel)
		}
	}

	// An operator's deletion is recorded as the operator's.
	h.connect("u3")
	op := newUser(h)
	op.login(h.adminKey)
	if resp, _ := op.post("/console/apps/demo/connections/u3/delete", url.Values{"csrf_token": {op.csrf()}}); resp.StatusCode != 200 {
		t.Fatalf("delete u3: %d", resp.StatusCode)
	}
	recs, _ := h.trail.Records(ctx, spotoken.AuditFilter{AppID: appID, ConnectionID: "u3"})
	found := false
	for _, r := range recs {
		found = found || r.Action == spotoken.AuditConnectionDelete && r.ActorType == spotoken.ActorAdmin && r.ActorLabel == "admin_key:ops-oncall (console)"
	}
	if !found {
		t.Errorf("the operator's deletion of u3 is not recorded as theirs: %+v", recs)
	}

	off := newHarness(t, harnessOptions{})
	off.connect("u1")
	u := newUser(off)
	u.login(off.adminKey)
	if page := u.page("/console/apps/demo/connections/u1"); !strings.Contains(page, `id="audit-off"`) {
		t.Error("without the trail the page does not say it is off")
	}
}
