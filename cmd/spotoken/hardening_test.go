package main

// End-to-end tests of the real binary for issue 13's findings: what an
// adversarial review broke, attacked again from outside.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// e2eBroker is 'spotoken serve' against an emulator run apart (or
// something in front of it), with the app "e2e" and an API key of it.
type e2eBroker struct {
	*e2eEnv
	srv *proc
	key string
	// cli runs the CLI on the broker's database and key file.
	cli func(args ...string) string
}

// startBroker makes a key file, starts 'spotoken serve --no-scheduler' on
// serveDB with args, and registers the app "e2e" (the emulator's client
// spotoken-e2e) and an API key with the CLI on cliDB: the same database,
// which serve may reach another way (the outage test's proxy).
func startBroker(t *testing.T, serveDB, cliDB string, args ...string) *e2eBroker {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "keys.json")
	if out, errOut, code := runSpotoken(t, nil, "", "keys", "generate", "--key-file", keyFile); code != 0 {
		t.Fatalf("keys generate: %s %s", out, errOut)
	}
	srv := startSpotoken(t, nil, append([]string{"serve", "--db", serveDB, "--key-file", keyFile, "--addr", "127.0.0.1:0", "--no-scheduler",
		"--auth-failures", "1000000"}, args...)...)
	cli := func(args ...string) string {
		t.Helper()
		out, errOut, code := runSpotoken(t, nil, "", append(args, "--db", cliDB, "--key-file", keyFile)...)
		if code != 0 {
			t.Fatalf("%s: %s %s", strings.Join(args, " "), out, errOut)
		}
		return out
	}
	cli("apps", "create", "--name", "e2e", "--client-id", "spotoken-e2e", "--redirect-uri", srv.URL+"/callback")
	key, _, _ := strings.Cut(cli("apikeys", "create", "--app", "e2e"), "\n")
	return &e2eBroker{e2eEnv: &e2eEnv{t: t, base: srv.URL}, srv: srv, key: key, cli: cli}
}

// hardEnv is 'spotoken serve --emulator' with its demo app's key.
type hardEnv struct {
	p       *proc
	base    string
	emu     string
	key     string
	dir, db string
}

func startHard(t *testing.T, extra ...string) *hardEnv {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "spotoken.db")
	// The attacks here come from 127.0.0.1 with bad or missing keys; the
	// failed-authentication limit (tested in package audit) would answer
	// them 429 before the defenses under test are reached.
	args := append([]string{"serve", "--emulator", "--json", "--addr", "127.0.0.1:0", "--db", db, "--auth-failures", "1000000"}, extra...)
	p := startSpotoken(t, []string{"XDG_DATA_HOME=" + dir}, args...)
	var info map[string]string
	if err := json.Unmarshal([]byte(p.URL), &info); err != nil {
		t.Fatalf("first line %q: %v", p.URL, err)
	}
	return &hardEnv{p: p, base: info["url"], emu: info["emulator_url"], key: info["api_key"], dir: dir, db: db}
}

// auditSettled waits until the broker's audit queue is empty, as its
// /metrics (served on the loopback listener) says, for up to a minute.
func (e *hardEnv) auditSettled(t *testing.T) {
	t.Helper()
	var last string
	for range 600 {
		resp, err := http.Get(e.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "spotoken_audit_queue_length "); ok {
				last = v
			}
		}
		if last == "0" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the audit queue did not empty: spotoken_audit_queue_length %q", last)
}

// vmRSS reads a process's resident set size in KiB from /proc.
func vmRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// envInt reads a test parameter from the environment.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// hammer sends n requests made by mk from workers goroutines and returns
// how many got each status.
func hammer(t *testing.T, workers, n int, mk func(i int) *http.Request) map[int]int {
	t.Helper()
	var next atomic.Int64
	var mu sync.Mutex
	got := map[int]int{}
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				resp, err := client.Do(mk(i))
				code := -1
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				got[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return got
}

// TestBinaryUnknownIDsMemory (finding 1): token requests for made-up
// connection ids, each answered 404, must not grow the broker's memory.
// It compares VmRSS after 1,000 distinct unknown ids with VmRSS after
// SPOTOKEN_RSS_IDS (default 20,000; docs/BENCHMARKS.md records 100,000).
func TestBinaryUnknownIDsMemory(t *testing.T) {
	e := startHard(t, "--no-scheduler")
	pid := e.p.cmd.Process.Pid
	total := envInt("SPOTOKEN_RSS_IDS", 20_000)
	tokenReq := func(id string) *http.Request {
		req, _ := http.NewRequest("POST", e.base+"/v1/connections/"+id+"/token", nil)
		req.Header.Set("Authorization", "Bearer "+e.key)
		return req
	}
	// Warm up on one id, so the heap and the connection pool reach their
	// working size before the first measure, then on 5,000 distinct ids
	// (not counted), so that SQLite's page caches (2 MiB a connection,
	// filled by the audit trail's records of distinct ids and the reads)
	// are full too: their filling is bounded, and measured from a cold
	// start it alone grew VmRSS by up to 8 MB, near the limit below.
	if got := hammer(t, 16, 20_000, func(int) *http.Request { return tokenReq("warm-up") }); got[404] != 20_000 {
		t.Fatalf("warm-up answers: %v, want 20000 404s", got)
	}
	if got := hammer(t, 16, 5_000, func(i int) *http.Request { return tokenReq(fmt.Sprintf("warm-up-%d", i)) }); got[404] != 5_000 {
		t.Fatalf("warm-up answers: %v, want 5000 404s", got)
	}
	if got := hammer(t, 16, 1_000, func(i int) *http.Request { return tokenReq(fmt.Sprintf("made-up-%d", i)) }); got[404] != 1_000 {
		t.Fatalf("answers: %v", got)
	}
	// Each 404 leaves an audit record, queued until the trail's next pass
	// (a second or so, longer on a loaded machine): a queue of thousands
	// is megabytes, bounded but not what is measured here. Measure with
	// the queue empty.
	e.auditSettled(t)
	after1k := vmRSS(t, pid)
	if got := hammer(t, 16, total-1_000, func(i int) *http.Request { return tokenReq(fmt.Sprintf("made-up-%d", 1_000+i)) }); got[404] != total-1_000 {
		t.Fatalf("answers: %v", got)
	}
	e.auditSettled(t)
	afterAll := vmRSS(t, pid)
	// The bound: the leak this guards against (finding 1) kept about 870
	// bytes of heap per id, 16 MB over these 19,000 ids, a ratio of 1.3
	// or more. Without it VmRSS still creeps up for a while, bounded: the
	// Go runtime keeps memory beyond its heap in use (which stays at 18-24
	// MB): the audit trail's queue buffers at their largest pass and the
	// collector's headroom over them (docs/BENCHMARKS.md). Measured by hand
	// (2026-12-07, serve alone, 16 callers): 37 MB after 1,000 ids, 56
	// after 50,000, 69 after 100,000, then 66-76 MB up to 500,000; the
	// same with --sqlite-cache-mib 0. Between the two readings here that
	// creep was 1.02-1.07 alone and 1.12 once in a loaded CI run, hence
	// 1.20 rather than the 1.10 it was.
	ratio := float64(afterAll) / float64(after1k)
	t.Logf("VmRSS after 1,000 unknown ids: %d KiB; after %d: %d KiB; ratio %.3f", after1k, total, afterAll, ratio)
	if ratio > 1.20 {
		t.Errorf("memory grew with unknown ids: %d KiB after 1,000, %d KiB after %d (ratio %.2f > 1.20)", after1k, afterAll, total, ratio)
	}
}

// do sends a JSON request with the demo key and returns the answer.
func (e *hardEnv) do(t *testing.T, method, path string, body any) e2eResp {
	t.Helper()
	return e2eDo(t, method, e.base+path, e.key, body)
}

// connect makes connection id through a connect link that the built-in
// emulator approves as alice, and returns the flow.
func (e *hardEnv) connect(t *testing.T, id string, extra map[string]any) e2eFlow {
	t.Helper()
	body := map[string]any{"connection_id": id}
	for k, v := range extra {
		body[k] = v
	}
	r := e.do(t, "POST", "/v1/connect-sessions", body)
	if r.Status != http.StatusCreated {
		t.Fatalf("POST /v1/connect-sessions: %d %s", r.Status, r.Body)
	}
	var sess struct{ URL string }
	json.Unmarshal(r.Body, &sess)
	env := &e2eEnv{t: t, base: e.base}
	return env.follow(sess.URL)
}

// waitFor polls cond every 50ms for up to d of real time.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBinaryEmulatorClockScheduler (finding 7): under serve --emulator the
// store keeps the emulator's clock, so after the clock moves on and a
// refresh fails once, the backoff ends on the same clock and the scheduler
// refreshes the connection on its own.
func TestBinaryEmulatorClockScheduler(t *testing.T) {
	// Every connection, used or not: the clock moves by the whole default
	// active window.
	e := startHard(t, "--scheduler-interval", "100ms", "--refresh-active-window", "0")
	if f := e.connect(t, "u1", nil); f.Final.StatusCode != 200 {
		t.Fatalf("connect: %d %s", f.Final.StatusCode, f.Body)
	}
	if r := e2eDo(t, "POST", e.emu+"/_emulator/faults", "", map[string]any{"token_status": 503, "count": 1}); r.Status/100 != 2 {
		t.Fatalf("set fault: %d %s", r.Status, r.Body)
	}
	if r := e2eDo(t, "POST", e.emu+"/_emulator/clock", "", map[string]string{"advance": "2h"}); r.Status != 200 {
		t.Fatalf("advance: %d %s", r.Status, r.Body)
	}
	waitFor(t, 30*time.Second, "the scheduler refreshed u1 after the failed attempt", func() bool {
		r := e.do(t, "GET", "/v1/connections/u1", nil)
		var v struct {
			ExpiresAt time.Time `json:"expires_at"`
		}
		json.Unmarshal(r.Body, &v)
		now, err := e2eClock(e.emu)
		return err == nil && v.ExpiresAt.After(now.Add(30*time.Minute))
	})
}
