package main

// Issue 13, finding 6, from outside: one app's API key signing in to the
// dashboard again and again must not sign anyone of another app out. The
// real binary serves; apps and keys are made with the CLI on its database;
// the sign-ins come over HTTP as a browser's would.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dashE2E is a running 'spotoken serve --emulator'.
type dashE2E struct {
	t       *testing.T
	db      string
	env     []string
	base    string
	demoKey string
	client  *http.Client
}

func startDashE2E(t *testing.T, extra ...string) *dashE2E {
	t.Helper()
	dir := t.TempDir()
	e := &dashE2E{t: t, db: filepath.Join(dir, "spotoken.db"), env: []string{"XDG_DATA_HOME=" + dir}}
	p := startSpotoken(t, e.env, append([]string{"serve", "--emulator", "--json", "--addr", "127.0.0.1:0", "--db", e.db,
		"--no-scheduler"}, extra...)...)
	var info struct {
		URL    string `json:"url"`
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal([]byte(p.URL), &info); err != nil || info.APIKey == "" {
		t.Fatalf("serve --json printed %q: %v", p.URL, err)
	}
	e.base, e.demoKey = info.URL, info.APIKey
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	e.client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(tr.CloseIdleConnections)
	return e
}

// cli runs an admin command on the server's database and returns its
// standard output, then its standard error; it must succeed.
func (e *dashE2E) cli(args ...string) (string, string) {
	e.t.Helper()
	stdout, stderr, code := runSpotoken(e.t, e.env, "", append(args, "--db", e.db)...)
	if code != 0 {
		e.t.Fatalf("spotoken %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout, stderr
}

// newApp registers an app and returns an API key of it.
func (e *dashE2E) newApp(name string) string {
	e.t.Helper()
	e.cli("apps", "create", "--name", name, "--client-id", "spotoken-demo", "--redirect-uri", e.base+"/callback")
	return e.newKey(name)
}

// newKey makes another API key of app.
func (e *dashE2E) newKey(app string) string {
	e.t.Helper()
	out, _ := e.cli("apikeys", "create", "--app", app)
	key, _, _ := strings.Cut(out, "\n")
	if !strings.HasPrefix(key, "sk_") {
		e.t.Fatalf("apikeys create printed %q", out)
	}
	return key
}

// login signs in to the dashboard with key, as a browser with no cookie
// would, and returns the session cookie's value.
func (e *dashE2E) login(key string) (string, error) {
	resp, err := e.client.PostForm(e.base+"/dashboard/login", url.Values{"api_key": {key}})
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "spotoken_dashboard" && resp.StatusCode == http.StatusSeeOther {
			return c.Value, nil
		}
	}
	return "", fmt.Errorf("login: %d without a session cookie", resp.StatusCode)
}

var dashAppRE = regexp.MustCompile(`<strong id="app">([^<]+)</strong>`)

// app returns the app whose overview the cookie shows, "" when the
// dashboard sends it to sign in.
func (e *dashE2E) app(cookie string) string {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.base+"/", nil)
	req.AddCookie(&http.Cookie{Name: "spotoken_dashboard", Value: cookie})
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	m := dashAppRE.FindSubmatch(body)
	if m == nil {
		e.t.Fatalf("GET /: 200 without the app's name:\n%s", body)
	}
	return string(m[1])
}

// flood signs in n times with the keys, in turn, from workers at once,
// and returns the cookies in the order the sign-ins completed.
func (e *dashE2E) flood(n int, keys ...string) []string {
	e.t.Helper()
	cookies := make([]string, 0, n)
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				c, err := e.login(keys[int(i)%len(keys)])
				if err != nil {
					e.t.Errorf("sign-in %d: %v", i, err)
					return
				}
				mu.Lock()
				cookies = append(cookies, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(cookies) != n {
		e.t.Fatalf("%d of %d sign-ins succeeded", len(cookies), n)
	}
	return cookies
}

// sessions counts the stored dashboard sessions by scope, reading the
// database file beside the running server.
func (e *dashE2E) sessions() map[string]int {
	e.t.Helper()
	db, err := sql.Open("sqlite", "file:"+e.db+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(context.Background(), `SELECT scope, count(*) FROM web_sessions GROUP BY scope`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var scope string
		var n int
		if err := rows.Scan(&scope, &n); err != nil {
			e.t.Fatal(err)
		}
		out[scope] = n
	}
	return out
}

// TestBinaryDashboardSessionFlood is the acceptance of issue 13 finding 6
// at the default caps: 10,001 dashboard sign-ins with one app's key. Each
// is a new session; the key's sessions past its cap (100) end, its latest
// live on, and another app's session, and another key's of the same app,
// survive.
func TestBinaryDashboardSessionFlood(t *testing.T) {
	e := startDashE2E(t)
	otherCookie, err := e.login(e.newApp("other"))
	if err != nil {
		t.Fatal(err)
	}
	colleague, err := e.login(e.newKey("demo"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cookies := e.flood(10001, e.demoKey)
	t.Logf("10,001 sign-ins in %v", time.Since(start).Round(time.Millisecond))

	if got := e.app(otherCookie); got != "other" {
		t.Errorf("the other app's session after 10,001 sign-ins with demo's key: shows %q, want other", got)
	}
	if got := e.app(colleague); got != "demo" {
		t.Errorf("demo's other key's session: shows %q, want demo", got)
	}
	if got := e.app(cookies[len(cookies)-1]); got != "demo" {
		t.Errorf("the last sign-in: shows %q, want demo", got)
	}
	if got := e.app(cookies[0]); got != "" {
		t.Errorf("the first of 10,001 sign-ins is still signed in (%q): nothing was evicted", got)
	}
	if got := e.sessions(); got["dashboard:demo"] != 101 || got["dashboard:other"] != 1 {
		t.Errorf("stored sessions by scope: %v; want the key's 100 and the colleague's for demo, 1 for other", got)
	}
}

// TestBinaryDashboardSessionCapPerApp lowers the per-app cap (a hidden
// flag) so that sign-ins with many of one app's keys reach it: that app
// keeps exactly the cap, its soonest-ending sessions go, and the other
// app's session survives.
func TestBinaryDashboardSessionCapPerApp(t *testing.T) {
	e := startDashE2E(t, "--dashboard-sessions-per-app", "20")
	otherCookie, err := e.login(e.newApp("other"))
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{e.demoKey}
	for range 4 {
		keys = append(keys, e.newKey("demo"))
	}
	first, err := e.login(keys[1])
	if err != nil {
		t.Fatal(err)
	}
	cookies := e.flood(201, keys...)
	if got := e.app(otherCookie); got != "other" {
		t.Errorf("the other app's session after 201 of demo's sign-ins: shows %q, want other", got)
	}
	if got := e.app(first); got != "" {
		t.Errorf("demo's oldest session is still signed in (%q)", got)
	}
	if got := e.app(cookies[len(cookies)-1]); got != "demo" {
		t.Errorf("the last sign-in: shows %q, want demo", got)
	}
	if got := e.sessions(); got["dashboard:demo"] != 20 || got["dashboard:other"] != 1 {
		t.Errorf("stored sessions by scope: %v; want 20 for demo (its cap), 1 for other", got)
	}
}
