package server

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestListLimiterConcurrent: many callers of a few keys at once; no key
// ever has more than max listings running, every caller gets its turn
// (the wait is long), and no entry is left behind.
func TestListLimiterConcurrent(t *testing.T) {
	const limit, keys, callers = 2, 3, 60
	l := newListLimiter(limit, time.Minute)
	var running [keys]atomic.Int32
	var peak [keys]atomic.Int32
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := i % keys
			release, ok := l.acquire(context.Background(), string(rune('a'+k)))
			if !ok {
				t.Errorf("caller %d refused with a minute's wait", i)
				return
			}
			n := running[k].Add(1)
			for p := peak[k].Load(); n > p && !peak[k].CompareAndSwap(p, n); p = peak[k].Load() {
			}
			time.Sleep(time.Millisecond) // hold the slot while others arrive
			running[k].Add(-1)
			release()
		}()
	}
	wg.Wait()
	for k := range keys {
		if p := peak[k].Load(); p > limit || p < 1 {
			t.Errorf("key %d: %d listings at once, want 1 to %d", k, p, limit)
		}
	}
	if n := l.inFlight(); n != 0 {
		t.Errorf("%d keys left in the limiter", n)
	}
}

// TestListLimiterCancelled: a waiting caller whose request ends gives up
// its place and leaves no entry behind.
func TestListLimiterCancelled(t *testing.T) {
	l := newListLimiter(1, time.Hour)
	release, ok := l.acquire(context.Background(), "k")
	if !ok {
		t.Fatal("first acquire refused")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() { _, ok := l.acquire(ctx, "k"); done <- ok }()
	cancel()
	if <-done {
		t.Error("a cancelled waiter got a slot")
	}
	release()
	if n := l.inFlight(); n != 0 {
		t.Errorf("%d keys left in the limiter", n)
	}
}

// TestLogPathShortcut: skipping the regexp for paths without "cs_"
// redacts exactly what the regexp alone did.
func TestLogPathShortcut(t *testing.T) {
	for _, p := range []string{"/v1/connections/cs_abc/token", "/x/CS_abc", "/x/cſ_abc", "/v1/connections/user-1/token", "/x/c_s_", "/a/cs_"} {
		want := sessionTokenPattern.ReplaceAllString(p, "cs_[REDACTED]")
		if got := logPath(p); got != want && got != "/connect/[REDACTED]" {
			t.Errorf("logPath(%q) = %q, want %q", p, got, want)
		}
	}
}
