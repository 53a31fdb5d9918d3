package refresh

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spotoken/spotoken"
)

// A refresh token that Spotify rotated exists only in this process between
// Spotify's answer and the commit: if the store does not take the answer,
// the connection's stored refresh token is the old one, which Spotify may
// no longer accept. Two rules keep that window as small as it can be:
//
//   - No refresh is sent while the store is known to be away (storeAway):
//     its answer could not be committed.
//   - An answer that rotated the refresh token and that the store did not
//     take (the database went away while Spotify was answering) is held in
//     memory and its commit retried in the background, for up to
//     Config.CommitPatience, keeping the lease all the while so that no
//     flight of this replica (uncommitted), nor of another while the lease
//     lasts, refreshes with the old token. Callers are answered at once, as
//     for any store outage: a still-valid token from memory, or
//     unavailable.

// availability is what a store that knows when its database is away
// offers (internal/dbguard.Guard): Unavailable returns
// spotoken.ErrStoreUnavailable while it is, and calls nothing.
type availability interface{ Unavailable() error }

// storeAway returns the store's unavailability, if it knows of one.
func (e *Engine) storeAway() error {
	if a, ok := e.cfg.Store.(availability); ok {
		return a.Unavailable()
	}
	return nil
}

// errKeptLease marks a commit handed to keepCommitting: the flight must
// not release the lease.
var errKeptLease = errors.New("refresh: the answer is held and its commit retried")

// uncommitted returns an error while a rotated answer for key waits to be
// stored: refreshing now would send the refresh token it replaced.
func (e *Engine) uncommitted(key spotoken.ConnectionKey) error {
	if _, ok := e.committing.Load(key); !ok {
		return nil
	}
	return fmt.Errorf("refresh %s: %w", key, &spotoken.Error{Code: spotoken.EStoreUnavailable, RetryAfter: time.Second,
		Message: "the connection's last refresh is not stored yet; try again later"})
}

// Retry pacing of keepCommitting, in real time.
const (
	commitRetryMin = 100 * time.Millisecond
	commitRetryMax = 2 * time.Second
)

// keepCommitting retries update (a rotated refresh's commit, guarded by
// the row version) until the store takes it (releasing owner's lease in
// the same transaction), a writer without the lease changed the connection
// (its grant wins, as in commit), or CommitPatience has passed; then it
// releases owner's lease. Drain waits for it.
func (e *Engine) keepCommitting(key spotoken.ConnectionKey, owner string, update func(*spotoken.Connection) ([]spotoken.Event, error), gen uint64, first error) {
	done := make(chan struct{})
	e.committing.Store(key, done)
	e.inflight.add()
	e.log.Warn("the store did not take a rotated refresh token; holding it and retrying the commit",
		"connection", key.String(), "err", first)
	go func() {
		defer e.inflight.done()
		defer func() {
			e.committing.Delete(key)
			close(done)
		}()
		start, wait := time.Now(), commitRetryMin
		t := time.NewTimer(wait)
		defer t.Stop()
		for {
			<-t.C
			// A context of its own: no caller's request is charged for it.
			// The commit gives up the lease in its own transaction.
			ctx, cancel := context.WithTimeout(spotoken.ReleasingLease(context.Background(), owner), e.cfg.FlightTimeout)
			c, err := e.cfg.Store.UpdateConnection(ctx, key, update)
			cancel()
			switch {
			case err == nil:
				e.committed(key, c, gen, true)
				e.log.Info("rotated refresh token stored after a retry", "connection", key.String(), "held_for", time.Since(start).Round(time.Millisecond))
				return
			case errors.Is(err, spotoken.ErrConflict), errors.Is(err, spotoken.ErrNotFound):
				e.log.Warn("rotated refresh token dropped: the connection changed meanwhile", "connection", key.String(), "err", err)
			case time.Since(start) >= e.cfg.CommitPatience:
				// The lease runs out on its own; the next refresh sends the
				// old token, and an invalid_grant then needs the user again.
				e.log.Error("rotated refresh token lost: the store did not take it in time", "connection", key.String(),
					"held_for", time.Since(start).Round(time.Second), "err", err)
				return
			default:
				wait = min(2*wait, commitRetryMax)
				t.Reset(wait)
				continue
			}
			ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
			if err := e.cfg.Store.ReleaseLease(ctx, key, owner); err != nil && !errors.Is(err, spotoken.ErrLeaseLost) {
				e.log.Warn("release lease", "connection", key.String(), "err", err)
			}
			cancel()
			return
		}
	}()
}
