package audit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

func (s *flakyStore) MarkAudit(contextT, spotoken.AuditMark) (spotoken.AuditMark, error) {
	return spotoken.AuditMark{}, nil
}

func (s *flakyStore) DeleteAuditBefore(contextT, time.Time, int) (int, error) { return 0, nil }

// TestTrailFailsOpen: a full queue drops records and counts them; a
// failing database keeps them (no more are taken while the queue is
// full), Record never blocks or fails, and the trail writes them all once
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
	for range 2 {
		p, err := tr.RunOnce(ctx)
		if err == nil || p.Written != 0 || p.Dropped != 0 || p.Retained != 10 {
			t.Fatalf("RunOnce on a failing database: %+v, %v", p, err)
		}
	}
	tr.Record(rec) // the kept records fill the queue
	if s := tr.Stats(); s.Queued != 10 || s.DroppedQueueFull != 6 || s.DroppedWriteFailed != 0 {
		t.Fatalf("after a record into a queue full of kept records: %+v", s)
	}
	st.mu.Lock()
	st.broken = false
	st.mu.Unlock()
	if p, err := tr.RunOnce(ctx); err != nil || p.Written != 10 || p.Retained != 0 {
		t.Fatalf("RunOnce after recovery: %+v, %v", p, err)
	}
	for range 6 {
		tr.Record(rec)
	}
	if p, err := tr.RunOnce(ctx); err != nil || p.Written != 6 {
		t.Fatalf("RunOnce after recovery: %+v, %v", p, err)
	}
	s := tr.Stats()
	if s.Written != 16 || s.DroppedQueueFull != 6 || s.DroppedWriteFailed != 0 || s.Queued != 0 {
		t.Errorf("stats: %+v", s)
	}
	if len(st.records) != 16 || st.records[0].Version != spotoken.AuditVersion || !st.records[0].At.Equal(now) {
		t.Errorf("stored %d records, first %+v", len(st.records), st.records)
	}
}

// refusingStore refuses every batch as invalid.
type refusingStore struct{ flakyStore }

func (s *refusingStore) AppendAudit(contextT, ...spotoken.AuditRecord) error {
	return spotoken.Errorf(spotoken.EInvalid, "invalid value")
}

// TestTrailDropsRefusedBatch: a batch the store refuses as invalid is
// dropped and counted, not tried for ever.
func TestTrailDropsRefusedBatch(t *testing.T) {
	tr, err := audit.New(audit.Config{Store: &refusingStore{}, BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		tr.Record(spotoken.AuditRecord{Action: spotoken.AuditTokenVend})
	}
	if p, err := tr.RunOnce(ctx); err == nil || p.Dropped != 6 || p.Retained != 0 {
		t.Fatalf("RunOnce: %+v, %v", p, err)
	}
	if s := tr.Stats(); s.DroppedWriteFailed != 6 || s.Queued != 0 {
		t.Errorf("stats: %+v", s)
	}
}

// TestTrailQueueBytes: the queue is bounded by the memory its records
// hold as well as by their number, and what a full queue of vend records
// (each with its own token, key label, address and request id, as under
// a load of distinct connections) holds stays near that bound.
func TestTrailQueueBytes(t *testing.T) {
	st := &flakyStore{broken: true}
	tr, err := audit.New(audit.Config{Store: st, QueueSize: 1 << 20, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	big := spotoken.AuditRecord{Action: spotoken.AuditTokenVend, UserAgent: strings.Repeat("x", 256)}
	for range 10000 {
		tr.Record(big)
	}
	s := tr.Stats()
	if s.Queued < 500 || s.Queued > 2000 || s.DroppedQueueFull != int64(10000-s.Queued) {
		t.Errorf("1 MiB queue of 256-byte records: %+v", s)
	}

	tr, err = audit.New(audit.Config{Store: st}) // the defaults
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; tr.Stats().DroppedQueueFull == 0; i++ {
		token := spotoken.Secret("BQ" + strings.Repeat(strconv.Itoa(i), 300)[:300])
		tr.RecordSecret(spotoken.AuditRecord{Action: spotoken.AuditTokenVend, AppID: "playlist-sync",
			ConnectionID: fmt.Sprintf("user-%d", i), ActorType: spotoken.ActorAPIKey, ActorID: "key_AbCdEfGhI",
			ActorLabel: fmt.Sprintf("worker (sk_%08d…)", i%100), ClientIP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			UserAgent: "worker/" + strconv.Itoa(i), RequestID: fmt.Sprintf("%016x", i), Method: "POST",
			Route: "/v1/connections/{id}/token", Status: 200, Outcome: "ok"}, token)
	}
	for pass := range 2 { // queued; then taken, fingerprinted and kept for a retry
		if pass == 1 {
			if p, err := tr.RunOnce(ctx); err == nil || p.Retained == 0 {
				t.Fatalf("RunOnce on a failing store: %+v, %v", p, err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		t.Logf("a full default queue (pass %d): %d records, %.1f MB held", pass, tr.Stats().Queued, float64(held)/1e6)
		if held > 20e6 {
			t.Errorf("a full default queue holds %.1f MB, more than 20 MB", float64(held)/1e6)
		}
	}
	runtime.KeepAlive(tr)
}

// TestTrailDue: Due is signalled when the queue reaches half of QueueSize,
// not before, and again after a pass emptied it and it filled again.
func TestTrailDue(t *testing.T) {
	tr, err := audit.New(audit.Config{Store: &flakyStore{}, QueueSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	due := func() bool {
		select {
		case <-tr.Due():
			return true
		default:
			return false
		}
	}
	for round := range 2 {
		for i := range 4 {
			if due() {
				t.Fatalf("round %d: Due signalled at %d records queued of 8", round, i)
			}
			tr.Record(spotoken.AuditRecord{Action: spotoken.AuditTokenVend})
		}
		if !due() {
			t.Fatalf("round %d: Due not signalled at 4 records queued of 8", round)
		}
		if err := tr.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTrailCloseBounded: Close gives up on a database that does not
// answer when its deadline passes, and counts and logs what it lost;
// Run returns after it without a flush of its own.
func TestTrailCloseBounded(t *testing.T) {
	st := &stallStore{release: make(chan struct{})}
	defer close(st.release)
	var logs syncBuffer
	tr, err := audit.New(audit.Config{Store: st, FlushInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		tr.Record(spotoken.AuditRecord{Action: spotoken.AuditTokenVend})
	}
	runCtx, cancel := contextWithCancel()
	done := make(chan error)
	go func() { done <- tr.Run(runCtx) }()
	for st.calls.Load() == 0 { // Run's pass is waiting on the store
		time.Sleep(time.Millisecond)
	}
	cctx, ccancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer ccancel()
	start := time.Now()
	if err := tr.Close(cctx); err == nil {
		t.Error("Close lost records without an error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with a 200ms deadline", d)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	tr.Record(spotoken.AuditRecord{Action: spotoken.AuditTokenVend}) // after Close: dropped
	if s := tr.Stats(); s.DroppedWriteFailed != 6 || s.Queued != 0 || s.Written != 0 {
		t.Errorf("stats: %+v", s)
	}
	if !strings.Contains(string(logs.Bytes()), `"records":5`) {
		t.Errorf("no log line of the 5 records lost:\n%s", string(logs.Bytes()))
	}
}

// stallStore's AppendAudit waits for its context or release.
type stallStore struct {
	flakyStore
	calls   atomic.Int32
	release chan struct{}
}

func (s *stallStore) AppendAudit(ctx contextT, records ...spotoken.AuditRecord) error {
	s.calls.Add(1)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.release:
		return s.flakyStore.AppendAudit(ctx, records...)
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
