package main

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"
)

// TestBinarySlowBodies (finding 4): clients that send their headers and
// then a body one byte every 2 seconds, with an API key and without, are
// cut off within the body timeout, and the broker's memory stays bounded.
// SPOTOKEN_SLOW_CLIENTS sets how many (default 300; docs/BENCHMARKS.md
// records 5,000).
func TestBinarySlowBodies(t *testing.T) {
	const bodyTimeout = 3 * time.Second
	e := startHard(t, "--no-scheduler", "--body-timeout", bodyTimeout.String())
	pid := e.p.cmd.Process.Pid
	n := envInt("SPOTOKEN_SLOW_CLIENTS", 300)
	u, _ := url.Parse(e.base)
	rssBefore := vmRSS(t, pid)

	var mu sync.Mutex
	var held []time.Duration // how long each connection stayed open after its headers
	var failed int
	peak := rssBefore
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if r := vmRSS(t, pid); r > 0 {
				mu.Lock()
				peak = max(peak, r)
				mu.Unlock()
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
			if err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
				return
			}
			defer conn.Close()
			auth := ""
			if i%2 == 0 {
				auth = "Authorization: Bearer " + e.key + "\r\n"
			}
			fmt.Fprintf(conn, "POST /v1/connections/u%d/token HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\nContent-Length: 100\r\n\r\n", i, u.Host, auth)
			start := time.Now()
			closed := make(chan struct{})
			go func() {
				io.Copy(io.Discard, conn) // until the server closes
				close(closed)
			}()
			tick := time.NewTicker(2 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-closed:
					mu.Lock()
					held = append(held, time.Since(start))
					mu.Unlock()
					return
				case <-tick.C:
					conn.Write([]byte(" "))
				case <-time.After(60 * time.Second):
					mu.Lock()
					held = append(held, time.Since(start))
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sort.Slice(held, func(i, j int) bool { return held[i] < held[j] })
	if failed > 0 || len(held) != n {
		t.Fatalf("%d of %d clients could not connect", failed, n)
	}
	p50, maxHeld := held[len(held)/2], held[len(held)-1]
	rssAfter := vmRSS(t, pid)
	t.Logf("%d slow clients: connection held p50 %s, max %s (body timeout %s); VmRSS before %d KiB, peak %d KiB, after %d KiB",
		n, p50.Round(time.Millisecond), maxHeld.Round(time.Millisecond), bodyTimeout, rssBefore, peak, rssAfter)
	if limit := bodyTimeout + 2*time.Second; maxHeld > limit {
		t.Errorf("a slow client held its connection %s, past the body timeout %s (+2s)", maxHeld, bodyTimeout)
	}
	// The broker still answers.
	if r := e.do(t, "GET", "/v1/connections", nil); r.Status != 200 {
		t.Errorf("after the slow clients: %d %s", r.Status, r.Body)
	}
}
