package refresh

// KeysHeld counts what the engine keeps in memory per connection key: the
// token cache's entries. Forget counters are a fixed array, not per key.
func KeysHeld(e *Engine) int {
	n := 0
	e.cache.Range(func(any, any) bool { n++; return true })
	return n
}
