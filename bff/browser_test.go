package bff_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/spotoken/spotoken/internal/browsertest"
)

// The acceptance tests of the backend-for-frontend in a real Chromium: the
// example SPA (examples/spa) signs in through the emulator's consent page,
// shows the user and the current track, lives through an access-token
// expiry, and signs out; every token the emulator issued is searched for in
// document.cookie, localStorage, sessionStorage, IndexedDB and every
// response body the browser received; a cross-site page and a page of
// another origin of the site try to use the victim's cookie; a cookie
// planted before the sign-in is not the signed-in one.
//
// SPOTOKEN_TEST_SCREENSHOT_DIR receives spa-signed-out.png, spa-1280.png
// and spa-390.png (the example at 1280 and 390 pixels wide) and
// spa-cross-origin.png.

const browserTimeout = 120 * time.Second

// page is the browser tab and what it received.
type page struct {
	t   *testing.T
	h   *harness
	ctx context.Context

	mu       sync.Mutex
	finished []network.RequestID
	urls     map[network.RequestID]string
	bodies   map[string][]byte // by request id, read
	missed   int               // bodies the browser no longer had
}

func newPage(t *testing.T, h *harness, ctx context.Context) *page {
	p := &page{t: t, h: h, ctx: ctx, urls: map[network.RequestID]string{}, bodies: map[string][]byte{}}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("browser: enable the network domain: %v", err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventResponseReceived:
			p.urls[ev.RequestID] = ev.Response.URL
		case *network.EventLoadingFinished:
			p.finished = append(p.finished, ev.RequestID)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// do runs browser actions, failing the test with what was being done.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.t.Fatalf("browser: %s: %v", what, err)
	}
}

func (p *page) text(id string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		p.t.Fatalf("browser: read #%s: %v", id, err)
	}
	return s
}

func (p *page) hidden(id string) bool {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](`document.getElementById(`+jsString(id)+`).hidden`))
	if err != nil {
		p.t.Fatalf("browser: #%s hidden: %v", id, err)
	}
	return v
}

func jsString(s string) string { return fmt.Sprintf("%q", s) }

// collect reads the bodies of the responses that finished since the last
// call, while the page that received them is still open.
func (p *page) collect() {
	p.t.Helper()
	p.mu.Lock()
	ids := p.finished
	p.finished = nil
	p.mu.Unlock()
	for _, id := range ids {
		res, err := chromedp.Call(p.ctx, network.GetResponseBody, network.GetResponseBodyParams{RequestID: id})
		p.mu.Lock()
		if err != nil {
			p.missed++ // a redirect or a body the browser did not keep
		} else {
			p.bodies[string(id)+" "+p.urls[id]] = res.Body
		}
		p.mu.Unlock()
	}
}

// bodyFrom reports whether a body was read from a URL containing part.
func (p *page) bodyFrom(part string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range p.bodies {
		if strings.Contains(k, part) {
			return true
		}
	}
	return false
}

// storage returns what the page's JavaScript can read of the browser's
// storage: document.cookie, localStorage, sessionStorage and every
// IndexedDB database, as one string.
func (p *page) storage() string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`(async () => {
		const out = {cookie: document.cookie, local: {}, session: {}, idb: {}};
		for (let i = 0; i < localStorage.length; i++) { const k = localStorage.key(i); out.local[k] = localStorage.getItem(k); }
		for (let i = 0; i < sessionStorage.length; i++) { const k = sessionStorage.key(i); out.session[k] = sessionStorage.getItem(k); }
		for (const info of await indexedDB.databases()) {
			const db = await new Promise((ok, fail) => { const r = indexedDB.open(info.name); r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error); });
			out.idb[info.name] = {};
			for (const store of db.objectStoreNames) {
				out.idb[info.name][store] = await new Promise((ok, fail) => {
					const r = db.transaction(store).objectStore(store).getAll(); r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error);
				});
			}
			db.close();
		}
		return JSON.stringify(out);
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("browser: read the page's storage: %v", err)
	}
	return s
}

// storageControl writes markers to localStorage, sessionStorage and an
// IndexedDB database and checks that storage finds each: the search for
// tokens can be trusted to look there.
func (p *page) storageControl() {
	p.t.Helper()
	_, err := chromedp.Run(p.ctx, chromedp.Evaluate[chromedp.Void](`(async () => {
		localStorage.setItem("control", "marker-local");
		sessionStorage.setItem("control", "marker-session");
		await new Promise((ok, fail) => {
			const r = indexedDB.open("control-db", 1);
			r.onupgradeneeded = () => r.result.createObjectStore("things", {autoIncrement: true});
			r.onsuccess = () => { const tx = r.result.transaction("things", "readwrite"); tx.objectStore("things").add("marker-idb");
				tx.oncomplete = () => { r.result.close(); ok(); }; tx.onerror = () => fail(tx.error); };
			r.onerror = () => fail(r.error);
		});
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("browser: write the storage markers: %v", err)
	}
	got := p.storage()
	for _, m := range []string{"marker-local", "marker-session", "marker-idb"} {
		if !strings.Contains(got, m) {
			p.t.Errorf("control: %s not found in the page's storage (%s): the search cannot be trusted", m, got)
		}
	}
}

// checkNoTokens searches the page's storage and every response body read
// so far for the tokens the emulator issued: none may be there, except the
// access tokens when accessOK (the token-mediating mode).
func (p *page) checkNoTokens(when string, accessOK bool) {
	p.t.Helper()
	p.collect()
	access, refresh := p.h.rec.tokens()
	if len(access) == 0 || len(refresh) == 0 {
		p.t.Fatalf("%s: the emulator issued %d access and %d refresh tokens: nothing to look for", when, len(access), len(refresh))
	}
	store := p.storage()
	p.mu.Lock()
	defer p.mu.Unlock()
	look := func(kind string, toks []string) {
		for _, tok := range toks {
			if strings.Contains(store, tok) {
				p.t.Errorf("%s: a %s token is in the page's storage: %s", when, kind, store)
			}
			for url, body := range p.bodies {
				if strings.Contains(string(body), tok) {
					p.t.Errorf("%s: a %s token is in the body of %s", when, kind, url)
				}
			}
		}
	}
	look("refresh", refresh)
	if !accessOK {
		look("access", access)
	}
}

// cookie returns the browser's BFF session cookie for spotoken, nil if none.
func (p *page) cookie() *network.Cookie {
	p.t.Helper()
	res, err := chromedp.Call(p.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{p.h.ts.URL + "/"}})
	if err != nil {
		p.t.Fatalf("browser: cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == "Http-spotoken_bff_"+appID {
			return c
		}
	}
	return nil
}

// consentSoon is consent, for a consent page that must come within five
// seconds (well before the example's 15-second polling could cause it).
func (p *page) consentSoon(user string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("new_user"))); err != nil {
		p.t.Fatalf("browser: no consent page within 5s: %v", err)
	}
	p.consent(user)
}

// consent answers the emulator's consent page as user.
func (p *page) consent(user string) {
	p.t.Helper()
	p.do("consent as "+user+" on the emulator's page",
		chromedp.WaitVisible(chromedp.ID("new_user")),
		chromedp.SendKeys(chromedp.ID("new_user"), user),
		chromedp.Click(chromedp.ID("agree")),
	)
}

// outside calls the BFF from Go with a cookie copied out of the browser.
func (h *harness) outside(t *testing.T, cookie, path string, csrf bool) int {
	t.Helper()
	b := h.newBrowser("")
	b.setCookie(cookie)
	return b.call(http.MethodGet, path, csrf, "").Status
}

func TestBrowserExampleSPA(t *testing.T) {
	ctx := browsertest.New(t, browserTimeout, 1280, 900) // first, so a missing chromium skips before anything else starts
	h := newHarness(t, harnessOptions{})
	p := newPage(t, h, ctx)
	spaURL := h.ts.URL + "/spa/"

	p.do("open the example, signed out",
		chromedp.Navigate(spaURL),
		chromedp.WaitVisible(chromedp.ID("signed-out")),
	)
	browsertest.Screenshot(t, ctx, "spa-signed-out.png")

	// Session fixation: a cookie planted before the sign-in (as a sibling
	// subdomain or an earlier visitor of a shared computer could).
	const planted = "planted-before-the-sign-in-0123456789abcdef"
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: "Http-spotoken_bff_" + appID, Value: planted,
		URL: h.ts.URL + "/", Path: "/"}); err != nil {
		t.Fatalf("plant a cookie: %v", err)
	}

	p.collect()
	p.do("sign in", chromedp.Click(chromedp.ID("sign-in")))
	p.consent("alice")
	p.do("back at the example, signed in",
		chromedp.WaitVisible(chromedp.ID("signed-in")),
		chromedp.WaitVisible(chromedp.ID("nothing")),
	)
	if got := p.text("user-name"); got != "alice" {
		t.Errorf("the example shows user %q, want alice", got)
	}
	if got := p.text("user-id"); !strings.Contains(got, "alice") {
		t.Errorf("the example shows %q as the user id", got)
	}
	c := p.cookie()
	if c == nil {
		t.Fatal("no session cookie in the browser after signing in")
	}
	if c.Value == planted {
		t.Fatal("the cookie planted before the sign-in is the signed-in one")
	}
	if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/" {
		t.Errorf("session cookie: HttpOnly %v, SameSite %q, Path %q", c.HTTPOnly, c.SameSite, c.Path)
	}
	if st := h.outside(t, planted, "/bff/demo/session", true); st != http.StatusUnauthorized {
		t.Errorf("the planted cookie after the sign-in: %d, want 401", st)
	}
	// The cookie copied out of the browser: refused without the CSRF
	// header, accepted with it (the control).
	before := h.rec.apiCount()
	if st := h.outside(t, c.Value, "/bff/demo/api/v1/me", false); st != http.StatusUnauthorized {
		t.Errorf("the copied cookie without the CSRF header: %d, want 401", st)
	}
	if n := h.rec.apiCount() - before; n != 0 {
		t.Errorf("the emulator got %d requests from the copied cookie without the header", n)
	}
	if st := h.outside(t, c.Value, "/bff/demo/session", true); st != http.StatusOK {
		t.Errorf("control: the copied cookie with the header: %d, want 200", st)
	}

	p.do("play a track",
		chromedp.Click(chromedp.ID("play")),
		chromedp.WaitVisible(chromedp.ID("track-block")),
	)
	track := p.text("track")
	if track == "" || !p.hidden("error") {
		t.Errorf("after Play: track %q, error shown %v (%q)", track, !p.hidden("error"), p.text("error"))
	}
	browsertest.Screenshot(t, ctx, "spa-1280.png")
	p.do("narrow the window to 390 pixels", chromedp.EmulateViewport(390, 844))
	browsertest.Screenshot(t, ctx, "spa-390.png")
	p.do("widen the window again", chromedp.EmulateViewport(1280, 900))
	p.storageControl()
	p.checkNoTokens("signed in", false)

	// The access token expires by the emulator's clock; Refresh goes on
	// without a visible error, after one refresh at Spotify.
	refreshes := h.rec.refreshes()
	h.emu.Advance(2 * time.Hour)
	p.do("refresh what is playing after the token expired",
		chromedp.Evaluate[chromedp.Void](`document.getElementById("updated").textContent = ""`),
		chromedp.Click(chromedp.ID("refresh")),
		chromedp.Poll[chromedp.Void](`document.getElementById("updated").textContent !== "" && !document.getElementById("refresh").disabled`, chromedp.WithPollingTimeout(20*time.Second)),
	)
	if !p.hidden("error") || p.hidden("track-block") || p.text("track") != track {
		t.Errorf("after the expiry: error shown %v (%q), track %q", !p.hidden("error"), p.text("error"), p.text("track"))
	}
	if n := h.rec.refreshes() - refreshes; n != 1 {
		t.Errorf("the expiry cost %d refreshes at Spotify, want 1", n)
	}
	p.checkNoTokens("after the refresh", false)
	if !p.bodyFrom("/bff/demo/session") || !p.bodyFrom("/bff/demo/api/v1/me/player/currently-playing") {
		t.Error("control: the bodies of /session and the proxied calls were not read: the search cannot be trusted")
	}

	// Attacks with the victim's cookie in the browser.
	p.collect()
	attacks(t, h, p)

	p.do("back at the example, still signed in",
		chromedp.Navigate(spaURL),
		chromedp.WaitVisible(chromedp.ID("signed-in")),
	)
	p.collect()
	old := p.cookie().Value
	p.do("sign out",
		chromedp.Click(chromedp.ID("sign-out")),
		chromedp.WaitVisible(chromedp.ID("signed-out")),
	)
	if p.cookie() != nil {
		t.Error("the session cookie is still in the browser after signing out")
	}
	if st := h.outside(t, old, "/bff/demo/session", true); st != http.StatusUnauthorized {
		t.Errorf("the signed-out session's cookie: %d, want 401", st)
	}
	p.checkNoTokens("signed out", false)
	p.mu.Lock()
	t.Logf("searched %d response bodies (%d the browser did not keep: redirects and the like)", len(p.bodies), p.missed)
	p.mu.Unlock()
}

// attacks runs pages of other origins in the victim's browser: a cross-site
// page (localhost is another site than 127.0.0.1) and a page of another
// origin of the same site, each trying to call the Web API through the BFF
// with the victim's cookie, with and without the CSRF header. All are
// refused, and Spotify sees no request.
func attacks(t *testing.T, h *harness, p *page) {
	t.Helper()
	attack := `<!doctype html><meta charset="utf-8"><title>attacker</title><body><pre id="out"></pre><script>
(async () => {
  const target = %q;
  const out = [];
  const tries = [
    ["PUT with the header", () => fetch(target + "/bff/demo/api/v1/me/player/play", {method: "PUT", credentials: "include", headers: {"X-Spotoken-CSRF": "1", "Content-Type": "application/json"}, body: "{}"})],
    ["GET with the header", () => fetch(target + "/bff/demo/api/v1/me", {credentials: "include", headers: {"X-Spotoken-CSRF": "1"}})],
    ["simple POST without the header", () => fetch(target + "/bff/demo/api/v1/me/player/play", {method: "POST", mode: "no-cors", credentials: "include", body: "x"})],
    ["simple GET without the header", () => fetch(target + "/bff/demo/api/v1/me", {mode: "no-cors", credentials: "include"})],
    ["session read", () => fetch(target + "/bff/demo/session", {credentials: "include", headers: {"X-Spotoken-CSRF": "1"}})],
  ];
  for (const [name, f] of tries) {
    try { const r = await f(); let body = ""; try { body = await r.text(); } catch (e) {}
      out.push(name + ": status " + r.status + " type " + r.type + " body " + body.length); }
    catch (e) { out.push(name + ": " + e.name); }
  }
  document.getElementById("out").textContent = out.join("\n");
  document.title = "done";
})();
</script>`
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, attack, h.ts.URL)
	}))
	t.Cleanup(attacker.Close)
	port := attacker.Listener.Addr().(interface{ String() string }).String()
	_, port, _ = strings.Cut(port, ":")
	for _, origin := range []struct{ name, url string }{
		{"a cross-site page", "http://localhost:" + port + "/"},
		{"a page of another origin of the same site", "http://127.0.0.1:" + port + "/"},
	} {
		refusals := strings.Count(h.logs.String(), "refused")
		before := h.rec.apiCount()
		p.do("open "+origin.name,
			chromedp.Navigate(origin.url),
			chromedp.Poll[chromedp.Void](`document.title === "done"`, chromedp.WithPollingTimeout(20*time.Second)),
		)
		out := p.text("out")
		t.Logf("%s (%s):\n%s", origin.name, origin.url, out)
		if n := h.rec.apiCount() - before; n != 0 {
			t.Errorf("%s: the emulator got %d Web API requests", origin.name, n)
		}
		if strings.Contains(out, "status 200") || strings.Contains(out, "status 204") {
			t.Errorf("%s: a call succeeded:\n%s", origin.name, out)
		}
		if strings.Count(h.logs.String(), "refused") == refusals {
			t.Errorf("%s: spotoken logged no refusal: did the attack reach it?", origin.name)
		}
		p.checkNoTokens(origin.name, false)
	}
}

// The example on an origin of its own (same site): CORS with credentials;
// then the token-mediating mode, in which the page gets the access token
// and never the refresh token.
func TestBrowserCrossOriginSPAAndTokenMediating(t *testing.T) {
	ctx := browsertest.New(t, browserTimeout, 1280, 900)
	h := newHarness(t, harnessOptions{})
	p := newPage(t, h, ctx)
	p.do("open the example on its own origin",
		chromedp.Navigate(h.spa.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("signed-out")),
		chromedp.Click(chromedp.ID("sign-in")),
	)
	p.consent("bob")
	p.do("back at the example, signed in",
		chromedp.WaitVisible(chromedp.ID("signed-in")),
		chromedp.WaitVisible(chromedp.ID("nothing")),
		chromedp.Click(chromedp.ID("play")),
		chromedp.WaitVisible(chromedp.ID("track-block")),
	)
	if got := p.text("user-name"); got != "bob" || !p.hidden("error") {
		t.Errorf("the example on its own origin shows %q, error %q", got, p.text("error"))
	}
	browsertest.Screenshot(t, ctx, "spa-cross-origin.png")
	p.checkNoTokens("cross-origin, BFF mode", false)

	// The token-mediating mode: turned on for the app; the page asks.
	b, err := h.store.BrowserApp(context.Background(), appID)
	if err != nil {
		t.Fatal(err)
	}
	b.TokenScopes = appScopes
	if err := h.store.PutBrowserApp(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	tok, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](`SpotokenBFF.app("demo").token()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("browser: token(): %v", err)
	}
	access, _ := h.rec.tokens()
	if tok["access_token"] != access[len(access)-1] {
		t.Errorf("token() gave %v, want the connection's access token", tok)
	}
	if _, ok := tok["refresh_token"]; ok {
		t.Error("token() has a refresh_token field")
	}
	p.checkNoTokens("token-mediating mode", true)
	if !p.bodyFrom("/bff/demo/token") {
		t.Error("control: the body of /token was not read")
	}
	p.do("sign out everywhere",
		chromedp.Click(chromedp.ID("sign-out-everywhere")),
		chromedp.WaitVisible(chromedp.ID("signed-out")),
	)
	if c := h.connection("bff:bob"); c.Status != http.StatusNotFound {
		t.Errorf("the grant after signing out everywhere: %d, want erased", c.Status)
	}
}

// client.js's fetch answers 409 (Spotify no longer honours the grant) and
// 401 (the session is gone) by signing in again; after the consent page the
// example is back, signed in, with no error shown.
func TestBrowserClientSignsInAgain(t *testing.T) {
	ctx := browsertest.New(t, browserTimeout, 1280, 900)
	h := newHarness(t, harnessOptions{})
	p := newPage(t, h, ctx)
	p.do("sign in",
		chromedp.Navigate(h.ts.URL+"/spa/"),
		chromedp.WaitVisible(chromedp.ID("signed-out")),
		chromedp.Click(chromedp.ID("sign-in")),
	)
	p.consent("alice")
	p.do("signed in", chromedp.WaitVisible(chromedp.ID("signed-in")))

	// 409: the user revoked the app at Spotify; the token expired since.
	if err := h.emu.RevokeGrant("alice", clientID); err != nil {
		t.Fatal(err)
	}
	h.emu.Advance(2 * time.Hour)
	p.do("refresh: 409, so client.js signs in again", chromedp.Click(chromedp.ID("refresh")))
	p.consentSoon("alice")
	p.do("back, signed in", chromedp.WaitVisible(chromedp.ID("signed-in")), chromedp.WaitVisible(chromedp.ID("nothing")))
	if !p.hidden("error") {
		t.Errorf("after signing in again: error %q", p.text("error"))
	}

	// 401: the session was ended elsewhere (signed out everywhere).
	if _, err := h.store.DeleteWebSessions(context.Background(), "bff:"+appID, "alice"); err != nil {
		t.Fatal(err)
	}
	p.do("refresh: 401, so client.js signs in again", chromedp.Click(chromedp.ID("refresh")))
	p.consentSoon("alice")
	p.do("back, signed in", chromedp.WaitVisible(chromedp.ID("signed-in")), chromedp.WaitVisible(chromedp.ID("nothing")))
	if !p.hidden("error") || p.text("user-name") != "alice" {
		t.Errorf("after signing in again: user %q, error %q", p.text("user-name"), p.text("error"))
	}
}
