package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/internal/listing"
	"github.com/spotoken/spotoken/server"
)

// slowListings is the harness's store, whose Connections runs under a
// listing deadline already past, as a store's listing past its
// ListTimeout does.
type slowListings struct{ server.Store }

func (s slowListings) Connections(ctx context.Context, f spotoken.ConnectionFilter) ([]*spotoken.Connection, error) {
	return listing.Within(ctx, time.Nanosecond, func(ctx context.Context) ([]*spotoken.Connection, error) {
		return s.Store.Connections(ctx, f)
	})
}

// TestListingTimeout: a listing stopped at the store's listing deadline
// answers 503 query_timeout with Retry-After and advice, not 400 or 500.
func TestListingTimeout(t *testing.T) {
	h := newHarness(t, harnessOptions{server: func(c *server.Config) { c.Store = slowListings{c.Store} }})
	resp, raw := h.call("GET", "/v1/connections?state=needs_reauth", h.apiKey, nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("GET /v1/connections past the listing deadline: %d, Retry-After %q, %s; want 503 with Retry-After 1",
			resp.StatusCode, resp.Header.Get("Retry-After"), raw)
	}
	if e := wantErrorBody(t, resp, raw, spotoken.EQueryTimeout); !strings.Contains(e.Description, "narrow it") {
		t.Errorf("description %q gives no advice", e.Description)
	}
}
