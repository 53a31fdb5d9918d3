package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/internal/pgtest"
	"github.com/spotoken/spotoken/postgres"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
)

const day = 24 * time.Hour

// hookSink receives an app's webhooks and keeps the verified ones.
type hookSink struct {
	t      *testing.T
	secret spotoken.Secret
	now    func() time.Time
	mu     sync.Mutex
	got    []receivedHook
}

type receivedHook struct {
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
}

func (s *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := server.VerifyWebhook(s.secret, r.Header, body, s.now(), 0); err != nil {
		s.t.Errorf("webhook signature: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var h receivedHook
	if err := json.Unmarshal(body, &h); err != nil {
		s.t.Errorf("webhook body %s: %v", body, err)
	}
	s.mu.Lock()
	s.got = append(s.got, h)
	s.mu.Unlock()
}

// take returns the hooks of type typ received so far and forgets them all.
func (s *hookSink) take(typ spotoken.EventType) []receivedHook {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []receivedHook
	for _, h := range s.got {
		if h.Type == string(typ) {
			out = append(out, h)
		}
	}
	s.got = nil
	return out
}

// grantHarness is a harness whose app has a webhook receiver, with the
// emulator enforcing Spotify's six-month grant lifetime.
type grantHarness struct {
	*harness
	sink  *hookSink
	hooks *server.Webhooks
}

func newGrantHarness(t *testing.T) *grantHarness {
	secret := spotoken.NewWebhookSecret()
	sink := &hookSink{t: t, secret: secret}
	recv := httptest.NewServer(sink)
	t.Cleanup(recv.Close)
	h := newHarness(t, harnessOptions{
		emulator: func(c *emulator.Config) { c.Rotation = emulator.Rotation{Mode: emulator.RotateAlways} },
		app: func(a *spotoken.App) {
			a.WebhookURL, a.WebhookSecret = recv.URL+"/hooks", secret
		},
	})
	sink.now = h.emu.Now
	g := &grantHarness{harness: h, sink: sink}
	g.hooks = &server.Webhooks{Store: h.store, Now: h.emu.Now, Client: recv.Client(), ConnectLink: h.srv.ConnectLink}
	return g
}

// deliver runs one webhook pass and returns the hooks of type typ received.
func (g *grantHarness) deliver(typ spotoken.EventType) []receivedHook {
	g.t.Helper()
	if _, err := g.hooks.RunOnce(context.Background()); err != nil {
		g.t.Fatal(err)
	}
	return g.sink.take(typ)
}

func (g *grantHarness) warn() int {
	g.t.Helper()
	n, err := g.srv.WarnExpiring(context.Background())
	if err != nil {
		g.t.Fatal(err)
	}
	return n
}

func (g *grantHarness) conn(id string) *spotoken.Connection {
	g.t.Helper()
	c, err := g.store.Connection(context.Background(), spotoken.ConnectionKey{AppID: appID, ID: id})
	if err != nil {
		g.t.Fatal(err)
	}
	return c
}

// TestGrantWalksToExpiry takes a grant through Spotify's six months on the
// emulator's clock: the app is warned 14 days ahead, once, with a connect
// link; the grant then expires at Spotify and the connection needs
// re-authorization for the reason grant_expired.
func TestGrantWalksToExpiry(t *testing.T) {
	g := newGrantHarness(t)
	consent := g.emu.Now()
	g.connect("u1")
	c := g.conn("u1")
	lifetime := emulator.DefaultRefreshLifetime
	if !c.ConsentedAt.Equal(consent) || !c.GrantExpiresAt.Equal(consent.Add(lifetime)) || !c.ExpiryWarnedAt.IsZero() {
		t.Fatalf("after consent: consented %v, grant expires %v, warned %v; want %v, %v, zero",
			c.ConsentedAt, c.GrantExpiresAt, c.ExpiryWarnedAt, consent, consent.Add(lifetime))
	}
	var view server.ConnectionView
	g.call("GET", "/v1/connections/u1", g.apiKey, nil, &view)
	if view.GrantExpiresAt == nil || !view.GrantExpiresAt.Equal(c.GrantExpiresAt) {
		t.Errorf("API grant_expires_at = %v, want %v", view.GrantExpiresAt, c.GrantExpiresAt)
	}
	g.deliver("")

	// A day before the warning: nothing. Tokens keep being refreshed
	// meanwhile, which does not extend the grant.
	g.emu.Advance(lifetime - 15*day)
	if tok, resp, raw := g.token("u1"); resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("token five and a half months in: %d %s", resp.StatusCode, raw)
	}
	if n := g.warn(); n != 0 {
		t.Fatalf("warned %d connections 15 days before expiry, want 0", n)
	}
	if c := g.conn("u1"); !c.GrantExpiresAt.Equal(consent.Add(lifetime)) {
		t.Errorf("a refresh moved the grant expiry to %v", c.GrantExpiresAt)
	}

	// Inside the 14 days: one warning, and only one however often the
	// janitor runs.
	g.emu.Advance(day + time.Minute)
	if n := g.warn(); n != 1 {
		t.Fatalf("warned %d connections 14 days before expiry, want 1", n)
	}
	for range 3 {
		if n := g.warn(); n != 0 {
			t.Fatalf("warned again: %d", n)
		}
	}
	if c := g.conn("u1"); c.ExpiryWarnedAt.IsZero() || c.State != spotoken.StateActive {
		t.Errorf("after the warning: state %s, warned at %v", c.State, c.ExpiryWarnedAt)
	}
	hooks := g.deliver(spotoken.EventConnectionExpiring)
	if len(hooks) != 1 {
		t.Fatalf("got %d connection.expiring webhooks, want 1", len(hooks))
	}
	d := hooks[0].Data
	link, _ := d["connect_url"].(string)
	if d["connection_id"] != "u1" || d["grant_expires_at"] != consent.Add(lifetime).UTC().Format(time.RFC3339) ||
		!strings.HasPrefix(link, g.ts.URL+"/connect/") || d["connect_url_expires_at"] == nil {
		t.Errorf("connection.expiring data = %v", d)
	}
	g.metricHas(t, `spotoken_connections_grant_expiring{app="`+appID+`",within="7d"} 0`)
	g.metricHas(t, `spotoken_connections_grant_expiring{app="`+appID+`",within="30d"} 1`)

	// The app ignores it. Past the six months Spotify refuses the refresh
	// token; the connection needs re-authorization, as grant_expired.
	g.emu.Advance(14 * day)
	_, resp, raw := g.token("u1")
	var body server.ErrorResponse
	json.Unmarshal(raw, &body)
	if resp.StatusCode != http.StatusConflict || body.Error != "needs_reauth" || body.ConnectURL == "" {
		t.Fatalf("token after the grant expired: %d %s", resp.StatusCode, raw)
	}
	if got := g.emu.Stats().TokenErrors["invalid_grant"]; got != 1 {
		t.Errorf("emulator refused %d refreshes with invalid_grant, want 1", got)
	}
	if c := g.conn("u1"); c.State != spotoken.StateNeedsReauth || c.LastErrorCode != "invalid_grant" {
		t.Errorf("after expiry: state %s, last error %q", c.State, c.LastErrorCode)
	}
	reauth := g.deliver(spotoken.EventConnectionNeedsReauth)
	if len(reauth) != 1 || reauth[0].Data["reason"] != "grant_expired" || reauth[0].Data["connect_url"] == nil {
		t.Fatalf("connection.needs_reauth webhooks = %+v, want one with reason grant_expired and a connect_url", reauth)
	}
	if n := g.warn(); n != 0 {
		t.Errorf("warned %d connections needing re-authorization", n)
	}
}

// TestReconsentRenewsGrant: a user who follows the warning's link before
// the grant expires gets a new six months, with no failed token request in
// between and a new warning only near the new expiry.
func TestReconsentRenewsGrant(t *testing.T) {
	g := newGrantHarness(t)
	g.connect("u1")
	first := g.conn("u1").GrantExpiresAt
	lifetime := emulator.DefaultRefreshLifetime

	g.emu.Advance(lifetime - 10*day)
	if n := g.warn(); n != 1 {
		t.Fatalf("warned %d, want 1", n)
	}
	hooks := g.deliver(spotoken.EventConnectionExpiring)
	if len(hooks) != 1 {
		t.Fatalf("got %d connection.expiring webhooks, want 1", len(hooks))
	}
	link, _ := hooks[0].Data["connect_url"].(string)

	// The user follows the webhook's link (the emulator approves as
	// alice), days later: it is still valid.
	g.emu.Advance(2 * day)
	resp, err := g.browser.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `data-outcome="connected"`) {
		t.Fatalf("following the expiring webhook's link: %d %s", resp.StatusCode, page)
	}
	renewed := g.emu.Now()
	c := g.conn("u1")
	if !c.GrantExpiresAt.Equal(renewed.Add(lifetime)) || !c.ExpiryWarnedAt.IsZero() || c.State != spotoken.StateActive {
		t.Fatalf("after re-consent: grant expires %v (want %v), warned %v, state %s", c.GrantExpiresAt, renewed.Add(lifetime), c.ExpiryWarnedAt, c.State)
	}
	if got := g.deliver(spotoken.EventConnectionReauthorized); len(got) != 1 {
		t.Errorf("got %d connection.reauthorized webhooks, want 1", len(got))
	}

	// Past the first grant's expiry, tokens keep coming: the refresh uses
	// the new grant.
	refreshes := g.refreshes()
	g.emu.Advance(first.Sub(g.emu.Now()) + time.Hour)
	if tok, resp, raw := g.token("u1"); resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("token after the first grant's expiry: %d %s", resp.StatusCode, raw)
	}
	if g.refreshes() != refreshes+1 {
		t.Errorf("refreshes: %d, want %d", g.refreshes(), refreshes+1)
	}
	if errs := g.emu.Stats().TokenErrors; len(errs) != 0 {
		t.Errorf("the emulator answered token errors %v; want none", errs)
	}
	if n := g.warn(); n != 0 {
		t.Errorf("warned %d about the new grant five months early", n)
	}

	// The new grant is warned about in its turn.
	g.emu.Advance(c.GrantExpiresAt.Sub(g.emu.Now()) - 13*day)
	if n := g.warn(); n != 1 {
		t.Errorf("warned %d about the new grant 13 days before it expires, want 1", n)
	}
}

// TestExpiryWarningDisabled: a negative ExpiryWarning sends nothing.
func TestExpiryWarningDisabled(t *testing.T) {
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.ExpiryWarning = -1 }})
	h.connect("u1")
	h.emu.Advance(emulator.DefaultRefreshLifetime - day)
	n, err := h.srv.WarnExpiring(context.Background())
	if err != nil || n != 0 {
		t.Fatalf("WarnExpiring with warnings off = %d, %v", n, err)
	}
}

// metricHas checks that /metrics serves line.
func (g *grantHarness) metricHas(t *testing.T, line string) {
	t.Helper()
	resp, err := http.Get(g.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), line+"\n") {
		var lines []string
		for _, l := range strings.Split(string(body), "\n") {
			if strings.Contains(l, "grant_expiring") {
				lines = append(lines, l)
			}
		}
		t.Errorf("/metrics lacks %q; it has:\n%s", line, strings.Join(lines, "\n"))
	}
}

// TestExpiryWarningOnceAcrossReplicas: replicas sharing one PostgreSQL
// database warn about each grant exactly once, however many run the
// janitor at the same moment.
func TestExpiryWarningOnceAcrossReplicas(t *testing.T) {
	dsn := pgtest.FreshSchema(t, pgtest.DSN(t), "expiry")
	ring, err := seal.GenerateKeyFile(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	ctx := context.Background()
	const replicas, conns = 4, 60
	var servers []*server.Server
	var first *postgres.DB
	for i := range replicas {
		db, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Keys: ring, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if i == 0 {
			first = db
		}
		engine, err := refresh.New(refresh.Config{Store: db, Now: clock, Refresher: &refresh.SpotifyRefresher{TokenURL: "http://127.0.0.1:1/api/token"}})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(server.Config{Store: db, Tokens: engine, PublicURL: "http://127.0.0.1:1", Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, srv)
	}
	if err := first.CreateApp(ctx, &spotoken.App{ID: appID, ClientID: clientID}); err != nil {
		t.Fatal(err)
	}
	for i := range conns {
		expires := now.Add(time.Duration(i%20) * day) // two thirds within the 14 days
		c := &spotoken.Connection{AppID: appID, ID: fmt.Sprintf("u%03d", i), State: spotoken.StateActive,
			Token:       spotoken.Token{AccessToken: "at", RefreshToken: "rt", Expiry: now.Add(time.Hour)},
			ConsentedAt: expires.Add(-emulator.DefaultRefreshLifetime), GrantExpiresAt: expires}
		if err := first.CreateConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	want := 0
	for i := range conns {
		if time.Duration(i%20)*day < server.DefaultExpiryWarning {
			want++
		}
	}

	var wg sync.WaitGroup
	counts := make([]int, replicas*3)
	for i := range counts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := servers[i%replicas].WarnExpiring(ctx)
			if err != nil {
				t.Error(err)
			}
			counts[i] = n
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range counts {
		total += n
	}
	events, err := first.PendingEvents(ctx, now, 1000)
	if err != nil {
		t.Fatal(err)
	}
	perConn := map[string]int{}
	for _, e := range events {
		if e.Type == spotoken.EventConnectionExpiring {
			perConn[e.ConnectionID]++
		}
	}
	if total != want || len(perConn) != want {
		t.Errorf("replicas reported %d warnings and stored events for %d connections; want %d", total, len(perConn), want)
	}
	for id, n := range perConn {
		if n != 1 {
			t.Errorf("connection %s got %d connection.expiring events, want 1", id, n)
		}
	}
}
