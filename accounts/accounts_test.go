package accounts_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
)

func TestS256Challenge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, verifier, want string
	}{
		// RFC 7636 Appendix B.
		{"rfc7636 appendix B", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
		// SHA-256 of the empty string, base64url without padding.
		{"empty", "", "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(accounts.S256Challenge(tt.verifier), tt.want); diff != "" {
				t.Errorf("S256Challenge(%q) (-got +want):\n%s", tt.verifier, diff)
			}
		})
	}
}

func TestGenerateVerifier(t *testing.T) {
	t.Parallel()
	const n = 1000
	seen := make(map[string]bool, n)
	for range n {
		v := accounts.GenerateVerifier()
		// RFC 7636 §4.1: 43 to 128 characters of [A-Z] [a-z] [0-9] "-" "." "_" "~".
		if len(v) < 43 || len(v) > 128 {
			t.Fatalf("verifier %q: length %d, want 43 to 128", v, len(v))
		}
		if bad := strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"); bad != "" {
			t.Fatalf("verifier %q: characters %q outside the unreserved set", v, bad)
		}
		// 32 random octets, the RFC's recommendation.
		if raw, err := base64.RawURLEncoding.DecodeString(v); err != nil || len(raw) != 32 {
			t.Fatalf("verifier %q: want 32 octets base64url-encoded, got %d octets, %v", v, len(raw), err)
		}
		if seen[v] {
			t.Fatalf("verifier %q generated twice", v)
		}
		seen[v] = true
		if c := accounts.S256Challenge(v); len(c) != 43 {
			t.Fatalf("challenge %q: length %d, want 43", c, len(c))
		}
	}
}

func TestAuthCodeURL(t *testing.T) {
	t.Parallel()
	const v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	tests := []struct {
		name       string
		cfg        accounts.Config
		state      string
		redirect   string
		scopes     spotoken.Scopes
		verifier   string
		showDialog bool
		wantBase   string
		want       url.Values
	}{
		{
			name:     "public with PKCE",
			cfg:      accounts.Config{ClientID: "pub", AuthURL: "http://127.0.0.1:9/authorize"},
			state:    "s1",
			redirect: "http://127.0.0.1:43123/callback",
			scopes:   spotoken.Scopes{"user-read-private", "user-read-email"},
			verifier: v,
			wantBase: "http://127.0.0.1:9/authorize",
			want: url.Values{"response_type": {"code"}, "client_id": {"pub"}, "redirect_uri": {"http://127.0.0.1:43123/callback"},
				"state": {"s1"}, "scope": {"user-read-email user-read-private"},
				"code_challenge_method": {"S256"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}},
		},
		{
			name:       "confidential, show dialog, default host",
			cfg:        accounts.Config{ClientID: "conf", ClientSecret: "s3cr3t-value"},
			state:      "s2",
			redirect:   "https://app.example/cb",
			scopes:     spotoken.Scopes{"streaming"},
			showDialog: true,
			wantBase:   "https://accounts.spotify.com/authorize",
			want: url.Values{"response_type": {"code"}, "client_id": {"conf"}, "redirect_uri": {"https://app.example/cb"},
				"state": {"s2"}, "scope": {"streaming"}, "show_dialog": {"true"}},
		},
		{
			name:     "no scopes, no state",
			cfg:      accounts.Config{ClientID: "conf"},
			redirect: "https://app.example/cb",
			wantBase: "https://accounts.spotify.com/authorize",
			want:     url.Values{"response_type": {"code"}, "client_id": {"conf"}, "redirect_uri": {"https://app.example/cb"}},
		},
		{
			name:     "auth URL with a query",
			cfg:      accounts.Config{ClientID: "c", AuthURL: "https://auth.example/authorize?tenant=x"},
			state:    "s",
			redirect: "https://app.example/cb",
			scopes:   spotoken.Scopes{"a", "", "a", "b"},
			wantBase: "https://auth.example/authorize",
			want: url.Values{"tenant": {"x"}, "response_type": {"code"}, "client_id": {"c"}, "redirect_uri": {"https://app.example/cb"},
				"state": {"s"}, "scope": {"a b"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := accounts.New(tt.cfg).AuthCodeURL(tt.state, tt.redirect, tt.scopes, tt.verifier, tt.showDialog)
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatalf("AuthCodeURL = %q: %v", raw, err)
			}
			q := u.Query()
			u.RawQuery = ""
			if diff := cmp.Diff(u.String(), tt.wantBase); diff != "" {
				t.Errorf("base (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(q, tt.want); diff != "" {
				t.Errorf("query (-got +want):\n%s", diff)
			}
			if strings.Contains(raw, "s3cr3t") || (tt.verifier != "" && strings.Contains(raw, tt.verifier)) {
				t.Errorf("AuthCodeURL %q reveals the secret or the verifier", raw)
			}
		})
	}
}

// recorded is a token request as the server saw it.
type recorded struct {
	Method, URL, ContentType string
	BasicUser, BasicPass     string
	HasBasic                 bool
	Form                     url.Values
}

// recorder answers every request with status and body, and records it.
type recorder struct {
	mu     sync.Mutex
	reqs   []recorded
	status int
	body   string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(req.Body)
	req.Body.Close()
	form, _ := url.ParseQuery(string(body))
	rec := recorded{Method: req.Method, URL: req.URL.String(), ContentType: req.Header.Get("Content-Type"), Form: form}
	rec.BasicUser, rec.BasicPass, rec.HasBasic = req.BasicAuth()
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
	return canned(r.status, jsonHeader(), []byte(r.body)).RoundTrip(req)
}

// TestTokenRequests holds the shape of every token request, and checks that
// exactly one request is sent even when it fails (no auth-style probing).
func TestTokenRequests(t *testing.T) {
	t.Parallel()
	const (
		ok     = `{"access_token":"AT","token_type":"Bearer","expires_in":3600,"refresh_token":"RT2","scope":"a"}`
		failed = `{"error":"invalid_client","error_description":"Invalid client"}`
		secret = "sec ret/+=" // needs form-encoding in Basic auth (RFC 6749 §2.3.1)
	)
	type call func(*accounts.Client) (*accounts.Grant, error)
	exchange := func(verifier string) call {
		return func(c *accounts.Client) (*accounts.Grant, error) {
			return c.Exchange(context.Background(), "CODE", "https://app.example/cb", verifier)
		}
	}
	refresh := func(c *accounts.Client) (*accounts.Grant, error) { return c.Refresh(context.Background(), "RT1") }
	cc := func(c *accounts.Client) (*accounts.Grant, error) { return c.ClientCredentials(context.Background()) }
	// Basic credentials are form-encoded before base64 (RFC 6749 §2.3.1).
	encSecret := url.QueryEscape(secret)
	tests := []struct {
		name     string
		secret   spotoken.Secret
		tokenURL string
		call     call
		want     recorded
	}{
		{
			name: "public exchange", call: exchange("VERIFIER"),
			want: recorded{Form: url.Values{"grant_type": {"authorization_code"}, "code": {"CODE"},
				"redirect_uri": {"https://app.example/cb"}, "client_id": {"fake-client"}, "code_verifier": {"VERIFIER"}}},
		},
		{
			name: "confidential exchange", secret: secret, call: exchange(""),
			want: recorded{HasBasic: true, BasicUser: "fake-client", BasicPass: encSecret,
				Form: url.Values{"grant_type": {"authorization_code"}, "code": {"CODE"}, "redirect_uri": {"https://app.example/cb"}}},
		},
		{
			name: "confidential exchange with PKCE", secret: secret, call: exchange("VERIFIER"),
			want: recorded{HasBasic: true, BasicUser: "fake-client", BasicPass: encSecret,
				Form: url.Values{"grant_type": {"authorization_code"}, "code": {"CODE"}, "redirect_uri": {"https://app.example/cb"},
					"code_verifier": {"VERIFIER"}}},
		},
		{
			name: "public refresh", call: refresh,
			want: recorded{Form: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"RT1"}, "client_id": {"fake-client"}}},
		},
		{
			name: "confidential refresh", secret: secret, call: refresh,
			want: recorded{HasBasic: true, BasicUser: "fake-client", BasicPass: encSecret,
				Form: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"RT1"}}},
		},
		{
			name: "client credentials", secret: secret, call: cc,
			want: recorded{HasBasic: true, BasicUser: "fake-client", BasicPass: encSecret,
				Form: url.Values{"grant_type": {"client_credentials"}}},
		},
		{
			name: "default token URL", secret: secret, tokenURL: "-", call: cc,
			want: recorded{URL: accounts.DefaultTokenURL, HasBasic: true, BasicUser: "fake-client", BasicPass: encSecret,
				Form: url.Values{"grant_type": {"client_credentials"}}},
		},
	}
	for _, tt := range tests {
		for _, answer := range []struct {
			status int
			body   string
		}{{200, ok}, {400, failed}, {401, failed}} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, answer.status), func(t *testing.T) {
				rec := &recorder{status: answer.status, body: answer.body}
				cfg := fakeConfig(tt.secret, rec)
				want := tt.want
				want.Method, want.ContentType = http.MethodPost, "application/x-www-form-urlencoded"
				if want.URL == "" {
					want.URL = cfg.TokenURL
				}
				if tt.tokenURL == "-" {
					cfg.TokenURL = ""
				}
				_, err := tt.call(accounts.New(cfg))
				if (err == nil) != (answer.status == 200) {
					t.Fatalf("error %v for status %d", err, answer.status)
				}
				if diff := cmp.Diff(rec.reqs, []recorded{want}); diff != "" {
					t.Errorf("requests (-got +want):\n%s", diff)
				}
			})
		}
	}
}

func TestGrantFromResponse(t *testing.T) {
	t.Parallel()
	type call func(*accounts.Client) (*accounts.Grant, error)
	exchange := func(c *accounts.Client) (*accounts.Grant, error) {
		return c.Exchange(context.Background(), "CODE", "https://app.example/cb", "")
	}
	refresh := func(c *accounts.Client) (*accounts.Grant, error) { return c.Refresh(context.Background(), "RT1") }
	cc := func(c *accounts.Client) (*accounts.Grant, error) { return c.ClientCredentials(context.Background()) }
	tests := []struct {
		name string
		call call
		body string
		want *accounts.Grant
	}{
		{"exchange", exchange, `{"access_token":"AT","token_type":"Bearer","scope":"b a","expires_in":3600,"refresh_token":"RT"}`,
			&accounts.Grant{AccessToken: "AT", RefreshToken: "RT", Expiry: t0.Add(time.Hour), Scopes: spotoken.Scopes{"a", "b"}}},
		{"refresh without refresh_token", refresh, `{"access_token":"AT","token_type":"Bearer","scope":"a","expires_in":3600}`,
			&accounts.Grant{AccessToken: "AT", RefreshToken: "RT1", Expiry: t0.Add(time.Hour), Scopes: spotoken.Scopes{"a"}}},
		{"refresh with empty refresh_token", refresh, `{"access_token":"AT","expires_in":3600,"refresh_token":""}`,
			&accounts.Grant{AccessToken: "AT", RefreshToken: "RT1", Expiry: t0.Add(time.Hour)}},
		{"refresh with the same refresh_token", refresh, `{"access_token":"AT","expires_in":60,"refresh_token":"RT1"}`,
			&accounts.Grant{AccessToken: "AT", RefreshToken: "RT1", Expiry: t0.Add(time.Minute)}},
		{"refresh rotated", refresh, `{"access_token":"AT","expires_in":3600,"refresh_token":"RT2","scope":""}`,
			&accounts.Grant{AccessToken: "AT", RefreshToken: "RT2", Expiry: t0.Add(time.Hour), Scopes: spotoken.Scopes{}, Rotated: true}},
		{"expires_in as a string", exchange, `{"access_token":"AT","expires_in":"120"}`,
			&accounts.Grant{AccessToken: "AT", Expiry: t0.Add(2 * time.Minute)}},
		{"no expires_in", exchange, `{"access_token":"AT"}`, &accounts.Grant{AccessToken: "AT"}},
		{"negative expires_in", exchange, `{"access_token":"AT","expires_in":-5}`, &accounts.Grant{AccessToken: "AT"}},
		{"client credentials", cc, `{"access_token":"AT","token_type":"Bearer","expires_in":3600}`,
			&accounts.Grant{AccessToken: "AT", Expiry: t0.Add(time.Hour)}},
		{"client credentials, expires_in as a string", cc, `{"access_token":"AT","expires_in":"90"}`,
			&accounts.Grant{AccessToken: "AT", Expiry: t0.Add(90 * time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := tt.call(accounts.New(fakeConfig("secret", canned(200, jsonHeader(), []byte(tt.body)))))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(g, tt.want); diff != "" {
				t.Errorf("grant (-got +want):\n%s", diff)
			}
		})
	}
}

func TestGrantToken(t *testing.T) {
	t.Parallel()
	g := &accounts.Grant{AccessToken: "AT", RefreshToken: "RT", Expiry: t0, Scopes: spotoken.Scopes{"a"}, Rotated: true}
	want := spotoken.Token{AccessToken: "AT", RefreshToken: "RT", Expiry: t0}
	if diff := cmp.Diff(g.Token(), want); diff != "" {
		t.Errorf("Token() (-got +want):\n%s", diff)
	}
}

// TestErrorResponses covers answers the emulator does not give: odd bodies,
// Retry-After as an HTTP-date, a 2xx carrying an error.
func TestErrorResponses(t *testing.T) {
	t.Parallel()
	date := func(d time.Duration) string { return t0.Add(d).Format(http.TimeFormat) }
	tests := []struct {
		name       string
		status     int
		header     http.Header
		body       string
		want       *accounts.Error
		wantString string
	}{
		{"429, empty body, seconds", 429, http.Header{"Retry-After": {"3"}}, "",
			&accounts.Error{Status: 429, RetryAfter: 3 * time.Second}, "accounts: 429 Too Many Requests"},
		{"429, json content type, empty body", 429, http.Header{"Content-Type": {"application/json"}, "Retry-After": {"3"}}, "",
			&accounts.Error{Status: 429, RetryAfter: 3 * time.Second}, "accounts: 429 Too Many Requests"},
		{"429, Retry-After 0", 429, http.Header{"Retry-After": {"0"}}, "", &accounts.Error{Status: 429}, "accounts: 429 Too Many Requests"},
		{"429, no Retry-After", 429, nil, "", &accounts.Error{Status: 429}, "accounts: 429 Too Many Requests"},
		{"429, Retry-After 3600", 429, http.Header{"Retry-After": {"3600"}}, "", &accounts.Error{Status: 429, RetryAfter: time.Hour}, ""},
		{"429, Retry-After HTTP-date", 429, http.Header{"Retry-After": {date(90 * time.Second)}}, "",
			&accounts.Error{Status: 429, RetryAfter: 90 * time.Second}, ""},
		{"429, Retry-After RFC 850 date", 429, http.Header{"Retry-After": {t0.Add(time.Minute).Format(time.RFC850)}}, "",
			&accounts.Error{Status: 429, RetryAfter: time.Minute}, ""},
		{"429, Retry-After date in the past", 429, http.Header{"Retry-After": {date(-time.Hour)}}, "", &accounts.Error{Status: 429}, ""},
		{"429, Retry-After garbage", 429, http.Header{"Retry-After": {"soon"}}, "", &accounts.Error{Status: 429}, ""},
		{"429, Retry-After negative", 429, http.Header{"Retry-After": {"-3"}}, "", &accounts.Error{Status: 429}, ""},
		{"429, Retry-After fractional", 429, http.Header{"Retry-After": {"1.5"}}, "", &accounts.Error{Status: 429}, ""},
		{"429, Retry-After huge", 429, http.Header{"Retry-After": {"99999999999999999999999"}}, "",
			&accounts.Error{Status: 429, RetryAfter: (1 << 31) * time.Second}, ""},
		{"429, Web API style body", 429, http.Header{"Content-Type": {"application/json"}, "Retry-After": {"2"}},
			`{"error":{"status":429,"message":"API rate limit exceeded"}}`, &accounts.Error{Status: 429, RetryAfter: 2 * time.Second}, ""},
		{"503 plain text", 503, http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, "Service Unavailable\n",
			&accounts.Error{Status: 503}, "accounts: 503 Service Unavailable"},
		{"502 html", 502, http.Header{"Content-Type": {"text/html"}}, "<html>bad gateway</html>", &accounts.Error{Status: 502}, ""},
		{"400 invalid_grant", 400, jsonHeader(), `{"error":"invalid_grant","error_description":"Refresh token revoked"}`,
			&accounts.Error{Status: 400, Code: "invalid_grant", Description: "Refresh token revoked"},
			"accounts: 400 Bad Request: invalid_grant: Refresh token revoked"},
		{"401 invalid_client, RFC 6749 style", 401, jsonHeader(), `{"error":"invalid_client"}`,
			&accounts.Error{Status: 401, Code: "invalid_client"}, "accounts: 401 Unauthorized: invalid_client"},
		{"200 carrying an error", 200, jsonHeader(), `{"error":"invalid_grant","error_description":"Invalid refresh token"}`,
			&accounts.Error{Status: 200, Code: "invalid_grant", Description: "Invalid refresh token"}, ""},
		{"form-encoded error", 400, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, "error=invalid_request&error_description=refresh_token+must+be+supplied",
			&accounts.Error{Status: 400, Code: "invalid_request", Description: "refresh_token must be supplied"}, ""},
		{"control characters and a long description", 400, jsonHeader(),
			`{"error":"invalid_grant\n","error_description":"a\u0000b\u001b[31m` + strings.Repeat("x", 400) + `"}`,
			&accounts.Error{Status: 400, Code: "invalid_grant?", Description: "a?b?[31m" + strings.Repeat("x", 256-8)}, ""},
		{"unknown status", 599, nil, "", &accounts.Error{Status: 599}, "accounts: 599"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := accounts.New(fakeConfig("", canned(tt.status, tt.header, []byte(tt.body))))
			_, err := c.Refresh(context.Background(), "RT1")
			var ae *accounts.Error
			if !errors.As(err, &ae) {
				t.Fatalf("Refresh: %v (%T), want *accounts.Error", err, err)
			}
			if diff := cmp.Diff(ae, tt.want); diff != "" {
				t.Errorf("error (-got +want):\n%s", diff)
			}
			if tt.wantString != "" {
				if diff := cmp.Diff(err.Error(), tt.wantString); diff != "" {
					t.Errorf("Error() (-got +want):\n%s", diff)
				}
			}
		})
	}
}

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	type class struct{ Transient, InvalidGrant, InvalidClient bool }
	tests := []struct {
		err  accounts.Error
		want class
	}{
		{accounts.Error{Status: 429}, class{Transient: true}},
		{accounts.Error{Status: 408}, class{Transient: true}},
		{accounts.Error{Status: 500, Code: "server_error"}, class{Transient: true}},
		{accounts.Error{Status: 502}, class{Transient: true}},
		{accounts.Error{Status: 503}, class{Transient: true}},
		{accounts.Error{Status: 400, Code: "temporarily_unavailable"}, class{Transient: true}},
		{accounts.Error{Status: 400, Code: "slow_down"}, class{Transient: true}},
		{accounts.Error{Status: 400, Code: "invalid_grant"}, class{InvalidGrant: true}},
		{accounts.Error{Status: 400, Code: "invalid_client"}, class{InvalidClient: true}},
		{accounts.Error{Status: 401, Code: "invalid_client"}, class{InvalidClient: true}},
		{accounts.Error{Status: 400, Code: "invalid_request"}, class{}},
		{accounts.Error{Status: 400, Code: "unsupported_grant_type"}, class{}},
		{accounts.Error{Status: 401}, class{}},
		{accounts.Error{Status: 404}, class{}},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			got := class{tt.err.Transient(), tt.err.InvalidGrant(), tt.err.InvalidClient()}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("classification (-got +want):\n%s", diff)
			}
			if got := accounts.IsTransient(fmt.Errorf("wrapped: %w", &tt.err)); got != tt.want.Transient {
				t.Errorf("IsTransient(wrapped) = %v, want %v", got, tt.want.Transient)
			}
		})
	}
}

// timeoutError is a net.Error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestIsTransient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"429", &accounts.Error{Status: 429}, true},
		{"invalid_grant", &accounts.Error{Status: 400, Code: "invalid_grant"}, false},
		{"deadline", context.DeadlineExceeded, true},
		{"wrapped deadline", fmt.Errorf("accounts: refresh: %w", context.DeadlineExceeded), true},
		{"os deadline", os.ErrDeadlineExceeded, true},
		{"canceled", context.Canceled, false},
		{"canceled and deadline", fmt.Errorf("%w (%w)", context.Canceled, context.DeadlineExceeded), false},
		{"net timeout", &url.Error{Op: "Post", URL: "https://x", Err: timeoutError{}}, true},
		{"connection refused", &url.Error{Op: "Post", URL: "https://x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}, true},
		{"dns", &net.DNSError{Err: "no such host", Name: "accounts.spotify.com", IsNotFound: true}, true},
		{"unexpected EOF", &url.Error{Op: "Post", URL: "https://x", Err: io.ErrUnexpectedEOF}, true},
		{"malformed", fmt.Errorf("accounts: refresh: %w", accounts.ErrMalformedResponse), false},
		{"other", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := accounts.IsTransient(tt.err); got != tt.want {
				t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestHangingServer: a server that never answers, or stops halfway, ends
// in a deadline that IsTransient accepts; a canceled context does not.
func TestHangingServer(t *testing.T) {
	t.Parallel()
	// hang blocks until the client goes away or the test ends. It reads the
	// request body first: only then does the server watch the connection
	// and cancel r.Context() when the client closes it.
	hang := func(release <-chan struct{}) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}
	midBody := func(release <-chan struct{}) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "200")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, `{"access_token":"`)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}
	deadline := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 100*time.Millisecond)
	}
	background := func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }
	canceled := func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		return ctx, cancel
	}
	tests := []struct {
		name          string
		handler       func(<-chan struct{}) http.HandlerFunc
		ctx           func() (context.Context, context.CancelFunc)
		clientTimeout time.Duration
		wantTransient bool
		wantIs        error
	}{
		{"no headers, context deadline", hang, deadline, 0, true, context.DeadlineExceeded},
		{"half a body, context deadline", midBody, deadline, 0, true, context.DeadlineExceeded},
		{"no headers, client timeout", hang, background, 100 * time.Millisecond, true, context.DeadlineExceeded},
		{"half a body, client timeout", midBody, background, 100 * time.Millisecond, true, context.DeadlineExceeded},
		{"no headers, canceled", hang, canceled, 0, false, context.Canceled},
		{"half a body, canceled", midBody, canceled, 0, false, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			srv := httptest.NewServer(tt.handler(release))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(release) }) // runs first: cleanups are LIFO
			l := newLeaks(t)
			l.secret("RT-hanging-secret", "client-secret-hanging")
			hc := srv.Client()
			hc.Timeout = tt.clientTimeout
			c := accounts.New(accounts.Config{ClientID: "c", ClientSecret: "client-secret-hanging", TokenURL: srv.URL + "/api/token", HTTPClient: hc})
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			_, err := c.Refresh(ctx, "RT-hanging-secret")
			l.err(err)
			if err == nil {
				t.Fatal("Refresh succeeded against a hanging server")
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("Refresh took %v", d)
			}
			if got := accounts.IsTransient(err); got != tt.wantTransient {
				t.Errorf("IsTransient(%v) = %v, want %v", err, got, tt.wantTransient)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			t.Logf("error: %v", err)
		})
	}
}

// countingBody is an endless body that counts what is read from it.
type countingBody struct {
	n     atomic.Int64
	limit int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.n.Load() >= b.limit {
		return 0, io.EOF
	}
	for i := range p {
		p[i] = 'a'
	}
	if rest := b.limit - b.n.Load(); int64(len(p)) > rest {
		p = p[:rest]
	}
	b.n.Add(int64(len(p)))
	return len(p), nil
}

func (b *countingBody) Close() error { return nil }

// TestHugeBody: a 5 MB answer is read through a 1 MiB limit and ends in an
// error, not in memory exhaustion.
func TestHugeBody(t *testing.T) {
	t.Parallel()
	const size = 5 << 20
	huge := func(status int, prefix string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, prefix)
			w.Write(bytes.Repeat([]byte("a"), size-len(prefix)))
		}
	}
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name    string
			handler http.HandlerFunc
			check   func(t *testing.T, err error)
		}{
			{"200", huge(200, `{"access_token":"`), func(t *testing.T, err error) {
				if !errors.Is(err, accounts.ErrMalformedResponse) {
					t.Errorf("error %v, want ErrMalformedResponse", err)
				}
				if accounts.IsTransient(err) {
					t.Errorf("IsTransient(%v) = true", err)
				}
			}},
			{"502", huge(502, `{"error":"server_error","error_description":"`), func(t *testing.T, err error) {
				var ae *accounts.Error
				if !errors.As(err, &ae) || ae.Status != 502 || !accounts.IsTransient(err) {
					t.Errorf("error %v, want a transient *accounts.Error with status 502", err)
				}
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				srv := httptest.NewServer(tt.handler)
				t.Cleanup(srv.Close)
				c := accounts.New(accounts.Config{ClientID: "c", TokenURL: srv.URL, HTTPClient: srv.Client()})
				_, err := c.Refresh(context.Background(), "RT1")
				if err == nil {
					t.Fatal("Refresh succeeded")
				}
				if len(err.Error()) > 512 {
					t.Errorf("error message is %d bytes long", len(err.Error()))
				}
				tt.check(t, err)
			})
		}
	})
	t.Run("bytes read", func(t *testing.T) {
		t.Parallel()
		for _, status := range []int{200, 400, 503} {
			body := &countingBody{limit: size}
			rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: status, Header: jsonHeader(), Body: body, Request: r, ContentLength: -1}, nil
			})
			_, err := accounts.New(fakeConfig("", rt)).Refresh(context.Background(), "RT1")
			if err == nil {
				t.Fatalf("status %d: Refresh succeeded", status)
			}
			if n := body.n.Load(); n > 1<<20+64<<10 {
				t.Errorf("status %d: read %d bytes of the body, want at most 1 MiB", status, n)
			}
		}
	})
}

// TestClientHidesSecret prints a Client every way there is.
func TestClientHidesSecret(t *testing.T) {
	t.Parallel()
	const secret = "client-secret-do-not-print"
	c := accounts.New(accounts.Config{ClientID: "c", ClientSecret: secret})
	cfg := accounts.Config{ClientID: "c", ClientSecret: secret}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%v %+v %#v %v %+v %#v %v %+v %#v", c, c, c, *c, *c, *c, cfg, cfg, cfg)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("client", "c", c, "cfg", cfg)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("client", "c", c, "cfg", cfg)
	if strings.Contains(buf.String(), secret) {
		t.Errorf("printing a Client reveals the secret:\n%s", buf.String())
	}
}

func TestRefreshEmptyToken(t *testing.T) {
	t.Parallel()
	rec := &recorder{status: 200, body: `{"access_token":"AT"}`}
	_, err := accounts.New(fakeConfig("", rec)).Refresh(context.Background(), "")
	if err == nil {
		t.Fatal("Refresh with an empty refresh token succeeded")
	}
	if len(rec.reqs) != 0 {
		t.Errorf("sent %d requests, want none", len(rec.reqs))
	}
}

func TestMalformedSuccess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header http.Header
		body   string
	}{
		{"not json", jsonHeader(), "<html>captive portal</html>"},
		{"no access token", jsonHeader(), `{"token_type":"Bearer","expires_in":3600}`},
		{"empty", jsonHeader(), ""},
		{"access token of the wrong type", jsonHeader(), `{"access_token":12345678901234567890}`},
		// x/oauth2 wants an integer (RFC 6749 §5.1: "the lifetime in seconds").
		{"fractional expires_in", jsonHeader(), `{"access_token":"AT","expires_in":90.5}`},
		{"bad form encoding", http.Header{"Content-Type": {"text/plain"}}, "access_token=%zz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := accounts.New(fakeConfig("", canned(200, tt.header, []byte(tt.body)))).Refresh(context.Background(), "RT1")
			if !errors.Is(err, accounts.ErrMalformedResponse) {
				t.Fatalf("Refresh: %v, want ErrMalformedResponse", err)
			}
			if strings.Contains(err.Error(), "12345678901234567890") {
				t.Errorf("error %q quotes the body", err)
			}
		})
	}
}
