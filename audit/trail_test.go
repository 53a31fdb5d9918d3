package audit_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/audit"
)

// flakyStore is a store whose AppendAudit fails while broken, and that
// keeps what it was given.
type flakyStore struct {
	spotoken.Store // nil: only the methods below are used
	mu             sync.Mutex
	broken         bool
	records        []spotoken.AuditRecord
}

func (s *flakyStore) AppendAudit(_ contextT, records ...spotoken.AuditRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return errors.New("disk full")
	}
	s.records = append(s.records, records...)
	return nil
}

func (s *flakyStore) CountAuditMarks(contextT, string, time.Time) ([]spotoken.AuditMarkCount, error) {
	return nil, nil
}

func (s *flakyStore) DeleteAuditBefore(contextT, time.Time, int) (int, error) { return 0, nil }

// TestTrailFailsOpen: a full queue and a failing database drop records and
// count them; Record never blocks or fails, and the trail writes again once
// the database is back.
func TestTrailFailsOpen(t *testing.T) {
	st := &flakyStore{broken: true}
	now := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	tr, err := audit.New(audit.Config{Store: st, Now: func() time.Time { return now }, QueueSize: 10, BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	rec := spotoken.AuditRecord{Action: spotoken.AuditTokenVend, AppID: "a", ConnectionID: "c"}
	for range 15 {
		tr.Record(rec) // 10 queued, 5 dropped at once
	}
	if s := tr.Stats(); s.Queued != 10 || s.DroppedQueueFull != 5 {
		t.Fatalf("after 15 records into a queue of 10: %+v", s)
	}
	p, err := tr.RunOnce(ctx)
	if err == nil || p.Dropped != 10 || p.Written != 0 {
		t.Fatalf("RunOnce on a failing database: %+v, %v", p, err)
	}
	st.mu.Lock()
	st.broken = false
	st.mu.Unlock()
	for range 6 {
		tr.Record(rec)
	}
	if p, err = tr.RunOnce(ctx); err != nil || p.Written != 6 {
		t.Fatalf("RunOnce after recovery: %+v, %v", p, err)
	}
	s := tr.Stats()
	if s.Written != 6 || s.DroppedQueueFull != 5 || s.DroppedWriteFailed != 10 || s.Queued != 0 {
		t.Errorf("stats: %+v", s)
	}
	if len(st.records) != 6 || st.records[0].Version != spotoken.AuditVersion || !st.records[0].At.Equal(now) {
		t.Errorf("stored %d records, first %+v", len(st.records), st.records)
	}
}

// TestTrailRunFlushesOnStop: Run writes what is queued when its context ends.
func TestTrailRunFlushesOnStop(t *testing.T) {
	st := &flakyStore{}
	tr, err := audit.New(audit.Config{Store: st, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tr.Record(spotoken.AuditRecord{Action: spotoken.AuditTokenVend})
	runCtx, cancel := contextWithCancel()
	done := make(chan error)
	go func() { done <- tr.Run(runCtx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(st.records) != 1 {
		t.Errorf("%d records written on stop, want 1", len(st.records))
	}
}

// TestAuthGuardBounded: an attacker with many addresses never grows the
// limiter past its bound; addresses of one IPv6 /64 share a limit, another
// /64 does not.
func TestAuthGuardBounded(t *testing.T) {
	now := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	tr, err := audit.New(audit.Config{Store: &flakyStore{}, Now: func() time.Time { return now },
		Detectors: audit.Detectors{AuthFailures: 3, AuthMaxTracked: 100}})
	if err != nil {
		t.Fatal(err)
	}
	fail := func(ip string) {
		tr.Record(spotoken.AuditRecord{Action: spotoken.AuditAuthFailed, ClientIP: ip})
	}
	for i := range 3 {
		fail(fmt.Sprintf("2001:db8:1:2::%x", i+1)) // one /64
	}
	if tr.AuthWait(netip.MustParseAddr("2001:db8:1:2::ffff")) == 0 {
		t.Error("an address of the limited /64 may authenticate")
	}
	if tr.AuthWait(netip.MustParseAddr("2001:db8:1:3::1")) != 0 {
		t.Error("an address of another /64 is limited")
	}
	for i := range 20000 {
		fail(fmt.Sprintf("198.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	if s := tr.Stats(); s.TrackedAddresses > 100 || s.AuthFailures != 20003 {
		t.Errorf("after 20,000 addresses: %+v", s)
	}
	if tr.AuthWait(netip.MustParseAddr("2001:db8:1:2::1")) == 0 {
		t.Error("the limited /64 was evicted by one-failure addresses")
	}
}

// TestFingerprint: the same secret and key give the same fingerprint;
// another key version another one; All lists every version's, newest first.
func TestFingerprint(t *testing.T) {
	f := audit.NewFingerprinter(map[uint32][]byte{1: []byte("k1"), 2: []byte("k2")}, 2)
	a := f.Fingerprint("BQDtoken")
	if !strings.HasPrefix(a, "hmac-sha256:2:") || len(a) != len("hmac-sha256:2:")+64 || a != f.Fingerprint("BQDtoken") {
		t.Fatalf("Fingerprint = %q", a)
	}
	if strings.Contains(a, "BQDtoken") || a == f.Fingerprint("BQDtoken2") {
		t.Error("the fingerprint shows or ignores the secret")
	}
	all := f.All("BQDtoken")
	if len(all) != 2 || all[0] != a || !strings.HasPrefix(all[1], "hmac-sha256:1:") {
		t.Errorf("All = %v", all)
	}
	if f.Fingerprint("") != "" || (*audit.Fingerprinter)(nil).Fingerprint("x") != "" {
		t.Error("an empty secret or no fingerprinter gives a fingerprint")
	}
}

// TestTrailRecordSecret: records taken from many goroutines at once are
// written in the order each goroutine took them, and a record taken with
// a secret carries the secret's fingerprint, made by the writer.
func TestTrailRecordSecret(t *testing.T) {
	st := &flakyStore{}
	now := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	fp := audit.NewFingerprinter(map[uint32][]byte{1: []byte("0123456789abcdef0123456789abcdef")}, 1)
	tr, err := audit.New(audit.Config{Store: st, Now: func() time.Time { return now }, Fingerprints: fp})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				rec := spotoken.AuditRecord{Action: spotoken.AuditTokenVend, AppID: "a", ConnectionID: fmt.Sprint("c", w), RequestID: fmt.Sprint(i)}
				if i%2 == 0 {
					tr.RecordSecret(rec, spotoken.Secret(fmt.Sprint("token-", w)))
				} else {
					tr.Record(rec)
				}
			}
		}()
	}
	wg.Wait()
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(st.records) != workers*each {
		t.Fatalf("%d records written, want %d", len(st.records), workers*each)
	}
	next := map[string]int{}
	for _, r := range st.records {
		if want := fmt.Sprint(next[r.ConnectionID]); r.RequestID != want {
			t.Fatalf("%s's record %s written where its %s was due: out of order", r.ConnectionID, r.RequestID, want)
		}
		i := next[r.ConnectionID]
		next[r.ConnectionID]++
		want := ""
		if i%2 == 0 {
			want = fp.Fingerprint(spotoken.Secret("token-" + strings.TrimPrefix(r.ConnectionID, "c")))
		}
		if r.Fingerprint != want || strings.Contains(r.Fingerprint, "token-") {
			t.Fatalf("%s's record %d has fingerprint %q, want %q", r.ConnectionID, i, r.Fingerprint, want)
		}
	}
}
