package console

import (
	"net/url"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
)

// FuzzListQuery: the connections list's query, whatever it is, is refused
// or read into a query that says the same when written back, and whose
// order is one an index serves.
func FuzzListQuery(f *testing.F) {
	for _, seed := range []string{"", "state=active", "state=needs_reauth&cursor=p033", "expiring=30", "backoff=1",
		"sort=grant_expiry", "sort=next_attempt&state=active", "expiring=7&cursor=1782950400000000.c-1", "state=bogus",
		"state=a&state=b", "expiring=-1", "expiring=99999", "sort=x", "%zz", "backoff=&expiring=1&sort=id"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		lq, err := parseListQuery(q)
		if err != nil {
			if spotoken.ErrorCode(err) != spotoken.EInvalid {
				t.Fatalf("parseListQuery(%q): %v, want an invalid_request error", raw, err)
			}
			return
		}
		switch {
		case lq.Sort != "id" && lq.Sort != "grant_expiry" && lq.Sort != "next_attempt":
			t.Fatalf("parseListQuery(%q): order %q", raw, lq.Sort)
		case lq.Backoff != (lq.Sort == "next_attempt"):
			t.Fatalf("parseListQuery(%q): backoff %v with order %q", raw, lq.Backoff, lq.Sort)
		case lq.Expiring > 0 && lq.Sort == "id":
			t.Fatalf("parseListQuery(%q): expiring grants by id", raw)
		}
		again, err := parseListQuery(lq.values())
		if err != nil {
			t.Fatalf("the query %q, written back as %q, is refused: %v", raw, lq.values().Encode(), err)
		}
		lq.Cursor = ""
		if again != lq {
			t.Fatalf("the query %q reads as %+v, written back and read again as %+v", raw, lq, again)
		}
	})
}

// FuzzEventDetail: any event payload is told in words without a panic.
func FuzzEventDetail(f *testing.F) {
	for _, seed := range []struct{ typ, data string }{
		{"connection.refresh_failed", `{"connection_id":"u1","error":"server_error","attempt":2,"retry_at":"2026-07-01T12:00:00Z"}`},
		{"connection.created", `{"connection_id":"u1","scopes":["a","b"],"grant_expires_at":"x"}`},
		{"connection.needs_reauth", `{"reason":"revoked","error":"invalid_grant"}`},
		{"alert.new_network", `{"network":"10.0.0.0/24","n":[1,{"x":null}]}`},
		{"connection.refreshed", `not json`},
		{"", ``},
	} {
		f.Add(seed.typ, []byte(seed.data))
	}
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		e := &spotoken.Event{Type: spotoken.EventType(typ), Data: data}
		_ = eventDetail(e, now)
	})
}
