package sqlite_test

import (
	"fmt"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
)

// TestAuditPackedRoundTrip: a record the trail's batch writes packed
// (migration 0016) reads back field for field, awkward strings and a
// detail included, and so does one written a column a field with a
// change (spotoken.WithAudit), in one listing of the app, in order.
func TestAuditPackedRoundTrip(t *testing.T) {
	keys, _ := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{7}}}, 1)
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "db"), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	at := time.Date(2026, 7, 6, 12, 0, 3, 512000, time.UTC)
	full := spotoken.AuditRecord{Version: spotoken.AuditVersion, At: at, Action: spotoken.AuditProxyCall, AppID: "app-1",
		ConnectionID: "user-42", ActorType: spotoken.ActorAPIKey, ActorID: "key_AbCdEfGhI", ActorLabel: `wörker "α" \ (sk_Ab12Cd…)`,
		ClientIP: "2001:db8::7", UserAgent: "ua/1 \x01\x1f\"\\ </script>", RequestID: "9f3c1a7e2b4d6f80", Method: "GET",
		Route: "/v1/me/top/{type}", Status: 502, UpstreamStatus: 503, Outcome: "upstream_503",
		Fingerprint: "hmac-sha256:1:5d41402abc4b2a76b9719d911017c592ae5f8b7b0e6c1d4d7a2f3e4b5c6d7e8f",
		Detail:      map[string]string{"detector": "usage_spike", "q\"uote": "line\nbreak"}}
	bare := spotoken.AuditRecord{Version: spotoken.AuditVersion, At: at.Add(time.Microsecond), Action: spotoken.AuditTokenVend,
		AppID: "app-1", ConnectionID: "user-42", Outcome: "ok"}
	if err := store.AppendAudit(ctx, full, bare); err != nil {
		t.Fatal(err)
	}
	// A lifecycle record, written with its change a column a field.
	change := spotoken.AuditRecord{Version: spotoken.AuditVersion, At: at.Add(2 * time.Microsecond), Action: spotoken.AuditAppCreate,
		AppID: "app-1", ActorType: spotoken.ActorAdmin, ActorID: "ops@host", ActorLabel: "cli", Method: "POST", Outcome: "ok",
		Detail: map[string]string{"k": "v"}}
	if err := store.CreateApp(spotoken.WithAudit(ctx, change), &spotoken.App{ID: "app-1", ClientID: "cid"}); err != nil {
		t.Fatal(err)
	}
	got, err := store.AuditRecords(ctx, spotoken.AuditFilter{AppID: "app-1", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	want := []spotoken.AuditRecord{full, bare, change}
	if len(got) != len(want) {
		t.Fatalf("%d records read, want %d", len(got), len(want))
	}
	for i, g := range got {
		g.ID = 0
		if !reflect.DeepEqual(*g, want[i]) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, *g, want[i])
		}
	}
}

// BenchmarkAppendAudit is the trail's batch write alone: 1,000 vend
// records a transaction, as the trail writes them under load, over 16
// connections of one app. cpu-ns/rec is the process's CPU per record
// (steadier than the wall time on a shared machine).
func BenchmarkAppendAudit(b *testing.B) {
	keys, _ := seal.NewKeyRing([]seal.Key{{Version: 1, Material: [32]byte{7}}}, 1)
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(b.TempDir(), "db"), Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	recs := make([]spotoken.AuditRecord, 1000)
	at := time.Now()
	for i := range recs {
		recs[i] = spotoken.AuditRecord{Version: 1, Action: spotoken.AuditTokenVend, AppID: "bench",
			ConnectionID: fmt.Sprintf("user-%d", i%16), ActorType: spotoken.ActorAPIKey, ActorID: "key_AbCdEfGhIjKl",
			ActorLabel: "bench (sk_AbCd1234…)", ClientIP: "127.0.0.1", UserAgent: "Go-http-client/1.1",
			RequestID: fmt.Sprintf("%016x", i), Method: "POST", Route: "/v1/connections/{id}/token", Status: 200, Outcome: "ok",
			Fingerprint: "hmac-sha256:1:5d41402abc4b2a76b9719d911017c592ae5f8b7b0e6c1d4d7a2f3e4b5c6d7e8f"}
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ResetTimer()
	c0 := cpu()
	for i := 0; i < b.N; i++ {
		for j := range recs {
			recs[j].At = at.Add(time.Duration(i*len(recs)+j) * time.Microsecond)
		}
		if err := store.AppendAudit(ctx, recs...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpu()-c0)/float64(b.N*len(recs)), "cpu-ns/rec")
}
