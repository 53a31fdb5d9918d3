package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/audit"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

var ctx = context.Background()

// world is a broker as spotoken serve builds it, audit trail included, over
// SQLite, with the emulator as Spotify. The broker's clock is the
// emulator's virtual clock, so advancing it moves both; the trail is driven
// with RunOnce, the scheduler with RunOnce, never by sleeping.
type world struct {
	t      testing.TB
	emu    *emulator.Emulator
	emuSrv *httptest.Server
	ts     *httptest.Server
	store  *sqlite.DB
	engine *refresh.Engine
	trail  *audit.Trail
	sched  *refresh.Scheduler
	fp     *audit.Fingerprinter
	dbPath string
	logs   *syncBuffer
	client *http.Client
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

const clientID = "spotoken-demo"

func newWorld(t testing.TB, rotation emulator.Rotation, det audit.Detectors, opts ...func(*audit.Config)) *world {
	t.Helper()
	w := &world{t: t, logs: &syncBuffer{}}
	var handler http.Handler
	w.ts = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { handler.ServeHTTP(rw, r) }))
	t.Cleanup(w.ts.Close)
	emu, err := emulator.New(emulator.Config{
		Clients:  []emulator.Client{{ID: clientID, RedirectURIs: []string{w.ts.URL + "/callback"}}},
		Rotation: rotation, AutoApprove: "user-0",
		Now: func() time.Time { return time.Date(2026, 7, 6, 0, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	w.emu = emu
	w.emuSrv = httptest.NewServer(emu)
	t.Cleanup(w.emuSrv.Close)

	keys, err := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{7, 7, 7}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	w.dbPath = filepath.Join(memDir(t), "spotoken.db")
	w.store, err = sqlite.Open(ctx, sqlite.Config{Path: w.dbPath, Keys: keys, Now: emu.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.store.Close() })
	log := slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fk, _ := keys.DeriveKey(1, "test fingerprints")
	w.fp = audit.NewFingerprinter(map[uint32][]byte{1: fk}, 1)
	cfg := audit.Config{Store: w.store, Now: emu.Now, Logger: log, Fingerprints: w.fp, Detectors: det}
	for _, o := range opts {
		o(&cfg)
	}
	w.trail, err = audit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.client = w.emuSrv.Client()
	w.engine, err = refresh.New(refresh.Config{
		Store:     w.store,
		Refresher: &refresh.SpotifyRefresher{TokenURL: w.emuSrv.URL + "/api/token", HTTPClient: w.client, Now: emu.Now},
		Now:       emu.Now, Logger: log, CacheTTL: 2 * time.Second, UpstreamRate: rate.Inf,
		Observe: func(o refresh.Outcome) {
			if o.Rotated {
				w.trail.Rotated(o.Key, o.At, o.ConsentedAt)
			} else {
				w.trail.NeedsReauth(o.Key, o.NeedsReauth, o.At, o.ConsentedAt, o.GrantExpiresAt)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every connection, used or not: the scenarios let hours pass without
	// vending, and count on the scheduler's refreshes to meet Spotify.
	w.sched = &refresh.Scheduler{Engine: w.engine, Store: w.store, Now: emu.Now, Window: 5 * time.Minute, Batch: 500, Concurrency: 4,
		ActiveWindow: -1}
	srv, err := server.New(server.Config{
		Store: w.store, Tokens: w.engine, PublicURL: w.ts.URL, AccountsURL: w.emuSrv.URL, APIURL: w.emuSrv.URL,
		HTTPClient: w.client, Now: emu.Now, Logger: log, Audit: w.trail, AuditStats: w.trail.Stats,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	})
	if err != nil {
		t.Fatal(err)
	}
	handler = srv
	return w
}

// addApp registers an app with an API key and returns the key.
func (w *world) addApp(id string) (key string, keyID string) {
	w.t.Helper()
	if err := w.store.CreateApp(ctx, &spotoken.App{ID: id, ClientID: clientID, RedirectURIs: []string{w.ts.URL + "/callback"},
		DefaultScopes: spotoken.Scopes{"user-read-private"}}); err != nil {
		w.t.Fatal(err)
	}
	return w.addKey(id, "svc")
}

func (w *world) addKey(app, name string) (string, string) {
	w.t.Helper()
	k, rec := spotoken.NewAPIKey(app, name, w.emu.Now())
	if err := w.store.CreateAPIKey(ctx, rec); err != nil {
		w.t.Fatal(err)
	}
	return k.Reveal(), rec.ID
}

// resp is an answer of the broker.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

// call sends a request to the broker as a service at ip (a trusted proxy,
// 127.0.0.1, forwards it with X-Forwarded-For).
func (w *world) call(method, path, key, ip string, body string) resp {
	w.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, w.ts.URL+path, rd)
	if err != nil {
		w.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if ip != "" {
		req.Header.Set("X-Forwarded-For", ip)
	}
	req.Header.Set("User-Agent", "svc-test/1.0")
	r, err := w.ts.Client().Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{Status: r.StatusCode, Header: r.Header, Body: b}
}

// vend gets connection id's token as a service at ip.
func (w *world) vend(key, id, ip string) string {
	w.t.Helper()
	r := w.call("POST", "/v1/connections/"+id+"/token", key, ip, "")
	if r.Status != 200 {
		w.t.Fatalf("vend %s from %s: %d %s", id, ip, r.Status, r.Body)
	}
	var tok server.TokenResponse
	if err := json.Unmarshal(r.Body, &tok); err != nil {
		w.t.Fatal(err)
	}
	return tok.AccessToken
}

// connect connects id for the app of key as Spotify user user, through
// the connect flow, and returns the connect link.
func (w *world) connect(key, id, user string) string {
	w.t.Helper()
	w.emu.SetAutoApprove(user)
	r := w.call("POST", "/v1/connect-sessions", key, "", `{"connection_id":"`+id+`"}`)
	var sess server.ConnectSession
	if r.Status != http.StatusCreated || json.Unmarshal(r.Body, &sess) != nil {
		w.t.Fatalf("connect session for %s: %d %s", id, r.Status, r.Body)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	res, err := browser.Get(sess.URL)
	if err != nil {
		w.t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !bytes.Contains(page, []byte(`data-outcome="connected"`)) {
		w.t.Fatalf("connect %s: %d\n%s", id, res.StatusCode, page)
	}
	return sess.URL
}

// advance moves the clock, refreshes what is due and flushes the trail.
func (w *world) advance(d time.Duration) {
	w.t.Helper()
	w.emu.Advance(d)
	if _, err := w.sched.RunOnce(ctx); err != nil {
		w.t.Fatal(err)
	}
	w.flush()
}

func (w *world) flush() {
	w.t.Helper()
	if err := w.trail.Flush(ctx); err != nil {
		w.t.Fatal(err)
	}
}

// anomalies returns the detectors' firings so far, by detector.
func (w *world) anomalies() map[string]int64 {
	out := map[string]int64{}
	for _, a := range w.trail.Stats().Anomalies {
		out[a.Detector] += a.Count
	}
	return out
}

// alertEvents returns the alert events in the outbox, by type.
func (w *world) alertEvents() map[spotoken.EventType][]*spotoken.Event {
	w.t.Helper()
	evs, err := w.store.PendingEvents(ctx, w.emu.Now().Add(time.Hour), 1<<20)
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[spotoken.EventType][]*spotoken.Event{}
	for _, e := range evs {
		if strings.HasPrefix(string(e.Type), "alert.") {
			out[e.Type] = append(out[e.Type], e)
		}
	}
	return out
}

func (w *world) wantAnomalies(want map[string]int64) {
	w.t.Helper()
	got := w.anomalies()
	for _, d := range server.AuditDetectors {
		if got[d] != want[d] {
			w.t.Errorf("detector %s fired %d times, want %d (all: %v)", d, got[d], want[d], got)
		}
	}
	events := w.alertEvents()
	n := 0
	for _, evs := range events {
		n += len(evs)
	}
	wantEvents := int64(0)
	for d, c := range want {
		if d != audit.DetectAuthLimited {
			wantEvents += c
		}
	}
	if int64(n) != wantEvents {
		w.t.Errorf("%d alert events in the outbox, want %d: %v", n, wantEvents, events)
	}
}

func ipN(prefix string, n int) string { return fmt.Sprintf("%s.%d", prefix, n) }

type contextT = context.Context

func contextWithCancel() (context.Context, context.CancelFunc) { return context.WithCancel(ctx) }

// memDir is a temporary directory in memory (/dev/shm) when the machine has
// one, else t.TempDir: the scenarios commit tens of thousands of times, and
// an fsync per commit on a disk shared with other builds would make them
// take minutes. SQLite is the same; only its file lives in memory.
func memDir(t testing.TB) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "spotoken-audit-test-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}
