package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/server"
)

// stayClient returns a client that keeps cookies in jar but does not follow
// redirects, to read each Location of the connect flow.
func stayClient(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// flowResponse is one step of a connect flow: status, Location, page body
// and the outcome the flow page shows (data-outcome), if any.
type flowResponse struct {
	Status   int
	Location string
	Outcome  string
	Body     string
}

var outcomeRE = regexp.MustCompile(`data-outcome="([a-z_]+)"`)

// flowGet sends GET rawURL with c and reads the answer.
func flowGet(t *testing.T, c *http.Client, rawURL string) flowResponse {
	t.Helper()
	resp, err := c.Get(rawURL)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fr := flowResponse{Status: resp.StatusCode, Location: resp.Header.Get("Location"), Body: string(body)}
	if m := outcomeRE.FindStringSubmatch(fr.Body); m != nil {
		fr.Outcome = m[1]
	}
	return fr
}

// flow is a connect flow stopped just before the browser comes back to
// /callback: the emulator has answered /authorize.
type flow struct {
	client       *http.Client // the browser, not following redirects
	authorizeURL string       // where /connect/{session} sent the browser
	callbackURL  string       // where the emulator sends it back (code or error, and state)
	state        string
}

// startFlow opens a connect link in a browser with jar (a new one when nil)
// and follows it to the emulator, stopping before /callback. With
// auto-approval the callback carries a code; without, the emulator shows
// its consent page and callbackURL is empty.
func (h *harness) startFlow(jar http.CookieJar, sessURL string) *flow {
	h.t.Helper()
	if jar == nil {
		jar, _ = cookiejar.New(nil)
	}
	f := &flow{client: stayClient(jar)}
	r := flowGet(h.t, f.client, sessURL)
	if r.Status != http.StatusFound || !strings.HasPrefix(r.Location, h.emuSrv.URL+"/authorize?") {
		h.t.Fatalf("GET connect link: %d Location %q, want 302 to the emulator's /authorize: %s", r.Status, r.Location, r.Body)
	}
	f.authorizeURL = r.Location
	u, _ := url.Parse(r.Location)
	f.state = u.Query().Get("state")
	r = flowGet(h.t, f.client, f.authorizeURL)
	switch {
	case r.Status == http.StatusOK: // the consent page
	case r.Status == http.StatusFound && strings.HasPrefix(r.Location, h.ts.URL+"/callback?"):
		f.callbackURL = r.Location
	default:
		h.t.Fatalf("GET /authorize: %d Location %q: %s", r.Status, r.Location, r.Body)
	}
	return f
}

// callback comes back to spotoken at rawURL in the flow's browser.
func (f *flow) callback(t *testing.T, rawURL string) flowResponse {
	t.Helper()
	return flowGet(t, f.client, rawURL)
}

// withQuery returns rawURL with its query parameters set as in kv.
func withQuery(t *testing.T, rawURL string, kv ...string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			q.Del(kv[i])
		} else {
			q.Set(kv[i], kv[i+1])
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// connections lists every connection of app in the store.
func (h *harness) connections(app string) []*spotoken.Connection {
	h.t.Helper()
	cs, err := h.store.Connections(context.Background(), spotoken.ConnectionFilter{AppID: app, Limit: 1000})
	if err != nil {
		h.t.Fatal(err)
	}
	return cs
}

// connection reads one connection from the store; nil if there is none.
func (h *harness) connection(app, id string) *spotoken.Connection {
	h.t.Helper()
	c, err := h.store.Connection(context.Background(), spotoken.ConnectionKey{AppID: app, ID: id})
	if err != nil {
		if spotoken.ErrorCode(err) == spotoken.ENotFound {
			return nil
		}
		h.t.Fatal(err)
	}
	return c
}

// pending returns the undelivered events.
func (h *harness) pending() []*spotoken.Event {
	h.t.Helper()
	evs, err := h.store.PendingEvents(context.Background(), h.emu.Now().Add(24*time.Hour), 1000)
	if err != nil {
		h.t.Fatal(err)
	}
	return evs
}

// events lists the undelivered events as "type app/connection".
func (h *harness) events() []string {
	h.t.Helper()
	out := []string{}
	for _, e := range h.pending() {
		out = append(out, string(e.Type)+" "+e.AppID+"/"+e.ConnectionID)
	}
	return out
}

// wantNothingStored checks that no connection exists and that no event
// but connect.failed does.
func (h *harness) wantNothingStored() {
	h.t.Helper()
	for _, app := range []string{appID, otherAppID} {
		if cs := h.connections(app); len(cs) != 0 {
			h.t.Errorf("app %s has %d connections, want none (first %s)", app, len(cs), cs[0].ID)
		}
	}
	for _, ev := range h.events() {
		if !strings.HasPrefix(ev, "connect.failed ") {
			h.t.Errorf("event %s, want none but connect.failed", ev)
		}
	}
}

// connectFailures returns the reasons of the connect.failed events, as
// "app/connection reason".
func (h *harness) connectFailures() []string {
	h.t.Helper()
	out := []string{}
	for _, e := range h.pending() {
		if e.Type != spotoken.EventConnectFailed {
			continue
		}
		var data struct {
			ConnectionID string `json:"connection_id"`
			Reason       string `json:"reason"`
		}
		if err := json.Unmarshal(e.Data, &data); err != nil || data.ConnectionID != e.ConnectionID {
			h.t.Errorf("connect.failed data %s: %v", e.Data, err)
		}
		out = append(out, e.AppID+"/"+e.ConnectionID+" "+data.Reason)
	}
	return out
}

func TestConnectHappyPath(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	now := h.emu.Now()
	h.connect("c1", "user-read-email", "playlist-read-private")

	var got server.ConnectionView
	resp, raw := h.call("GET", "/v1/connections/c1", h.apiKey, nil, &got)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET connection: %d %s", resp.StatusCode, raw)
	}
	at := func(t time.Time) *time.Time { return &t }
	want := server.ConnectionView{
		ID: "c1", State: spotoken.StateActive, Scopes: spotoken.Scopes{"playlist-read-private", "user-read-email"},
		SpotifyUserID: "alice", DisplayName: "alice",
		ExpiresAt:   at(now.Add(time.Hour)),
		ConsentedAt: at(now), GrantExpiresAt: at(now.Add(4380 * time.Hour)),
		CreatedAt: now, UpdatedAt: now,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("connection (-got +want):\n%s", diff)
	}

	evs, err := h.store.PendingEvents(context.Background(), now, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	var data map[string]any
	if err := json.Unmarshal(evs[0].Data, &data); err != nil {
		t.Fatal(err)
	}
	gotEv := map[string]any{"type": string(evs[0].Type), "app": evs[0].AppID, "connection": evs[0].ConnectionID, "data": data}
	wantEv := map[string]any{"type": "connection.created", "app": appID, "connection": "c1", "data": map[string]any{
		"connection_id": "c1", "spotify_user_id": "alice", "scopes": []any{"playlist-read-private", "user-read-email"},
		"grant_expires_at": now.Add(4380 * time.Hour).Format(time.RFC3339),
	}}
	if diff := cmp.Diff(gotEv, wantEv); diff != "" {
		t.Errorf("event (-got +want):\n%s", diff)
	}

	tok, resp, raw := h.token("c1")
	if resp.StatusCode != http.StatusOK || tok.AccessToken == "" || tok.Scope != "playlist-read-private user-read-email" {
		t.Errorf("token after connect: %d %s", resp.StatusCode, raw)
	}
}

// TestConnectDefaultScopes: a session without scopes asks for the app's
// default scopes; one with an empty list asks for none.
func TestConnectDefaultScopes(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, tc := range []struct {
		id     string
		scopes []string
		want   spotoken.Scopes
	}{
		{"defaults", nil, spotoken.Scopes{"user-read-email"}},
		{"none", []string{}, spotoken.Scopes{}},
	} {
		body := map[string]any{"connection_id": tc.id}
		if tc.scopes != nil {
			body["scopes"] = tc.scopes
		}
		var sess server.ConnectSession
		if resp, raw := h.call("POST", "/v1/connect-sessions", h.apiKey, body, &sess); resp.StatusCode != http.StatusCreated {
			t.Fatalf("%s: %d %s", tc.id, resp.StatusCode, raw)
		}
		if r := flowGet(t, h.browser, sess.URL); r.Outcome != "connected" {
			t.Fatalf("%s: outcome %q", tc.id, r.Outcome)
		}
		var got server.ConnectionView
		h.call("GET", "/v1/connections/"+tc.id, h.apiKey, nil, &got)
		if diff := cmp.Diff(got.Scopes, tc.want); diff != "" {
			t.Errorf("%s: scopes (-got +want):\n%s", tc.id, diff)
		}
	}
}

func TestConnectReturnTo(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	sess := h.session("c1", nil, "https://app.example/done?x=1")
	f := h.startFlow(nil, sess.URL)
	r := f.callback(t, f.callbackURL)
	if r.Status != http.StatusFound {
		t.Fatalf("callback: %d %s", r.Status, r.Body)
	}
	u, err := url.Parse(r.Location)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{"origin": u.Scheme + "://" + u.Host, "path": u.Path, "query": u.Query()}
	want := map[string]any{"origin": "https://app.example", "path": "/done", "query": url.Values{
		"x": {"1"}, "connection_id": {"c1"}, "status": {"connected"},
	}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("redirect to return_to (-got +want):\n%s", diff)
	}
	if c := h.connection(appID, "c1"); c == nil || c.State != spotoken.StateActive {
		t.Errorf("connection after return_to flow: %+v", c)
	}
}

func TestConnectReturnToAllowlist(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	accepted := 0
	for _, tc := range []struct {
		returnTo string
		ok       bool
	}{
		{"https://app.example", true},
		{"https://app.example/a/b?c=d", true},
		{"https://APP.example/x", true}, // host names are case-insensitive
		{"https://evil.example", false},
		{"https://app.example.evil.example", false},
		{"https://app.example.evil.example/", false},
		{"javascript:alert(1)", false},
		{"//evil.example", false},
		{"/relative", false},
		{"https://app.example@evil.example", false},
		{"https://user:pw@app.example/", false},
		{"http://app.example", false}, // another scheme is another origin
		{"https://app.example:8443", false},
		{"https://app.example/#frag", false},
		{"https:///app.example", false},
		{"https://app.example\\@evil.example", false},
		{"data:text/html,hi", false},
	} {
		t.Run(tc.returnTo, func(t *testing.T) {
			var e server.ErrorResponse
			resp, raw := h.call("POST", "/v1/connect-sessions", h.apiKey,
				map[string]any{"connection_id": "rt", "return_to": tc.returnTo}, &e)
			if tc.ok {
				if resp.StatusCode != http.StatusCreated {
					t.Errorf("%d %s, want 201", resp.StatusCode, raw)
				}
				accepted++
				return
			}
			if resp.StatusCode != http.StatusBadRequest || e.Error != "invalid_request" || !strings.Contains(e.Description, "return_to") {
				t.Errorf("%d %s, want 400 invalid_request about return_to", resp.StatusCode, raw)
			}
		})
	}
	// Only the accepted requests stored a connect session.
	n, err := h.store.DeleteExpiredPending(context.Background(), h.emu.Now().Add(24*time.Hour))
	if err != nil || n != accepted {
		t.Errorf("%d pending authorizations (%v), want %d", n, err, accepted)
	}
}

// TestConnectRefusedSessionStoresNothing: a refused connect session leaves
// no pending authorization behind: the refused requests' links never
// existed, so the only link that works is the one accepted.
func TestConnectRefusedSessionStoresNothing(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, body := range []any{
		map[string]any{"connection_id": "c1", "return_to": "https://evil.example"},
		map[string]any{"connection_id": "c1", "scopes": []string{"NOT A SCOPE"}},
		map[string]any{"connection_id": "bad id"},
		map[string]any{"connection_id": ""},
		map[string]any{"connection_id": strings.Repeat("a", 129)},
		map[string]any{"connection_id": "."},  // unreachable at /v1/connections/.
		map[string]any{"connection_id": ".."}, // nor at /v1/connections/..
		map[string]any{"connection_id": "c1", "extra": 1},
		`{"connection_id": "c1"} {}`,
		`[]`,
		`null`,
		``,
	} {
		resp, raw := h.call("POST", "/v1/connect-sessions", h.apiKey, body, nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%v: %d %s, want 400", body, resp.StatusCode, raw)
		}
		wantErrorBody(t, resp, raw, "invalid_request")
	}
	n, err := h.store.DeleteExpiredPending(context.Background(), h.emu.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d pending authorizations stored by refused requests, want 0", n)
	}
	// The count can see one when there is one.
	h.session("c1", nil, "")
	if n, _ := h.store.DeleteExpiredPending(context.Background(), h.emu.Now().Add(24*time.Hour)); n != 1 {
		t.Errorf("%d pending authorizations after one accepted request, want 1", n)
	}
}

// TestConnectMisconfiguredApp: an app without spotoken's redirect URI gets
// a clear error and no link.
func TestConnectMisconfiguredApp(t *testing.T) {
	h := newHarness(t, harnessOptions{app: func(a *spotoken.App) { a.RedirectURIs = []string{"https://elsewhere.example/callback"} }})
	var e server.ErrorResponse
	resp, raw := h.call("POST", "/v1/connect-sessions", h.apiKey, map[string]any{"connection_id": "c1"}, &e)
	if resp.StatusCode != http.StatusBadGateway || e.Error != "app_misconfigured" || !strings.Contains(e.Description, h.srv.CallbackURL()) {
		t.Errorf("%d %s, want 502 app_misconfigured naming the callback URL", resp.StatusCode, raw)
	}
}

func TestConnectUserDenies(t *testing.T) {
	t.Run("consent page", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		h.emu.SetAutoApprove("")
		f := h.startFlow(nil, h.session("c1", nil, "").URL)
		if f.callbackURL != "" {
			t.Fatal("the emulator did not show its consent page")
		}
		// The consent page's form: its request id, then Cancel.
		r := flowGet(t, f.client, f.authorizeURL)
		m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindStringSubmatch(r.Body)
		if m == nil {
			t.Fatalf("no request id on the consent page: %s", r.Body)
		}
		resp, err := f.client.PostForm(h.emuSrv.URL+"/authorize/consent", url.Values{"request": {m[1]}, "action": {"cancel"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.Contains(loc, "error=access_denied") {
			t.Fatalf("consent cancel: %d %q", resp.StatusCode, loc)
		}
		got := f.callback(t, loc)
		if got.Status != http.StatusBadRequest || got.Outcome != "access_denied" {
			t.Errorf("callback: %d outcome %q, want 400 access_denied", got.Status, got.Outcome)
		}
		h.wantNothingStored()
	})
	t.Run("return_to", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		f := h.startFlow(nil, h.session("c1", nil, "https://app.example/back").URL)
		denied := withQuery(t, f.callbackURL, "code", "", "error", "access_denied")
		got := f.callback(t, denied)
		u, _ := url.Parse(got.Location)
		if got.Status != http.StatusFound || u.Host != "app.example" {
			t.Fatalf("callback: %d %q, want a redirect to return_to", got.Status, got.Location)
		}
		q := u.Query()
		gotQ := map[string]string{"connection_id": q.Get("connection_id"), "error": q.Get("error"), "status": q.Get("status")}
		if diff := cmp.Diff(gotQ, map[string]string{"connection_id": "c1", "error": "access_denied", "status": ""}); diff != "" {
			t.Errorf("return_to query (-got +want):\n%s", diff)
		}
		if q.Get("error_description") == "" {
			t.Error("no error_description in the redirect")
		}
		h.wantNothingStored()
	})
}

// TestCallbackRefusals: every way a callback can be refused shows its
// outcome and stores nothing.
func TestCallbackRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		// run drives a flow and returns the last answer.
		run  func(t *testing.T, h *harness) flowResponse
		want string
	}{
		{"unknown state", func(t *testing.T, h *harness) flowResponse {
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			return f.callback(t, withQuery(t, f.callbackURL, "state", "a-state-nobody-issued"))
		}, "invalid_state"},
		{"no state", func(t *testing.T, h *harness) flowResponse {
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			return f.callback(t, withQuery(t, f.callbackURL, "state", ""))
		}, "invalid_state"},
		{"huge state", func(t *testing.T, h *harness) flowResponse {
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			return f.callback(t, withQuery(t, f.callbackURL, "state", f.state+strings.Repeat("A", 300)))
		}, "invalid_state"},
		{"expired state", func(t *testing.T, h *harness) flowResponse {
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			h.emu.Advance(11 * time.Minute)
			return f.callback(t, f.callbackURL)
		}, "state_expired"},
		{"state in another browser", func(t *testing.T, h *harness) flowResponse {
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			other, _ := cookiejar.New(nil)
			return flowGet(t, stayClient(other), f.callbackURL)
		}, "state_mismatch"},
		{"state cookie with another flow's value", func(t *testing.T, h *harness) flowResponse {
			// The browser holds a cookie by this flow's name, but its value
			// belongs to another flow.
			jar, _ := cookiejar.New(nil)
			stateCookies := func(u *url.URL) []*http.Cookie {
				var out []*http.Cookie
				for _, c := range jar.Cookies(u) {
					if strings.HasPrefix(c.Name, "spotoken_state_") {
						out = append(out, c)
					}
				}
				return out
			}
			f := h.startFlow(jar, h.session("c1", nil, "").URL)
			cb, _ := url.Parse(f.callbackURL)
			mine := stateCookies(cb)
			h.startFlow(jar, h.session("c2", nil, "").URL)
			var theirs *http.Cookie
			for _, c := range stateCookies(cb) {
				if c.Name != mine[0].Name {
					theirs = c
				}
			}
			if len(mine) != 1 || theirs == nil || theirs.Value == mine[0].Value {
				t.Fatalf("state cookies: mine %v, theirs %v", mine, theirs)
			}
			jar.SetCookies(cb, []*http.Cookie{{Name: mine[0].Name, Value: theirs.Value, Path: "/callback"}})
			return f.callback(t, f.callbackURL)
		}, "state_mismatch"},
		{"state cookie of another flow", func(t *testing.T, h *harness) flowResponse {
			// The victim's browser has a flow of its own going; the
			// attacker's callback must not ride on its cookie.
			victim := h.startFlow(nil, h.session("victim", nil, "").URL)
			attacker := h.startFlow(nil, h.session("c1", nil, "").URL)
			return victim.callback(t, attacker.callbackURL)
		}, "state_mismatch"},
		{"no code", func(t *testing.T, h *harness) flowResponse {
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			return f.callback(t, withQuery(t, f.callbackURL, "code", ""))
		}, "exchange_failed"},
		{"Spotify error other than access_denied", func(t *testing.T, h *harness) flowResponse {
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			return f.callback(t, withQuery(t, f.callbackURL, "code", "", "error", "invalid_scope"))
		}, "exchange_failed"},
		{"token endpoint fails", func(t *testing.T, h *harness) flowResponse {
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			if err := h.emu.SetFaults(emulator.Faults{TokenStatus: 503}); err != nil {
				t.Fatal(err)
			}
			return f.callback(t, f.callbackURL)
		}, "exchange_failed"},
		{"wrong code", func(t *testing.T, h *harness) flowResponse {
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			return f.callback(t, withQuery(t, f.callbackURL, "code", "AQnot-a-code"))
		}, "exchange_failed"},
		{"code of another flow", func(t *testing.T, h *harness) flowResponse {
			// The code was issued for another PKCE challenge.
			other := h.startFlow(nil, h.session("c2", nil, "").URL)
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			code, _ := url.Parse(other.callbackURL)
			return f.callback(t, withQuery(t, f.callbackURL, "code", code.Query().Get("code")))
		}, "exchange_failed"},
		{"profile unreadable", func(t *testing.T, h *harness) flowResponse {
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			if err := h.emu.SetFaults(emulator.Faults{APIStatus: 503}); err != nil {
				t.Fatal(err)
			}
			return f.callback(t, f.callbackURL)
		}, "profile_failed"},
		{"profile refused with 403, whatever its body", func(t *testing.T, h *harness) flowResponse {
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			if err := h.emu.SetFaults(emulator.Faults{APIStatus: 403, APIMessage: "Something else entirely"}); err != nil {
				t.Fatal(err)
			}
			return f.callback(t, f.callbackURL)
		}, "user_not_allowlisted"},
		{"token endpoint rate-limits the exchange", func(t *testing.T, h *harness) flowResponse {
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			wait := 600
			if err := h.emu.SetFaults(emulator.Faults{TokenStatus: 429, RetryAfter: &wait, Count: 1}); err != nil {
				t.Fatal(err)
			}
			r := f.callback(t, f.callbackURL)
			// The window is the app's now: the next flow sends no exchange.
			until, err := h.store.RateLimitedUntil(context.Background(), appID)
			if err != nil || !until.Equal(h.emu.Now().Add(10*time.Minute)) {
				t.Errorf("rate-limit window %v (%v), want 10 minutes", until, err)
			}
			before := h.emu.Stats().TokenRequests["authorization_code"]
			g := h.startFlow(nil, h.session("c2", nil, "").URL)
			if again := g.callback(t, g.callbackURL); again.Outcome != "rate_limited" {
				t.Errorf("a flow inside the window: %q, want rate_limited", again.Outcome)
			}
			if n := h.emu.Stats().TokenRequests["authorization_code"] - before; n != 0 {
				t.Errorf("%d code exchanges inside the window", n)
			}
			return r
		}, "rate_limited"},
		{"session token as state", func(t *testing.T, h *harness) flowResponse {
			sess := h.session("c1", nil, "")
			token := strings.TrimPrefix(sess.URL, h.ts.URL+"/connect/")
			r := flowGet(t, h.browser, h.ts.URL+"/callback?code=x&state="+url.QueryEscape(token))
			// The session was not consumed: its link still starts a flow.
			if f := h.startFlow(nil, sess.URL); f.callbackURL == "" {
				t.Error("the session no longer works")
			}
			return r
		}, "invalid_state"},
		{"state as session token", func(t *testing.T, h *harness) flowResponse {
			f := h.startFlow(nil, h.session("c1", nil, "").URL)
			r := flowGet(t, f.client, h.ts.URL+"/connect/"+url.PathEscape(f.state))
			// The state was not consumed: the flow still completes.
			if got := f.callback(t, f.callbackURL); got.Outcome != "connected" {
				t.Errorf("the flow whose state was tried as a session: outcome %q, want connected", got.Outcome)
			}
			return r
		}, "invalid_session"},
		{"unknown session", func(t *testing.T, h *harness) flowResponse {
			return flowGet(t, h.browser, h.ts.URL+"/connect/cs_nope")
		}, "invalid_session"},
		{"session used twice", func(t *testing.T, h *harness) flowResponse {
			sess := h.session("c1", nil, "")
			h.startFlow(nil, sess.URL)
			return flowGet(t, stayClient(nil), sess.URL)
		}, "session_used"},
		{"session expired", func(t *testing.T, h *harness) flowResponse {
			sess := h.session("c1", nil, "")
			h.emu.Advance(server.DefaultSessionTTL)
			return flowGet(t, stayClient(nil), sess.URL)
		}, "session_expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			got := tc.run(t, h)
			if got.Status != http.StatusBadRequest || got.Outcome != tc.want {
				t.Errorf("%d outcome %q, want 400 %q\n%s", got.Status, got.Outcome, tc.want, got.Body)
			}
			if tc.name == "state as session token" {
				return // that flow went on to connect, on purpose
			}
			h.wantNothingStored()
			// A flow that got back from Spotify tells the app why it
			// failed: one connect.failed with the outcome as its reason.
			fails := h.connectFailures()
			switch tc.want {
			case "invalid_session", "session_used", "session_expired", "invalid_state", "state_used", "state_expired":
				if len(fails) != 0 {
					t.Errorf("connect.failed %v for a flow that never got back from Spotify", fails)
				}
			default:
				if len(fails) == 0 || fails[0] != appID+"/c1 "+tc.want {
					t.Errorf("connect.failed %v, want first %s/c1 %s", fails, appID, tc.want)
				}
			}
		})
	}
}

func TestCallbackReplayedState(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	f := h.startFlow(nil, h.session("c1", nil, "").URL)
	if got := f.callback(t, f.callbackURL); got.Outcome != "connected" {
		t.Fatalf("first callback: %d %q", got.Status, got.Outcome)
	}
	for _, c := range []*http.Client{f.client, stayClient(nil)} {
		got := flowGet(t, c, f.callbackURL)
		if got.Status != http.StatusBadRequest || got.Outcome != "state_used" {
			t.Errorf("replayed callback: %d %q, want 400 state_used", got.Status, got.Outcome)
		}
	}
	if diff := cmp.Diff(h.events(), []string{"connection.created demo/c1"}); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	if n := len(h.connections(appID)); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// TestCallbackReplayedCode: a code already exchanged does not connect
// again (Spotify refuses it), and nothing more is stored.
func TestCallbackReplayedCode(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	first := h.startFlow(nil, h.session("c1", nil, "").URL)
	if got := first.callback(t, first.callbackURL); got.Outcome != "connected" {
		t.Fatalf("first callback: %q", got.Outcome)
	}
	code, _ := url.Parse(first.callbackURL)
	second := h.startFlow(nil, h.session("c2", nil, "").URL)
	got := second.callback(t, withQuery(t, second.callbackURL, "code", code.Query().Get("code")))
	if got.Status != http.StatusBadRequest || got.Outcome != "exchange_failed" {
		t.Errorf("replayed code: %d %q, want 400 exchange_failed", got.Status, got.Outcome)
	}
	if h.connection(appID, "c2") != nil {
		t.Error("a replayed code created a connection")
	}
	if diff := cmp.Diff(h.events(), []string{"connection.created demo/c1", "connect.failed demo/c2"}); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
}

// TestConnectStateCookieUnderPathPrefix: behind a proxy that serves
// spotoken under a path (public URL https://host/prefix), the state cookie
// must be sent back to /prefix/callback.
func TestConnectStateCookieUnderPathPrefix(t *testing.T) {
	var handler http.Handler
	front := newFrontServer(t, "/prefix", &handler)
	h := newHarness(t, harnessOptions{
		server: func(c *server.Config) { c.PublicURL = front + "/prefix" },
		emulator: func(c *emulator.Config) {
			c.Clients = []emulator.Client{{ID: clientID, RedirectURIs: []string{"http://127.0.0.1/prefix/callback"}}}
		},
	})
	handler = h.srv
	sess := h.session("c1", nil, "")
	if !strings.HasPrefix(sess.URL, front+"/prefix/connect/") {
		t.Fatalf("connect link %s, want it under %s/prefix", sess.URL, front)
	}
	r := flowGet(t, h.browser, sess.URL)
	if r.Status != http.StatusOK || r.Outcome != "connected" {
		t.Errorf("connect under a path prefix: %d %q", r.Status, r.Outcome)
	}
}

// TestReconnect: a connect link for an existing connection replaces its
// grant: new scopes, new tokens, active again after needs_reauth.
func TestReconnect(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.connect("c1", "user-read-email")
	old, resp, raw := h.token("c1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %s", resp.StatusCode, raw)
	}
	h.emu.Advance(time.Minute)
	h.connect("c1", "user-read-email", "playlist-read-private")

	// The engine had the old token in memory; it must not serve it.
	tok, resp, raw := h.token("c1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token after re-connect: %d %s", resp.StatusCode, raw)
	}
	if tok.AccessToken == old.AccessToken {
		t.Error("the old grant's access token is still served after re-connecting")
	}
	if tok.Scope != "playlist-read-private user-read-email" {
		t.Errorf("scope %q after re-connect with more scopes", tok.Scope)
	}
	c := h.connection(appID, "c1")
	if c.Token.AccessToken.Reveal() != tok.AccessToken {
		t.Error("the stored access token is not the new grant's")
	}
	var view server.ConnectionView
	h.call("GET", "/v1/connections/c1", h.apiKey, nil, &view)
	now := h.emu.Now()
	got := []time.Time{view.CreatedAt, view.UpdatedAt, *view.ConsentedAt, *view.GrantExpiresAt}
	want := []time.Time{now.Add(-time.Minute), now, now, now.Add(4380 * time.Hour)}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("created, updated, consented, grant expiry after re-connect (-got +want):\n%s", diff)
	}

	// Revoked at Spotify: needs_reauth, then a new connect makes it active.
	if err := h.emu.RevokeGrant("alice", clientID); err != nil {
		t.Fatal(err)
	}
	h.emu.Advance(time.Hour)
	var e server.ErrorResponse
	resp, raw = h.call("POST", "/v1/connections/c1/token", h.apiKey, nil, &e)
	if resp.StatusCode != http.StatusConflict || e.Error != "needs_reauth" {
		t.Fatalf("token after revocation: %d %s", resp.StatusCode, raw)
	}
	if c := h.connection(appID, "c1"); c.State != spotoken.StateNeedsReauth {
		t.Fatalf("state %s after invalid_grant", c.State)
	}
	h.connect("c1", "user-read-email")
	c = h.connection(appID, "c1")
	if c.State != spotoken.StateActive || c.LastErrorCode != "" || !slicesEqual(c.Scopes, spotoken.Scopes{"user-read-email"}) {
		t.Errorf("after re-connect: state %s, last error %q, scopes %v", c.State, c.LastErrorCode, c.Scopes)
	}
	if _, resp, raw := h.token("c1"); resp.StatusCode != http.StatusOK {
		t.Errorf("token after re-connect: %d %s", resp.StatusCode, raw)
	}
	wantEvents := []string{
		"connection.created demo/c1", "connection.reauthorized demo/c1",
		"connection.needs_reauth demo/c1", "connection.reauthorized demo/c1",
	}
	if diff := cmp.Diff(h.events(), wantEvents); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
}

func slicesEqual(a, b spotoken.Scopes) bool { return cmp.Equal([]string(a), []string(b)) }

// TestConnectHeadIsSafe: a HEAD of a connect link or a callback (a link
// checker, a chat app's preview) uses up nothing.
func TestConnectHeadIsSafe(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	head := func(rawURL string) {
		t.Helper()
		req, _ := http.NewRequest("HEAD", rawURL, nil)
		resp, err := stayClient(nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("HEAD: %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
	}
	sess := h.session("c1", nil, "")
	head(sess.URL)
	f := h.startFlow(nil, sess.URL)
	head(f.callbackURL)
	if n := h.emu.Stats().TokenRequests["authorization_code"]; n != 0 {
		t.Errorf("HEAD of the callback exchanged the code (%d exchanges)", n)
	}
	if got := f.callback(t, f.callbackURL); got.Outcome != "connected" {
		t.Errorf("the flow after HEADs: %d %q, want connected", got.Status, got.Outcome)
	}
}

// TestConnectScopesAsGranted: the user unticks a scope on the consent
// page; the connection holds what Spotify granted, not what was asked.
func TestConnectScopesAsGranted(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.emu.SetAutoApprove("")
	f := h.startFlow(nil, h.session("c1", []string{"user-read-email", "user-top-read", "playlist-read-private"}, "").URL)
	r := flowGet(t, f.client, f.authorizeURL)
	m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindStringSubmatch(r.Body)
	if m == nil {
		t.Fatalf("no consent page: %s", r.Body)
	}
	resp, err := f.client.PostForm(h.emuSrv.URL+"/authorize/consent", url.Values{
		"request": {m[1]}, "action": {"agree"}, "new_user": {"bob"}, "scope": {"user-top-read", "user-read-email"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := f.callback(t, resp.Header.Get("Location")); got.Outcome != "connected" {
		t.Fatalf("callback: %d %q", got.Status, got.Outcome)
	}
	var view server.ConnectionView
	h.call("GET", "/v1/connections/c1", h.apiKey, nil, &view)
	got := map[string]any{"scopes": []string(view.Scopes), "user": view.SpotifyUserID}
	want := map[string]any{"scopes": []string{"user-read-email", "user-top-read"}, "user": "bob"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("connection (-got +want):\n%s", diff)
	}
}
