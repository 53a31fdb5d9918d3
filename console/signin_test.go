package console_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/console"
	"github.com/spotoken/spotoken/internal/websession"
	"github.com/spotoken/spotoken/server"
)

// TestLogin: both kinds of sign-in, refused ones, the cookie, forgery from
// another site, and a second sign-in that ends the first session.
func TestLogin(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	u := newUser(h)

	// The dashboard's URLs lead to the console.
	for path, want := range map[string]string{"/": "/console/", "/dashboard/login": "/console/login", "/console/": "/console/login"} {
		resp, _ := u.do(u.stay, http.MethodGet, path, nil, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("GET %s signed out: %d Location %q, want 303 to %s", path, resp.StatusCode, resp.Header.Get("Location"), want)
		}
		wantHeaders(t, "GET "+path, resp)
	}
	resp, body := u.get("/console/login")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<label for="credential">Admin credential or API key</label>`) {
		t.Fatalf("login page: %d\n%s", resp.StatusCode, body)
	}
	wantHeaders(t, "login page", resp)

	for _, tc := range []struct {
		name, key string
		status    int
		says      string
	}{
		{"wrong API key", "sk_" + strings.Repeat("x", 43), http.StatusUnauthorized, "That credential is not valid"},
		{"wrong admin credential", "sa_" + strings.Repeat("x", 32), http.StatusUnauthorized, "That credential is not valid"},
		{"not a key at all", "hunter2", http.StatusUnauthorized, "That credential is not valid"},
		{"a key that was mangled", h.apiKey + "x", http.StatusUnauthorized, "That credential is not valid"},
		{"an admin credential mangled", h.adminKey[:len(h.adminKey)-1], http.StatusUnauthorized, "That credential is not valid"},
		{"too long", "sa_" + strings.Repeat("y", 500), http.StatusUnauthorized, "That credential is not valid"},
		{"empty", "  ", http.StatusBadRequest, "Paste an admin credential"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := u.do(u.stay, http.MethodPost, "/console/login", url.Values{"credential": {tc.key}}, nil)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.says) {
				t.Fatalf("%d, want %d saying %q:\n%s", resp.StatusCode, tc.status, tc.says, body)
			}
			if c := setCookie(resp, cookie); c != nil {
				t.Errorf("a refused login set the cookie %s", c)
			}
			if strings.TrimSpace(tc.key) != "" && strings.Contains(body, tc.key) {
				t.Error("the login page echoes the credential it was given")
			}
			wantHeaders(t, "refused login", resp)
		})
	}

	t.Run("from another site", func(t *testing.T) {
		for _, hdr := range []map[string]string{
			{"Origin": "http://evil.example"},
			{"Referer": "http://evil.example/page"},
			{"Sec-Fetch-Site": "cross-site"},
			{"Origin": "null"}, // a sandboxed frame, with nothing to vouch for it
			{"Origin": h.emuSrv.URL},
		} {
			for _, key := range []string{h.apiKey, h.adminKey} {
				resp, _ := u.do(u.stay, http.MethodPost, "/console/login", url.Values{"credential": {key}}, hdr)
				if resp.StatusCode != http.StatusForbidden || setCookie(resp, cookie) != nil {
					t.Errorf("login with %v: %d, want 403 and no cookie", hdr, resp.StatusCode)
				}
			}
		}
	})

	// An operator: a same-origin form (under no-referrer its Origin is
	// "null", vouched for by Sec-Fetch-Site) lands on the apps list.
	resp, _ = u.do(u.stay, http.MethodPost, "/console/login", url.Values{"credential": {h.adminKey}},
		map[string]string{"Origin": "null", "Sec-Fetch-Site": "same-origin"})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("operator login: %d Location %q, want 303 to /console/", resp.StatusCode, resp.Header.Get("Location"))
	}
	c := setCookie(resp, cookie)
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure || c.MaxAge != int((12*time.Hour).Seconds()) {
		t.Fatalf("cookie %v: want HttpOnly, SameSite=Strict, Path=/, not Secure on http, Max-Age 12h", c)
	}
	body = u.page("/console/")
	for _, want := range []string{`<tr data-app="demo">`, `<tr data-app="other">`, "Operator · ops-oncall (sa_"} {
		if !strings.Contains(body, want) {
			t.Errorf("the operator's home lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, h.adminKey) || strings.Contains(c.Value, h.adminKey) {
		t.Error("the page or the cookie carries the admin credential")
	}
	st, err := h.store.WebSession(ctx, websession.IDHash(u.cookie().Value))
	if err != nil || st.Scope != "admin" || st.AppID != "" {
		t.Errorf("the operator's session: %+v, %v; want scope admin, no app", st, err)
	}

	// An app team: the dashboard's form still signs in, and lands on the
	// app's page, in a new session.
	old := u.cookie().Value
	resp, _ = u.do(u.stay, http.MethodPost, "/dashboard/login", url.Values{"api_key": {h.apiKey}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/apps/demo" {
		t.Fatalf("app login: %d Location %q, want 303 to /console/apps/demo", resp.StatusCode, resp.Header.Get("Location"))
	}
	if u.cookie().Value == old {
		t.Fatal("a second login kept the session cookie")
	}
	body = u.page("/console/apps/demo")
	if !strings.Contains(body, `<strong class="app-name" id="app">demo</strong>`) || strings.Contains(body, `id="tab-keys"`) ||
		strings.Contains(body, `id="tab-settings"`) {
		t.Errorf("the app team's page: not demo's, or it offers keys and settings:\n%s", body)
	}
	stale := newUser(h)
	base, _ := url.Parse(h.ts.URL)
	stale.jar.SetCookies(base, []*http.Cookie{{Name: cookie, Value: old, Path: "/"}})
	resp, _ = stale.do(stale.stay, http.MethodGet, "/console/", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login?ended=1" {
		t.Errorf("the replaced session: %d Location %q, want 303 to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if logs := h.logs.String(); strings.Contains(logs, h.apiKey) || strings.Contains(logs, h.adminKey) {
		t.Error("the log has a credential")
	}
}

// TestSignInFailureLimit: refused sign-ins count against their address's
// failed-authentication limit, the one the API's refused keys count
// against: 200 bad credentials from one address put it under the limit
// (429 with Retry-After, the API refused from there too), while a person
// at another address still signs in.
func TestSignInFailureLimit(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	h := newHarness(t, harnessOptions{audit: true,
		server:  func(c *server.Config) { c.TrustedProxies = trusted },
		console: func(c *console.Config) { c.TrustedProxies = trusted }})
	attacker, other := map[string]string{"X-Forwarded-For": "203.0.113.9"}, map[string]string{"X-Forwarded-For": "198.51.100.7"}
	u := newUser(h)
	statuses := map[int]int{}
	for i := range 200 {
		bad := url.Values{"credential": {fmt.Sprintf("sa_%040d", i)}}
		if i%2 == 1 {
			bad = url.Values{"credential": {fmt.Sprintf("sk_%040d", i)}}
		}
		resp, body := u.do(u.stay, http.MethodPost, "/console/login", bad, attacker)
		statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra <= 0 {
				t.Fatalf("429 with Retry-After %q", resp.Header.Get("Retry-After"))
			}
			if !strings.Contains(body, "Too many refused sign-ins") {
				t.Fatalf("429 page: %s", body)
			}
		} else if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("bad sign-in %d: %d", i, resp.StatusCode)
		}
	}
	if statuses[http.StatusUnauthorized] == 0 || statuses[http.StatusTooManyRequests] < 150 {
		t.Fatalf("answers to 200 bad sign-ins: %v; want refusals, then the limit", statuses)
	}
	// The limit holds for a good credential from that address, on the
	// console and on the API alike.
	if resp, _ := u.do(u.stay, http.MethodPost, "/console/login", url.Values{"credential": {h.adminKey}}, attacker); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a good credential from the limited address: %d, want 429", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, h.ts.URL+"/v1/connections", nil)
	req.Header.Set("Authorization", "Bearer "+h.apiKey)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the API from the limited address: %v, %v; want 429", resp, err)
	} else {
		resp.Body.Close()
	}
	// Another address is not locked out.
	v := newUser(h)
	if resp, _ := v.do(v.stay, http.MethodPost, "/console/login", url.Values{"credential": {h.adminKey}}, other); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-in from another address: %d, want 303", resp.StatusCode)
	}
	if err := h.trail.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs, err := h.trail.Records(ctx, spotoken.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, r := range recs {
		if r.Action == spotoken.AuditAuthFailed && r.Route == "/console/login" {
			failed++
			if r.ClientIP != "203.0.113.9" || r.Status != http.StatusUnauthorized {
				t.Errorf("record of a refused sign-in: %+v", r)
			}
		}
	}
	if failed != statuses[http.StatusUnauthorized] {
		t.Errorf("%d auth.failed records of the console, want %d", failed, statuses[http.StatusUnauthorized])
	}
}
