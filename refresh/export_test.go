package refresh

// KeysHeld counts what the engine keeps in memory per connection key: the
// token cache's entries. Forget counters are a fixed array, not per key.
func KeysHeld(e *Engine) int {
	n := 0
	n = e.cache.len()
	return n
}
