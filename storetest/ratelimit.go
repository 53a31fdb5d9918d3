package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
)

// testRateLimits: an app's rate-limit window (RateLimitStore) only grows,
// also under concurrent extensions from many writers, is per app, is
// listed while it lasts, and goes with its app.
func testRateLimits(t *testing.T, h *harness) {
	now := h.clock.Now()
	h.newApp(t, "a")
	h.newApp(t, "b")

	if until, err := h.store.RateLimitedUntil(ctx, "a"); err != nil || !until.IsZero() {
		t.Errorf("before any window: %v, %v; want the zero time", until, err)
	}
	_, err := h.store.ExtendRateLimit(ctx, "nope", now.Add(time.Hour))
	wantErr(t, "extend an unknown app", err, spotoken.ErrNotFound)

	extend := func(app string, until time.Time, want time.Time) {
		t.Helper()
		got, err := h.store.ExtendRateLimit(ctx, app, until)
		if err != nil {
			t.Fatalf("ExtendRateLimit(%s, %v): %v", app, until, err)
		}
		if !got.Equal(want) {
			t.Errorf("ExtendRateLimit(%s, %v) = %v, want %v", app, until, got, want)
		}
		if read, err := h.store.RateLimitedUntil(ctx, app); err != nil || !read.Equal(want) {
			t.Errorf("RateLimitedUntil(%s) = %v, %v; want %v", app, read, err, want)
		}
	}
	twoHours := now.Add(2*time.Hour + 1234*time.Microsecond) // the store keeps microseconds
	extend("a", twoHours, twoHours)
	extend("a", now.Add(time.Hour), twoHours) // a shorter Retry-After does not shorten it
	extend("a", twoHours, twoHours)
	later := twoHours.Add(time.Minute)
	extend("a", later, later)
	if until, _ := h.store.RateLimitedUntil(ctx, "b"); !until.IsZero() {
		t.Errorf("app b has window %v from app a's", until)
	}
	extend("b", now.Add(time.Minute), now.Add(time.Minute))

	list := func(after time.Time) []spotoken.AppRateLimit {
		t.Helper()
		l, err := h.store.RateLimits(ctx, after)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	want := []spotoken.AppRateLimit{{AppID: "a", Until: later}, {AppID: "b", Until: now.Add(time.Minute)}}
	if d := diff(list(now), want); d != "" {
		t.Errorf("RateLimits(now) (-got +want):\n%s", d)
	}
	if d := diff(list(time.Time{}), want); d != "" {
		t.Errorf("RateLimits(zero time) (-got +want):\n%s", d)
	}
	if d := diff(list(now.Add(time.Minute)), want[:1]); d != "" {
		t.Errorf("RateLimits(now+1m): a window that ends then is over (-got +want):\n%s", d)
	}
	if l := list(later); len(l) != 0 {
		t.Errorf("RateLimits(after every window) = %v", l)
	}

	// Replicas that got 429 at once: each writes its own Retry-After; the
	// longest wins, and nobody sees the window shorter than what it wrote.
	h.newApp(t, "c")
	const writers = 50
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			mine := now.Add(time.Duration(i*37%writers+1) * time.Minute)
			got, err := h.store.ExtendRateLimit(ctx, "c", mine)
			if err == nil && got.Before(mine) {
				err = fmt.Errorf("writer %d: ExtendRateLimit(%v) = %v, earlier than it asked", i, mine, got)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if until, _ := h.store.RateLimitedUntil(ctx, "c"); !until.Equal(now.Add(writers * time.Minute)) {
		t.Errorf("after %d concurrent writers: %v, want the longest, %v", writers, until, now.Add(writers*time.Minute))
	}

	// The window goes with its app.
	if err := h.store.DeleteApp(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	h.newApp(t, "a")
	if until, _ := h.store.RateLimitedUntil(ctx, "a"); !until.IsZero() {
		t.Errorf("a new app a inherited window %v", until)
	}
}
