package refresh

import "github.com/spotoken/spotoken"

// KeysHeld counts what the engine keeps in memory per connection key: the
// token cache's entries. Forget counters are a fixed array, not per key.
func KeysHeld(e *Engine) int {
	n := 0
	n = e.cache.len()
	return n
}

// ReadJoiners returns how many callers wait for a read of key's row in
// progress on another caller's goroutine; -1 if none is.
func ReadJoiners(e *Engine, key spotoken.ConnectionKey) int {
	e.reads.mu.Lock()
	defer e.reads.mu.Unlock()
	if c, ok := e.reads.calls[key]; ok {
		return c.joined
	}
	return -1
}
