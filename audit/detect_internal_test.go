package audit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
)

// nilStore is a store the test never reaches.
type nilStore struct{ spotoken.Store }

// TestUsageEvictionScansOncePerWindow: with the usage detector's map full
// of active connections, a stream of new connections in one window (a
// sweep of distinct connections) scans the map once, not once per record;
// in the next window it scans again, and forgets those idle for a day.
func TestUsageEvictionScansOncePerWindow(t *testing.T) {
	tr, err := New(Config{Store: nilStore{}, Detectors: Detectors{UsageMaxTracked: 100}})
	if err != nil {
		t.Fatal(err)
	}
	d := tr.detect
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	rec := func(i int, at time.Time) *spotoken.AuditRecord {
		return &spotoken.AuditRecord{At: at, Action: spotoken.AuditTokenVend, AppID: "a", ConnectionID: fmt.Sprint("c", i),
			ActorType: spotoken.ActorAPIKey, ActorID: "k", Status: 200}
	}
	var p Pass
	for i := range 100 { // full, all a day and a window old
		if err := d.use(context.Background(), rec(i, t0.Add(-25*time.Hour)), &p); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 { // now full of active ones: the old went in one scan
		if err := d.use(context.Background(), rec(1000+i, t0), &p); err != nil {
			t.Fatal(err)
		}
	}
	if d.usageScans != 1 || len(d.usage) != 100 {
		t.Fatalf("after replacing 100 idle connections: %d scans, %d tracked; want 1 and 100", d.usageScans, len(d.usage))
	}
	for i := range 5000 { // a sweep within the same window: nothing to evict, no rescans
		if err := d.use(context.Background(), rec(5000+i, t0.Add(time.Second)), &p); err != nil {
			t.Fatal(err)
		}
	}
	if d.usageScans != 1 {
		t.Fatalf("5,000 new connections in one window with the map full of active ones: %d scans, want 1", d.usageScans)
	}
	if err := d.use(context.Background(), rec(99999, t0.Add(d.cfg.UsageWindow)), &p); err != nil {
		t.Fatal(err)
	}
	if d.usageScans != 2 {
		t.Fatalf("a new connection in the next window: %d scans in all, want 2", d.usageScans)
	}
}
