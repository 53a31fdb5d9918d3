package refresh_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/refresh"
)

// outageStore is a store whose database the test takes away: Unavailable
// reports it, as internal/dbguard.Guard does, and with failCommits set
// every UpdateConnection fails as a call to an unreachable database does.
type outageStore struct {
	refresh.Store
	away, failCommits atomic.Bool
	commits           atomic.Int64
}

var errAway = &spotoken.Error{Code: spotoken.EStoreUnavailable, Message: "the database cannot be reached; try again later"}

func (s *outageStore) Unavailable() error {
	if s.away.Load() {
		return errAway
	}
	return nil
}

func (s *outageStore) UpdateConnection(ctx context.Context, key spotoken.ConnectionKey, fn func(c *spotoken.Connection) ([]spotoken.Event, error)) (*spotoken.Connection, error) {
	if s.failCommits.Load() {
		return nil, errAway
	}
	c, err := s.Store.UpdateConnection(ctx, key, fn)
	if err == nil {
		s.commits.Add(1)
	}
	return c, err
}

func newOutageWorld(t *testing.T, mode string) (*world, *outageStore) {
	var os *outageStore
	w := newWorld(t, mode, func(c *refresh.Config) {
		os = &outageStore{Store: c.Store}
		c.Store = os
	})
	return w, os
}

// TestNoRefreshWhileStoreAway: with the store known to be away, no refresh
// token is sent to Spotify (its answer could not be committed); the caller
// hears unavailable at once; when the store is back, refreshing resumes.
func TestNoRefreshWhileStoreAway(t *testing.T) {
	w, store := newOutageWorld(t, "always")
	key := w.connect("c1")
	w.emu.Advance(time.Hour)
	store.away.Store(true)
	for range 3 {
		if _, err := w.engine.Token(ctx, key, 0); !errors.Is(err, spotoken.ErrStoreUnavailable) {
			t.Fatalf("token while the store is away: %v, want unavailable", err)
		}
		if _, err := w.engine.Refresh(ctx, key); !errors.Is(err, spotoken.ErrStoreUnavailable) {
			t.Fatalf("refresh while the store is away: %v, want unavailable", err)
		}
	}
	if n := w.refreshes(); n != 0 {
		t.Fatalf("%d refresh tokens sent to Spotify while the store was away", n)
	}
	store.away.Store(false)
	at, err := w.engine.Token(ctx, key, 0)
	if err != nil || w.refreshes() != 1 || w.me(at.Token) != 200 {
		t.Fatalf("after the store came back: %v, %d refreshes", err, w.refreshes())
	}
}

// TestRotatedAnswerHeldUntilStored: the database goes away while Spotify
// answers a refresh that rotates the refresh token. The caller is answered
// at once; the engine holds the answer and the lease, sends no other
// refresh (which would spend the old, replaced token), and stores the
// answer when the database is back: the connection keeps working and was
// refreshed once.
func TestRotatedAnswerHeldUntilStored(t *testing.T) {
	w, store := newOutageWorld(t, "always")
	key := w.connect("c1")
	old, err := w.store.Connection(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	w.emu.Advance(time.Hour)
	store.failCommits.Store(true)
	if _, err := w.engine.Token(ctx, key, 0); !errors.Is(err, spotoken.ErrStoreUnavailable) {
		t.Fatalf("token when the commit fails: %v, want unavailable", err)
	}
	if n := w.refreshes(); n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
	c, err := w.store.Connection(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if c.Token.RefreshToken != old.Token.RefreshToken || !c.Lease.Held(w.emu.Now()) {
		t.Fatalf("while the commit waits: refresh token changed %v, lease held %v; want the old token, the lease kept",
			c.Token.RefreshToken != old.Token.RefreshToken, c.Lease.Held(w.emu.Now()))
	}
	for range 3 {
		if _, err := w.engine.Token(ctx, key, 0); !errors.Is(err, spotoken.ErrStoreUnavailable) {
			t.Errorf("token while the answer waits to be stored: %v, want unavailable", err)
		}
		if _, err := w.engine.Refresh(ctx, key); !errors.Is(err, spotoken.ErrStoreUnavailable) {
			t.Errorf("refresh while the answer waits to be stored: %v, want unavailable", err)
		}
	}
	if n := w.refreshes(); n != 1 {
		t.Fatalf("%d refreshes while the rotated answer waited: the old refresh token was sent again", n)
	}

	store.failCommits.Store(false)
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := w.engine.Drain(dctx); err != nil {
		t.Fatal(err)
	}
	c, err = w.store.Connection(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if c.Token.RefreshToken == old.Token.RefreshToken || c.Lease.Owner != "" || store.commits.Load() != 1 {
		t.Fatalf("after the store came back: rotated token stored %v, lease %q, %d commits",
			c.Token.RefreshToken != old.Token.RefreshToken, c.Lease.Owner, store.commits.Load())
	}
	at, err := w.engine.Token(ctx, key, 0)
	if err != nil || w.me(at.Token) != 200 {
		t.Fatalf("token after the commit: %v", err)
	}
	// The stored refresh token is the one Spotify accepts now.
	w.emu.Advance(time.Hour)
	if at, err := w.engine.Token(ctx, key, 0); err != nil || w.me(at.Token) != 200 || w.refreshes() != 2 {
		t.Fatalf("the next refresh: %v, %d refreshes", err, w.refreshes())
	}
}
