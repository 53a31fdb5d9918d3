package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/audit"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/server"
	"github.com/spotoken/spotoken/sqlite"
)

// Load benchmarks of the whole broker: the real server (package server
// over SQLite, the refresh engine, the emulator as Spotify, all in this
// process) under closed-loop load from loadgen_test.go, each beside a
// floor measured in the same run, at the same concurrency, by the same
// load generator, in interleaved rounds:
//
//   - BenchmarkLoadVend/c=C: POST /v1/connections/{id}/token with an API
//     key, the token served from the engine's cache as in production
//     (the connection was connected through the server's own connect flow
//     a moment before, so its token is fresh). Its floor is a minimal
//     net/http handler answering the same status, headers and body bytes,
//     captured from a real answer: the vending path's cost is everything
//     above the floor.
//   - BenchmarkLoadProxy/c=C: GET /v1/proxy/{id}/v1/me through the server,
//     which forwards to the emulator. Its floor is GET /v1/me sent directly
//     to the emulator with the same access token: what the caller would
//     pay without the broker.
//
// b.N is the number of requests sent to each side (at least one per
// worker), so -benchtime 1x does a tiny but complete run. Each line
// reports, besides ns/op (wall time per request of the system: 1/req/s):
//
//	req/s, p50-ms, p99-ms            the system (vend, or proxy)
//	floor-req/s, floor-p50-ms, ...   its floor (vend)
//	direct-req/s, direct-p50-ms, ... its floor (proxy)
//	ratio                            system req/s ÷ floor req/s
//	added-p50-ms, added-p99-ms       proxy's percentile − direct's (proxy only)
//	cpu-us/op, floor-cpu-us/op       the process's CPU time per request,
//	                                 client and server together
//	cpu-ratio                        system cpu ÷ floor cpu per request
//
// The concurrencies (workers of the closed loop) are 1, 16 and 64, or the
// comma-separated list in SPOTOKEN_BENCH_LOAD_C. The server is configured
// as spotoken serve configures it: cache TTL 2s, API-key cache 2s, JSON
// logs at level info (written to io.Discard here), upstream calls through
// server.UpstreamTransport (up to 128 idle connections per upstream host)
// instrumented for the metrics; SPOTOKEN_BENCH_UPSTREAM_IDLE=N keeps N
// instead, to see what the pool is worth. Run them as
//
//	go test -run '^$' -bench Load -benchtime 20000x -count 3 ./bench/ | tee /tmp/load.txt
//	benchstat /tmp/load.txt
//
// Nothing here checks a timing; what is checked is that every answer has
// the expected status and body and that no refresh happened while
// measuring (vending is served from the cache).

const (
	lgAppID  = "bench-load"
	lgConnID = "bench-conn"
)

// lgWorld is a broker as spotoken serve builds it, with one app, one API
// key and one connected connection.
type lgWorld struct {
	emu      *emulator.Emulator
	emuSrv   *httptest.Server
	ts       *httptest.Server // the broker
	apiKey   string
	access   string // the connection's access token
	vendBody []byte // a real vending answer
	vendHdr  http.Header
	meBody   []byte // the emulator's /v1/me for the connection's user
	trail    *audit.Trail
	pacer    *trailPacer // the trail's passes, in the audited side's rounds
	// conns, when set, are the connections vendRequest takes in turn
	// (next counts); otherwise it vends lgConnID.
	conns []string
	next  atomic.Uint64
}

func lgConcurrencies(b *testing.B) []int {
	s := os.Getenv("SPOTOKEN_BENCH_LOAD_C")
	if s == "" {
		return []int{1, 16, 64}
	}
	var cs []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("SPOTOKEN_BENCH_LOAD_C=%q: want positive integers separated by commas", s)
		}
		cs = append(cs, n)
	}
	return cs
}

func newLgWorld(b *testing.B) *lgWorld { return newLgWorldAudit(b, false, 1) }

// newLgWorldAudit is newLgWorld, with the audit trail on when withAudit, as
// spotoken serve runs it by default: a trail over the same store, flushed
// every second in the background, its fingerprints keyed from the key ring.
// With conns > 1 the app has that many connections (lgConnID, connected,
// and copies of it made in the store), which vendRequest takes in turn.
func newLgWorldAudit(b *testing.B, withAudit bool, conns int) *lgWorld {
	b.Helper()
	ctx := context.Background()
	w := &lgWorld{}
	emu, err := emulator.New(emulator.Config{
		Clients:     []emulator.Client{{ID: pubID, RedirectURIs: []string{redirect}}},
		AutoApprove: benchUser,
	})
	if err != nil {
		b.Fatal(err)
	}
	w.emu = emu
	w.emuSrv = httptest.NewServer(emu)
	b.Cleanup(w.emuSrv.Close)

	keys, err := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{9}}}, 1)
	if err != nil {
		b.Fatal(err)
	}
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(b.TempDir(), "spotoken.db"), Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })

	// As cmd/spotoken's serve: one upstream transport, instrumented per
	// service.
	transport := server.UpstreamTransport()
	if s := os.Getenv("SPOTOKEN_BENCH_UPSTREAM_IDLE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("SPOTOKEN_BENCH_UPSTREAM_IDLE=%q: want a positive integer", s)
		}
		transport.MaxIdleConnsPerHost = n
		transport.MaxIdleConns = max(transport.MaxIdleConns, n)
	}
	b.Cleanup(transport.CloseIdleConnections)
	metrics := server.NewMetrics()
	upstream := func(service string) *http.Client {
		return &http.Client{Timeout: 30 * time.Second, Transport: metrics.InstrumentTransport(service, transport)}
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	engine, err := refresh.New(refresh.Config{
		Store:     store,
		Refresher: &refresh.SpotifyRefresher{TokenURL: w.emuSrv.URL + "/api/token", HTTPClient: upstream("accounts")},
		Logger:    log,
		CacheTTL:  2 * time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	var handler http.Handler
	w.ts = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { handler.ServeHTTP(rw, r) }))
	b.Cleanup(w.ts.Close)
	cfg := server.Config{
		Store: store, Tokens: engine, PublicURL: w.ts.URL, AccountsURL: w.emuSrv.URL, APIURL: w.emuSrv.URL,
		HTTPClient: upstream("api"), Logger: log, Metrics: metrics, EngineStats: engine.Stats,
		AuthCacheTTL: server.DefaultAuthCacheTTL,
	}
	if withAudit {
		fk, err := keys.DeriveKey(1, "bench fingerprints")
		if err != nil {
			b.Fatal(err)
		}
		acfg := audit.Config{Store: store, Logger: log, Fingerprints: audit.NewFingerprinter(map[uint32][]byte{1: fk}, 1)}
		if s := os.Getenv("SPOTOKEN_BENCH_AUDIT_BATCH"); s != "" { // the trail's BatchSize, to compare
			if acfg.BatchSize, err = strconv.Atoi(s); err != nil || acfg.BatchSize < 1 {
				b.Fatalf("SPOTOKEN_BENCH_AUDIT_BATCH=%q: want a positive integer", s)
			}
		}
		trail, err := audit.New(acfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := trail.Close(context.Background()); err != nil {
				b.Error(err)
			}
			if s := trail.Stats(); s.DroppedQueueFull+s.DroppedWriteFailed > 0 {
				b.Errorf("the audit trail dropped records: %+v", s)
			}
		})
		w.trail, w.pacer = trail, &trailPacer{trail: trail, left: audit.DefaultFlushInterval}
		cfg.Audit, cfg.AuditStats = trail, trail.Stats
	}
	srv, err := server.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	handler = srv

	if err := store.CreateApp(ctx, &spotoken.App{
		ID: lgAppID, ClientID: pubID, RedirectURIs: []string{srv.CallbackURL()},
		DefaultScopes: spotoken.Scopes{"user-read-private", "user-read-email"},
	}); err != nil {
		b.Fatal(err)
	}
	key, rec := spotoken.NewAPIKey(lgAppID, "bench", time.Now())
	if err := store.CreateAPIKey(ctx, rec); err != nil {
		b.Fatal(err)
	}
	w.apiKey = key.Reveal()

	setup := newLoadClient(1)
	defer setup.CloseIdleConnections()
	w.connect(b, setup)

	// One real vending answer: the floor replays it.
	resp, err := setup.Do(w.vendRequest())
	if err != nil {
		b.Fatal(err)
	}
	w.vendBody, w.vendHdr = drain(resp), resp.Header.Clone()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("vending: status %d: %s", resp.StatusCode, w.vendBody)
	}
	var tok server.TokenResponse
	if err := json.Unmarshal(w.vendBody, &tok); err != nil || tok.AccessToken == "" {
		b.Fatalf("vending: %v: %s", err, w.vendBody)
	}
	w.access = tok.AccessToken
	if conns > 1 {
		c, err := store.Connection(ctx, spotoken.ConnectionKey{AppID: lgAppID, ID: lgConnID})
		if err != nil {
			b.Fatal(err)
		}
		w.conns = append(w.conns, lgConnID)
		for i := 1; i < conns; i++ {
			cp := *c
			cp.ID = fmt.Sprintf("%s-%d", lgConnID, i)
			if err := store.CreateConnection(ctx, &cp); err != nil {
				b.Fatal(err)
			}
			w.conns = append(w.conns, cp.ID)
		}
	}

	// What the proxy must answer: the emulator's own answer.
	resp, err = setup.Do(w.directRequest())
	if err != nil {
		b.Fatal(err)
	}
	w.meBody = drain(resp)
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET /v1/me: status %d: %s", resp.StatusCode, w.meBody)
	}
	resp, err = setup.Do(w.proxyRequest())
	if err != nil {
		b.Fatal(err)
	}
	if body := drain(resp); resp.StatusCode != http.StatusOK || !bytes.Equal(body, w.meBody) {
		b.Fatalf("proxy GET /v1/me: status %d, body %s; want 200, %s", resp.StatusCode, body, w.meBody)
	}
	return w
}

// connect connects lgConnID through the server's connect flow: a connect
// session made with the API key, opened in a browser that follows the
// redirects to the emulator (which approves) and back to the callback.
func (w *lgWorld) connect(b *testing.B, c *http.Client) {
	b.Helper()
	req, err := http.NewRequest(http.MethodPost, w.ts.URL+"/v1/connect-sessions",
		strings.NewReader(`{"connection_id":"`+lgConnID+`"}`))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+w.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body := drain(resp)
	var sess server.ConnectSession
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &sess) != nil {
		b.Fatalf("POST /v1/connect-sessions: status %d: %s", resp.StatusCode, body)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Transport: c.Transport}
	resp, err = browser.Get(sess.URL)
	if err != nil {
		b.Fatal(err)
	}
	body = drain(resp)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`data-outcome="connected"`)) {
		b.Fatalf("connect flow: status %d: %s", resp.StatusCode, body)
	}
}

func (w *lgWorld) vendRequest() *http.Request {
	id := lgConnID
	if len(w.conns) > 0 {
		id = w.conns[(w.next.Add(1)-1)%uint64(len(w.conns))]
	}
	req, _ := http.NewRequest(http.MethodPost, w.ts.URL+"/v1/connections/"+id+"/token", nil)
	req.Header.Set("Authorization", "Bearer "+w.apiKey)
	return req
}

func (w *lgWorld) proxyRequest() *http.Request {
	req, _ := http.NewRequest(http.MethodGet, w.ts.URL+"/v1/proxy/"+lgConnID+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+w.apiKey)
	return req
}

func (w *lgWorld) directRequest() *http.Request {
	req, _ := http.NewRequest(http.MethodGet, w.emuSrv.URL+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+w.access)
	return req
}

// vendFloor serves the captured vending answer, byte for byte, to any
// request: the cheapest server that answers what the broker answers.
func (w *lgWorld) vendFloor(b *testing.B) *httptest.Server {
	hdr := w.vendHdr.Clone()
	hdr.Del("Date") // net/http writes its own
	hdr.Set("Content-Length", strconv.Itoa(len(w.vendBody)))
	body := w.vendBody
	ts := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h := rw.Header()
		for k, v := range hdr {
			h[k] = v
		}
		rw.WriteHeader(http.StatusOK)
		rw.Write(body)
	}))
	b.Cleanup(ts.Close)
	return ts
}

// refreshes counts the refresh_token requests the emulator has answered.
func (w *lgWorld) refreshes() int64 { return w.emu.Stats().TokenRequests["refresh_token"] }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// lgMeasure runs floor and system at c workers for b.N requests each and
// reports the metrics, the floor's under prefix (floor- or direct-).
func (w *lgWorld) lgMeasure(b *testing.B, c int, floor, system lgTarget, prefix string, added bool) {
	w.lgMeasureAt(b, c, 0, floor, system, prefix, added)
}

// lgMeasureBoth is lgMeasure for a system and a floor that are both
// brokers: neither may refresh while measuring.
func (w *lgWorld) lgMeasureBoth(b *testing.B, floorWorld *lgWorld, c int, floor, system lgTarget, prefix string) {
	before := floorWorld.refreshes()
	w.lgMeasureAt(b, c, 0, floor, system, prefix, false)
	if n := floorWorld.refreshes() - before; n != 0 {
		b.Fatalf("%d refreshes of the floor's broker while measuring", n)
	}
}

// lgMeasureAt is lgMeasure, open-loop at rate requests per second when
// rate > 0.
func (w *lgWorld) lgMeasureAt(b *testing.B, c int, rate float64, floor, system lgTarget, prefix string, added bool) {
	before := w.refreshes()
	b.ResetTimer()
	f, s, err := lgCompare(floor, system, c, b.N, rate)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if n := w.refreshes() - before; n != 0 {
		b.Fatalf("%d refreshes while measuring: the token was not served from the cache", n)
	}
	if rps := s.rps(); rps > 0 {
		b.ReportMetric(1e9/rps, "ns/op")
	}
	b.ReportMetric(s.rps(), "req/s")
	b.ReportMetric(f.rps(), prefix+"req/s")
	if f.rps() > 0 {
		b.ReportMetric(s.rps()/f.rps(), "ratio")
	}
	b.ReportMetric(ms(s.quantile(0.50)), "p50-ms")
	b.ReportMetric(ms(s.quantile(0.99)), "p99-ms")
	b.ReportMetric(ms(f.quantile(0.50)), prefix+"p50-ms")
	b.ReportMetric(ms(f.quantile(0.99)), prefix+"p99-ms")
	if added {
		b.ReportMetric(ms(s.quantile(0.50)-f.quantile(0.50)), "added-p50-ms")
		b.ReportMetric(ms(s.quantile(0.99)-f.quantile(0.99)), "added-p99-ms")
	}
	if s.cpu > 0 && f.cpu > 0 {
		b.ReportMetric(float64(s.cpuPerReq())/1e3, "cpu-us/op")
		b.ReportMetric(float64(f.cpuPerReq())/1e3, prefix+"cpu-us/op")
		b.ReportMetric(float64(s.cpuPerReq())/float64(f.cpuPerReq()), "cpu-ratio")
	}
}

// BenchmarkLoadVend is token vending under load against a server that
// answers the same bytes and does nothing else.
func BenchmarkLoadVend(b *testing.B) {
	w := newLgWorld(b)
	floorSrv := w.vendFloor(b)
	floorURL := floorSrv.URL + "/v1/connections/" + lgConnID + "/token"
	auth := "Bearer " + w.apiKey
	floor := lgTarget{name: "floor", want: http.StatusOK, body: w.vendBody, newReq: func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, floorURL, nil)
		if err == nil {
			req.Header.Set("Authorization", auth)
		}
		return req, err
	}}
	vend := lgTarget{name: "vend", want: http.StatusOK, body: w.vendBody, newReq: func() (*http.Request, error) {
		return w.vendRequest(), nil
	}}
	for _, c := range lgConcurrencies(b) {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			w.lgMeasure(b, c, floor, vend, "floor-", false)
		})
	}
}

// BenchmarkLoadProxy is GET /v1/me through the proxy against the same call
// made directly to the emulator.
func BenchmarkLoadProxy(b *testing.B) {
	w := newLgWorld(b)
	direct := lgTarget{name: "direct", want: http.StatusOK, body: w.meBody, newReq: func() (*http.Request, error) {
		return w.directRequest(), nil
	}}
	proxy := lgTarget{name: "proxy", want: http.StatusOK, body: w.meBody, newReq: func() (*http.Request, error) {
		return w.proxyRequest(), nil
	}}
	for _, c := range lgConcurrencies(b) {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			w.lgMeasure(b, c, direct, proxy, "direct-", true)
		})
	}
	// Open-loop at fixed rates below what this machine can serve: many
	// requests in flight at once, but the CPU not saturated, so the added
	// latency is the proxy's own cost rather than queueing.
	for _, rate := range []int{200, 500} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			w.lgMeasureAt(b, 64, float64(rate), direct, proxy, "direct-", true)
		})
	}
}

// BenchmarkLoadVendAudit is token vending with the audit trail on against
// the same vending with it off, side by side: two brokers built alike but
// for the trail, measured in interleaved rounds. ratio is audit req/s ÷
// no-audit req/s; the goal is at least 0.9. The records written are
// checked: one per vend, none dropped. conns=1 vends one connection again
// and again, which makes the trail's index by connection grow at one end
// (a flattering case); conns=1000 vends 1,000 connections in turn, on both
// sides, so that its entries go all over the index.
func BenchmarkLoadVendAudit(b *testing.B) {
	for _, conns := range []int{1, 1000} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			off := newLgWorldAudit(b, false, conns)
			on := newLgWorldAudit(b, true, conns)
			target := func(w *lgWorld, name string) lgTarget {
				t := lgTarget{name: name, want: http.StatusOK, body: w.vendBody, newReq: func() (*http.Request, error) { return w.vendRequest(), nil }}
				if w.trail != nil {
					// The trail's passes run beside the audited side's
					// requests, a second apart as in serve, and only in
					// its rounds; what is queued at the end is written
					// inside the measured time. Every cost of the trail
					// is the audit side's.
					t.during = w.pacer.start
					t.settle = func() error { return w.trail.Flush(context.Background()) }
				}
				t.round = auditRound
				return t
			}
			for _, c := range lgConcurrencies(b) {
				b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
					before := on.trail.Stats().Written
					on.lgMeasureBoth(b, off, c, target(off, "no-audit"), target(on, "audit"), "noaudit-")
					if err := on.trail.Flush(context.Background()); err != nil {
						b.Fatal(err)
					}
					if n := on.trail.Stats().Written - before; n < int64(b.N) {
						b.Fatalf("%d audit records written for %d vends", n, b.N)
					}
				})
			}
		})
	}
}

// auditRound is how many requests each side makes per round in
// BenchmarkLoadVendAudit and BenchmarkLoadVendAA (lgTarget.round): a
// second or so of vending here, so that a stretch of a noisy machine
// falls on both sides alike (six rounds, as the other load benchmarks
// have, left two identical brokers 0.92-1.06 apart at 60,000 vends).
const auditRound = 10000

// trailPacer runs the audit trail's passes as serve's trail.Run does, a
// pass FlushInterval after the last one ended or at once when the queue
// is half full (Trail.Due), but only while the audited side's rounds run
// (start, and the stop it returns): between them its clock stops, so a
// pass holds what it holds in serve at that rate, and none runs in the
// other side's rounds. (Half of QueueBytes is 5,000 to 6,000 vend
// records, about half a second of vending here.)
type trailPacer struct {
	trail *audit.Trail
	left  time.Duration // until the next pass, on the rounds' clock
}

// start starts the passes for a round; the function it returns stops them,
// after the pass under way, and reports the passes' errors.
func (p *trailPacer) start() (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var errs []error
		for {
			began := time.Now()
			timer := time.NewTimer(p.left)
			select {
			case <-ctx.Done():
				timer.Stop()
				p.left = max(0, p.left-time.Since(began))
				done <- errors.Join(errs...)
				return
			case <-timer.C:
			case <-p.trail.Due(): // the queue is half full: Run passes at once
				timer.Stop()
			}
			if err := p.trail.Flush(context.Background()); err != nil {
				errs = append(errs, err)
			}
			p.left = audit.DefaultFlushInterval
		}
	}()
	return func() error { cancel(); return <-done }
}

// BenchmarkLoadVendAA is BenchmarkLoadVendAudit/conns=1000 with the trail
// off on both sides: two brokers built alike, measured in the same rounds.
// On a quiet machine its ratio would be 1; how far its runs stray from 1
// is how finely the audit benchmark's ratio can be read on this one.
func BenchmarkLoadVendAA(b *testing.B) {
	one, two := newLgWorldAudit(b, false, 1000), newLgWorldAudit(b, false, 1000)
	target := func(w *lgWorld, name string) lgTarget {
		return lgTarget{name: name, want: http.StatusOK, body: w.vendBody, newReq: func() (*http.Request, error) { return w.vendRequest(), nil },
			round: auditRound}
	}
	for _, c := range lgConcurrencies(b) {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			two.lgMeasureBoth(b, one, c, target(one, "one"), target(two, "two"), "one-")
		})
	}
}
