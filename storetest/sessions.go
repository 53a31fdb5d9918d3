package storetest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/seal"
)

// The web session cases: round trips, expiry (idle and absolute), the caps
// and whom they evict, concurrent creation against the caps, tampering with
// the bound columns, and re-sealing. testNoPlaintext writes session rows too.

var errInvalid = &spotoken.Error{Code: spotoken.EInvalid}

// sessionHash is the id hash of a test session named name.
func sessionHash(name string) [32]byte { return sha256.Sum256([]byte("cookie value of " + name)) }

// newWebSession creates a session named name in scope for app and subject,
// with secrets the dump search looks for, an hour's idle timeout and twelve
// hours' life unless mutate changes them.
func (h *harness) newWebSession(t *testing.T, name, scope, app, subject string, limits spotoken.WebSessionLimits, mutate func(*spotoken.WebSession)) *spotoken.WebSession {
	t.Helper()
	s := &spotoken.WebSession{
		IDHash: sessionHash(name), Scope: scope, AppID: app, Subject: subject,
		CSRF: marker("csrf", name), Data: marker("session-data", name),
		IdleTimeout: time.Hour, ExpiresAt: h.clock.Now().Add(12 * time.Hour),
	}
	if mutate != nil {
		mutate(s)
	}
	if _, err := h.store.CreateWebSession(ctx, s, limits); err != nil {
		t.Fatalf("CreateWebSession(%s): %v", name, err)
	}
	return s
}

// liveSessions returns which of names have a live session.
func (h *harness) liveSessions(t *testing.T, store spotoken.Store, names ...string) []string {
	t.Helper()
	var live []string
	for _, n := range names {
		_, err := store.WebSession(ctx, sessionHash(n))
		switch {
		case err == nil:
			live = append(live, n)
		case !errors.Is(err, spotoken.ErrNotFound) && !errors.Is(err, spotoken.ErrExpired):
			t.Fatalf("WebSession(%s): %v", n, err)
		}
	}
	return live
}

func testWebSessions(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	now := h.clock.Now()
	s := &spotoken.WebSession{
		IDHash: sessionHash("s1"), Scope: "dashboard:a", AppID: "a", Subject: "key1",
		CSRF: marker("csrf", "s1"), Data: `{"flash":"x"}`,
		IdleTimeout: time.Hour + 7*time.Nanosecond, ExpiresAt: now.Add(12 * time.Hour),
	}
	evicted, err := h.store.CreateWebSession(ctx, s, spotoken.WebSessionLimits{PerScope: 10, PerSubject: 10})
	if err != nil || evicted != 0 {
		t.Fatalf("CreateWebSession = %d, %v", evicted, err)
	}
	want := *s
	want.CreatedAt, want.LastSeenAt, want.IdleTimeout = now, now, time.Hour
	if d := diff(s, &want); d != "" {
		t.Errorf("CreateWebSession left (-got +want):\n%s", d)
	}
	got, err := h.store.WebSession(ctx, s.IDHash)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(got, &want); d != "" {
		t.Errorf("WebSession round trip (-got +want):\n%s", d)
	}
	if !got.EndsAt().Equal(now.Add(time.Hour)) {
		t.Errorf("EndsAt = %v, want an hour on", got.EndsAt())
	}

	_, err = h.store.CreateWebSession(ctx, &spotoken.WebSession{IDHash: s.IDHash, Scope: "dashboard:b", AppID: "b", CSRF: "c",
		ExpiresAt: now.Add(time.Hour)}, spotoken.WebSessionLimits{})
	wantErr(t, "duplicate id hash", err, spotoken.ErrConflict)
	for name, bad := range map[string]*spotoken.WebSession{
		"unknown app": {IDHash: sessionHash("x1"), Scope: "dashboard:zzz", AppID: "zzz", CSRF: "c", ExpiresAt: now.Add(time.Hour)},
		"no scope":    {IDHash: sessionHash("x2"), CSRF: "c", ExpiresAt: now.Add(time.Hour)},
		"no CSRF":     {IDHash: sessionHash("x3"), Scope: "admin", ExpiresAt: now.Add(time.Hour)},
		"no expiry":   {IDHash: sessionHash("x4"), Scope: "admin", CSRF: "c"},
		"negative idle timeout": {IDHash: sessionHash("x5"), Scope: "admin", CSRF: "c", ExpiresAt: now.Add(time.Hour),
			IdleTimeout: -time.Second},
	} {
		_, err := h.store.CreateWebSession(ctx, bad, spotoken.WebSessionLimits{})
		target := errInvalid
		if name == "unknown app" {
			target = spotoken.ErrNotFound
		}
		wantErr(t, name, err, target)
		if _, err := h.store.WebSession(ctx, bad.IDHash); !errors.Is(err, spotoken.ErrNotFound) {
			t.Errorf("%s: a refused session was stored (%v)", name, err)
		}
	}
	_, err = h.store.WebSession(ctx, sessionHash("never"))
	wantErr(t, "unknown session", err, spotoken.ErrNotFound)

	// An operator's session belongs to no app.
	admin := h.newWebSession(t, "admin1", "admin", "", "op1", spotoken.WebSessionLimits{}, func(s *spotoken.WebSession) { s.Data = "" })
	if got, err := h.store.WebSession(ctx, admin.IDHash); err != nil || got.AppID != "" || got.Data != "" || got.Subject != "op1" {
		t.Errorf("admin session: %+v, %v", got, err)
	}

	// Update saves the CSRF token and the data, nothing else.
	h.clock.Advance(time.Minute)
	updated, err := h.store.UpdateWebSession(ctx, s.IDHash, func(u *spotoken.WebSession) error {
		if u.Data != `{"flash":"x"}` || u.CSRF != s.CSRF {
			t.Errorf("UpdateWebSession gave fn %+v", u)
		}
		u.Data, u.CSRF = "", marker("csrf-rotated", "s1")
		u.Scope, u.AppID, u.Subject, u.ExpiresAt, u.IdleTimeout = "dashboard:b", "b", "key9", now.Add(99*time.Hour), 0
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want.Data, want.CSRF = "", marker("csrf-rotated", "s1")
	if d := diff(updated, &want); d != "" {
		t.Errorf("UpdateWebSession returned (-got +want):\n%s", d)
	}
	if got, _ := h.store.WebSession(ctx, s.IDHash); diff(got, &want) != "" {
		t.Errorf("after UpdateWebSession (-got +want):\n%s", diff(got, &want))
	}
	boom := errors.New("boom")
	if _, err := h.store.UpdateWebSession(ctx, s.IDHash, func(u *spotoken.WebSession) error { u.Data = "lost"; return boom }); err != boom {
		t.Errorf("UpdateWebSession with fn failing = %v, want fn's error as is", err)
	}
	_, err = h.store.UpdateWebSession(ctx, s.IDHash, func(u *spotoken.WebSession) error { u.CSRF = ""; return nil })
	wantErr(t, "update emptying the CSRF token", err, errInvalid)
	if got, _ := h.store.WebSession(ctx, s.IDHash); got.Data != "" || got.CSRF != want.CSRF {
		t.Errorf("a failed update changed the session: %+v", got)
	}
	_, err = h.store.UpdateWebSession(ctx, sessionHash("never"), func(*spotoken.WebSession) error { return nil })
	wantErr(t, "update unknown", err, spotoken.ErrNotFound)

	// Delete one; delete a subject's; an app's deletion takes its sessions.
	if err := h.store.DeleteWebSession(ctx, s.IDHash); err != nil {
		t.Fatal(err)
	}
	_, err = h.store.WebSession(ctx, s.IDHash)
	wantErr(t, "deleted session", err, spotoken.ErrNotFound)
	wantErr(t, "delete twice", h.store.DeleteWebSession(ctx, s.IDHash), spotoken.ErrNotFound)

	none := spotoken.WebSessionLimits{}
	for i := range 3 {
		h.newWebSession(t, fmt.Sprint("k1-", i), "dashboard:a", "a", "key1", none, nil)
	}
	h.newWebSession(t, "k2", "dashboard:a", "a", "key2", none, nil)
	h.newWebSession(t, "k1-other-scope", "bff:a", "a", "key1", none, nil)
	h.newWebSession(t, "b1", "dashboard:b", "b", "key1", none, nil)
	n, err := h.store.DeleteWebSessions(ctx, "dashboard:a", "key1")
	if err != nil || n != 3 {
		t.Errorf("DeleteWebSessions(dashboard:a, key1) = %d, %v; want 3", n, err)
	}
	all := []string{"k1-0", "k1-1", "k1-2", "k2", "k1-other-scope", "b1", "admin1"}
	if live := h.liveSessions(t, h.store, all...); !slices.Equal(live, []string{"k2", "k1-other-scope", "b1", "admin1"}) {
		t.Errorf("after deleting key1's dashboard:a sessions, live: %v", live)
	}
	if n, err := h.store.DeleteWebSessions(ctx, "dashboard:a", "nobody"); err != nil || n != 0 {
		t.Errorf("DeleteWebSessions of nobody = %d, %v", n, err)
	}
	if err := h.store.DeleteApp(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if live := h.liveSessions(t, h.store, all...); !slices.Equal(live, []string{"b1", "admin1"}) {
		t.Errorf("after deleting app a, live: %v; want b's and the operator's", live)
	}
}

func testWebSessionExpiry(t *testing.T, h *harness) {
	h.newApp(t, "a")
	none := spotoken.WebSessionLimits{}
	t0 := h.clock.Now()
	idle := h.newWebSession(t, "idle", "dashboard:a", "a", "k", none, func(s *spotoken.WebSession) { s.ExpiresAt = t0.Add(90 * time.Minute) })
	fixed := h.newWebSession(t, "fixed", "dashboard:a", "a", "k", none, func(s *spotoken.WebSession) {
		s.IdleTimeout, s.ExpiresAt = 0, t0.Add(100*time.Minute)
	})
	short := h.newWebSession(t, "short", "dashboard:a", "a", "k", none, func(s *spotoken.WebSession) { s.IdleTimeout = time.Minute })

	// A use moves the idle end; a late report of an earlier use does not
	// move it back.
	h.clock.Advance(50 * time.Minute)
	if err := h.store.TouchWebSession(ctx, idle.IDHash, h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := h.store.TouchWebSession(ctx, idle.IDHash, t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err := h.store.WebSession(ctx, idle.IDHash)
	if err != nil || !got.LastSeenAt.Equal(t0.Add(50*time.Minute)) || !got.EndsAt().Equal(t0.Add(90*time.Minute)) {
		t.Fatalf("after touches: %+v, %v; want last seen at +50m, ending at +90m (its absolute end, before +110m)", got, err)
	}
	// short was never used after its first minute: it has ended, and a
	// touch does not bring it back.
	_, err = h.store.WebSession(ctx, short.IDHash)
	wantErr(t, "idle session", err, spotoken.ErrExpired)
	wantErr(t, "touch an idle session", h.store.TouchWebSession(ctx, short.IDHash, h.clock.Now()), spotoken.ErrExpired)
	_, err = h.store.UpdateWebSession(ctx, short.IDHash, func(*spotoken.WebSession) error { return nil })
	wantErr(t, "update an idle session", err, spotoken.ErrExpired)
	wantErr(t, "touch unknown", h.store.TouchWebSession(ctx, sessionHash("never"), h.clock.Now()), spotoken.ErrNotFound)

	// The absolute end holds however recently the session was used.
	h.clock.Advance(39*time.Minute + 59*time.Second) // +89m59s
	if err := h.store.TouchWebSession(ctx, idle.IDHash, h.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.WebSession(ctx, idle.IDHash); err != nil {
		t.Errorf("a second before its end: %v", err)
	}
	h.clock.Advance(time.Second) // +90m
	_, err = h.store.WebSession(ctx, idle.IDHash)
	wantErr(t, "at its absolute end", err, spotoken.ErrExpired)

	// Without an idle timeout only the absolute end counts.
	if _, err := h.store.WebSession(ctx, fixed.IDHash); err != nil {
		t.Errorf("a session without idle timeout, unused for 90m: %v", err)
	}

	// The sweep deletes what has ended, at or before the time given.
	n, err := h.store.DeleteExpiredWebSessions(ctx, h.clock.Now())
	if err != nil || n != 2 {
		t.Errorf("DeleteExpiredWebSessions = %d, %v; want 2 (short, idle)", n, err)
	}
	if live := h.liveSessions(t, h.store, "idle", "fixed", "short"); !slices.Equal(live, []string{"fixed"}) {
		t.Errorf("after the sweep, live: %v", live)
	}
	wantErr(t, "touch a swept session", h.store.TouchWebSession(ctx, idle.IDHash, h.clock.Now()), spotoken.ErrNotFound)
	if n, err := h.store.DeleteExpiredWebSessions(ctx, t0.Add(100*time.Minute-time.Microsecond)); err != nil || n != 0 {
		t.Errorf("sweep before fixed's end = %d, %v; want 0", n, err)
	}
	if n, err := h.store.DeleteExpiredWebSessions(ctx, t0.Add(100*time.Minute)); err != nil || n != 1 {
		t.Errorf("sweep at fixed's end = %d, %v; want 1", n, err)
	}
}

// testWebSessionCaps: a full scope evicts its own soonest-ending sessions,
// a subject over its cap its own first, never another scope's, never the
// new one.
func testWebSessionCaps(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	limits := spotoken.WebSessionLimits{PerScope: 3, PerSubject: 2}
	noIdle := func(s *spotoken.WebSession) { s.IdleTimeout = 0 }
	other := h.newWebSession(t, "b-1", "dashboard:b", "b", "kb", limits, noIdle)
	h.newWebSession(t, "op", "admin", "", "op", limits, noIdle)
	create := func(name, subject string, mutate func(*spotoken.WebSession)) int {
		t.Helper()
		h.clock.Advance(time.Minute)
		s := &spotoken.WebSession{IDHash: sessionHash(name), Scope: "dashboard:a", AppID: "a", Subject: subject, CSRF: "c",
			IdleTimeout: time.Hour, ExpiresAt: h.clock.Now().Add(12 * time.Hour)}
		if mutate != nil {
			mutate(s)
		}
		n, err := h.store.CreateWebSession(ctx, s, limits)
		if err != nil {
			t.Fatalf("CreateWebSession(%s): %v", name, err)
		}
		return n
	}
	names := []string{"x1", "x2", "x3", "x4", "y1", "y2", "z1", "z2", "long", "brief"}
	check := func(step string, evicted, wantEvicted int, want ...string) {
		t.Helper()
		if live := h.liveSessions(t, h.store, names...); !slices.Equal(live, want) || evicted != wantEvicted {
			t.Errorf("%s: evicted %d, live %v; want %d evicted, live %v", step, evicted, live, wantEvicted, want)
		}
		if live := h.liveSessions(t, h.store, "b-1", "op"); len(live) != 2 {
			t.Errorf("%s: another scope lost a session: live %v", step, live)
		}
	}
	check("x1", create("x1", "k1", nil), 0, "x1")
	check("x2", create("x2", "k2", nil), 0, "x1", "x2")
	check("x3", create("x3", "k3", nil), 0, "x1", "x2", "x3")
	// The fourth evicts the scope's soonest-ending: the oldest, x1.
	check("x4", create("x4", "k4", nil), 1, "x2", "x3", "x4")
	// k4 signs in twice more: the second time k4 is over its own cap and
	// loses its oldest (x4) first; then the scope is within its cap.
	check("y1", create("y1", "k4", nil), 1, "x3", "x4", "y1")
	check("y2", create("y2", "k4", nil), 1, "x3", "y1", "y2")
	check("z1", create("z1", "k5", func(s *spotoken.WebSession) { s.IdleTimeout = time.Minute }), 1, "y1", "y2", "z1")
	// z1 has gone idle, so it ends first and goes first, though the youngest.
	h.clock.Advance(2 * time.Minute)
	check("z2", create("z2", "k6", nil), 1, "y1", "y2", "z2")
	// The new session is never evicted, even when it ends before the rest.
	check("long", create("long", "k7", func(s *spotoken.WebSession) { s.ExpiresAt = h.clock.Now().Add(48 * time.Hour) }), 1,
		"y2", "z2", "long")
	check("brief", create("brief", "k8", func(s *spotoken.WebSession) { s.ExpiresAt = h.clock.Now().Add(time.Second) }), 1,
		"z2", "long", "brief")

	// One scope flooded: only its own sessions go.
	var flood []string
	total := 0
	for i := range 60 {
		name := fmt.Sprint("flood-", i)
		flood = append(flood, name)
		total += create(name, "k1", nil)
	}
	if total != 60 {
		t.Errorf("the flood evicted %d sessions, want 60 (each new one evicted one)", total)
	}
	// k1's last two are left, and long, which has gone idle meanwhile.
	if live := h.liveSessions(t, h.store, append(names, flood...)...); !slices.Equal(live, flood[58:]) {
		t.Errorf("after the flood, live: %v; want %v", live, flood[58:])
	}
	if got, err := h.store.WebSession(ctx, other.IDHash); err != nil || got.CSRF != other.CSRF {
		t.Errorf("app b's session after app a's flood: %v", err)
	}

	// No caps: nothing is evicted.
	for i := range 5 {
		if n, err := h.store.CreateWebSession(ctx, &spotoken.WebSession{IDHash: sessionHash(fmt.Sprint("free-", i)), Scope: "free",
			CSRF: "c", ExpiresAt: h.clock.Now().Add(time.Hour)}, spotoken.WebSessionLimits{}); err != nil || n != 0 {
			t.Fatalf("uncapped create: %d, %v", n, err)
		}
	}
	if live := h.liveSessions(t, h.store, "free-0", "free-1", "free-2", "free-3", "free-4"); len(live) != 5 {
		t.Errorf("uncapped scope kept %v", live)
	}
}

// testWebSessionsParallel: many callers on two stores (two connection
// pools on one database) create sessions in one capped scope at once, round
// after round, while others use another scope: after every round the cap
// holds exactly, every creation succeeds, and the other scope loses nothing.
func testWebSessionsParallel(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	stores := []spotoken.Store{h.store, h.open(t, h.ring1)}
	const callers, rounds, limit = 16, 8, 20
	limits := spotoken.WebSessionLimits{PerScope: limit}
	var bNames []string
	for i := range 10 {
		name := fmt.Sprint("b-", i)
		bNames = append(bNames, name)
		h.newWebSession(t, name, "dashboard:b", "b", "kb", limits, nil)
	}
	var evicted atomic.Int64
	var aNames []string
	for r := range rounds {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for c := range callers {
			name := fmt.Sprintf("a-%d-%d", r, c)
			aNames = append(aNames, name)
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-start
				n, err := stores[c%2].CreateWebSession(ctx, &spotoken.WebSession{IDHash: sessionHash(name),
					Scope: "dashboard:a", AppID: "a", Subject: fmt.Sprint("k", c), CSRF: marker("csrf", "p"),
					IdleTimeout: time.Hour, ExpiresAt: h.clock.Now().Add(time.Hour)}, limits)
				if err != nil {
					t.Errorf("concurrent create: %v", err)
					return
				}
				evicted.Add(int64(n))
			}()
			go func() { // b's sessions in use meanwhile
				defer wg.Done()
				<-start
				store := stores[(c+1)%2]
				id := sessionHash(bNames[(r+c)%len(bNames)])
				if err := store.TouchWebSession(ctx, id, h.clock.Now()); err != nil {
					t.Errorf("touch b's session: %v", err)
				}
				if _, err := store.WebSession(ctx, id); err != nil {
					t.Errorf("read b's session: %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		created := (r + 1) * callers
		live := h.liveSessions(t, stores[r%2], aNames...)
		if want := min(created, limit); len(live) != want || evicted.Load() != int64(created-want) {
			t.Fatalf("round %d, after %d concurrent creations with a cap of %d: %d live, %d evicted; want %d and %d",
				r, created, limit, len(live), evicted.Load(), want, created-want)
		}
	}
	if live := h.liveSessions(t, h.store, bNames...); len(live) != len(bNames) {
		t.Errorf("the other scope kept %d of its %d sessions", len(live), len(bNames))
	}
}

// testWebSessionTampering: a session's secrets are bound to its row: a
// ciphertext copied from another session, or a session moved to another
// subject or scope behind the store's back, fails to open, naming the
// column; the other sessions still open.
func testWebSessionTampering(t *testing.T, h *harness) {
	h.newApp(t, "a")
	h.newApp(t, "b")
	none := spotoken.WebSessionLimits{}
	victim := h.newWebSession(t, "victim", "dashboard:a", "a", "key-victim", none, nil)
	mine := h.newWebSession(t, "mine", "dashboard:a", "a", "key-mine", none, nil)
	for _, tt := range []struct {
		name, column string
		value        any
		names        string // the column the error names
	}{
		{"CSRF token of another session", "csrf", h.backend.WebSessionColumn(t, victim.IDHash, "csrf"), "web_sessions.csrf"},
		{"data of another session", "data", h.backend.WebSessionColumn(t, victim.IDHash, "data"), "web_sessions.data"},
		{"moved to another subject", "subject", "key-victim", "web_sessions.csrf"},
		{"moved to another scope", "scope", "dashboard:b", "web_sessions.csrf"},
		{"moved to another app", "app_id", "b", "web_sessions.csrf"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			orig := h.backend.WebSessionColumn(t, mine.IDHash, tt.column)
			h.backend.SetWebSessionColumn(t, mine.IDHash, tt.column, tt.value)
			_, err := h.store.WebSession(ctx, mine.IDHash)
			if !errors.Is(err, seal.ErrDecrypt) || !strings.Contains(err.Error(), tt.names) {
				t.Errorf("WebSession: %v, want a decryption error naming %s", err, tt.names)
			}
			_, err = h.store.UpdateWebSession(ctx, mine.IDHash, func(s *spotoken.WebSession) error { s.Data = "x"; return nil })
			if !errors.Is(err, seal.ErrDecrypt) {
				t.Errorf("UpdateWebSession: %v, want a decryption error", err)
			}
			if got, err := h.store.WebSession(ctx, victim.IDHash); err != nil || got.Data != victim.Data {
				t.Errorf("the victim's session: %v", err)
			}
			h.backend.SetWebSessionColumn(t, mine.IDHash, tt.column, orig)
			if got, err := h.store.WebSession(ctx, mine.IDHash); err != nil || got.Data != mine.Data || got.CSRF != mine.CSRF {
				t.Errorf("restored: %+v, %v", got, err)
			}
		})
	}
}

// testWebSessionReseal: key rotation re-seals session secrets too.
func testWebSessionReseal(t *testing.T, h *harness) {
	h.newApp(t, "a")
	none := spotoken.WebSessionLimits{}
	sessions := []*spotoken.WebSession{
		h.newWebSession(t, "with-data", "dashboard:a", "a", "k1", none, nil),
		h.newWebSession(t, "no-data", "dashboard:a", "a", "k2", none, func(s *spotoken.WebSession) { s.Data = "" }),
		h.newWebSession(t, "operator", "admin", "", "op", none, nil),
	}
	s12 := h.open(t, h.ring12)
	n, err := s12.Reseal(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	// The app's two secrets, and 2 + 1 + 2 of the sessions.
	if n != 7 {
		t.Errorf("Reseal re-sealed %d secrets, want 7", n)
	}
	s2 := h.open(t, h.ring2)
	for _, s := range sessions {
		got, err := s2.WebSession(ctx, s.IDHash)
		if err != nil || got.CSRF != s.CSRF || got.Data != s.Data {
			t.Errorf("session %s/%s under the new key alone: %+v, %v", s.Scope, s.Subject, got, err)
		}
	}
}

// writeWebSessions writes sessions holding secrets, one with its data
// replaced, for testNoPlaintext, and returns the secrets it wrote.
func (h *harness) writeWebSessions(t *testing.T) map[string]spotoken.Secret {
	none := spotoken.WebSessionLimits{}
	s := h.newWebSession(t, "plain-session", "dashboard:plain-app", "plain-app", "key-plain", none, nil)
	h.newWebSession(t, "plain-operator", "admin", "", "op", none, nil)
	if _, err := h.store.UpdateWebSession(ctx, s.IDHash, func(s *spotoken.WebSession) error {
		s.Data, s.CSRF = marker("session-data-updated", "plain"), marker("csrf-rotated", "plain")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return map[string]spotoken.Secret{
		"session CSRF token": marker("csrf", "plain-session"), "session data": marker("session-data", "plain-session"),
		"operator session CSRF token": marker("csrf", "plain-operator"), "operator session data": marker("session-data", "plain-operator"),
		"updated session data": marker("session-data-updated", "plain"), "rotated session CSRF token": marker("csrf-rotated", "plain"),
	}
}
