package refresh_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/refresh"
)

// gatedReads is a store whose reads of a connection wait for open, and
// are counted.
type gatedReads struct {
	refresh.Store
	open  chan struct{}
	reads atomic.Int64
}

func (s *gatedReads) Connection(ctx context.Context, key spotoken.ConnectionKey) (*spotoken.Connection, error) {
	s.reads.Add(1)
	<-s.open
	return s.Store.Connection(ctx, key)
}

// TestColdVendsShareOneRead: callers that miss the engine's memory for
// the same connection at once, its stored token good, share one read of
// the row (done on the first caller's goroutine) and get the same token;
// nothing is refreshed.
func TestColdVendsShareOneRead(t *testing.T) {
	var gr *gatedReads
	w := newWorld(t, "always", func(c *refresh.Config) {
		gr = &gatedReads{Store: c.Store, open: make(chan struct{})}
		c.Store = gr
	})
	key := w.connect("c1")
	const callers = 200
	tokens := make([]spotoken.Secret, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at, err := w.engine.Token(ctx, key, time.Minute)
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
			}
			tokens[i] = at.Token
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); refresh.ReadJoiners(w.engine, key) != callers-1; {
		if time.Now().After(deadline) {
			t.Fatalf("%d callers joined the first one's read, want %d", refresh.ReadJoiners(w.engine, key), callers-1)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	close(gr.open)
	wg.Wait()
	if n := gr.reads.Load(); n != 1 {
		t.Errorf("%d reads of the row for %d callers, want 1", n, callers)
	}
	for i, tok := range tokens {
		if tok == "" || tok != tokens[0] {
			t.Fatalf("caller %d got token %q, caller 0 %q", i, tok, tokens[0])
		}
	}
	if st := w.engine.Stats(); st.VendsStore != 1 || st.VendsRefresh != 0 || w.refreshes() != 0 {
		t.Errorf("vends from the store %d, from a refresh %d, refresh requests %d; want 1, 0, 0", st.VendsStore, st.VendsRefresh, w.refreshes())
	}
}
