package bff_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/bff"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/examples/spa"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

// The harness: the emulator behind a recorder that keeps every token it
// issues and every Web API request it gets; spotoken (SQLite, the refresh
// engine, the server with the BFF mounted, the example SPA at /spa/) on
// 127.0.0.1; and the example SPA again on an origin of its own (another
// port of 127.0.0.1: same site, another origin), as an app would serve it.

const (
	appID    = "demo"
	clientID = "pub-app"
	// csrf is the header every BFF call needs.
	csrfHeader = "X-Spotoken-CSRF"
)

var appScopes = spotoken.Scopes{"user-modify-playback-state", "user-read-currently-playing", "user-read-email", "user-read-private"}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// apiRequest is a Web API request the emulator got.
type apiRequest struct {
	Method, Path string
	Header       http.Header
}

// recorder sits in front of the emulator: it keeps the access and refresh
// tokens /api/token issues, and the Web API requests.
type recorder struct {
	next http.Handler

	mu      sync.Mutex
	access  []string
	refresh []string
	api     []apiRequest
	grants  map[string]int // token requests by grant_type
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/api/token":
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		rc.next.ServeHTTP(rec, r)
		var tok struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
		}
		json.Unmarshal(rec.Body.Bytes(), &tok)
		rc.mu.Lock()
		rc.grants[form.Get("grant_type")]++
		if tok.AccessToken != "" {
			rc.access = append(rc.access, tok.AccessToken)
		}
		if tok.RefreshToken != "" {
			rc.refresh = append(rc.refresh, tok.RefreshToken)
		}
		rc.mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	case strings.HasPrefix(r.URL.Path, "/v1/"):
		rc.mu.Lock()
		rc.api = append(rc.api, apiRequest{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()})
		rc.mu.Unlock()
		rc.next.ServeHTTP(w, r)
	default:
		rc.next.ServeHTTP(w, r)
	}
}

// apiCount is how many Web API requests the emulator got.
func (rc *recorder) apiCount() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.api)
}

// apiRequests returns the Web API requests from the n-th on.
func (rc *recorder) apiRequests(from int) []apiRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]apiRequest(nil), rc.api[from:]...)
}

// refreshes is how many refresh_token grants the emulator got.
func (rc *recorder) refreshes() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.grants["refresh_token"]
}

// tokens returns every access and refresh token issued so far.
func (rc *recorder) tokens() (access, refresh []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.access...), append([]string(nil), rc.refresh...)
}

type harness struct {
	t      *testing.T
	emu    *emulator.Emulator
	emuSrv *httptest.Server
	rec    *recorder
	store  *sqlite.DB
	dbPath string
	engine *refresh.Engine
	srv    *server.Server
	bff    *bff.Handler
	ts     *httptest.Server // spotoken
	spa    *httptest.Server // the example SPA on an origin of its own
	logs   *syncBuffer
	apiKey string // the demo app's API key, to look at its connections as its service would
}

type harnessOptions struct {
	autoApprove string // "" shows the emulator's consent page
	browserApp  func(*spotoken.BrowserApp)
	bff         func(*bff.Config)
}

func newHarness(t *testing.T, opts harnessOptions) *harness {
	t.Helper()
	h := &harness{t: t, logs: &syncBuffer{}}
	emu, err := emulator.New(emulator.Config{
		Clients:     []emulator.Client{{ID: clientID, RedirectURIs: []string{"http://127.0.0.1/callback"}}},
		AutoApprove: opts.autoApprove,
		Now:         func() time.Time { return time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	h.emu = emu
	h.rec = &recorder{next: emu, grants: map[string]int{}}
	h.emuSrv = httptest.NewServer(h.rec)
	t.Cleanup(h.emuSrv.Close)

	ring, err := seal.GenerateKeyFile(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	h.dbPath = filepath.Join(t.TempDir(), "spotoken.db")
	h.store, err = sqlite.Open(context.Background(), sqlite.Config{Path: h.dbPath, Keys: ring, Now: emu.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.store.Close() })
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.engine, err = refresh.New(refresh.Config{Store: h.store, Now: emu.Now, Logger: log,
		Refresher: &refresh.SpotifyRefresher{TokenURL: h.emuSrv.URL + "/api/token", Now: emu.Now}})
	if err != nil {
		t.Fatal(err)
	}

	var handler http.Handler
	h.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(h.ts.Close)
	h.srv, err = server.New(server.Config{Store: h.store, Tokens: h.engine, PublicURL: h.ts.URL,
		AccountsURL: h.emuSrv.URL, APIURL: h.emuSrv.URL, Now: emu.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	bcfg := bff.Config{Store: h.store, Server: h.srv, Tokens: h.engine, PublicURL: h.ts.URL, Now: emu.Now, Logger: log}
	if opts.bff != nil {
		opts.bff(&bcfg)
	}
	h.bff, err = bff.New(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.HandleLogins(bff.LoginKind, h.bff)
	h.srv.MountPublic(h.bff.Mount)
	h.srv.MountPublic(func(m *http.ServeMux) { m.Handle("GET /spa/", spa.Handler("/spa/")) })
	handler = h.srv

	// The example SPA on an origin of its own, told where spotoken is.
	index, err := spa.Files.ReadFile("index.html")
	if err != nil {
		t.Fatal(err)
	}
	index = bytes.Replace(index, []byte(`<meta name="spotoken-url" content="">`), []byte(`<meta name="spotoken-url" content="`+h.ts.URL+`">`), 1)
	files := http.FileServerFS(spa.Files)
	h.spa = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" || r.URL.Path == "/index.html" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(index)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(h.spa.Close)

	ctx := context.Background()
	app := &spotoken.App{ID: appID, ClientID: clientID, RedirectURIs: []string{h.srv.CallbackURL()}, DefaultScopes: appScopes}
	if err := h.store.CreateApp(ctx, app); err != nil {
		t.Fatal(err)
	}
	b := &spotoken.BrowserApp{AppID: appID, Origins: []string{h.spa.URL, h.ts.URL}}
	if opts.browserApp != nil {
		opts.browserApp(b)
	}
	if err := h.store.PutBrowserApp(ctx, b); err != nil {
		t.Fatal(err)
	}
	key, rec := spotoken.NewAPIKey(appID, "test", emu.Now())
	if err := h.store.CreateAPIKey(ctx, rec); err != nil {
		t.Fatal(err)
	}
	h.apiKey = key.Reveal()
	return h
}

// browser is a user's browser for the tests that need no Chromium: it
// follows redirects and keeps cookies. Every request it makes carries the
// Origin and Sec-Fetch-Site a page of origin would send (none when origin
// is empty).
type browser struct {
	h      *harness
	c      *http.Client
	origin string
}

func (h *harness) newBrowser(origin string) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return &browser{h: h, c: &http.Client{Jar: jar}, origin: origin}
}

// login signs in through the BFF, with the emulator approving as its
// auto-approve user, and returns the last response (the SPA's page).
func (b *browser) login() *http.Response {
	b.h.t.Helper()
	resp, err := b.c.Get(b.h.ts.URL + "/bff/" + appID + "/login?return_to=" + url.QueryEscape(b.h.spa.URL+"/"))
	if err != nil {
		b.h.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Host != strings.TrimPrefix(b.h.spa.URL, "http://") {
		b.h.t.Fatalf("the sign-in ended at %s, not the SPA", resp.Request.URL)
	}
	return resp
}

// cookie returns the BFF session cookie the browser holds, "" if none.
func (b *browser) cookie() string {
	u, _ := url.Parse(b.h.ts.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "Http-spotoken_bff_"+appID {
			return c.Value
		}
	}
	return ""
}

// setCookie puts value in the browser as the BFF session cookie.
func (b *browser) setCookie(value string) {
	u, _ := url.Parse(b.h.ts.URL)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "Http-spotoken_bff_" + appID, Value: value, Path: "/"}})
}

// response is an answer, read.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("answer %d is not JSON: %v\n%s", r.Status, err, r.Body)
	}
	return m
}

// call sends a request to the BFF as client.js would (the CSRF header), or
// without it when csrf is false.
func (b *browser) call(method, path string, csrf bool, body string, headers ...string) response {
	b.h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, b.h.ts.URL+path, rd)
	if err != nil {
		b.h.t.Fatal(err)
	}
	if csrf {
		req.Header.Set(csrfHeader, "1")
	}
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
		site := "same-site"
		if b.origin == b.h.ts.URL {
			site = "same-origin"
		}
		req.Header.Set("Sec-Fetch-Site", site)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		b.h.t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: out}
}

// connection reads the demo app's connection id through the API, as the
// app's service would.
func (h *harness) connection(id string) response {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.ts.URL+"/v1/connections/"+url.PathEscape(id), nil)
	req.Header.Set("Authorization", "Bearer "+h.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}
