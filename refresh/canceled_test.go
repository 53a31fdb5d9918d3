package refresh_test

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestCanceledCallerStartsNothing: a call whose context has already ended
// answers the context's error and starts no read or refresh. Before, it
// started a flight (which outlives its caller) and then chose at random
// between the ended context and the flight's answer, when the flight was
// quick enough to be done first: client/local's TestLocalErrors once got
// the connection's needs_reauth instead of context.Canceled in CI, and
// each such call could cost a refresh at Spotify that no one waited for.
func TestCanceledCallerStartsNothing(t *testing.T) {
	w := newWorld(t, "always", nil)
	key := w.connect("u1")
	stale, err := w.engine.Token(ctx, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.emu.Advance(2 * time.Hour) // the stored token has expired: a flight would refresh
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	calls := []struct {
		name string
		call func() error
	}{
		{"Token", func() error { _, err := w.engine.Token(canceled, key, 0); return err }},
		{"Refresh", func() error { _, err := w.engine.Refresh(canceled, key); return err }},
		{"Invalidate", func() error { _, err := w.engine.Invalidate(canceled, key, stale.Token); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with an ended context: %v, want context.Canceled", c.name, err)
		}
		if err := w.engine.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if n := w.refreshes(); n != 0 {
			t.Fatalf("%s with an ended context: %d refreshes at the emulator, want 0", c.name, n)
		}
	}
	// The engine still serves a caller whose context is alive.
	if _, err := w.engine.Token(ctx, key, 0); err != nil {
		t.Fatal(err)
	}
	if n := w.refreshes(); n != 1 {
		t.Fatalf("%d refreshes after a live caller's Token, want 1", n)
	}
}
