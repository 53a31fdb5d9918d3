//go:build race

package refresh_test

// raceEnabled: the race detector changes what allocations cost.
const raceEnabled = true
