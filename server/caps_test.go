package server_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/server"
)

// connectAs mints a connect link with key and follows it in the browser;
// it reports the link's status and, when created, whether the flow ended
// connected.
func (h *harness) connectAs(key, connectionID string) (status int, connected bool) {
	h.t.Helper()
	var sess server.ConnectSession
	resp, _ := h.call("POST", "/v1/connect-sessions", key, map[string]any{"connection_id": connectionID}, &sess)
	if resp.StatusCode != http.StatusCreated {
		return resp.StatusCode, false
	}
	r, err := h.browser.Get(sess.URL)
	if err != nil {
		h.t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	return resp.StatusCode, r.StatusCode == http.StatusOK && strings.Contains(string(body), `data-outcome="connected"`)
}

// TestPendingCapPerApp: an app at its cap of pending connect links is
// refused more (429 limit_exceeded with Retry-After) while another app
// goes on minting links, and neither app's links are evicted: the first
// app's pending links still work, and a used one frees a place. Many
// concurrent requests get exactly the cap.
func TestPendingCapPerApp(t *testing.T) {
	const max = 5
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.MaxPending = max }})
	var links []server.ConnectSession
	for i := range max {
		var sess server.ConnectSession
		if resp, raw := h.call("POST", "/v1/connect-sessions", h.apiKey, map[string]any{"connection_id": fmt.Sprint("c", i)}, &sess); resp.StatusCode != http.StatusCreated {
			t.Fatalf("link %d within the cap: %d %s", i, resp.StatusCode, raw)
		}
		links = append(links, sess)
	}
	resp, raw := h.call("POST", "/v1/connect-sessions", h.apiKey, map[string]any{"connection_id": "over"}, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a link past the cap: %d %s (Retry-After %q), want 429 with Retry-After", resp.StatusCode, raw, resp.Header.Get("Retry-After"))
	}
	wantErrorBody(t, resp, raw, "limit_exceeded")

	// The other app is not starved by the first one's cap.
	for i := range max {
		if status, connected := h.connectAs(h.otherKey, fmt.Sprint("o", i)); status != http.StatusCreated || !connected {
			t.Fatalf("the other app's link %d while the first is at its cap: %d, connected %v", i, status, connected)
		}
	}
	// Nor are the first app's links evicted: each still connects, and
	// once used, frees a place.
	for i, sess := range links {
		r, err := h.browser.Get(sess.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if !strings.Contains(string(body), `data-outcome="connected"`) {
			t.Fatalf("the first app's pending link %d after the other app's activity: %d %s", i, r.StatusCode, body)
		}
	}
	if status, connected := h.connectAs(h.apiKey, "after"); status != http.StatusCreated || !connected {
		t.Errorf("a link after the first app's links were used: %d, connected %v", status, connected)
	}

	// Concurrent requests from a third app: exactly the cap is minted.
	if err := h.store.CreateApp(t.Context(), &spotoken.App{ID: "third", ClientID: clientID, RedirectURIs: []string{h.srv.CallbackURL()}}); err != nil {
		t.Fatal(err)
	}
	third := h.newKey("third")
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := h.call("POST", "/v1/connect-sessions", third, map[string]any{"connection_id": fmt.Sprint("t", i)}, nil)
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[http.StatusCreated] != max || statuses[http.StatusTooManyRequests] != 40-max {
		t.Errorf("40 concurrent links with a cap of %d: %v", max, statuses)
	}
}

// TestForceLimitersPerApp: each app holds at most MaxForceLimiters
// force_refresh allowances in memory. An app at that cap waits for one to
// come free, another app's connections are not held back, and neither
// app's allowances are dropped to make room for the other's (a dropped one
// would come back full: a connection that used up its burst could force
// again at once).
func TestForceLimitersPerApp(t *testing.T) {
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.MaxForceLimiters = 3 }})
	force := func(key, id string) int {
		t.Helper()
		resp, _ := h.call("POST", "/v1/connections/"+id+"/token", key, map[string]any{"force_refresh": true}, nil)
		return resp.StatusCode
	}
	for _, id := range []string{"c1", "c2", "c3", "c4"} {
		h.connect(id)
	}
	for _, id := range []string{"o1", "o2", "o3", "o4"} {
		if status, connected := h.connectAs(h.otherKey, id); status != http.StatusCreated || !connected {
			t.Fatalf("connect the other app's %s: %d", id, status)
		}
	}
	for i := range 3 {
		if s := force(h.apiKey, "c1"); s != http.StatusOK {
			t.Fatalf("c1's force %d: %d", i, s)
		}
	}
	if s := force(h.apiKey, "c1"); s != http.StatusTooManyRequests {
		t.Fatalf("c1 past its burst: %d, want 429", s)
	}
	for _, id := range []string{"c2", "c3"} {
		if s := force(h.apiKey, id); s != http.StatusOK {
			t.Fatalf("%s: %d", id, s)
		}
	}
	// The first app is at its cap with no allowance idle: c4 waits.
	if s := force(h.apiKey, "c4"); s != http.StatusTooManyRequests {
		t.Errorf("c4 with its app at the cap: %d, want 429", s)
	}
	// The other app is not held back, up to its own cap.
	for _, id := range []string{"o1", "o2", "o3"} {
		if s := force(h.otherKey, id); s != http.StatusOK {
			t.Errorf("the other app's %s while the first is at its cap: %d", id, s)
		}
	}
	if s := force(h.otherKey, "o4"); s != http.StatusTooManyRequests {
		t.Errorf("the other app past its own cap: %d, want 429", s)
	}
	// c1's spent allowance was not dropped for the other app's.
	if s := force(h.apiKey, "c1"); s != http.StatusTooManyRequests {
		t.Errorf("c1 after the other app's forces: %d, want 429 still (its allowance was evicted)", s)
	}
	// Once allowances are full again they are dropped, and c4 gets one.
	h.emu.Advance(30 * time.Second)
	if s := force(h.apiKey, "c4"); s != http.StatusOK {
		t.Errorf("c4 after the first app's allowances refilled: %d", s)
	}
}
