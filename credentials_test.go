package spotoken_test

import (
	"testing"
	"time"

	"github.com/spotoken/spotoken"
)

func TestNewEvent(t *testing.T) {
	key := spotoken.ConnectionKey{AppID: "app", ID: "u1"}
	local := time.FixedZone("CET", 3600)
	at := time.Date(2026, 12, 1, 13, 0, 0, 123456789, local)
	e := spotoken.NewEvent(spotoken.EventConnectionCreated, key, at, map[string]any{
		"grant_expires_at": at, "scopes": spotoken.Scopes{"a", "b"}})
	if e.Type != spotoken.EventConnectionCreated || e.AppID != "app" || e.ConnectionID != "u1" || !e.CreatedAt.Equal(at) {
		t.Errorf("event %+v", e)
	}
	// Times in UTC to the microsecond, as the API and the stores give them.
	want := `{"connection_id":"u1","grant_expires_at":"2026-12-01T12:00:00.123456Z","scopes":["a","b"]}`
	if string(e.Data) != want {
		t.Errorf("data %s\nwant %s", e.Data, want)
	}
	if got := string(spotoken.NewEvent(spotoken.EventConnectionRotated, key, at, nil).Data); got != `{"connection_id":"u1"}` {
		t.Errorf("data without fields: %s", got)
	}
}
