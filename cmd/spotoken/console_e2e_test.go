package main

import (
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestE2EConsole drives the operator's console of the real binary over
// HTTP, as a browser would (its cookie, its forms, its Origin), then stops
// it and searches its log and database files for every secret the console
// handled: the admin credential, the session cookie and its CSRF token, an
// API key created there, a webhook secret rotated there, a client secret
// staged there, a connect link made there, and the connection's tokens.
// None may be anywhere but the one page that showed it, once.
func TestE2EConsole(t *testing.T) {
	e := e2eStart(t)
	e.connect(e.appKey, "u1", "")
	_, tok := e.token(e.appKey, "u1")
	if tok.AccessToken == "" {
		t.Fatal("no access token to look for")
	}
	adminKey, _, _ := strings.Cut(e.cli("admins", "create", "ops"), "\n")

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	send := func(method, path string, form url.Values) (int, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, e.base+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", e.base)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
		}
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := send("POST", "/console/login", url.Values{"credential": {adminKey}}); status != 200 || !strings.Contains(body, `data-app="e2e"`) {
		t.Fatalf("sign in: %d\n%s", status, body)
	}
	_, page := send("GET", "/console/apps/e2e", nil)
	m := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token:\n%s", page)
	}
	csrf := m[1]
	shown := regexp.MustCompile(`id="(?:secret-value|connect-link)" type="text" readonly value="([^"]+)"`)
	once := func(path string, form url.Values) string {
		t.Helper()
		form.Set("csrf_token", csrf)
		status, body := send("POST", path, form)
		m := shown.FindStringSubmatch(body)
		if status != 200 || m == nil {
			t.Fatalf("POST %s: %d, nothing shown\n%s", path, status, body)
		}
		return html.UnescapeString(m[1])
	}
	newKey := once("/console/apps/e2e/keys", url.Values{"name": {"from-the-console"}})
	webhookSecret := once("/console/apps/e2e/webhook-secret/rotate", url.Values{})
	link := once("/console/apps/e2e/connections/u1/connect-link", url.Values{})
	staged := "staged-client-secret-0f1e2d3c4b5a"
	if status, _ := send("POST", "/console/apps/e2e/client-secret", url.Values{"csrf_token": {csrf}, "client_secret": {staged}}); status != 200 {
		t.Fatalf("stage a client secret: %d", status)
	}
	if !strings.HasPrefix(newKey, "sk_") || !strings.HasPrefix(webhookSecret, "whsec_") || !strings.HasPrefix(link, e.base+"/connect/cs_") {
		t.Fatalf("shown: %.6s… %.8s… %q", newKey, webhookSecret, link)
	}
	if r := e.api("GET", "/v1/connections", newKey, nil); r.Status != 200 {
		t.Errorf("the API key made in the console does not work: %d", r.Status)
	}
	var session string
	base, _ := url.Parse(e.base)
	for _, c := range jar.Cookies(base) {
		if c.Name == "spotoken_dashboard" {
			session = c.Value
		}
	}
	secrets := map[string]string{
		"the admin credential": adminKey, "the API key made in the console": newKey, "the webhook secret rotated in the console": webhookSecret,
		"the webhook key": strings.TrimPrefix(webhookSecret, "whsec_"), "the staged client secret": staged,
		"the connect link": strings.TrimPrefix(link, e.base+"/connect/"), "the session cookie": session, "the CSRF token": csrf,
		"the access token": tok.AccessToken, "the app's API key": e.appKey,
	}
	// No page shows them again.
	for _, path := range []string{"/console/", "/console/apps/e2e", "/console/apps/e2e/connections/u1", "/console/apps/e2e/keys",
		"/console/apps/e2e/settings", "/console/apps/e2e/deliveries", "/console/search?q=u1"} {
		status, body := send("GET", path, nil)
		if status != 200 {
			t.Errorf("GET %s: %d", path, status)
		}
		for what, s := range secrets {
			if what != "the CSRF token" && strings.Contains(body, s) {
				t.Errorf("GET %s shows %s", path, what)
			}
		}
	}
	e.stopAndSearch(t, secrets, []string{`"msg":"console: signed in"`, `"action":"api_key.create"`}, []string{"from-the-console"})
}
