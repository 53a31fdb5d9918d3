package bff

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter counts and limits requests by key (a session's token requests,
// an app's sign-ins), in this process: a replica's own count, so a key
// spread over n replicas gets up to n times the rate, which still stops a
// script that requests in a loop.
type limiter struct {
	every time.Duration
	burst int

	mu    sync.Mutex
	byID  map[[32]byte]*limited
	added int
}

type limited struct {
	l     *rate.Limiter
	count int // requests seen, allowed or not
}

func newLimiter(every time.Duration, burst int) *limiter {
	return &limiter{every: every, burst: burst, byID: make(map[[32]byte]*limited)}
}

// take takes one request of key id at now: it returns zero, or how
// long to wait, and how many requests the key made here.
func (l *limiter) take(id [32]byte, now time.Time) (time.Duration, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.byID[id]
	if e == nil {
		l.sweep(now)
		e = &limited{l: rate.NewLimiter(rate.Every(l.every), l.burst)}
		l.byID[id] = e
	}
	e.count++
	if e.l.AllowN(now, 1) {
		return 0, e.count
	}
	res := e.l.ReserveN(now, 1)
	wait := res.DelayFrom(now)
	res.CancelAt(now)
	return time.Duration(math.Ceil(wait.Seconds())) * time.Second, e.count
}

// sweep forgets, every 256 new keys, those whose allowance is full
// again: they would start afresh anyway.
func (l *limiter) sweep(now time.Time) {
	l.added++
	if l.added%256 != 0 {
		return
	}
	for id, e := range l.byID {
		if e.l.TokensAt(now) >= float64(l.burst) {
			delete(l.byID, id)
		}
	}
}
