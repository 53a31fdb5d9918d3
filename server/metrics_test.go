package server_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/server"
)

// gatedCounter is a real store's counts behind a gate: while stalled, a
// count waits (for release or its deadline) as on a database that does not
// answer. Each count that starts is announced on started.
type gatedCounter struct {
	server.ConnectionCounter
	calls   atomic.Int32
	started chan struct{}
	mu      sync.Mutex
	gate    chan struct{} // nil: open
}

func newGatedCounter(c server.ConnectionCounter) *gatedCounter {
	return &gatedCounter{ConnectionCounter: c, started: make(chan struct{}, 100)}
}

func (g *gatedCounter) stall() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedCounter) release() {
	g.mu.Lock()
	close(g.gate)
	g.gate = nil
	g.mu.Unlock()
}

func (g *gatedCounter) CountConnections(ctx context.Context) ([]spotoken.ConnectionCount, error) {
	g.calls.Add(1)
	g.started <- struct{}{}
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.ConnectionCounter.CountConnections(ctx)
}

// liveness bounds how long a test waits for what must happen: reaching it
// is a failure (a scrape that waited for the database), not a measurement.
const liveness = 30 * time.Second

// scrapeNow scrapes /metrics and fails the test if the scrape does not
// answer within liveness (it waited for the stalled count).
func (h *harness) scrapeNow(what string) string {
	h.t.Helper()
	done := make(chan string, 1)
	go func() {
		resp, raw := h.call("GET", "/metrics", "", nil, nil)
		if resp.StatusCode != http.StatusOK {
			h.t.Errorf("/metrics: %d", resp.StatusCode)
		}
		done <- string(raw)
	}()
	select {
	case s := <-done:
		return s
	case <-time.After(liveness):
		h.t.Fatalf("%s: the scrape did not answer within %v: it waits for the database", what, liveness)
		return ""
	}
}

// TestMetricsCountsInBackground: the store-wide gauges are counted in the
// background, one count at a time, no more often than CountInterval (by
// the server's clock); scrapes answer at once with the last counts and
// their age, also while a count is stalled on the database.
func TestMetricsCountsInBackground(t *testing.T) {
	var gc *gatedCounter
	h := newHarness(t, harnessOptions{server: func(c *server.Config) {
		gc = newGatedCounter(c.Store)
		c.Counter = gc
		c.CountInterval = time.Minute
	}})
	const active = `spotoken_connections{app="demo",state="active"}`
	const age = `spotoken_connection_counts_age_seconds`
	check := func(scrape, what string, wantActive, wantAge float64) {
		t.Helper()
		if got := metricValue(scrape, active); got != wantActive {
			t.Errorf("%s: %s = %v, want %v", what, active, got, wantActive)
		}
		if got := metricValue(scrape, age); got != wantAge {
			t.Errorf("%s: %s = %v, want %v", what, age, got, wantAge)
		}
		if got := metricValue(scrape, `spotoken_token_vends_total{outcome="ok"}`); got != 1 {
			t.Errorf("%s: the other metrics are missing: vends %v", what, got)
		}
	}

	h.connect("c1")
	h.token("c1")
	// The first scrape waits for the first count.
	check(h.scrapeNow("first scrape"), "first scrape", 1, 0)
	if n := gc.calls.Load(); n != 1 {
		t.Fatalf("%d counts after the first scrape, want 1", n)
	}

	// Within the interval a scrape answers from the last count.
	h.connect("c2")
	h.emu.Advance(59 * time.Second)
	check(h.scrapeNow("within the interval"), "within the interval", 1, 59)

	// Past it, with the database stalled: the scrapes answer at once with
	// the last counts, and one count (not one per scrape) waits.
	gc.stall()
	h.emu.Advance(2 * time.Second)
	check(h.scrapeNow("stalled"), "stalled", 1, 61)
	select {
	case <-gc.started:
	case <-time.After(liveness):
	}
	for range 3 {
		check(h.scrapeNow("stalled, a count in flight"), "stalled, a count in flight", 1, 61)
	}
	gc.release()

	// Once the count ends, scrapes show it: 2 connections, counted when
	// the stalled count started.
	var scrape string
	for deadline := time.Now().Add(liveness); metricValue(scrape, active) != 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the count never ended: %s = %v", active, metricValue(scrape, active))
		}
		scrape = h.scrapeNow("released")
	}
	check(scrape, "released", 2, 0)
	if n := gc.calls.Load(); n != 2 {
		t.Errorf("%d counts in all, want 2 (one at start, one past the interval)", n)
	}
	if metricValue(scrape, "spotoken_connection_counts_duration_seconds") <= 0 {
		t.Errorf("no duration of the last count: %v", metricLines(scrape, "spotoken_connection_counts_duration_seconds"))
	}
}

// TestMetricsCountFailsKeepsLast: a count that fails leaves the last
// counts served, their age growing, and is retried after the interval.
func TestMetricsCountFailsKeepsLast(t *testing.T) {
	var gc *gatedCounter
	h := newHarness(t, harnessOptions{server: func(c *server.Config) {
		gc = newGatedCounter(c.Store)
		c.Counter = gc
		c.CountInterval = time.Minute
	}})
	h.connect("c1")
	const active = `spotoken_connections{app="demo",state="active"}`
	if got := metricValue(h.scrapeNow("first"), active); got != 1 {
		t.Fatalf("first scrape: %v", got)
	}
	<-gc.started // the first count's
	// The next count fails: the database is closed.
	h.store.Close()
	h.emu.Advance(time.Minute)
	h.scrapeNow("starting a failing count")
	select {
	case <-gc.started:
	case <-time.After(liveness):
		t.Fatal("no count started past the interval")
	}
	for deadline := time.Now().Add(liveness); !strings.Contains(h.logs.String(), "the store-wide counts failed"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the failed count was not logged")
		}
	}
	h.emu.Advance(10 * time.Second)
	scrape := h.scrapeNow("after the failure")
	if got := metricValue(scrape, active); got != 1 {
		t.Errorf("after a failed count: %s = %v, want the last count's 1", active, got)
	}
	if got := metricValue(scrape, "spotoken_connection_counts_age_seconds"); got != 70 {
		t.Errorf("after a failed count: age %v, want 70", got)
	}
}
