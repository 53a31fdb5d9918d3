package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotoken/spotoken/internal/pgtest"
)

// pgProxy is a TCP proxy in front of PostgreSQL that the test controls:
// it passes traffic, refuses connections (nothing listens; open ones are
// cut), or black-holes (accepts and never answers).
type pgProxy struct {
	t        *testing.T
	addr     string
	upstream string
	mode     atomic.Int32 // 0 pass, 1 refuse, 2 black hole
	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]bool
}

const (
	proxyPass = iota
	proxyRefuse
	proxyBlackHole
)

func newPGProxy(t *testing.T, upstream string) *pgProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{t: t, addr: ln.Addr().String(), upstream: upstream, conns: map[net.Conn]bool{}}
	p.listen(ln)
	t.Cleanup(func() { p.set(proxyRefuse) })
	return p
}

func (p *pgProxy) listen(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.track(c)
			if p.mode.Load() == proxyBlackHole {
				continue // held open, never answered
			}
			up, err := net.Dial("tcp", p.upstream)
			if err != nil {
				c.Close()
				continue
			}
			p.track(up)
			go p.pipe(c, up)
			go p.pipe(up, c)
		}
	}()
}

func (p *pgProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = true
	p.mu.Unlock()
}

// pipe copies src to dst; in black-hole mode it swallows what it reads.
func (p *pgProxy) pipe(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && p.mode.Load() != proxyBlackHole {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	src.Close()
	dst.Close()
}

// set switches the mode: refusing closes the listener and every
// connection; passing again listens anew on the same address and drops
// the connections a black hole held.
func (p *pgProxy) set(mode int32) {
	p.mode.Store(mode)
	p.mu.Lock()
	if mode != proxyBlackHole {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
	ln := p.ln
	p.mu.Unlock()
	switch mode {
	case proxyRefuse:
		ln.Close()
	case proxyPass:
		if nl, err := net.Listen("tcp", p.addr); err == nil {
			p.listen(nl)
		}
	}
}

// TestE2EPostgresOutage (finding 5): PostgreSQL goes away under load, first
// refusing connections, then black-holed. While it is away, tokens still
// valid in memory keep being served to keys verified before; every other
// request answers 503 "unavailable" with Retry-After, none waits past the
// database deadline, /readyz says why; and it all recovers without a
// restart. SPOTOKEN_OUTAGE_SECONDS sets how long each outage lasts (default
// 5; docs/BENCHMARKS.md records 60).
func TestE2EPostgresOutage(t *testing.T) {
	base := pgtest.DSN(t)
	spotokenBinary(t)
	dsn := pgtest.FreshSchema(t, base, "outage")
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Skipf("the test DSN %q is not a URL with a host", base)
	}
	proxy := newPGProxy(t, u.Host)
	u.Host = proxy.addr
	proxied := u.String()
	outage := time.Duration(envInt("SPOTOKEN_OUTAGE_SECONDS", 5)) * time.Second
	const dbTimeout = time.Second

	emu := startSpotoken(t, nil, "emulator", "--addr", "127.0.0.1:0", "--auto-approve", "alice",
		"--client", "spotoken-e2e=http://127.0.0.1/callback")
	b := startBroker(t, proxied, dsn, "--accounts-url", emu.URL, "--api-url", emu.URL, "--db-timeout", dbTimeout.String(),
		"--cache-ttl", "100ms", "--auth-cache-ttl", "100ms")
	srv, key, e := b.srv, b.key, b.e2eEnv
	for _, id := range []string{"c0", "c1", "c2", "cold-refused", "cold-black-holed"} {
		if f, _ := e.connect(key, id, ""); f.Final.StatusCode != 200 {
			t.Fatalf("connect %s: %d %s", id, f.Final.StatusCode, f.Body)
		}
	}
	cached := map[string]string{}
	for _, id := range []string{"c0", "c1", "c2"} {
		r, tok := e.token(key, id)
		if r.Status != 200 {
			t.Fatalf("token %s: %d %s", id, r.Status, r.Body)
		}
		cached[id] = tok.AccessToken
	}

	client := &http.Client{Timeout: dbTimeout + 4*time.Second}
	call := func(method, path, body string) (int, http.Header, []byte, time.Duration, error) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, nil, time.Since(start), err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b, time.Since(start), nil
	}

	type tally struct {
		mu                             sync.Mutex
		served, unavailable, bad, hung int
		slowest                        time.Duration
		took                           []time.Duration
		problems                       []string
	}
	load := func(mode string) *tally {
		var tl tally
		deadline := time.Now().Add(outage)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; time.Now().Before(deadline); i++ {
					var method, path, body, id string
					switch (w + i) % 5 {
					case 0, 1, 2:
						id = []string{"c0", "c1", "c2"}[(w+i)%3]
						method, path, body = "POST", "/v1/connections/"+id+"/token", "{}"
					case 3:
						method, path, body = "POST", "/v1/connections/cold-"+mode+"/token", "{}"
					case 4:
						method, path = "GET", "/v1/connections"
					}
					status, h, b, took, err := call(method, path, body)
					tl.mu.Lock()
					tl.slowest = max(tl.slowest, took)
					tl.took = append(tl.took, took)
					switch {
					case err != nil:
						tl.hung++
						tl.problems = append(tl.problems, mode+" "+path+": "+err.Error())
					case id != "" && status == 200 && bytes.Contains(b, []byte(cached[id])):
						tl.served++
					case id == "" && status == 503 && h.Get("Retry-After") != "" && bytes.Contains(b, []byte(`"error":"unavailable"`)):
						tl.unavailable++
					default:
						tl.bad++
						if len(tl.problems) < 10 {
							tl.problems = append(tl.problems, mode+" "+method+" "+path+": "+http.StatusText(status)+" "+string(b))
						}
					}
					tl.mu.Unlock()
				}
			}()
		}
		// /readyz says why while the database is away.
		time.Sleep(outage / 2)
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Errorf("%s: /readyz: %v", mode, err)
		} else {
			var v map[string]string
			json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if resp.StatusCode != 503 || !strings.Contains(v["error"], "database") {
				t.Errorf("%s: /readyz %d %v, want 503 saying why", mode, resp.StatusCode, v)
			} else {
				t.Logf("%s: /readyz: %s", mode, v["error"])
			}
		}
		wg.Wait()
		return &tl
	}
	recover := func(mode string) {
		t.Helper()
		proxy.set(proxyPass)
		start := time.Now()
		waitFor(t, 30*time.Second, mode+": recovery", func() bool {
			status, _, _, _, err := call("GET", "/v1/connections", "")
			return err == nil && status == 200
		})
		for _, path := range []string{"/v1/connections/cold-" + mode + "/token", "/v1/connections/c0/token"} {
			if status, _, b, _, err := call("POST", path, "{}"); err != nil || status != 200 {
				t.Errorf("%s: after recovery %s: %d %s %v", mode, path, status, b, err)
			}
		}
		if status, _, b, _, _ := call("POST", "/v1/connect-sessions", `{"connection_id":"new"}`); status != 201 {
			t.Errorf("%s: a connect session after recovery: %d %s", mode, status, b)
		}
		t.Logf("%s: recovered %s after the database came back, without a restart", mode, time.Since(start).Round(time.Millisecond))
	}

	for _, phase := range []struct {
		name string
		mode int32
	}{{"refused", proxyRefuse}, {"black-holed", proxyBlackHole}} {
		proxy.set(phase.mode)
		logFrom := len(srv.Stderr.String())
		tl := load(phase.name)
		// The same answers as serve timed them (its request log): from
		// the handler's start to its last byte written, without the load
		// generator's own scheduling on a loaded machine.
		served := serverDurations(t, srv.Stderr.String()[logFrom:])
		slices.Sort(served)
		if n := len(served); n > 0 {
			t.Logf("database %s, serve's own timing of %d answers: slowest %s; %d past the %s deadline",
				phase.name, n, served[n-1].Round(time.Millisecond), n-sort.Search(n, func(i int) bool { return served[i] > dbTimeout }), dbTimeout)
		}
		slices.Sort(tl.took)
		pct := func(p float64) time.Duration {
			return tl.took[min(len(tl.took)-1, int(p*float64(len(tl.took))))].Round(time.Millisecond)
		}
		past := len(tl.took) - sort.Search(len(tl.took), func(i int) bool { return tl.took[i] > dbTimeout })
		twice := len(tl.took) - sort.Search(len(tl.took), func(i int) bool { return tl.took[i] >= 2*dbTimeout })
		t.Logf("database %s for %s: %d cached tokens served, %d answered 503 unavailable with Retry-After, %d other, %d hung; answers p50 %s, p99 %s, p99.9 %s, slowest %s; %d past the %s deadline, %d at twice it or more",
			phase.name, outage, tl.served, tl.unavailable, tl.bad, tl.hung, pct(0.5), pct(0.99), pct(0.999), tl.slowest.Round(time.Millisecond), past, dbTimeout, twice)
		if tl.hung > 0 || tl.bad > 0 || tl.served == 0 || tl.unavailable == 0 {
			t.Errorf("database %s: %d hung, %d unexpected answers:\n%s", phase.name, tl.hung, tl.bad, strings.Join(tl.problems, "\n"))
		}
		// No request may wait out the deadline twice (a timing bound with
		// a whole deadline's slack: what is past one deadline is the
		// request's own work and the machine's scheduling).
		if twice > 0 {
			t.Errorf("database %s: %d answers took twice the %s deadline or more (slowest %s): a request waited for the database twice", phase.name, twice, dbTimeout, tl.slowest)
		}
		recover(phase.name)
	}
}

// serverDurations returns the duration of every request line in serve's
// JSON log.
func serverDurations(t *testing.T, log string) []time.Duration {
	t.Helper()
	var out []time.Duration
	for line := range strings.Lines(log) {
		if !strings.Contains(line, `"msg":"request"`) {
			continue
		}
		var v struct {
			Duration time.Duration `json:"duration"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("serve's request log line %q: %v", line, err)
		}
		out = append(out, v.Duration)
	}
	return out
}
