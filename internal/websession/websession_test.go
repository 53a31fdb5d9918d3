package websession_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/websession"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
	"github.com/spotoken/spotoken/storetest"
)

// env is a real SQLite store with two apps, and a clock.
type env struct {
	t     *testing.T
	store *sqlite.DB
	path  string
	clock *storetest.Clock
	logs  *bytes.Buffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, clock: storetest.NewClock(), logs: &bytes.Buffer{}}
	ring, err := seal.GenerateKeyFile(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	e.path = filepath.Join(t.TempDir(), "spotoken.db")
	e.store, err = sqlite.Open(context.Background(), sqlite.Config{Path: e.path, Keys: ring, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	for _, id := range []string{"a", "b"} {
		if err := e.store.CreateApp(context.Background(), &spotoken.App{ID: id, ClientID: "client-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// manager returns a Manager on the env's store for cfg, filling in what
// cfg leaves empty: cookie "spotoken_test", kind "dashboard", a loopback
// http public URL.
func (e *env) manager(cfg websession.Config) *websession.Manager {
	e.t.Helper()
	cfg.Store = e.store
	cfg.Now = e.clock.Now
	cfg.Logger = slog.New(slog.NewTextHandler(e.logs, nil))
	if cfg.Cookie == "" {
		cfg.Cookie = "spotoken_test"
	}
	if cfg.Kinds == nil {
		cfg.Kinds = []string{"dashboard"}
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://127.0.0.1:8080"
	}
	m, err := websession.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// start signs in through m, sending cookie (if not nil), and returns the
// session and the cookie set.
func start(t *testing.T, m *websession.Manager, in websession.SignIn, cookie *http.Cookie) (*spotoken.WebSession, *http.Cookie) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/login", nil)
	if cookie != nil {
		r.AddCookie(cookie)
	}
	w := httptest.NewRecorder()
	s, err := m.Start(w, r, in)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	cs := w.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("Start set %d cookies, want 1", len(cs))
	}
	return s, cs[0]
}

// read reads the session of a request carrying cookie.
func read(m *websession.Manager, cookie *http.Cookie) (*spotoken.WebSession, error) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if cookie != nil {
		r.AddCookie(cookie)
	}
	return m.Read(r)
}

var demo = websession.SignIn{Kind: "dashboard", AppID: "a", Subject: "key_1", Data: `{"label":"ci"}`}

func TestStartAndRead(t *testing.T) {
	for _, tc := range []struct {
		publicURL, name string
		secure          bool
	}{
		{"https://tokens.example.com", "__Host-spotoken_test", true},
		{"http://127.0.0.1:8080", "spotoken_test", false},
		{"http://localhost:8080", "spotoken_test", false},
	} {
		t.Run(tc.publicURL, func(t *testing.T) {
			e := newEnv(t)
			m := e.manager(websession.Config{PublicURL: tc.publicURL})
			s, c := start(t, m, demo, nil)
			if c.Name != tc.name || c.Secure != tc.secure || !c.HttpOnly || c.Path != "/" || c.Domain != "" ||
				c.SameSite != http.SameSiteStrictMode || c.MaxAge != int((12*time.Hour).Seconds()) {
				t.Errorf("cookie %s: want %s, Secure %v, HttpOnly, Path=/, no Domain, SameSite=Strict, Max-Age 12h", c, tc.name, tc.secure)
			}
			if m.CookieName() != tc.name || m.Secure() != tc.secure {
				t.Errorf("CookieName, Secure = %q, %v", m.CookieName(), m.Secure())
			}
			if len(c.Value) < 43 {
				t.Errorf("cookie value of %d characters: want at least 256 bits", len(c.Value))
			}
			if s.Scope != "dashboard:a" || s.AppID != "a" || s.Subject != "key_1" || s.Data != demo.Data || len(s.CSRF) < 43 ||
				s.IDHash != websession.IDHash(c.Value) || !s.ExpiresAt.Equal(e.clock.Now().Add(12*time.Hour)) || s.IdleTimeout != time.Hour {
				t.Errorf("Start returned %+v", s)
			}
			got, err := read(m, c)
			if err != nil || got.IDHash != s.IDHash || got.CSRF != s.CSRF || got.Data != demo.Data || got.Subject != "key_1" {
				t.Fatalf("Read = %+v, %v", got, err)
			}
			// The store holds neither the cookie value nor the CSRF token.
			e.store.Close()
			for _, f := range []string{e.path, e.path + "-wal"} {
				raw, _ := os.ReadFile(f)
				for name, secret := range map[string]string{"cookie value": c.Value, "CSRF token": s.CSRF.Reveal(), "data": demo.Data.Reveal()} {
					if bytes.Contains(raw, []byte(secret)) {
						t.Errorf("%s holds the %s", filepath.Base(f), name)
					}
				}
			}
		})
	}
}

func TestReadRefuses(t *testing.T) {
	e := newEnv(t)
	m := e.manager(websession.Config{})
	_, c := start(t, m, demo, nil)
	if _, err := read(m, nil); !errors.Is(err, websession.ErrNoSession) {
		t.Errorf("no cookie: %v, want ErrNoSession", err)
	}
	if _, err := read(m, &http.Cookie{Name: "spotoken_test", Value: ""}); !errors.Is(err, websession.ErrNoSession) {
		t.Errorf("empty cookie: %v, want ErrNoSession", err)
	}
	for name, value := range map[string]string{
		"unknown":        "x" + c.Value[1:],
		"too long":       strings.Repeat(c.Value, 4),
		"not base64 url": "not*base64*url",
	} {
		if _, err := read(m, &http.Cookie{Name: "spotoken_test", Value: value}); !errors.Is(err, websession.ErrEnded) {
			t.Errorf("%s cookie: %v, want ErrEnded", name, err)
		}
	}
	// Another Manager's session (another kind) under this cookie's name.
	bff := e.manager(websession.Config{Kinds: []string{"bff"}})
	if _, err := read(bff, c); !errors.Is(err, websession.ErrEnded) {
		t.Errorf("a dashboard session read as a bff one: %v, want ErrEnded", err)
	}
	if _, err := bff.Start(httptest.NewRecorder(), httptest.NewRequest("POST", "/", nil), demo); err == nil {
		t.Error("a bff Manager started a dashboard session")
	}
	// A Manager of both kinds reads it.
	both := e.manager(websession.Config{Kinds: []string{"admin", "dashboard"}})
	if _, err := read(both, c); err != nil {
		t.Errorf("a Manager of admin and dashboard sessions: %v", err)
	}
}

// TestSessionFixation: a sign-in never keeps the id the browser had, and
// the session it had ends.
func TestSessionFixation(t *testing.T) {
	e := newEnv(t)
	m := e.manager(websession.Config{})
	// A cookie an attacker planted before the login, unknown to the store.
	planted := &http.Cookie{Name: "spotoken_test", Value: "attacker-chosen-value-0123456789abcdefghijklmno"}
	_, c1 := start(t, m, demo, planted)
	if c1.Value == planted.Value {
		t.Fatal("Start kept the planted cookie value")
	}
	if _, err := read(m, planted); !errors.Is(err, websession.ErrEnded) {
		t.Errorf("the planted cookie after the login: %v, want ErrEnded", err)
	}
	// Signing in again replaces a live session.
	_, c2 := start(t, m, demo, c1)
	if c2.Value == c1.Value {
		t.Fatal("a second sign-in kept the session id")
	}
	if _, err := read(m, c1); !errors.Is(err, websession.ErrEnded) {
		t.Errorf("the previous session after a new sign-in: %v, want ErrEnded", err)
	}
	if _, err := read(m, c2); err != nil {
		t.Errorf("the new session: %v", err)
	}
}

func TestTimeouts(t *testing.T) {
	e := newEnv(t)
	m := e.manager(websession.Config{IdleTimeout: time.Hour, MaxAge: 3 * time.Hour})
	_, c := start(t, m, demo, nil)
	// Used every 59 minutes it lives until its absolute end.
	for i := range 3 {
		e.clock.Advance(59 * time.Minute)
		if _, err := read(m, c); err != nil {
			t.Fatalf("use %d, 59 min after the last: %v", i, err)
		}
	}
	e.clock.Advance(3 * time.Minute) // 3h after the sign-in
	if _, err := read(m, c); !errors.Is(err, websession.ErrEnded) {
		t.Errorf("at the absolute end: %v, want ErrEnded", err)
	}
	if _, err := e.store.WebSession(context.Background(), websession.IDHash(c.Value)); !errors.Is(err, spotoken.ErrNotFound) {
		t.Errorf("the ended session is still stored: %v", err)
	}

	_, c = start(t, m, demo, nil)
	e.clock.Advance(time.Hour)
	if _, err := read(m, c); !errors.Is(err, websession.ErrEnded) {
		t.Errorf("an hour unused: %v, want ErrEnded", err)
	}

	// A sign-in may end sooner than MaxAge (a grant expiring), never later.
	soon := e.clock.Now().Add(90 * time.Minute)
	for _, tc := range []struct {
		expires time.Time
		maxAge  int
	}{{soon, 90 * 60}, {e.clock.Now().Add(99 * time.Hour), 3 * 3600}} {
		in := demo
		in.ExpiresAt = tc.expires
		s, c := start(t, m, in, nil)
		if want := e.clock.Now().Add(time.Duration(tc.maxAge) * time.Second); !s.ExpiresAt.Equal(want) || c.MaxAge != tc.maxAge {
			t.Errorf("SignIn.ExpiresAt %v: session ends %v, cookie Max-Age %d; want %v and %d", tc.expires, s.ExpiresAt, c.MaxAge, want, tc.maxAge)
		}
	}
	in := demo
	in.ExpiresAt = e.clock.Now()
	if _, err := m.Start(httptest.NewRecorder(), httptest.NewRequest("POST", "/", nil), in); err == nil {
		t.Error("Start made a session that had ended already")
	}

	// No idle timeout: only the absolute end.
	m = e.manager(websession.Config{IdleTimeout: -1, MaxAge: 3 * time.Hour})
	_, c = start(t, m, demo, nil)
	e.clock.Advance(3*time.Hour - time.Second)
	if _, err := read(m, c); err != nil {
		t.Errorf("no idle timeout, unused until a second before the end: %v", err)
	}
}

// TestTouchEvery: uses are written at most every TouchEvery.
func TestTouchEvery(t *testing.T) {
	e := newEnv(t)
	m := e.manager(websession.Config{})
	s, c := start(t, m, demo, nil)
	stored := func() time.Time {
		got, err := e.store.WebSession(context.Background(), s.IDHash)
		if err != nil {
			t.Fatal(err)
		}
		return got.LastSeenAt
	}
	e.clock.Advance(59 * time.Second)
	if _, err := read(m, c); err != nil {
		t.Fatal(err)
	}
	if !stored().Equal(s.CreatedAt) {
		t.Error("a use within a minute was written")
	}
	e.clock.Advance(time.Second)
	got, err := read(m, c)
	if err != nil {
		t.Fatal(err)
	}
	if now := e.clock.Now(); !stored().Equal(now) || !got.LastSeenAt.Equal(now) {
		t.Errorf("a use a minute on: stored last seen %v, want %v", stored(), now)
	}
}

func TestEnd(t *testing.T) {
	e := newEnv(t)
	m := e.manager(websession.Config{})
	_, c := start(t, m, demo, nil)
	r := httptest.NewRequest(http.MethodPost, "/logout", nil)
	r.AddCookie(c)
	w := httptest.NewRecorder()
	if err := m.End(w, r); err != nil {
		t.Fatal(err)
	}
	if cs := w.Result().Cookies(); len(cs) != 1 || cs[0].Name != "spotoken_test" || cs[0].MaxAge >= 0 || cs[0].Value != "" {
		t.Errorf("End set %v, want the cookie cleared", cs)
	}
	if _, err := read(m, c); !errors.Is(err, websession.ErrEnded) {
		t.Errorf("the signed-out cookie replayed: %v, want ErrEnded", err)
	}
	// Twice, or without a cookie: nothing to do, no error.
	if err := m.End(httptest.NewRecorder(), r); err != nil {
		t.Errorf("End twice: %v", err)
	}
	if err := m.End(httptest.NewRecorder(), httptest.NewRequest("POST", "/", nil)); err != nil {
		t.Errorf("End without a cookie: %v", err)
	}
}

func TestUpdate(t *testing.T) {
	e := newEnv(t)
	m := e.manager(websession.Config{})
	s, c := start(t, m, demo, nil)
	if _, err := m.Update(context.Background(), s, func(s *spotoken.WebSession) error { s.Data = "flash"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := read(m, c); err != nil || got.Data != "flash" {
		t.Errorf("after Update: %+v, %v", got, err)
	}
	e.clock.Advance(time.Hour)
	if _, err := m.Update(context.Background(), s, func(*spotoken.WebSession) error { return nil }); !errors.Is(err, websession.ErrEnded) {
		t.Errorf("Update of an ended session: %v, want ErrEnded", err)
	}
}

// TestCapsPerApp: one app signing in again and again evicts its own
// sessions, its own key's first, never another app's.
func TestCapsPerApp(t *testing.T) {
	e := newEnv(t)
	m := e.manager(websession.Config{Limits: spotoken.WebSessionLimits{PerScope: 5, PerSubject: 3}})
	_, other := start(t, m, websession.SignIn{Kind: "dashboard", AppID: "b", Subject: "key_b"}, nil)
	_, colleague := start(t, m, websession.SignIn{Kind: "dashboard", AppID: "a", Subject: "key_2"}, nil)
	var mine []*http.Cookie
	for range 50 {
		e.clock.Advance(time.Second)
		_, c := start(t, m, demo, nil)
		mine = append(mine, c)
	}
	for i, c := range mine {
		_, err := read(m, c)
		if live := err == nil; live != (i >= 47) {
			t.Errorf("key_1's session %d: %v", i, err)
		}
	}
	if _, err := read(m, other); err != nil {
		t.Errorf("app b's session after app a's 50 sign-ins: %v", err)
	}
	if _, err := read(m, colleague); err != nil {
		t.Errorf("app a's other key's session after key_1's 50 sign-ins: %v", err)
	}
	if !strings.Contains(e.logs.String(), "evicted") {
		t.Error("evictions were not logged")
	}
}

func TestCheckCSRF(t *testing.T) {
	e := newEnv(t)
	m := e.manager(websession.Config{})
	s, _ := start(t, m, demo, nil)
	s2, _ := start(t, m, demo, nil)
	token := s.CSRF.Reveal()
	for name, tc := range map[string]struct {
		s     *spotoken.WebSession
		token string
		want  bool
	}{
		"right":                   {s, token, true},
		"empty":                   {s, "", false},
		"one character off":       {s, token[:len(token)-1] + "x", false},
		"a prefix":                {s, token[:10], false},
		"another session's token": {s, s2.CSRF.Reveal(), false},
		"no session":              {nil, token, false},
		"a session without token": {&spotoken.WebSession{}, "", false},
	} {
		if got := websession.CheckCSRF(tc.s, tc.token); got != tc.want {
			t.Errorf("%s: CheckCSRF = %v, want %v", name, got, tc.want)
		}
	}
}

func TestAllowedOrigin(t *testing.T) {
	const self = "https://tokens.example.com"
	spa := []string{"https://app.example.com"}
	for _, tc := range []struct {
		name    string
		header  map[string]string
		trusted []string
		want    bool
	}{
		{"no header (not a browser)", nil, nil, true},
		{"same-origin form", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": self, "Referer": self + "/x"}, nil, true},
		{"default port written out", map[string]string{"Origin": "https://TOKENS.example.com:443"}, nil, true},
		{"null origin vouched for", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "null"}, nil, true},
		{"null origin alone (sandboxed frame)", map[string]string{"Origin": "null"}, nil, false},
		{"cross-site", map[string]string{"Sec-Fetch-Site": "cross-site"}, nil, false},
		{"same-site sibling", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://evil.example.com"}, nil, false},
		{"user-initiated", map[string]string{"Sec-Fetch-Site": "none"}, nil, false},
		{"unknown Sec-Fetch-Site", map[string]string{"Sec-Fetch-Site": "bogus"}, nil, false},
		{"foreign origin", map[string]string{"Origin": "https://evil.example"}, nil, false},
		{"other scheme", map[string]string{"Origin": "http://tokens.example.com"}, nil, false},
		{"other port", map[string]string{"Origin": "https://tokens.example.com:8443"}, nil, false},
		{"unparsable origin", map[string]string{"Origin": "::"}, nil, false},
		{"foreign referer", map[string]string{"Referer": "https://evil.example/page"}, nil, false},
		{"referer without host", map[string]string{"Referer": "/relative"}, nil, false},
		{"right origin, foreign referer", map[string]string{"Origin": self, "Referer": "https://evil.example/"}, nil, false},
		{"trusted app, same-site", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": spa[0], "Referer": spa[0] + "/"}, spa, true},
		{"trusted app, cross-site", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": spa[0]}, spa, true},
		{"trusted app, Sec-Fetch-Site without Origin", map[string]string{"Sec-Fetch-Site": "cross-site"}, spa, false},
		{"trusted app, null origin", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "null"}, spa, false},
		{"untrusted app", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://other.example.com"}, spa, false},
		{"trusted origin, untrusted referer", map[string]string{"Origin": spa[0], "Referer": "https://evil.example/"}, spa, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, self+"/x", nil)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			if got := websession.AllowedOrigin(r, self, tc.trusted...); got != tc.want {
				t.Errorf("AllowedOrigin = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewConfig(t *testing.T) {
	e := newEnv(t)
	for name, cfg := range map[string]websession.Config{
		"no store":               {Cookie: "c", Kinds: []string{"k"}, PublicURL: "https://x"},
		"no cookie":              {Store: e.store, Kinds: []string{"k"}, PublicURL: "https://x"},
		"no kinds":               {Store: e.store, Cookie: "c", PublicURL: "https://x"},
		"relative URL":           {Store: e.store, Cookie: "c", Kinds: []string{"k"}, PublicURL: "/x"},
		"ftp URL":                {Store: e.store, Cookie: "c", Kinds: []string{"k"}, PublicURL: "ftp://x"},
		"SameSite=None, no TLS":  {Store: e.store, Cookie: "c", Kinds: []string{"k"}, PublicURL: "http://127.0.0.1", SameSite: http.SameSiteNoneMode},
		"no URL at all":          {Store: e.store, Cookie: "c", Kinds: []string{"k"}},
		"URL with no host (bad)": {Store: e.store, Cookie: "c", Kinds: []string{"k"}, PublicURL: "https://"},
	} {
		if _, err := websession.New(cfg); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
	// Plain http beyond loopback works, with a warning in the log.
	e.manager(websession.Config{PublicURL: "http://127.0.0.1:1"})
	e.manager(websession.Config{PublicURL: "http://[::1]:1"})
	if strings.Contains(e.logs.String(), "plain http") {
		t.Errorf("a loopback http public URL was warned about:\n%s", e.logs)
	}
	e.manager(websession.Config{PublicURL: "http://tokens.internal:8080"})
	if !strings.Contains(e.logs.String(), "plain http") {
		t.Error("a non-loopback http public URL was not warned about")
	}
	m := e.manager(websession.Config{SameSite: http.SameSiteLaxMode})
	if _, c := start(t, m, demo, nil); c.SameSite != http.SameSiteLaxMode {
		t.Errorf("SameSite = %v, want Lax as configured", c.SameSite)
	}
}
