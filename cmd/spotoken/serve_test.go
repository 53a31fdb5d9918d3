package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// TestServeUsageErrors: every malformed serve flag is refused with exit 2,
// a message naming the flag, and nothing created.
func TestServeUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"tls cert alone", []string{"--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
		{"bad emulator rotation", []string{"--emulator-rotation", "sometimes"}, "--emulator-rotation"},
		{"zero refresh window", []string{"--refresh-window", "0s"}, "--refresh-window"},
		{"refresh window over 50m", []string{"--refresh-window", "55m"}, "--refresh-window"},
		{"negative active window", []string{"--refresh-active-window", "-1h"}, "--refresh-active-window"},
		{"zero upstream rate", []string{"--upstream-rate", "0"}, "--upstream-rate"},
		{"NaN upstream rate", []string{"--upstream-rate", "NaN"}, "--upstream-rate"},
		{"zero refresh concurrency", []string{"--refresh-concurrency", "0"}, "--refresh-concurrency"},
		{"zero cache size", []string{"--cache-size", "0"}, "--cache-size"},
		{"zero grant lifetime", []string{"--grant-lifetime", "0s"}, "--grant-lifetime"},
		{"negative expiry warning", []string{"--expiry-warning", "-1h"}, "--expiry-warning"},
		{"warning longer than the grant", []string{"--expiry-warning", "5000h"}, "--expiry-warning"},
		{"zero link ttl", []string{"--link-ttl", "0s"}, "--link-ttl"},
		{"negative list concurrency", []string{"--list-concurrency", "-1"}, "--list-concurrency must be 0 (no limit) or positive"},
		{"zero list wait", []string{"--list-wait", "0s"}, "--list-wait positive"},
		{"zero list share", []string{"--list-share", "0"}, "--list-share must be a fraction greater than 0 and at most 1 (1: no pause between a key's listings), got 0"},
		{"negative list share", []string{"--list-share", "-0.2"}, "--list-share must be a fraction greater than 0 and at most 1 (1: no pause between a key's listings), got -0.2"},
		{"list share over 1", []string{"--list-share", "1.5"}, "--list-share must be a fraction greater than 0 and at most 1 (1: no pause between a key's listings), got 1.5"},
		{"NaN list share", []string{"--list-share", "NaN"}, "--list-share must be a fraction greater than 0 and at most 1 (1: no pause between a key's listings), got NaN"},
		{"list share not a number", []string{"--list-share", "fifth"}, `invalid argument "fifth" for "--list-share"`},
		{"negative memory limit", []string{"--memory-limit-mib", "-1"}, "--memory-limit-mib must be 0 (none) or a positive number of MiB, got -1"},
		{"memory limit not a number", []string{"--memory-limit-mib", "lots"}, `invalid argument "lots" for "--memory-limit-mib"`},
		{"zero webhook attempts", []string{"--webhook-attempts", "0"}, "--webhook-attempts"},
		{"tiny webhook backoff", []string{"--webhook-max-backoff", "1s"}, "--webhook-max-backoff"},
		{"zero shutdown timeout", []string{"--shutdown-timeout", "0s"}, "--shutdown-timeout"},
		{"bad log level", []string{"--log-level", "loud"}, "--log-level"},
		{"not a duration", []string{"--cache-ttl", "soon"}, "invalid argument"},
		{"extra argument", []string{"extra"}, "takes no arguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "spotoken.db")
			var stdout, stderr bytes.Buffer
			args := append([]string{"serve", "--addr", "127.0.0.1:0", "--db", db}, tt.args...)
			code := Run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d naming %q", code, stderr.String(), exitUsage, tt.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q", stdout.String())
			}
			if _, err := os.Stat(db); err == nil {
				t.Errorf("a refused serve created the database")
			}
		})
	}
}

// TestApplyMemoryLimit: serve sets the runtime's soft memory limit when
// none is set, puts it back when it returns, leaves one set before it
// (GOMEMLIMIT) alone, and sets none for 0.
func TestApplyMemoryLimit(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(orig)
	debug.SetMemoryLimit(math.MaxInt64) // none, as without GOMEMLIMIT
	restore := applyMemoryLimit(150)
	if got := debug.SetMemoryLimit(-1); got != 150<<20 {
		t.Errorf("limit while serving: %d, want %d", got, 150<<20)
	}
	restore()
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("limit after serving: %d, want none", got)
	}
	applyMemoryLimit(0)()
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("--memory-limit-mib 0 set a limit: %d", got)
	}
	debug.SetMemoryLimit(300 << 20) // as GOMEMLIMIT=300MiB would
	restore = applyMemoryLimit(150)
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Errorf("with GOMEMLIMIT set: %d, want it kept (%d)", got, 300<<20)
	}
	restore()
}
