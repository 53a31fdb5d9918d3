package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestBinaryShutdownBoundedWhileAuditStalls: with the database's write
// lock held by another process, so that the audit trail's batches (and
// every other write) wait and fail, serve still exits within
// --shutdown-timeout and its one-second grace after SIGTERM, and logs the
// audit records it could not write.
func TestBinaryShutdownBoundedWhileAuditStalls(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "spotoken.db")
	const timeout = 2 * time.Second
	p := startSpotoken(t, []string{"XDG_DATA_HOME=" + dir}, "serve", "--emulator", "--json", "--addr", "127.0.0.1:0",
		"--db", db, "--shutdown-timeout", timeout.String())
	var info map[string]string
	if err := json.Unmarshal([]byte(p.URL), &info); err != nil {
		t.Fatalf("first line %q is not a JSON object: %v", p.URL, err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	requests := func(n int) {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				req, _ := http.NewRequest("GET", info["url"]+"/v1/connections", nil)
				req.Header.Set("Authorization", "Bearer "+info["api_key"])
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
	}
	requests(20)

	ctx := context.Background()
	other, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	hold, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	if _, err := hold.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	defer hold.ExecContext(ctx, "ROLLBACK")
	requests(50)
	time.Sleep(1500 * time.Millisecond) // the trail's pass waits for the writer

	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not exit within a minute of SIGTERM; stderr:\n%s", p.Stderr)
	}
	took := time.Since(start)
	// The bound, and a second for the process's own start and exit on a
	// loaded machine.
	if limit := timeout + shutdownGrace + time.Second; took > limit {
		t.Errorf("serve exited %v after SIGTERM, more than --shutdown-timeout %v + grace %v + 1s; stderr:\n%s",
			took, timeout, shutdownGrace, p.Stderr)
	}
	if p.code != 0 {
		t.Errorf("exit status %d", p.code)
	}
	logs := p.Stderr.String()
	if !strings.Contains(logs, "audit: shutting down with records not written; they are lost") {
		t.Errorf("no log line of the audit records lost at shutdown:\n%s", logs)
	}
	t.Logf("exited %v after SIGTERM", took)
}
