package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// victimBrowser is a browser (cookie jar) that follows redirects up to the
// app's return_to (https://app.example), which it does not leave for.
func victimBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: time.Minute, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host == "app.example" {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

// consent answers the emulator's consent page in page as user; it returns
// the browser's last response (the redirect to return_to, or a page).
func consent(t *testing.T, b *http.Client, emu string, page []byte, user string) (*http.Response, []byte) {
	t.Helper()
	m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no consent form in the page:\n%s", page)
	}
	form := url.Values{"request": {string(m[1])}, "user": {user}, "action": {"agree"}}
	for _, s := range regexp.MustCompile(`name="scope" value="([^"]+)"`).FindAllSubmatch(page, -1) {
		form.Add("scope", string(s[1]))
	}
	resp, err := b.PostForm(emu+"/authorize/consent", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// open follows link in browser b and returns the last response.
func open(t *testing.T, b *http.Client, link string) (*http.Response, []byte) {
	t.Helper()
	resp, err := b.Get(link)
	if err != nil {
		t.Fatalf("GET %s: %v", link, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// TestE2EForwardedConnectLink (finding 2) plays the review's attack on the
// real binary: the victim alice approved the app once (the emulator
// remembers it, as Spotify does); the attacker asks the app for a connect
// link to his own connection and sends it to her. spotoken sends
// show_dialog=true, so the emulator shows its consent page instead of
// approving silently; and with require_confirmation, even if she clicks
// through, the attacker's connection never holds her grant: the app, which
// knows alice is signed in and not the attacker, never confirms.
func TestE2EForwardedConnectLink(t *testing.T) {
	e := e2eStart(t)
	if r := e2eDo(t, "POST", e.emu+"/_emulator/auto-approve", "", map[string]string{"user": ""}); r.Status != http.StatusNoContent {
		t.Fatalf("turn auto-approve off: %d %s", r.Status, r.Body)
	}
	session := func(id string, extra map[string]any) string {
		t.Helper()
		body := map[string]any{"connection_id": id, "return_to": "https://app.example/done"}
		for k, v := range extra {
			body[k] = v
		}
		r := e.api("POST", "/v1/connect-sessions", e.appKey, body)
		if r.Status != http.StatusCreated {
			t.Fatalf("connect session: %d %s", r.Status, r.Body)
		}
		return r.json(t)["url"].(string)
	}
	victim := victimBrowser()

	// Alice connects her own account once, on the consent page.
	resp, page := open(t, victim, session("alice-conn", nil))
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte(`name="request"`)) {
		t.Fatalf("alice's first connect: %d, want the consent page:\n%s", resp.StatusCode, page)
	}
	if resp, _ = consent(t, victim, e.emu, page, "alice"); resp.StatusCode != http.StatusFound ||
		resp.Header.Get("Location") != "https://app.example/done?connection_id=alice-conn&status=connected" {
		t.Fatalf("alice's consent: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The control: a link that opts out of show_dialog is approved
	// silently from the remembered consent, which is the attack.
	resp, _ = open(t, victim, session("control", map[string]any{"show_dialog": false}))
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "status=connected") {
		t.Fatalf("without show_dialog the remembered consent should approve silently: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// 1. The forwarded link (default: show_dialog): alice sees the consent
	// page naming the account; nothing is linked until she acts.
	resp, page = open(t, victim, session("mallory-conn", nil))
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte(`name="request"`)) {
		t.Fatalf("the forwarded link: %d, want the emulator's consent page:\n%s", resp.StatusCode, page)
	}
	if r := e.api("GET", "/v1/connections/mallory-conn", e.appKey, nil); r.Status != http.StatusNotFound {
		t.Errorf("mallory-conn while the consent page is shown: %d %s", r.Status, r.Body)
	}

	// 2. With require_confirmation, alice clicks through: the grant is
	// held apart, the redirect carries a confirm code, and the attacker's
	// connection holds nothing.
	resp, page = open(t, victim, session("mallory-conn", map[string]any{"require_confirmation": true}))
	if resp.StatusCode != 200 {
		t.Fatalf("the forwarded link with require_confirmation: %d", resp.StatusCode)
	}
	resp, _ = consent(t, victim, e.emu, page, "alice")
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || loc.Host != "app.example" {
		t.Fatalf("after consent: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	q := loc.Query()
	code := q.Get("confirm")
	if q.Get("status") != "confirmation_required" || q.Get("connection_id") != "mallory-conn" || !strings.HasPrefix(code, "cc_") {
		t.Fatalf("return_to query %q, want status=confirmation_required with a confirm code", loc.RawQuery)
	}
	for _, req := range [][2]string{{"GET", "/v1/connections/mallory-conn"}, {"POST", "/v1/connections/mallory-conn/token"}, {"GET", "/v1/proxy/mallory-conn/v1/me"}} {
		if r := e.api(req[0], req[1], e.appKey, nil); r.Status != http.StatusNotFound {
			t.Errorf("%s %s before confirmation: %d %s, want 404", req[0], req[1], r.Status, r.Body)
		}
	}
	if r := e.api("GET", "/v1/connections", e.appKey, nil); bytes.Contains(r.Body, []byte("mallory-conn")) {
		t.Errorf("the unconfirmed connection is listed: %s", r.Body)
	}
	// The attacker, without the code, cannot confirm; a wrong code, or
	// the code for another connection, fails and spends nothing.
	for _, tc := range []struct{ id, code string }{{"mallory-conn", "cc_guess"}, {"mallory-conn", e2eFlipLast(code)}, {"alice-conn", code}} {
		if r := e.api("POST", "/v1/connections/"+tc.id+"/confirm", e.appKey, map[string]string{"code": tc.code}); r.Status != http.StatusBadRequest {
			t.Errorf("confirm %s with a wrong code: %d %s, want 400", tc.id, r.Status, r.Body)
		}
	}
	// The grant expires unconfirmed and is erased; the code then fails.
	e.advance("11m")
	if r := e.api("POST", "/v1/connections/mallory-conn/confirm", e.appKey, map[string]string{"code": code}); r.Status != http.StatusBadRequest {
		t.Errorf("confirm after the grant expired: %d %s, want 400", r.Status, r.Body)
	}
	if r := e.api("GET", "/v1/connections/mallory-conn", e.appKey, nil); r.Status != http.StatusNotFound {
		t.Errorf("mallory-conn after all: %d %s, want 404", r.Status, r.Body)
	}

	// 3. The legitimate use: alice connects her own connection with
	// require_confirmation; the app confirms; the connection works; the
	// code is single-use.
	_, page = open(t, victim, session("alice-2", map[string]any{"require_confirmation": true}))
	resp, _ = consent(t, victim, e.emu, page, "alice")
	loc, _ = url.Parse(resp.Header.Get("Location"))
	code2 := loc.Query().Get("confirm")
	r := e.api("POST", "/v1/connections/alice-2/confirm", e.appKey, map[string]string{"code": code2})
	if r.Status != 200 || r.json(t)["state"] != "active" || r.json(t)["spotify_user_id"] != "alice" {
		t.Fatalf("confirm: %d %s", r.Status, r.Body)
	}
	if r, tok := e.token(e.appKey, "alice-2"); r.Status != 200 || tok.AccessToken == "" {
		t.Errorf("token after confirmation: %d %s", r.Status, r.Body)
	}
	if r := e.api("POST", "/v1/connections/alice-2/confirm", e.appKey, map[string]string{"code": code2}); r.Status != http.StatusBadRequest {
		t.Errorf("the confirm code twice: %d %s, want 400", r.Status, r.Body)
	}
	// require_confirmation without return_to is refused.
	if r := e.api("POST", "/v1/connect-sessions", e.appKey, map[string]any{"connection_id": "x", "require_confirmation": true}); r.Status != http.StatusBadRequest {
		t.Errorf("require_confirmation without return_to: %d %s", r.Status, r.Body)
	}
	e.stopAndSearch(t, map[string]string{"the confirm code": code, "the second confirm code": code2, "the API key": e.appKey},
		[]string{`"route":"POST /v1/connections/{id}/confirm"`}, []string{"spotoken-demo"})
}
