package server_test

import (
	"context"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/server"
)

// gatedListing is a store whose connection listings wait for the gate
// (or their deadline) after announcing themselves on entered.
type gatedListing struct {
	server.Store
	entered chan string // the listing's app
	gate    chan struct{}
}

func (g *gatedListing) Connections(ctx context.Context, f spotoken.ConnectionFilter) ([]*spotoken.Connection, error) {
	g.entered <- f.AppID
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Store.Connections(ctx, f)
}

// TestListConcurrencyPerKey: with one listing of a key in flight, the
// key's next listing waits up to ListWait and is answered 429 with
// Retry-After, never reaching the store; the same key's other requests,
// and another key's listings, go through; once the listing ends the key
// lists again.
func TestListConcurrencyPerKey(t *testing.T) {
	gl := &gatedListing{entered: make(chan string, 10), gate: make(chan struct{})}
	h := newHarness(t, harnessOptions{server: func(c *server.Config) {
		gl.Store = c.Store
		c.Store = gl
		c.ListConcurrency = 1
		c.ListWait = time.Nanosecond
		c.ListShare = 1 // the slot frees as the listing ends
	}})
	h.connect("c1")
	get := func(key string) (int, http.Header) {
		req, _ := http.NewRequest("GET", h.ts.URL+"/v1/connections", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	wg.Add(1)
	go func() { defer wg.Done(); statuses[0], _ = get(h.apiKey) }()
	if app := <-gl.entered; app != appID {
		t.Fatalf("the first listing reached the store for app %q", app)
	}

	// The same key again: refused, without reaching the store.
	var body server.ErrorResponse
	resp, raw := h.call("GET", "/v1/connections?state=active", h.apiKey, nil, &body)
	if resp.StatusCode != http.StatusTooManyRequests || body.Error != "rate_limited" || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("a second listing of the key: %d Retry-After %q %s, want 429 rate_limited with Retry-After 1", resp.StatusCode, resp.Header.Get("Retry-After"), raw)
	}
	resp, raw = h.call("GET", "/v1/audit", h.apiKey, nil, nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the key's audit listing beside its connection listing: %d %s, want 429", resp.StatusCode, raw)
	}
	// Not a listing: served.
	if resp, raw := h.call("GET", "/v1/connections/c1", h.apiKey, nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("a single connection while the key lists: %d %s", resp.StatusCode, raw)
	}
	h.token("c1")

	// Another key of the same app lists: its own limit.
	second := h.newKey(appID)
	wg.Add(1)
	go func() { defer wg.Done(); statuses[1], _ = get(second) }()
	if app := <-gl.entered; app != appID {
		t.Fatalf("the other key's listing reached the store for app %q", app)
	}
	close(gl.gate)
	wg.Wait()
	for i, st := range statuses {
		if st != http.StatusOK {
			t.Errorf("listing %d: %d, want 200", i, st)
		}
	}
	// The slot is free again.
	if st, _ := get(h.apiKey); st != http.StatusOK {
		t.Errorf("the key's listing after the first ended: %d", st)
	}
	select {
	case app := <-gl.entered:
		_ = app
	default:
		t.Error("the last listing did not reach the store")
	}
	select {
	case <-gl.entered:
		t.Error("a refused listing reached the store")
	default:
	}
	scrape := h.scrapeNow("after the refusals")
	if got := metricValue(scrape, "spotoken_list_limited_total"); got != 2 {
		t.Errorf("spotoken_list_limited_total = %v, want 2", got)
	}
}

// TestListConcurrencyOff: a negative ListConcurrency sets no limit.
func TestListConcurrencyOff(t *testing.T) {
	gl := &gatedListing{entered: make(chan string, 10), gate: make(chan struct{})}
	h := newHarness(t, harnessOptions{server: func(c *server.Config) {
		gl.Store = c.Store
		c.Store = gl
		c.ListConcurrency = -1
		c.ListWait = time.Nanosecond
	}})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", h.ts.URL+"/v1/connections", nil)
			req.Header.Set("Authorization", "Bearer "+h.apiKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("listing without a limit: %d", resp.StatusCode)
			}
		}()
	}
	for range 3 {
		<-gl.entered // all three in the store at once
	}
	close(gl.gate)
	wg.Wait()
}

// TestListSharePaging: under the default pacing, a client paging one page
// after another is served every page (each waits out the pause after the
// one before, well within ListWait).
func TestListSharePaging(t *testing.T) {
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.ListWait = time.Minute }})
	for _, id := range []string{"c1", "c2", "c3", "c4"} {
		h.connect(id)
	}
	var ids []string
	cursor := ""
	for page := 0; ; page++ {
		if page == 10 {
			t.Fatalf("still paging after 10 pages: %v", ids)
		}
		var out struct {
			Connections []struct {
				ID string `json:"id"`
			} `json:"connections"`
			NextCursor string `json:"next_cursor"`
		}
		resp, raw := h.call("GET", "/v1/connections?limit=1&cursor="+cursor, h.apiKey, nil, &out)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page %d: %d %s", page, resp.StatusCode, raw)
		}
		for _, c := range out.Connections {
			ids = append(ids, c.ID)
		}
		if cursor = out.NextCursor; cursor == "" {
			break
		}
	}
	if len(ids) != 4 {
		t.Errorf("paged through %v, want the 4 connections", ids)
	}
}

// TestListShareConfig: a ListShare outside (0, 1] is refused.
func TestListShareConfig(t *testing.T) {
	var base server.Config
	newHarness(t, harnessOptions{server: func(c *server.Config) { base = *c }})
	for _, share := range []float64{-0.1, 1.5, math.NaN(), math.Inf(1)} {
		cfg := base
		cfg.ListShare = share
		_, err := server.New(cfg)
		if err == nil || !strings.Contains(err.Error(), "ListShare") {
			t.Errorf("ListShare %v: %v, want an error naming ListShare", share, err)
		}
	}
}

// TestReconsentLinkReused: a connection that needs its user answers every
// token request with a connect link; within a minute the same one (no new
// pending authorization, which counts against the app's cap), but not once
// the link was opened, nor for other scopes, nor past the minute.
func TestReconsentLinkReused(t *testing.T) {
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.MaxPending = 5 }})
	for _, id := range []string{"c1", "c2"} {
		h.connect(id)
	}
	link := needingReauth(t, h)
	first := link("c1")
	// A loop asking for it: one link, and the app's cap of 5 pending
	// links is not reached by it.
	for range 20 {
		if l := link("c1"); l != first {
			t.Fatalf("asked again: %q, want %q", l, first)
		}
	}
	other := link("c2")
	if other == first || other == "" {
		t.Fatalf("another connection's link %q", other)
	}
	var sess server.ConnectSession
	if resp, raw := h.call("POST", "/v1/connect-sessions", h.apiKey, map[string]any{"connection_id": "c3"}, &sess); resp.StatusCode != http.StatusCreated {
		t.Fatalf("a connect session beside the reused links: %d %s", resp.StatusCode, raw)
	}
	// Opened, it is not handed out again.
	if r := flowGet(t, stayClient(nil), first); r.Status != http.StatusFound {
		t.Fatalf("opening the link: %d %q", r.Status, r.Outcome)
	}
	again := link("c1")
	if again == first || again == "" {
		t.Errorf("after the link was opened: %q", again)
	}
}

// countingPending counts the store's attempts to add a pending link.
type countingPending struct {
	server.Store
	calls atomic.Int32
}

func (c *countingPending) CreatePendingWithin(ctx context.Context, p *spotoken.PendingAuthorization, n int) error {
	c.calls.Add(1)
	return c.Store.CreatePendingWithin(ctx, p, n)
}

// TestReconsentAtCap: once minting a link meets the app's cap of pending
// links, the app's next needs_reauth answers come without a link and
// without asking the store, for 10 seconds; then it is asked again.
func TestReconsentAtCap(t *testing.T) {
	cp := &countingPending{}
	h := newHarness(t, harnessOptions{server: func(c *server.Config) {
		cp.Store = c.Store
		c.Store = cp
		c.MaxPending = 2
	}})
	ids := []string{"c1", "c2", "c3", "c4", "c5"}
	for _, id := range ids {
		h.connect(id)
	}
	link := needingReauth(t, h)
	before := cp.calls.Load()
	if link("c1") == "" || link("c2") == "" {
		t.Fatal("no link below the cap")
	}
	if l := link("c3"); l != "" {
		t.Fatalf("a link past the cap: %q", l)
	}
	if n := cp.calls.Load() - before; n != 3 {
		t.Fatalf("%d attempts to store a link, want 3", n)
	}
	for _, id := range []string{"c4", "c5", "c3"} {
		if l := link(id); l != "" {
			t.Errorf("%s at the cap: link %q", id, l)
		}
	}
	if n := cp.calls.Load() - before; n != 3 {
		t.Errorf("%d attempts to store a link, want still 3: the cap was met", n)
	}
	h.emu.Advance(10 * time.Second)
	link("c4")
	if n := cp.calls.Load() - before; n != 4 {
		t.Errorf("%d attempts to store a link 10 s on, want 4", n)
	}
}

// needingReauth revokes alice's grant and moves the emulator's clock past
// her tokens' expiry, so that her connections need re-authorization, and
// returns a function that asks for id's token and returns the connect
// link of its 409 needs_reauth answer (failing the test otherwise).
func needingReauth(t *testing.T, h *harness) func(id string) string {
	t.Helper()
	if err := h.emu.RevokeGrant("alice", clientID); err != nil {
		t.Fatal(err)
	}
	h.emu.Advance(time.Hour)
	return func(id string) string {
		t.Helper()
		var e server.ErrorResponse
		resp, raw := h.call("POST", "/v1/connections/"+id+"/token", h.apiKey, nil, &e)
		if resp.StatusCode != http.StatusConflict || e.Error != "needs_reauth" {
			t.Fatalf("token of %s: %d %s, want 409 needs_reauth", id, resp.StatusCode, raw)
		}
		return e.ConnectURL
	}
}
