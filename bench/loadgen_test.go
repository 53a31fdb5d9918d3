package bench_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A closed-loop load generator in the manner of wrk: a fixed number of
// workers, each sending its next request as soon as the previous answer has
// been read, over real TCP loopback, until a fixed number of requests has
// been sent. Every request's latency (from just before Client.Do to the
// last byte of the body read) is recorded, so the run gives both the
// throughput (requests ÷ wall time of the run) and the latency
// distribution at that concurrency. A closed loop measures the latency of
// a system that is never offered more than it can take: it is the right
// tool to compare two servers under the same load, not to find where
// latency explodes under an open arrival rate.

// lgTarget is one side of a comparison: how to make its request and what
// its answer must be.
type lgTarget struct {
	name string
	// newReq makes a new request; it is called once per request.
	newReq func() (*http.Request, error)
	// want is the status every answer must have; body, when not nil, the
	// exact body.
	want int
	body []byte
	// during, when set, starts the side's background work for one of its
	// rounds (the audit trail's batched writes) and returns the function
	// that stops it, called once the round's requests are answered, inside
	// the measured time: the work runs beside the side's requests, as it
	// does in serve, and never in the other side's rounds.
	during func() (stop func() error)
	// settle, when set, finishes the side's deferred work after its last
	// round (what during left queued); its time is the side's too.
	settle func() error
	// round, when set on the system's side, is how many requests each
	// side makes per round, however many rounds that takes (else: at most
	// six rounds).
	round int
}

// lgResult is what a run measured.
type lgResult struct {
	requests int
	elapsed  time.Duration   // wall time of the whole run
	cpu      time.Duration   // the process's CPU time during the run (0 when unknown)
	lat      []time.Duration // every request's latency, sorted once the run ends
}

func (r lgResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// quantile returns the q-quantile of the latencies (nearest rank).
func (r lgResult) quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(q*float64(len(r.lat))+0.5) - 1
	i = max(0, min(i, len(r.lat)-1))
	return r.lat[i]
}

// cpuPerReq returns the process's CPU time per request, client and server
// together (both run in the test binary), or 0 when unknown.
func (r lgResult) cpuPerReq() time.Duration {
	if r.requests == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.requests)
}

// add merges another run of the same target into r; the latencies must be
// sorted again (by finish) afterwards.
func (r *lgResult) add(o lgResult) {
	r.requests += o.requests
	r.elapsed += o.elapsed
	r.cpu += o.cpu
	r.lat = append(r.lat, o.lat...)
}

func (r *lgResult) finish() { slices.Sort(r.lat) }

// newLoadClient returns the client of a run: a Transport of its own that
// keeps an idle connection for every worker (so the steady state reuses
// connections and never dials), no proxy, no compression. Close its idle
// connections when done.
func newLoadClient(workers int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        max(workers, 2) * 2,
			MaxIdleConnsPerHost: max(workers, 2) * 2,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout: 30 * time.Second,
	}
}

// lgRun sends total requests of t over c from workers workers, back to
// back, and returns what it measured. It stops at the first error (a
// transport error, an unexpected status or body) and returns it.
//
// With rate > 0 the load is open-loop instead: request i is due at
// start + i/rate, whoever is free sends it then, and its latency counts
// from when it was due, so that time spent waiting for a free worker is
// measured too (no coordinated omission).
func lgRun(c *http.Client, t lgTarget, workers, total int, rate float64) (lgResult, error) {
	workers = max(1, min(workers, total))
	var (
		next atomic.Int64 // requests handed out so far
		fail atomic.Bool
		once sync.Once
		err  error
		wg   sync.WaitGroup
	)
	setErr := func(e error) {
		once.Do(func() { err = e })
		fail.Store(true)
	}
	lats := make([][]time.Duration, workers)
	cpu0, cpuOK := processCPU()
	start := time.Now()
	var stop func() error
	if t.during != nil {
		stop = t.during()
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, total/workers+1)
			var buf bytes.Buffer
			for !fail.Load() {
				i := next.Add(1)
				if i > int64(total) {
					break
				}
				req, e := t.newReq()
				if e != nil {
					setErr(e)
					return
				}
				t0 := time.Now()
				if rate > 0 {
					t0 = start.Add(time.Duration(float64(i-1) / rate * float64(time.Second)))
					time.Sleep(time.Until(t0))
				}
				resp, e := c.Do(req)
				if e != nil {
					setErr(fmt.Errorf("%s: %w", t.name, e))
					return
				}
				buf.Reset()
				_, e = buf.ReadFrom(resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if e != nil {
					setErr(fmt.Errorf("%s: reading the body: %w", t.name, e))
					return
				}
				if resp.StatusCode != t.want {
					setErr(fmt.Errorf("%s: status %d, want %d: %.300s", t.name, resp.StatusCode, t.want, buf.Bytes()))
					return
				}
				if t.body != nil && !bytes.Equal(buf.Bytes(), t.body) {
					setErr(fmt.Errorf("%s: body %.300q, want %.300q", t.name, buf.Bytes(), t.body))
					return
				}
				lat = append(lat, d)
			}
			lats[w] = lat
		}()
	}
	wg.Wait()
	if stop != nil {
		if e := stop(); e != nil && err == nil {
			err = fmt.Errorf("%s: background work: %w", t.name, e)
		}
	}
	res := lgResult{elapsed: time.Since(start)}
	if cpu1, ok := processCPU(); ok && cpuOK {
		res.cpu = cpu1 - cpu0
	}
	if err != nil {
		return res, err
	}
	for _, l := range lats {
		res.lat = append(res.lat, l...)
	}
	res.requests = len(res.lat)
	res.finish()
	return res, nil
}

// lgCompare measures a system and its floor at the same concurrency, each
// for total requests, in interleaved rounds (floor, system, system, floor,
// ... so that a slow stretch of a shared machine falls on both alike),
// after a warm-up of each that opens the connections. Each target gets a
// client of its own, closed at the end.
// With rate > 0 both are driven open-loop at that rate (see lgRun).
func lgCompare(floor, system lgTarget, workers, total int, rate float64) (f, s lgResult, err error) {
	fc, sc := newLoadClient(workers), newLoadClient(workers)
	defer fc.CloseIdleConnections()
	defer sc.CloseIdleConnections()
	warm := max(2*workers, 20)
	for _, x := range []struct {
		c *http.Client
		t lgTarget
	}{{fc, floor}, {sc, system}} {
		if _, err := lgRun(x.c, x.t, workers, warm, 0); err != nil {
			return f, s, fmt.Errorf("warm-up: %w", err)
		}
	}
	// At least one request per worker and per round, and rounds of at
	// least 50 requests per worker when there are enough of them.
	total = max(total, workers)
	rounds := max(1, min(6, total/(50*workers)))
	if system.round > 0 {
		rounds = max(1, total/max(system.round, workers))
	}
	for i := range rounds {
		n := total / rounds
		if i == rounds-1 {
			n = total - n*(rounds-1)
		}
		order := []struct {
			c   *http.Client
			t   lgTarget
			acc *lgResult
		}{{fc, floor, &f}, {sc, system, &s}}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, x := range order {
			r, err := lgRun(x.c, x.t, workers, n, rate)
			if err != nil {
				return f, s, err
			}
			x.acc.add(r)
		}
	}
	for _, x := range []struct {
		t   lgTarget
		acc *lgResult
	}{{floor, &f}, {system, &s}} {
		if x.t.settle == nil {
			continue
		}
		cpu0, cpuOK := processCPU()
		start := time.Now()
		if err := x.t.settle(); err != nil {
			return f, s, fmt.Errorf("%s: settling: %w", x.t.name, err)
		}
		x.acc.elapsed += time.Since(start)
		if cpu1, ok := processCPU(); ok && cpuOK {
			x.acc.cpu += cpu1 - cpu0
		}
	}
	f.finish()
	s.finish()
	return f, s, nil
}

// drain reads and closes a response's body.
func drain(resp *http.Response) []byte {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}
