package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

func newDemoCmd(ios *IOStreams) *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Tour the whole token lifecycle offline, in one process, and print a report",
		Long: `Run the Spotify emulator and the broker in one process, against a throwaway
SQLite database, and walk a connection through its whole life: connect, vend a
token, call the Web API through the proxy, expire, refresh silently, rotate the
refresh token, back off from a 429, lose the grant on Spotify's side, get a
re-consent link, reconnect, get warned six months on that Spotify's grant is
ending and renew it with no gap, and delete. Every step is checked; the exit status
is 0 only if all of them behaved as described. Nothing leaves the machine.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return demoRun(cmd.Context(), ios, verbose) },
	}
	cmd.Flags().BoolVar(&verbose, "verbose", false, "also print the broker's JSON logs (to standard error)")
	return cmd
}

// demo is the tour's world: emulator, store, engine, server, webhook receiver.
type demo struct {
	out     io.Writer
	emu     *emulator.Emulator
	store   *sqlite.DB
	engine  *refresh.Engine
	hooks   *server.Webhooks
	srv     *server.Server
	base    string // the broker's URL
	apiKey  string
	browser *http.Client
	events  *receivedEvents
	step    int
}

type receivedEvents struct {
	mu     sync.Mutex
	secret spotoken.Secret
	types  []string
	bad    int
	links  map[string]string // the last connect_url received, by event type
}

func demoRun(ctx context.Context, ios *IOStreams, verbose bool) error {
	logOut := io.Discard
	if verbose {
		logOut = ios.Err
	}
	log := slog.New(slog.NewJSONHandler(logOut, nil))
	dir, err := os.MkdirTemp("", "spotoken-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	rot, _ := emulator.ParseRotation("always")
	emu, err := emulator.New(emulator.Config{AutoApprove: "alice", Rotation: rot,
		Clients: []emulator.Client{{ID: emulator.DefaultClientID, RedirectURIs: []string{"http://127.0.0.1/callback"}}}})
	if err != nil {
		return err
	}
	emuURL, stopEmu, err := listenAndServe(emu)
	if err != nil {
		return err
	}
	defer stopEmu()

	ring, err := seal.GenerateKeyFile(filepath.Join(dir, "spotoken.keys"))
	if err != nil {
		return err
	}
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "spotoken.db"), Keys: ring, Now: emu.Now})
	if err != nil {
		return err
	}
	defer store.Close()
	engine, err := refresh.New(refresh.Config{Store: store, Now: emu.Now, Logger: log,
		Refresher: &refresh.SpotifyRefresher{TokenURL: emuURL + "/api/token", Now: emu.Now}})
	if err != nil {
		return err
	}

	d := &demo{out: ios.Out, emu: emu, store: store, engine: engine, events: &receivedEvents{}}
	hookURL, stopHooks, err := listenAndServe(d.receiver())
	if err != nil {
		return err
	}
	defer stopHooks()

	var srv *server.Server
	base, stopSrv, err := listenAndServe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { srv.ServeHTTP(w, r) }))
	if err != nil {
		return err
	}
	defer stopSrv()
	srv, err = server.New(server.Config{Store: store, Tokens: engine, PublicURL: base, AccountsURL: emuURL, APIURL: emuURL,
		Now: emu.Now, Logger: log, EngineStats: engine.Stats})
	if err != nil {
		return err
	}
	d.base, d.srv = base, srv
	d.hooks = &server.Webhooks{Store: store, Now: emu.Now, Logger: log, ConnectLink: srv.ConnectLink}
	jar, _ := cookiejar.New(nil)
	d.browser = &http.Client{Jar: jar, Timeout: 30 * time.Second}

	secret := spotoken.NewWebhookSecret()
	d.events.secret = secret
	now := emu.Now()
	if err := store.CreateApp(ctx, &spotoken.App{ID: demoAppID, ClientID: emulator.DefaultClientID, RedirectURIs: []string{srv.CallbackURL()},
		DefaultScopes: spotoken.Scopes{"user-read-email", "user-read-private"}, WebhookURL: hookURL + "/hooks", WebhookSecret: secret, CreatedAt: now}); err != nil {
		return err
	}
	key, rec := spotoken.NewAPIKey(demoAppID, "demo", now)
	if err := store.CreateAPIKey(ctx, rec); err != nil {
		return err
	}
	d.apiKey = key.Reveal()

	fmt.Fprintf(d.out, "spotoken demo: the Spotify emulator at %s, the broker at %s, a throwaway SQLite database.\n", emuURL, base)
	fmt.Fprintf(d.out, "Time is the emulator's virtual clock; tokens are never printed.\n\n")
	if err := d.tour(ctx); err != nil {
		fmt.Fprintf(d.out, "\n✗ the demo failed: %v\n", err)
		return fmt.Errorf("demo failed at step %d: %w", d.step, err)
	}
	fmt.Fprintf(d.out, "\n✓ every step behaved as described. Run it for real: spotoken serve --emulator\n")
	return nil
}

// listenAndServe serves h on a free loopback port.
func listenAndServe(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	return "http://" + ln.Addr().String(), func() { hs.Close() }, nil
}

// receiver is the app's webhook endpoint: it verifies each delivery.
func (d *demo) receiver() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		ev := d.events
		ev.mu.Lock()
		defer ev.mu.Unlock()
		if err := server.VerifyWebhook(ev.secret, r.Header, body, d.emu.Now(), 0); err != nil {
			ev.bad++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var e struct {
			Type string
			Data struct {
				ConnectURL string `json:"connect_url"`
			}
		}
		json.Unmarshal(body, &e)
		ev.types = append(ev.types, e.Type)
		if e.Data.ConnectURL != "" {
			if ev.links == nil {
				ev.links = map[string]string{}
			}
			ev.links[e.Type] = e.Data.ConnectURL
		}
	})
}

func (d *demo) say(title string) {
	d.step++
	fmt.Fprintf(d.out, "%2d. %s\n", d.step, title)
}

func (d *demo) ok(format string, args ...any) {
	fmt.Fprintf(d.out, "    ✓ "+format+"\n", args...)
}

// api calls the broker with the demo's API key.
func (d *demo) api(method, path string, body any, out any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+d.apiKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(raw, &m)
	if out != nil {
		json.Unmarshal(raw, out)
	}
	return resp.StatusCode, m, nil
}

func (d *demo) refreshes() int64 { return d.emu.Stats().TokenRequests["refresh_token"] }

func (d *demo) token() (int, server.TokenResponse, map[string]any, error) {
	var tok server.TokenResponse
	status, m, err := d.api("POST", "/v1/connections/u1/token", nil, &tok)
	return status, tok, m, err
}

// openLink follows a connect link in the "browser"; the emulator approves.
func (d *demo) openLink(link string) error {
	resp, err := d.browser.Get(link)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`data-outcome="connected"`)) {
		return fmt.Errorf("the connect page answered %d", resp.StatusCode)
	}
	return nil
}

func want(cond bool, format string, args ...any) error {
	if cond {
		return nil
	}
	return fmt.Errorf(format, args...)
}

func (d *demo) tour(ctx context.Context) error {
	key := spotoken.ConnectionKey{AppID: demoAppID, ID: "u1"}

	d.say("Connect: the app asks for a one-time link; the user opens it and consents at Spotify")
	var sess server.ConnectSession
	status, _, err := d.api("POST", "/v1/connect-sessions", map[string]any{"connection_id": "u1"}, &sess)
	if err != nil {
		return err
	}
	if err := want(status == http.StatusCreated, "connect session: status %d", status); err != nil {
		return err
	}
	d.ok("POST /v1/connect-sessions → 201, a one-time link valid for %s", sess.ExpiresAt.Sub(d.emu.Now()).Round(time.Minute))
	if err := d.openLink(sess.URL); err != nil {
		return err
	}
	c, err := d.store.Connection(ctx, key)
	if err != nil {
		return err
	}
	d.ok("alice connected u1 with scopes %q; PKCE, state and the callback checked; tokens sealed at rest", c.Scopes.String())

	d.say("Vend: the app's service asks for an access token")
	status, tok, _, err := d.token()
	if err != nil {
		return err
	}
	if err := want(status == 200 && tok.AccessToken != "", "token: status %d", status); err != nil {
		return err
	}
	d.ok("POST /v1/connections/u1/token → 200, a Bearer token valid for %s (never the refresh token)", tok.ExpiresAt.Sub(d.emu.Now()).Round(time.Minute))

	d.say("Proxy: the service calls the Web API through spotoken, which injects the token")
	status, me, err := d.api("GET", "/v1/proxy/u1/v1/me", nil, nil)
	if err != nil {
		return err
	}
	if err := want(status == 200 && me["id"] == "alice", "proxy /v1/me: status %d", status); err != nil {
		return err
	}
	d.ok("GET /v1/proxy/u1/v1/me → 200, display name %q", me["display_name"])

	d.say("Expire: two hours pass; the access token is dead")
	d.emu.Advance(2 * time.Hour)
	before := d.refreshes()
	status, tok2, _, err := d.token()
	if err != nil {
		return err
	}
	if err := want(status == 200 && tok2.AccessToken != tok.AccessToken && d.refreshes() == before+1, "refresh: status %d", status); err != nil {
		return err
	}
	d.ok("the next token request refreshed silently: 1 refresh at Spotify, a new token, no error for the app")

	d.say("Rotation: Spotify sent a new refresh token with that refresh")
	c2, err := d.store.Connection(ctx, key)
	if err != nil {
		return err
	}
	if err := want(c2.Token.RefreshToken != c.Token.RefreshToken, "the refresh token did not change"); err != nil {
		return err
	}
	d.ok("the new refresh token was committed to the database before the new access token was handed out")
	var burst sync.WaitGroup
	before = d.refreshes()
	d.emu.Advance(2 * time.Hour)
	for range 50 {
		burst.Add(1)
		go func() { defer burst.Done(); d.token() }()
	}
	burst.Wait()
	d.ok("50 concurrent requests on the next expiry caused %d refresh (one at a time per connection)", d.refreshes()-before)

	d.say("429: Spotify rate-limits the token endpoint")
	retry := 30
	d.emu.Advance(2 * time.Hour)
	if err := d.emu.SetFaults(emulator.Faults{TokenStatus: 429, RetryAfter: &retry, Count: 1}); err != nil {
		return err
	}
	status, _, body, err := d.token()
	if err != nil {
		return err
	}
	if err := want(status == http.StatusTooManyRequests && body["error"] == "rate_limited", "429: status %d", status); err != nil {
		return err
	}
	d.ok("the app got a prompt 429 rate_limited with retry_after=%v, not a hung request", body["retry_after"])
	before = d.refreshes()
	if status, _, _, _ = d.token(); status != http.StatusTooManyRequests || d.refreshes() != before {
		return fmt.Errorf("during the back-off spotoken called Spotify again (status %d)", status)
	}
	d.ok("during the back-off no request reached Spotify")
	d.emu.Advance(time.Duration(retry+1) * time.Second)
	if status, _, _, _ = d.token(); status != http.StatusOK {
		return fmt.Errorf("after Retry-After: status %d", status)
	}
	d.ok("after Retry-After the refresh succeeded")

	d.say("Revoke on Spotify's side: the user removes the app's access")
	if err := d.emu.RevokeGrant("alice", emulator.DefaultClientID); err != nil {
		return err
	}
	d.emu.Advance(2 * time.Hour)
	status, _, body, err = d.token()
	if err != nil {
		return err
	}
	link, _ := body["connect_url"].(string)
	if err := want(status == http.StatusConflict && body["error"] == "needs_reauth" && link != "", "needs_reauth: status %d", status); err != nil {
		return err
	}
	d.ok("409 needs_reauth after one refused refresh (invalid_grant), with a fresh connect link for the user")

	d.say("Re-consent: the user opens that link")
	if err := d.openLink(link); err != nil {
		return err
	}
	if status, _, _, _ = d.token(); status != http.StatusOK {
		return fmt.Errorf("after re-consent: status %d", status)
	}
	d.ok("the connection is active again with a new grant")

	d.say("Six months on: Spotify's grant nears its end (refresh tokens die six months after consent)")
	c, err = d.store.Connection(ctx, key)
	if err != nil {
		return err
	}
	firstEnd := c.GrantExpiresAt
	d.emu.Advance(firstEnd.Sub(d.emu.Now()) - 13*24*time.Hour)
	if n, err := d.srv.WarnExpiring(ctx); err != nil || n != 1 {
		return fmt.Errorf("expiry warning: %d connections warned, %v", n, err)
	}
	if n, _ := d.srv.WarnExpiring(ctx); n != 0 {
		return errors.New("the expiry warning was recorded twice")
	}
	if _, err := d.hooks.RunOnce(ctx); err != nil {
		return err
	}
	d.events.mu.Lock()
	link = d.events.links[string(spotoken.EventConnectionExpiring)]
	d.events.mu.Unlock()
	if link == "" {
		return errors.New("no connection.expiring webhook with a connect link")
	}
	d.ok("13 days before %s the app got connection.expiring, once, with a connect link for the user", firstEnd.Format("2006-01-02"))
	if err := d.openLink(link); err != nil {
		return err
	}
	d.emu.Advance(firstEnd.Sub(d.emu.Now()) + time.Hour)
	if status, _, _, _ = d.token(); status != http.StatusOK {
		return fmt.Errorf("past the first grant's end: status %d", status)
	}
	d.ok("the user renewed the grant from that link; past the old grant's end tokens keep coming, no gap")

	d.say("Delete: the app disconnects the user")
	if status, _, _ = d.api("DELETE", "/v1/connections/u1", nil, nil); status != http.StatusNoContent {
		return fmt.Errorf("delete: status %d", status)
	}
	if status, _, _, _ = d.token(); status != http.StatusNotFound {
		return fmt.Errorf("after delete: token status %d", status)
	}
	d.ok("204; its sealed tokens were erased in the same transaction, and the token endpoint now answers 404")
	d.ok("(Spotify has no revocation endpoint: users remove apps at https://www.spotify.com/account/apps/)")

	d.say("Webhooks: every change was delivered to the app, signed (Standard Webhooks)")
	if _, err := d.hooks.RunOnce(ctx); err != nil {
		return err
	}
	d.events.mu.Lock()
	types, bad := slices.Clone(d.events.types), d.events.bad
	d.events.mu.Unlock()
	for _, t := range []string{"connection.created", "connection.refreshed", "connection.rotated", "connection.needs_reauth", "connection.reauthorized", "connection.expiring", "connection.revoked"} {
		if !slices.Contains(types, t) {
			return fmt.Errorf("no %s webhook among %v", t, types)
		}
	}
	if bad > 0 {
		return errors.New("a webhook failed its signature check")
	}
	d.ok("%d events, every signature verified: %s", len(types), summarize(types))
	return nil
}

// summarize counts event types in order of first appearance.
func summarize(types []string) string {
	counts := map[string]int{}
	var order []string
	for _, t := range types {
		if counts[t] == 0 {
			order = append(order, t)
		}
		counts[t]++
	}
	parts := make([]string, len(order))
	for i, t := range order {
		parts[i] = fmt.Sprintf("%s×%d", strings.TrimPrefix(t, "connection."), counts[t])
	}
	return strings.Join(parts, ", ")
}
