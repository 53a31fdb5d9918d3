package server

import (
	"sync"
	"time"

	"github.com/spotoken/spotoken"
)

// linkReuse is how long a re-consent link minted for a connection is
// handed out again, instead of a new one, to the app's next requests that
// find the connection needing the user (a token request of a needs_reauth
// connection, a proxied call missing a scope).
const linkReuse = time.Minute

// maxReconsentLinks bounds the links remembered for reuse.
const maxReconsentLinks = 10000

// reconsentLinks remembers recently minted re-consent links, so that a
// service asking again and again for a connection that needs its user
// (a retry loop, a job going through its users) gets the same link for
// linkReuse rather than a new pending authorization each time: each is a
// database write, and each counts against the app's Config.MaxPending,
// which such a loop would otherwise fill for every other connect link of
// the app. A link is reused only for the same connection and scopes,
// while it has at least half its time left, and not after it was opened on
// this replica (opened on another one, it answers "already used" to the
// user for at most linkReuse). They are bearer links the app was already
// given; they are kept in memory only, like tokens.
//
// An app found at its cap of pending links is not asked again for
// capPause: its next requests answer without a link (as the one that met
// the cap did) and without a write that would only count the links to
// find the cap still reached.
type reconsentLinks struct {
	mu     sync.Mutex
	m      map[spotoken.ConnectionKey]reconsentLink
	capped map[string]time.Time // app → until when not to mint
}

// capPause is how long an app at its cap of pending links gets no
// re-consent link minted.
const capPause = 10 * time.Second

// atCap reports whether app met its cap of pending links within capPause.
func (l *reconsentLinks) atCap(app string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	until, ok := l.capped[app]
	return ok && now.Before(until) && !now.Before(until.Add(-capPause))
}

// metCap records that minting a link for app met its cap.
func (l *reconsentLinks) metCap(app string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.capped == nil {
		l.capped = map[string]time.Time{}
	}
	l.capped[app] = now.Add(capPause)
}

type reconsentLink struct {
	scopes  string // the scopes asked, "" for the connection's own
	sess    ConnectSession
	minted  time.Time
	halfway time.Time // when half its life is gone
}

// get returns the link to hand out again for key and scopes, if any.
func (l *reconsentLinks) get(key spotoken.ConnectionKey, scopes string, now time.Time) (ConnectSession, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[key]
	if !ok || e.scopes != scopes || !e.fresh(now) {
		return ConnectSession{}, false
	}
	return e.sess, true
}

func (e reconsentLink) fresh(now time.Time) bool {
	return !now.Before(e.minted) && now.Sub(e.minted) < linkReuse && now.Before(e.halfway)
}

// put remembers a link just minted. Past maxReconsentLinks the stale ones
// are dropped; if none is, the link is not remembered.
func (l *reconsentLinks) put(key spotoken.ConnectionKey, scopes string, sess ConnectSession, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[spotoken.ConnectionKey]reconsentLink{}
	}
	if _, ok := l.m[key]; !ok && len(l.m) >= maxReconsentLinks {
		l.sweepLocked(now)
		if len(l.m) >= maxReconsentLinks {
			return
		}
	}
	l.m[key] = reconsentLink{scopes: scopes, sess: sess, minted: now, halfway: now.Add(sess.ExpiresAt.Sub(now) / 2)}
}

// forget drops key's link: it was opened.
func (l *reconsentLinks) forget(key spotoken.ConnectionKey) {
	l.mu.Lock()
	delete(l.m, key)
	l.mu.Unlock()
}

// sweep drops the links no longer handed out.
func (l *reconsentLinks) sweep(now time.Time) {
	l.mu.Lock()
	l.sweepLocked(now)
	l.mu.Unlock()
}

func (l *reconsentLinks) sweepLocked(now time.Time) {
	for k, e := range l.m {
		if !e.fresh(now) {
			delete(l.m, k)
		}
	}
	for app, until := range l.capped {
		if !now.Before(until) {
			delete(l.capped, app)
		}
	}
}
