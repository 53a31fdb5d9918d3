package bench_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken/emulator"
)

// parallelism is passed to b.SetParallelism: every benchmark runs
// parallelism × GOMAXPROCS client goroutines, so the server always has more
// requests in flight than there are CPUs. All benchmarks, the baseline
// included, use the same value, or the ratios would mean nothing.
const parallelism = 4

// Fixture clients of the emulator under test.
const (
	pubID      = "bench-public"              // public client: PKCE, refresh with client_id alone
	confID     = "bench-confidential"        // confidential client: HTTP Basic
	confSecret = "bench-confidential-secret" // its secret
	redirect   = "http://127.0.0.1/callback" // loopback without a port: any port matches
	redirectP  = "http://127.0.0.1:43123/callback"
	benchUser  = "bench-user"
	userScopes = "user-read-private user-read-email"
)

// baselineBody is what the baseline handlers answer: a small fixed JSON
// object, about the size of a token response's envelope.
var baselineBody = []byte(`{"access_token":"BQ-baseline","token_type":"Bearer","expires_in":3600}` + "\n")

// baselineHandler is the cheapest JSON endpoint net/http can serve.
func baselineHandler(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(baselineBody)))
	w.Write(baselineBody)
}

// newClient is the client every benchmark uses: one shared http.Client whose
// Transport keeps an idle connection for every goroutine, so the steady state
// reuses connections and never dials. No proxy, no compression.
func newClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout: 30 * time.Second,
	}
}

// serve starts an httptest server for h and a client for it, both closed when
// the benchmark ends.
func serve(b *testing.B, h http.Handler) (*httptest.Server, *http.Client) {
	b.Helper()
	srv := httptest.NewServer(h)
	c := newClient()
	b.Cleanup(func() {
		c.CloseIdleConnections()
		srv.Close()
	})
	return srv, c
}

// newEmulator returns an emulator with the fixture clients, auto-approving
// benchUser, with the default rotation mode (never) and real time.
func newEmulator(b *testing.B) *emulator.Emulator {
	b.Helper()
	emu, err := emulator.New(emulator.Config{
		Clients: []emulator.Client{
			{ID: pubID, RedirectURIs: []string{redirect}},
			{ID: confID, Secret: confSecret, RedirectURIs: []string{redirect}},
		},
		AutoApprove: benchUser,
	})
	if err != nil {
		b.Fatalf("emulator.New: %v", err)
	}
	return emu
}

// grant runs the PKCE authorization-code flow for the public client against
// srv (auto-approved /authorize, then the code exchange with the verifier) and
// returns the access and refresh tokens.
func grant(b *testing.B, srv *httptest.Server, c *http.Client) (access, refresh string) {
	b.Helper()
	raw := make([]byte, 32)
	rand.Read(raw)
	verifier := base64.RawURLEncoding.EncodeToString(raw) // 43 characters
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])

	q := url.Values{
		"client_id": {pubID}, "response_type": {"code"}, "redirect_uri": {redirectP},
		"scope": {userScopes}, "state": {"bench"},
		"code_challenge_method": {"S256"}, "code_challenge": {challenge},
	}
	noFollow := *c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noFollow.Get(srv.URL + "/authorize?" + q.Encode())
	if err != nil {
		b.Fatalf("GET /authorize: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		b.Fatalf("GET /authorize: status %d, want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		b.Fatalf("/authorize redirect: %v", err)
	}
	code := loc.Query().Get("code")
	if code == "" {
		b.Fatalf("/authorize redirect has no code")
	}

	tok := postToken(b, srv, c, url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectP},
		"client_id": {pubID}, "code_verifier": {verifier},
	}, "")
	if tok.AccessToken == "" || tok.RefreshToken == "" {
		b.Fatalf("code exchange: access or refresh token missing")
	}
	return tok.AccessToken, tok.RefreshToken
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// postToken makes one setup request to /api/token and decodes the answer.
// basic, when not empty, is an Authorization header value.
func postToken(b *testing.B, srv *httptest.Server, c *http.Client, form url.Values, basic string) tokenResponse {
	b.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/token", strings.NewReader(form.Encode()))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic != "" {
		req.Header.Set("Authorization", basic)
	}
	resp, err := c.Do(req)
	if err != nil {
		b.Fatalf("POST /api/token: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("POST /api/token (%s): status %d, body %s", form.Get("grant_type"), resp.StatusCode, body)
	}
	var tok tokenResponse
	if err := json.Unmarshal(body, &tok); err != nil {
		b.Fatalf("POST /api/token: %v", err)
	}
	return tok
}

// firstError keeps the first failure seen by any RunParallel goroutine: only
// the benchmark's own goroutine may call b.Fatal, so workers record the error
// and stop, and run reports it after RunParallel returns.
type firstError struct {
	once sync.Once
	err  error
}

func (f *firstError) set(err error) { f.once.Do(func() { f.err = err }) }

// run measures newReq over c with b.RunParallel: each iteration sends one
// request, drains and closes the body, and checks that the status is want.
// It reports req/s and cpu-ns/op (the process's CPU time, client and server
// together, per request) and fails the benchmark on the first error.
func run(b *testing.B, c *http.Client, want int, newReq func() (*http.Request, error)) {
	b.Helper()
	var fail firstError
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	cpu0, cpuOK := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := newReq()
			if err != nil {
				fail.set(err)
				return
			}
			resp, err := c.Do(req)
			if err != nil {
				fail.set(err)
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				fail.set(fmt.Errorf("%s %s: reading body: %w", req.Method, req.URL.Path, err))
				return
			}
			if resp.StatusCode != want {
				fail.set(fmt.Errorf("%s %s: status %d, want %d", req.Method, req.URL.Path, resp.StatusCode, want))
				return
			}
		}
	})
	b.StopTimer()
	if fail.err != nil {
		b.Fatal(fail.err)
	}
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "req/s")
	}
	if cpu1, ok := processCPU(); ok && cpuOK {
		// Wall time per op depends on how much of the machine the process
		// got; CPU time per op (client + server + runtime) much less so.
		b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkBaseline is the denominator of every ratio: GET of a fixed small
// JSON body from a trivial handler over the same loopback stack and client.
func BenchmarkBaseline(b *testing.B) {
	srv, c := serve(b, http.HandlerFunc(baselineHandler))
	u := srv.URL + "/baseline"
	run(b, c, http.StatusOK, func() (*http.Request, error) {
		return http.NewRequest(http.MethodGet, u, nil)
	})
}

// BenchmarkBaselinePost is the baseline for a form POST: the trivial handler
// behind a request shaped like a refresh (same URL, headers and body size),
// reading the body before answering. The gap between it and
// BenchmarkBaseline is what a request body costs net/http, not the emulator.
func BenchmarkBaselinePost(b *testing.B) {
	srv, c := serve(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") == "" {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		baselineHandler(w, r)
	}))
	u := srv.URL + "/api/token"
	body := url.Values{
		"grant_type": {"refresh_token"}, "client_id": {pubID},
		"refresh_token": {"AQ" + strings.Repeat("x", 128)}, // the length of an emulator refresh token
	}.Encode()
	run(b, c, http.StatusOK, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return req, err
	})
}

// BenchmarkEmulatorTokenRefresh is a public PKCE client refreshing: POST
// /api/token grant_type=refresh_token with client_id and the refresh token
// from a real authorization-code flow. Rotation is the default (never), so
// the same refresh token stays valid for every iteration.
func BenchmarkEmulatorTokenRefresh(b *testing.B) {
	srv, c := serve(b, newEmulator(b))
	_, refresh := grant(b, srv, c)
	u := srv.URL + "/api/token"
	body := url.Values{"grant_type": {"refresh_token"}, "client_id": {pubID}, "refresh_token": {refresh}}.Encode()
	run(b, c, http.StatusOK, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return req, err
	})
}

// BenchmarkEmulatorMe is GET /v1/me with a valid bearer token carrying
// user-read-private and user-read-email, so the full profile is built.
func BenchmarkEmulatorMe(b *testing.B) {
	srv, c := serve(b, newEmulator(b))
	access, _ := grant(b, srv, c)
	u := srv.URL + "/v1/me"
	auth := "Bearer " + access
	run(b, c, http.StatusOK, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err == nil {
			req.Header.Set("Authorization", auth)
		}
		return req, err
	})
}

// BenchmarkEmulatorClientCredentials is a confidential client's
// client-credentials grant, authenticated with HTTP Basic.
func BenchmarkEmulatorClientCredentials(b *testing.B) {
	srv, c := serve(b, newEmulator(b))
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(confID)+":"+url.QueryEscape(confSecret)))
	// One request outside the timer proves the setup before measuring.
	postToken(b, srv, c, url.Values{"grant_type": {"client_credentials"}}, basic)
	u := srv.URL + "/api/token"
	body := url.Values{"grant_type": {"client_credentials"}}.Encode()
	run(b, c, http.StatusOK, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", basic)
		}
		return req, err
	})
}
