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
