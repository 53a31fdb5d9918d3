//go:build unix

package bench_test

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user + system) this process has used so
// far: client and server together, as both run in the test binary.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
