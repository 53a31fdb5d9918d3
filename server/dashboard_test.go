package server_test

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
)

const dashCookie = "spotoken_dashboard"

// dashUser is a person at the dashboard: a client with its own cookie jar
// that sends forms the way a browser does (but no Origin header).
type dashUser struct {
	t *testing.T
	// base is the server the requests go to: the harness's, or a replica's.
	base string
	jar  http.CookieJar
	c    *http.Client // follows redirects
	stay *http.Client // does not
}

func newDashUser(h *harness) *dashUser { return newDashUserAt(h.t, h.ts.URL) }

// newDashUserAt is a person at the dashboard served at base.
func newDashUserAt(t *testing.T, base string) *dashUser {
	jar, _ := cookiejar.New(nil)
	return &dashUser{
		t: t, base: base, jar: jar,
		c: &http.Client{Jar: jar},
		stay: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
}

// do sends a request (a form when body is url.Values) and returns the
// response with its body read.
func (u *dashUser) do(c *http.Client, method, path string, body any, header map[string]string) (*http.Response, string) {
	u.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case url.Values:
		rd, ct = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	case string:
		rd, ct = strings.NewReader(b), "application/x-www-form-urlencoded"
	default:
		u.t.Fatalf("body %T", body)
	}
	req, err := http.NewRequest(method, u.base+path, rd)
	if err != nil {
		u.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, string(raw)
}

func (u *dashUser) get(path string) (*http.Response, string) {
	u.t.Helper()
	return u.do(u.c, http.MethodGet, path, nil, nil)
}

func (u *dashUser) post(path string, form url.Values) (*http.Response, string) {
	u.t.Helper()
	return u.do(u.c, http.MethodPost, path, form, nil)
}

// login signs in with key and returns the overview page.
func (u *dashUser) login(key string) string {
	u.t.Helper()
	resp, body := u.post("/dashboard/login", url.Values{"api_key": {key}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" {
		u.t.Fatalf("login: %d at %s:\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	return body
}

// overview fetches the overview and fails unless it is one.
func (u *dashUser) overview(query string) string {
	u.t.Helper()
	resp, body := u.get("/" + query)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" || !strings.Contains(body, `id="sign-out"`) {
		u.t.Fatalf("GET /%s: %d at %s:\n%s", query, resp.StatusCode, resp.Request.URL, body)
	}
	return body
}

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// csrf returns the CSRF token of the overview page.
func (u *dashUser) csrf() string {
	u.t.Helper()
	m := csrfRE.FindStringSubmatch(u.overview(""))
	if m == nil {
		u.t.Fatal("the overview has no CSRF token")
	}
	return m[1]
}

func (u *dashUser) cookie() *http.Cookie {
	base, _ := url.Parse(u.base)
	for _, c := range u.jar.Cookies(base) {
		if c.Name == dashCookie {
			return c
		}
	}
	return nil
}

func setCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

var linkRE = regexp.MustCompile(`id="connect-link" type="text" readonly value="([^"]+)"`)

func hasRow(body, id string) bool { return strings.Contains(body, `<tr data-connection="`+id+`">`) }

// revokedEvents lists the connection.revoked events waiting for delivery.
func (h *harness) revokedEvents() []string {
	h.t.Helper()
	evs, err := h.store.PendingEvents(context.Background(), h.emu.Now().Add(time.Hour), 1000)
	if err != nil {
		h.t.Fatal(err)
	}
	var ids []string
	for _, e := range evs {
		if e.Type == spotoken.EventConnectionRevoked {
			ids = append(ids, e.AppID+"/"+e.ConnectionID)
		}
	}
	return ids
}

func (h *harness) exists(app, id string) bool {
	h.t.Helper()
	_, err := h.store.Connection(context.Background(), spotoken.ConnectionKey{AppID: app, ID: id})
	if err != nil && !errors.Is(err, spotoken.ErrNotFound) {
		h.t.Fatal(err)
	}
	return err == nil
}

// revokeKey revokes an API key, as 'spotoken apikeys revoke' does.
func (h *harness) revokeKey(raw string) {
	h.t.Helper()
	ctx := context.Background()
	key, err := h.store.APIKeyByHash(ctx, spotoken.HashAPIKey(spotoken.Secret(raw)))
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.store.RevokeAPIKey(ctx, key.AppID, key.ID, h.emu.Now()); err != nil {
		h.t.Fatal(err)
	}
}

func wantHeaders(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); !strings.HasPrefix(got, v) {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

func TestDashboardLogin(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	u := newDashUser(h)

	resp, _ := u.do(u.stay, http.MethodGet, "/", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard/login" {
		t.Fatalf("GET / signed out: %d Location %q, want 303 to /dashboard/login", resp.StatusCode, resp.Header.Get("Location"))
	}
	wantHeaders(t, "GET / signed out", resp)
	resp, body := u.get("/dashboard/login")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<label for="api_key">API key</label>`) {
		t.Fatalf("login page: %d\n%s", resp.StatusCode, body)
	}
	wantHeaders(t, "login page", resp)

	for _, tc := range []struct {
		name, key string
		status    int
		says      string
	}{
		{"wrong key", "sk_" + strings.Repeat("x", 43), http.StatusUnauthorized, "That API key is not valid"},
		{"not a key at all", "hunter2", http.StatusUnauthorized, "That API key is not valid"},
		{"a key that was mangled", h.apiKey + "x", http.StatusUnauthorized, "That API key is not valid"},
		{"empty", "  ", http.StatusBadRequest, "Paste one of the app&#39;s API keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := u.do(u.stay, http.MethodPost, "/dashboard/login", url.Values{"api_key": {tc.key}}, nil)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.says) {
				t.Fatalf("%d, want %d saying %q:\n%s", resp.StatusCode, tc.status, tc.says, body)
			}
			if c := setCookie(resp, dashCookie); c != nil {
				t.Errorf("a refused login set the cookie %s", c)
			}
			if strings.TrimSpace(tc.key) != "" && strings.Contains(body, tc.key) {
				t.Error("the login page echoes the key it was given")
			}
			wantHeaders(t, "refused login", resp)
		})
	}
	if u.cookie() != nil {
		t.Fatal("refused logins left a session cookie")
	}

	t.Run("from another site", func(t *testing.T) {
		for _, hdr := range []map[string]string{
			{"Origin": "http://evil.example"},
			{"Referer": "http://evil.example/page"},
			{"Sec-Fetch-Site": "cross-site"},
			{"Origin": "null"}, // a sandboxed frame, with nothing to vouch for it
		} {
			resp, _ := u.do(u.stay, http.MethodPost, "/dashboard/login", url.Values{"api_key": {h.apiKey}}, hdr)
			if resp.StatusCode != http.StatusForbidden || setCookie(resp, dashCookie) != nil {
				t.Errorf("login with %v: %d (cookie %v), want 403 and no cookie", hdr, resp.StatusCode, setCookie(resp, dashCookie))
			}
		}
	})

	// A browser's same-origin form: under no-referrer its Origin is "null",
	// vouched for by Sec-Fetch-Site.
	resp, _ = u.do(u.stay, http.MethodPost, "/dashboard/login", url.Values{"api_key": {h.apiKey}},
		map[string]string{"Origin": "null", "Sec-Fetch-Site": "same-origin"})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %d Location %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	wantHeaders(t, "login", resp)
	c := setCookie(resp, dashCookie)
	if c == nil {
		t.Fatal("login set no session cookie")
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure {
		t.Errorf("cookie %s: want HttpOnly, SameSite=Strict, Path=/, not Secure on http", c)
	}
	if c.MaxAge != int((12 * time.Hour).Seconds()) {
		t.Errorf("cookie Max-Age = %d, want 12h", c.MaxAge)
	}
	if strings.Contains(c.Value, h.apiKey) || strings.Contains(c.Value, strings.TrimPrefix(h.apiKey, "sk_")) {
		t.Error("the session cookie carries the API key")
	}
	body = u.overview("")
	if !strings.Contains(body, `<strong id="app">demo</strong>`) {
		t.Errorf("the overview does not name the app:\n%s", body)
	}
	if strings.Contains(body, h.apiKey) {
		t.Error("the overview shows the API key")
	}
	if strings.Contains(h.logs.String(), h.apiKey) {
		t.Error("the log has the API key")
	}

	// Signing in again replaces the browser's session: the old cookie is dead.
	old := u.cookie().Value
	u.login(h.apiKey)
	if u.cookie().Value == old {
		t.Fatal("a second login kept the session cookie")
	}
	stale := newDashUser(h)
	base, _ := url.Parse(h.ts.URL)
	stale.jar.SetCookies(base, []*http.Cookie{{Name: dashCookie, Value: old, Path: "/"}})
	resp, _ = stale.do(stale.stay, http.MethodGet, "/", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard/login?ended=1" {
		t.Errorf("the replaced session: %d Location %q, want 303 to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestDashboardOverview(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	// A connection of the other app, which the demo app's dashboard must not show.
	var sess struct{ URL string }
	if resp, raw := h.call("POST", "/v1/connect-sessions", h.otherKey, map[string]any{"connection_id": "theirs"}, &sess); resp.StatusCode != http.StatusCreated {
		t.Fatalf("other app's session: %d %s", resp.StatusCode, raw)
	}
	if resp, err := h.browser.Get(sess.URL); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("connect the other app's user: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if !h.exists(otherAppID, "theirs") {
		t.Fatal("the other app's connection was not made")
	}

	u := newDashUser(h)
	body := u.login(h.apiKey)
	if !hasRow(body, "u1") {
		t.Fatalf("the overview has no row for u1:\n%s", body)
	}
	row := body[strings.Index(body, `<tr data-connection="u1">`):]
	row = row[:strings.Index(row, "</tr>")]
	for _, want := range []string{"alice", `class="badge state-active">Active<`, "<li>user-read-email</li>",
		"2026-07-01 13:00 UTC", "in 1 h", // access token expiry
		"2026-12-31 00:00 UTC", // grant expiry: six months from consent
	} {
		if !strings.Contains(row, want) {
			t.Errorf("u1's row lacks %q:\n%s", want, row)
		}
	}
	for _, absent := range []string{"theirs", otherAppID + "/"} {
		if strings.Contains(body, absent) {
			t.Errorf("the overview shows %q, of another app", absent)
		}
	}
	if !regexp.MustCompile(`<li class="all current"><a href="/"><span class="n">1</span>All</a></li>`).MatchString(body) ||
		!strings.Contains(body, `data-state="active"><a href="/?state=active"><span class="n">1</span>Active</a>`) ||
		!strings.Contains(body, `data-state="revoked"><a href="/?state=revoked"><span class="n">0</span>Revoked</a>`) {
		t.Errorf("the counts are not the demo app's alone (1 active):\n%s", body)
	}

	// No token, secret or key reaches the page.
	c, err := h.store.Connection(context.Background(), spotoken.ConnectionKey{AppID: appID, ID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Token.AccessToken == "" || c.Token.RefreshToken == "" {
		t.Fatal("u1 has no tokens to look for")
	}
	for name, secret := range map[string]string{"access token": c.Token.AccessToken.Reveal(),
		"refresh token": c.Token.RefreshToken.Reveal(), "API key": h.apiKey, "other app's API key": h.otherKey} {
		if strings.Contains(body, secret) || strings.Contains(body, html.EscapeString(secret)) {
			t.Errorf("the overview shows the %s", name)
		}
	}

	t.Run("state filter", func(t *testing.T) {
		if body := u.overview("?state=active"); !hasRow(body, "u1") {
			t.Error("?state=active does not show u1")
		}
		for _, st := range []string{"revoked", "needs_reauth"} {
			body := u.overview("?state=" + st)
			if hasRow(body, "u1") || !strings.Contains(body, `id="no-connections"`) {
				t.Errorf("?state=%s shows u1, or no empty notice", st)
			}
			if !strings.Contains(body, `<option value="`+st+`" selected>`) {
				t.Errorf("?state=%s: the filter does not show it selected", st)
			}
		}
		for _, q := range []string{"?state=bogus", "?state=active&state=revoked", "?cursor=" + url.QueryEscape("not a cursor!")} {
			resp, body := u.get("/" + q)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `id="error"`) {
				t.Errorf("GET /%s: %d, want 400 with a message:\n%s", q, resp.StatusCode, body)
			}
		}
	})
}

func TestDashboardPagination(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ctx := context.Background()
	now := h.emu.Now()
	var ids []string
	for i := range 57 {
		id := fmt.Sprintf("p%03d", i)
		st := spotoken.StateActive
		if i%10 == 3 {
			st = spotoken.StateNeedsReauth
		}
		err := h.store.CreateConnection(ctx, &spotoken.Connection{AppID: appID, ID: id, State: st, SpotifyUserID: "user" + id,
			Scopes: spotoken.Scopes{"user-read-email"}, CreatedAt: now,
			Token: spotoken.Token{AccessToken: spotoken.Secret("at-" + id), RefreshToken: spotoken.Secret("rt-" + id), Expiry: now.Add(time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	u := newDashUser(h)
	first := u.login(h.apiKey)
	var seen []string
	page, query := first, ""
	for n := 0; ; n++ {
		if n > 3 {
			t.Fatal("more pages than there should be")
		}
		for _, m := range regexp.MustCompile(`<tr data-connection="([^"]+)">`).FindAllStringSubmatch(page, -1) {
			seen = append(seen, m[1])
		}
		if strings.Contains(page, "at-p0") || strings.Contains(page, "rt-p0") {
			t.Fatal("a page shows a token")
		}
		next := regexp.MustCompile(`<a href="([^"]+)" rel="next"`).FindStringSubmatch(page)
		if next == nil {
			break
		}
		query = strings.TrimPrefix(html.UnescapeString(next[1]), "/")
		page = u.overview(query)
		if !strings.Contains(page, "« First page") {
			t.Error("a later page has no link to the first")
		}
	}
	if fmt.Sprint(seen) != fmt.Sprint(ids) {
		t.Errorf("the pages showed %d connections %v, want %d %v", len(seen), seen, len(ids), ids)
	}
	if strings.Count(first, "<tr data-connection=") != 50 {
		t.Errorf("the first page shows %d rows, want 50", strings.Count(first, "<tr data-connection="))
	}
	if query != "?cursor=p049" {
		t.Errorf("the second page is %q, want ?cursor=p049", query)
	}

	// The filter and the cursor together.
	body := u.overview("?state=needs_reauth")
	if got := strings.Count(body, "<tr data-connection="); got != 6 {
		t.Errorf("?state=needs_reauth shows %d rows, want 6", got)
	}
	if !strings.Contains(body, `<span class="n">6</span>Needs re-authorization`) || !strings.Contains(body, `<span class="n">57</span>All`) {
		t.Error("the counts are wrong")
	}
	body = u.overview("?state=needs_reauth&cursor=p033")
	if got := regexp.MustCompile(`<tr data-connection="([^"]+)">`).FindAllStringSubmatch(body, -1); len(got) != 2 || got[0][1] != "p043" {
		t.Errorf("?state=needs_reauth&cursor=p033 shows %v, want p043 and p053", got)
	}
}

func TestDashboardCSRF(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	u := newDashUser(h)
	u.login(h.apiKey)
	token := u.csrf()
	for _, tc := range []struct {
		name   string
		form   url.Values
		header map[string]string
	}{
		{"no token", url.Values{}, nil},
		{"empty token", url.Values{"csrf_token": {""}}, nil},
		{"wrong token", url.Values{"csrf_token": {token[:len(token)-1] + "x"}}, nil},
		{"another session's token", url.Values{"csrf_token": {newDashUser(h).csrfAfterLogin(h.apiKey)}}, nil},
		{"right token from another origin", url.Values{"csrf_token": {token}}, map[string]string{"Origin": "http://evil.example"}},
		{"right token from the emulator's port", url.Values{"csrf_token": {token}}, map[string]string{"Origin": h.emuSrv.URL}},
		{"right token, cross-site fetch", url.Values{"csrf_token": {token}}, map[string]string{"Sec-Fetch-Site": "same-site"}},
		{"right token, foreign referer", url.Values{"csrf_token": {token}}, map[string]string{"Referer": "https://evil.example/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/dashboard/connections/u1/delete", "/dashboard/logout"} {
				resp, body := u.do(u.c, http.MethodPost, path, tc.form, tc.header)
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Nothing was changed") {
					t.Errorf("POST %s: %d, want 403:\n%s", path, resp.StatusCode, body)
				}
				wantHeaders(t, "403", resp)
			}
			form := url.Values{"connection_id": {"u9"}}
			for k, v := range tc.form {
				form[k] = v
			}
			if resp, _ := u.do(u.c, http.MethodPost, "/dashboard/connect-link", form, tc.header); resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST /dashboard/connect-link: %d, want 403", resp.StatusCode)
			}
		})
	}
	if !h.exists(appID, "u1") || len(h.revokedEvents()) != 0 {
		t.Fatal("a refused POST deleted u1")
	}
	if body := u.overview(""); !hasRow(body, "u1") || strings.Contains(body, `id="connect-link"`) {
		t.Fatal("after refused POSTs: not signed in, u1 gone, or a connect link was made")
	}
	// The right token from the dashboard's own origin works.
	resp, _ := u.do(u.c, http.MethodPost, "/dashboard/connections/u1/delete", url.Values{"csrf_token": {token}},
		map[string]string{"Origin": h.ts.URL, "Referer": h.ts.URL + "/", "Sec-Fetch-Site": "same-origin"})
	if resp.StatusCode != http.StatusOK || h.exists(appID, "u1") {
		t.Fatalf("delete with the CSRF token from the same origin: %d, exists %v", resp.StatusCode, h.exists(appID, "u1"))
	}
}

// csrfAfterLogin signs in and returns the session's CSRF token.
func (u *dashUser) csrfAfterLogin(key string) string {
	u.login(key)
	return u.csrf()
}

func TestDashboardDelete(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	h.connect("u2")
	u := newDashUser(h)
	u.login(h.apiKey)
	token := u.csrf()

	resp, body := u.post("/dashboard/connections/u1/delete", url.Values{"csrf_token": {token}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" {
		t.Fatalf("delete u1: %d at %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	if !strings.Contains(body, `id="notice"`) || !strings.Contains(body, "Deleted connection u1") {
		t.Errorf("no notice of the deletion:\n%s", body)
	}
	if hasRow(body, "u1") || !hasRow(body, "u2") {
		t.Error("after deleting u1 the overview still shows it, or lost u2")
	}
	if h.exists(appID, "u1") || !h.exists(appID, "u2") {
		t.Fatal("u1 was not deleted, or u2 was")
	}
	if got := h.revokedEvents(); fmt.Sprint(got) != "[demo/u1]" {
		t.Errorf("connection.revoked events %v, want [demo/u1]", got)
	}
	if body := u.overview(""); strings.Contains(body, `id="notice"`) {
		t.Error("the notice is shown again on the next page")
	}

	// Not the app's, or gone: 404 and nothing changes.
	for _, id := range []string{"u1", "nobody"} {
		resp, body := u.post("/dashboard/connections/"+id+"/delete", url.Values{"csrf_token": {token}})
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `no connection &#34;`+id+`&#34;`) {
			t.Errorf("delete %s: %d, want 404 with a message:\n%s", id, resp.StatusCode, body)
		}
	}
	if got := h.revokedEvents(); len(got) != 1 {
		t.Errorf("revoked events after refused deletes: %v", got)
	}
}

func TestDashboardDeleteOtherApp(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	// The other app signs in and tries to delete the demo app's u1.
	u := newDashUser(h)
	u.login(h.otherKey)
	resp, _ := u.post("/dashboard/connections/u1/delete", url.Values{"csrf_token": {u.csrf()}})
	if resp.StatusCode != http.StatusNotFound || !h.exists(appID, "u1") {
		t.Fatalf("the other app deleting demo's u1: %d, exists %v; want 404 and still there", resp.StatusCode, h.exists(appID, "u1"))
	}
	if body := u.overview(""); hasRow(body, "u1") {
		t.Error("the other app's dashboard shows demo's u1")
	}
}

func TestDashboardConnectLink(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	u := newDashUser(h)
	u.login(h.apiKey)
	resp, body := u.post("/dashboard/connect-link", url.Values{"csrf_token": {u.csrf()}, "connection_id": {" u2 "}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" {
		t.Fatalf("connect link: %d at %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	m := linkRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no connect link on the page:\n%s", body)
	}
	link := html.UnescapeString(m[1])
	if !strings.HasPrefix(link, h.ts.URL+"/connect/cs_") {
		t.Fatalf("connect link %q", link)
	}
	if !strings.Contains(body, "Connect link for u2") || !strings.Contains(body, "<code>user-read-email</code>") {
		t.Errorf("the page does not say whose link it is, or which scopes:\n%s", body)
	}
	if strings.Contains(h.logs.String(), strings.TrimPrefix(link, h.ts.URL+"/connect/")) {
		t.Error("the log has the connect link")
	}
	if body := u.overview(""); linkRE.MatchString(body) {
		t.Error("the link is shown again on the next page")
	}

	// The link works, once.
	resp, err := h.browser.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(raw), `data-outcome="connected"`) {
		t.Fatalf("following the link: %d\n%s", resp.StatusCode, raw)
	}
	c, err := h.store.Connection(context.Background(), spotoken.ConnectionKey{AppID: appID, ID: "u2"})
	if err != nil || c.State != spotoken.StateActive || c.Scopes.String() != "user-read-email" {
		t.Fatalf("u2 after the link: %+v %v", c, err)
	}
	if body := u.overview(""); !hasRow(body, "u2") {
		t.Error("the overview does not show the new connection")
	}
	if resp, err := h.browser.Get(link); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("the link opened twice: %v %v, want 400", resp, err)
	} else {
		resp.Body.Close()
	}

	// A row's own button makes a link for that connection.
	resp, body = u.post("/dashboard/connect-link", url.Values{"csrf_token": {u.csrf()}, "connection_id": {"u2"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Connect link for u2") || !linkRE.MatchString(body) {
		t.Errorf("a re-consent link for u2: %d\n%s", resp.StatusCode, body)
	}
}

func TestDashboardConnectLinkMisconfiguredApp(t *testing.T) {
	h := newHarness(t, harnessOptions{app: func(a *spotoken.App) { a.RedirectURIs = []string{"https://elsewhere.example/callback"} }})
	u := newDashUser(h)
	u.login(h.apiKey)
	resp, body := u.post("/dashboard/connect-link", url.Values{"csrf_token": {u.csrf()}, "connection_id": {"u2"}})
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "has no redirect URI") || linkRE.MatchString(body) {
		t.Errorf("connect link for a misconfigured app: %d, want 502 saying why:\n%s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `value="u2"`) {
		t.Error("the form lost the connection ID typed")
	}
}

func TestDashboardRevokedKey(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	u := newDashUser(h)
	u.login(h.apiKey)
	token := u.csrf()
	h.revokeKey(h.apiKey)

	// The very next request ends the session, a POST included.
	resp, _ := u.do(u.stay, http.MethodPost, "/dashboard/connections/u1/delete", url.Values{"csrf_token": {token}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard/login?ended=1" {
		t.Fatalf("POST after revocation: %d Location %q, want 303 to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c := setCookie(resp, dashCookie); c == nil || c.MaxAge >= 0 {
		t.Errorf("the ended session's cookie was not cleared: %v", c)
	}
	if !h.exists(appID, "u1") {
		t.Fatal("a revoked key's session deleted u1")
	}
	resp, body := u.get("/")
	if resp.Request.URL.String() != h.ts.URL+"/dashboard/login?ended=1" && resp.Request.URL.Path != "/dashboard/login" {
		t.Fatalf("GET / after revocation landed at %s", resp.Request.URL)
	}
	if !strings.Contains(body, "Your session ended") && !strings.Contains(body, "Sign in") {
		t.Errorf("the login page says nothing:\n%s", body)
	}
	// The revoked key cannot sign in again, even while the API's cache remembers it.
	resp, _ = u.do(u.stay, http.MethodPost, "/dashboard/login", url.Values{"api_key": {h.apiKey}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || setCookie(resp, dashCookie) != nil {
		t.Errorf("login with a revoked key: %d, want 401 and no cookie", resp.StatusCode)
	}
}

func TestDashboardSessionExpires(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	u := newDashUser(h)
	u.login(h.apiKey)
	// Used every 55 minutes, the session lasts until 12 hours after the
	// login, and not a minute more, though last used 5 minutes before.
	for range 13 {
		h.emu.Advance(55 * time.Minute)
		u.overview("")
	}
	h.emu.Advance(5 * time.Minute)
	resp, _ := u.do(u.stay, http.MethodGet, "/", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard/login?ended=1" {
		t.Fatalf("GET / 12h after login: %d Location %q, want 303 to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Unused for an hour, a session ends.
	u.login(h.apiKey)
	h.emu.Advance(59 * time.Minute)
	u.overview("")
	h.emu.Advance(time.Hour)
	resp, _ = u.do(u.stay, http.MethodGet, "/", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard/login?ended=1" {
		t.Fatalf("GET / an hour after the last use: %d Location %q, want 303 to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestDashboardLogout(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	u := newDashUser(h)
	u.login(h.apiKey)
	cookie := u.cookie().Value
	resp, body := u.post("/dashboard/logout", url.Values{"csrf_token": {u.csrf()}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/dashboard/login" || !strings.Contains(body, "You are signed out") {
		t.Fatalf("logout: %d at %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	if u.cookie() != nil {
		t.Error("the cookie is still set after logout")
	}
	// The old cookie, replayed, is dead.
	base, _ := url.Parse(h.ts.URL)
	u.jar.SetCookies(base, []*http.Cookie{{Name: dashCookie, Value: cookie, Path: "/"}})
	resp, _ = u.do(u.stay, http.MethodGet, "/", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/dashboard/login") {
		t.Fatalf("GET / with the logged-out cookie: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestDashboardMalformedForms(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("u1")
	u := newDashUser(h)
	u.login(h.apiKey)
	token := u.csrf()
	for _, tc := range []struct {
		name, path string
		body       any
		ctype      string
		status     int
		says       string
	}{
		{"bad connection id", "/dashboard/connect-link", url.Values{"csrf_token": {token}, "connection_id": {"not valid!"}},
			"", 400, "The connection ID must be 1 to 128 letters, digits or . _ @ : -"},
		{"empty connection id", "/dashboard/connect-link", url.Values{"csrf_token": {token}, "connection_id": {""}},
			"", 400, "The connection ID must be"},
		{"long connection id", "/dashboard/connect-link", url.Values{"csrf_token": {token}, "connection_id": {strings.Repeat("a", 129)}},
			"", 400, "The connection ID must be"},
		{"no connection id", "/dashboard/connect-link", url.Values{"csrf_token": {token}}, "", 400, "The connection ID must be"},
		{"bad id in the path", "/dashboard/connections/u1%20x/delete", url.Values{"csrf_token": {token}},
			"", 400, "The connection ID must be"},
		{"bad escape", "/dashboard/connections/u1/delete", "csrf_token=" + token + "&x=%zz", "", 400, "The form is malformed"},
		{"repeated field", "/dashboard/connections/u1/delete", url.Values{"csrf_token": {token, token}}, "", 400, "The form field csrf_token is repeated"},
		{"unknown field", "/dashboard/connections/u1/delete", url.Values{"csrf_token": {token}, "confirm": {"yes"}}, "", 400, "unknown field &#34;confirm&#34;"},
		{"JSON", "/dashboard/connections/u1/delete", `{"csrf_token":"` + token + `"}`, "application/json", 400, "application/x-www-form-urlencoded"},
		{"too large", "/dashboard/connect-link", url.Values{"csrf_token": {token}, "connection_id": {strings.Repeat("a", 20000)}},
			"", 413, "The form is over 16384 bytes"},
		{"login too large", "/dashboard/login", url.Values{"api_key": {strings.Repeat("a", 20000)}}, "", 413, "The form is over"},
		{"login unknown field", "/dashboard/login", url.Values{"api_key": {h.apiKey}, "remember": {"1"}}, "", 400, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.ctype != "" {
				hdr["Content-Type"] = tc.ctype
			}
			resp, body := u.do(u.stay, http.MethodPost, tc.path, tc.body, hdr)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.says) || !strings.Contains(body, `role="alert"`) {
				t.Errorf("%d, want %d saying %q:\n%s", resp.StatusCode, tc.status, tc.says, body)
			}
			wantHeaders(t, tc.name, resp)
		})
	}
	if !h.exists(appID, "u1") || len(h.revokedEvents()) != 0 {
		t.Error("a malformed form deleted u1")
	}
	body := u.overview("")
	if linkRE.MatchString(body) || strings.Count(body, "<tr data-connection=") != 1 {
		t.Error("a malformed form changed something")
	}
}

func TestDashboardNotJSONForBrowsers(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	u := newDashUser(h)
	// The API's JSON answers stay JSON.
	resp, _ := u.get("/v1/connections")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusUnauthorized || ct != "application/json" {
		t.Errorf("GET /v1/connections: %d %s", resp.StatusCode, ct)
	}
	resp, body := u.get("/")
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" || !strings.Contains(body, "<!doctype html>") {
		t.Errorf("the login page is %s:\n%s", ct, body)
	}
}
