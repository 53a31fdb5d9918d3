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

// TestE2ERateLimitWindowPostgres runs three 'spotoken serve' replicas of the
// built binary on one PostgreSQL schema against a standalone emulator whose
// token endpoint answers 429 with Retry-After: 7200, in a penalty window
// that grows with every request sent into it. Every stored access token has
// expired, so every caller needs a refresh: 300 concurrent callers (100 per
// replica) ask for one connection's token, then 400 for four connections'
// tokens and through the proxy. All of them are answered at once with 429
// rate_limited and the time left; in all, one token request reaches Spotify.
func TestE2ERateLimitWindowPostgres(t *testing.T) {
	base := pgtest.DSN(t)
	spotokenBinary(t)
	dsn := pgtest.FreshSchema(t, base, "e2e429")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys.json")

	emu := startSpotoken(t, nil, "emulator", "--addr", "127.0.0.1:0", "--auto-approve", "alice",
		"--client", "spotoken-e2e=http://127.0.0.1/callback")
	if out, errOut, code := runSpotoken(t, nil, "", "keys", "generate", "--key-file", keyFile); code != 0 {
		t.Fatalf("keys generate: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	serveArgs := []string{"serve", "--db", dsn, "--key-file", keyFile, "--addr", "127.0.0.1:0",
		"--accounts-url", emu.URL, "--api-url", emu.URL, "--no-scheduler"}
	replicas := []*proc{startSpotoken(t, nil, serveArgs...), startSpotoken(t, nil, serveArgs...), startSpotoken(t, nil, serveArgs...)}

	cli := func(args ...string) string {
		t.Helper()
		out, errOut, code := runSpotoken(t, nil, "", append(args, "--db", dsn, "--key-file", keyFile)...)
		if code != 0 {
			t.Fatalf("spotoken %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	createArgs := []string{"apps", "create", "--name", "e2e", "--client-id", "spotoken-e2e"}
	for _, p := range replicas {
		createArgs = append(createArgs, "--redirect-uri", p.URL+"/callback")
	}
	cli(createArgs...)
	apiKey, _, _ := strings.Cut(cli("apikeys", "create", "--app", "e2e"), "\n")

	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	call := func(method, url, body string) (int, []byte, http.Header, error) {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			return 0, nil, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		return resp.StatusCode, raw, resp.Header, err
	}
	emuStats := func() map[string]map[string]int64 {
		t.Helper()
		resp, err := http.Get(emu.URL + "/_emulator/stats")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s map[string]map[string]int64
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}

	// Four users connect, through each replica in turn.
	conns := []string{"u1", "u2", "u3", "u4"}
	for i, id := range conns {
		p := replicas[i%len(replicas)]
		code, raw, _, err := call("POST", p.URL+"/v1/connect-sessions", `{"connection_id":"`+id+`"}`)
		var sess struct {
			URL string `json:"url"`
		}
		if err != nil || code != http.StatusCreated || json.Unmarshal(raw, &sess) != nil {
			t.Fatalf("connect session %s: %d %s %v", id, code, raw, err)
		}
		jar, _ := cookiejar.New(nil)
		resp, err := (&http.Client{Jar: jar, Timeout: time.Minute}).Get(sess.URL)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(page, []byte(`data-outcome="connected"`)) {
			t.Fatalf("connect %s: %d\n%s", id, resp.StatusCode, page)
		}
	}

	// Every stored access token looks expired (no replica has vended one
	// yet, so none is in memory), and Spotify's token endpoint rate-limits.
	ctx := context.Background()
	store, err := (&storeOptions{DB: dsn, KeyFile: keyFile}).openStore(ctx, slog.New(slog.DiscardHandler), false)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, id := range conns {
		if _, err := store.UpdateConnection(ctx, spotoken.ConnectionKey{AppID: "e2e", ID: id}, func(c *spotoken.Connection) ([]spotoken.Event, error) {
			c.Token.Expiry = time.Now().Add(-time.Minute)
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Post(emu.URL+"/_emulator/faults", "application/json",
		strings.NewReader(`{"token_status":429,"retry_after":7200,"window":true}`))
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST faults: %v %v", resp, err)
	}
	resp.Body.Close()
	before := emuStats()["token_requests"]["refresh_token"]
	start := time.Now()

	type answer struct {
		what   string
		code   int
		body   []byte
		header http.Header
		err    error
	}
	burst := func(requests []func() answer) []answer {
		out := make([]answer, len(requests))
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i, r := range requests {
			wg.Go(func() {
				<-gate
				out[i] = r()
			})
		}
		close(gate)
		wg.Wait()
		return out
	}
	vend := func(p *proc, id string) func() answer {
		return func() answer {
			code, body, h, err := call("POST", p.URL+"/v1/connections/"+id+"/token", `{}`)
			return answer{"token " + id + " at " + p.URL, code, body, h, err}
		}
	}
	proxy := func(p *proc, id string) func() answer {
		return func() answer {
			code, body, h, err := call("GET", p.URL+"/v1/proxy/"+id+"/v1/me", "")
			return answer{"proxy " + id + " at " + p.URL, code, body, h, err}
		}
	}
	check := func(phase string, answers []answer) {
		t.Helper()
		bad := 0
		for _, a := range answers {
			var e struct {
				Error      string `json:"error"`
				RetryAfter int    `json:"retry_after"`
			}
			json.Unmarshal(a.body, &e)
			elapsed := int(time.Since(start)/time.Second) + 1
			ok := a.err == nil && a.code == http.StatusTooManyRequests && e.Error == "rate_limited" &&
				e.RetryAfter >= 7200-elapsed && e.RetryAfter <= 7200 && a.header.Get("Retry-After") == fmt.Sprint(e.RetryAfter)
			if !ok {
				if bad++; bad <= 3 {
					t.Errorf("%s: %s: %d %s %v, want 429 rate_limited with the window's time left", phase, a.what, a.code, a.body, a.err)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d answers were not rate_limited", phase, bad, len(answers))
		}
	}

	// 300 callers, 100 per replica, for one connection: the one that takes
	// its lease meets the 429 and records the window for every replica.
	var one []func() answer
	for i := range 300 {
		one = append(one, vend(replicas[i%3], "u1"))
	}
	check("one connection", burst(one))

	// Then every connection, by token and by the proxy, on every replica.
	var all []func() answer
	for i := range 400 {
		p, id := replicas[i%3], conns[i%len(conns)]
		if i%4 == 3 {
			all = append(all, proxy(p, id))
		} else {
			all = append(all, vend(p, id))
		}
	}
	check("every connection", burst(all))

	st := emuStats()
	if got := st["token_requests"]["refresh_token"] - before; got != 1 {
		t.Errorf("%d token requests reached Spotify during the window, want exactly 1", got)
	}
	if got := st["token_errors"]["http_429"]; got != 1 {
		t.Errorf("Spotify answered 429 %d times, want once", got)
	}
	until, err := store.RateLimitedUntil(ctx, "e2e")
	if left := time.Until(until); err != nil || left < 7200*time.Second-time.Since(start)-time.Second || left > 7200*time.Second {
		t.Errorf("the store's window ends in %v (%v), want about 2 h", left, err)
	}
	t.Logf("700 callers on 3 replicas in %v; token requests at Spotify during the window: %d",
		time.Since(start).Round(time.Millisecond), st["token_requests"]["refresh_token"]-before)

	for i, p := range replicas {
		if code := p.Stop(); code != 0 {
			t.Errorf("replica %d exited with %d; stderr:\n%s", i, code, p.Stderr)
		}
		if strings.Contains(p.Stderr.String(), apiKey) {
			t.Errorf("replica %d logged the API key", i)
		}
	}
}
