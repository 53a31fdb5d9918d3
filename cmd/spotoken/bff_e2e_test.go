package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/spotoken/spotoken/internal/browsertest"
)

// TestBinaryExampleSPA runs the example SPA exactly as docs/browser-apps.md
// tells a newcomer to, against the real binary: spotoken serve --emulator
// --emulator-user "" (the consent page is shown), then the browser at
// /spa/. It signs in through the emulator's consent page, plays a track,
// lives through an access-token expiry after the emulator's clock moves two
// hours (POST /_emulator/clock, as the banner prints), and signs out. The
// access tokens the connection held, read through the API with the demo
// key, are in neither the page's storage nor serve's log nor the database
// files, nor is the session cookie.
func TestBinaryExampleSPA(t *testing.T) {
	ctx := browsertest.New(t, 2*time.Minute, 1280, 900)
	dir := t.TempDir()
	db := filepath.Join(dir, "emulator.db")
	p := startSpotoken(t, []string{"XDG_DATA_HOME=" + dir}, "serve", "--emulator", "--emulator-user", "", "--json",
		"--addr", "127.0.0.1:0", "--db", db)
	var info struct {
		URL         string `json:"url"`
		EmulatorURL string `json:"emulator_url"`
		APIKey      string `json:"api_key"`
	}
	if err := json.Unmarshal([]byte(p.URL), &info); err != nil {
		t.Fatalf("serve --json: %v: %s", err, p.URL)
	}
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("browser: %s: %v\nstderr:\n%s", what, err, p.Stderr)
		}
	}
	text := func(id string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("browser: read #%s: %v", id, err)
		}
		return s
	}
	errorShown := func() bool {
		t.Helper()
		hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("error").hidden`))
		if err != nil {
			t.Fatal(err)
		}
		return !hidden
	}
	vend := func() string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, info.URL+"/v1/connections/bff:alice/token", nil)
		req.Header.Set("Authorization", "Bearer "+info.APIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
			t.Fatalf("vend bff:alice's token with the demo key: %d %s", resp.StatusCode, body)
		}
		return tok.AccessToken
	}
	storage := func() string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](
			`JSON.stringify({cookie: document.cookie, local: {...localStorage}, session: {...sessionStorage}})`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	do("open the example and sign in",
		chromedp.Navigate(info.URL+"/spa/"),
		chromedp.WaitVisible(chromedp.ID("signed-out")),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("new_user")),
		chromedp.SendKeys(chromedp.ID("new_user"), "alice"),
		chromedp.Click(chromedp.ID("agree")),
		chromedp.WaitVisible(chromedp.ID("signed-in")),
		chromedp.Click(chromedp.ID("play")),
		chromedp.WaitVisible(chromedp.ID("track-block")),
	)
	if got := text("user-name"); got != "alice" || text("track") == "" || errorShown() {
		t.Errorf("signed in: user %q, track %q, error %q", got, text("track"), text("error"))
	}
	first := vend()
	if strings.Contains(storage(), first) {
		t.Error("the access token is in the page's storage")
	}
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{info.URL + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	var session string
	for _, c := range cookies.Cookies {
		if c.Name == "Http-spotoken_bff_demo" && c.HTTPOnly {
			session = c.Value
		}
	}
	if session == "" {
		t.Fatalf("no HttpOnly session cookie: %+v", cookies.Cookies)
	}
	// The cookie copied out of the browser, from outside: refused without
	// the CSRF header and from a foreign origin; the header alone works.
	for _, tt := range []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"no CSRF header", nil, http.StatusUnauthorized},
		{"a foreign origin", map[string]string{"X-Spotoken-CSRF": "1", "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"the header (control)", map[string]string{"X-Spotoken-CSRF": "1"}, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, info.URL+"/bff/demo/api/v1/me", nil)
		req.AddCookie(&http.Cookie{Name: "Http-spotoken_bff_demo", Value: session})
		for k, v := range tt.headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("the copied cookie with %s: %d, want %d", tt.name, resp.StatusCode, tt.status)
		}
	}

	// Two hours on, as the banner's curl line does.
	resp, err := http.Post(info.EmulatorURL+"/_emulator/clock", "application/json", strings.NewReader(`{"advance":"2h"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	do("refresh after the token expired",
		chromedp.Evaluate[chromedp.Void](`document.getElementById("updated").textContent = ""`),
		chromedp.Click(chromedp.ID("refresh")),
		chromedp.Poll[chromedp.Void](`document.getElementById("updated").textContent !== "" && !document.getElementById("refresh").disabled`,
			chromedp.WithPollingTimeout(20*time.Second)),
	)
	if errorShown() || text("track") == "" {
		t.Errorf("after the expiry: error %q, track %q", text("error"), text("track"))
	}
	second := vend()
	if second == first {
		t.Error("the connection's access token did not change after two hours: no refresh happened")
	}
	if s := storage(); strings.Contains(s, first) || strings.Contains(s, second) {
		t.Error("an access token is in the page's storage")
	}
	do("sign out",
		chromedp.Click(chromedp.ID("sign-out")),
		chromedp.WaitVisible(chromedp.ID("signed-out")),
	)

	running := e2eDBFiles(t, db)
	if code := p.Stop(); code != 0 {
		t.Errorf("exit status after SIGTERM = %d; stderr:\n%s", code, p.Stderr)
	}
	secrets := map[string]string{"the first access token": first, "the second access token": second, "the session cookie": session,
		"the demo API key": info.APIKey}
	e2eNoSecrets(t, "serve's log", map[string][]byte{"stderr": []byte(p.Stderr.String())}, secrets, []string{"bff: signed in", "bff: signed out"})
	e2eNoSecrets(t, "the running server's database", running, secrets, []string{"bff:alice"})
	e2eNoSecrets(t, "the stopped server's database", e2eDBFiles(t, db), secrets, []string{"bff:alice"})
}
