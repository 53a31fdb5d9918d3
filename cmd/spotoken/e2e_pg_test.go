package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/pgtest"
)

// TestE2EPostgres runs two 'spotoken serve' replicas of the built binary on
// one PostgreSQL schema against a standalone emulator that rotates refresh
// tokens on every use. A user connects through replica A; then the stored
// access token is made to look expired, and 2,000 concurrent vends split
// across both replicas must all get the same new token from exactly one
// refresh at the emulator, with no token in either replica's logs.
func TestE2EPostgres(t *testing.T) {
	base := pgtest.DSN(t)
	spotokenBinary(t) // skip early with -short, before touching the database
	dsn := pgtest.FreshSchema(t, base, "e2e")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys.json")

	// The emulator's client has a loopback redirect URI without a port,
	// which matches any port (RFC 8252 §7.3; docs/emulator.md), so both
	// replicas' /callback are accepted whatever ports they listen on.
	emu := startSpotoken(t, nil, "emulator", "--addr", "127.0.0.1:0",
		"--auto-approve", "alice", "--rotation", "always",
		"--client", "spotoken-e2e=http://127.0.0.1/callback")

	if out, errOut, code := runSpotoken(t, nil, "", "keys", "generate", "--key-file", keyFile); code != 0 {
		t.Fatalf("keys generate: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}

	serveArgs := []string{"serve", "--db", dsn, "--key-file", keyFile, "--addr", "127.0.0.1:0",
		"--accounts-url", emu.URL, "--api-url", emu.URL, "--no-scheduler", "--cache-ttl", "100ms"}
	a := startSpotoken(t, nil, serveArgs...)
	b := startSpotoken(t, nil, serveArgs...)
	replicas := []*proc{a, b}

	cli := func(args ...string) string {
		t.Helper()
		args = append(args, "--db", dsn, "--key-file", keyFile)
		out, errOut, code := runSpotoken(t, nil, "", args...)
		if code != 0 {
			t.Fatalf("spotoken %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	cli("apps", "create", "--name", "e2e", "--client-id", "spotoken-e2e",
		"--redirect-uri", a.URL+"/callback", "--redirect-uri", b.URL+"/callback")
	apiKey, _, _ := strings.Cut(cli("apikeys", "create", "--app", "e2e"), "\n")
	if !strings.HasPrefix(apiKey, "sk_") {
		t.Fatalf("apikeys create printed %q, want an sk_ key on the first line", apiKey)
	}

	// api calls the broker's API with the key and decodes a JSON answer.
	api := func(c *http.Client, method, url, body string, v any) (int, error) {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return resp.StatusCode, err
		}
		if resp.StatusCode/100 == 2 && v != nil {
			if err := json.Unmarshal(raw, v); err != nil {
				return resp.StatusCode, fmt.Errorf("decode %s: %w", raw, err)
			}
		} else if resp.StatusCode/100 != 2 {
			return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, raw)
		}
		return resp.StatusCode, nil
	}
	type vended struct {
		AccessToken string    `json:"access_token"`
		TokenType   string    `json:"token_type"`
		ExpiresAt   time.Time `json:"expires_at"`
	}
	vend := func(c *http.Client, p *proc) (vended, int, error) {
		var v vended
		code, err := api(c, "POST", p.URL+"/v1/connections/u1/token", `{"min_ttl":60}`, &v)
		return v, code, err
	}
	stats := func() map[string]map[string]int64 {
		t.Helper()
		resp, err := http.Get(emu.URL + "/_emulator/stats")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s map[string]map[string]int64
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /_emulator/stats: %d %v", resp.StatusCode, err)
		}
		return s
	}

	// Connect u1 through replica A: the emulator approves as alice.
	var sess struct {
		URL string `json:"url"`
	}
	if code, err := api(http.DefaultClient, "POST", a.URL+"/v1/connect-sessions", `{"connection_id":"u1"}`, &sess); code != 201 || err != nil {
		t.Fatalf("POST /v1/connect-sessions: %d %v", code, err)
	}
	if !strings.HasPrefix(sess.URL, a.URL+"/connect/") {
		t.Fatalf("connect URL %q is not under replica A's %s/connect/", sess.URL, a.URL)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Timeout: time.Minute}
	resp, err := browser.Get(sess.URL)
	if err != nil {
		t.Fatalf("connect flow: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte(`data-outcome="connected"`)) {
		t.Fatalf("connect flow ended at %s with %d:\n%s\nreplica A stderr:\n%s", resp.Request.URL, resp.StatusCode, page, a.Stderr)
	}
	if got := resp.Request.URL.String(); !strings.HasPrefix(got, a.URL+"/callback?") {
		t.Errorf("connect flow ended at %s, want replica A's /callback", got)
	}

	// Each replica vends the token the connect flow stored.
	var before vended
	for i, p := range replicas {
		v, code, err := vend(http.DefaultClient, p)
		if code != 200 || err != nil {
			t.Fatalf("vend on replica %d: %d %v", i, code, err)
		}
		if v.AccessToken == "" || v.TokenType != "Bearer" {
			t.Fatalf("vend on replica %d: %+v", i, v)
		}
		if i == 0 {
			before = v
		} else if v.AccessToken != before.AccessToken {
			t.Fatalf("replicas vend different tokens before expiry: A %.8s…, B %.8s…", before.AccessToken, v.AccessToken)
		}
	}

	// Make the stored access token look expired, as if an hour had passed,
	// then let both replicas' memory caches (--cache-ttl 100ms) lapse.
	ctx := context.Background()
	opts := storeOptions{DB: dsn, KeyFile: keyFile}
	store, err := opts.openStore(ctx, slog.New(slog.DiscardHandler), false)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ckey := spotoken.ConnectionKey{AppID: "e2e", ID: "u1"}
	expired := time.Now().Add(-time.Minute)
	if _, err := store.UpdateConnection(ctx, ckey, func(c *spotoken.Connection) ([]spotoken.Event, error) {
		if c.Token.AccessToken.Reveal() != before.AccessToken {
			return nil, fmt.Errorf("stored access token is not the vended one")
		}
		c.Token.Expiry = expired
		return nil, nil
	}); err != nil {
		t.Fatalf("expire the token: %v", err)
	}
	time.Sleep(time.Second) // ten times --cache-ttl

	s0 := stats()
	if got := s0["token_requests"]["authorization_code"]; got != 1 {
		t.Errorf("emulator saw %d authorization_code grants before the burst, want 1", got)
	}

	// 2,000 concurrent vends, alternating between the replicas.
	const n = 2000
	client := &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64},
	}
	defer client.CloseIdleConnections()
	type result struct {
		v    vended
		code int
		err  error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			r := &results[i]
			r.v, r.code, r.err = vend(client, replicas[i%2])
		})
	}
	close(start)
	wg.Wait()

	codes := map[int]int{}
	tokens := map[string]int{}
	var firstErr error
	for _, r := range results {
		codes[r.code]++
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
		if r.code == 200 {
			tokens[r.v.AccessToken]++
		}
	}
	if codes[200] != n {
		t.Errorf("status codes of %d vends: %v; first error: %v", n, codes, firstErr)
	}
	if len(tokens) != 1 {
		t.Errorf("%d vends returned %d distinct access tokens, want 1", codes[200], len(tokens))
	}
	var after string
	for tok := range tokens {
		after = tok
	}
	if after == before.AccessToken {
		t.Errorf("vends after expiry returned the expired token")
	}
	for i, r := range results {
		if r.code == 200 && !r.v.ExpiresAt.After(time.Now().Add(time.Minute)) {
			t.Errorf("vend %d: expires_at %v is not a minute away", i, r.v.ExpiresAt)
			break
		}
	}

	s1 := stats()
	t.Logf("%d vends: status codes %v, %d distinct tokens; emulator token requests before %v, after %v",
		n, codes, len(tokens), s0["token_requests"], s1["token_requests"])
	if d := s1["token_requests"]["refresh_token"] - s0["token_requests"]["refresh_token"]; d != 1 {
		t.Errorf("emulator saw %d refresh_token grants during the burst, want exactly 1 (before %v, after %v)",
			d, s0["token_requests"], s1["token_requests"])
	}
	if len(s1["token_errors"]) != 0 {
		t.Errorf("emulator token errors: %v", s1["token_errors"])
	}

	// The store holds the new token and the rotated refresh token.
	conn, err := store.Connection(ctx, ckey)
	if err != nil {
		t.Fatal(err)
	}
	if conn.Token.AccessToken.Reveal() != after {
		t.Errorf("stored access token is not the vended one")
	}
	if !conn.Token.Expiry.After(expired) {
		t.Errorf("stored expiry %v was not moved past %v", conn.Token.Expiry, expired)
	}

	// Stop everything; then no secret may appear in any replica's logs.
	for i, p := range replicas {
		if code := p.Stop(); code != 0 {
			t.Errorf("replica %d exited with %d after SIGTERM; stderr:\n%s", i, code, p.Stderr)
		}
	}
	if code := emu.Stop(); code != 0 {
		t.Errorf("emulator exited with %d after SIGTERM; stderr:\n%s", code, emu.Stderr)
	}
	secrets := map[string]string{
		"the expired access token":  before.AccessToken,
		"the new access token":      after,
		"the rotated refresh token": conn.Token.RefreshToken.Reveal(),
		"the API key":               apiKey,
	}
	refreshes := 0
	for i, p := range replicas {
		logs := p.Stderr.String() + p.Stdout.String()
		if c := strings.Count(p.Stderr.String(), `"msg":"refreshed"`); c > 0 {
			t.Logf("replica %d logged %d refresh(es)", i, c)
			refreshes += c
		}
		for line := range strings.Lines(p.Stderr.String()) {
			if strings.Contains(line, `"level":"ERROR"`) {
				t.Errorf("replica %d logged an error: %s", i, line)
			}
		}
		if !strings.Contains(logs, `"msg":"stopped"`) {
			t.Errorf("replica %d stderr lacks the stopped line:\n%s", i, logs)
		}
		for what, s := range secrets {
			if s != "" && strings.Contains(logs, s) {
				t.Errorf("replica %d logged %s", i, what)
			}
		}
	}
	if refreshes != 1 {
		t.Errorf("the replicas logged %d refreshes, want 1", refreshes)
	}
}
