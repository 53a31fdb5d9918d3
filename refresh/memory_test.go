package refresh_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/refresh"
)

// TestUnknownIDsHoldNothing: asking for connections that do not exist, and
// forgetting them, leaves nothing behind per id (an API key could otherwise
// grow a shared broker's memory without bound with made-up ids), while a
// real connection is still cached and a Forget still keeps a token read
// before it out of memory.
func TestUnknownIDsHoldNothing(t *testing.T) {
	w := newWorld(t, "never", nil)
	const n = 5_000
	for i := range n {
		key := spotoken.ConnectionKey{AppID: appID, ID: fmt.Sprintf("made-up-%d", i)}
		if _, err := w.engine.Token(ctx, key, 0); !errors.Is(err, spotoken.ErrNotFound) {
			t.Fatalf("token of %s: %v, want not found", key, err)
		}
		w.engine.Forget(key)
	}
	if got := refresh.KeysHeld(w.engine); got != 0 {
		t.Errorf("after %d unknown ids the engine holds %d per-key entries, want 0", n, got)
	}

	key := w.connect("real")
	if _, err := w.engine.Token(ctx, key, 0); err != nil {
		t.Fatal(err)
	}
	if got := refresh.KeysHeld(w.engine); got != 1 {
		t.Errorf("after vending one real connection the engine holds %d entries, want 1", got)
	}
	w.engine.Forget(key)
	if got := refresh.KeysHeld(w.engine); got != 0 {
		t.Errorf("after Forget the engine holds %d entries, want 0", got)
	}
}
