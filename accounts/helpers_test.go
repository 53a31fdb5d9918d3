package accounts_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/accounts"
	"github.com/spotoken/spotoken/emulator"
)

// Fixtures: a confidential client, a public (PKCE) client registered with a
// portless loopback redirect URI (RFC 8252: any port matches), and the user
// the emulator approves as.
const (
	confID       = "conf-app"
	confSecret   = "conf-secret-5d1f0c7e2b"
	confRedirect = "https://app.example/callback"
	pubID        = "pub-app"
	pubRedirect  = "http://127.0.0.1/callback"
	pubRedirectP = "http://127.0.0.1:43123/callback"
	user         = "alice"
)

// t0 is where every test clock starts.
var t0 = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

// clock is a fake clock shared by the emulator (as its base clock) and the
// accounts client (as Config.Now): Advance moves both.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// leaks collects every secret a test handles and every error it sees, and
// at the end of the test fails if any error's text holds any secret.
type leaks struct {
	t       *testing.T
	mu      sync.Mutex
	secrets []string
	errs    []error
}

func newLeaks(t *testing.T) *leaks {
	l := &leaks{t: t}
	t.Cleanup(l.check)
	return l
}

// secret records secrets that no error may reveal.
func (l *leaks) secret(ss ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range ss {
		if s != "" {
			l.secrets = append(l.secrets, s)
		}
	}
}

// grant records a grant's tokens as secrets.
func (l *leaks) grant(g *accounts.Grant) {
	if g != nil {
		l.secret(g.AccessToken.Reveal(), g.RefreshToken.Reveal())
	}
}

// err records err for the final check and returns it.
func (l *leaks) err(err error) error {
	if err != nil {
		l.mu.Lock()
		l.errs = append(l.errs, err)
		l.mu.Unlock()
	}
	return err
}

func (l *leaks) check() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		text := fmt.Sprintf("%s\n%v\n%+v\n%#v", err.Error(), err, err, err)
		for _, s := range l.secrets {
			if strings.Contains(text, s) {
				l.t.Errorf("error %q reveals a secret (%d characters, starting %.4q)",
					strings.ReplaceAll(err.Error(), s, "[SECRET]"), len(s), s)
			}
		}
	}
	if len(l.secrets) == 0 {
		l.t.Errorf("leak check ran with no secrets recorded")
	}
}

// env is one emulator behind an httptest server, a shared clock, and the
// leak check.
type env struct {
	t   *testing.T
	clk *clock
	emu *emulator.Emulator
	srv *httptest.Server
	*leaks
}

func newEnv(t *testing.T, mutate func(*emulator.Config)) *env {
	t.Helper()
	clk := newClock()
	cfg := emulator.Config{
		Clients: []emulator.Client{
			{ID: confID, Secret: confSecret, RedirectURIs: []string{confRedirect}},
			{ID: pubID, RedirectURIs: []string{pubRedirect}},
		},
		AutoApprove: user,
		Now:         clk.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	emu, err := emulator.New(cfg)
	if err != nil {
		t.Fatalf("emulator.New: %v", err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	e := &env{t: t, clk: clk, emu: emu, srv: srv, leaks: newLeaks(t)}
	e.secret(confSecret)
	return e
}

// config is an accounts.Config for the emulator: confidential with a secret,
// public without.
func (e *env) config(secret spotoken.Secret) accounts.Config {
	id := confID
	if secret == "" {
		id = pubID
	}
	return accounts.Config{
		ClientID:     id,
		ClientSecret: secret,
		AuthURL:      e.srv.URL + "/authorize",
		TokenURL:     e.srv.URL + "/api/token",
		HTTPClient:   e.srv.Client(),
		Now:          e.clk.Now,
	}
}

func (e *env) public() *accounts.Client       { return accounts.New(e.config("")) }
func (e *env) confidential() *accounts.Client { return accounts.New(e.config(confSecret)) }

// noRedirect returns redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// code runs an auto-approved /authorize built by c.AuthCodeURL and returns
// the code from the redirect.
func (e *env) code(c *accounts.Client, redirectURI, verifier string, scopes spotoken.Scopes) string {
	e.t.Helper()
	const state = "st4te-1234"
	resp, err := noRedirect.Get(c.AuthCodeURL(state, redirectURI, scopes, verifier, false))
	if err != nil {
		e.t.Fatalf("GET /authorize: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("/authorize: status %d, want 302; body %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatalf("Location: %v", err)
	}
	q := loc.Query()
	if q.Get("state") != state || q.Get("code") == "" {
		e.t.Fatalf("redirect %s: want code and state %q", loc.Redacted(), state)
	}
	e.secret(q.Get("code"))
	return q.Get("code")
}

// pkceGrant runs the whole public-client flow and returns the grant.
func (e *env) pkceGrant(c *accounts.Client, scopes spotoken.Scopes) *accounts.Grant {
	e.t.Helper()
	v := accounts.GenerateVerifier()
	e.secret(v)
	g, err := c.Exchange(context.Background(), e.code(c, pubRedirectP, v, scopes), pubRedirectP, v)
	if err != nil {
		e.t.Fatalf("Exchange: %v", e.err(err))
	}
	e.grant(g)
	return g
}

// confGrant runs the confidential code flow and returns the grant.
func (e *env) confGrant(c *accounts.Client, scopes spotoken.Scopes) *accounts.Grant {
	e.t.Helper()
	g, err := c.Exchange(context.Background(), e.code(c, confRedirect, "", scopes), confRedirect, "")
	if err != nil {
		e.t.Fatalf("Exchange: %v", e.err(err))
	}
	e.grant(g)
	return g
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// canned returns a RoundTripper that answers every request with status,
// header and body, after draining the request.
func canned(status int, header http.Header, body []byte) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
		h := header.Clone()
		if h == nil {
			h = http.Header{}
		}
		return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
			Header: h, Body: io.NopCloser(bytes.NewReader(body)), Request: r, ContentLength: int64(len(body))}, nil
	})
}

// jsonHeader is a token response's header.
func jsonHeader() http.Header {
	return http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}}
}

// fakeConfig is an accounts.Config whose requests go to rt, never to a network.
func fakeConfig(secret spotoken.Secret, rt http.RoundTripper) accounts.Config {
	return accounts.Config{
		ClientID:     "fake-client",
		ClientSecret: secret,
		AuthURL:      "https://accounts.example/authorize",
		TokenURL:     "https://accounts.example/api/token",
		HTTPClient:   &http.Client{Transport: rt},
		Now:          func() time.Time { return t0 },
	}
}
