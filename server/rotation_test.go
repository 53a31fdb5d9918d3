package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/server"
)

// The confidential client of the rotation tests, and its two secrets.
const (
	confClient = "conf-app"
	secretA    = "secret-A-0123456789"
	secretB    = "secret-B-9876543210"
)

// confidentialHarness is a harness whose demo app is a confidential client
// of the emulator with secretA.
func confidentialHarness(t *testing.T, mutate func(*server.Config)) *harness {
	return newHarness(t, harnessOptions{
		emulator: func(c *emulator.Config) {
			c.Clients = append(c.Clients, emulator.Client{ID: confClient, Secret: secretA, RedirectURIs: []string{"http://127.0.0.1/callback"}})
		},
		app:    func(a *spotoken.App) { a.ClientID, a.ClientSecret = confClient, secretA },
		server: mutate,
	})
}

// admin makes an admin API call with the harness's admin key.
func (h *harness) adminCall(method, path string, body, out any) (*http.Response, []byte) {
	h.t.Helper()
	return h.call(method, path, h.adminKey, body, out)
}

// TestClientSecretRotationUnderLoad is issue 15's acceptance of client-secret
// rotation: 200 callers vend tokens for 20 connections through two
// replicas (two servers and engines on one store) while the access tokens
// expire again and again (the emulator's clock), and meanwhile the app's
// client secret is rotated: staged through one replica's admin API while
// Spotify still accepts only the old secret (every refresh is refused with
// the new one and falls back to the old), then Spotify accepts only the new
// one, then the old one is retired. Not one vend fails, no invalid_client
// is answered after the retirement, and no connection is touched: each is
// active, with no error, no failure count, its original refresh token, and
// no needs_reauth or app.error event.
func TestClientSecretRotationUnderLoad(t *testing.T) {
	h := confidentialHarness(t, nil)
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = fmt.Sprintf("user-%02d", i)
		h.connect(ids[i])
	}
	before := map[string]spotoken.Secret{}
	for _, id := range ids {
		before[id] = h.connection(appID, id).Token.RefreshToken
	}

	// A second replica: its own engine and server on the same store.
	engine2, err := refresh.New(refresh.Config{Store: h.store, Now: h.emu.Now,
		Refresher: &refresh.SpotifyRefresher{TokenURL: h.emuSrv.URL + "/api/token", Now: h.emu.Now}})
	if err != nil {
		t.Fatal(err)
	}
	srv2, err := server.New(server.Config{Store: h.store, Tokens: engine2, PublicURL: h.ts.URL, AccountsURL: h.emuSrv.URL,
		APIURL: h.emuSrv.URL, Now: h.emu.Now})
	if err != nil {
		t.Fatal(err)
	}
	ts2 := httptest.NewServer(srv2)
	t.Cleanup(ts2.Close)
	replicas := []string{h.ts.URL, ts2.URL}

	const callers, vendsPerRound = 200, 2
	var vends, failed atomic.Int64
	var firstFailure atomic.Value
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: callers}}
	vend := func(base, id string) {
		req, _ := http.NewRequest("POST", base+"/v1/connections/"+id+"/token", nil)
		req.Header.Set("Authorization", "Bearer "+h.apiKey)
		start := h.emu.Now()
		resp, err := client.Do(req)
		vends.Add(1)
		if err != nil {
			failed.Add(1)
			firstFailure.CompareAndSwap(nil, err.Error())
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var tok server.TokenResponse
		switch {
		case resp.StatusCode != http.StatusOK:
			failed.Add(1)
			firstFailure.CompareAndSwap(nil, fmt.Sprintf("%s: %d %s", id, resp.StatusCode, body))
		case json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" || !tok.ExpiresAt.After(start):
			// The clock moves during a round: the token must be valid when asked for.
			failed.Add(1)
			firstFailure.CompareAndSwap(nil, fmt.Sprintf("%s: a token that expired before it was asked for, at %v", id, tok.ExpiresAt))
		}
	}
	// round has the callers vend while step runs, and the tokens expire.
	round := func(n int, step func()) {
		t.Helper()
		var wg sync.WaitGroup
		for c := range callers {
			wg.Go(func() {
				for v := range vendsPerRound {
					vend(replicas[(c+v)%len(replicas)], ids[(c*7+v*3+n)%len(ids)])
				}
			})
		}
		h.emu.Advance(time.Hour) // every access token expires
		if step != nil {
			step()
		}
		wg.Wait()
	}
	invalidClient := func() int64 { return h.emu.Stats().TokenErrors["invalid_client"] }
	patch := func() {
		var out server.AppChange
		resp, raw := h.adminCall("PATCH", "/admin/v1/apps/"+appID, map[string]any{"client_secret": secretB}, &out)
		if resp.StatusCode != http.StatusOK || !out.App.ClientSecretRotating {
			t.Errorf("stage the new secret: %d %s", resp.StatusCode, raw)
		}
	}
	retire := func() {
		resp, raw := h.adminCall("POST", "/admin/v1/apps/"+appID+"/client-secret/retire", nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("retire the old secret: %d %s", resp.StatusCode, raw)
		}
	}

	round(0, nil)
	round(1, patch) // staged while Spotify knows only the old secret
	refreshesBefore, refusedBefore := h.refreshes(), invalidClient()
	round(2, nil)
	if h.refreshes() == refreshesBefore || invalidClient() == refusedBefore {
		t.Errorf("round 2: %d refreshes, %d invalid_client: the fallback to the old secret was not exercised",
			h.refreshes()-refreshesBefore, invalidClient()-refusedBefore)
	}
	// Spotify rotates: only the new secret works from now on.
	if err := h.emu.SetClientSecrets(confClient, secretB); err != nil {
		t.Fatal(err)
	}
	round(3, nil)
	round(4, retire)
	refusedAtRetirement, refreshesAtRetirement := invalidClient(), h.refreshes()
	for n := 5; n < 8; n++ {
		round(n, nil)
	}
	if n := invalidClient() - refusedAtRetirement; n != 0 {
		t.Errorf("%d invalid_client answers after the old secret was retired", n)
	}
	if h.refreshes() == refreshesAtRetirement {
		t.Error("no refresh after the retirement: the test proves nothing about it")
	}
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d vends failed; the first: %v", n, vends.Load(), firstFailure.Load())
	}
	t.Logf("%d vends, %d refreshes, %d invalid_client (all before the retirement)", vends.Load(), h.refreshes(), invalidClient())

	app, err := h.store.App(context.Background(), appID)
	if err != nil || app.ClientSecret != secretB || app.PreviousClientSecret != "" {
		t.Errorf("app after the rotation: %v", err)
	}
	for _, id := range ids {
		c := h.connection(appID, id)
		if c.State != spotoken.StateActive || c.LastErrorCode != "" || c.ConsecutiveFailures != 0 || !c.NextAttemptAt.IsZero() ||
			c.Token.RefreshToken != before[id] {
			t.Errorf("connection %s was touched: state %s, error %q, %d failures, backoff until %v, refresh token kept: %v",
				id, c.State, c.LastErrorCode, c.ConsecutiveFailures, c.NextAttemptAt, c.Token.RefreshToken == before[id])
		}
	}
	for _, e := range h.events() {
		if bytes.Contains([]byte(e), []byte(spotoken.EventConnectionNeedsReauth)) || bytes.Contains([]byte(e), []byte(spotoken.EventAppError)) {
			t.Errorf("event %s", e)
		}
	}
	for _, s := range []string{secretA, secretB} {
		if bytes.Contains([]byte(h.logs.String()), []byte(s)) {
			t.Errorf("a client secret is in the log")
		}
	}
}

// TestConnectWhileRotating: the connect flow's code exchange falls back to
// the previous secret while Spotify refuses the staged one, and uses the
// new one once Spotify has it; an authorization code is never lost to the
// refused attempt.
func TestConnectWhileRotating(t *testing.T) {
	h := confidentialHarness(t, nil)
	if resp, raw := h.adminCall("PATCH", "/admin/v1/apps/"+appID, map[string]any{"client_secret": secretB}, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("stage: %d %s", resp.StatusCode, raw)
	}
	refused := h.emu.Stats().TokenErrors["invalid_client"]
	h.connect("c1") // Spotify knows only secretA
	if n := h.emu.Stats().TokenErrors["invalid_client"] - refused; n != 1 {
		t.Errorf("%d invalid_client during the exchange, want 1 (the staged secret, then the previous one)", n)
	}
	if err := h.emu.SetClientSecrets(confClient, secretB); err != nil {
		t.Fatal(err)
	}
	refused = h.emu.Stats().TokenErrors["invalid_client"]
	h.connect("c2")
	if n := h.emu.Stats().TokenErrors["invalid_client"] - refused; n != 0 {
		t.Errorf("%d invalid_client once Spotify has the new secret, want 0", n)
	}
	// Spotify refuses both: the flow fails cleanly and stores nothing.
	if err := h.emu.SetClientSecrets(confClient, "secret-C-unknown-to-us"); err != nil {
		t.Fatal(err)
	}
	sess := h.session("c3", nil, "")
	resp, err := h.browser.Get(sess.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte(`data-outcome="exchange_failed"`)) {
		t.Errorf("both secrets refused: %d %s", resp.StatusCode, body)
	}
	if h.connection(appID, "c3") != nil {
		t.Error("a connection was stored")
	}
}
