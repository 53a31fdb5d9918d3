package refresh_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/emulator"
	"github.com/spotoken/spotoken/refresh"
)

// TestTally: a tallied engine counts each refresh request to Spotify by
// app, hour and outcome, and a flush adds the counts to the store; a
// transient failure leaves a connection.refresh_failed event with its code.
func TestTally(t *testing.T) {
	var tally *refresh.Tally
	w := newWorld(t, "never", func(c *refresh.Config) {
		tally = &refresh.Tally{Now: c.Now}
		c.Refresher = tally.Refresher(c.Refresher)
		c.MaxBackoff = time.Second // each failure below may be retried at once
	})
	tally.Store = w.store
	key := w.connect("u1", "user-read-email")
	hour := w.emu.Now().UTC().Truncate(time.Hour)

	step := func(what string, faults *emulator.Faults) error {
		t.Helper()
		if err := w.emu.SetFaults(emulator.Faults{}); err != nil {
			t.Fatal(err)
		}
		if faults != nil {
			if err := w.emu.SetFaults(*faults); err != nil {
				t.Fatal(err)
			}
		}
		w.emu.Advance(2 * time.Second) // out of the previous backoff
		_, err := w.engine.Refresh(ctx, key)
		return err
	}
	retry := 30
	for _, s := range []struct {
		what   string
		faults *emulator.Faults
	}{
		{"refresh", nil},
		{"refresh again", nil},
		{"5xx", &emulator.Faults{TokenStatus: 503}},
		{"429", &emulator.Faults{TokenStatus: 429, RetryAfter: &retry, Count: 1}},
	} {
		step(s.what, s.faults)
		if s.faults != nil && s.faults.TokenStatus == 429 {
			w.emu.Advance(time.Minute) // past the app's window
		}
	}
	if err := tally.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The next hour: Spotify refuses the grant.
	w.emu.Advance(time.Hour)
	if err := w.emu.RevokeGrant("alice", clientID); err != nil {
		t.Fatal(err)
	}
	if err := step("invalid_grant", nil); !errors.Is(err, spotoken.ErrNeedsReauth) {
		t.Fatalf("refresh after the revocation: %v", err)
	}
	if err := tally.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tally.Flush(ctx); err != nil { // nothing new: adds nothing
		t.Fatal(err)
	}
	got, err := w.store.RefreshTallies(ctx, appID, hour.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := []spotoken.RefreshTally{
		{AppID: appID, Hour: hour, Refreshed: 2, Failed: 1, RateLimited: 1},
		{AppID: appID, Hour: hour.Add(time.Hour), Failed: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("tallies %+v, want %+v", got, want)
	}
	for i := range want {
		if !got[i].Hour.Equal(want[i].Hour) || got[i].Refreshed != want[i].Refreshed || got[i].Failed != want[i].Failed ||
			got[i].RateLimited != want[i].RateLimited {
			t.Errorf("tally %d: %+v, want %+v", i, got[i], want[i])
		}
	}

	// The timeline's story: refreshed twice, failed with server_error and
	// rate_limited (with the attempt and when it is retried), then refused.
	evs, err := w.store.Events(ctx, spotoken.EventFilter{AppID: appID, ConnectionID: key.ID})
	if err != nil {
		t.Fatal(err)
	}
	var failed []map[string]any
	types := map[spotoken.EventType]int{}
	for _, e := range evs {
		types[e.Type]++
		if e.Type == spotoken.EventConnectionRefreshFailed {
			var data map[string]any
			if err := json.Unmarshal(e.Data, &data); err != nil {
				t.Fatal(err)
			}
			failed = append(failed, data)
		}
	}
	if types[spotoken.EventConnectionRefreshed] != 2 || types[spotoken.EventConnectionNeedsReauth] != 1 || len(failed) != 2 {
		t.Fatalf("events %v, want 2 refreshed, 2 refresh_failed, 1 needs_reauth", types)
	}
	// Newest first: the 429, then the 503.
	for i, want := range []struct {
		code    string
		attempt float64
	}{{"rate_limited", 2}, {"server_error", 1}} {
		if failed[i]["error"] != want.code || failed[i]["attempt"] != want.attempt || failed[i]["retry_at"] == nil || failed[i]["connection_id"] != key.ID {
			t.Errorf("refresh_failed %d: %v, want error %s, attempt %v, retry_at", i, failed[i], want.code, want.attempt)
		}
	}
}

// flakyTallies is a TallyStore that refuses the first adds.
type flakyTallies struct {
	mu    sync.Mutex
	fails int
	added []spotoken.RefreshTally
	swept []time.Time
}

func (f *flakyTallies) AddRefreshTallies(_ context.Context, ts ...spotoken.RefreshTally) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		return errors.New("database is down")
	}
	f.added = append(f.added, ts...)
	return nil
}

func (f *flakyTallies) DeleteRefreshTalliesBefore(_ context.Context, before time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.swept = append(f.swept, before)
	return 0, nil
}

// TestTallyFlushFailureKeepsCounts: counts a failed flush took are added
// by the next one, with what was counted meanwhile; a canceled request is
// not counted; the sweep runs at most once an hour.
func TestTallyFlushFailureKeepsCounts(t *testing.T) {
	now := time.Date(2026, 7, 1, 12, 30, 0, 0, time.UTC)
	store := &flakyTallies{fails: 1}
	tally := &refresh.Tally{Store: store, Now: func() time.Time { return now }}
	tally.Count("a", nil)
	tally.Count("a", errors.New("connection refused"))
	tally.Count("a", context.Canceled)
	if err := tally.Flush(ctx); err == nil {
		t.Fatal("the first flush did not fail")
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); tally.Count("a", nil) }()
	}
	wg.Wait()
	tally.Count("b", nil)
	if err := tally.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	byApp := map[string]spotoken.RefreshTally{}
	for _, a := range store.added {
		byApp[a.AppID] = a
	}
	if a := byApp["a"]; len(store.added) != 2 || a.Refreshed != 51 || a.Failed != 1 || a.RateLimited != 0 || !a.Hour.Equal(now.Truncate(time.Hour)) {
		t.Errorf("added %+v, want a: 51 refreshed, 1 failed at 12:00, and b", store.added)
	}
	for range 3 {
		if err := tally.Sweep(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Hour)
	if err := tally.Sweep(ctx, false); err != nil {
		t.Fatal(err)
	}
	if len(store.swept) != 2 || !store.swept[0].Equal(now.Add(-time.Hour-refresh.DefaultTallyRetention)) {
		t.Errorf("sweeps %v, want 2 an hour apart, keeping 8 days", store.swept)
	}
}
