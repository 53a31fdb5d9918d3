package server_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

// hookClock is a settable clock shared by the store, the deliverer and the
// receivers.
type hookClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *hookClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *hookClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// hookEnv is a SQLite store in a temp file, on a fake clock, with a log
// buffer and metrics for the deliverers it makes.
type hookEnv struct {
	t       *testing.T
	clock   *hookClock
	ring    *seal.KeyRing
	path    string
	store   *sqlite.DB
	logs    *syncBuffer
	metrics *server.Metrics
}

var hookStart = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

func newHookEnv(t *testing.T) *hookEnv {
	t.Helper()
	e := &hookEnv{t: t, clock: &hookClock{t: hookStart}, logs: &syncBuffer{}, metrics: server.NewMetrics()}
	var err error
	if e.ring, err = seal.GenerateKeyFile(filepath.Join(t.TempDir(), "keys")); err != nil {
		t.Fatal(err)
	}
	e.path = filepath.Join(t.TempDir(), "spotoken.db")
	e.open()
	t.Cleanup(func() { e.store.Close() })
	return e
}

func (e *hookEnv) open() {
	e.t.Helper()
	var err error
	e.store, err = sqlite.Open(context.Background(), sqlite.Config{Path: e.path, Keys: e.ring, Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
}

// reopen closes the store and opens the same database again, as a restart does.
func (e *hookEnv) reopen() {
	e.t.Helper()
	if err := e.store.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
}

// app creates an app delivering to url (none if empty) with a new webhook
// secret (none if !withSecret), and returns the secret.
func (e *hookEnv) app(id, url string, withSecret bool) spotoken.Secret {
	e.t.Helper()
	a := &spotoken.App{ID: id, ClientID: "client-" + id, RedirectURIs: []string{"http://127.0.0.1/callback"}, WebhookURL: url}
	if withSecret {
		a.WebhookSecret = spotoken.NewWebhookSecret()
	}
	if err := e.store.CreateApp(context.Background(), a); err != nil {
		e.t.Fatal(err)
	}
	return a.WebhookSecret
}

// emit appends one event per connection id of app and returns their ids.
func (e *hookEnv) emit(app string, connections ...string) []int64 {
	e.t.Helper()
	before := map[int64]bool{}
	for _, ev := range e.pending() {
		before[ev.ID] = true
	}
	var evs []spotoken.Event
	for _, c := range connections {
		evs = append(evs, spotoken.NewEvent(spotoken.EventConnectionRefreshed, spotoken.ConnectionKey{AppID: app, ID: c}, e.clock.Now(),
			map[string]any{"expires_at": e.clock.Now().Add(time.Hour)}))
	}
	if err := e.store.AppendEvents(context.Background(), evs...); err != nil {
		e.t.Fatal(err)
	}
	var ids []int64
	for _, ev := range e.pending() {
		if !before[ev.ID] {
			ids = append(ids, ev.ID)
		}
	}
	return ids
}

// pending returns every undelivered event, given up or not, by id.
func (e *hookEnv) pending() []*spotoken.Event {
	e.t.Helper()
	evs, err := e.store.PendingEvents(context.Background(), time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), 10000)
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

func (e *hookEnv) event(id int64) *spotoken.Event {
	e.t.Helper()
	for _, ev := range e.pending() {
		if ev.ID == id {
			return ev
		}
	}
	e.t.Fatalf("event %d is not pending", id)
	return nil
}

// webhooks returns a deliverer on the env's store and clock, with no jitter
// (every backoff is its ceiling).
func (e *hookEnv) webhooks(mod func(*server.Webhooks)) *server.Webhooks {
	w := &server.Webhooks{
		Store: e.store, Now: e.clock.Now, Metrics: e.metrics, Jitter: func() float64 { return 1 },
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(w)
	}
	return w
}

func (e *hookEnv) pass(w *server.Webhooks, want server.WebhookPass) {
	e.t.Helper()
	got, err := w.RunOnce(context.Background())
	if err != nil {
		e.t.Fatalf("RunOnce: %v", err)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		e.t.Fatalf("RunOnce (-got +want):\n%s", diff)
	}
}

// metric returns the webhook delivery counter for outcome, 0 if absent.
func (e *hookEnv) metric(outcome string) int {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	prefix := `spotoken_webhook_deliveries_total{outcome="` + outcome + `"} `
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// hookDelivery is a request a receiver got.
type hookDelivery struct {
	ID, Timestamp, Signature, UserAgent, ContentType string
	Body                                             string
	Verified                                         error
	Status                                           int // what the receiver answered; 0 if it gave up waiting
}

// hookReceiver is an app's webhook endpoint: it verifies every delivery
// with server.VerifyWebhook, records it, and answers respond's status.
type hookReceiver struct {
	t     *testing.T
	srv   *httptest.Server
	clock *hookClock

	mu       sync.Mutex
	secret   spotoken.Secret
	got      []hookDelivery
	respond  func(n int, w http.ResponseWriter, r *http.Request) int
	inFlight int
	maxIn    int
	stray    int // requests to other paths than /hook
}

func newHookReceiver(t *testing.T, clock *hookClock) *hookReceiver {
	rc := &hookReceiver{t: t, clock: clock}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *hookReceiver) URL() string { return rc.srv.URL + "/hook" }

func (rc *hookReceiver) setSecret(s spotoken.Secret) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secret = s
}

func (rc *hookReceiver) setRespond(f func(n int, w http.ResponseWriter, r *http.Request) int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.respond = f
}

func (rc *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	if r.URL.Path != "/hook" {
		rc.stray++
		rc.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	rc.inFlight++
	rc.maxIn = max(rc.maxIn, rc.inFlight)
	n := len(rc.got)
	rc.got = append(rc.got, hookDelivery{
		ID: r.Header.Get("webhook-id"), Timestamp: r.Header.Get("webhook-timestamp"), Signature: r.Header.Get("webhook-signature"),
		UserAgent: r.UserAgent(), ContentType: r.Header.Get("Content-Type"), Body: string(body),
		Verified: server.VerifyWebhook(rc.secret, r.Header, body, rc.clock.Now(), 0),
	})
	respond := rc.respond
	rc.mu.Unlock()
	status := http.StatusNoContent
	if respond != nil {
		status = respond(n, w, r)
	}
	if status != 0 {
		w.WriteHeader(status)
	}
	rc.mu.Lock()
	rc.got[n].Status = status
	rc.inFlight--
	rc.mu.Unlock()
}

func (rc *hookReceiver) deliveries() []hookDelivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hookDelivery(nil), rc.got...)
}

// maxConcurrent is the most requests the receiver served at once.
func (rc *hookReceiver) maxConcurrent() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.maxIn
}

// ids lists the webhook-ids received, in order.
func (rc *hookReceiver) ids() []string {
	var ids []string
	for _, d := range rc.deliveries() {
		ids = append(ids, d.ID)
	}
	return ids
}

func evtIDs(ids ...int64) []string {
	var out []string
	for _, id := range ids {
		out = append(out, fmt.Sprintf("evt_%d", id))
	}
	return out
}

// statuses answers the i-th delivery with codes[i], and 204 after them.
func statuses(codes ...int) func(int, http.ResponseWriter, *http.Request) int {
	return func(n int, _ http.ResponseWriter, _ *http.Request) int {
		if n < len(codes) {
			return codes[n]
		}
		return http.StatusNoContent
	}
}

// TestWebhookSignTestVector checks SignWebhook against the test vector of
// the Standard Webhooks reference implementation (TestWebhookSign in
// github.com/standard-webhooks/standard-webhooks, libraries/go/webhook_test.go),
// and against an HMAC computed here from the spec's description.
func TestWebhookSignTestVector(t *testing.T) {
	const (
		secret = spotoken.Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
		msgID  = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		want   = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	ts := time.Unix(1614265330, 0)
	body := []byte(`{"test": 2432232314}`)
	got, err := server.SignWebhook(secret, msgID, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("SignWebhook = %q, want %q", got, want)
	}

	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret.Reveal(), "whsec_"))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msgID + ".1614265330." + string(body)))
	if independent := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); independent != want {
		t.Errorf("independent HMAC = %q, want %q", independent, want)
	}

	h := http.Header{}
	h.Set("webhook-id", msgID)
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", want)
	if err := server.VerifyWebhook(secret, h, body, ts.Add(time.Minute), 0); err != nil {
		t.Errorf("VerifyWebhook of the test vector: %v", err)
	}
}

func TestVerifyWebhook(t *testing.T) {
	secret := spotoken.NewWebhookSecret()
	other := spotoken.NewWebhookSecret()
	now := hookStart
	body := []byte(`{"type":"connection.created","timestamp":"2026-07-01T12:00:00Z","data":{"connection_id":"u1"}}`)
	headers := func(id string, at time.Time, s spotoken.Secret, b []byte) http.Header {
		sig, err := server.SignWebhook(s, id, at, b)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
		h.Set("webhook-signature", sig)
		return h
	}
	valid := headers("evt_1", now, secret, body)
	with := func(key, value string) http.Header {
		h := valid.Clone()
		if value == "" {
			h.Del(key)
		} else {
			h.Set(key, value)
		}
		return h
	}
	tests := []struct {
		name      string
		header    http.Header
		body      []byte
		now       time.Time
		tolerance time.Duration
		want      error
	}{
		{"valid", valid, body, now, 0, nil},
		{"valid a little late", valid, body, now.Add(4 * time.Minute), 0, nil},
		{"several signatures, one valid", with("webhook-signature",
			"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,"+strings.TrimPrefix(valid.Get("webhook-signature"), "v1,")+" "+valid.Get("webhook-signature")),
			body, now, 0, nil},
		{"right MAC under another version", with("webhook-signature", "v1a,"+strings.TrimPrefix(valid.Get("webhook-signature"), "v1,")), body, now, 0, server.ErrWebhookSignature},
		{"tampered body", valid, []byte(strings.Replace(string(body), "u1", "u2", 1)), now, 0, server.ErrWebhookSignature},
		{"another secret", headers("evt_1", now, other, body), body, now, 0, server.ErrWebhookSignature},
		{"id changed", with("webhook-id", "evt_2"), body, now, 0, server.ErrWebhookSignature},
		{"timestamp changed", with("webhook-timestamp", strconv.FormatInt(now.Unix()+1, 10)), body, now, 0, server.ErrWebhookSignature},
		{"garbage signature", with("webhook-signature", "v1,!!!"), body, now, 0, server.ErrWebhookSignature},
		{"no signature", with("webhook-signature", ""), body, now, 0, server.ErrWebhookSignature},
		{"no id", with("webhook-id", ""), body, now, 0, server.ErrWebhookSignature},
		{"no timestamp", with("webhook-timestamp", ""), body, now, 0, server.ErrWebhookTimestamp},
		{"malformed timestamp", with("webhook-timestamp", "yesterday"), body, now, 0, server.ErrWebhookTimestamp},
		{"too old", valid, body, now.Add(6 * time.Minute), 0, server.ErrWebhookTimestamp},
		{"from the future", valid, body, now.Add(-6 * time.Minute), 0, server.ErrWebhookTimestamp},
		{"a tighter tolerance", valid, body, now.Add(time.Minute), 30 * time.Second, server.ErrWebhookTimestamp},
		{"no timestamp check", valid, body, now.Add(48 * time.Hour), -1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := server.VerifyWebhook(secret, tt.header, tt.body, tt.now, tt.tolerance)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("VerifyWebhook = %v, want %v", err, tt.want)
			}
		})
	}
	if err := server.VerifyWebhook("not-a-secret", valid, body, now, 0); spotoken.ErrorCode(err) != spotoken.EInvalid {
		t.Errorf("VerifyWebhook with a malformed secret = %v, want an invalid_request error", err)
	}
	if _, err := server.SignWebhook("whsec_c2hvcnQ=", "evt_1", now, body); spotoken.ErrorCode(err) != spotoken.EInvalid {
		t.Errorf("SignWebhook with a malformed secret = %v, want an invalid_request error", err)
	}
}

func TestWebhookDelivery(t *testing.T) {
	e := newHookEnv(t)
	ra, rb := newHookReceiver(t, e.clock), newHookReceiver(t, e.clock)
	secret := e.app("a", ra.URL(), true)
	ra.setSecret(secret)
	rb.setSecret(e.app("b", rb.URL(), true))
	// b's receiver answers with a large body, which is read only in part.
	rb.setRespond(func(_ int, w http.ResponseWriter, _ *http.Request) int {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(strings.Repeat("x", 1<<20)))
		return 0
	})

	ctx := context.Background()
	created := spotoken.NewEvent(spotoken.EventConnectionCreated, spotoken.ConnectionKey{AppID: "a", ID: "user-1"}, e.clock.Now(),
		map[string]any{"spotify_user_id": "alice", "scopes": spotoken.Scopes{"user-read-email"}, "grant_expires_at": hookStart.Add(4380 * time.Hour)})
	if err := e.store.AppendEvents(ctx, created); err != nil {
		t.Fatal(err)
	}
	a1 := e.pending()[0].ID
	b := e.emit("b", "x", "y")
	e.clock.Advance(time.Second)
	a2 := e.emit("a", "user-2")
	e.clock.Advance(2 * time.Second)

	w := e.webhooks(nil)
	e.pass(w, server.WebhookPass{Delivered: 4})
	if diff := cmp.Diff(ra.ids(), evtIDs(a1, a2[0])); diff != "" {
		t.Errorf("a's deliveries (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(rb.ids(), evtIDs(b...)); diff != "" {
		t.Errorf("b's deliveries (-got +want):\n%s", diff)
	}
	got := ra.deliveries()[0]
	want := hookDelivery{
		ID: fmt.Sprintf("evt_%d", a1), Timestamp: strconv.FormatInt(e.clock.Now().Unix(), 10), Signature: got.Signature,
		UserAgent: "spotoken-webhooks/1", ContentType: "application/json",
		Body: `{"type":"connection.created","timestamp":"2026-07-01T12:00:00Z","data":` +
			`{"connection_id":"user-1","grant_expires_at":"2026-12-31T00:00:00Z","scopes":["user-read-email"],"spotify_user_id":"alice"}}`,
		Status: http.StatusNoContent,
	}
	if diff := cmp.Diff(got, want, cmp.Comparer(func(x, y error) bool { return x == y })); diff != "" {
		t.Errorf("first delivery (-got +want):\n%s", diff)
	}
	sig, _ := server.SignWebhook(secret, got.ID, e.clock.Now(), []byte(got.Body))
	if got.Signature != sig {
		t.Errorf("signature %q, want %q", got.Signature, sig)
	}
	if d := ra.deliveries()[1]; !strings.HasPrefix(d.Body, `{"type":"connection.refreshed","timestamp":"2026-07-01T12:00:01Z","data":{"connection_id":"user-2",`) {
		t.Errorf("second delivery's body: %s", d.Body)
	}
	for _, d := range append(ra.deliveries(), rb.deliveries()...) {
		if d.Verified != nil {
			t.Errorf("%s: VerifyWebhook: %v", d.ID, d.Verified)
		}
	}
	if left := e.pending(); len(left) != 0 {
		t.Errorf("%d events still pending after delivery", len(left))
	}
	e.pass(w, server.WebhookPass{})
	if n := e.metric("delivered"); n != 4 {
		t.Errorf("delivered metric = %d, want 4", n)
	}
}

func TestWebhookRetryBackoff(t *testing.T) {
	e := newHookEnv(t)
	rc := newHookReceiver(t, e.clock)
	rc.setSecret(e.app("a", rc.URL(), true))
	rc.setRespond(statuses(500, 500, 200))
	id := e.emit("a", "c1")[0]
	w := e.webhooks(nil)
	start := e.clock.Now()

	e.pass(w, server.WebhookPass{Failed: 1})
	ev := e.event(id)
	if ev.Attempts != 1 || ev.LastError != "status 500" || !ev.NextAttemptAt.Equal(start.Add(5*time.Second)) {
		t.Fatalf("after the first failure: attempts %d, last error %q, next %s; want 1, status 500, +5s", ev.Attempts, ev.LastError, ev.NextAttemptAt.Sub(start))
	}
	e.clock.Advance(4 * time.Second)
	e.pass(w, server.WebhookPass{}) // still backing off
	e.clock.Advance(time.Second)
	e.pass(w, server.WebhookPass{Failed: 1})
	ev = e.event(id)
	if ev.Attempts != 2 || !ev.NextAttemptAt.Equal(start.Add(15*time.Second)) {
		t.Fatalf("after the second failure: attempts %d, next %s; want 2, +15s", ev.Attempts, ev.NextAttemptAt.Sub(start))
	}
	e.clock.Advance(9 * time.Second)
	e.pass(w, server.WebhookPass{})
	e.clock.Advance(time.Second)
	e.pass(w, server.WebhookPass{Delivered: 1})

	got := rc.deliveries()
	if len(got) != 3 {
		t.Fatalf("the receiver got %d requests, want 3", len(got))
	}
	for i, d := range got {
		if d.ID != fmt.Sprintf("evt_%d", id) || d.Verified != nil {
			t.Errorf("attempt %d: id %s, verified %v", i+1, d.ID, d.Verified)
		}
	}
	wantTS := []int64{start.Unix(), start.Unix() + 5, start.Unix() + 15}
	for i, d := range got {
		if d.Timestamp != strconv.FormatInt(wantTS[i], 10) {
			t.Errorf("attempt %d: webhook-timestamp %s, want %d (the attempt's time)", i+1, d.Timestamp, wantTS[i])
		}
	}
	if len(e.pending()) != 0 {
		t.Error("the event is still pending")
	}
	if f, d := e.metric("failed"), e.metric("delivered"); f != 2 || d != 1 {
		t.Errorf("metrics: failed %d, delivered %d; want 2, 1", f, d)
	}
}

func TestWebhookBackoffGrowsAndJitters(t *testing.T) {
	e := newHookEnv(t)
	rc := newHookReceiver(t, e.clock)
	rc.setSecret(e.app("a", rc.URL(), true))
	rc.setRespond(statuses(500, 500, 500, 500, 500, 500, 500, 500))
	id := e.emit("a", "c1")[0]
	jitter := 1.0
	w := e.webhooks(func(w *server.Webhooks) {
		w.MinBackoff, w.MaxBackoff = time.Second, 10*time.Second
		w.Jitter = func() float64 { return jitter }
	})
	// Ceilings 1s, 2s, 4s, 8s, then MaxBackoff.
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
		e.pass(w, server.WebhookPass{Failed: 1})
		if got := e.event(id).NextAttemptAt.Sub(e.clock.Now()); got != want {
			t.Errorf("after failure %d: backoff %s, want %s", i+1, got, want)
		}
		e.clock.Advance(want)
	}
	jitter = 0.25 // a quarter of the 10s ceiling
	e.pass(w, server.WebhookPass{Failed: 1})
	if got := e.event(id).NextAttemptAt.Sub(e.clock.Now()); got != 2500*time.Millisecond {
		t.Errorf("with jitter 0.25: backoff %s, want 2.5s", got)
	}
	e.clock.Advance(2500 * time.Millisecond)
	jitter = 0 // never below MinBackoff
	e.pass(w, server.WebhookPass{Failed: 1})
	if got := e.event(id).NextAttemptAt.Sub(e.clock.Now()); got != time.Second {
		t.Errorf("with jitter 0: backoff %s, want MinBackoff 1s", got)
	}
}

func TestWebhookOrderUnderFailure(t *testing.T) {
	e := newHookEnv(t)
	ra, rb := newHookReceiver(t, e.clock), newHookReceiver(t, e.clock)
	ra.setSecret(e.app("a", ra.URL(), true))
	rb.setSecret(e.app("b", rb.URL(), true))
	// a's endpoint is unavailable once, and asks for 30s.
	ra.setRespond(func(n int, w http.ResponseWriter, _ *http.Request) int {
		if n == 0 {
			w.Header().Set("Retry-After", "30")
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	a := e.emit("a", "c1", "c2", "c3")
	b := e.emit("b", "x")
	start := e.clock.Now()
	w := e.webhooks(nil)

	// a's first event fails: its others are held back, not sent after it;
	// b is not held up.
	e.pass(w, server.WebhookPass{Failed: 1, Deferred: 2, Delivered: 1})
	if diff := cmp.Diff(ra.ids(), evtIDs(a[0])); diff != "" {
		t.Fatalf("a's deliveries (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(rb.ids(), evtIDs(b...)); diff != "" {
		t.Fatalf("b's deliveries (-got +want):\n%s", diff)
	}
	head := e.event(a[0])
	if head.LastError != "status 503" || !head.NextAttemptAt.Equal(start.Add(30*time.Second)) {
		t.Fatalf("the failed event: %q, retry in %s; want status 503, in 30s (Retry-After)", head.LastError, head.NextAttemptAt.Sub(start))
	}
	for _, id := range a[1:] {
		if ev := e.event(id); ev.LastError != fmt.Sprintf("held back behind evt_%d", a[0]) || !ev.NextAttemptAt.Equal(head.NextAttemptAt) {
			t.Errorf("event %d: %q, next %s; want held back behind evt_%d until %s", id, ev.LastError, ev.NextAttemptAt, a[0], head.NextAttemptAt)
		}
	}

	// A new event of a's, while the first waits, waits too.
	e.clock.Advance(10 * time.Second)
	a = append(a, e.emit("a", "c4")...)
	e.pass(w, server.WebhookPass{Deferred: 1})
	if len(ra.deliveries()) != 1 {
		t.Fatalf("a's endpoint got %d requests while its first event waited, want 1", len(ra.deliveries()))
	}

	e.clock.Advance(20 * time.Second)
	e.pass(w, server.WebhookPass{Delivered: 4})
	if diff := cmp.Diff(ra.ids(), evtIDs(a[0], a[0], a[1], a[2], a[3])); diff != "" {
		t.Errorf("a's deliveries (-got +want):\n%s", diff)
	}
	if n := ra.maxConcurrent(); n != 1 {
		t.Errorf("a's endpoint saw %d requests at once, want 1", n)
	}
}

func TestWebhookOneAppAtATimeManyAppsAtOnce(t *testing.T) {
	e := newHookEnv(t)
	var receivers []*hookReceiver
	var want [][]string
	for i := range 4 {
		rc := newHookReceiver(t, e.clock)
		app := fmt.Sprint("app", i)
		rc.setSecret(e.app(app, rc.URL(), true))
		receivers = append(receivers, rc)
		want = append(want, evtIDs(e.emit(app, "c1", "c2", "c3", "c4", "c5")...))
	}
	e.pass(e.webhooks(func(w *server.Webhooks) { w.Concurrency = 3 }), server.WebhookPass{Delivered: 20})
	for i, rc := range receivers {
		if diff := cmp.Diff(rc.ids(), want[i]); diff != "" {
			t.Errorf("app%d's deliveries (-got +want):\n%s", i, diff)
		}
		if n := rc.maxConcurrent(); n > 1 {
			t.Errorf("app%d's endpoint saw %d requests at once", i, n)
		}
	}
}

func TestWebhookBatch(t *testing.T) {
	e := newHookEnv(t)
	rc := newHookReceiver(t, e.clock)
	rc.setSecret(e.app("a", rc.URL(), true))
	ids := e.emit("a", "c1", "c2", "c3", "c4", "c5")
	w := e.webhooks(func(w *server.Webhooks) { w.Batch = 2 })
	e.pass(w, server.WebhookPass{Delivered: 2})
	e.pass(w, server.WebhookPass{Delivered: 2})
	e.pass(w, server.WebhookPass{Delivered: 1})
	if diff := cmp.Diff(rc.ids(), evtIDs(ids...)); diff != "" {
		t.Errorf("deliveries (-got +want):\n%s", diff)
	}
}

func TestWebhookRestartAfterFailure(t *testing.T) {
	e := newHookEnv(t)
	rc := newHookReceiver(t, e.clock)
	rc.setSecret(e.app("a", rc.URL(), true))
	rc.setRespond(statuses(500))
	ids := e.emit("a", "c1", "c2")
	e.pass(e.webhooks(nil), server.WebhookPass{Failed: 1, Deferred: 1})

	// A restart: the store is opened again, and a new deliverer knows
	// only what the store knows.
	e.reopen()
	w := e.webhooks(nil)
	e.pass(w, server.WebhookPass{})
	e.clock.Advance(5 * time.Second)
	e.pass(w, server.WebhookPass{Delivered: 2})
	if diff := cmp.Diff(rc.ids(), evtIDs(ids[0], ids[0], ids[1])); diff != "" {
		t.Errorf("deliveries (-got +want):\n%s", diff)
	}
	if left := e.pending(); len(left) != 0 {
		t.Errorf("%d events still pending", len(left))
	}
}

func TestWebhookInterruptedDeliveryIsRetried(t *testing.T) {
	e := newHookEnv(t)
	rc := newHookReceiver(t, e.clock)
	rc.setSecret(e.app("a", rc.URL(), true))
	started := make(chan struct{})
	rc.setRespond(func(n int, _ http.ResponseWriter, r *http.Request) int {
		if n == 0 {
			close(started)
			<-r.Context().Done() // never answers: the deliverer goes away
			return 0
		}
		return http.StatusOK
	})
	ids := e.emit("a", "c1", "c2")

	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		pass server.WebhookPass
		err  error
	}
	done := make(chan result)
	go func() {
		p, err := e.webhooks(nil).RunOnce(ctx)
		done <- result{p, err}
	}()
	<-started
	cancel()
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunOnce did not return after its context was cancelled")
	}
	if !errors.Is(res.err, context.Canceled) || res.pass != (server.WebhookPass{}) {
		t.Fatalf("interrupted RunOnce = %+v, %v; want nothing done, context.Canceled", res.pass, res.err)
	}
	for _, id := range ids {
		if ev := e.event(id); ev.Attempts != 0 || ev.LastError != "" || !ev.NextAttemptAt.IsZero() {
			t.Errorf("event %d was recorded: attempts %d, %q, next %s", id, ev.Attempts, ev.LastError, ev.NextAttemptAt)
		}
	}

	e.reopen()
	e.pass(e.webhooks(nil), server.WebhookPass{Delivered: 2})
	if diff := cmp.Diff(rc.ids(), evtIDs(ids[0], ids[0], ids[1])); diff != "" {
		t.Errorf("deliveries (-got +want):\n%s", diff)
	}
}

func TestWebhookRunStopsPromptly(t *testing.T) {
	e := newHookEnv(t)
	rc := newHookReceiver(t, e.clock)
	rc.setSecret(e.app("a", rc.URL(), true))
	got := make(chan string, 10)
	rc.setRespond(func(_ int, _ http.ResponseWriter, r *http.Request) int {
		got <- r.Header.Get("webhook-id")
		return http.StatusOK
	})
	w := e.webhooks(func(w *server.Webhooks) { w.Interval = 5 * time.Millisecond })
	first := e.emit("a", "c1") // before Run starts, so emit sees it pending
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()

	wait := func() string {
		select {
		case id := <-got:
			return id
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery")
		}
		return ""
	}
	if id := wait(); id != evtIDs(first...)[0] {
		t.Errorf("first delivery %s", id)
	}
	// Run keeps polling. (It may deliver the new event before emit can
	// list it as pending, so the id is checked against the first's.)
	e.emit("a", "c2")
	id := wait()
	var second int64
	if _, err := fmt.Sscanf(id, "evt_%d", &second); err != nil || second <= first[0] {
		t.Errorf("second delivery %s, want an event after %s", id, evtIDs(first...)[0])
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func TestWebhookRedirectNotFollowed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client *http.Client
	}{{"default client", nil}, {"a client that follows redirects", &http.Client{}}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newHookEnv(t)
			rc := newHookReceiver(t, e.clock)
			rc.setSecret(e.app("a", rc.URL(), true))
			rc.setRespond(func(_ int, w http.ResponseWriter, _ *http.Request) int {
				w.Header().Set("Location", "/elsewhere")
				return http.StatusTemporaryRedirect
			})
			id := e.emit("a", "c1")[0]
			e.pass(e.webhooks(func(w *server.Webhooks) { w.Client = tc.client }), server.WebhookPass{Failed: 1})
			rc.mu.Lock()
			followed := rc.stray
			rc.mu.Unlock()
			if followed != 0 {
				t.Error("the redirect was followed")
			}
			if ev := e.event(id); ev.LastError != "status 307" {
				t.Errorf("last error %q, want status 307", ev.LastError)
			}
			if tc.client != nil && tc.client.CheckRedirect != nil {
				t.Error("the caller's client was changed")
			}
		})
	}
}

func TestWebhookGiveUp(t *testing.T) {
	e := newHookEnv(t)
	rc := newHookReceiver(t, e.clock)
	rc.setSecret(e.app("a", rc.URL(), true))
	rc.setRespond(func(int, http.ResponseWriter, *http.Request) int { return http.StatusGone })
	ids := e.emit("a", "c1", "c2")
	w := e.webhooks(func(w *server.Webhooks) { w.MaxAttempts = 3 })

	e.pass(w, server.WebhookPass{Failed: 1, Deferred: 1})
	e.clock.Advance(5 * time.Second)
	e.pass(w, server.WebhookPass{Failed: 1, Deferred: 1})
	e.clock.Advance(10 * time.Second)
	e.pass(w, server.WebhookPass{GaveUp: 1, Deferred: 1})
	ev := e.event(ids[0])
	if want := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC); !ev.NextAttemptAt.Equal(want) || ev.LastError != "gave up after 3 attempts: status 410" {
		t.Fatalf("given up: next %s, %q", ev.NextAttemptAt, ev.LastError)
	}
	// The next event, held back three rounds, has used its attempts: it
	// is given up after one more failed request.
	e.clock.Advance(5 * time.Second)
	e.pass(w, server.WebhookPass{GaveUp: 1})
	if ev := e.event(ids[1]); ev.LastError != "gave up after 4 attempts: status 410" {
		t.Errorf("the held-back event: %q", ev.LastError)
	}
	e.clock.Advance(1000 * time.Hour)
	e.pass(w, server.WebhookPass{})
	if n := len(rc.deliveries()); n != 4 {
		t.Errorf("the receiver got %d requests, want 4", n)
	}

	// Given-up events hold nothing back: a new event is sent when the
	// receiver is back.
	rc.setRespond(nil)
	fresh := e.emit("a", "c3")
	e.pass(w, server.WebhookPass{Delivered: 1})
	if got := rc.ids(); got[len(got)-1] != evtIDs(fresh...)[0] {
		t.Errorf("last delivery %s, want the new event", got[len(got)-1])
	}
	if g, f := e.metric("gave_up"), e.metric("failed"); g != 2 || f != 2 {
		t.Errorf("metrics: gave_up %d, failed %d; want 2, 2", g, f)
	}
	if !strings.Contains(e.logs.String(), "giving up") {
		t.Error("giving up was not logged")
	}
}

// hookMissingApp is a store in which one app has been deleted after its
// events were read.
type hookMissingApp struct {
	server.WebhookStore
	missing string
}

func (s hookMissingApp) App(ctx context.Context, id string) (*spotoken.App, error) {
	if id == s.missing {
		return nil, spotoken.Errorf(spotoken.ENotFound, "app %q not found", id)
	}
	return s.WebhookStore.App(ctx, id)
}

func TestWebhookSkipped(t *testing.T) {
	e := newHookEnv(t)
	rc := newHookReceiver(t, e.clock)
	e.app("quiet", "", true)
	rc.setSecret(e.app("gone", rc.URL(), true))
	e.emit("quiet", "c1", "c2")
	e.emit("gone", "c1")
	w := e.webhooks(func(w *server.Webhooks) { w.Store = hookMissingApp{e.store, "gone"} })
	e.pass(w, server.WebhookPass{Skipped: 3})
	if left := e.pending(); len(left) != 0 {
		t.Errorf("%d events still pending", len(left))
	}
	if n := len(rc.deliveries()); n != 0 {
		t.Errorf("a deleted app's endpoint got %d requests", n)
	}
	if n := e.metric("skipped"); n != 3 {
		t.Errorf("skipped metric = %d, want 3", n)
	}
}

func TestWebhookNoSecret(t *testing.T) {
	e := newHookEnv(t)
	rc := newHookReceiver(t, e.clock)
	e.app("a", rc.URL(), false)
	ids := e.emit("a", "c1", "c2")
	w := e.webhooks(nil)
	e.pass(w, server.WebhookPass{Failed: 1, Deferred: 1})
	if ev := e.event(ids[0]); ev.LastError != "app has no webhook secret" || ev.Attempts != 1 {
		t.Errorf("event: %q after %d attempts", ev.LastError, ev.Attempts)
	}
	if n := strings.Count(e.logs.String(), "app has no webhook secret"); n != 1 {
		t.Errorf("logged %d times in a pass, want once:\n%s", n, e.logs)
	}
	e.clock.Advance(5 * time.Second)
	e.pass(w, server.WebhookPass{Failed: 1, Deferred: 1})
	if n := len(rc.deliveries()); n != 0 {
		t.Errorf("an unsigned delivery was sent (%d requests)", n)
	}

	// The operator sets a secret: deliveries resume.
	secret := spotoken.NewWebhookSecret()
	rc.setSecret(secret)
	if _, err := e.store.UpdateApp(context.Background(), "a", func(a *spotoken.App) error { a.WebhookSecret = secret; return nil }); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(10 * time.Second)
	e.pass(w, server.WebhookPass{Delivered: 2})
	for _, d := range rc.deliveries() {
		if d.Verified != nil {
			t.Errorf("%s: %v", d.ID, d.Verified)
		}
	}
}

func TestWebhookTimeout(t *testing.T) {
	e := newHookEnv(t)
	rc := newHookReceiver(t, e.clock)
	rc.setSecret(e.app("a", rc.URL(), true))
	rc.setRespond(func(_ int, _ http.ResponseWriter, r *http.Request) int {
		<-r.Context().Done() // until the deliverer hangs up
		return 0
	})
	id := e.emit("a", "c1")[0]
	e.pass(e.webhooks(func(w *server.Webhooks) { w.Client = &http.Client{Timeout: 50 * time.Millisecond} }), server.WebhookPass{Failed: 1})
	if ev := e.event(id); ev.LastError != "timeout" {
		t.Errorf("last error %q, want timeout", ev.LastError)
	}
}

func TestWebhookLogsNoSecrets(t *testing.T) {
	e := newHookEnv(t)
	rc := newHookReceiver(t, e.clock)
	secret := e.app("a", rc.URL()+"?token=hunter2", true)
	rc.setSecret(secret)
	rc.setRespond(func(n int, w http.ResponseWriter, _ *http.Request) int {
		if n == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte("stack trace: SECRET-BODY"))
			return 0
		}
		return http.StatusOK
	})
	// An endpoint that refuses connections, with a secret in its query.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() + "/hooks/in?sig=sesame"
	ln.Close()
	refusedSecret := e.app("b", refused, true)
	a := e.emit("a", "c1")[0]
	b := e.emit("b", "c1")[0]

	w := e.webhooks(nil)
	e.pass(w, server.WebhookPass{Failed: 2})
	if ev := e.event(a); ev.LastError != "status 500" {
		t.Errorf("a: last error %q, want status 500", ev.LastError)
	}
	if ev := e.event(b); ev.LastError != "connection refused" {
		t.Errorf("b: last error %q, want connection refused", ev.LastError)
	}
	e.clock.Advance(5 * time.Second)
	e.pass(w, server.WebhookPass{Delivered: 1, Failed: 1})

	logs := e.logs.String()
	secrets := []string{secret.Reveal(), strings.TrimPrefix(secret.Reveal(), "whsec_"), refusedSecret.Reveal(),
		strings.TrimPrefix(refusedSecret.Reveal(), "whsec_"), "hunter2", "sesame", "SECRET-BODY"}
	for _, d := range rc.deliveries() {
		secrets = append(secrets, d.Signature, strings.TrimPrefix(d.Signature, "v1,"))
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("the logs hold %q:\n%s", s, logs)
		}
	}
	for _, want := range []string{`"endpoint":"` + strings.TrimPrefix(rc.URL(), "http://") + `"`, `"endpoint":"` + ln.Addr().String() + `/hooks/in"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs lack %s:\n%s", want, logs)
		}
	}
}
