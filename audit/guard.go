package audit

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// authGuard is the failed-authentication limit: an address (IPv4, or IPv6
// /64, since one host commonly holds a whole /64) whose credentials are
// refused AuthFailures times within AuthWindow is refused outright, 429
// with Retry-After, for AuthBlock. Other addresses are not affected.
//
// Its memory is bounded: it remembers at most AuthMaxTracked addresses.
// When full, a new address takes the place of one of a few sampled entries,
// preferring one that is not limited and has the fewest failures, so an
// attacker with many addresses cannot grow it, and at worst frees an
// address earlier than its block would end.
type authGuard struct {
	threshold int
	window    time.Duration
	block     time.Duration
	max       int

	mu       sync.Mutex
	entries  map[netip.Prefix]*guardEntry
	failures int64
	limited  int64
	// blocked counts the entries with a block (until set, over or not),
	// so that wait needs no lock while there is none: the common case.
	blocked atomic.Int64
}

type guardEntry struct {
	since    time.Time // start of the counting window
	failures int
	until    time.Time // limited until this time; zero: not limited
}

func newAuthGuard(cfg Detectors) *authGuard {
	return &authGuard{threshold: cfg.AuthFailures, window: cfg.AuthWindow, block: cfg.AuthBlock, max: cfg.AuthMaxTracked,
		entries: make(map[netip.Prefix]*guardEntry)}
}

// guardKey is the unit an address is limited in.
func guardKey(addr netip.Addr) netip.Prefix { return prefixOf(addr, 32, 64) }

// wait returns how long addr must wait before it may authenticate; zero
// when it may. A refused request counts as limited.
func (g *authGuard) wait(addr netip.Addr, now time.Time) time.Duration {
	if !addr.IsValid() {
		return 0
	}
	if g.blocked.Load() == 0 {
		return 0
	}
	k := guardKey(addr)
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.entries[k]
	if e == nil || e.until.IsZero() {
		return 0
	}
	if !now.Before(e.until) {
		delete(g.entries, k) // the block is over: a fresh start
		g.blocked.Add(-1)
		return 0
	}
	g.limited++
	return e.until.Sub(now)
}

// failed counts a refused credential from addr and reports whether this
// failure put the address under the limit (once per block).
func (g *authGuard) failed(addr netip.Addr, now time.Time) bool {
	k := guardKey(addr)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failures++
	e := g.entries[k]
	if e == nil {
		if len(g.entries) >= g.max {
			g.evict(now)
		}
		e = &guardEntry{since: now}
		g.entries[k] = e
	}
	if !e.until.IsZero() {
		if now.Before(e.until) {
			return false // already limited
		}
		*e = guardEntry{since: now}
		g.blocked.Add(-1)
	}
	if now.Sub(e.since) >= g.window || now.Before(e.since) {
		e.since, e.failures = now, 0
	}
	e.failures++
	if e.failures < g.threshold {
		return false
	}
	e.until = now.Add(g.block)
	g.blocked.Add(1)
	return true
}

// evict removes one entry: of up to 16 sampled (map order is random), the
// one least worth keeping.
func (g *authGuard) evict(now time.Time) {
	var victim netip.Prefix
	var worst *guardEntry
	n := 0
	for k, e := range g.entries {
		if worst == nil || less(e, worst, now) {
			victim, worst = k, e
		}
		if n++; n == 16 {
			break
		}
	}
	if worst != nil && !worst.until.IsZero() {
		g.blocked.Add(-1)
	}
	delete(g.entries, victim)
}

// less reports whether a is less worth keeping than b: an entry not limited
// (or whose block is over) before a limited one; then fewer failures; then
// the block that ends first.
func less(a, b *guardEntry, now time.Time) bool {
	al, bl := now.Before(a.until), now.Before(b.until)
	if al != bl {
		return !al
	}
	if !al {
		return a.failures < b.failures
	}
	return a.until.Before(b.until)
}

// stats returns the counters, and how many addresses are limited and remembered.
func (g *authGuard) stats(now time.Time) (failures, limited int64, limitedNow, tracked int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, e := range g.entries {
		if now.Before(e.until) {
			limitedNow++
		}
	}
	return g.failures, g.limited, limitedNow, len(g.entries)
}
