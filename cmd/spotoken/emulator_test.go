package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the server's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startEmulator runs `spotoken emulator args...` in-process and returns its
// base URL (the first line of stdout), its stderr, and a stop function that
// returns the exit status.
func startEmulator(t *testing.T, args ...string) (base string, stderr *syncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	outR, outW := io.Pipe()
	stderr = &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, append([]string{"emulator"}, args...), strings.NewReader(""), outW, stderr)
		outW.Close()
	}()
	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("reading the first stdout line: %v (stderr: %s)", err, stderr)
	}
	go io.Copy(io.Discard, outR)
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("emulator did not shut down")
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return strings.TrimSpace(line), stderr, stop
}

func TestEmulatorCommandPrintsURLFirst(t *testing.T) {
	base, stderr, stop := startEmulator(t, "--addr", "127.0.0.1:0")
	if !regexp.MustCompile(`^http://127\.0\.0\.1:[0-9]+$`).MatchString(base) {
		t.Fatalf("first stdout line %q is not a base URL", base)
	}
	resp, err := http.Get(base + "/_emulator/stats")
	if err != nil {
		t.Fatal(err)
	}
	var stats map[string]map[string]int
	err = json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || stats["token_requests"] == nil {
		t.Fatalf("stats: %d %v %v", resp.StatusCode, stats, err)
	}
	if code := stop(); code != exitOK {
		t.Errorf("exit status after shutdown = %d, want 0", code)
	}
	if !strings.Contains(stderr.String(), "emulator listening") || !strings.Contains(stderr.String(), "clients=spotoken-demo") {
		t.Errorf("stderr lacks the start-up line:\n%s", stderr)
	}
}

// TestEmulatorLogsHoldNoSecrets runs a whole confidential and PKCE flow
// against the real command and searches its logs for every secret involved.
func TestEmulatorLogsHoldNoSecrets(t *testing.T) {
	const secret = "very-secret-client-value"
	base, stderr, stop := startEmulator(t, "--auto-approve", "alice",
		"--client", "conf:"+secret+"=https://app.example/cb",
		"--client", "pub=http://127.0.0.1/cb", "--rotation", "always")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	const state = "state-value-that-must-not-be-logged"
	resp, err := noRedirect.Get(base + "/authorize?" + url.Values{"client_id": {"pub"}, "response_type": {"code"},
		"redirect_uri": {"http://127.0.0.1:5555/cb"}, "state": {state}, "scope": {"user-read-email"},
		"code_challenge_method": {"S256"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	code := loc.Query().Get("code")
	post := func(form url.Values, user, pass string) map[string]any {
		req, _ := http.NewRequest("POST", base+"/api/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		if resp.StatusCode != 200 {
			t.Fatalf("token: %d %v", resp.StatusCode, m)
		}
		return m
	}
	tok := post(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"http://127.0.0.1:5555/cb"},
		"client_id": {"pub"}, "code_verifier": {verifier}}, "", "")
	refreshed := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {"pub"}}, "", "")
	app := post(url.Values{"grant_type": {"client_credentials"}}, "conf", secret)
	req, _ := http.NewRequest("GET", base+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+refreshed["access_token"].(string))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/v1/me: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	stop()

	logs := stderr.String()
	if !strings.Contains(logs, "path=/api/token") {
		t.Fatalf("expected request logs, got:\n%s", logs)
	}
	for name, s := range map[string]string{
		"client secret": secret, "PKCE verifier": verifier, "state": state, "authorization code": code,
		"access token": tok["access_token"].(string), "refresh token": tok["refresh_token"].(string),
		"rotated refresh token": refreshed["refresh_token"].(string), "app token": app["access_token"].(string),
	} {
		if strings.Contains(logs, s) {
			t.Errorf("the %s appears in the logs", name)
		}
	}
}

func TestEmulatorCommandUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad rotation", []string{"--rotation", "sometimes"}, nil, "--rotation"},
		{"bad grace", []string{"--rotation", "grace=soon"}, nil, "grace period"},
		{"client without redirect", []string{"--client", "app:hunter2hunter2"}, nil, "want ID[:SECRET]=REDIRECT_URI"},
		{"insecure redirect", []string{"--client", "app=http://localhost:8080/cb"}, nil, "insecure"},
		{"duplicate client", []string{"--client", "a=https://x.example/cb", "--client", "a=https://y.example/cb"}, nil, "registered twice"},
		{"zero token ttl", []string{"--token-ttl", "0s"}, nil, "--token-ttl"},
		{"negative rate limit", []string{"--rate-limit", "-1"}, nil, "--rate-limit"},
		{"unknown flag", []string{"--nope"}, nil, "unknown flag"},
		{"not a duration", []string{"--token-ttl", "soon"}, nil, "invalid argument"},
		{"extra argument", []string{"extra"}, nil, "takes no arguments"},
		{"bad env var", nil, map[string]string{"SPOTOKEN_ROTATION": "sometimes"}, "--rotation"},
		{"bad env duration", nil, map[string]string{"SPOTOKEN_TOKEN_TTL": "soon"}, "SPOTOKEN_TOKEN_TTL"},
		{"allowlist of six", []string{"--allowlist", "a,b,c,d,e,f"}, nil, "at most 5"},
		{"allowlist for no client", []string{"--client", "app=https://x.example/cb", "--allowlist", "other=alice"}, nil, `no --client "other"`},
		{"malformed allowlist", []string{"--allowlist", "al ice"}, nil, "--allowlist"},
		{"empty expired-grant description", []string{"--expired-grant-description", " "}, nil, "--expired-grant-description"},
		{"legacy-401 with a value", []string{"--legacy-401=sometimes"}, nil, "invalid argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), append([]string{"emulator"}, tt.args...), strings.NewReader(""), &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, &stderr)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not mention %q", stderr.String(), tt.want)
			}
			if strings.Contains(stderr.String(), "hunter2hunter2") {
				t.Errorf("stderr leaks the client secret: %q", stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout should be empty on a usage error, got %q", stdout.String())
			}
		})
	}
}

func TestEmulatorCommandFromEnv(t *testing.T) {
	t.Setenv("SPOTOKEN_AUTO_APPROVE", "envuser")
	t.Setenv("SPOTOKEN_CLIENT", "envapp=http://127.0.0.1/cb")
	base, _, _ := startEmulator(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(base + "/authorize?" + url.Values{"client_id": {"envapp"}, "response_type": {"code"},
		"redirect_uri": {"http://127.0.0.1:1234/cb"}, "code_challenge_method": {"S256"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Set-Cookie"), "emulator_user=envuser") {
		t.Errorf("env-configured client and auto-approve not applied: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestUnknownCommandIsUsageError(t *testing.T) {
	var stderr bytes.Buffer
	if code := Run(context.Background(), []string{"frobnicate"}, strings.NewReader(""), io.Discard, &stderr); code != exitUsage {
		t.Errorf("exit %d, want 2; stderr %s", code, &stderr)
	}
}

// TestEmulatorCommandEras: the 401 for a request without a token is today's
// by default and the one of before 2026-07 with --legacy-401.
func TestEmulatorCommandEras(t *testing.T) {
	for _, tc := range []struct {
		args          []string
		message, auth string
	}{
		{nil, "Missing/invalid/expired access token", ""},
		{[]string{"--legacy-401"}, "No token provided", `Bearer realm="spotify"`},
	} {
		t.Run(strings.Join(append([]string{"emulator"}, tc.args...), " "), func(t *testing.T) {
			base, _, _ := startEmulator(t, tc.args...)
			resp, err := http.Get(base + "/v1/me")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Error struct {
					Status  int    `json:"status"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 401 || body.Error.Message != tc.message || resp.Header.Get("WWW-Authenticate") != tc.auth {
				t.Errorf("GET /v1/me without a token: %d %q, WWW-Authenticate %q; want 401 %q, %q",
					resp.StatusCode, body.Error.Message, resp.Header.Get("WWW-Authenticate"), tc.message, tc.auth)
			}
		})
	}
}

// TestEmulatorCommandAllowlist: --allowlist makes the client a
// development-mode app; a user not on it logs in and then gets the
// plain-text 403.
func TestEmulatorCommandAllowlist(t *testing.T) {
	base, _, _ := startEmulator(t, "--client", "dev=http://127.0.0.1/cb", "--allowlist", "dev=carol", "--auto-approve", "alice")
	me := func(user string) (int, string) {
		t.Helper()
		if _, err := http.Post(base+"/_emulator/auto-approve", "application/json", strings.NewReader(`{"user":"`+user+`"}`)); err != nil {
			t.Fatal(err)
		}
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
		resp, err := noRedirect.Get(base + "/authorize?" + url.Values{"client_id": {"dev"}, "response_type": {"code"},
			"redirect_uri": {"http://127.0.0.1:5555/cb"}, "code_challenge_method": {"S256"},
			"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		resp, err = http.PostForm(base+"/api/token", url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
			"redirect_uri": {"http://127.0.0.1:5555/cb"}, "client_id": {"dev"}, "code_verifier": {verifier}})
		if err != nil {
			t.Fatal(err)
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&tok)
		resp.Body.Close()
		if tok.AccessToken == "" {
			t.Fatalf("%s got no token: %d", user, resp.StatusCode)
		}
		req, _ := http.NewRequest("GET", base+"/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	if code, body := me("alice"); code != 403 || body != "User not registered in the Developer Dashboard" {
		t.Errorf("alice: %d %q, want the plain-text 403", code, body)
	}
	if code, body := me("carol"); code != 200 {
		t.Errorf("carol, on the allowlist: %d %s", code, body)
	}
}
