package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/refresh"
)

// Metrics are spotoken's Prometheus metrics. Labels never carry a secret:
// routes are patterns, apps are ids, statuses are numbers.
type Metrics struct {
	// Registry holds every metric, with the Go and process collectors.
	Registry *prometheus.Registry

	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	vends     *prometheus.CounterVec
	proxied   *prometheus.CounterVec
	upstream  *prometheus.HistogramVec
	webhooks  *prometheus.CounterVec
	connects  *prometheus.CounterVec
	limited   prometheus.Counter
	storeOnce sync.Once
}

// NewMetrics returns the metrics on a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotoken_http_requests_total", Help: "HTTP requests served, by route pattern and status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "spotoken_http_request_duration_seconds", Help: "Time to serve HTTP requests, by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		vends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotoken_token_vends_total", Help: "Token requests answered, by outcome (ok or an error code).",
		}, []string{"outcome"}),
		proxied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotoken_proxy_requests_total", Help: "Proxied Web API requests, by upstream status (or an error code when Spotify was not called).",
		}, []string{"upstream_status"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "spotoken_upstream_request_duration_seconds", Help: "Latency of calls to Spotify, by service (accounts, api) and status.",
			Buckets: prometheus.DefBuckets,
		}, []string{"service", "status"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotoken_webhook_deliveries_total", Help: "Webhook delivery attempts, by outcome (delivered, failed, gave_up, skipped).",
		}, []string{"outcome"}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spotoken_connect_flows_total", Help: "Connect-flow steps, by outcome (started, connected, access_denied, ...).",
		}, []string{"outcome"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spotoken_list_limited_total", Help: "Listings answered 429 because none of their API key's --list-concurrency slots came free within --list-wait: each was running a listing, or reserved after one (--list-share pacing).",
		}),
	}
	m.Registry.MustRegister(m.requests, m.duration, m.vends, m.proxied, m.upstream, m.webhooks, m.connects, m.limited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format. A metric that
// fails to collect (the connections gauge while the database is down) is
// left out; the rest are served.
func (m *Metrics) Handler() http.Handler { return m.handler(nil) }

// handler is Handler, logging collection errors to log when not nil.
func (m *Metrics) handler(log *slog.Logger) http.Handler {
	opts := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}
	if log != nil {
		opts.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	}
	return promhttp.HandlerFor(m.Registry, opts)
}

func (m *Metrics) observeRequest(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

func (m *Metrics) vend(outcome string)        { m.vends.WithLabelValues(outcome).Inc() }
func (m *Metrics) connectFlow(outcome string) { m.connects.WithLabelValues(outcome).Inc() }
func (m *Metrics) listLimited()               { m.limited.Inc() }

// proxy counts a proxied request by the upstream status, or by the error
// code when spotoken answered without calling Spotify.
func (m *Metrics) proxy(statusOrCode string) { m.proxied.WithLabelValues(statusOrCode).Inc() }

// webhook counts a webhook delivery attempt by outcome.
func (m *Metrics) webhook(outcome string) { m.webhooks.WithLabelValues(outcome).Inc() }

// InstrumentTransport wraps rt so calls to Spotify's service ("accounts" or
// "api") are timed, by status.
func (m *Metrics) InstrumentTransport(service string, rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		start := time.Now()
		resp, err := rt.RoundTrip(r)
		status := "error"
		if err == nil {
			status = strconv.Itoa(resp.StatusCode)
		}
		m.upstream.WithLabelValues(service, status).Observe(time.Since(start).Seconds())
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// registerEngine exports the refresh engine's counters.
func (m *Metrics) registerEngine(stats func() refresh.Stats) {
	m.Registry.MustRegister(&engineCollector{stats: stats})
}

var (
	refreshesDesc = prometheus.NewDesc("spotoken_refreshes_total", "Refresh-token requests to Spotify, by outcome.", []string{"outcome"}, nil)
	rotationsDesc = prometheus.NewDesc("spotoken_rotations_total", "Refreshes that returned a new refresh token.", nil, nil)
	leaseDesc     = prometheus.NewDesc("spotoken_lease_waits_total", "Refreshes that waited for another replica's refresh of the same connection.", nil, nil)
	engineVends   = prometheus.NewDesc("spotoken_engine_tokens_total", "Tokens the refresh engine handed out, by source (memory, store, refresh, stale).", []string{"source"}, nil)
	cachedDesc    = prometheus.NewDesc("spotoken_token_cache_entries", "Connections' tokens the refresh engine holds in memory now (at most --cache-size).", nil, nil)
	evictedDesc   = prometheus.NewDesc("spotoken_token_cache_evictions_total", "Tokens dropped from memory to keep within --cache-size.", nil, nil)
	usesDesc      = prometheus.NewDesc("spotoken_connection_uses_total",
		"Callers' uses of connections recorded for the scheduler's active window (at most one per connection per 5 minutes), by outcome (written, dropped: too many waiting).", []string{"outcome"}, nil)
	usesPending  = prometheus.NewDesc("spotoken_connection_uses_pending", "Callers' uses of connections noted and not yet written to the database.", nil, nil)
	rateDesc     = prometheus.NewDesc("spotoken_upstream_rate", "The adaptive ceiling of token requests per second to Spotify from this replica: --upstream-rate, halved on a 429, climbing back after.", nil, nil)
	schedWaits   = prometheus.NewDesc("spotoken_scheduled_refresh_waits_total", "Scheduled refreshes that waited for upstream budget callers left.", nil, nil)
	backlogDesc  = prometheus.NewDesc("spotoken_refresh_due_backlog", "Connections the scheduler's current pass found due (used within --refresh-active-window, expiring within --refresh-window) and has not refreshed yet; 0 between passes.", nil, nil)
	schedLagDesc = prometheus.NewDesc("spotoken_refresh_scheduler_lag_seconds", "How late the oldest due refresh of the scheduler's current pass is (now less its expiry less --refresh-window); 0 when none is late.", nil, nil)
	connsDesc    = prometheus.NewDesc("spotoken_connections", "Connections, by app and state.", []string{"app", "state"}, nil)
	expiringDesc = prometheus.NewDesc("spotoken_connections_grant_expiring",
		"Active connections whose grant (Spotify's six months from consent) expires within the window (7d, 30d), by app.", []string{"app", "within"}, nil)
	rateLimitDesc = prometheus.NewDesc("spotoken_app_rate_limited_seconds",
		"Seconds left in the app's rate-limit window at Spotify's token endpoint (a 429's Retry-After, kept for every replica): no token of the app is refreshed before it ends. 0 once it has.", []string{"app"}, nil)
)

type engineCollector struct{ stats func() refresh.Stats }

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- refreshesDesc
	ch <- rotationsDesc
	ch <- leaseDesc
	ch <- engineVends
	for _, d := range []*prometheus.Desc{cachedDesc, evictedDesc, usesDesc, usesPending, rateDesc, schedWaits, backlogDesc, schedLagDesc} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(refreshesDesc, s.RefreshOK, "ok")
	counter(refreshesDesc, s.RefreshInvalidGrant, "invalid_grant")
	counter(refreshesDesc, s.RefreshInvalidClient, "invalid_client")
	counter(refreshesDesc, s.RefreshRateLimited, "rate_limited")
	counter(refreshesDesc, s.RefreshTransient, "transient")
	counter(rotationsDesc, s.Rotations)
	counter(leaseDesc, s.LeaseWaits)
	counter(engineVends, s.VendsMemory, "memory")
	counter(engineVends, s.VendsStore, "store")
	counter(engineVends, s.VendsRefresh, "refresh")
	counter(engineVends, s.ServedStale, "stale")
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(cachedDesc, float64(s.Cached))
	counter(evictedDesc, s.Evictions)
	counter(usesDesc, s.UsesWritten, "written")
	counter(usesDesc, s.UsesDropped, "dropped")
	gauge(usesPending, float64(s.UsesPending))
	gauge(rateDesc, s.UpstreamRate)
	counter(schedWaits, s.ScheduledWaits)
	gauge(backlogDesc, float64(s.DueBacklog))
	gauge(schedLagDesc, s.SchedulerLag.Seconds())
}

// registerAudit exports the audit trail's counters.
func (m *Metrics) registerAudit(stats func() spotoken.AuditStats) {
	m.Registry.MustRegister(&auditCollector{stats: stats})
}

var (
	auditWrittenDesc = prometheus.NewDesc("spotoken_audit_records_written_total", "Audit records written to the database.", nil, nil)
	auditDroppedDesc = prometheus.NewDesc("spotoken_audit_records_dropped_total",
		"Audit records lost, by reason (queue_full: the queue was full; write_failed: writing their batch failed).", []string{"reason"}, nil)
	auditQueueDesc  = prometheus.NewDesc("spotoken_audit_queue_length", "Audit records waiting to be written.", nil, nil)
	anomaliesDesc   = prometheus.NewDesc("spotoken_anomalies_total", "Alerts raised by the audit detectors, by detector.", []string{"detector"}, nil)
	authFailDesc    = prometheus.NewDesc("spotoken_auth_failures_total", "API requests whose credentials were missing or refused.", nil, nil)
	authLimitedDesc = prometheus.NewDesc("spotoken_auth_limited_requests_total", "API requests refused (429) because their address failed to authenticate too often.", nil, nil)
	authBlockedDesc = prometheus.NewDesc("spotoken_auth_limited_addresses", "Addresses under the failed-authentication limit now.", nil, nil)
	authTrackedDesc = prometheus.NewDesc("spotoken_auth_tracked_addresses", "Addresses the failed-authentication limit remembers (bounded).", nil, nil)
)

// AuditDetectors are the detector label values, each exported from the
// start (at zero) so that an alert on its increase sees the first one.
var AuditDetectors = []string{"new_network", "usage_spike", "reauth_surge", "refresh_token_reuse", "auth_limited"}

type auditCollector struct{ stats func() spotoken.AuditStats }

func (c *auditCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{auditWrittenDesc, auditDroppedDesc, auditQueueDesc, anomaliesDesc, authFailDesc, authLimitedDesc, authBlockedDesc, authTrackedDesc} {
		ch <- d
	}
}

func (c *auditCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter(auditWrittenDesc, s.Written)
	counter(auditDroppedDesc, s.DroppedQueueFull, "queue_full")
	counter(auditDroppedDesc, s.DroppedWriteFailed, "write_failed")
	gauge(auditQueueDesc, s.Queued)
	byDetector := map[string]int64{}
	for _, d := range AuditDetectors {
		byDetector[d] = 0
	}
	for _, a := range s.Anomalies {
		byDetector[a.Detector] += a.Count
	}
	for d, n := range byDetector {
		counter(anomaliesDesc, n, d)
	}
	counter(authFailDesc, s.AuthFailures)
	counter(authLimitedDesc, s.AuthLimited)
	gauge(authBlockedDesc, s.LimitedAddresses)
	gauge(authTrackedDesc, s.TrackedAddresses)
}

// ConnectionCounter is what the store-wide gauges of /metrics read: a
// pass over every connection (by app and state, by grant expiry) and the
// apps' rate-limit windows. A Store is one; see Config.Counter.
type ConnectionCounter interface {
	CountConnections(ctx context.Context) ([]spotoken.ConnectionCount, error)
	CountExpiringGrants(ctx context.Context, before time.Time) ([]spotoken.ConnectionCount, error)
	RateLimits(ctx context.Context, after time.Time) ([]spotoken.AppRateLimit, error)
}

// DefaultCountInterval is how often, at most, the store-wide gauges of
// /metrics are counted again (Config.CountInterval).
const DefaultCountInterval = 30 * time.Second

// expiringWindows are the windows of spotoken_connections_grant_expiring.
var expiringWindows = []struct {
	label string
	d     time.Duration
}{{"7d", 7 * 24 * time.Hour}, {"30d", 30 * 24 * time.Hour}}

// registerStore exports the store-wide gauges (connections by app and
// state, grants expiring, rate-limit windows), counted in the background
// (see connCollector).
func (m *Metrics) registerStore(c *connCollector) {
	m.storeOnce.Do(func() { m.Registry.MustRegister(c) })
}

var (
	countAgeDesc = prometheus.NewDesc("spotoken_connection_counts_age_seconds",
		"Seconds since spotoken_connections, spotoken_connections_grant_expiring and spotoken_app_rate_limited_seconds were read from the database; they are counted again in the background when a scrape finds them older than --metrics-max-age, so an age well past it means the counts fail or are slow (the log says why).", nil, nil)
	countTookDesc = prometheus.NewDesc("spotoken_connection_counts_duration_seconds",
		"How long the last successful count of the store-wide gauges took.", nil, nil)
)

// firstCountWait is how long the first scrape waits for the first count.
const firstCountWait = 5 * time.Second

// connCollector exports the store-wide gauges. Counting them is a pass over
// every connection (about 0.6 s on SQLite at a million, seconds on a busy
// PostgreSQL), so a scrape never counts: it answers at once with the last
// counts and their age, and when the last count started every ago or more
// it starts one in the background (one at a time, under a deadline of
// every, at most a minute). Only the first scrape, before any count has
// ended, waits for one, at most firstCountWait.
type connCollector struct {
	store   ConnectionCounter
	now     func() time.Time // the server's clock: ages, intervals, expiry windows
	every   time.Duration
	timeout time.Duration
	log     *slog.Logger

	mu     sync.Mutex
	last   *connCounts   // the last successful count; nil before the first
	err    error         // the last count's error, nil if it succeeded
	tried  time.Time     // when the last count started
	flight chan struct{} // closed when the count in flight ends; nil when none is
	ended  bool          // a count has ended, with or without success
}

// connCounts are one count of the store-wide gauges.
type connCounts struct {
	at       time.Time // when the count started (by the server's clock)
	took     time.Duration
	counts   []spotoken.ConnectionCount
	expiring [][]spotoken.ConnectionCount // by expiringWindows
	limits   []spotoken.AppRateLimit      // windows that lasted beyond the count
}

func newConnCollector(store ConnectionCounter, now func() time.Time, every time.Duration, log *slog.Logger) *connCollector {
	return &connCollector{store: store, now: now, every: every, timeout: min(every, time.Minute), log: log}
}

func (c *connCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- connsDesc
	ch <- expiringDesc
	ch <- rateLimitDesc
	ch <- countAgeDesc
	ch <- countTookDesc
}

// count reads the counts from the store.
func (c *connCollector) count(ctx context.Context, at time.Time) (*connCounts, error) {
	start := time.Now()
	counts, err := c.store.CountConnections(ctx)
	if err != nil {
		return nil, fmt.Errorf("count connections for /metrics: %w", err)
	}
	expiring := make([][]spotoken.ConnectionCount, len(expiringWindows))
	for i, w := range expiringWindows {
		if expiring[i], err = c.store.CountExpiringGrants(ctx, at.Add(w.d)); err != nil {
			return nil, fmt.Errorf("count expiring grants for /metrics: %w", err)
		}
	}
	limits, err := c.store.RateLimits(ctx, at)
	if err != nil {
		return nil, fmt.Errorf("read rate-limit windows for /metrics: %w", err)
	}
	return &connCounts{at: at, took: time.Since(start), counts: counts, expiring: expiring, limits: limits}, nil
}

// refresh starts a count in the background if the last one started at
// least every ago (or in the future of a clock set back) and none is in
// flight. It returns the channel closed when the count in flight ends, or
// nil when none is. c.mu is held.
func (c *connCollector) refresh(now time.Time) chan struct{} {
	if c.flight != nil {
		return c.flight
	}
	if c.ended && now.Sub(c.tried) < c.every && !now.Before(c.tried) {
		return nil
	}
	done := make(chan struct{})
	c.flight, c.tried = done, now
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		counts, err := c.count(ctx, now)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.flight, c.ended, c.err = nil, true, err
		if err != nil {
			c.log.Warn("metrics: the store-wide counts failed; /metrics keeps the last ones", "err", err)
			return
		}
		c.last = counts
	}()
	return done
}

func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	c.mu.Lock()
	done := c.refresh(now)
	if !c.ended && done != nil {
		// The first scrape: nothing to answer with yet.
		c.mu.Unlock()
		t := time.NewTimer(firstCountWait)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
		c.mu.Lock()
	}
	last, err := c.last, c.err
	c.mu.Unlock()
	if last == nil {
		if err == nil {
			err = errors.New("the connections have not been counted yet")
		}
		ch <- prometheus.NewInvalidMetric(connsDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(countAgeDesc, prometheus.GaugeValue, max(now.Sub(last.at).Seconds(), 0))
	ch <- prometheus.MustNewConstMetric(countTookDesc, prometheus.GaugeValue, last.took.Seconds())
	for _, n := range last.counts {
		ch <- prometheus.MustNewConstMetric(connsDesc, prometheus.GaugeValue, float64(n.Count), n.AppID, string(n.State))
	}
	// Every app with active connections gets a value, zero included, so
	// that an alert on the 7-day count sees it drop back.
	for i, w := range expiringWindows {
		byApp := map[string]int{}
		for _, n := range last.counts {
			if n.State == spotoken.StateActive {
				byApp[n.AppID] = 0
			}
		}
		for _, n := range last.expiring[i] {
			byApp[n.AppID] = n.Count
		}
		for app, n := range byApp {
			ch <- prometheus.MustNewConstMetric(expiringDesc, prometheus.GaugeValue, float64(n), app, w.label)
		}
	}
	// The time left is computed now, so it counts down between counts.
	for _, l := range last.limits {
		ch <- prometheus.MustNewConstMetric(rateLimitDesc, prometheus.GaugeValue, max(l.Until.Sub(now).Seconds(), 0), l.AppID)
	}
}
