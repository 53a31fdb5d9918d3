package bench_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spotoken/spotoken"
	"github.com/spotoken/spotoken/postgres"
	"github.com/spotoken/spotoken/seal"
	"github.com/spotoken/spotoken/sqlite"
)

// BenchmarkScale is the scale harness of issue 14: the real spotoken
// binary, built from this checkout, serving N connections from either
// store, against a standalone `spotoken emulator` process, driven from
// outside by this process's load generator. It runs only when
// SPOTOKEN_SCALE=N is set (N connections, e.g. 1000000), so neither
// `go test ./...` nor CI's `go test -bench . -benchtime 1x ./bench` runs
// it; run it with -benchtime 1x (it is one long scenario, not a loop):
//
//	SPOTOKEN_SCALE=1000000 SPOTOKEN_TEST_POSTGRES='postgres://...' \
//	  go test -run '^$' -bench Scale -benchtime 1x -timeout 3h ./bench/ | tee /tmp/scale.txt
//
// The rows are the store benchmarks' (storedata_test.go, bulk-loaded by
// storeload_test.go, sealed under their fixed key, which serve gets as a
// key file): SQLite from the cached file, copied so the cache stays
// untouched; PostgreSQL in a fresh schema dropped at the end. Their
// generated expiries are in 2030, so nothing is due until the harness
// says so. The emulator registers the four bench apps' clients; one
// authorization-code flow per app gives a refresh token that the rows the
// scenario refreshes are re-sealed with (rotation never, so it stays
// valid: the emulator does the same work per refresh whichever user the
// token is for).
//
// Phases (SPOTOKEN_SCALE_PHASES, default all, in this order):
//
//   - refresh: the floor first, with nothing due: a single refresh's
//     latency, as force_refresh vends of distinct connections one at a
//     time, and the emulator's token endpoint called directly. Then N/10
//     "hot" connections (last used within the last 30 minutes, when the
//     store records use) are made due: their expiries spread evenly over
//     (T+lead, T+lead+spread] (SPOTOKEN_SCALE_LEAD, default 2m;
//     SPOTOKEN_SCALE_SPREAD, default 5m; with serve's default 5m refresh
//     window, all of them are due within two minutes of T), and up to
//     30,000 "idle" connections get an expired token. Meanwhile callers
//     vend the idle ones (each an on-demand refresh), open-loop at
//     SPOTOKEN_SCALE_CALLER_RATE requests a second (default 20, below any
//     upstream budget; latency counted from when each request was due), or
//     with 0 as a closed loop of 16 callers, as issue 14 measured. The phase
//     ends when every hot connection has been refreshed, or 30 s after
//     the last hot expiry. Then the store is read: how many hot
//     connections were refreshed, and how many before their expiry (their
//     last_refresh_at before the expiry they had); the emulator's
//     refresh_token grants are counted. Callers' p50 is compared with the
//     floor's; the floor is measured again afterwards.
//   - vend: cache-hit vends (64 connections, vended again and again) and
//     cache-miss vends (distinct connections never vended before) at 16
//     workers, in interleaved rounds; ratio miss ÷ hit, and the server's
//     CPU per request of each (/proc/<pid>/stat). A vend leaves work
//     behind (its audit record, its connection's last use, written
//     every 10 s): after each round the harness waits until serve has
//     written it (settle) and charges that CPU to the round, so that no
//     round pays for another's. The ratio counts it as time too, spread
//     over the machine's cores (as it would have slowed the round's
//     requests on a machine they kept busy).
//   - listing: GET /v1/connections, one at a time, unfiltered and filtered
//     by state (needs_reauth, 3% of rows; revoked, 1%), first page and from
//     a cursor in the middle of the app's N/4 connections, and
//     state=needs_reauth of an app that has none (the harness revokes the
//     last app's needs_reauth connections before serve starts): the worst
//     case of a filter, which finds nothing; ratio to the unfiltered first
//     page. Then cache-miss vends at 16 workers with and without four
//     back-to-back loops of that worst-case listing (one API key),
//     interleaved; ratio with ÷ without.
//   - sweep: every connection not vended yet, once, in a scrambled order
//     (SPOTOKEN_SCALE_SWEEP caps how many connections the run vends in
//     all), each answer checked against the row's kind; then serve's VmRSS
//     and VmHWM (/proc/<pid>/status), and along the way every 100,000.
//
// Start-up (exec to serve's first line, and to /readyz answering 200) is
// reported too. SPOTOKEN_SCALE_SERVE_ARGS adds flags to serve (space
// separated), SPOTOKEN_SCALE_STORES picks the stores (default sqlite, and
// postgres when SPOTOKEN_TEST_POSTGRES is set). Everything is printed as
// lines "scale: ..." and the headline figures as benchmark metrics.
func BenchmarkScale(b *testing.B) {
	s := os.Getenv(envScale)
	if s == "" {
		b.Skip(envScale + " is not set: the scale harness runs only when asked (SPOTOKEN_SCALE=1000000)")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1000 || n > 99_999_999 {
		b.Fatalf("%s=%q: want a number of connections from 1000 to 99999999", envScale, s)
	}
	stores := []string{"sqlite"}
	if os.Getenv(envPostgres) != "" {
		stores = append(stores, "postgres")
	}
	if v := os.Getenv("SPOTOKEN_SCALE_STORES"); v != "" {
		stores = strings.Split(v, ",")
	}
	bin := os.Getenv("SPOTOKEN_SCALE_BIN")
	if bin == "" {
		if bin, err = buildSpotoken(b.TempDir()); err != nil {
			b.Fatal(err)
		}
	}
	for _, kind := range stores {
		b.Run("store="+kind, func(b *testing.B) {
			if b.N > 1 {
				b.Skip("one run is the scenario: use -benchtime 1x")
			}
			runScale(b, bin, kind, n)
		})
	}
}

const envScale = "SPOTOKEN_SCALE"

// scaleHost is the redirect URI the bench apps registered (benchApp).
const scaleRedirect = "https://bench.example/callback"

// scaleUser is the emulator's user who approves every authorization.
const scaleUser = "scale-user"

// scaleSettings are the scenario's knobs, from the environment.
type scaleSettings struct {
	phases        map[string]bool
	lead, spread  time.Duration
	sweep         int
	serveArgs     []string
	callers       int
	callerRate    float64
	vendWorkers   int
	roundTime     time.Duration
	listingCount  int
	floorRefreshN int
}

func scaleSettingsFromEnv(b *testing.B, n int) scaleSettings {
	s := scaleSettings{
		phases: map[string]bool{}, lead: 2 * time.Minute, spread: 5 * time.Minute, sweep: n,
		callers: 16, callerRate: 20, vendWorkers: 16, roundTime: 5 * time.Second, listingCount: 10, floorRefreshN: 200,
	}
	phases := "refresh,vend,listing,sweep"
	if v := os.Getenv("SPOTOKEN_SCALE_PHASES"); v != "" {
		phases = v
	}
	for p := range strings.SplitSeq(phases, ",") {
		if !slices.Contains([]string{"refresh", "vend", "listing", "sweep"}, p) {
			b.Fatalf("SPOTOKEN_SCALE_PHASES: unknown phase %q (refresh, vend, listing, sweep)", p)
		}
		s.phases[p] = true
	}
	for _, d := range []struct {
		env string
		v   *time.Duration
	}{{"SPOTOKEN_SCALE_LEAD", &s.lead}, {"SPOTOKEN_SCALE_SPREAD", &s.spread}} {
		if v := os.Getenv(d.env); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x <= 0 {
				b.Fatalf("%s=%q: want a positive duration", d.env, v)
			}
			*d.v = x
		}
	}
	if v := os.Getenv("SPOTOKEN_SCALE_SWEEP"); v != "" {
		x, err := strconv.Atoi(v)
		if err != nil || x < 0 {
			b.Fatalf("SPOTOKEN_SCALE_SWEEP=%q: want a count", v)
		}
		s.sweep = min(x, n)
	}
	s.serveArgs = strings.Fields(os.Getenv("SPOTOKEN_SCALE_SERVE_ARGS"))
	if v := os.Getenv("SPOTOKEN_SCALE_CALLER_RATE"); v != "" {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || x < 0 {
			b.Fatalf("SPOTOKEN_SCALE_CALLER_RATE=%q: want requests per second (0: a closed loop of 16 callers)", v)
		}
		s.callerRate = x
	}
	return s
}

// scaleReport prints the run's lines as they come.
type scaleReport struct {
	prefix string
	start  time.Time
}

func (r *scaleReport) printf(format string, args ...any) {
	fmt.Printf("scale: %s [%6.1fs] %s\n", r.prefix, time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

// scaleWorld is one store's run: the processes, the database, the keys.
type scaleWorld struct {
	b        *testing.B
	n        int
	kind     string
	set      scaleSettings
	rep      *scaleReport
	dir      string
	db       scaleDB
	emu      *childProc
	serve    *childProc
	url      string
	apiKey   map[string]string // app → API key
	grant    map[string]string // app → the emulator's refresh token
	client   *http.Client
	mu       sync.Mutex
	vended   []bool // rows vended so far (each row counts once in the sweep)
	order    []int  // the sweep's order of rows
	pos      int    // the next row of order to look at
	deferred []int  // rows skipped by a nextUnvended with pred
}

func runScale(b *testing.B, bin, kind string, n int) {
	ctx := context.Background()
	w := &scaleWorld{b: b, n: n, kind: kind, set: scaleSettingsFromEnv(b, n), dir: b.TempDir(),
		rep: &scaleReport{prefix: kind, start: time.Now()}, apiKey: map[string]string{}, grant: map[string]string{}}
	w.rep.printf("N=%d, phases %v, serve args %q, GOMAXPROCS of this process %d", n, slices.Sorted(maps.Keys(w.set.phases)), w.set.serveArgs, runtimeProcs())
	keys, err := benchKeys()
	if err != nil {
		b.Fatal(err)
	}
	keyFile, err := writeBenchKeyFile(w.dir)
	if err != nil {
		b.Fatal(err)
	}

	// The database.
	t0 := time.Now()
	var dbArg string
	switch kind {
	case "sqlite":
		f := loadStoreDB(b, "sqlite", n)
		f.flushNotes(b)
		path := filepath.Join(w.dir, "spotoken.db")
		if err := copyFile(f.path, path); err != nil {
			b.Fatal(err)
		}
		dbArg = path
		w.db, err = openScaleSQLite(ctx, path)
	case "postgres":
		base := benchPostgresDSN(b)
		schema := "spotoken_scale_" + randomSuffix()
		if err := loadScalePostgres(ctx, base, schema, n, keys); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := dropSchema(base, schema); err != nil {
				b.Errorf("dropping schema %s: %v", schema, err)
			}
		})
		dbArg = pgWithParams(base, "search_path", schema)
		w.db, err = openScalePostgres(ctx, dbArg)
	default:
		b.Fatalf("unknown store %q", kind)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.db.close)
	w.rep.printf("database of %d connections ready in %v (%s)", n, time.Since(t0).Round(time.Millisecond), dbArg)

	// The emulator, and one grant per app.
	args := []string{"emulator", "--addr", "127.0.0.1:0", "--auto-approve", scaleUser}
	for a := range min(benchApps, n) {
		app := benchApp(a)
		args = append(args, "--client", app.ClientID+":"+app.ClientSecret.Reveal()+"="+scaleRedirect)
	}
	w.emu, err = startChild("emulator", bin, filepath.Join(w.dir, "emulator.log"), time.Minute, args...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if _, err := w.emu.stop(); err != nil {
			b.Error(err)
		}
	})
	w.client = newLoadClient(64)
	b.Cleanup(w.client.CloseIdleConnections)
	for a := range min(benchApps, n) {
		rt, err := w.authorize(benchApp(a))
		if err != nil {
			b.Fatal(err)
		}
		w.grant[benchAppID(a)] = rt
	}

	// API keys, through the store as spotoken apikeys would.
	if err := w.createAPIKeys(ctx, kind, dbArg, keys); err != nil {
		b.Fatal(err)
	}

	sets := pickScaleSets(n)
	if err := w.db.prepare(ctx, w.sealGranted(keys, sets.granted()), benchAppID(benchApps-1), w.keys(sets.hot), time.Now()); err != nil {
		b.Fatal(err)
	}
	w.rep.printf("sets: %d hot, %d idle, %d floor, %d hit rows; %d rows re-sealed with the emulator's grants; last_used_at recorded: %v",
		len(sets.hot), len(sets.idle), len(sets.floor), len(sets.hit), len(sets.granted()), w.db.recordsUse())

	// serve.
	// --public-url makes serve's callback the bench apps' redirect URI, so
	// that a vend of a needs_reauth connection mints its re-consent link
	// as in production.
	// serve --json prints the public URL, so the harness picks the port.
	addr, err := freeAddr()
	if err != nil {
		b.Fatal(err)
	}
	serveArgs := append([]string{"serve", "--json", "--addr", addr, "--db", dbArg, "--key-file", keyFile,
		"--accounts-url", w.emu.first, "--api-url", w.emu.first, "--public-url", strings.TrimSuffix(scaleRedirect, "/callback")}, w.set.serveArgs...)
	w.serve, err = startChild("serve", bin, filepath.Join(w.dir, "serve.log"), 5*time.Minute, serveArgs...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if _, err := w.serve.stop(); err != nil {
			b.Error(err)
		}
	})
	var info struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal([]byte(w.serve.first), &info); err != nil || info.URL == "" {
		b.Fatalf("serve --json printed %q: %v", w.serve.first, err)
	}
	w.url = "http://" + addr
	t1 := time.Now()
	if err := waitReady(ctx, w.url+"/readyz", time.Minute); err != nil {
		b.Fatal(err)
	}
	ready := w.serve.started + time.Since(t1)
	rss, _, _ := pidMemory(w.serve.pid())
	w.rep.printf("start-up: first line after %v, /readyz 200 after %v; VmRSS %d MB", w.serve.started.Round(time.Millisecond), ready.Round(time.Millisecond), rss>>20)
	b.ReportMetric(ready.Seconds(), "startup-s")

	w.vended = make([]bool, n)
	w.order = scrambled(n)

	if w.set.phases["refresh"] {
		w.phaseRefresh(ctx, sets)
	}
	if w.set.phases["vend"] {
		w.phaseVend(sets)
	}
	if w.set.phases["listing"] {
		w.phaseListing()
	}
	if w.set.phases["sweep"] {
		w.phaseSweep()
	}
	cpu, _ := pidCPU(w.serve.pid())
	rss, hwm, _ := pidMemory(w.serve.pid())
	w.rep.printf("end: serve used %v of CPU in all; VmRSS %d MB, VmHWM %d MB", cpu.Round(time.Millisecond), rss>>20, hwm>>20)
	if !w.serve.alive() {
		b.Fatalf("serve exited during the run; its log:\n%s", tailFile(w.serve.logPath, 4000))
	}
	took, err := w.serve.stop()
	w.rep.printf("serve exited %v after SIGTERM (its --shutdown-timeout is 30s unless SPOTOKEN_SCALE_SERVE_ARGS says otherwise)", took.Round(time.Millisecond))
	if err != nil {
		b.Errorf("%v; its log:\n%s", err, tailFile(w.serve.logPath, 4000))
	}
	if took > time.Minute {
		b.Errorf("serve took %v to exit after SIGTERM; its log:\n%s", took, tailFile(w.serve.logPath, 4000))
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// writeBenchKeyFile writes benchKeys as a key file serve loads.
func writeBenchKeyFile(dir string) (string, error) {
	material := sha256.Sum256([]byte("spotoken store benchmarks, key 1"))
	kf := fmt.Sprintf(`{"primary":1,"keys":[{"version":1,"key":%q}]}`, base64.StdEncoding.EncodeToString(material[:]))
	path := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(path, []byte(kf), 0o600); err != nil {
		return "", err
	}
	// The file must hold the very keys the rows were sealed with.
	ring, err := seal.LoadKeyFile(path)
	if err != nil {
		return "", err
	}
	want, err := benchKeys()
	if err != nil {
		return "", err
	}
	probe, err := want.Seal([]byte("probe"), []byte("ad"))
	if err != nil {
		return "", err
	}
	if _, err := ring.Open(probe, []byte("ad")); err != nil {
		return "", fmt.Errorf("the key file does not open what benchKeys seals: %w", err)
	}
	return path, nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// authorize runs the authorization-code flow of app at the emulator, as
// its consenting user, and returns the refresh token.
func (w *scaleWorld) authorize(app *spotoken.App) (string, error) {
	var scopes []string
	for _, s := range benchScopeSets {
		scopes = append(scopes, s...)
	}
	slices.Sort(scopes)
	scopes = slices.Compact(scopes)
	q := url.Values{"client_id": {app.ClientID}, "response_type": {"code"}, "redirect_uri": {scaleRedirect},
		"state": {"scale"}, "scope": {strings.Join(scopes, " ")}}
	noFollow := &http.Client{Transport: w.client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(w.emu.first + "/authorize?" + q.Encode())
	if err != nil {
		return "", err
	}
	drain(resp)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" {
		return "", fmt.Errorf("authorize %s: status %d, Location %q", app.ClientID, resp.StatusCode, resp.Header.Get("Location"))
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {scaleRedirect}}
	req, _ := http.NewRequest(http.MethodPost, w.emu.first+"/api/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(app.ClientID, app.ClientSecret.Reveal())
	resp, err = w.client.Do(req)
	if err != nil {
		return "", err
	}
	body := drain(resp)
	var tok struct {
		RefreshToken string `json:"refresh_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tok) != nil || tok.RefreshToken == "" {
		return "", fmt.Errorf("code exchange %s: status %d", app.ClientID, resp.StatusCode)
	}
	return tok.RefreshToken, nil
}

func (w *scaleWorld) createAPIKeys(ctx context.Context, kind, dbArg string, keys *seal.KeyRing) error {
	var st spotoken.Store
	var err error
	switch kind {
	case "sqlite":
		st, err = sqlite.Open(ctx, sqlite.Config{Path: dbArg, Keys: keys})
	default:
		st, err = postgres.Open(ctx, postgres.Config{DSN: dbArg, Keys: keys})
	}
	if err != nil {
		return err
	}
	defer st.Close()
	for a := range min(benchApps, w.n) {
		key, rec := spotoken.NewAPIKey(benchAppID(a), "scale", time.Now())
		if err := st.CreateAPIKey(ctx, rec); err != nil {
			return err
		}
		w.apiKey[benchAppID(a)] = key.Reveal()
	}
	return nil
}

// scaleSets are the rows each phase uses, by row number: disjoint, every
// one an active connection with a refresh token (kindActive).
type scaleSets struct {
	hot, idle, floor, hit []int
}

func (s scaleSets) granted() []int {
	return slices.Concat(s.hot, s.idle, s.floor)
}

// pickScaleSets picks the sets by row number modulo 9, spread over the
// whole table: hot rows ≡ 0, idle ≡ 1, floor ≡ 2, hit ≡ 3.
func pickScaleSets(n int) scaleSets {
	var s scaleSets
	want := []struct {
		set *[]int
		max int
	}{{&s.hot, n / 10}, {&s.idle, min(30000, n*3/100)}, {&s.floor, 2 * 60}, {&s.hit, 64}}
	for i := range n {
		if rowMetaAt(i).kind != kindActive || i%9 > 3 {
			continue
		}
		x := want[i%9]
		if len(*x.set) < x.max {
			*x.set = append(*x.set, i)
		}
	}
	return s
}

// scrambled returns 0..n-1 in a fixed scrambled order (multiplication by a
// prime modulo n), so that vends do not walk the table in key order.
func scrambled(n int) []int {
	const p = 2_147_483_647 // prime, larger than any n: coprime to it
	out := make([]int, n)
	for k := range n {
		out[k] = int(int64(k) * p % int64(n))
	}
	return out
}

// sealedGrant is a row re-sealed with an emulator's refresh token.
type sealedGrant struct {
	key             spotoken.ConnectionKey
	access, refresh []byte
}

func (w *scaleWorld) sealGranted(keys *seal.KeyRing, rows []int) []sealedGrant {
	codec := keysCodec(keys)
	out := make([]sealedGrant, 0, len(rows))
	for _, i := range rows {
		c := genConnection(i, w.n)
		tok := c.Token
		tok.RefreshToken = spotoken.Secret(w.grant[c.AppID])
		a, r, err := codec.SealToken(c.Key(), tok)
		if err != nil {
			w.b.Fatal(err)
		}
		out = append(out, sealedGrant{key: c.Key(), access: a, refresh: r})
	}
	return out
}

// vendReq returns a token request for row i.
func (w *scaleWorld) vendReq(i int, body string) *http.Request {
	k := rowKey(i, w.n)
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(http.MethodPost, w.url+"/v1/connections/"+k.ID+"/token", rd)
	req.Header.Set("Authorization", "Bearer "+w.apiKey[k.AppID])
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// checkVend returns the check of row i's token answer, by its kind:
// active rows (in backoff or not) answer a token; needs_reauth and
// revoked ones the error of their state.
func (w *scaleWorld) checkVend(i int) func(int, []byte) error {
	kind := rowMetaAt(i).kind
	return func(status int, body []byte) error {
		switch kind {
		case kindNeedsReauth, kindRevoked:
			if status == http.StatusOK || status >= 500 {
				return fmt.Errorf("row %d (%s): status %d: %.200s", i, map[rowKind]string{kindNeedsReauth: "needs_reauth", kindRevoked: "revoked"}[kind], status, body)
			}
			return nil
		}
		if status != http.StatusOK || !strings.Contains(string(body), `"access_token":"`) {
			return fmt.Errorf("row %d: status %d: %.200s", i, status, body)
		}
		return nil
	}
}

func (w *scaleWorld) markVended(i int) {
	w.mu.Lock()
	w.vended[i] = true
	w.mu.Unlock()
}

// nextUnvended returns the next row of the sweep's order not vended yet
// that pred accepts (nil: any), marking it vended; ok is false when none
// is left. Rows pred refuses are kept for the next call without pred.
func (w *scaleWorld) nextUnvended(pred func(int) bool) (int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if pred == nil {
		for len(w.deferred) > 0 {
			i := w.deferred[len(w.deferred)-1]
			w.deferred = w.deferred[:len(w.deferred)-1]
			if !w.vended[i] {
				w.vended[i] = true
				return i, true
			}
		}
	}
	for w.pos < len(w.order) {
		i := w.order[w.pos]
		w.pos++
		if w.vended[i] {
			continue
		}
		if pred != nil && !pred(i) {
			w.deferred = append(w.deferred, i)
			continue
		}
		w.vended[i] = true
		return i, true
	}
	return 0, false
}

func (w *scaleWorld) vendedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := 0
	for _, v := range w.vended {
		if v {
			c++
		}
	}
	return c
}

// ---- phase refresh -------------------------------------------------------

// refreshGrants returns the emulator's count of refresh_token grants.
func (w *scaleWorld) refreshGrants() (int64, error) {
	resp, err := w.client.Get(w.emu.first + "/_emulator/stats")
	if err != nil {
		return 0, err
	}
	body := drain(resp)
	var st struct {
		TokenRequests map[string]int64 `json:"token_requests"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &st) != nil {
		return 0, fmt.Errorf("emulator stats: status %d: %.200s", resp.StatusCode, body)
	}
	return st.TokenRequests["refresh_token"], nil
}

// floorRefresh measures a single refresh's latency: force_refresh vends
// of distinct connections, one at a time, 100 ms apart (below any
// upstream rate limit, so no request waits for the one before), nothing
// else going on.
func (w *scaleWorld) floorRefresh(rows []int) scaleRun {
	k := 0
	return scaleDrive(w.client, w.serve.pid(), 1, nil, func() (scaleReq, bool) {
		if k == len(rows) {
			return scaleReq{}, false
		}
		if k > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		i := rows[k]
		k++
		w.markVended(i)
		return scaleReq{req: w.vendReq(i, `{"force_refresh":true}`), check: w.checkVend(i)}, true
	})
}

// directRefresh measures the emulator's token endpoint alone: refresh
// grants sent to it directly, one at a time.
func (w *scaleWorld) directRefresh(count int) scaleRun {
	app := benchApp(0)
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {w.grant[app.ID]}}.Encode()
	k := 0
	return scaleDrive(w.client, w.emu.pid(), 1, nil, func() (scaleReq, bool) {
		if k == count {
			return scaleReq{}, false
		}
		k++
		req, _ := http.NewRequest(http.MethodPost, w.emu.first+"/api/token", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(app.ClientID, app.ClientSecret.Reveal())
		return scaleReq{req: req, check: func(status int, body []byte) error {
			if status != http.StatusOK {
				return fmt.Errorf("status %d: %.200s", status, body)
			}
			return nil
		}}, true
	})
}

func (w *scaleWorld) phaseRefresh(ctx context.Context, sets scaleSets) {
	b := w.b
	half := len(sets.floor) / 2
	direct := w.directRefresh(w.set.floorRefreshN)
	if direct.err != nil {
		b.Fatal(direct.err)
	}
	floor := w.floorRefresh(sets.floor[:half])
	if floor.err != nil {
		b.Fatal(floor.err)
	}
	w.rep.printf("refresh floor: emulator direct (c=1, back to back) p50 %.2f ms; one refresh through serve (force_refresh, c=1, 100 ms apart) p50 %.2f ms, max %.2f ms",
		ms(direct.quantile(0.5)), ms(floor.quantile(0.5)), ms(floor.quantile(1)))

	grants0, err := w.refreshGrants()
	if err != nil {
		b.Fatal(err)
	}
	serveCPU0, _ := pidCPU(w.serve.pid())
	emuCPU0, _ := pidCPU(w.emu.pid())
	// Make the hot rows due, the idle ones expired.
	T := time.Now()
	hotExpiry := make([]time.Time, len(sets.hot))
	for k := range sets.hot {
		hotExpiry[k] = T.Add(w.set.lead + time.Duration(float64(w.set.spread)*float64(k+1)/float64(len(sets.hot))))
	}
	idleExpiry := make([]time.Time, len(sets.idle))
	for k := range idleExpiry {
		idleExpiry[k] = T.Add(-time.Hour)
	}
	if err := w.db.setExpiry(ctx, w.keys(sets.hot), hotExpiry, true); err != nil {
		b.Fatal(err)
	}
	if err := w.db.setExpiry(ctx, w.keys(sets.idle), idleExpiry, false); err != nil {
		b.Fatal(err)
	}
	flipped := time.Now()
	last := hotExpiry[len(hotExpiry)-1]
	w.rep.printf("made %d hot connections due (expiring %v..%v after T, every %.2f ms) and %d idle ones expired, in %v",
		len(sets.hot), w.set.lead, w.set.lead+w.set.spread, ms(w.set.spread)/float64(len(sets.hot)), len(sets.idle), flipped.Sub(T).Round(time.Millisecond))

	// Callers vend the idle connections meanwhile.
	stopCallers := make(chan struct{})
	var callers scaleRun
	callersDone := make(chan struct{})
	var idleNext atomic.Int64
	go func() {
		defer close(callersDone)
		next := func() (scaleReq, bool) {
			k := int(idleNext.Add(1)) - 1
			if k >= len(sets.idle) {
				return scaleReq{}, false
			}
			i := sets.idle[k]
			w.markVended(i)
			return scaleReq{req: w.vendReq(i, ""), check: w.checkVend(i)}, true
		}
		if w.set.callerRate > 0 {
			callers = scaleOpen(w.client, w.serve.pid(), 64, w.set.callerRate, stopCallers, next)
		} else {
			callers = scaleDrive(w.client, w.serve.pid(), w.set.callers, stopCallers, next)
		}
	}()
	// Watch the hot rows until all are refreshed or the last has expired.
	deadline := last.Add(30 * time.Second)
	var refreshed, before int
	for {
		time.Sleep(10 * time.Second)
		refreshed, before, err = w.db.hotProgress(ctx, T)
		if err != nil {
			b.Fatal(err)
		}
		lateNow := w.expiredHot(hotExpiry, time.Now())
		w.rep.printf("  T+%3.0fs: %d of %d hot refreshed (%d before expiry; %d have expired by now); callers so far %d%s",
			time.Since(T).Seconds(), refreshed, len(sets.hot), before, lateNow, idleNext.Load(), w.schedulerMetrics())
		if refreshed == len(sets.hot) || time.Now().After(deadline) || !w.serve.alive() {
			break
		}
	}
	close(stopCallers)
	<-callersDone
	end := time.Now()
	refreshed, before, err = w.db.hotProgress(ctx, T)
	if err != nil {
		b.Fatal(err)
	}
	grants1, err := w.refreshGrants()
	if err != nil {
		b.Fatal(err)
	}
	serveCPU1, _ := pidCPU(w.serve.pid())
	emuCPU1, _ := pidCPU(w.emu.pid())
	if callers.err != nil {
		b.Errorf("callers: %v", callers.err)
	}
	// Idle rows the callers did not reach, and hot rows not refreshed, get
	// their generated expiry back, so that later phases find only valid
	// tokens (an expired one would make a vend wait for a refresh).
	if err := w.restoreExpiry(ctx, sets, T); err != nil {
		b.Fatal(err)
	}
	after := w.floorRefresh(sets.floor[half:])
	if after.err != nil {
		b.Fatal(after.err)
	}
	floorP50 := (floor.quantile(0.5) + after.quantile(0.5)) / 2
	w.rep.printf("refresh: %d of %d hot connections refreshed, %d before their expiry, in %v (%.0f/s over the phase); emulator refresh_token grants meanwhile %d (hot refreshed %d + callers answered %d = %d)",
		refreshed, len(sets.hot), before, end.Sub(T).Round(time.Second), float64(refreshed)/end.Sub(T).Seconds(),
		grants1-grants0, refreshed, callers.requests, refreshed+callers.requests)
	if g := grants1 - grants0; g > 0 {
		phase := end.Sub(T)
		w.rep.printf("refresh CPU: serve %v (%.0f%% of one core over the phase), %.2f ms a refresh; emulator %.2f ms a refresh: serve alone could do %.0f refreshes/s on one whole core",
			(serveCPU1 - serveCPU0).Round(time.Millisecond), 100*(serveCPU1-serveCPU0).Seconds()/phase.Seconds(),
			ms((serveCPU1-serveCPU0)/time.Duration(g)), ms((emuCPU1-emuCPU0)/time.Duration(g)), float64(g)/(serveCPU1-serveCPU0).Seconds())
	}
	load := fmt.Sprintf("closed loop, c=%d", w.set.callers)
	if w.set.callerRate > 0 {
		load = fmt.Sprintf("open loop, %g/s", w.set.callerRate)
	}
	w.rep.printf("callers with an expired token (%s): %d answered, %.1f/s, p50 %.2f ms, p99 %.2f ms; floor (one refresh, c=1) p50 %.2f ms before, %.2f ms after: p50 ratio %.2f (goal < 2)",
		load, callers.requests, callers.rps(), ms(callers.quantile(0.5)), ms(callers.quantile(0.99)),
		ms(floor.quantile(0.5)), ms(after.quantile(0.5)), float64(callers.quantile(0.5))/float64(floorP50))
	b.ReportMetric(float64(before)/float64(len(sets.hot)), "hot-before-expiry-frac")
	b.ReportMetric(float64(callers.quantile(0.5))/float64(floorP50), "caller-p50-vs-refresh")
}

// restoreExpiry gives the idle rows not vended and the hot rows not
// refreshed since T their generated expiry (and last refresh) back.
func (w *scaleWorld) restoreExpiry(ctx context.Context, sets scaleSets, T time.Time) error {
	stale, err := w.db.hotStale(ctx, T)
	if err != nil {
		return err
	}
	w.mu.Lock()
	for _, i := range sets.idle {
		if !w.vended[i] {
			stale = append(stale, rowKey(i, w.n))
		}
	}
	w.mu.Unlock()
	exp := make([]time.Time, len(stale))
	for k, key := range stale {
		i, err := strconv.Atoi(strings.TrimPrefix(key.ID, "conn-"))
		if err != nil {
			return err
		}
		exp[k] = genConnection(i, w.n).Token.Expiry
	}
	return w.db.setExpiry(ctx, stale, exp, false)
}

// schedulerMetrics returns serve's metrics of the scheduler's backlog and
// lag, of the upstream rate, of the memory held (token cache entries, Go
// heap, audit queue) and of audit records dropped, as "; name value"
// pairs, where serve has them, and how long the scrape took (the
// store-wide counts, a pass over every connection, are counted in the
// background once they are --metrics-max-age old: the scrape must not
// wait for them).
func (w *scaleWorld) schedulerMetrics() string {
	t0 := time.Now()
	resp, err := w.client.Get(w.url + "/metrics")
	if err != nil {
		return ""
	}
	body := drain(resp)
	var out strings.Builder
	fmt.Fprintf(&out, "; scrape %.1f ms", ms(time.Since(t0)))
	for line := range strings.Lines(string(body)) {
		for _, m := range []string{"spotoken_refresh_due_backlog ", "spotoken_refresh_scheduler_lag_seconds ", "spotoken_upstream_rate ",
			"spotoken_token_cache_entries ", "go_memstats_heap_inuse_bytes ", "spotoken_audit_queue_length ", "spotoken_audit_records_dropped_total",
			"spotoken_connection_counts_age_seconds ", "spotoken_connection_counts_duration_seconds "} {
			if strings.HasPrefix(line, m) {
				out.WriteString("; " + strings.TrimSpace(line))
			}
		}
	}
	return out.String()
}

// fatal ends the run on err, with serve's log lines other than its
// request and refresh lines (the errors and warnings that explain it).
func (w *scaleWorld) fatal(err error) {
	w.b.Helper()
	var lines []string
	for line := range strings.Lines(tailFile(w.serve.logPath, 4<<20)) {
		if !strings.Contains(line, `"msg":"request"`) && !strings.Contains(line, `"msg":"refreshed"`) {
			lines = append(lines, line)
		}
	}
	w.b.Fatalf("%v\nserve's last log lines other than requests and refreshes:\n%s", err, strings.Join(lines[max(0, len(lines)-30):], ""))
}

func (w *scaleWorld) expiredHot(exp []time.Time, now time.Time) int {
	k, _ := slices.BinarySearchFunc(exp, now, func(t, now time.Time) int { return t.Compare(now) })
	return k
}

func (w *scaleWorld) keys(rows []int) []spotoken.ConnectionKey {
	out := make([]spotoken.ConnectionKey, len(rows))
	for k, i := range rows {
		out[k] = rowKey(i, w.n)
	}
	return out
}

// ---- phase vend -------------------------------------------------------

// missTarget vends distinct, never vended, active connections outside
// the refresh phase's sets (whose tokens the harness changed).
func (w *scaleWorld) missTarget() func() (scaleReq, bool) {
	return func() (scaleReq, bool) {
		i, ok := w.nextUnvended(func(i int) bool { return i%9 > 3 && rowMetaAt(i).kind == kindActive })
		if !ok {
			w.b.Errorf("no connection left that was never vended: N is too small for the vend and listing phases")
			return scaleReq{}, false
		}
		return scaleReq{req: w.vendReq(i, ""), check: w.checkVend(i)}, true
	}
}

func (w *scaleWorld) hitTarget(rows []int) func() (scaleReq, bool) {
	var k atomic.Int64
	return func() (scaleReq, bool) {
		i := rows[int(k.Add(1))%len(rows)]
		return scaleReq{req: w.vendReq(i, ""), check: w.checkVend(i)}, true
	}
}

// rounds runs the targets alternately (A B B A A B ...), each for
// roundTime per round, and returns their sums.
func (w *scaleWorld) rounds(count int, targets ...func(stop <-chan struct{}) scaleRun) []scaleRun {
	out := make([]scaleRun, len(targets))
	for r := range count {
		order := []int{0, 1}
		if r%2 == 1 {
			order = []int{1, 0}
		}
		for _, t := range order {
			res := targets[t](timer(w.set.roundTime))
			if res.err != nil {
				w.fatal(res.err)
			}
			out[t].add(res)
		}
	}
	return out
}

// settle waits until serve has written the work its requests left
// behind (audit records queued, callers' uses of connections noted and
// not yet written: the metrics spotoken_audit_queue_length and
// spotoken_connection_uses_pending at 0), up to limit, and adds the CPU
// serve used meanwhile to r.deferred.
func (w *scaleWorld) settle(r *scaleRun, limit time.Duration) error {
	cpu0, err := pidCPU(w.serve.pid())
	if err != nil {
		return err
	}
	deadline := time.Now().Add(limit)
	for {
		pending, err := w.pendingWork()
		if err != nil {
			return err
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("serve still had %.0f records and uses to write %v after a round", pending, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cpu1, err := pidCPU(w.serve.pid())
	if err != nil {
		return err
	}
	r.deferred += cpu1 - cpu0
	return nil
}

// pendingWork scrapes serve's metrics for the audit records queued and
// the uses not yet written, and returns their sum.
func (w *scaleWorld) pendingWork() (float64, error) {
	resp, err := w.client.Get(w.url + "/metrics")
	if err != nil {
		return 0, err
	}
	body := drain(resp)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	// The audit queue's metric is absent when serve runs with --audit=false.
	values := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		name, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if name != "spotoken_audit_queue_length" && name != "spotoken_connection_uses_pending" || !ok {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %w", name, err)
		}
		values[name] = f
	}
	if _, ok := values["spotoken_connection_uses_pending"]; !ok {
		return 0, fmt.Errorf("serve's metrics lack spotoken_connection_uses_pending")
	}
	return values["spotoken_audit_queue_length"] + values["spotoken_connection_uses_pending"], nil
}

func (w *scaleWorld) phaseVend(sets scaleSets) {
	for _, i := range sets.hit {
		w.markVended(i)
	}
	warm := scaleDrive(w.client, w.serve.pid(), 4, timer(time.Second), w.hitTarget(sets.hit))
	if warm.err != nil {
		w.fatal(warm.err)
	}
	// Written before the first round, so that none pays for the warm-up.
	var warmed scaleRun
	if err := w.settle(&warmed, settleLimit); err != nil {
		w.fatal(err)
	}
	miss := w.missTarget()
	hit := w.hitTarget(sets.hit)
	settled := func(target func() (scaleReq, bool)) func(stop <-chan struct{}) scaleRun {
		return func(stop <-chan struct{}) scaleRun {
			r := scaleDrive(w.client, w.serve.pid(), w.set.vendWorkers, stop, target)
			if r.err == nil {
				r.err = w.settle(&r, settleLimit)
			}
			return r
		}
	}
	res := w.rounds(4, settled(hit), settled(miss))
	h, m := res[0], res[1]
	cores := runtime.NumCPU()
	w.rep.printf("vend (c=%d, 4 rounds of %v each): cache hit %.0f/s p50 %.2f ms, serve CPU %.0f µs/req (%.0f of it written after its round); cache miss %.0f/s p50 %.2f ms, serve CPU %.0f µs/req (%.0f after); miss ÷ hit %.2f (goal ≥ 0.5; %.2f counting the requests' time alone), CPU miss ÷ hit %.2f; the load generator's own CPU %.0f µs a hit, %.0f a miss",
		w.set.vendWorkers, w.set.roundTime, h.settledRPS(cores), ms(h.quantile(0.5)), us(h.settledCPUPerReq()), us(h.deferredPerReq()),
		m.settledRPS(cores), ms(m.quantile(0.5)), us(m.settledCPUPerReq()), us(m.deferredPerReq()),
		m.settledRPS(cores)/h.settledRPS(cores), m.rps()/h.rps(), float64(m.settledCPUPerReq())/float64(h.settledCPUPerReq()),
		us(h.genPerReq()), us(m.genPerReq()))
	w.b.ReportMetric(m.settledRPS(cores)/h.settledRPS(cores), "miss-vs-hit")
	w.b.ReportMetric(h.settledRPS(cores), "hit-req/s")
	w.b.ReportMetric(m.settledRPS(cores), "miss-req/s")
}

// settleLimit bounds a settle: the uses are written every 10 s
// (refresh.Config.UseFlushInterval), the audit records every second.
const settleLimit = 30 * time.Second

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// ---- phase listing ---------------------------------------------------

func (w *scaleWorld) listReq(app int, query string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, w.url+"/v1/connections?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+w.apiKey[benchAppID(app)])
	return req
}

func checkList(status int, body []byte) error {
	if status != http.StatusOK || !strings.HasPrefix(string(body), `{"connections":[`) {
		return fmt.Errorf("status %d: %.200s", status, body)
	}
	return nil
}

func (w *scaleWorld) phaseListing() {
	appRows := w.n / benchApps
	mid := fmt.Sprintf("conn-%08d", appRows/2)
	type listing struct {
		app   int
		query string
	}
	// App 0 has every state (3% needs_reauth, 1% revoked); the last app
	// has no needs_reauth connection (the harness revoked them): listing
	// them finds nothing, the worst case of a filter, which a scan of the
	// app's rows answers only after reading all of them.
	last := benchApps - 1
	listings := []listing{{0, ""}, {0, "state=needs_reauth"}, {0, "state=revoked"}, {0, "cursor=" + mid},
		{0, "state=needs_reauth&cursor=" + mid}, {0, "state=revoked&cursor=" + mid}, {last, "state=needs_reauth"}}
	var base time.Duration
	for qi, l := range listings {
		k := 0
		r := scaleDrive(w.client, w.serve.pid(), 1, timer(30*time.Second), func() (scaleReq, bool) {
			if k == w.set.listingCount {
				return scaleReq{}, false
			}
			k++
			return scaleReq{req: w.listReq(l.app, l.query), check: checkList}, true
		})
		if r.err != nil {
			w.fatal(r.err)
		}
		if qi == 0 {
			base = r.quantile(0.5)
		}
		w.rep.printf("listing app %d %-42q %d requests, p50 %.2f ms, max %.2f ms, serve CPU %.1f ms/req; p50 ÷ unfiltered first page %.2f",
			l.app, "?"+l.query, r.requests, ms(r.quantile(0.5)), ms(r.quantile(1)), ms(r.cpuPerReq()), float64(r.quantile(0.5))/float64(base))
		switch {
		case l.app == 0 && l.query == "state=needs_reauth":
			w.b.ReportMetric(ms(r.quantile(0.5)), "filtered-list-p50-ms")
		case l.app == last:
			w.b.ReportMetric(ms(r.quantile(0.5)), "empty-filter-list-p50-ms")
		}
	}

	// Cache-miss vends with and without four filtered listings, the
	// worst case above, from one key, back to back. serve may make the
	// key's listings take turns (--list-concurrency), pause the key after
	// each for a multiple of its duration (--list-share: four times it at
	// the default 0.2, so the four loops get about a fifth of the time,
	// however many they are), and answer one that could not start within
	// --list-wait 429 with Retry-After (the time until the key's slot
	// frees, at least 1 s): the loops then wait a second, the Retry-After
	// of a pause of a few milliseconds, and the refusals are counted.
	miss := w.missTarget()
	var listLat sync.Mutex
	var lats []time.Duration
	var refused atomic.Int64
	checkListing := func(status int, body []byte) error {
		if status == http.StatusTooManyRequests {
			refused.Add(1)
			time.Sleep(time.Second) // serve's Retry-After after a short listing
			return nil
		}
		return checkList(status, body)
	}
	res := w.rounds(4,
		func(stop <-chan struct{}) scaleRun {
			return scaleDrive(w.client, w.serve.pid(), w.set.vendWorkers, stop, miss)
		},
		func(stop <-chan struct{}) scaleRun {
			var wg sync.WaitGroup
			lc := newLoadClient(4)
			defer lc.CloseIdleConnections()
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := scaleDrive(lc, w.serve.pid(), 1, stop, func() (scaleReq, bool) {
						return scaleReq{req: w.listReq(last, "state=needs_reauth"), check: checkListing}, true
					})
					if r.err != nil {
						w.b.Error(r.err)
					}
					listLat.Lock()
					lats = append(lats, r.lat...)
					listLat.Unlock()
				}()
			}
			r := scaleDrive(w.client, w.serve.pid(), w.set.vendWorkers, stop, miss)
			wg.Wait()
			return r
		})
	slices.Sort(lats)
	alone, with := res[0], res[1]
	lq := scaleRun{lat: lats}
	w.rep.printf("cache-miss vend (c=%d) alone %.0f/s, beside 4 filtered listing loops %.0f/s: ratio %.2f (goal ≥ 0.8); the listings meanwhile: %d (%.0f/s), p50 %.2f ms, max %.2f ms, %d answered 429",
		w.set.vendWorkers, alone.rps(), with.rps(), with.rps()/alone.rps(), len(lats), float64(len(lats))/with.elapsed.Seconds(), ms(lq.quantile(0.5)), ms(lq.quantile(1)), refused.Load())
	w.b.ReportMetric(with.rps()/alone.rps(), "miss-with-listings-ratio")
}

// ---- phase sweep -----------------------------------------------------

func (w *scaleWorld) phaseSweep() {
	pid := w.serve.pid()
	rss0, _, _ := pidMemory(pid)
	already := w.vendedCount()
	todo := max(0, w.set.sweep-already)
	w.rep.printf("sweep: vending %d more distinct connections (%d vended so far); VmRSS %d MB", todo, already, rss0>>20)
	var total scaleRun
	step := 100_000
	for done := 0; done < todo; {
		chunk := min(step, todo-done)
		k := 0
		var mu sync.Mutex
		r := scaleDrive(w.client, pid, w.set.vendWorkers, nil, func() (scaleReq, bool) {
			mu.Lock()
			if k == chunk {
				mu.Unlock()
				return scaleReq{}, false
			}
			k++
			mu.Unlock()
			i, ok := w.nextUnvended(nil)
			if !ok {
				return scaleReq{}, false
			}
			return scaleReq{req: w.vendReq(i, ""), check: w.checkVend(i)}, true
		})
		if r.err != nil {
			w.fatal(r.err)
		}
		total.add(r)
		done += r.requests
		rss, hwm, _ := pidMemory(pid)
		w.rep.printf("  %d distinct vended in all: VmRSS %d MB, VmHWM %d MB; this chunk %.0f/s, p50 %.2f ms, serve CPU %.0f µs/req%s",
			already+done, rss>>20, hwm>>20, r.rps(), ms(r.quantile(0.5)), us(r.cpuPerReq()), w.schedulerMetrics())
		if r.requests < chunk {
			break
		}
	}
	rss, hwm, _ := pidMemory(pid)
	w.rep.printf("sweep: %d distinct connections vended in all; serve VmRSS %d MB (goal ≤ 200), VmHWM %d MB; sweep %.0f/s",
		w.vendedCount(), rss>>20, hwm>>20, total.rps())
	w.b.ReportMetric(float64(rss)/(1<<20), "rss-MB")
	w.b.ReportMetric(float64(hwm)/(1<<20), "hwm-MB")
}

// ---- the databases ---------------------------------------------------

// scaleDB is what the harness writes and reads in serve's database,
// beside serve (SQL, not the store: these are test fixtures).
type scaleDB interface {
	// prepare re-seals rows with the emulator's grants, revokes the
	// needs_reauth connections of app (tokens erased, as a revocation
	// does) and, when the schema records use, marks hot rows as used
	// within the last 30 minutes before now.
	prepare(ctx context.Context, rows []sealedGrant, app string, hot []spotoken.ConnectionKey, now time.Time) error
	recordsUse() bool
	// setExpiry sets the rows' access token expiry, and their last
	// refresh an hour before it (the generated rows' are in 2030); with
	// hot, it also remembers the rows and their expiries for hotProgress.
	setExpiry(ctx context.Context, keys []spotoken.ConnectionKey, exp []time.Time, hot bool) error
	// hotProgress counts the hot rows refreshed since since, and those
	// refreshed before the expiry setExpiry gave them.
	hotProgress(ctx context.Context, since time.Time) (refreshed, before int, err error)
	// hotStale returns the hot rows not refreshed since since.
	hotStale(ctx context.Context, since time.Time) ([]spotoken.ConnectionKey, error)
	close()
}

// usedAgo is how long before the run a hot row was last used: spread over
// 30 minutes, within any active window of an hour.
func usedAgo(k int) time.Duration { return time.Duration(k%1800) * time.Second }

type scaleSQLite struct {
	db   *sql.DB
	conn *sql.Conn // holds the attached table of hot rows
	// useTable is where the store records last use: connection_uses
	// (migration 0018), connections (0014 to 0017), or "" for none.
	useTable string
}

func openScaleSQLite(ctx context.Context, path string) (*scaleSQLite, error) {
	db, err := sql.Open("sqlite", sqliteDSN(path, "&_txlock=immediate"))
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &scaleSQLite{db: db, conn: conn}
	if err := conn.QueryRowContext(ctx, `SELECT coalesce((SELECT name FROM pragma_table_list WHERE name = 'connection_uses'),
		(SELECT 'connections' FROM pragma_table_info('connections') WHERE name = 'last_used_at'), '')`).Scan(&s.useTable); err != nil {
		s.close()
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, `ATTACH DATABASE ':memory:' AS scale`); err != nil {
		s.close()
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE scale.hot (app_id TEXT, id TEXT, expiry INTEGER, PRIMARY KEY (app_id, id))`); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *scaleSQLite) recordsUse() bool { return s.useTable != "" }

func (s *scaleSQLite) close() {
	s.conn.Close()
	s.db.Close()
}

// inBatches runs fn over [0, n) in transactions of at most 5,000 rows on
// the held connection, so that serve's writer never waits long.
func (s *scaleSQLite) inBatches(ctx context.Context, n int, query string, args func(k int) []any) error {
	for lo := 0; lo < n; lo += 5000 {
		tx, err := s.conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, query)
		if err != nil {
			tx.Rollback()
			return err
		}
		for k := lo; k < min(n, lo+5000); k++ {
			res, err := stmt.ExecContext(ctx, args(k)...)
			if err == nil {
				var c int64
				if c, err = res.RowsAffected(); err == nil && c != 1 {
					err = fmt.Errorf("%d rows changed, want 1", c)
				}
			}
			if err != nil {
				tx.Rollback()
				return fmt.Errorf("%s (row %d): %w", query, k, err)
			}
		}
		stmt.Close()
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

func (s *scaleSQLite) prepare(ctx context.Context, rows []sealedGrant, app string, hot []spotoken.ConnectionKey, now time.Time) error {
	if err := s.inBatches(ctx, len(rows), `UPDATE connections SET access_token = ?, refresh_token = ? WHERE app_id = ? AND id = ?`, func(k int) []any {
		r := rows[k]
		return []any{r.access, r.refresh, r.key.AppID, r.key.ID}
	}); err != nil {
		return err
	}
	if _, err := s.conn.ExecContext(ctx, `UPDATE connections SET state = 'revoked', access_token = NULL, refresh_token = NULL,
		access_expires_at = NULL, last_refresh_at = NULL, last_error_code = '' WHERE app_id = ? AND state = 'needs_reauth'`, app); err != nil {
		return err
	}
	query := `UPDATE connections SET last_used_at = ?1 WHERE app_id = ?2 AND id = ?3`
	switch s.useTable {
	case "":
		return nil
	case "connection_uses":
		query = `INSERT INTO connection_uses (app_id, id, last_used_at) VALUES (?2, ?3, ?1)
			ON CONFLICT (app_id, id) DO UPDATE SET last_used_at = excluded.last_used_at`
	}
	return s.inBatches(ctx, len(hot), query, func(k int) []any {
		return []any{now.Add(-usedAgo(k)).UnixMicro(), hot[k].AppID, hot[k].ID}
	})
}

func (s *scaleSQLite) setExpiry(ctx context.Context, keys []spotoken.ConnectionKey, exp []time.Time, hot bool) error {
	if err := s.inBatches(ctx, len(keys), `UPDATE connections SET access_expires_at = ?, last_refresh_at = ? WHERE app_id = ? AND id = ?`, func(k int) []any {
		return []any{exp[k].UnixMicro(), exp[k].Add(-time.Hour).UnixMicro(), keys[k].AppID, keys[k].ID}
	}); err != nil {
		return err
	}
	if !hot {
		return nil
	}
	return s.inBatches(ctx, len(keys), `INSERT INTO scale.hot (app_id, id, expiry) VALUES (?, ?, ?)`, func(k int) []any {
		return []any{keys[k].AppID, keys[k].ID, exp[k].UnixMicro()}
	})
}

func (s *scaleSQLite) hotProgress(ctx context.Context, since time.Time) (refreshed, before int, err error) {
	err = s.conn.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(c.last_refresh_at < h.expiry), 0)
		FROM scale.hot h JOIN connections c ON c.app_id = h.app_id AND c.id = h.id
		WHERE c.last_refresh_at >= ?`, since.UnixMicro()).Scan(&refreshed, &before)
	return refreshed, before, err
}

func (s *scaleSQLite) hotStale(ctx context.Context, since time.Time) ([]spotoken.ConnectionKey, error) {
	rows, err := s.conn.QueryContext(ctx, `SELECT h.app_id, h.id FROM scale.hot h JOIN connections c ON c.app_id = h.app_id AND c.id = h.id
		WHERE c.last_refresh_at IS NULL OR c.last_refresh_at < ?`, since.UnixMicro())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []spotoken.ConnectionKey
	for rows.Next() {
		var k spotoken.ConnectionKey
		if err := rows.Scan(&k.AppID, &k.ID); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

type scalePostgres struct {
	conn   *pgx.Conn
	hasUse bool
}

func openScalePostgres(ctx context.Context, dsn string) (*scalePostgres, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	s := &scalePostgres{conn: conn}
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'connections' AND column_name = 'last_used_at')`).Scan(&s.hasUse); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE scale_hot (app_id text, id text, expiry timestamptz, PRIMARY KEY (app_id, id))`); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return s, nil
}

func (s *scalePostgres) recordsUse() bool { return s.hasUse }
func (s *scalePostgres) close()           { s.conn.Close(context.Background()) }

// update copies rows into a temporary table of columns cols and applies
// set (an UPDATE connections c SET ... FROM t WHERE ...) in one
// transaction; it checks that every row was changed.
func (s *scalePostgres) update(ctx context.Context, cols, types []string, rows [][]any, set string) error {
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var defs []string
	for k := range cols {
		defs = append(defs, cols[k]+" "+types[k])
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE t (`+strings.Join(defs, ", ")+`) ON COMMIT DROP`); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"t"}, cols, pgx.CopyFromRows(rows)); err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, set)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != int64(len(rows)) {
		return fmt.Errorf("%s: %d rows changed, want %d", set, tag.RowsAffected(), len(rows))
	}
	return tx.Commit(ctx)
}

func (s *scalePostgres) prepare(ctx context.Context, rows []sealedGrant, app string, hot []spotoken.ConnectionKey, now time.Time) error {
	var data [][]any
	for _, r := range rows {
		data = append(data, []any{r.key.AppID, r.key.ID, r.access, r.refresh})
	}
	if err := s.update(ctx, []string{"app_id", "id", "access", "refresh"}, []string{"text", "text", "bytea", "bytea"}, data,
		`UPDATE connections c SET access_token = t.access, refresh_token = t.refresh FROM t WHERE c.app_id = t.app_id AND c.id = t.id`); err != nil {
		return err
	}
	if _, err := s.conn.Exec(ctx, `UPDATE connections SET state = 'revoked', access_token = NULL, refresh_token = NULL,
		access_expires_at = NULL, last_refresh_at = NULL, last_error_code = '' WHERE app_id = $1 AND state = 'needs_reauth'`, app); err != nil {
		return err
	}
	if !s.hasUse {
		return nil
	}
	data = data[:0]
	for k, key := range hot {
		data = append(data, []any{key.AppID, key.ID, now.Add(-usedAgo(k))})
	}
	return s.update(ctx, []string{"app_id", "id", "used"}, []string{"text", "text", "timestamptz"}, data,
		`UPDATE connections c SET last_used_at = t.used FROM t WHERE c.app_id = t.app_id AND c.id = t.id`)
}

func (s *scalePostgres) setExpiry(ctx context.Context, keys []spotoken.ConnectionKey, exp []time.Time, hot bool) error {
	var data [][]any
	for k, key := range keys {
		data = append(data, []any{key.AppID, key.ID, exp[k]})
	}
	if err := s.update(ctx, []string{"app_id", "id", "expiry"}, []string{"text", "text", "timestamptz"}, data,
		`UPDATE connections c SET access_expires_at = t.expiry, last_refresh_at = t.expiry - interval '1 hour' FROM t WHERE c.app_id = t.app_id AND c.id = t.id`); err != nil {
		return err
	}
	if !hot {
		return nil
	}
	_, err := s.conn.CopyFrom(ctx, pgx.Identifier{"scale_hot"}, []string{"app_id", "id", "expiry"}, pgx.CopyFromRows(data))
	return err
}

func (s *scalePostgres) hotProgress(ctx context.Context, since time.Time) (refreshed, before int, err error) {
	err = s.conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE c.last_refresh_at < h.expiry)
		FROM scale_hot h JOIN connections c ON c.app_id = h.app_id AND c.id = h.id
		WHERE c.last_refresh_at >= $1`, since).Scan(&refreshed, &before)
	return refreshed, before, err
}

func (s *scalePostgres) hotStale(ctx context.Context, since time.Time) ([]spotoken.ConnectionKey, error) {
	rows, err := s.conn.Query(ctx, `SELECT h.app_id, h.id FROM scale_hot h JOIN connections c ON c.app_id = h.app_id AND c.id = h.id
		WHERE c.last_refresh_at IS NULL OR c.last_refresh_at < $1`, since)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (spotoken.ConnectionKey, error) {
		var k spotoken.ConnectionKey
		err := r.Scan(&k.AppID, &k.ID)
		return k, err
	})
}

// loadScalePostgres loads n rows into a new schema and checks them as the
// store benchmarks do.
func loadScalePostgres(ctx context.Context, base, schema string, n int, keys *seal.KeyRing) error {
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	if err := loadPostgres(ctx, admin, base, schema, n, keys, false); err != nil {
		return err
	}
	for _, note := range loadNotes {
		fmt.Println("scale: postgres", note)
	}
	loadNotes = nil
	f, err := openPostgresFixture(ctx, base, schema, keys, tableFactsFor(n))
	if err != nil {
		return err
	}
	return f.close()
}

func dropSchema(base, schema string) error {
	conn, err := pgx.Connect(context.Background(), base)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	return err
}
